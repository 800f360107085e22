//! `controller`: the controller daemon. `controller run --config controller.yaml`
//! runs it; `controller check-config --config controller.yaml` validates a config.
//! Exit codes: 0 ok, 64 bad usage or configuration, 1 runtime failure.

use std::process::ExitCode;

use controller::ControllerConfig;

fn main() -> ExitCode {
    daemon::main(
        "controller",
        "Controller of the classroom overlay",
        ControllerConfig::load,
        |cfg| {
            let leader = match &cfg.etcd {
                None => "this controller alone (no etcd)".to_string(),
                Some(e) => format!(
                    "elected through etcd {} (prefix {}, lease {} s) among {} controllers",
                    e.endpoints.join(","),
                    e.prefix,
                    e.lease_ttl.as_secs(),
                    cfg.topology.controllers.len()
                ),
            };
            format!(
                "controller config ok\n  id        {}\n  listen    {} (QUIC)\n  admin     {}\n  relays    {}\n  leader    {}\n",
                cfg.id,
                cfg.listen,
                cfg.admin.map_or_else(|| "off".to_string(), |a| a.to_string()),
                cfg.topology.nodes.len(),
                leader
            )
        },
        |cfg, notify, path| async move {
            let (socket, admin) = daemon::quic::bind(cfg.listen, cfg.admin)?;
            let signals = daemon::OsSignals::new()?;
            let load = || ControllerConfig::load(&path);
            controller::run(cfg, socket, admin, signals, &notify, load).await
        },
    )
}
