//! Capped exponential backoff with jitter, as a named type (kube-runtime's style).
//!
//! Two policies are used: [`BackoffPolicy::crash_loop`] for containers that keep exiting
//! (Kubernetes' CrashLoopBackOff: 10 s doubling to 5 min, reset after 10 min of running) and
//! [`BackoffPolicy::errors`] for operations that fail (kube-runtime: 800 ms doubling to 30 s).

use std::time::Duration;

/// How delays grow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffPolicy {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Running healthily this long forgets earlier failures.
    pub reset_after: Duration,
    /// Each delay is multiplied by a random factor in `1 ± jitter`, so that many instances
    /// failing together do not retry together.
    pub jitter: f64,
}

impl BackoffPolicy {
    /// Kubernetes' CrashLoopBackOff: 10 s, doubling, capped at 5 min, reset after 10 min.
    pub const fn crash_loop() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            reset_after: Duration::from_secs(600),
            jitter: 0.1,
        }
    }

    /// kube-runtime's error backoff: 800 ms, doubling, capped at 30 s, reset after 2 min.
    pub const fn errors() -> Self {
        Self {
            initial: Duration::from_millis(800),
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(120),
            jitter: 0.1,
        }
    }

    /// The delay before retry number `failures` (1 = after the first failure); never above
    /// `max`, jitter included.
    pub fn delay(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let factor = 1.0 + self.jitter * (fastrand::f64() * 2.0 - 1.0);
        base.mul_f64(factor.max(0.0)).min(self.max)
    }
}

/// The failure count of one thing being retried, and the delay that follows from it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    policy: BackoffPolicy,
    failures: u32,
}

impl Backoff {
    /// No failures yet.
    pub fn new(policy: BackoffPolicy) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// Records a failure; `healthy_for` is how long the thing ran since its last start (a
    /// long healthy run forgets earlier failures). Returns the delay before the next attempt.
    pub fn fail(&mut self, healthy_for: Duration) -> Duration {
        if healthy_for >= self.policy.reset_after {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures)
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let p = BackoffPolicy {
            jitter: 0.0,
            ..BackoffPolicy::crash_loop()
        };
        let mut b = Backoff::new(p);
        let delays: Vec<u64> = (0..7).map(|_| b.fail(Duration::ZERO).as_secs()).collect();
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.fail(Duration::from_secs(600)).as_secs(), 10);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let p = BackoffPolicy::errors();
        for n in 1..50 {
            let d = p.delay(n);
            assert!(d <= p.max);
            let base = p.initial.saturating_mul(1 << (n - 1).min(30)).min(p.max);
            assert!(
                d >= base.mul_f64(0.9) - Duration::from_millis(1),
                "{n}: {d:?}"
            );
        }
    }
}
