//! `controller`: the controller daemon. `controller run --config controller.yaml`
//! runs it; `controller check-config --config controller.yaml` validates a config.
//! Exit codes: 0 ok, 64 bad usage or configuration, 1 runtime failure.

use std::process::ExitCode;

use anyhow::Context as _;
use controller::ControllerConfig;
use relay::daemon;

fn main() -> ExitCode {
    daemon::main(
        "controller",
        "Controller of the classroom overlay",
        ControllerConfig::load,
        |cfg| {
            format!(
                "controller config ok\n  id        {}\n  listen    {} (QUIC)\n  admin     {}\n  relays    {}\n",
                cfg.id,
                cfg.listen,
                cfg.admin.map_or_else(|| "off".to_string(), |a| a.to_string()),
                cfg.topology.nodes.len()
            )
        },
        |cfg| async move {
            let socket = std::net::UdpSocket::bind(cfg.listen)
                .with_context(|| format!("binding QUIC {}", cfg.listen))?;
            let admin = match cfg.admin {
                Some(addr) => Some(
                    std::net::TcpListener::bind(addr)
                        .with_context(|| format!("binding admin {addr}"))?,
                ),
                None => None,
            };
            controller::run(cfg, socket, admin, daemon::shutdown_signal()).await
        },
    )
}
