//! Retry policy for idempotent requests: exponential backoff with jitter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How often and how long to wait before repeating an idempotent request.
///
/// Only requests that change nothing on the daemon are repeated: status, key show and list,
/// token lookup, decrypt and rewrap. Init, unseal, seal, key changes, token changes, encrypt
/// and data-key generation are sent once, because a repeat after a lost response could apply
/// a change twice or hand out a second data key that the caller never receives.
/// See [`crate::Error::is_transient`] for the errors that lead to a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, including the first; 1 turns retries off.
    pub max_attempts: u32,
    /// Wait before the first retry; it doubles for every further retry.
    pub initial_backoff: Duration,
    /// Upper bound of the wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// Three attempts, waiting about 200 ms and then about 400 ms, at most 5 s.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Returns a policy that sends every request once.
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// Returns the wait before retry number `retry` (1 for the first retry).
    ///
    /// The exponential wait is capped at `max_backoff`, and the result is drawn uniformly from
    /// its upper half, so that clients that failed together do not retry in lockstep.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(31);
        let full = self
            .initial_backoff
            .saturating_mul(1 << exponent)
            .min(self.max_backoff);
        let half = full / 2;
        let jitter_nanos = random_u64() % (u64::try_from(half.as_nanos()).unwrap_or(u64::MAX) + 1);
        half + Duration::from_nanos(jitter_nanos)
    }
}

/// Returns a random number for jitter. `RandomState` is seeded randomly per thread and changes
/// its keys for every instance. That is enough to spread retries, and nothing secret uses it.
fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_bounds() {
        let policy = RetryPolicy::default();
        for (retry, full_ms) in [(1, 200), (2, 400), (3, 800), (4, 1600)] {
            let full = Duration::from_millis(full_ms);
            for _ in 0..50 {
                let wait = policy.backoff(retry);
                assert!(
                    wait >= full / 2,
                    "retry {retry}: {wait:?} below {:?}",
                    full / 2
                );
                assert!(wait <= full, "retry {retry}: {wait:?} above {full:?}");
            }
        }
    }

    #[test]
    fn backoff_is_capped() {
        let policy = RetryPolicy::default();
        for retry in [10, 40, u32::MAX] {
            assert!(policy.backoff(retry) <= policy.max_backoff);
        }
    }

    #[test]
    fn backoff_varies() {
        let policy = RetryPolicy::default();
        let waits: std::collections::HashSet<_> = (0..20).map(|_| policy.backoff(3)).collect();
        assert!(waits.len() > 1, "jitter produced one value only: {waits:?}");
    }

    #[test]
    fn none_sends_once() {
        assert_eq!(RetryPolicy::none().max_attempts, 1);
    }
}
