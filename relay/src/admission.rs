//! Whether this relay takes new flows and TCP sessions, and how many a service
//! may have. Written by drain (draining) and reload (limits); read when a flow
//! or session starts.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

#[derive(Debug)]
pub struct Admission {
    draining: AtomicBool,
    max_flows: AtomicUsize,
}

impl Admission {
    pub fn new(max_flows_per_service: usize) -> Admission {
        Admission {
            draining: AtomicBool::new(false),
            max_flows: AtomicUsize::new(max_flows_per_service),
        }
    }

    /// The rules for a flow starting now.
    pub fn now(&self) -> relay_core::flows::Admission {
        relay_core::flows::Admission {
            max_flows: self.max_flows.load(Ordering::Relaxed),
            draining: self.is_draining(),
        }
    }

    pub fn max_flows(&self) -> usize {
        self.max_flows.load(Ordering::Relaxed)
    }

    pub fn set_max_flows(&self, n: usize) {
        self.max_flows.store(n, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Starts draining; false if it already was.
    pub fn start_draining(&self) -> bool {
        !self.draining.swap(true, Ordering::Relaxed)
    }
}
