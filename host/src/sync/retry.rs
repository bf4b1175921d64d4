//! Retry policy (R1): exponential backoff with jitter, honouring the
//! ERP's retry-after.

use std::time::Duration;

/// The longest wait an ERP (or a plugin) can ask for: a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Exponential backoff with jitter, honouring the ERP's retry-after (R1).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included, before a person is asked.
    pub max_attempts: u32,
    /// The wait after the first failure; doubled after each.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// The wait before the attempt after `attempts_so_far` failures: between
    /// half and all of base·2ⁿ (capped), and never less than `retry_after`
    /// (itself at most [`MAX_RETRY_AFTER`]).
    pub fn backoff(&self, attempts_so_far: u32, retry_after: Option<Duration>) -> Duration {
        self.backoff_with(attempts_so_far, retry_after, fastrand::f64())
    }

    /// [`RetryPolicy::backoff`] with the jitter given, in `0.0..1.0`.
    pub fn backoff_with(
        &self,
        attempts_so_far: u32,
        retry_after: Option<Duration>,
        jitter: f64,
    ) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempts_so_far.min(20))
            .min(self.cap);
        let jittered = exp / 2 + (exp / 2).mul_f64(jitter.clamp(0.0, 1.0));
        jittered.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
        }
    }

    /// Issue 7 item 22: growth, cap, jitter bounds and the Retry-After floor.
    #[test]
    fn r1_backoff_grows_is_capped_jittered_and_honours_retry_after() {
        let p = policy();
        // Jitter spans half to all of base·2ⁿ.
        assert_eq!(p.backoff_with(0, None, 0.0), Duration::from_secs(1));
        assert_eq!(p.backoff_with(0, None, 1.0), Duration::from_secs(2));
        assert_eq!(p.backoff_with(1, None, 1.0), Duration::from_secs(4));
        assert_eq!(p.backoff_with(3, None, 0.5), Duration::from_secs(12));
        // Capped, however many attempts.
        assert_eq!(p.backoff_with(30, None, 1.0), Duration::from_secs(60));
        assert_eq!(p.backoff_with(u32::MAX, None, 0.0), Duration::from_secs(30));
        for n in 0..10 {
            let d = p.backoff(n, None);
            let full = p.base.saturating_mul(1 << n).min(p.cap);
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
        // Retry-After is a floor, itself at most a day.
        assert_eq!(
            p.backoff_with(0, Some(Duration::from_secs(90)), 0.0),
            Duration::from_secs(90)
        );
        assert_eq!(
            p.backoff_with(0, Some(Duration::from_millis(u64::MAX)), 0.0),
            MAX_RETRY_AFTER
        );
    }
}
