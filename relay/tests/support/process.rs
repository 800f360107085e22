//! Running the real `relay` binary: a two-node fleet on disk (CA, certificates,
//! topology, configs) and a child process whose log lines can be waited for.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

pub fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// A CA, certificates, a topology of `aaa`—`bbb` and a config per node.
/// A CA, certificates for `aaa` and `bbb`, a two-node topology, and a config
/// for each (`aaa.yaml`, `bbb.yaml`). Returns their admin addresses.
pub fn write_fleet(dir: &Path) -> [SocketAddr; 2] {
    pki::init_ca(&dir.join("ca"), false).expect("ca");
    for id in ["aaa", "bbb"] {
        pki::issue(&dir.join("ca"), id, &dir.join("certs"), false).expect("issue");
    }
    let topology = format!(
        "version: 1\nnodes:\n\
         \x20 - {{ id: aaa, city: A, country: JP, region: asia, lat: 35.68, lon: 139.69, addr: \"{}\" }}\n\
         \x20 - {{ id: bbb, city: B, country: US, region: na, lat: 34.05, lon: -118.24, addr: \"{}\" }}\n\
         links:\n  - {{ between: [aaa, bbb], kind: undersea }}\n",
        free_udp(),
        free_udp()
    );
    std::fs::write(dir.join("topology.yaml"), topology).expect("write topology");
    ["aaa", "bbb"].map(|id| {
        let admin = free_tcp();
        let config = format!(
            "node: {id}\ntopology: topology.yaml\ncert: certs/{id}.pem\nkey: certs/{id}.key\nca: ca/ca.pem\nadmin: \"{admin}\"\n"
        );
        std::fs::write(dir.join(format!("{id}.yaml")), config).expect("write config");
        admin
    })
}

/// A relay process whose stderr lines arrive on a channel.
pub struct Relay {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Relay {
    pub fn start(dir: &Path, id: &str, args: &[&str], env: &[(&str, &str)]) -> Relay {
        Relay::spawn(
            Command::new(env!("CARGO_BIN_EXE_relay")),
            dir,
            id,
            args,
            env,
        )
    }

    /// As [`Relay::start`], with the process's open-files limit at `nofile`
    /// (through util-linux `prlimit`).
    pub fn start_with_nofile(dir: &Path, id: &str, nofile: u32) -> Relay {
        let mut command = Command::new("prlimit");
        command
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_relay"));
        Relay::spawn(command, dir, id, &[], &[("RUST_LOG", "warn")])
    }

    fn spawn(
        mut command: Command,
        dir: &Path,
        id: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Relay {
        let mut child = command
            .args(args)
            .args(["run", "--config"])
            .arg(dir.join(format!("{id}.yaml")))
            .env_remove("OVERLAY_LOG_FORMAT")
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn relay");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Relay {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first stderr line (from now on) that satisfies `want`, within `within`.
    pub fn line(&mut self, within: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no such log line within {within:?}; stderr so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
