//! A relay as a daemon: start it, tell systemd, reload on a reload signal,
//! drain and stop on a stop signal.

use daemon::{Notifier, Signal, Signals};
use tracing::info;

use crate::config::RelayConfig;
use crate::runtime::{start, RelayHandle};

/// Runs a relay until a stop signal, then drains it (see [`crate::drain`]).
/// A reload signal re-reads the config through `load` and applies what changed
/// (see [`crate::reload`]); a config with errors is refused, logged, and the
/// running one stays. Tells systemd through `notify` that it is ready once
/// [`start`] returned (it listens and forwards on the topology's routes), keeps
/// the status line `systemctl status` shows current ("forwarding, 3 of 4 links
/// up, routes v7"), and says when it reloads and stops. A second stop signal
/// cuts the drain short. A task the relay cannot run without failing stops it
/// with an error.
pub async fn run(
    cfg: RelayConfig,
    socket: std::net::UdpSocket,
    admin: Option<std::net::TcpListener>,
    mut signals: impl Signals,
    notify: &Notifier,
    load: impl Fn() -> Result<RelayConfig, topology::ConfigErrors>,
) -> anyhow::Result<()> {
    // A daemon's host is what these limits are about (the lab shares one host).
    crate::host_limits::check_flow_capacity(&cfg);
    let mut relay = start(cfg, socket, admin).await?;
    let line = |relay: &RelayHandle| {
        let s = relay.status();
        let up = s.peers.iter().filter(|p| p.state == "up").count();
        let routes = match s.table_version {
            0 => "the topology's routes".to_string(),
            v => format!("routes v{v}"),
        };
        format!("forwarding, {up} of {} links up, {routes}", s.peers.len())
    };
    notify.ready(&line(&relay));
    let mut refresh = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            biased;
            signal = signals.recv() => match signal {
                Some(Signal::Reload) => {
                    notify.reloading();
                    match load() {
                        Ok(cfg) => match relay.reload(cfg).await {
                            Ok(summary) => info!(%summary, "reload applied"),
                            Err(e) => tracing::error!("reload refused, the running config stays: {e:#}"),
                        },
                        Err(errors) => tracing::error!(
                            "reload refused, the running config stays:\n{}",
                            errors.to_string().trim_end()
                        ),
                    }
                    notify.ready(&line(&relay));
                }
                Some(Signal::Stop) | None => break,
            },
            _ = relay.stopped() => {
                let why = relay.failure().unwrap_or_else(|| "stopped".to_string());
                relay.shutdown().await;
                anyhow::bail!("relay failed: {why}");
            }
            _ = refresh.tick(), if notify.is_active() => notify.status(&line(&relay)),
        }
    }
    notify.stopping();
    let grace = relay.config().tuning.drain_grace;
    tokio::select! {
        _ = relay.drain(grace) => {}
        Some(Signal::Stop) = signals.recv() => info!("second stop signal: drain cut short"),
    }
    relay.shutdown().await;
    Ok(())
}
