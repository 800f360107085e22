//! Forgets idle UDP flows, at the ingress and at the egress, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use tracing::debug;

use crate::context::Context;
use crate::datapath::socket::core_now;

pub async fn expire_loop(ctx: Arc<Context>) {
    loop {
        // Read each round, so a reload's new timeout applies.
        let idle = ctx.live.load().cfg.tuning.flow_idle_timeout;
        let every = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::select! {
            biased;
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(cutoff) = core_now().checked_sub(idle) else {
            continue;
        };
        let mut expired = ctx.egress.expire(cutoff);
        for ingress in ctx.live.load().udp_ingress.values() {
            expired += ingress.expire(cutoff);
        }
        if expired > 0 {
            debug!(expired, "idle udp flows expired");
        }
    }
}
