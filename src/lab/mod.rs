//! `overlay lab`: the whole overlay on one machine. Every node of a topology runs
//! as a relay on loopback, every link through a link emulator with the link's
//! delay; synthetic classes stream media between Asian and North American cities;
//! the run ends with a per-class latency and loss report.

mod api;
mod classes;
mod scenario;

use std::io::Write as _;
use std::path::PathBuf;
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
    pub scenario: Scenario,
    pub api: std::net::SocketAddr,
}

/// Which timed events a run has.
#[derive(Debug, Clone)]
pub enum Scenario {
    /// Cut the busiest undersea line at 1/3 of the run, restore it at 2/3.
    Default,
    None,
    File(PathBuf),
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
    let pairs = class_pairs(&base, opts.classes, opts.seed)?;
    let events = load_events(&base, &pairs, opts)?;
    runtime
        .block_on(run_async(base, pairs, events, opts))
        .map_err(|e| Failure::runtime(format!("lab failed: {e:#}")))
}

/// The run's events: from the scenario file, none, or the default cut/restore.
fn load_events(
    base: &Topology,
    pairs: &[(NodeIdx, NodeIdx)],
    opts: &LabOptions,
) -> Result<Vec<scenario::Event>, Failure> {
    match &opts.scenario {
        Scenario::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Failure::usage(format!("cannot read scenario {}: {e}", path.display()))
            })?;
            let events = scenario::parse(&path.display().to_string(), &text, base)
                .map_err(Failure::usage)?;
            if let Some(late) = events.iter().find(|e| e.at > opts.duration) {
                return Err(Failure::usage(format!(
                    "scenario event at {:?} is after the run ends at {:?}; give a longer --duration",
                    late.at, opts.duration
                )));
            }
            Ok(events)
        }
        Scenario::None => Ok(Vec::new()),
        Scenario::Default => Ok(scenario::default_events(
            base,
            &busiest_links(base, pairs),
            opts.duration,
        )),
    }
}

async fn run_async(
    base: Topology,
    pairs: Vec<(NodeIdx, NodeIdx)>,
    events: Vec<scenario::Event>,
    opts: &LabOptions,
) -> anyhow::Result<String> {
    // The lab carries its own services: one per class, ingress at the student's
    // city, egress at the teacher's, target the teacher's server.
    let mut topology = base.clone();
    let mut teachers = Vec::new();
    topology.services.clear();
    for (i, (s, d)) in pairs.iter().enumerate() {
        // Media over UDP, and signalling over TCP, between the same two cities.
        let (socket, addr) = classes::teacher().await?;
        let signal = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let name = format!(
            "class-{:03}-{}-{}",
            i + 1,
            topology.node(*s).id,
            topology.node(*d).id
        );
        let signal_name = format!("class-{:03}-signal", i + 1);
        topology
            .services
            .push(class_service(&name, Protocol::Udp, *s, *d, addr));
        topology.services.push(class_service(
            &signal_name,
            Protocol::Tcp,
            *s,
            *d,
            signal.local_addr()?,
        ));
        teachers.push((name, socket, signal_name, signal));
    }
    let started = tokio::time::Instant::now();
    eprintln!(
        "lab: starting a controller, {} relays and {} emulated links from {}",
        topology.nodes.len(),
        topology.links.len(),
        topology.source
    );
    let options = FleetOptions {
        loss: opts.loss,
        ..FleetOptions::default()
    };
    let fleet = Fleet::start(topology, options).await?;
    let topology = fleet.topology.clone();
    fleet.wait_ready(Duration::from_secs(60)).await?;
    let setup = started.elapsed();
    let controller = fleet
        .controller
        .as_ref()
        .map(|c| c.shared.clone())
        .ok_or_else(|| anyhow::anyhow!("no controller"))?;

    let log: api::EventLog = Default::default();
    let run_started = tokio::time::Instant::now();
    let mut links = std::collections::HashMap::new();
    for (l, link) in topology.links.iter().zip(&fleet.links) {
        let (a, b) = (topology.node(l.a).id.clone(), topology.node(l.b).id.clone());
        links.insert((a.clone(), b.clone()), link.handle());
        links.insert((b, a), link.handle());
    }
    let api_server = match std::net::TcpListener::bind(opts.api) {
        Ok(listener) => {
            listener.set_nonblocking(true)?;
            // The address bound (the port the system chose, given port 0).
            let addr = listener.local_addr()?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let tasks = daemon::Supervisor::new(tokio_util::sync::CancellationToken::new());
            let router = api::router(controller.clone(), links.clone(), log.clone(), run_started);
            tasks.spawn(
                "lab API",
                daemon::OnFailure::Log,
                daemon::admin::serve(
                    listener,
                    router,
                    daemon::admin::AdminLimits::default(),
                    std::sync::Arc::default(),
                    tasks.cancel_token().clone(),
                    tasks.spawner(),
                ),
            );
            eprintln!("lab: API on http://{addr} (overlay status|links|routes --api {addr}; POST /api/v1/lab/links/A/B/cut)");
            eprintln!("lab: live map on http://{addr}/map");
            Some(tasks)
        }
        Err(e) => {
            eprintln!(
                "lab: no API: cannot listen on {}: {e} (choose another with --api)",
                opts.api
            );
            None
        }
    };
    eprintln!(
        "lab: all {} links up after {:.1} s; {} classes for {:?}",
        topology.links.len(),
        setup.as_secs_f64(),
        pairs.len(),
        opts.duration
    );
    for e in &events {
        eprintln!(
            "lab: scheduled at {:>5.1} s: {}",
            e.at.as_secs_f64(),
            e.describe(&topology)
        );
    }

    let mut running = Vec::new();
    for ((name, socket, signal_name, signal), (s, d)) in teachers.into_iter().zip(&pairs) {
        let relay = &fleet.relays[&topology.node(*s).id];
        let (ingress, signal_ingress) = (
            relay.ingress_addrs[&name],
            relay.ingress_addrs[&signal_name],
        );
        let (student, teacher) = (topology.node(*s).id.clone(), topology.node(*d).id.clone());
        running.push(
            Class::start(
                name,
                student,
                teacher,
                socket,
                ingress,
                signal,
                signal_ingress,
            )
            .await?,
        );
    }

    let route_of = |c: &Class| {
        controller::api::route(&controller, &c.student_city, &c.teacher_city)
            .map(|r| r.path)
            .unwrap_or_default()
    };
    let mut paths: Vec<Vec<String>> = running.iter().map(route_of).collect();
    let mut reroutes: Vec<Reroute> = Vec::new();
    let mut pending = events.iter().peekable();
    let mut tick = 0u64;
    while run_started.elapsed() < opts.duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tick += 1;
        let now = run_started.elapsed();
        while let Some(e) = pending.next_if(|e| e.at <= now) {
            if let Some(link) = links.get(&(e.a.clone(), e.b.clone())) {
                match &e.action {
                    scenario::Action::Cut => link.cut(),
                    scenario::Action::Restore => link.restore(),
                    scenario::Action::Impair {
                        delay,
                        jitter,
                        loss,
                    } => {
                        let _ = link.impair(*delay, *jitter, *loss);
                    }
                }
            }
            let kind = match &e.action {
                scenario::Action::Cut => controller::live::EventKind::Cut,
                scenario::Action::Restore => controller::live::EventKind::Restore,
                scenario::Action::Impair { .. } => controller::live::EventKind::Impair,
            };
            api::record(
                &log,
                run_started,
                &controller,
                kind,
                (&e.a, &e.b),
                &e.describe(&topology),
            );
            eprintln!(
                "\nlab: {:>5.1} s  {}",
                now.as_secs_f64(),
                e.describe(&topology)
            );
        }
        for (i, c) in running.iter().enumerate() {
            let path = route_of(c);
            if path != paths[i] {
                reroutes.push(Reroute {
                    at: now,
                    class: c.name.clone(),
                    from: paths[i].join(" "),
                    to: path.join(" "),
                });
                paths[i] = path;
            }
        }
        if tick % 5 == 0 {
            let last = log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last()
                .map(|(at, what)| format!("{at:.1} s {what}"));
            progress(&running, &fleet, now, opts.duration, last.as_deref());
        }
    }
    eprintln!();
    for c in &running {
        c.stop_sending();
    }
    // Let packets still in flight (up to a few hundred ms on long paths) land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut report = render_report(
        &base,
        &topology,
        &running,
        setup,
        opts.duration,
        &log,
        &reroutes,
    );
    report.push_str(&undersea_usage(&fleet, &paths));
    drop(running);
    if let Some(tasks) = api_server {
        tasks.shutdown(Duration::from_secs(2)).await;
    }
    fleet.shutdown().await;
    Ok(report)
}

/// Which undersea lines carried how much: packets each way through the line's
/// emulator (media, probes and QUIC control alike), and the classes routed over
/// it when the run ended.
fn undersea_usage(fleet: &Fleet, paths: &[Vec<String>]) -> String {
    let t = &fleet.topology;
    let mut table = Table::new(&[
        "line",
        "a",
        "b",
        ">packets a→b",
        ">packets b→a",
        ">classes on it at the end",
    ]);
    let mut any = false;
    for (l, link) in t.links.iter().zip(&fleet.links) {
        if l.kind != topology::LinkKind::Undersea {
            continue;
        }
        any = true;
        let (a, b) = (&t.node(l.a).id, &t.node(l.b).id);
        let stats = link.handle().stats();
        let on_it = paths
            .iter()
            .filter(|p| {
                p.windows(2)
                    .any(|w| (&w[0] == a && &w[1] == b) || (&w[0] == b && &w[1] == a))
            })
            .count();
        table.row(vec![
            l.name.clone().unwrap_or_else(|| "-".into()),
            a.clone(),
            b.clone(),
            stats.a_to_b.forwarded.to_string(),
            stats.b_to_a.forwarded.to_string(),
            on_it.to_string(),
        ]);
    }
    if !any {
        return String::new();
    }
    format!(
        "\nundersea lines:\n{}",
        crate::table::indent(&table.render())
    )
}

/// A lab service of a class: from the student's city (any free port) to the
/// teacher's server.
fn class_service(
    name: &str,
    protocol: Protocol,
    student: NodeIdx,
    teacher: NodeIdx,
    target: std::net::SocketAddr,
) -> Service {
    Service {
        key: topology::wire_key(name),
        name: name.to_string(),
        protocol,
        ingress_node: student,
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        egress_node: teacher,
        target,
        allow: Vec::new(),
        protect: false,
        budget_us: topology::DEFAULT_BUDGET_US,
    }
}

/// A class whose path in force changed during the run.
#[derive(Debug, Clone)]
struct Reroute {
    at: Duration,
    class: String,
    from: String,
    to: String,
}

/// Links ordered by how many class paths cross them (expected delays), busiest first.
fn busiest_links(t: &Topology, pairs: &[(NodeIdx, NodeIdx)]) -> Vec<(usize, topology::LinkIdx)> {
    let graph = Graph::from_topology(t);
    let metric = Metric::expected_delay(t);
    let routes = Routes::compute(&graph, &metric);
    let mut uses = vec![0usize; t.links.len()];
    for (s, d) in pairs {
        if let Some(p) = routes.path(&graph, &metric, *s, *d) {
            for l in p.links {
                uses[l.get()] += 1;
            }
        }
    }
    let mut v: Vec<(usize, topology::LinkIdx)> = uses
        .into_iter()
        .enumerate()
        .filter(|(n, _)| *n > 0)
        .map(|(i, n)| (n, topology::LinkIdx(i as u32)))
        .collect();
    v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    v
}

fn progress(
    running: &[Class],
    fleet: &Fleet,
    now: Duration,
    total: Duration,
    last_event: Option<&str>,
) {
    let (mut sent, mut received) = (0, 0);
    let mut p99 = classes::latency_histogram();
    for c in running {
        let st = c.stats.lock().unwrap_or_else(|p| p.into_inner());
        sent += st.sent;
        received += st.received;
        let _ = p99.add(&st.one_way_us);
    }
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * (1.0 - received.min(sent) as f64 / sent as f64)
    };
    eprint!(
        "\r[{:>4.0}s / {:.0}s] links up {}/{} · classes {} · p99 {} ms · loss {loss:.2}% · last event: {}   ",
        now.as_secs_f64(),
        total.as_secs_f64(),
        fleet.links_up(),
        fleet.topology.links.len(),
        running.len(),
        ms(p99.value_at_quantile(0.99)),
        last_event.unwrap_or("none"),
    );
    let _ = std::io::stderr().flush();
}

fn render_report(
    base: &Topology,
    t: &Topology,
    classes: &[Class],
    setup: Duration,
    duration: Duration,
    events: &[(f64, String)],
    reroutes: &[Reroute],
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
        ">longest gap ms",
        ">back p99 ms",
        ">signals ok/broken",
    ]);
    let mut all = classes::latency_histogram();
    let (mut sent, mut received, mut within) = (0u64, 0u64, 0usize);
    let mut signals = (0u64, 0u64);
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
            st.longest_gap.as_millis().to_string(),
            ms(st.back_us.value_at_quantile(0.99)),
            format!("{}/{}", st.signals_ok, st.signal_breaks),
        ]);
        signals.0 += st.signals_ok;
        signals.1 += st.signal_breaks;
    }
    out.push_str(&table.render());
    if !events.is_empty() {
        out.push_str("\nevents:\n");
        for (at, what) in events {
            out.push_str(&format!("  {at:>6.1} s  {what}\n"));
        }
    }
    if !reroutes.is_empty() {
        out.push_str("\nreroutes (path in force changed):\n");
        let mut r = Table::new(&[">at s", "class", "from", "to", ">class's longest gap ms"]);
        for x in reroutes {
            let gap = classes
                .iter()
                .find(|c| c.name == x.class)
                .map(|c| {
                    c.stats
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .longest_gap
                        .as_millis()
                        .to_string()
                })
                .unwrap_or_default();
            r.row(vec![
                format!("{:.1}", x.at.as_secs_f64()),
                x.class.clone(),
                x.from.clone(),
                x.to.clone(),
                gap,
            ]);
        }
        out.push_str(&crate::table::indent(&r.render()));
    }
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * (1.0 - received as f64 / sent as f64)
    };
    out.push_str(&format!(
        "\nall classes: one-way p50 {} ms, p99 {} ms, max {} ms; loss {loss:.2}% ({received} of {sent} packets); \
         {within} of {} classes within the 200 ms budget at p99; signalling: {} messages echoed intact, {} sessions broken\n",
        ms(all.value_at_quantile(0.5)),
        ms(all.value_at_quantile(0.99)),
        ms(all.max()),
        classes.len(),
        signals.0,
        signals.1
    ));
    out
}
