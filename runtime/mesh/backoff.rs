//! Reconnect backoff: exponential with full jitter, deterministic given its random input.

use crate::limits::{DIAL_BACKOFF_MS_MAX, DIAL_BACKOFF_MS_MIN};

/// Exponential backoff state for redialing one peer.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Forgets past failures after a connection succeeded.
    pub fn on_success(&mut self) {
        self.failures = 0;
    }

    /// The wait before the next attempt, given a uniform random `fraction` in `[0, 1)`. The wait is
    /// between half and all of the capped exponential step, so peers that lost a node together do
    /// not redial in lockstep, yet the wait never collapses to zero.
    pub fn on_failure(&mut self, fraction: f64) -> u64 {
        let step = DIAL_BACKOFF_MS_MIN.saturating_mul(1u64 << self.failures.min(16)).min(DIAL_BACKOFF_MS_MAX);
        self.failures = self.failures.saturating_add(1);
        let fraction = fraction.clamp(0.0, 1.0);
        step / 2 + ((step / 2) as f64 * fraction) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let waits: Vec<u64> = (0..10).map(|_| backoff.on_failure(0.999)).collect();
        assert_eq!(waits[0], DIAL_BACKOFF_MS_MIN - 1);
        assert!(waits.windows(2).all(|pair| pair[0] <= pair[1]), "{waits:?}");
        assert!(*waits.last().expect("ten") <= DIAL_BACKOFF_MS_MAX);
        backoff.on_success();
        assert_eq!(backoff.on_failure(0.0), DIAL_BACKOFF_MS_MIN / 2);
    }
}
