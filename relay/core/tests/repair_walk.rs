//! The relay's own forwarding decision, walked hop by hop over the shipped
//! world with every single link failure and every single node failure: every
//! pair that stays connected is delivered by the repair segments and the
//! tables alone (no controller), within the TTL, and no walk loops.
//!
//! This runs the code the relays run (`relay_core::datagram::decide` on the
//! encoded datagram, `segment::insert` and `segment::advance_in_place`), not a
//! model of it.

use relay_core::datagram::{decide, Action};
use relay_core::segment;
use relay_core::wire::{Header, Kind, INITIAL_TTL};
use relay_core::ForwardingTable;
use topology::{NodeIdx, Topology};

#[derive(Debug, Clone, Copy)]
enum Failure {
    Link(usize),
    Node(NodeIdx),
}

/// Walks a datagram from `s` to `d`; the number of hops, or why it failed.
fn walk(
    t: &Topology,
    tables: &[ForwardingTable],
    failure: Failure,
    s: NodeIdx,
    d: NodeIdx,
) -> Result<usize, String> {
    let usable = |from: NodeIdx, to_key: u32| -> bool {
        let Some(to) = t.node_by_key(to_key) else {
            return false;
        };
        let Some(link) = t.link_between(from, to) else {
            return false;
        };
        match failure {
            Failure::Link(l) => link.get() != l,
            Failure::Node(n) => to != n,
        }
    };
    let mut packet = Header {
        kind: Kind::Media,
        // The origin decrements too, as a relay's ingress does.
        ttl: INITIAL_TTL,
        flags: 0,
        dst: t.node_key(d),
        src: t.node_key(s),
        service: 1,
        flow: 1,
        seq: 0,
        timestamp_us: 0,
    }
    .encode_with(b"class media");
    let mut at = s;
    let mut hops = 0;
    loop {
        if at == d {
            return Ok(hops);
        }
        let received = decide(&tables[at.get()], &packet, |k| usable(at, k));
        let next = match received.action {
            Action::Forward { peer, ttl, via } => {
                packet[2] = ttl;
                if via == relay_core::datagram::Via::Segment {
                    segment::advance_in_place(&mut packet);
                }
                peer
            }
            Action::Repair { segment: seg, ttl } => {
                packet = segment::insert(&packet, received.payload_at, &seg, ttl);
                seg.first()
            }
            other => return Err(format!("at {}: {other:?}", t.node(at).id)),
        };
        at = t.node_by_key(next).ok_or("unknown next hop")?;
        hops += 1;
        if hops > 64 {
            return Err("looped".into());
        }
    }
}

/// The nodes reachable from `s` with `failure` (plain graph search).
fn reachable(t: &Topology, failure: Failure, s: NodeIdx) -> Vec<bool> {
    let mut seen = vec![false; t.nodes.len()];
    let mut queue = vec![s];
    seen[s.get()] = true;
    while let Some(x) = queue.pop() {
        for (i, l) in t.links.iter().enumerate() {
            let Some(y) = l.other(x) else { continue };
            let dead = match failure {
                Failure::Link(f) => f == i,
                Failure::Node(n) => y == n,
            };
            if !dead && !seen[y.get()] {
                seen[y.get()] = true;
                queue.push(y);
            }
        }
    }
    seen
}

#[test]
fn every_single_failure_of_the_world_is_repaired_by_the_relays_alone() {
    let world = topology::world().expect("world");
    let n = world.nodes.len() as u32;
    let tables: Vec<ForwardingTable> = (0..n)
        .map(|i| ForwardingTable::from_topology(&world, NodeIdx(i)))
        .collect();
    let failures: Vec<Failure> = (0..world.links.len())
        .map(Failure::Link)
        .chain((0..n).map(|i| Failure::Node(NodeIdx(i))))
        .collect();
    let (mut pairs, mut longest) = (0usize, 0usize);
    let mut failed = Vec::new();
    for f in failures {
        for s in (0..n).map(NodeIdx) {
            let reach = reachable(&world, f, s);
            for d in (0..n).map(NodeIdx) {
                let dead_end = matches!(f, Failure::Node(x) if x == s || x == d);
                if s == d || dead_end || !reach[d.get()] {
                    continue;
                }
                pairs += 1;
                match walk(&world, &tables, f, s, d) {
                    Ok(h) => longest = longest.max(h),
                    Err(e) => failed.push(format!(
                        "{:?} {} -> {}: {e}",
                        f,
                        world.node(s).id,
                        world.node(d).id
                    )),
                }
            }
        }
    }
    println!(
        "{pairs} (failure, pair) walks, longest {longest} hops, {} failed",
        failed.len()
    );
    assert!(pairs > 400_000, "walked {pairs}");
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(
        longest < usize::from(INITIAL_TTL),
        "longest walk {longest} hops"
    );
}
