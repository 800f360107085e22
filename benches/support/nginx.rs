//! nginx as a plain UDP proxy for benchmarks: finds the binary and its stream
//! module, starts one instance per hop (1 worker, its own prefix, config, pid
//! file and error log in a temporary directory, no root paths) and reports
//! its worker's pid for CPU readings. Include with
//! `#[path = "support/nginx.rs"] mod nginx;`.

#![allow(dead_code)] // not every bench uses every helper

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How nginx ends a UDP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sessions {
    /// `proxy_responses 0`: no response expected, so nginx 1.22 ends the
    /// session as soon as the datagram is sent upstream: a new upstream
    /// socket (socket, connect, close) for every datagram.
    PerDatagram,
    /// `proxy_responses` unset: one session per client address, kept until
    /// `proxy_timeout` (10 min), so one upstream socket for the whole flow.
    Kept,
}

/// An nginx binary able to proxy UDP.
#[derive(Debug, Clone)]
pub struct Nginx {
    binary: PathBuf,
    /// `load_module` line, when the stream module is dynamic.
    load_module: Option<PathBuf>,
    pub version: String,
}

impl Nginx {
    /// The binary in `$NGINX`, on `PATH` or in `/usr/sbin`, with its stream
    /// module; `Err` says what is missing (the caller prints it and skips).
    pub fn find() -> Result<Nginx, String> {
        let binary = std::env::var_os("NGINX")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("PATH").and_then(|path| {
                    std::env::split_paths(&path)
                        .map(|d| d.join("nginx"))
                        .find(|p| p.is_file())
                })
            })
            .or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|p| p.is_file()))
            .ok_or("no nginx binary (apt-get install nginx-light libnginx-mod-stream)")?;
        let out = Command::new(&binary)
            .arg("-V")
            .output()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        // nginx prints its version and configure arguments on stderr.
        let info = String::from_utf8_lossy(&out.stderr).into_owned();
        let version = info
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("nginx version: "))
            .unwrap_or("nginx")
            .to_string();
        let args: Vec<&str> = info.split_whitespace().collect();
        let load_module = if args.contains(&"--with-stream") {
            None
        } else if args.contains(&"--with-stream=dynamic") {
            let dir = args
                .iter()
                .find_map(|a| a.strip_prefix("--modules-path="))
                .unwrap_or("/usr/lib/nginx/modules");
            let module = PathBuf::from(dir).join("ngx_stream_module.so");
            if !module.is_file() {
                return Err(format!(
                    "{version} has a dynamic stream module but {} is missing (apt-get install libnginx-mod-stream)",
                    module.display()
                ));
            }
            Some(module)
        } else {
            return Err(format!("{version} was built without the stream module"));
        };
        Ok(Nginx {
            binary,
            load_module,
            version,
        })
    }

    /// Starts one instance proxying UDP from a free loopback port to `target`.
    pub fn start(&self, target: SocketAddr, sessions: Sessions) -> Result<Instance, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        // A free port: bind, read it, let go. nginx binds it a moment later.
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| format!("free port: {e}"))?
            .port();
        let listen: SocketAddr = ([127, 0, 0, 1], port).into();
        let d = dir.path().display();
        // `rcvbuf`: the 4 MiB receive buffer the relays and plain forwarders ask for.
        let conf = format!(
            "{load}daemon off;\nmaster_process on;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 4096; }}\n\
             stream {{ server {{ listen {listen} udp rcvbuf=4194304; proxy_pass {target}; {responses}}} }}\n",
            load = self
                .load_module
                .as_ref()
                .map_or(String::new(), |m| format!("load_module {};\n", m.display())),
            responses = match sessions {
                Sessions::PerDatagram => "proxy_responses 0; ",
                Sessions::Kept => "",
            },
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).map_err(|e| format!("write config: {e}"))?;
        let error_log = dir.path().join("error.log");
        let master = Command::new(&self.binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start nginx: {e}"))?;
        let mut instance = Instance {
            master,
            worker: 0,
            listen,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while instance.worker == 0 {
            if let Ok(Some(status)) = instance.master.try_wait() {
                let log = std::fs::read_to_string(&error_log).unwrap_or_default();
                return Err(format!("nginx exited ({status}): {}", log.trim()));
            }
            if Instant::now() > deadline {
                return Err("nginx started no worker within 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
            instance.worker = child_of(instance.master.id()).unwrap_or(0);
        }
        Ok(instance)
    }
}

/// One running nginx: stopped (master and worker) when dropped.
#[derive(Debug)]
pub struct Instance {
    master: Child,
    /// The worker's pid: the process that forwards, whose CPU is read.
    pub worker: u32,
    pub listen: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop, the master takes its worker down with it.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.master.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.master.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = Command::new("kill")
            .args(["-KILL", &self.worker.to_string()])
            .status();
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

/// A child of `parent`, found through each process's `/proc/<pid>/stat`.
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name: state, then the parent's pid.
        let ppid: u32 = stat[stat.rfind(')')? + 2..]
            .split(' ')
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
}
