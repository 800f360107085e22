//! `overlay lab`: the whole overlay on one machine. Every node of a topology runs
//! as a relay on loopback, every link through a link emulator with the link's
//! delay; synthetic classes stream media between Asian and North American cities;
//! the run ends with a per-class latency and loss report.

mod api;
mod classes;
mod floor;
mod scenario;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use rand::{rngs::SmallRng, Rng, SeedableRng};
use topology::{NodeIdx, Protocol, Service, Topology};

use crate::failure::Failure;
use crate::table::{ms, Table};
use classes::Class;
use overlay::fleet::{Fleet, FleetOptions};
use relay_core::probe::ProbeConfig;

/// A class's one-way latency budget at p99, µs (a service's default budget).
const BUDGET_US: u64 = topology::DEFAULT_BUDGET_US;

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
    /// Emulate each link's bandwidth at its capacity times this (see
    /// `FleetOptions::capacity_scale`); `None`: unlimited links.
    pub capacity_scale: Option<f64>,
    /// Only undersea lines get a bandwidth (see `FleetOptions::undersea_only`).
    pub undersea_only: bool,
    /// The controller places the classes' traffic (default); false: routes
    /// alone, to compare.
    pub placement: bool,
    /// Relays probe with [`ProbeConfig::tolerant`] instead of the defaults:
    /// for a machine so busy that the emulator's packets come tens of ms late.
    pub tolerant_probes: bool,
}

/// Gives a relay the probe settings for a starved host.
fn tolerant_probes(cfg: &mut relay::RelayConfig) {
    cfg.tuning.probe = ProbeConfig::tolerant();
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
    let events = load_events(&base, opts)?;
    runtime
        .block_on(run_async(base, pairs, events, opts))
        .map_err(|e| Failure::runtime(format!("lab failed: {e:#}")))
}

/// The run's events: from the scenario file, none, or `None` for the default
/// cut/restore (chosen by the paths in force once the fleet is ready).
fn load_events(
    base: &Topology,
    opts: &LabOptions,
) -> Result<Option<Vec<scenario::Event>>, Failure> {
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
            Ok(Some(events))
        }
        Scenario::None => Ok(Some(Vec::new())),
        // Chosen once the fleet is ready, by the paths in force.
        Scenario::Default => Ok(None),
    }
}

async fn run_async(
    base: Topology,
    pairs: Vec<(NodeIdx, NodeIdx)>,
    events: Option<Vec<scenario::Event>>,
    opts: &LabOptions,
) -> anyhow::Result<String> {
    // The lab carries its own services, three per class, ingress at the
    // student's city, egress at the teacher's, target the teacher's server:
    // audio over UDP (protected: two disjoint paths), video over UDP, and
    // signalling over TCP. The services of a topology given with `--topology`
    // are kept alongside (not the embedded world's samples: they listen on
    // fixed ports that other runs may hold).
    let mut topology = base.clone();
    let mut teachers = Vec::new();
    if opts.topology.is_none() {
        topology.services.clear();
    }
    let own_services = topology.services.len();
    for (i, (s, d)) in pairs.iter().enumerate() {
        let (socket, addr) = classes::teacher().await?;
        let signal = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let names = ClassServices {
            audio: format!(
                "class-{:03}-{}-{}",
                i + 1,
                topology.node(*s).id,
                topology.node(*d).id
            ),
            video: format!("class-{:03}-video", i + 1),
            signal: format!("class-{:03}-signal", i + 1),
        };
        let mut audio = class_service(&names.audio, Protocol::Udp, *s, *d, addr);
        audio.protect = true;
        topology.services.push(audio);
        topology
            .services
            .push(class_service(&names.video, Protocol::Udp, *s, *d, addr));
        topology.services.push(class_service(
            &names.signal,
            Protocol::Tcp,
            *s,
            *d,
            signal.local_addr()?,
        ));
        teachers.push((names, socket, signal));
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
        capacity_scale: opts.capacity_scale,
        undersea_only: opts.undersea_only,
        placement: opts.placement,
        tune_relay: if opts.tolerant_probes {
            tolerant_probes
        } else {
            FleetOptions::default().tune_relay
        },
        ..FleetOptions::default()
    };
    let fleet = Fleet::start_ready(topology, options, Duration::from_secs(60)).await?;
    let topology = fleet.topology.clone();
    let setup = started.elapsed();
    let controller = fleet
        .controller
        .as_ref()
        .map(|c| c.shared.clone())
        .ok_or_else(|| anyhow::anyhow!("no controller"))?;

    let events = match events {
        Some(events) => events,
        None => {
            let in_force: Vec<Vec<String>> = pairs
                .iter()
                .map(|(s, d)| {
                    controller::api::route(
                        &controller,
                        &topology.node(*s).id,
                        &topology.node(*d).id,
                    )
                    .map(|r| r.path)
                    .unwrap_or_default()
                })
                .collect();
            scenario::default_events(
                &topology,
                &busiest_links(&topology, &in_force),
                opts.duration,
            )
        }
    };
    let downs_at_start = link_downs(&fleet);
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
    for service in topology.services.iter().take(own_services) {
        let at = &topology.node(service.ingress_node).id;
        match fleet.relays[at].ingress_addrs.get(&service.name) {
            Some(addr) => eprintln!(
                "lab: service {} ({}) from the topology: in at {at} on {addr}, out at {} to {}",
                service.name,
                service.protocol,
                topology.node(service.egress_node).id,
                service.target
            ),
            None => eprintln!(
                "lab: service {} from the topology has no ingress at {at}",
                service.name
            ),
        }
    }
    for e in &events {
        eprintln!(
            "lab: scheduled at {:>5.1} s: {}",
            e.at.as_secs_f64(),
            e.describe(&topology)
        );
    }

    let mut running = Vec::new();
    let mut video_services = Vec::new();
    let count = pairs.len() as u32;
    for (i, ((names, socket, signal), (s, d))) in teachers.into_iter().zip(&pairs).enumerate() {
        // Independent classrooms do not send in step: spread the classes'
        // packets over the video interval instead of one burst per tick.
        let phase = 2 * classes::AUDIO_INTERVAL * i as u32 / count.max(1);
        let relay = &fleet.relays[&topology.node(*s).id];
        let ingress = |service: &str| {
            relay
                .ingress_addrs
                .get(service)
                .copied()
                .ok_or_else(|| anyhow::anyhow!("service {service} has no ingress"))
        };
        let (audio, video, signal_ingress) = (
            ingress(&names.audio)?,
            ingress(&names.video)?,
            ingress(&names.signal)?,
        );
        let (student, teacher) = (topology.node(*s).id.clone(), topology.node(*d).id.clone());
        video_services.push(names.video.clone());
        running.push(
            Class::start(
                names.audio,
                student,
                teacher,
                socket,
                audio,
                video,
                signal,
                signal_ingress,
                phase,
            )
            .await?,
        );
    }

    // A class's path: where its video goes. With placement, the ingress puts
    // each flow on one of the pair's placed paths; else the route in force.
    let node_of_key: std::collections::HashMap<u32, String> = (topology.nodes.iter())
        .map(|n| (topology::wire_key(&n.id), n.id.clone()))
        .collect();
    let route_of = |i: usize| {
        let c = &running[i];
        let placed = fleet
            .relay(&c.student_city)
            .placed_path(&video_services[i], c.student_addr)
            .and_then(|keys| {
                let hops: Option<Vec<String>> =
                    keys.iter().map(|k| node_of_key.get(k).cloned()).collect();
                Some(
                    std::iter::once(c.student_city.clone())
                        .chain(hops?)
                        .collect(),
                )
            });
        placed.unwrap_or_else(|| {
            controller::api::route(&controller, &c.student_city, &c.teacher_city)
                .map(|r| r.path)
                .unwrap_or_default()
        })
    };
    let mut paths: Vec<Vec<String>> = (0..running.len()).map(route_of).collect();
    // The floor: the emulator alone on each distinct path in force, meanwhile.
    let mut floors: Vec<floor::FloorPath> = Vec::new();
    for p in &paths {
        if floors.iter().any(|f| &f.path == p) {
            continue;
        }
        let seed = opts.seed ^ (floors.len() as u64 + 1);
        if let Some(f) = floor::FloorPath::start(
            &topology,
            p,
            FleetOptions::default().jitter,
            opts.loss,
            seed,
        )
        .await?
        {
            floors.push(f);
        }
    }
    let start_paths = paths.clone();
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
                "{}lab: {:>5.1} s  {}",
                if std::io::stderr().is_terminal() {
                    "\n"
                } else {
                    ""
                },
                now.as_secs_f64(),
                e.describe(&topology)
            );
        }
        for (i, c) in running.iter().enumerate() {
            let path = route_of(i);
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
                .map(|e| format!("{:.1} s {}", e.at, e.what));
            progress(&running, &fleet, now, opts.duration, last.as_deref());
        }
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    for c in &running {
        c.stop_sending();
    }
    for f in &floors {
        f.stop_sending();
    }
    // Let packets still in flight (up to a few hundred ms on long paths) land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let downs = downs_during(&fleet, &downs_at_start, &log);
    let mut report = render_report(
        &base,
        &topology,
        &running,
        &RunRecord {
            setup,
            duration: opts.duration,
            events: &log,
            reroutes: &reroutes,
            downs: &downs,
            paths: &paths,
            run_started: run_started.into_std(),
            tolerant_probes: opts.tolerant_probes,
        },
    );
    report.push_str(&floor_report(&running, &start_paths, &floors));
    report.push_str(&undersea_usage(&fleet, &paths, run_started.elapsed()));
    drop(floors);
    drop(running);
    if let Some(tasks) = api_server {
        tasks.shutdown(Duration::from_secs(2)).await;
    }
    fleet.shutdown().await;
    Ok(report)
}

/// The floor table: per path, the emulator alone against the classes that
/// started on it, and whether the machine kept up.
fn floor_report(
    classes: &[Class],
    start_paths: &[Vec<String>],
    floors: &[floor::FloorPath],
) -> String {
    if floors.is_empty() {
        return String::new();
    }
    let mut table = Table::new(&[
        "path",
        ">links' delay ms",
        ">floor p50 ms",
        ">floor p99 ms",
        ">floor loss",
        ">classes",
        ">classes' p50 ms",
        ">overlay p50 above floor ms",
    ]);
    let mut late: Vec<(String, u64)> = Vec::new();
    let mut above: Vec<i64> = Vec::new();
    // Classes over budget at p99, and how many of them only by the machine.
    let mut over = (0usize, 0usize);
    for f in floors {
        let st = f.stats.lock().unwrap_or_else(|p| p.into_inner());
        let (p50, p99) = (
            st.one_way_us.value_at_quantile(0.5),
            st.one_way_us.value_at_quantile(0.99),
        );
        let on: Vec<&Class> = classes
            .iter()
            .zip(start_paths)
            .filter(|(_, p)| *p == &f.path)
            .map(|(c, _)| c)
            .collect();
        let mut all = classes::latency_histogram();
        for c in &on {
            let _ = all.add(&c.stats.lock().unwrap_or_else(|p| p.into_inner()).one_way_us);
        }
        // Over budget, but within it once the machine's own lateness (the
        // floor's p99 above the links' delay) is taken off: not the overlay's doing.
        for c in &on {
            let p = c
                .stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .one_way_us
                .value_at_quantile(0.99);
            if p > BUDGET_US {
                over.0 += 1;
                if p.saturating_sub(p99.saturating_sub(f.delay_us)) <= BUDGET_US {
                    over.1 += 1;
                }
            }
        }
        let class_p50 = all.value_at_quantile(0.5);
        let cost = class_p50 as i64 - p50 as i64;
        above.push(cost);
        let lateness = p99.saturating_sub(f.delay_us);
        if st.received > 0 && Duration::from_micros(lateness) > floor::KEEP_UP_P99 {
            late.push((f.path.join(" "), lateness));
        }
        let loss = if st.sent == 0 {
            0.0
        } else {
            100.0 * (1.0 - st.received.min(st.sent) as f64 / st.sent as f64)
        };
        table.row(vec![
            f.path.join(" "),
            ms(f.delay_us),
            ms(p50),
            ms(p99),
            format!("{loss:.2}%"),
            on.len().to_string(),
            ms(class_p50),
            format!("{:.1}", cost as f64 / 1000.0),
        ]);
    }
    above.sort_unstable();
    let mut out = format!(
        "\nfloor (the emulator alone on the same paths, no relays, in this run):\n{}",
        crate::table::indent(&table.render())
    );
    out.push_str(&format!(
        "overlay above the floor at p50: median {:.1} ms, worst {:.1} ms over {} paths\n",
        above[above.len() / 2] as f64 / 1000.0,
        above.last().copied().unwrap_or(0) as f64 / 1000.0,
        above.len()
    ));
    if let Some((path, worst)) = late.iter().max_by_key(|(_, l)| *l) {
        out.push_str(&format!(
            "the machine cannot keep up: the emulator alone is {} ms late at p99 on {path} \
             ({} of {} paths more than {} ms late); latency that high is the machine's, not the overlay's\n",
            ms(*worst),
            late.len(),
            floors.len(),
            floor::KEEP_UP_P99.as_millis()
        ));
        out.push_str(&format!(
            "classes over the {} ms budget at p99: {}, of which {} only by the machine's lateness \
             (within budget once the floor's p99 above the links' delay is taken off)\n",
            BUDGET_US / 1000,
            over.0,
            over.1
        ));
    } else {
        out.push_str(&format!(
            "the machine kept up: the emulator alone is within {} ms of the links' delay at p99 on every path\n",
            floor::KEEP_UP_P99.as_millis()
        ));
    }
    out
}

/// Per link of the topology, how many times either end has declared it down.
fn link_downs(fleet: &Fleet) -> Vec<u64> {
    let t = &fleet.topology;
    t.links
        .iter()
        .map(|l| {
            let (a, b) = (&t.node(l.a).id, &t.node(l.b).id);
            fleet.relays[a].link_downs(b) + fleet.relays[b].link_downs(a)
        })
        .collect()
}

/// Link-downs during the run: on links the scenario or the lab's API cut or
/// impaired (expected), and on the others (false: nothing happened to the link).
#[derive(Debug, Default)]
struct Downs {
    expected: u64,
    /// (a, b, times) of each link declared down that no event touched.
    false_downs: Vec<(String, String, u64)>,
}

fn downs_during(fleet: &Fleet, at_start: &[u64], log: &[api::LoggedEvent]) -> Downs {
    let t = &fleet.topology;
    let mut downs = Downs::default();
    for ((l, now), before) in t.links.iter().zip(link_downs(fleet)).zip(at_start) {
        let n = now.saturating_sub(*before);
        if n == 0 {
            continue;
        }
        let (a, b) = (&t.node(l.a).id, &t.node(l.b).id);
        let touched = log
            .iter()
            .filter_map(|e| e.broke.as_ref())
            .any(|(x, y)| (x == a && y == b) || (x == b && y == a));
        if touched {
            downs.expected += n;
        } else {
            downs.false_downs.push((a.clone(), b.clone(), n));
        }
    }
    downs
}

/// Which undersea lines carried how much: packets each way through the line's
/// emulator (media, probes and QUIC control alike), and the classes routed over
/// it when the run ended.
/// Per undersea line: packets each way, the mean load each way over the run
/// (and its share of the emulated bandwidth, with `--capacity-scale`), packets
/// its queue dropped, and how many classes used it at the end.
fn undersea_usage(fleet: &Fleet, paths: &[Vec<String>], ran: Duration) -> String {
    let t = &fleet.topology;
    let mut table = Table::new(&[
        "line",
        "a",
        "b",
        ">packets a→b",
        ">packets b→a",
        ">Mbit/s a→b",
        ">Mbit/s b→a",
        ">queue drops",
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
        let rate_kbps = link.handle().params().rate_kbps;
        let load = |d: &emulator::DirectionStats| {
            let mbps = d.forwarded_bytes as f64 * 8.0 / ran.as_secs_f64().max(1e-3) / 1e6;
            match rate_kbps {
                Some(kbps) => format!("{mbps:.2} ({:.0}%)", mbps * 1e5 / kbps as f64),
                None => format!("{mbps:.2}"),
            }
        };
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
            load(&stats.a_to_b),
            load(&stats.b_to_a),
            (stats.a_to_b.dropped_congestion + stats.b_to_a.dropped_congestion).to_string(),
            on_it.to_string(),
        ]);
    }
    if !any {
        return String::new();
    }
    format!(
        "\nundersea lines (load: mean over the run, with its share of the emulated bandwidth when limited):\n{}",
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

/// The names of a class's services; the audio service's name is the class's.
struct ClassServices {
    audio: String,
    video: String,
    signal: String,
}

/// A class whose path in force changed during the run.
#[derive(Debug, Clone)]
struct Reroute {
    at: Duration,
    class: String,
    from: String,
    to: String,
}

/// Links ordered by how many of `paths` (node ids; the paths in force) cross
/// them, busiest first.
fn busiest_links(t: &Topology, paths: &[Vec<String>]) -> Vec<(usize, topology::LinkIdx)> {
    let mut uses = vec![0usize; t.links.len()];
    for p in paths {
        for w in p.windows(2) {
            if let Some(l) = t
                .node_idx(&w[0])
                .zip(t.node_idx(&w[1]))
                .and_then(|(a, b)| t.link_between(a, b))
            {
                uses[l.get()] += 1;
            }
        }
    }
    let mut v: Vec<(usize, topology::LinkIdx)> = uses
        .into_iter()
        .enumerate()
        .filter(|(_, n)| *n > 0)
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
    // Loss among packets older than each stream's newest arrival: those still
    // in flight (a few hundred ms of them on long paths) are not lost.
    let (mut lost, mut settled) = (0, 0);
    let mut p99 = classes::latency_histogram();
    for c in running {
        let st = c.stats.lock().unwrap_or_else(|p| p.into_inner());
        for (l, n) in [st.audio.settled(1), st.video.settled(2)] {
            lost += l;
            settled += n;
        }
        let _ = p99.add(&st.one_way_us);
    }
    let loss = if settled == 0 {
        0.0
    } else {
        100.0 * lost as f64 / settled as f64
    };
    // On a terminal the line rewrites itself; in a file or pipe each is a line.
    let (start, end) = if std::io::stderr().is_terminal() {
        ("\r", "   ")
    } else {
        ("", "\n")
    };
    eprint!(
        "{start}[{:>4.0}s / {:.0}s] links up {}/{} · classes {} · p99 {} ms · loss {loss:.2}% · last event: {}{end}",
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

/// Which pairs of cities have a second path (link-disjoint at least) for the
/// topology's expected delays: without one, a protected service's datagrams
/// go once. Computed once for all classes.
fn second_path_finder(t: &Topology) -> impl Fn(&str, &str) -> bool + '_ {
    let g = topology::paths::Graph::from_topology(t);
    let m = topology::paths::Metric::expected_delay(t);
    let routes = topology::paths::Routes::compute(&g, &m);
    move |a, b| {
        let (Some(a), Some(b)) = (t.node_idx(a), t.node_idx(b)) else {
            return false;
        };
        routes.path(&g, &m, a, b).is_some_and(|first| {
            topology::disjoint::second_path(&g, &m, &first, |from| routes.path(&g, &m, from, b))
                .is_ok()
        })
    }
}

/// The sum of the links' expected delays along `path` (node ids), µs.
fn path_delay_us(t: &Topology, path: &[String]) -> u64 {
    path.windows(2)
        .filter_map(|w| {
            let l = t.link_between(t.node_idx(&w[0])?, t.node_idx(&w[1])?)?;
            Some(t.link(l).delay_us)
        })
        .sum()
}

/// What happened in a run, besides what the classes measured.
struct RunRecord<'a> {
    setup: Duration,
    duration: Duration,
    /// (seconds from the start of traffic, what) of each event.
    events: &'a [api::LoggedEvent],
    reroutes: &'a [Reroute],
    downs: &'a Downs,
    /// Each class's path in force at the end.
    paths: &'a [Vec<String>],
    run_started: std::time::Instant,
    /// The relays probed with `--tolerant-probes`.
    tolerant_probes: bool,
}

fn render_report(base: &Topology, t: &Topology, classes: &[Class], run: &RunRecord) -> String {
    let RunRecord {
        setup,
        duration,
        events,
        reroutes,
        downs,
        paths,
        run_started,
        tolerant_probes,
    } = *run;
    let probe = if tolerant_probes {
        ProbeConfig::tolerant()
    } else {
        ProbeConfig::default()
    };
    let mut out = format!(
        "\nlab report: {} relays, {} emulated links, {} classes, {:.0} s of traffic (setup {:.1} s)\n\
         probes every {} ms, a link down after {} lost ({})\n\n",
        t.nodes.len(),
        t.links.len(),
        classes.len(),
        duration.as_secs_f64(),
        setup.as_secs_f64(),
        probe.interval.as_millis(),
        probe.down_after,
        if tolerant_probes { "--tolerant-probes" } else { "the defaults" },
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
        ">audio lost",
        ">audio gap ms",
        ">video lost",
        ">video gap ms",
    ]);
    let mut all = classes::latency_histogram();
    let (mut sent, mut received, mut within) = (0u64, 0u64, 0usize);
    let mut signals = (0u64, 0u64);
    let (mut audio, mut video) = ((0u64, 0u64), (0u64, 0u64));
    // Audio of a class no second path can serve (a single-homed city at one
    // end) goes once, so its losses are counted apart from protected audio's.
    let (mut unprotectable, mut unprotected_audio) = (Vec::new(), (0u64, 0u64));
    let second_path_exists = second_path_finder(base);
    for (i, c) in classes.iter().enumerate() {
        let st = c.stats.lock().unwrap_or_else(|p| p.into_inner());
        // The path in force at the end of the run (the placed path its video
        // flow is on, else the route), with how often it changed, and the
        // delay its links imply.
        let path = paths.get(i).cloned().unwrap_or_default();
        let changes = reroutes.iter().filter(|r| r.class == c.name).count();
        let mut hops = if path.is_empty() {
            "-".to_string()
        } else {
            path.join(" ")
        };
        if changes > 0 {
            hops.push_str(&format!(" ({changes}×)"));
        }
        let expected = path_delay_us(base, &path);
        let _ = all.add(&st.one_way_us);
        sent += st.sent;
        received += st.received.min(st.sent);
        if st.received > 0 && st.one_way_us.value_at_quantile(0.99) <= BUDGET_US {
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
            st.audio.lost().to_string(),
            st.audio.longest_gap.as_millis().to_string(),
            st.video.lost().to_string(),
            st.video.longest_gap.as_millis().to_string(),
        ]);
        signals.0 += st.signals_ok;
        signals.1 += st.signal_breaks;
        if second_path_exists(&c.student_city, &c.teacher_city) {
            audio.0 += st.audio.lost();
            audio.1 += st.audio.sent;
        } else {
            unprotectable.push(c.name.clone());
            unprotected_audio.0 += st.audio.lost();
            unprotected_audio.1 += st.audio.sent;
        }
        video.0 += st.video.lost();
        video.1 += st.video.sent;
    }
    out.push_str(&table.render());
    if !events.is_empty() {
        out.push_str("\nevents:\n");
        for e in events {
            out.push_str(&format!("  {:>6.1} s  {}\n", e.at, e.what));
        }
    }
    if !reroutes.is_empty() {
        out.push_str("\nreroutes (path in force changed):\n");
        // Each reroute's own gap: the longest silence of the class's video (not
        // protected, so it follows the path in force) that ended within 1.5 s
        // of the reroute being seen.
        let mut r = Table::new(&[">at s", "class", "from", "to", ">video gap at it ms"]);
        for x in reroutes {
            let gap = classes
                .iter()
                .find(|c| c.name == x.class)
                .map(|c| {
                    c.stats
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .video
                        .gap_near(run_started + x.at, Duration::from_millis(1500))
                        .map_or_else(
                            || format!("<{}", classes::NOTED_GAP.as_millis()),
                            |g| g.as_millis().to_string(),
                        )
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
    out.push_str(&format!(
        "streams: audio (protected) {} of {} packets lost, video {} of {} lost\n",
        audio.0, audio.1, video.0, video.1
    ));
    if !unprotectable.is_empty() {
        out.push_str(&format!(
            "  audio sent once, no second path exists (a single link joins a city to the fleet): {} of {} lost, on {}\n",
            unprotected_audio.0,
            unprotected_audio.1,
            unprotectable.join(", ")
        ));
    }
    let false_downs: u64 = downs.false_downs.iter().map(|d| d.2).sum();
    out.push_str(&format!(
        "link-downs: {} on links the scenario or the API cut or impaired, {false_downs} false (on links nothing happened to){}\n",
        downs.expected,
        downs
            .false_downs
            .iter()
            .map(|(a, b, n)| format!(" {a}–{b}×{n}"))
            .collect::<Vec<_>>()
            .join(",")
    ));
    if false_downs > 0 && !tolerant_probes {
        out.push_str(
            "  on a machine too busy for the lab (see the emulator's lateness below), \
             `--tolerant-probes` lets a link be silent about 150 ms instead of 50 before it is down\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_links_counts_every_link_the_paths_cross_the_first_too() {
        let t = topology::world().expect("world");
        let first = t.link(topology::LinkIdx(0));
        let (a, b) = (t.node(first.a).id.clone(), t.node(first.b).id.clone());
        let paths = vec![vec![a.clone(), b.clone()], vec![b, a], Vec::new()];
        assert_eq!(busiest_links(&t, &paths), vec![(2, topology::LinkIdx(0))]);
    }
}
