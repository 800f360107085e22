//! Tells the tasks that carry TCP streams when a link under one of their
//! streams goes down, so that a session resumes over another path at once
//! instead of waiting for QUIC's idle timeout on a dead connection.
//!
//! Each link has a *down epoch*, bumped by its actor at every down edge (its
//! probes failed, its connection closed). A task notes the epoch of each link
//! it uses when it starts using it; the link is lost to it once the epoch
//! moves. One writer per link (its actor); the epochs and the wake-up travel
//! in one `watch`, so a task never misses an edge between looking and waiting.

use std::collections::HashMap;

use tokio::sync::watch;

/// Down epochs of the links, by peer node key.
#[derive(Debug)]
pub struct LinkDowns {
    epochs: watch::Sender<HashMap<u32, u64>>,
}

impl Default for LinkDowns {
    fn default() -> Self {
        LinkDowns {
            epochs: watch::Sender::new(HashMap::new()),
        }
    }
}

impl LinkDowns {
    /// The link to `peer` went down: streams over it are lost.
    pub fn went_down(&self, peer: u32) {
        self.epochs
            .send_modify(|e| *e.entry(peer).or_default() += 1);
    }

    /// The link to `peer`'s down epoch now.
    pub fn epoch(&self, peer: u32) -> u64 {
        self.epochs.borrow().get(&peer).copied().unwrap_or(0)
    }

    pub fn subscribe(&self) -> watch::Receiver<HashMap<u32, u64>> {
        self.epochs.subscribe()
    }
}

/// A link a stream runs over, as it was when the stream started using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    pub peer: u32,
    pub epoch: u64,
}

impl Watched {
    pub fn now(downs: &LinkDowns, peer: u32) -> Watched {
        Watched {
            peer,
            epoch: downs.epoch(peer),
        }
    }
}

/// Resolves with the first of `links` that goes down (cancel-safe).
pub async fn lost(rx: &mut watch::Receiver<HashMap<u32, u64>>, links: &[Watched]) -> u32 {
    loop {
        {
            let epochs = rx.borrow_and_update();
            let moved = links
                .iter()
                .find(|l| epochs.get(&l.peer).copied().unwrap_or(0) != l.epoch);
            if let Some(l) = moved {
                return l.peer;
            }
        }
        if rx.changed().await.is_err() {
            // The relay is going away; its shutdown ends the task.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_down_edge_reaches_the_streams_over_that_link_only() {
        let downs = LinkDowns::default();
        downs.went_down(9);
        let mut rx = downs.subscribe();
        let over = [Watched::now(&downs, 1), Watched::now(&downs, 9)];
        {
            let wait = lost(&mut rx, &over);
            tokio::pin!(wait);
            // Another link's edge wakes the task but is not its loss.
            downs.went_down(2);
            assert!((&mut wait).now_or_never().is_none());
            downs.went_down(9);
            assert_eq!(wait.await, 9);
        }
        // An edge before the wait began is still seen.
        downs.went_down(1);
        assert_eq!(lost(&mut rx, &over).await, 1);
    }
}
