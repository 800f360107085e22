//! What relays measured of each service's datagrams, as they report it: the
//! last [`WINDOW`] of reports per (reporting relay, service), summed into the
//! figures the API shows. The egress relay's reports are the clients'
//! datagrams (the forward direction); the ingress relay's, the replies.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use control_protocol::{delay_quantile_ms, ServiceReport, DELAY_BUCKETS_MS};
use serde::Serialize;
use topology::NodeIdx;

/// How far back the figures reach.
pub const WINDOW: Duration = Duration::from_secs(10);

/// One direction of a service over the last [`WINDOW`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    /// Datagrams that arrived (first copies).
    pub packets: u64,
    pub one_way_ms_p50: Option<f64>,
    pub one_way_ms_p99: Option<f64>,
    /// Lost over lost and arrived, 0 to 1.
    pub loss: f64,
    /// Reordered arrivals over arrivals, 0 to 1.
    pub reordered: f64,
    /// Second copies of protected datagrams dropped.
    pub duplicates: u64,
}

/// A relay's recent reports of one service, oldest first.
type Recent = VecDeque<(Instant, ServiceReport)>;

/// Recent reports per (reporting node, service name).
#[derive(Debug, Default)]
pub struct QualityBook {
    reports: Mutex<HashMap<(NodeIdx, String), Recent>>,
}

impl QualityBook {
    /// Takes in what `from` reported at `now`; forgets what is older than the window.
    pub fn add(&self, from: NodeIdx, reports: Vec<ServiceReport>, now: Instant) {
        // Each critical section is a few map updates; a poisoned lock is consistent.
        let mut book = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        for r in reports {
            book.entry((from, r.service.clone()))
                .or_default()
                .push_back((now, r));
        }
        book.retain(|_, q| {
            while q
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
            {
                q.pop_front();
            }
            !q.is_empty()
        });
    }

    /// The figures of `service` as `at` measured them over the window before
    /// `now`; `None` when it reported nothing then.
    pub fn quality(&self, at: NodeIdx, service: &str, now: Instant) -> Option<Quality> {
        let book = self.reports.lock().unwrap_or_else(|p| p.into_inner());
        let recent = book.get(&(at, service.to_string()))?;
        let mut sum = ServiceReport {
            service: service.to_string(),
            received: 0,
            lost: 0,
            reordered: 0,
            duplicates: 0,
            delay_buckets: vec![0; DELAY_BUCKETS_MS.len() + 1],
        };
        let mut any = false;
        for (_, r) in recent
            .iter()
            .filter(|(t, _)| now.duration_since(*t) <= WINDOW)
        {
            any = true;
            sum.received += r.received;
            sum.lost += r.lost;
            sum.reordered += r.reordered;
            sum.duplicates += r.duplicates;
            for (s, n) in sum.delay_buckets.iter_mut().zip(&r.delay_buckets) {
                *s += n;
            }
        }
        let ratio = |n: u64, of: u64| if of == 0 { 0.0 } else { n as f64 / of as f64 };
        any.then(|| Quality {
            packets: sum.received,
            one_way_ms_p50: delay_quantile_ms(&sum.delay_buckets, 0.5),
            one_way_ms_p99: delay_quantile_ms(&sum.delay_buckets, 0.99),
            loss: ratio(sum.lost, sum.lost + sum.received),
            reordered: ratio(sum.reordered, sum.received),
            duplicates: sum.duplicates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(received: u64, lost: u64, delays_in_bucket_4: u64) -> ServiceReport {
        let mut delay_buckets = vec![0; DELAY_BUCKETS_MS.len() + 1];
        delay_buckets[4] = delays_in_bucket_4;
        ServiceReport {
            service: "media".into(),
            received,
            lost,
            reordered: 1,
            duplicates: 0,
            delay_buckets,
        }
    }

    #[test]
    fn figures_sum_the_window_and_forget_what_is_older() {
        let book = QualityBook::default();
        let t0 = Instant::now();
        let n = NodeIdx(3);
        book.add(n, vec![report(90, 10, 90)], t0);
        book.add(n, vec![report(100, 0, 100)], t0 + Duration::from_secs(5));
        let q = book
            .quality(n, "media", t0 + Duration::from_secs(6))
            .expect("reported");
        assert_eq!(q.packets, 190);
        assert!((q.loss - 10.0 / 200.0).abs() < 1e-9);
        let p50 = q.one_way_ms_p50.expect("timed");
        assert!((20.0..50.0).contains(&p50), "{p50}");
        // 11 s after the first report only the second is left.
        let q = book
            .quality(n, "media", t0 + Duration::from_secs(11))
            .expect("reported");
        assert_eq!((q.packets, q.loss), (100, 0.0));
        assert_eq!(book.quality(NodeIdx(4), "media", t0), None);
    }
}
