//! Warnings that repeat (a flood of bad packets, a descriptor shortage) are
//! logged at most once per interval, with how many were held back meanwhile.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Decides when a repeated warning may be logged again.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub const fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(n)` when the warning may be logged now, `n` being how many were
    /// held back since the last one; `None` (and one more held back) otherwise.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match st.0 {
            Some(last) if now.duration_since(last) < self.every => {
                st.1 += 1;
                None
            }
            _ => {
                st.0 = Some(now);
                Some(std::mem::take(&mut st.1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_line_per_interval_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_secs(10));
        assert_eq!(t.allow(), Some(0));
        for _ in 0..1_331 {
            assert_eq!(t.allow(), None);
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(t.allow(), Some(1_331));
        assert_eq!(t.allow(), None);
    }
}
