//! High availability on loopback: a real `etcd` started from the test (temp
//! data dir, random ports, killed at the end), controllers run as `controller`
//! processes (so a test can `kill -9`, stop and resume them), and the diamond's
//! relays in this process, each keeping a session with every controller.
//!
//! Without an `etcd` binary the HA tests are skipped with a message, unless
//! `OVERLAY_REQUIRE_ETCD` is set (CI sets it), when they fail.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use overlay::fleet::{Fleet, FleetOptions};
use tokio::time::Instant;

use super::diamond::{self, Stream};

/// The lease TTL the tests run with: etcd's minimum, so failover is quickest.
pub const LEASE_TTL_S: u64 = 2;

/// A free loopback TCP port, held (bound) until the caller drops the listener.
fn free_tcp() -> (SocketAddr, TcpListener) {
    let l = TcpListener::bind("127.0.0.1:0").expect("a free TCP port");
    (l.local_addr().expect("addr"), l)
}

/// A free loopback UDP port, held until the caller drops the socket.
fn free_udp() -> (SocketAddr, UdpSocket) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
    (s.local_addr().expect("addr"), s)
}

/// Sends `signal` (`STOP`, `CONT`, `KILL`) to a process.
fn signal(pid: u32, signal: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "kill -{signal} {pid}");
}

/// The `etcd` binary: `$OVERLAY_ETCD`, else `etcd` on the PATH.
fn etcd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OVERLAY_ETCD") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("etcd"))
            .find(|p| p.is_file())
    })
}

/// A single-member etcd on loopback.
pub struct Etcd {
    child: Option<Child>,
    binary: PathBuf,
    pub client: SocketAddr,
    peer: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Etcd {
    /// Starts etcd and waits (bounded) until it answers; `None`, with a
    /// message, if there is no etcd binary and `OVERLAY_REQUIRE_ETCD` is unset.
    pub async fn start_or_skip(test: &str) -> Option<Etcd> {
        let Some(binary) = etcd_binary() else {
            assert!(
                std::env::var_os("OVERLAY_REQUIRE_ETCD").is_none(),
                "OVERLAY_REQUIRE_ETCD is set but no `etcd` binary is on the PATH (apt-get install etcd-server)"
            );
            eprintln!("SKIPPED {test}: no `etcd` binary (apt-get install etcd-server; set OVERLAY_REQUIRE_ETCD=1 to make this a failure)");
            return None;
        };
        let mut etcd = Etcd {
            child: None,
            binary,
            client: free_tcp().0,
            peer: free_tcp().0,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        // A port found free can be taken by another test before etcd binds it
        // (seen in CI: `bind: address already in use`): then try fresh ports.
        for _ in 0..3 {
            etcd.spawn();
            if !etcd.exited_on_a_taken_port(Duration::from_secs(2)).await {
                break;
            }
            (etcd.client, etcd.peer) = (free_tcp().0, free_tcp().0);
            let _ = std::fs::remove_dir_all(etcd.dir.path().join("data"));
        }
        etcd.wait_healthy(Duration::from_secs(20)).await;
        Some(etcd)
    }

    /// Whether etcd exits within `limit` because a port was taken (false as
    /// soon as it answers, or if it is still running at `limit`).
    async fn exited_on_a_taken_port(&mut self, limit: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log =
                    std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
                return log.contains("address already in use");
            }
            if let Ok((200, _)) = daemon::admin::client::get(self.client, "/health").await {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    fn spawn(&mut self) {
        let (client, peer) = (
            format!("http://{}", self.client),
            format!("http://{}", self.peer),
        );
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("log file");
        let child = Command::new(&self.binary)
            .args(["--name", "ha-test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("ha-test={peer}")])
            .args(["--initial-cluster-state", "new"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("etcd running").id()
    }

    /// Waits until etcd's `/health` says so.
    pub async fn wait_healthy(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            if let Ok((200, body)) = daemon::admin::client::get(self.client, "/health").await {
                if body.contains("true") {
                    return;
                }
            }
            assert!(
                started.elapsed() < limit,
                "etcd not healthy within {limit:?}; its log: {}",
                std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// etcd stops answering (its connections stay open, requests hang).
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    pub fn endpoint(&self) -> String {
        self.client.to_string()
    }
}

/// A UDP proxy in front of a controller: relays dial its front address, it
/// relays each datagram to the controller from a socket per relay, and the
/// answers back. `drop_replies` blackholes the controller → relay direction
/// only (the controller still hears the relays; what it sends waits in QUIC's
/// retransmissions until the replies flow again).
pub struct UdpProxy {
    pub front: SocketAddr,
    drop_replies: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        // Aborting the task drops its JoinSet, which aborts the reply tasks.
        self.task.abort();
    }
}

impl UdpProxy {
    pub async fn start(backend: SocketAddr) -> UdpProxy {
        let front = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind proxy"),
        );
        let drop_replies = Arc::new(AtomicBool::new(false));
        let addr = front.local_addr().expect("addr");
        let (f, drop) = (front.clone(), drop_replies.clone());
        let task = tokio::spawn(async move {
            let mut replies = tokio::task::JoinSet::new();
            let mut upstreams: BTreeMap<SocketAddr, Arc<tokio::net::UdpSocket>> = BTreeMap::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                let Ok((n, src)) = f.recv_from(&mut buf).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let up = match upstreams.get(&src) {
                    Some(up) => up.clone(),
                    None => {
                        // Unconnected: a connected socket would take the ICMP
                        // "port unreachable" of a controller not yet listening
                        // as an error and stop receiving.
                        let Ok(up) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
                            continue;
                        };
                        let up = Arc::new(up);
                        let (up2, f2, drop2) = (up.clone(), f.clone(), drop.clone());
                        replies.spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            loop {
                                match up2.recv_from(&mut buf).await {
                                    Ok((n, from)) if from == backend => {
                                        if !drop2.load(Ordering::Relaxed) {
                                            let _ = f2.send_to(&buf[..n], src).await;
                                        }
                                    }
                                    Ok(_) => {}
                                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                                }
                            }
                        });
                        upstreams.insert(src, up.clone());
                        up
                    }
                };
                let _ = up.send_to(&buf[..n], backend).await;
            }
        });
        UdpProxy {
            front: addr,
            drop_replies,
            task,
        }
    }

    /// Blackholes (true) or passes (false) what the controller sends.
    pub fn drop_replies(&self, on: bool) {
        self.drop_replies.store(on, Ordering::Relaxed);
    }
}

/// A `controller` process with an `etcd:` section.
pub struct ControllerProcess {
    pub id: String,
    pub admin: SocketAddr,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Its ports, held from when they were chosen until its first start: the
    /// fleet binds many ephemeral ports meanwhile, and one of them took a
    /// controller's port ("Address already in use") in about 1 run in 3.
    held: Option<(UdpSocket, TcpListener)>,
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl ControllerProcess {
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.id);
        self.held = None;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(super::daemon_binary("controller"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("controller starts");
        self.child = Some(child);
    }

    /// `kill -9`: no clean-up, no lease revoked, no connection closed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn pause(&self) {
        signal(self.child.as_ref().expect("running").id(), "STOP");
    }

    pub fn resume(&self) {
        signal(self.child.as_ref().expect("running").id(), "CONT");
    }

    /// Its log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its `/metrics` samples by metric name (labels dropped; every series of
    /// the controller carries only `controller` unless noted), or `None` if it
    /// does not answer within a second.
    pub async fn metrics(&self) -> Option<BTreeMap<String, f64>> {
        let get = daemon::admin::client::get(self.admin, "/metrics");
        let (status, body) = tokio::time::timeout(Duration::from_secs(1), get)
            .await
            .ok()?
            .ok()?;
        if status != 200 {
            return None;
        }
        Some(
            body.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    let name = series.split('{').next()?;
                    let labels = series.split_once('{').map_or("", |(_, l)| l);
                    // Keep label sets beyond `controller` apart.
                    let key = match labels.split_once(',') {
                        Some((_, rest)) => format!("{name}{{{rest}"),
                        None => name.to_string(),
                    };
                    Some((key, value.parse().ok()?))
                })
                .collect(),
        )
    }

    /// Its `/metrics`, asked again for up to 5 s (a loaded machine can take
    /// more than a second to answer); panics with the end of its log if it
    /// never answers.
    pub async fn metrics_now(&self) -> BTreeMap<String, f64> {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(m) = self.metrics().await {
                return m;
            }
            if Instant::now() >= until {
                let log = self.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(20)..].join("\n");
                panic!(
                    "{} does not answer /metrics; its log ends:\n{tail}",
                    self.id
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// (leads, term) from its metrics.
    pub async fn leadership(&self) -> Option<(bool, u64)> {
        let m = self.metrics().await?;
        Some((
            m.get("overlay_controller_leader").copied()? == 1.0,
            m.get("overlay_controller_term").copied()? as u64,
        ))
    }
}

/// The diamond with controllers `c1`, `c2`, ... as processes, etcd, and a
/// media stream from `aaa` to a receiver behind `ddd`.
pub struct Ha {
    pub fleet: Fleet,
    pub controllers: Vec<ControllerProcess>,
    /// In front of each controller, in the same order.
    pub proxies: Vec<UdpProxy>,
    pub etcd: Etcd,
    _dir: tempfile::TempDir,
}

impl Ha {
    /// Starts etcd, the relays and `n` controllers (all at once), waits
    /// until one leads and every relay has its tables, then starts the
    /// stream. `None` if skipped.
    pub async fn start(test: &str, n: usize) -> Option<(Ha, Stream)> {
        Ha::start_with(test, n, diamond::options().tune_relay).await
    }

    /// [`Ha::start`] with the relays' config adjusted by `tune_relay`.
    pub async fn start_with(
        test: &str,
        n: usize,
        tune_relay: fn(&mut relay::RelayConfig),
    ) -> Option<(Ha, Stream)> {
        let etcd = Etcd::start_or_skip(test).await?;
        let dir = tempfile::tempdir().expect("tempdir");
        let receiver = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let target = receiver.local_addr().expect("addr");
        let ids: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
        // Each controller listens on `quic`; the topology (and so the
        // relays) has its proxy's address.
        let mut quic: Vec<(SocketAddr, UdpSocket)> = ids.iter().map(|_| free_udp()).collect();
        let mut proxies = Vec::new();
        for (addr, _) in &quic {
            proxies.push(UdpProxy::start(*addr).await);
        }
        let mut yaml = diamond::yaml(target);
        yaml += "controllers:\n";
        for (id, proxy) in ids.iter().zip(&proxies) {
            yaml += &format!("  - {{ id: {id}, addr: \"{}\" }}\n", proxy.front);
        }
        let topology = topology::parse("diamond.yaml", &yaml).expect("topology");
        std::fs::write(dir.path().join("topology.yaml"), &yaml).expect("write");
        let options = FleetOptions {
            external_controllers: topology.controllers.clone(),
            tune_relay,
            ..diamond::options()
        };
        let fleet = Fleet::start(topology, options).await.expect("fleet starts");
        let certs = dir.path().join("certs");
        let mut controllers = Vec::new();
        for (id, (addr, quic_socket)) in ids.iter().zip(quic.drain(..)) {
            fleet.ca().write_files(id, &certs).expect("certificates");
            let (admin, admin_listener) = free_tcp();
            let config = dir.path().join(format!("{id}.yaml"));
            std::fs::write(
                &config,
                format!(
                    "id: {id}\ntopology: topology.yaml\nlisten: \"{addr}\"\nadmin: \"{admin}\"\n\
                     cert: certs/{id}.pem\nkey: certs/{id}.key\nca: certs/ca.pem\n\
                     stability: {{ hold_ms: 1000, hold_down_ms: 3000 }}\n\
                     etcd:\n  endpoints: [\"{}\"]\n  prefix: /overlay-test/leader\n  lease_ttl_s: {LEASE_TTL_S}\n",
                    etcd.endpoint()
                ),
            )
            .expect("write");
            controllers.push(ControllerProcess {
                id: id.clone(),
                admin,
                log: dir.path().join(format!("{id}.log")),
                config,
                child: None,
                held: Some((quic_socket, admin_listener)),
            });
        }
        for c in &mut controllers {
            c.spawn();
        }
        let ha = Ha {
            fleet,
            controllers,
            proxies,
            etcd,
            _dir: dir,
        };
        ha.wait_converged(Duration::from_secs(30)).await;
        // The stream starts on converged routes.
        let ingress = ha.fleet.relay("aaa").ingress_addrs["media"];
        let stream = Stream::start(receiver, ingress, Duration::from_millis(5)).await;
        Some((ha, stream))
    }

    pub fn controller(&self, id: &str) -> &ControllerProcess {
        self.controllers
            .iter()
            .find(|c| c.id == id)
            .expect("a controller of the test")
    }

    /// The proxy in front of controller `id`.
    pub fn proxy(&self, id: &str) -> &UdpProxy {
        let i = self
            .controllers
            .iter()
            .position(|c| c.id == id)
            .expect("a controller of the test");
        &self.proxies[i]
    }

    pub fn controller_mut(&mut self, id: &str) -> &mut ControllerProcess {
        self.controllers
            .iter_mut()
            .find(|c| c.id == id)
            .expect("a controller of the test")
    }

    /// The controllers that say they lead now, with their terms.
    pub async fn leaders(&self) -> Vec<(String, u64)> {
        let mut leaders = Vec::new();
        for c in &self.controllers {
            if let Some((true, term)) = c.leadership().await {
                leaders.push((c.id.clone(), term));
            }
        }
        leaders
    }

    /// The term of each relay's routes in force.
    pub fn relay_terms(&self) -> BTreeMap<String, u64> {
        self.fleet
            .relays
            .iter()
            .map(|(id, r)| (id.clone(), r.routes().term))
            .collect()
    }

    /// Waits until every link is up, exactly one controller leads, the
    /// leader has every link in force, and every relay holds its current
    /// tables (its term and version). Returns (leader, term).
    pub async fn wait_converged(&self, limit: Duration) -> (String, u64) {
        self.wait_converged_with(limit, self.fleet.topology.links.len())
            .await
    }

    /// [`Ha::wait_converged`] with `links` of the links up (the rest cut).
    pub async fn wait_converged_with(&self, limit: Duration, links: usize) -> (String, u64) {
        let started = Instant::now();
        let mut last: String;
        loop {
            let links_ok = self.fleet.links_up() == links;
            let leaders = self.leaders().await;
            if let [(leader, term)] = &leaders[..] {
                let m = self.controller(leader).metrics().await.unwrap_or_default();
                let version = m.get("overlay_controller_table_version").copied();
                let up = m.get("overlay_controller_links{state=\"up\"}").copied();
                let relays_ok = self.fleet.relays.values().all(|r| {
                    let routes = r.routes();
                    routes.term == *term && Some(routes.version as f64) == version
                });
                if links_ok && relays_ok && up == Some(links as f64) {
                    return (leader.clone(), *term);
                }
                last = format!(
                    "leader {leader} term {term} version {version:?}, links up {up:?}, relays {:?}",
                    self.relay_terms()
                );
            } else {
                last = format!("leaders {leaders:?}");
            }
            if started.elapsed() > limit {
                let logs: Vec<String> = self
                    .controllers
                    .iter()
                    .map(|c| format!("--- {}:\n{}", c.id, tail(&c.log(), 40)))
                    .collect();
                panic!(
                    "not converged within {limit:?}: links up {}, {last}\n{}",
                    self.fleet.links_up(),
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn shutdown(mut self) {
        for c in &mut self.controllers {
            c.kill9();
        }
        self.fleet.shutdown().await;
    }
}

/// The last `n` lines of a log.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
