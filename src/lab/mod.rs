//! `overlay lab`: the whole overlay on one machine. Every node of a topology runs
//! as a relay on loopback, every link through a link emulator with the link's
//! delay; synthetic classes stream media between Asian and North American cities;
//! the run ends with a per-class latency and loss report.

mod classes;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rand::{rngs::SmallRng, Rng, SeedableRng};
use topology::paths::{Graph, Metric, Routes};
use topology::{NodeIdx, Protocol, Service, Topology};

use crate::failure::Failure;
use crate::table::{ms, Table};
use classes::Class;
use overlay::fleet::{Fleet, FleetOptions};

/// How a lab run is set up.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub topology: Option<PathBuf>,
    pub duration: Duration,
    pub classes: usize,
    pub loss: f64,
    pub seed: u64,
}

/// Parses `30s`, `2m`, `1500ms` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((t, "s"), |i| t.split_at(i));
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; use e.g. 30s, 2m or 1500ms"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: unknown unit `{unit}`; use ms, s or m")),
    };
    if !(secs > 0.0 && secs <= 24.0 * 3600.0) {
        return Err(format!(
            "`{text}`: a lab run lasts more than 0 and at most 24 h"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Students in Asia, teachers in North America; any nodes when a topology has
/// no such regions.
fn class_pairs(t: &Topology, count: usize, seed: u64) -> Result<Vec<(NodeIdx, NodeIdx)>, Failure> {
    let pick = |prefix: &str| -> Vec<NodeIdx> {
        let v: Vec<NodeIdx> = (0..t.nodes.len() as u32)
            .map(NodeIdx)
            .filter(|&n| t.node(n).region.starts_with(prefix))
            .collect();
        if v.is_empty() {
            (0..t.nodes.len() as u32).map(NodeIdx).collect()
        } else {
            v
        }
    };
    let (students, teachers) = (pick("asia"), pick("north-america"));
    if t.nodes.len() < 2 || students.iter().all(|s| teachers.iter().all(|d| s == d)) {
        return Err(Failure::usage(
            "the lab needs a topology with at least two nodes",
        ));
    }
    // Every distinct (student, teacher) pair once, in a seeded random order,
    // before any pair repeats: small runs cover as many routes as they can.
    let mut all: Vec<(NodeIdx, NodeIdx)> = students
        .iter()
        .flat_map(|&s| teachers.iter().map(move |&d| (s, d)))
        .filter(|(s, d)| s != d)
        .collect();
    let mut rng = SmallRng::seed_from_u64(seed);
    for i in (1..all.len()).rev() {
        all.swap(i, rng.random_range(0..=i));
    }
    let pairs: Vec<(NodeIdx, NodeIdx)> = all.iter().copied().cycle().take(count).collect();
    Ok(pairs)
}

/// Runs the lab and returns the closing report. Progress goes to stderr.
pub fn run(opts: &LabOptions) -> Result<String, Failure> {
    let base = crate::topology_cmd::load(opts.topology.as_deref())?;
    if opts.classes == 0 {
        return Err(Failure::usage("--classes must be at least 1"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("cannot start the async runtime: {e}")))?;
    runtime
        .block_on(run_async(base, opts))
        .map_err(|e| Failure::runtime(format!("lab failed: {e:#}")))
}

async fn run_async(base: Topology, opts: &LabOptions) -> anyhow::Result<String> {
    let pairs =
        class_pairs(&base, opts.classes, opts.seed).map_err(|f| anyhow::anyhow!(f.message))?;
    // The lab carries its own services: one per class, ingress at the student's
    // city, egress at the teacher's, target the teacher's server.
    let mut topology = base.clone();
    let mut teachers = Vec::new();
    topology.services.clear();
    for (i, (s, d)) in pairs.iter().enumerate() {
        let (socket, addr) = classes::teacher().await?;
        let name = format!(
            "class-{:03}-{}-{}",
            i + 1,
            topology.node(*s).id,
            topology.node(*d).id
        );
        topology.services.push(Service {
            key: topology::wire_key(&name),
            name,
            protocol: Protocol::Udp,
            ingress_node: *s,
            listen: "127.0.0.1:0".parse()?,
            egress_node: *d,
            target: addr,
            allow: Vec::new(),
        });
        teachers.push(socket);
    }
    let topology = Arc::new(topology);
    let started = tokio::time::Instant::now();
    eprintln!(
        "lab: starting {} relays and {} emulated links from {}",
        topology.nodes.len(),
        topology.links.len(),
        topology.source
    );
    let options = FleetOptions {
        loss: opts.loss,
        ..FleetOptions::default()
    };
    let fleet = Fleet::start((*topology).clone(), options).await?;
    fleet.wait_ready(Duration::from_secs(60)).await?;
    let setup = started.elapsed();
    eprintln!(
        "lab: all {} links up after {:.1} s; {} classes for {:?}",
        topology.links.len(),
        setup.as_secs_f64(),
        pairs.len(),
        opts.duration
    );

    let mut running = Vec::new();
    for ((service, socket), (s, d)) in topology.services.iter().zip(teachers).zip(&pairs) {
        let ingress = fleet.relays[&topology.node(*s).id].ingress_addrs[&service.name];
        let class = Class::start(
            service.name.clone(),
            topology.node(*s).id.clone(),
            topology.node(*d).id.clone(),
            socket,
            ingress,
        )
        .await?;
        running.push(class);
    }

    let run_started = tokio::time::Instant::now();
    while run_started.elapsed() < opts.duration {
        tokio::time::sleep(Duration::from_secs(1).min(opts.duration)).await;
        let (mut sent, mut received) = (0, 0);
        for c in &running {
            let st = c.stats.lock().unwrap_or_else(|p| p.into_inner());
            sent += st.sent;
            received += st.received;
        }
        eprint!(
            "\r[{:>4.0}s / {:.0}s] links up {}/{} · classes {} · packets sent {sent} · delivered {received}   ",
            run_started.elapsed().as_secs_f64(),
            opts.duration.as_secs_f64(),
            fleet.links_up(),
            topology.links.len(),
            running.len()
        );
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    for c in &running {
        c.stop_sending();
    }
    // Let packets still in flight (up to a few hundred ms on long paths) land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = render_report(&base, &topology, &running, setup, opts.duration);
    drop(running);
    fleet.shutdown().await;
    Ok(report)
}

fn render_report(
    base: &Topology,
    t: &Topology,
    classes: &[Class],
    setup: Duration,
    duration: Duration,
) -> String {
    let graph = Graph::from_topology(base);
    let metric = Metric::expected_delay(base);
    let routes = Routes::compute(&graph, &metric);
    let mut out = format!(
        "\nlab report: {} relays, {} emulated links, {} classes, {:.0} s of traffic (setup {:.1} s)\n\n",
        t.nodes.len(),
        t.links.len(),
        classes.len(),
        duration.as_secs_f64(),
        setup.as_secs_f64()
    );
    let mut table = Table::new(&[
        "class",
        "path",
        ">expected ms",
        ">p50 ms",
        ">p99 ms",
        ">max ms",
        ">sent",
        ">loss",
        ">rtt p50 ms",
    ]);
    let mut all = classes::latency_histogram();
    let (mut sent, mut received, mut within) = (0u64, 0u64, 0usize);
    for c in classes {
        let st = c.stats.lock().unwrap_or_else(|p| p.into_inner());
        let (s, d) = (t.node_idx(&c.student_city), t.node_idx(&c.teacher_city));
        let path = s
            .zip(d)
            .and_then(|(s, d)| routes.path(&graph, &metric, s, d));
        let hops = path.as_ref().map_or_else(String::new, |p| {
            p.nodes
                .iter()
                .map(|&n| t.node(n).id.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        });
        let expected = path.as_ref().map_or(0, |p| p.cost);
        let _ = all.add(&st.one_way_us);
        sent += st.sent;
        received += st.received.min(st.sent);
        if st.received > 0 && st.one_way_us.value_at_quantile(0.99) <= 200_000 {
            within += 1;
        }
        table.row(vec![
            c.name.clone(),
            hops,
            ms(expected),
            ms(st.one_way_us.value_at_quantile(0.5)),
            ms(st.one_way_us.value_at_quantile(0.99)),
            ms(st.one_way_us.max()),
            st.sent.to_string(),
            format!("{:.2}%", 100.0 * st.loss()),
            ms(st.round_trip_us.value_at_quantile(0.5)),
        ]);
    }
    out.push_str(&table.render());
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * (1.0 - received as f64 / sent as f64)
    };
    out.push_str(&format!(
        "\nall classes: one-way p50 {} ms, p99 {} ms, max {} ms; loss {loss:.2}% ({received} of {sent} packets); \
         {within} of {} classes within the 200 ms budget at p99\n",
        ms(all.value_at_quantile(0.5)),
        ms(all.value_at_quantile(0.99)),
        ms(all.max()),
        classes.len()
    ));
    out
}
