//! One rate limit shared by every call of the run: governor's GCRA at the configured rate and
//! burst, under an adaptive pacer for a tenant whose limit is below the configured rate.
//!
//! On a 429 the pacer remembers the rate that was throttled and cuts to 70% of it
//! (multiplicative decrease, at most once a second: a burst of 429s is one signal). Without
//! 429s it climbs back over time (additive increase): quickly (5% of the configured rate per
//! second) up to 90% of the rate last throttled, then slowly (0.5% per second) to probe above
//! it; 30 seconds without a 429 forget that rate. So the pacer settles just under the tenant's
//! limit instead of sawing through it.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

pub struct Limiter {
    ceiling: DefaultDirectRateLimiter,
    configured: f64,
    adaptive: Mutex<Adaptive>,
}

struct Adaptive {
    rate: f64,
    next: Instant,
    last_cut: Option<Instant>,
    /// The rate last throttled, while remembered.
    throttled_at: Option<f64>,
    updated: Instant,
}

/// The slowest the pacer goes: one call every 4 seconds.
const FLOOR: f64 = 0.25;

impl Limiter {
    /// `rate` calls per second, `burst` at once (at least 1).
    pub fn new(rate: f64, burst: u32) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            ceiling: RateLimiter::direct(quota),
            configured: rate,
            adaptive: Mutex::new(Adaptive {
                rate,
                next: Instant::now(),
                last_cut: None,
                throttled_at: None,
                updated: Instant::now(),
            }),
        }
    }

    /// Waits for the right to send one call.
    pub async fn acquire(&self) {
        self.ceiling.until_ready().await;
        let slot = {
            let mut a = self.adaptive.lock().unwrap_or_else(|e| e.into_inner());
            if a.rate >= self.configured {
                None
            } else {
                let slot = a.next.max(Instant::now());
                a.next = slot + Duration::from_secs_f64(1.0 / a.rate);
                Some(slot)
            }
        };
        if let Some(slot) = slot {
            tokio::time::sleep_until(slot).await;
        }
    }

    /// The tenant answered 429: halve the rate, at most once a second (a burst of 429s is one
    /// signal, not many).
    pub fn throttled(&self) {
        let mut a = self.adaptive.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if a.last_cut
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        a.throttled_at = Some(a.rate);
        a.rate = (a.rate * 0.7).max(FLOOR);
        a.last_cut = Some(now);
        a.updated = now;
        a.next = a.next.max(now) + Duration::from_secs_f64(1.0 / a.rate);
    }

    /// A call went through: climb back with the time passed since the last change.
    pub fn succeeded(&self) {
        let mut a = self.adaptive.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let dt = now.duration_since(a.updated).as_secs_f64();
        a.updated = now;
        if a.rate >= self.configured {
            return;
        }
        if a.last_cut
            .is_some_and(|at| now.duration_since(at) > Duration::from_secs(30))
        {
            a.throttled_at = None;
        }
        let slope = match a.throttled_at {
            Some(limit) if a.rate >= 0.9 * limit => 0.005,
            _ => 0.05,
        };
        a.rate = (a.rate + self.configured * slope * dt).min(self.configured);
    }

    /// The rate the pacer allows now.
    pub fn current_rate(&self) -> f64 {
        self.adaptive.lock().unwrap_or_else(|e| e.into_inner()).rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_goes_faster_than_the_rate_after_the_burst() {
        let limiter = Limiter::new(20.0, 2);
        let start = std::time::Instant::now();
        for _ in 0..12 {
            limiter.acquire().await;
        }
        // 2 at once, then 10 more at least 50 ms apart (a lower bound: never flaky).
        assert!(
            start.elapsed() >= Duration::from_millis(450),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cuts_on_429_once_per_second_and_climbs_back_slowly_near_the_limit() {
        let limiter = Limiter::new(100.0, 1);
        limiter.throttled();
        limiter.throttled();
        assert_eq!(limiter.current_rate(), 70.0);
        tokio::time::advance(Duration::from_millis(1100)).await;
        limiter.throttled();
        assert_eq!(limiter.current_rate(), 49.0);
        // Fast climb (5/s) up to 90% of the rate last throttled (63), then slow (0.5/s).
        tokio::time::advance(Duration::from_secs(2)).await;
        limiter.succeeded();
        assert!(
            (limiter.current_rate() - 59.0).abs() < 1e-6,
            "{}",
            limiter.current_rate()
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        limiter.succeeded();
        tokio::time::advance(Duration::from_secs(10)).await;
        limiter.succeeded();
        assert!(
            (limiter.current_rate() - 69.0).abs() < 1e-6,
            "{}",
            limiter.current_rate()
        );
        // 30 seconds without a 429: the limit is forgotten, the climb is fast again.
        tokio::time::advance(Duration::from_secs(30)).await;
        limiter.succeeded();
        assert_eq!(limiter.current_rate(), 100.0);
    }
}
