//! Flow tables of UDP services, without their sockets: who a flow is, its
//! sequence numbers, when it was last seen, and the limits on how many there
//! may be. The driver keeps its sockets in the table's values and reads the
//! clock; every method here takes `now`.
//!
//! - [`IngressFlows`]: at a service's ingress, each client address is a flow
//!   with an id unique at this relay for the service.
//! - [`EgressFlows`]: at a service's egress, each (ingress node, service, flow
//!   id) is a flow with a value of the driver's (its socket toward the target).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use crate::drop_reason::DropReason;
use crate::sequence::{SeqWindow, Verdict};

#[derive(Debug)]
struct IngressFlow {
    client: SocketAddr,
    last_seen: Instant,
    seq: u32,
    /// The replies' sequence numbers, as they come back.
    replies: SeqWindow,
}

/// The flows of one service whose ingress is this relay.
#[derive(Debug, Default)]
pub struct IngressFlows {
    by_client: HashMap<SocketAddr, u32>,
    by_id: HashMap<u32, IngressFlow>,
    next_id: u32,
}

/// Whether a new flow may start, and how many may exist.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    pub max_flows: usize,
    /// A draining relay takes no new flows.
    pub draining: bool,
}

impl IngressFlows {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The id of `client`'s flow, if it has one.
    pub fn id_of(&self, client: SocketAddr) -> Option<u32> {
        self.by_client.get(&client).copied()
    }

    /// The flow id and sequence number of a datagram from `client`, starting a
    /// flow for a new client if `admission` allows.
    pub fn admit(
        &mut self,
        client: SocketAddr,
        now: Instant,
        admission: Admission,
    ) -> Result<(u32, u32), DropReason> {
        let id = match self.by_client.get(&client) {
            Some(id) => *id,
            None => {
                if admission.draining {
                    return Err(DropReason::Draining);
                }
                if self.by_id.len() >= admission.max_flows {
                    return Err(DropReason::FlowLimit);
                }
                let mut id = self.next_id;
                while self.by_id.contains_key(&id) {
                    id = id.wrapping_add(1);
                }
                self.next_id = id.wrapping_add(1);
                self.by_client.insert(client, id);
                self.by_id.insert(
                    id,
                    IngressFlow {
                        client,
                        last_seen: now,
                        seq: 0,
                        replies: SeqWindow::default(),
                    },
                );
                id
            }
        };
        let flow = self.by_id.get_mut(&id).ok_or(DropReason::UnknownFlow)?;
        flow.last_seen = now;
        let seq = flow.seq;
        flow.seq = flow.seq.wrapping_add(1);
        Ok((id, seq))
    }

    /// The client of flow `id`, for reply number `seq` that came back, and
    /// what the reply's number says; the flow is seen.
    pub fn reply_to(&mut self, id: u32, seq: u32, now: Instant) -> Option<(SocketAddr, Verdict)> {
        let flow = self.by_id.get_mut(&id)?;
        flow.last_seen = now;
        Some((flow.client, flow.replies.arrive(seq)))
    }

    /// Forgets flows idle since before `cutoff`: how many, and how many
    /// replies they were still missing (lost).
    pub fn expire(&mut self, cutoff: Instant) -> (usize, u64) {
        let before = self.by_id.len();
        let by_client = &mut self.by_client;
        let mut unseen = 0;
        self.by_id.retain(|_, f| {
            let keep = f.last_seen >= cutoff;
            if !keep {
                by_client.remove(&f.client);
                unseen += f.replies.unseen();
            }
            keep
        });
        (before - self.by_id.len(), unseen)
    }
}

/// A flow at its egress: (ingress node key, service key, flow id). Flow ids
/// are numbered per service at the ingress, so all three are needed.
pub type EgressKey = (u32, u32, u32);

#[derive(Debug)]
struct EgressFlow<V> {
    value: V,
    last_seen: Instant,
}

/// The flows whose egress is this relay, with a value per flow.
#[derive(Debug)]
pub struct EgressFlows<V> {
    flows: HashMap<EgressKey, EgressFlow<V>>,
    per_service: HashMap<u32, usize>,
}

impl<V> Default for EgressFlows<V> {
    fn default() -> Self {
        EgressFlows {
            flows: HashMap::new(),
            per_service: HashMap::new(),
        }
    }
}

impl<V> EgressFlows<V> {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Every flow's key and value, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&EgressKey, &V)> {
        self.flows.iter().map(|(k, f)| (k, &f.value))
    }

    /// Flows of one service.
    pub fn count_of(&self, service: u32) -> usize {
        self.per_service.get(&service).copied().unwrap_or(0)
    }

    /// The value of flow `key`, which is seen at `now`.
    pub fn get(&mut self, key: EgressKey, now: Instant) -> Option<&mut V> {
        let flow = self.flows.get_mut(&key)?;
        flow.last_seen = now;
        Some(&mut flow.value)
    }

    /// Whether a new flow of `service` fits under `max_flows`.
    pub fn has_room(&self, service: u32, max_flows: usize) -> bool {
        self.count_of(service) < max_flows
    }

    /// Starts flow `key` with `value` (replacing any flow under that key).
    pub fn insert(&mut self, key: EgressKey, value: V, now: Instant) {
        let old = self.flows.insert(
            key,
            EgressFlow {
                value,
                last_seen: now,
            },
        );
        if old.is_none() {
            *self.per_service.entry(key.1).or_default() += 1;
        }
    }

    /// Takes out flows idle since before `cutoff`; the caller drops them (and
    /// their sockets) outside any lock it holds.
    pub fn expire(&mut self, cutoff: Instant) -> Vec<V> {
        self.take_where(|_, f| f.last_seen < cutoff)
    }

    /// Takes out every flow of `service` (a reload removed or changed it).
    pub fn forget_service(&mut self, service: u32) -> Vec<V> {
        self.take_where(|k, _| k.1 == service)
    }

    fn take_where(&mut self, mut take: impl FnMut(&EgressKey, &EgressFlow<V>) -> bool) -> Vec<V> {
        let keys: Vec<EgressKey> = self
            .flows
            .iter()
            .filter(|(k, f)| take(k, f))
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            if let Some(f) = self.flows.remove(&key) {
                if let Some(n) = self.per_service.get_mut(&key.1) {
                    *n -= 1;
                    if *n == 0 {
                        self.per_service.remove(&key.1);
                    }
                }
                out.push(f.value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const OPEN: Admission = Admission {
        max_flows: 2,
        draining: false,
    };

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn each_client_is_a_flow_with_its_own_sequence() {
        let now = Instant::now();
        let mut f = IngressFlows::default();
        assert_eq!(f.admit(addr(1), now, OPEN), Ok((0, 0)));
        assert_eq!(f.admit(addr(1), now, OPEN), Ok((0, 1)));
        assert_eq!(f.admit(addr(2), now, OPEN), Ok((1, 0)));
        assert_eq!(f.admit(addr(3), now, OPEN), Err(DropReason::FlowLimit));
        let draining = Admission {
            draining: true,
            ..OPEN
        };
        assert_eq!(
            f.admit(addr(1), now, draining),
            Ok((0, 2)),
            "existing flows go on"
        );
        assert_eq!(f.admit(addr(4), now, draining), Err(DropReason::Draining));
        assert_eq!(f.reply_to(1, 0, now).map(|(c, _)| c), Some(addr(2)));
        assert_eq!(f.reply_to(7, 0, now), None);
    }

    #[test]
    fn idle_ingress_flows_expire_and_their_ids_are_not_reused_at_once() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(10);
        let mut f = IngressFlows::default();
        f.admit(addr(1), t0, OPEN).expect("admitted");
        f.admit(addr(2), t1, OPEN).expect("admitted");
        f.reply_to(0, 0, t0);
        f.reply_to(0, 3, t0);
        assert_eq!(
            f.expire(t0 + Duration::from_secs(5)),
            (1, 2),
            "replies 1 and 2 of the flow that went never came"
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f.admit(addr(3), t1, OPEN), Ok((2, 0)));
        assert_eq!(f.admit(addr(1), t1, OPEN), Err(DropReason::FlowLimit));
    }

    #[test]
    fn egress_flows_count_per_service_and_give_back_what_they_drop() {
        let t0 = Instant::now();
        let mut f: EgressFlows<&str> = EgressFlows::default();
        f.insert((1, 10, 0), "a", t0);
        f.insert((1, 10, 1), "b", t0 + Duration::from_secs(5));
        f.insert((2, 20, 0), "c", t0);
        assert_eq!((f.count_of(10), f.count_of(20)), (2, 1));
        assert!(!f.has_room(10, 2));
        assert_eq!(
            f.get((1, 10, 1), t0 + Duration::from_secs(9)),
            Some(&mut "b")
        );
        let mut expired = f.expire(t0 + Duration::from_secs(1));
        expired.sort();
        assert_eq!(expired, ["a", "c"]);
        assert_eq!((f.count_of(10), f.count_of(20)), (1, 0));
        assert_eq!(f.forget_service(10), ["b"]);
        assert!(f.is_empty());
    }
}
