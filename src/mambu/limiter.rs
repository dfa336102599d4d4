//! One rate limit shared by every call of the run: governor's GCRA at the configured rate and
//! burst, under an adaptive pacer for a tenant whose limit is below the configured rate.
//!
//! On a 429 the pacer remembers the rate that was throttled and cuts to 70% of it
//! (multiplicative decrease, at most once a second: a burst of 429s is one signal). Without
//! 429s it climbs back over time (additive increase): quickly (5% of the configured rate per
//! second) up to 90% of the rate last throttled, then slowly (0.5% per second) to probe above
//! it; 30 seconds without a 429 forget that rate. So the pacer settles just under the tenant's
//! limit instead of sawing through it.
//!
//! Waking costs more than sending at a tenant's rate (issue 8): at 100 calls/s a call is mostly
//! idle time, and each wake-up of the process (a context switch, cold caches) costs more CPU
//! than rendering and sending the call. So waiters queue first come first served and only the
//! head of the queue asks the ceiling; when the ceiling says "not before t", the head does not
//! arm a timer for t but is released by the first thing that wakes the process after t anyway:
//! an answer arriving ([`Limiter::poke`]) or another call queueing. A timer at t + `lateness`
//! is the fallback when nothing else happens. Sending a little after t loses no capacity while
//! the lateness stays within the burst's tolerance (GCRA counts from the theoretical time, not
//! from when the call went), so the rate is unchanged and every call still passes governor's
//! check; with a burst of 1 there is no tolerance and the head waits for t exactly.

use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, QuantaInstant, Reference as _};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

pub struct Limiter {
    ceiling: DefaultDirectRateLimiter,
    /// Waiters take turns at the ceiling, first come first served: only the head of the queue
    /// waits on a timer, the rest wait for their turn (no herd of timers woken at one instant,
    /// all but one of them to sleep again).
    turn: tokio::sync::Mutex<()>,
    /// When the head of the queue may go, in nanoseconds after `epoch` on the ceiling's clock;
    /// `u64::MAX` when no one waits.
    head_due: AtomicU64,
    /// Wakes the head of the queue once it may go.
    head: tokio::sync::Notify,
    epoch: QuantaInstant,
    /// How late the head may go when nothing else wakes the process (see the module's doc).
    lateness: Duration,
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
        // Within the burst's tolerance (burst - 1 periods), at most 5 periods and 50 ms.
        let lateness = (period * (burst.max(1) - 1).min(5)).min(Duration::from_millis(50));
        Self::with_lateness(rate, burst, lateness)
    }

    /// As [`Limiter::new`], with how late the head of the queue may go when nothing wakes it.
    fn with_lateness(rate: f64, burst: u32, lateness: Duration) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        let ceiling = RateLimiter::direct(quota);
        Self {
            epoch: ceiling.clock().now(),
            ceiling,
            turn: tokio::sync::Mutex::new(()),
            head_due: AtomicU64::new(u64::MAX),
            head: tokio::sync::Notify::new(),
            lateness,
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
        self.poke();
        {
            let _turn = self.turn.lock().await;
            // The runtime's timer, not governor's `until_ready` (a futures-timer thread woken
            // to arm every wait and again to fire it, then waking the runtime).
            while let Err(not_until) = self.ceiling.check() {
                let wait = not_until.wait_time_from(self.ceiling.clock().now());
                let due = Instant::now() + wait;
                if self.lateness.is_zero() {
                    tokio::time::sleep_until(due).await;
                    continue;
                }
                // Listening before publishing `due`: a poke in between is not missed.
                let mut woken = pin!(self.head.notified());
                woken.as_mut().enable();
                let at = not_until.earliest_possible().duration_since(self.epoch);
                self.head_due
                    .store(u64::from(at).min(u64::MAX - 1), Ordering::Release);
                tokio::select! {
                    () = woken => {}
                    () = tokio::time::sleep_until(due + self.lateness) => {}
                }
                self.head_due.store(u64::MAX, Ordering::Release);
            }
        }
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

    /// Something woke the process (an answer came): releases the head of the queue if its time
    /// has come, so that it goes now rather than on a timer of its own. Cheap when it has not.
    pub fn poke(&self) {
        let due = self.head_due.load(Ordering::Acquire);
        if due != u64::MAX
            && u64::from(self.ceiling.clock().now().duration_since(self.epoch)) >= due
        {
            self.head.notify_waiters();
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
    use std::sync::Arc;

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

    #[tokio::test]
    async fn the_head_goes_on_a_poke_once_its_time_has_come_not_on_a_timer_of_its_own() {
        // 20/s, burst 2: the third call may go 50 ms after the first two. With a lateness of
        // 10 s it goes only when poked (an answer arriving), and pokes before its time do not
        // let it go early.
        let limiter = Arc::new(Limiter::with_lateness(20.0, 2, Duration::from_secs(10)));
        // From before the first call: the third goes at least 50 ms after it, however long
        // a busy machine takes between the calls.
        let start = std::time::Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        let poker = {
            let limiter = limiter.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    limiter.poke();
                }
            })
        };
        limiter.acquire().await;
        poker.abort();
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(40) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn without_pokes_the_head_goes_after_its_lateness() {
        let limiter = Limiter::with_lateness(20.0, 2, Duration::from_millis(200));
        let start = std::time::Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        limiter.acquire().await;
        // Its time (50 ms after the first) and the lateness (200 ms): a lower bound from
        // before the first call, never flaky.
        assert!(
            start.elapsed() >= Duration::from_millis(240),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn waiters_go_first_come_first_served_at_the_rate() {
        // 8 tasks queueing for 100/s with a burst of 5, each poking after its "call": the 43
        // calls past the burst take at least 0.42 s, pokes or not.
        let limiter = Arc::new(Limiter::new(100.0, 5));
        let start = std::time::Instant::now();
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (limiter, calls) = (limiter.clone(), calls.clone());
                tokio::spawn(async move {
                    for _ in 0..6 {
                        limiter.acquire().await;
                        calls.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(3)).await;
                        limiter.poke();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(
            start.elapsed() >= Duration::from_millis(420),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(calls.load(Ordering::Relaxed), 48);
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
