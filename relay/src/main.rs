//! `relay`: the relay daemon. `relay run --config relay.yaml` runs it;
//! `relay check-config --config relay.yaml` validates a config and everything it
//! names. Exit codes: 0 ok, 64 bad usage or configuration, 1 runtime failure.

use std::process::ExitCode;

use relay::RelayConfig;

fn main() -> ExitCode {
    daemon::main(
        "relay",
        "Relay daemon of the classroom overlay",
        RelayConfig::load,
        summary,
        |cfg, notify, path| async move {
            let (socket, admin) = daemon::quic::bind(cfg.listen, cfg.admin)?;
            let signals = daemon::OsSignals::new()?;
            let load = || RelayConfig::load(&path);
            relay::run(cfg, socket, admin, signals, &notify, load).await
        },
    )
}

fn summary(cfg: &RelayConfig) -> String {
    let t = &cfg.topology;
    let peers: Vec<&str> = t
        .links
        .iter()
        .filter_map(|l| l.other(cfg.node))
        .map(|n| t.node(n).id.as_str())
        .collect();
    let names = |f: &dyn Fn(&topology::Service) -> bool| -> String {
        let v: Vec<&str> = t
            .services
            .iter()
            .filter(|s| f(s))
            .map(|s| s.name.as_str())
            .collect();
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "relay config ok\n  node      {}\n  listen    {} (QUIC)\n  admin     {}\n  peers     {}\n  ingress   {}\n  egress    {}\n",
        cfg.node_id(),
        cfg.listen,
        cfg.admin.map_or_else(|| "off".to_string(), |a| a.to_string()),
        peers.join(", "),
        names(&|s| s.ingress_node == cfg.node),
        names(&|s| s.egress_node == cfg.node),
    )
}
