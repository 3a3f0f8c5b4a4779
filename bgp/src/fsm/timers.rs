//! Backoff and jitter for reconnecting (RFC 4271 §10 asks for jittered
//! timers; a peer that keeps refusing us must never see a hot loop).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Exponential backoff between failed session attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Delay after the first failure.
    pub base: Duration,
    /// Upper bound.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Unjittered delay after `failures` consecutive failures: base·2^(n-1), capped.
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.base
            .saturating_mul(1 << shift)
            .min(self.max)
            .max(self.base)
    }
}

/// Scales `d` into [75 %, 100 %] using the random value `r`.
pub(crate) fn jitter(d: Duration, r: u64) -> Duration {
    let frac = 750 + (r % 251) as u32; // per mille
    d * frac / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_in_range() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        assert_eq!(b.delay(0), Duration::from_secs(1));
        assert_eq!(b.delay(1), Duration::from_secs(1));
        assert_eq!(b.delay(2), Duration::from_secs(2));
        assert_eq!(b.delay(4), Duration::from_secs(8));
        assert_eq!(b.delay(10), Duration::from_secs(30));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30));
        for r in [0, 1, 250, 251, u64::MAX] {
            let j = jitter(Duration::from_secs(4), r);
            assert!(
                j >= Duration::from_secs(3) && j <= Duration::from_secs(4),
                "{j:?}"
            );
        }
    }
}
