//! The `relay` binary under a service manager: `READY=1` once it listens, a
//! `STATUS=` line, `WATCHDOG=1` while it runs, `STOPPING=1` on SIGTERM. The
//! test plays systemd: it binds the `NOTIFY_SOCKET` datagram socket itself.

mod support;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::process::write_fleet;

/// The fleet of `support::process`; only `aaa` runs, so its one link stays
/// down. Returns `aaa`'s admin address.
fn write_node(dir: &Path) -> SocketAddr {
    write_fleet(dir)[0]
}

/// The relay process; killed if the test ends early. Its stderr goes to a file
/// that failure messages quote.
struct Relay {
    child: Child,
    log: std::path::PathBuf,
}

impl Relay {
    /// Starts `relay run` the way systemd does for `Type=notify`: `NOTIFY_SOCKET`
    /// set, and with a watchdog `WATCHDOG_USEC` plus `WATCHDOG_PID` naming the
    /// relay itself (a shell learns its pid, sets it, then `exec`s the relay).
    fn start(dir: &Path, socket: &Path, watchdog_usec: Option<u64>) -> Relay {
        let log = dir.join("relay.log");
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c");
        match watchdog_usec {
            Some(usec) => {
                cmd.arg(r#"WATCHDOG_PID=$$ exec "$0" "$@""#)
                    .env("WATCHDOG_USEC", usec.to_string());
            }
            None => {
                cmd.arg(r#"exec "$0" "$@""#).env_remove("WATCHDOG_USEC");
            }
        }
        let child = cmd
            .arg(env!("CARGO_BIN_EXE_relay"))
            .args(["run", "--config"])
            .arg(dir.join("aaa.yaml"))
            .env("NOTIFY_SOCKET", socket)
            .env_remove("WATCHDOG_PID")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn relay");
        Relay { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sigterm(&self) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success());
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                started.elapsed() < within,
                "relay exits within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every notification datagram, as its lines (`READY=1`, `STATUS=...`).
struct Manager {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Manager {
    fn bind(path: &Path) -> Manager {
        let socket = UnixDatagram::bind(path).expect("bind notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Manager {
            socket,
            seen: Vec::new(),
        }
    }

    /// Reads until a line satisfying `want` arrives or `within` passes; returns
    /// the line, or `None` at the deadline.
    fn until(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) => panic!("notify socket: {e}"),
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let mut found = None;
            for line in text.lines() {
                self.seen.push(line.to_string());
                if found.is_none() && want(line) {
                    found = Some(line.to_string());
                }
            }
            if found.is_some() {
                return found;
            }
        }
        None
    }
}

#[test]
fn relay_tells_systemd_it_is_ready_feeds_the_watchdog_and_says_when_it_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let admin = write_node(dir.path());
    let path = dir.path().join("notify.sock");
    let mut manager = Manager::bind(&path);
    let mut relay = Relay::start(dir.path(), &path, Some(200_000));

    let ready = manager.until(Duration::from_secs(15), |l| l == "READY=1");
    assert!(
        ready.is_some(),
        "READY=1 within 15 s; got {:?}; log:\n{}",
        manager.seen,
        relay.log()
    );
    // Ready means listening: the admin port accepts at once.
    std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(1))
        .expect("the admin API listens by the time READY=1 is sent");
    assert!(
        manager
            .seen
            .iter()
            .any(|l| l.starts_with("STATUS=forwarding, 0 of 1 links up")),
        "a status line with READY=1: {:?}",
        manager.seen
    );

    // A 200 ms watchdog is fed every 100 ms: two feeds well within 2 s.
    for n in 1..=2 {
        let fed = manager.until(Duration::from_secs(2), |l| l == "WATCHDOG=1");
        assert!(
            fed.is_some(),
            "WATCHDOG=1 #{n} within 2 s; got {:?}; log:\n{}",
            manager.seen,
            relay.log()
        );
    }

    relay.sigterm();
    let stopping = manager.until(Duration::from_secs(5), |l| l == "STOPPING=1");
    assert!(
        stopping.is_some(),
        "STOPPING=1 within 5 s of SIGTERM; got {:?}",
        manager.seen
    );
    let status = relay.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "log:\n{}", relay.log());
    let ready_at = manager.seen.iter().position(|l| l == "READY=1");
    let stopping_at = manager.seen.iter().position(|l| l == "STOPPING=1");
    assert!(ready_at < stopping_at, "{:?}", manager.seen);
}

#[test]
fn without_a_watchdog_the_relay_only_reports_readiness_and_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_node(dir.path());
    let path = dir.path().join("notify.sock");
    let mut manager = Manager::bind(&path);
    let relay = Relay::start(dir.path(), &path, None);

    let ready = manager.until(Duration::from_secs(15), |l| l == "READY=1");
    assert!(
        ready.is_some(),
        "READY=1 within 15 s; got {:?}; log:\n{}",
        manager.seen,
        relay.log()
    );
    // Half a second is five feeds' worth had a 200 ms watchdog been asked for.
    let fed = manager.until(Duration::from_millis(500), |l| l.starts_with("WATCHDOG"));
    assert_eq!(fed, None, "no watchdog was asked for: {:?}", manager.seen);
}
