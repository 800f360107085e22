//! Parameters of an emulated link (delay, jitter, loss, cut) and their validation.

use std::time::Duration;

/// Largest one-way delay the emulator accepts; beyond it, cut the link instead.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Largest jitter the emulator accepts.
pub const MAX_JITTER: Duration = Duration::from_secs(60);

/// How one link behaves; both directions of a link share one set.
///
/// The fields are public for convenience; [`LinkParams::validate`] checks them, and every
/// setter of [`super::LinkHandle`] and [`super::EmulatedLink::start`] calls it. The
/// [`super::Shaper`] never panics on unchecked values: it clamps delay and jitter to their
/// maxima and treats a NaN loss as no loss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkParams {
    /// One-way base delay added to every packet. Default: zero.
    pub delay: Duration,
    /// Half-width of the uniform jitter: each packet gets `delay + U[-jitter, +jitter]`,
    /// clamped at zero, but never overtakes an earlier packet. Default: zero.
    pub jitter: Duration,
    /// Probability in `0.0..=1.0` that a packet is silently lost. Default: 0.
    pub loss: f64,
    /// Whether the link is cut: every packet vanishes, in flight ones included. Default: false.
    pub cut: bool,
    /// The link's bandwidth, kbit/s: packets leave one after another at this
    /// rate, wait their turn in a queue, and are dropped at its tail once the
    /// wait would pass [`MAX_QUEUE_WAIT`]. `None`: unlimited. Default: `None`.
    pub rate_kbps: Option<u64>,
}

/// The longest a packet waits for a rate-limited link (a router's buffer of
/// 50 ms at the link's rate); later arrivals are dropped at the tail.
pub const MAX_QUEUE_WAIT: Duration = Duration::from_millis(50);

impl LinkParams {
    /// A clean, restored link: no delay, no jitter, no loss.
    pub const CLEAN: LinkParams = LinkParams {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        cut: false,
        rate_kbps: None,
    };

    /// Validated parameters of a link that is not cut.
    pub fn new(delay: Duration, jitter: Duration, loss: f64) -> Result<Self, ParamsError> {
        let params = LinkParams {
            delay,
            jitter,
            loss,
            cut: false,
            rate_kbps: None,
        };
        params.validate()?;
        Ok(params)
    }

    /// Checks loss is a probability and delay and jitter are within their maxima.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if !(0.0..=1.0).contains(&self.loss) {
            // NaN fails `contains` too.
            return Err(ParamsError::Loss(self.loss));
        }
        if self.delay > MAX_DELAY {
            return Err(ParamsError::Delay {
                got: self.delay,
                max: MAX_DELAY,
            });
        }
        if self.jitter > MAX_JITTER {
            return Err(ParamsError::Jitter {
                got: self.jitter,
                max: MAX_JITTER,
            });
        }
        if self.rate_kbps == Some(0) {
            return Err(ParamsError::Rate);
        }
        Ok(())
    }
}

impl Default for LinkParams {
    fn default() -> Self {
        Self::CLEAN
    }
}

/// Why a set of link parameters was rejected.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum ParamsError {
    /// Loss outside `0.0..=1.0`, or NaN.
    #[error("link loss must be a probability within 0.0..=1.0, got {0}")]
    Loss(f64),
    /// Delay above [`MAX_DELAY`].
    #[error("link delay {got:?} exceeds the emulator's maximum of {max:?}")]
    Delay { got: Duration, max: Duration },
    /// Jitter above [`MAX_JITTER`].
    #[error("link jitter {got:?} exceeds the emulator's maximum of {max:?}")]
    Jitter { got: Duration, max: Duration },
    /// A rate of 0, which would carry nothing.
    #[error("link rate must be at least 1 kbit/s (leave it out for unlimited)")]
    Rate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_edges() {
        assert!(LinkParams::new(MAX_DELAY, MAX_JITTER, 0.0).is_ok());
        assert!(LinkParams::new(Duration::ZERO, Duration::ZERO, 1.0).is_ok());
        assert_eq!(LinkParams::default(), LinkParams::CLEAN);
    }

    #[test]
    fn rejects_bad_loss_with_a_clear_error() {
        for loss in [-0.01, 1.01, f64::NAN, f64::INFINITY] {
            let err = LinkParams::new(Duration::ZERO, Duration::ZERO, loss).unwrap_err();
            assert!(matches!(err, ParamsError::Loss(_)), "{loss}: {err:?}");
            assert!(err.to_string().contains("0.0..=1.0"), "{err}");
        }
    }

    #[test]
    fn rejects_huge_delay_and_jitter() {
        let big = MAX_DELAY + Duration::from_nanos(1);
        assert!(matches!(
            LinkParams::new(big, Duration::ZERO, 0.0),
            Err(ParamsError::Delay { .. })
        ));
        assert!(matches!(
            LinkParams::new(Duration::ZERO, big, 0.0),
            Err(ParamsError::Jitter { .. })
        ));
    }
}
