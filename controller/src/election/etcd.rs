//! The etcd driver of the election: grants a lease, keeps it alive, campaigns
//! on the election under `prefix` with this controller's id, and every round
//! (a third of the TTL) reads which key etcd ranks first. It feeds each answer
//! to the [`Leadership`] core with the time its request was sent and publishes
//! the resulting [`ElectionView`].
//!
//! Every request has a deadline (a third of the TTL, at most a second) except
//! the campaign itself, which waits as long as another controller leads; it
//! runs beside the rounds, and the rounds notice etcd's silence. A campaign
//! that fails is retried on the same lease (etcd finds the key it made). A
//! lease that etcd no longer knows starts a new one. On shutdown the lease is
//! revoked (bounded) so a standby takes over at once rather than a TTL later.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::core::{Change, LeaderSeen, Leadership};
use super::ElectionView;
use crate::config::EtcdConfig;

/// Waits between attempts when etcd refuses or fails a request.
const RETRY: Duration = Duration::from_millis(500);

type Campaign = Pin<Box<dyn Future<Output = Result<Option<u64>, etcd_client::Error>> + Send>>;

/// How one connection to etcd ended.
enum End {
    Cancelled,
    /// The lease is gone (or could not be had): start again with a new one.
    Restart,
}

/// Runs the election until `cancel`, publishing on `view`.
pub async fn run(
    cfg: EtcdConfig,
    id: String,
    view: Arc<watch::Sender<ElectionView>>,
    cancel: CancellationToken,
) {
    let mut driver = Driver {
        rpc: rpc_timeout(cfg.lease_ttl),
        cfg,
        id,
        core: Leadership::new(),
        view,
        reachable: None,
    };
    loop {
        match driver.connected(&cancel).await {
            End::Cancelled => return,
            End::Restart => {}
        }
        driver.publish();
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// A request's deadline: a third of the TTL, at most a second.
fn rpc_timeout(ttl: Duration) -> Duration {
    (ttl / 3).min(Duration::from_secs(1))
}

struct Driver {
    cfg: EtcdConfig,
    id: String,
    rpc: Duration,
    core: Leadership,
    view: Arc<watch::Sender<ElectionView>>,
    /// Whether etcd answered last, for logging the change once.
    reachable: Option<bool>,
}

impl Driver {
    fn now() -> std::time::Instant {
        Instant::now().into_std()
    }

    /// Publishes the view and logs what changed.
    fn publish(&mut self) {
        let now = Self::now();
        match self.core.poll_change(now) {
            Some(Change::Leading { term }) => {
                info!(term, "elected leader: pushing route tables")
            }
            Some(Change::Stopped {
                term,
                lapsed: true,
            }) => warn!(
                term,
                "leadership lapsed: etcd has not confirmed the lease in time; no longer pushing route tables"
            ),
            Some(Change::Stopped {
                term,
                lapsed: false,
            }) => warn!(
                term,
                "leadership lost: another controller leads; no longer pushing route tables"
            ),
            None => {}
        }
        let new = self.core.view(now, &self.id);
        let reachable = new.etcd_reachable;
        if reachable != self.reachable {
            match reachable {
                Some(true) => info!(endpoints = ?self.cfg.endpoints, "etcd reachable"),
                _ => warn!(
                    endpoints = ?self.cfg.endpoints,
                    "etcd unreachable: a leader leads until its lease runs out, then no controller pushes tables; relays keep forwarding and repairing"
                ),
            }
            self.reachable = reachable;
        }
        self.view.send_if_modified(|v| {
            if *v == new {
                return false;
            }
            *v = new;
            true
        });
    }

    fn unreachable(&mut self, what: &str, e: impl std::fmt::Display) {
        if self.reachable != Some(false) {
            warn!("etcd {what}: {e}");
        }
        self.core.handle_unreachable();
    }

    /// One connection to etcd: a lease, its keep-alives, the campaign and the
    /// rounds, until the lease is lost or `cancel`.
    async fn connected(&mut self, cancel: &CancellationToken) -> End {
        let options = ConnectOptions::new()
            .with_connect_timeout(self.rpc)
            .with_keep_alive(Duration::from_secs(1), self.rpc)
            .with_keep_alive_while_idle(true);
        let connect = Client::connect(&self.cfg.endpoints, Some(options));
        let mut client = match tokio::time::timeout(self.rpc, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.unreachable("connection failed", e);
                return End::Restart;
            }
            Err(_) => {
                self.unreachable("connection failed", "timed out");
                return End::Restart;
            }
        };
        let ttl_s = self.cfg.lease_ttl.as_secs().max(1) as i64;
        let sent = Self::now();
        let lease = match tokio::time::timeout(self.rpc, client.lease_grant(ttl_s, None)).await {
            Ok(Ok(granted)) if granted.ttl() > 0 => {
                let ttl = Duration::from_secs(granted.ttl() as u64);
                self.core.handle_lease_granted(granted.id(), sent, ttl);
                granted.id()
            }
            Ok(Ok(granted)) => {
                warn!(ttl = granted.ttl(), "etcd granted a lease without a TTL");
                return End::Restart;
            }
            Ok(Err(e)) => {
                self.unreachable("lease grant failed", e);
                return End::Restart;
            }
            Err(_) => {
                self.unreachable("lease grant failed", "timed out");
                return End::Restart;
            }
        };
        self.publish();
        let end = self.campaign_and_keep(&mut client, lease, cancel).await;
        if let End::Cancelled = end {
            // Stop pushing first, then hand over at once.
            self.core.handle_lease_lost();
            self.publish();
            match tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(lease)).await {
                Ok(Ok(_)) => info!("lease revoked: another controller can lead at once"),
                Ok(Err(e)) => warn!("revoking the lease: {e}; it expires within its TTL"),
                Err(_) => warn!("revoking the lease timed out; it expires within its TTL"),
            }
        }
        end
    }

    fn campaign(&self, client: &Client, lease: i64) -> Campaign {
        let mut client = client.clone();
        let (name, value) = (self.cfg.prefix.clone(), self.id.clone());
        Box::pin(async move {
            let resp = client.campaign(name, value, lease).await?;
            Ok(resp.leader().map(|k| k.rev().max(0) as u64))
        })
    }

    async fn campaign_and_keep(
        &mut self,
        client: &mut Client,
        lease: i64,
        cancel: &CancellationToken,
    ) -> End {
        let mut campaign: Option<Campaign> = Some(self.campaign(client, lease));
        let mut retry_campaign: Option<Instant> = None;
        let mut keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
        let mut rounds = tokio::time::interval(self.cfg.lease_ttl / 3);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self
                .core
                .poll_timeout()
                .map(Instant::from_std)
                .filter(|d| *d > Instant::now());
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return End::Cancelled,
                won = async {
                    match campaign.as_mut() {
                        Some(c) => c.await,
                        None => std::future::pending().await,
                    }
                }, if campaign.is_some() => {
                    campaign = None;
                    match won {
                        Ok(Some(term)) => self.core.handle_campaign_won(lease, term, &self.id),
                        Ok(None) => retry_campaign = Some(Instant::now() + RETRY),
                        Err(e) => {
                            self.unreachable("campaign failed", e);
                            retry_campaign = Some(Instant::now() + RETRY);
                        }
                    }
                }
                _ = tokio::time::sleep_until(retry_campaign.unwrap_or_else(Instant::now)), if retry_campaign.is_some() => {
                    retry_campaign = None;
                    if !self.core.is_elected() {
                        campaign = Some(self.campaign(client, lease));
                    }
                }
                _ = rounds.tick() => {
                    let round = self.round(client, lease, &mut keeper);
                    let lost = tokio::select! {
                        biased;
                        _ = cancel.cancelled() => return End::Cancelled,
                        lost = round => lost,
                    };
                    if lost {
                        warn!(lease, "etcd no longer has this controller's lease; starting again with a new one");
                        self.core.handle_lease_lost();
                        return End::Restart;
                    }
                    // Not first and not campaigning (our key was removed):
                    // campaign again on the same lease.
                    if !self.core.is_elected() && campaign.is_none() && retry_campaign.is_none() {
                        retry_campaign = Some(Instant::now());
                    }
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
            }
            self.publish();
        }
    }

    /// One round: a keep-alive, then who leads. True if the lease is gone.
    async fn round(
        &mut self,
        client: &mut Client,
        lease: i64,
        keeper: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    ) -> bool {
        let rpc = self.rpc;
        if keeper.is_none() {
            match tokio::time::timeout(rpc, client.lease_keep_alive(lease)).await {
                Ok(Ok(k)) => *keeper = Some(k),
                Ok(Err(e)) => return self.keepalive_failed(e),
                Err(_) => {
                    self.unreachable("keep-alive failed", "timed out");
                    return false;
                }
            }
        }
        let Some((k, stream)) = keeper.as_mut() else {
            return false;
        };
        let sent = Self::now();
        let answer = tokio::time::timeout(rpc, async {
            k.keep_alive().await?;
            stream.message().await
        })
        .await;
        match answer {
            Ok(Ok(Some(resp))) => {
                let ttl = Duration::from_secs(resp.ttl().max(0) as u64);
                self.core.handle_keepalive(sent, ttl);
                if ttl.is_zero() {
                    return true;
                }
            }
            Ok(Ok(None)) => {
                *keeper = None;
                self.unreachable("keep-alive failed", "the stream ended");
                return false;
            }
            Ok(Err(e)) => {
                *keeper = None;
                return self.keepalive_failed(e);
            }
            Err(_) => {
                // The stream may hold a late answer; a fresh one is cleaner.
                *keeper = None;
                self.unreachable("keep-alive failed", "timed out");
                return false;
            }
        }
        match tokio::time::timeout(rpc, client.leader(self.cfg.prefix.clone())).await {
            Ok(Ok(resp)) => {
                let seen = resp.kv().map(|kv| LeaderSeen {
                    term: kv.create_revision().max(0) as u64,
                    lease: kv.lease(),
                    id: kv.value_str().unwrap_or("?").to_string(),
                });
                self.core.handle_leader(seen);
            }
            Ok(Err(e)) if e.to_string().contains("no leader") => self.core.handle_leader(None),
            Ok(Err(e)) => self.unreachable("leader query failed", e),
            Err(_) => self.unreachable("leader query failed", "timed out"),
        }
        false
    }

    /// A keep-alive error: true if it says the lease is gone.
    fn keepalive_failed(&mut self, e: etcd_client::Error) -> bool {
        let gone = e.to_string().contains("lease not found");
        if !gone {
            self.unreachable("keep-alive failed", e);
        }
        gone
    }
}
