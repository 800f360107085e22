//! Benchmark 6: controller failover. The diamond's four relays with a media
//! stream (200 packets/s), two `controller` processes electing a leader
//! through a real etcd on loopback (`lease_ttl_s: 2`, etcd's minimum). Each
//! round `kill -9`s the leader and measures the time from the kill to the new
//! leader's tables in force at every relay (every relay's routes carry the new
//! term), the time until the standby's metrics say it leads, and datagrams
//! lost across the handover; then the killed controller is started again (it
//! becomes the standby) and the fleet reconverges. Baseline: the lease TTL,
//! the wait that bounds a failover.
//!
//! Needs `etcd` on the PATH (`apt-get install etcd-server`) and builds the
//! `controller` binary if it is missing.
//! Run: `cargo bench --bench failover [-- ROUNDS]` (default 10 rounds, about
//! a minute and a half).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::time::Duration;

use hdrhistogram::Histogram;
use support::ha::{Ha, LEASE_TTL_S};
use tokio::time::Instant;

fn row(name: &str, h: &Histogram<u64>) {
    println!(
        "{name:<44} {:>6} {:>6} {:>6} {:>6} {:>6}",
        h.len(),
        h.min(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.max()
    );
}

fn main() {
    let rounds: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let Some((mut ha, stream)) = Ha::start("bench failover", 2).await else {
            eprintln!("no etcd: nothing measured");
            return;
        };
        let mut in_force = Histogram::<u64>::new(3).expect("histogram");
        let mut elected = Histogram::<u64>::new(3).expect("histogram");
        let mut lost_total = 0usize;
        let mut sent_total = 0u32;
        for round in 0..rounds {
            let (old, old_term) = ha.wait_converged(Duration::from_secs(30)).await;
            let standby = if old == "c1" { "c2" } else { "c1" };
            tokio::time::sleep(Duration::from_millis(300)).await;
            let seq0 = stream.sent();
            let killed = Instant::now();
            ha.controller_mut(&old).kill9();
            let mut said = None;
            let all = loop {
                if said.is_none() {
                    if let Some((true, _)) = ha.controller(standby).leadership().await {
                        said = Some(killed.elapsed());
                    }
                }
                if ha.relay_terms().values().all(|t| *t > old_term) {
                    break killed.elapsed();
                }
                assert!(
                    killed.elapsed() < Duration::from_secs(30),
                    "no failover in round {round}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            };
            let said = match said {
                Some(s) => s,
                None => loop {
                    if let Some((true, _)) = ha.controller(standby).leadership().await {
                        break killed.elapsed();
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                },
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            let seq1 = stream.sent();
            tokio::time::sleep(Duration::from_millis(300)).await;
            let lost = stream.missing(seq0, seq1);
            lost_total += lost;
            sent_total += seq1 - seq0;
            in_force
                .record(all.as_millis() as u64)
                .expect("in range");
            elected
                .record(said.as_millis() as u64)
                .expect("in range");
            eprintln!(
                "round {round}: killed {old} (term {old_term}); tables in force at every relay after {} ms, {standby} said it leads after {} ms; {lost} of {} datagrams lost",
                all.as_millis(),
                said.as_millis(),
                seq1 - seq0
            );
            ha.controller_mut(&old).spawn();
        }
        println!(
            "\ncontroller failover after kill -9 of the leader, ms ({rounds} rounds; 4 relays; lease TTL {LEASE_TTL_S} s)"
        );
        println!(
            "{:<44} {:>6} {:>6} {:>6} {:>6} {:>6}",
            "measure", "n", "min", "p50", "p90", "max"
        );
        row("kill to new tables in force at every relay", &in_force);
        row("kill to the standby's metrics saying leader", &elected);
        println!(
            "p50 / lease TTL: {:.2}; datagrams lost across the failovers: {lost_total} of {sent_total}",
            in_force.value_at_quantile(0.5) as f64 / (LEASE_TTL_S * 1000) as f64
        );
        ha.shutdown().await;
    });
}
