//! Each connection's call budget (R2): calls at once, calls a minute, calls
//! a day, so that the host keeps within its ERP's limits instead of being
//! throttled by them.
//!
//! Calls a minute and a day are GCRA limiters (`governor`). Their quotas are
//! chosen so that no window of that length, anywhere, holds more calls than
//! the budget: ERPs count over rolling windows, and a bucket refilled at the
//! budget's rate would let through a burst and the refill in the same minute
//! (twice the limit). Calls at once are bounded twice: the scheduler claims
//! no more of a connection's jobs than that, and the runtime lets no more of
//! its requests be in flight (see `runtime::outbound`).
//!
//! The engine takes one call's share before each plugin call (the claim pays
//! for a job's first call), and the runtime takes one for each further
//! request a call makes; see [`Budget::try_take`].

use crate::model::LimitOverrides;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A minute, as ERPs count it.
pub const MINUTE: Duration = Duration::from_secs(60);
/// A day, as ERPs count it (a rolling 24 hours).
pub const DAY: Duration = Duration::from_secs(24 * 3600);

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The GCRA quota that lets at most `calls` through in any `window`: a
/// tenth of them at once (so a lone payment goes without waiting), the rest
/// spread evenly over a window 2% longer than the ERP's (so a call's arrival
/// at the ERP may drift a little without crossing into the next window).
///
/// A GCRA with burst `b` and interval `T` lets at most `b + W/T` calls into
/// any window `W`; with `T = 1.02 W / (calls - b)` that is under `calls`.
pub fn quota(calls: u32, window: Duration) -> Quota {
    let calls = calls.max(1);
    let burst = (calls / 10).max(1);
    let spread = (calls - burst).max(1);
    let interval = window.mul_f64(1.02) / spread;
    Quota::with_period(interval.max(Duration::from_nanos(1)))
        .expect("a non-zero period")
        .allow_burst(NonZeroU32::new(burst).expect("at least one"))
}

/// One connection's budget, shared by every task of this process that
/// calls its ERP.
pub struct Budget<C: Clock = DefaultClock> {
    /// The limits it was built from.
    pub limits: LimitOverrides,
    minute: Option<Limiter<C>>,
    day: Option<Limiter<C>>,
    clock: C,
    usage: Mutex<Usage>,
    /// Paused until (ms since the epoch), as this process knows it: the
    /// store's record is the one every process sees.
    paused_until: AtomicI64,
    /// No share is free before this (ms since the epoch), as the last
    /// refusal said: shares are only ever taken, so it holds till then.
    empty_until: AtomicI64,
}

impl Budget<DefaultClock> {
    /// The budget `limits` set, on the real clock.
    pub fn new(limits: &LimitOverrides) -> Budget {
        Budget::with_clock(limits, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Budget<C> {
    /// The budget `limits` set, on `clock`.
    pub fn with_clock(limits: &LimitOverrides, clock: C) -> Budget<C> {
        let limiter = |calls: Option<u32>, window| {
            calls.map(|n| RateLimiter::direct_with_clock(quota(n, window), clock.clone()))
        };
        Budget {
            limits: limits.clone(),
            minute: limiter(limits.calls_per_minute, MINUTE),
            day: limiter(limits.calls_per_day, DAY),
            clock,
            usage: Mutex::new(Usage::default()),
            paused_until: AtomicI64::new(0),
            empty_until: AtomicI64::new(0),
        }
    }

    /// Takes one call's share of the minute's and the day's budget, or says
    /// how long until one is free. The minute is asked first: it is the one
    /// that binds in a busy hour, and a share it grants that the day then
    /// refuses is only lost (never over budget).
    pub fn try_take(&self, now_ms: i64) -> Result<(), Duration> {
        for limiter in [&self.minute, &self.day].into_iter().flatten() {
            if let Err(not_until) = limiter.check() {
                let wait = not_until.wait_time_from(self.clock.now());
                let until = now_ms.saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
                self.empty_until.fetch_max(until, Ordering::Relaxed);
                return Err(wait);
            }
        }
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(now_ms);
        Ok(())
    }

    /// Whether the last refusal said no share is free at `now_ms`.
    pub fn empty_at(&self, now_ms: i64) -> bool {
        self.empty_until.load(Ordering::Relaxed) > now_ms
    }

    /// Calls counted in the last minute and the last 24 hours.
    pub fn used(&self, now_ms: i64) -> (u64, u64) {
        self.usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counts(now_ms)
    }

    /// Pauses the connection in this process until `until_ms`, unless it
    /// already is until later.
    pub fn pause_until(&self, until_ms: i64) {
        self.paused_until.fetch_max(until_ms, Ordering::Relaxed);
    }

    /// Sets when the connection's pause ends in this process (0: not
    /// paused), as the store says.
    pub fn set_paused_until(&self, until_ms: i64) {
        self.paused_until.store(until_ms, Ordering::Relaxed);
    }

    /// How long the connection is still paused, if it is.
    pub fn paused_for(&self, now_ms: i64) -> Option<Duration> {
        let until = self.paused_until.load(Ordering::Relaxed);
        (until > now_ms).then(|| Duration::from_millis((until - now_ms) as u64))
    }
}

/// The runtime asks for a share for each request after a call's first.
impl crate::runtime::RequestBudget for Budget {
    fn take(&self) -> Result<(), Duration> {
        let now = crate::store::now_ms();
        if let Some(left) = self.paused_for(now) {
            return Err(left);
        }
        self.try_take(now)
    }
}

/// Calls counted per second over the last minute and per minute over the
/// last day: the figures `status` shows, not what the budget enforces.
#[derive(Default)]
struct Usage {
    seconds: Vec<(i64, u64)>,
    minutes: Vec<(i64, u64)>,
}

impl Usage {
    fn record(&mut self, now_ms: i64) {
        fn bump(ring: &mut Vec<(i64, u64)>, len: usize, slot: i64) {
            if ring.is_empty() {
                ring.resize(len, (i64::MIN, 0));
            }
            let cell = &mut ring[slot.rem_euclid(len as i64) as usize];
            if cell.0 != slot {
                *cell = (slot, 0);
            }
            cell.1 += 1;
        }
        bump(&mut self.seconds, 60, now_ms.div_euclid(1000));
        bump(&mut self.minutes, 1440, now_ms.div_euclid(60_000));
    }

    fn counts(&self, now_ms: i64) -> (u64, u64) {
        let sum = |ring: &[(i64, u64)], slot: i64, len: i64| {
            ring.iter()
                .filter(|(s, _)| *s > slot - len && *s <= slot)
                .map(|(_, n)| n)
                .sum()
        };
        (
            sum(&self.seconds, now_ms.div_euclid(1000), 60),
            sum(&self.minutes, now_ms.div_euclid(60_000), 1440),
        )
    }
}

/// Every connection's budget in this process, rebuilt when its limits
/// change or the number of worker processes sharing the store does.
///
/// With `k` worker processes on one store, each keeps `1/k` of every
/// connection's minute and day budget, so together they keep within it
/// (calls at once are counted in the store, over all of them). When `k`
/// changes, a rebuilt budget starts with the calls this process made in
/// the last minute and day already spent.
pub struct Budgets {
    by_connection: Mutex<HashMap<String, Arc<Budget>>>,
    /// Worker processes sharing each budget.
    share: std::sync::atomic::AtomicU32,
    /// Calls in the last minute and day that workers before this one
    /// recorded, per connection: spent already when its budget is built.
    seeds: Mutex<HashMap<String, (u64, u64)>>,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            by_connection: Mutex::default(),
            share: std::sync::atomic::AtomicU32::new(1),
            seeds: Mutex::default(),
        }
    }
}

/// Takes up to `n` shares from `limiter` at once (at most its burst, which
/// is where a limiter that had spent them would stand).
fn spend<C: Clock>(limiter: &Option<Limiter<C>>, n: u64) {
    if let Some(l) = limiter {
        for _ in 0..n {
            if l.check().is_err() {
                break;
            }
        }
    }
}

/// `limits` with the minute's and day's budget divided among `share`
/// processes (never below one call).
fn part(limits: &LimitOverrides, share: u32) -> LimitOverrides {
    let split = |n: Option<u32>| n.map(|n| (n / share.max(1)).max(1));
    LimitOverrides {
        calls_per_minute: split(limits.calls_per_minute),
        calls_per_day: split(limits.calls_per_day),
        ..limits.clone()
    }
}

impl Budgets {
    /// The budget of `connection`, whose limits are `limits`: this
    /// process's part of it.
    pub fn of(&self, connection: &str, limits: &LimitOverrides) -> Arc<Budget> {
        let limits = part(limits, self.share.load(Ordering::Relaxed));
        let mut map = self.by_connection.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(connection) {
            Some(b) if b.limits == limits => b.clone(),
            old => {
                let b = Arc::new(Budget::new(&limits));
                if old.is_none()
                    && let Some((minute, day)) = self
                        .seeds
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(connection)
                {
                    // Calls made before this process started (a restart, a
                    // deploy) still count: a limiter that had made them
                    // would have no burst left either.
                    spend(&b.minute, minute);
                    spend(&b.day, day);
                }
                if let Some(old) = old {
                    b.pause_until(old.paused_until.load(Ordering::Relaxed));
                    // What this process spent still counts against the new
                    // budget: taken again now (a conservative stand-in for
                    // when it was spent).
                    let now = crate::store::now_ms();
                    let (minute, day) = old.used(now);
                    for (limiter, used) in [(&b.minute, minute), (&b.day, day)] {
                        if let Some(l) = limiter {
                            for _ in 0..used {
                                if l.check().is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    *b.usage.lock().unwrap_or_else(|e| e.into_inner()) =
                        std::mem::take(&mut *old.usage.lock().unwrap_or_else(|e| e.into_inner()));
                }
                map.insert(connection.to_string(), b.clone());
                b
            }
        }
    }

    /// Records what workers before this one spent of `connection`'s budget
    /// in the last minute and day, for when its budget is built here.
    pub fn seed(&self, connection: &str, minute: u64, day: u64) {
        self.seeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(connection.to_string(), (minute, day));
    }

    /// Sets how many worker processes share each budget (at least one).
    pub fn set_share(&self, processes: u32) {
        self.share.store(processes.max(1), Ordering::Relaxed);
    }

    /// The budgets known, by connection.
    pub fn all(&self) -> Vec<(String, Arc<Budget>)> {
        let map = self.by_connection.lock().unwrap_or_else(|e| e.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits(minute: Option<u32>, day: Option<u32>) -> LimitOverrides {
        LimitOverrides {
            calls_per_minute: minute,
            calls_per_day: day,
            ..LimitOverrides::default()
        }
    }

    /// Greedy callers take every share the budget gives, stepping a fake
    /// clock by `step`; returns the times of the calls let through.
    fn greedy(
        b: &Budget<FakeRelativeClock>,
        clock: &FakeRelativeClock,
        step: Duration,
        span: Duration,
    ) -> Vec<Duration> {
        let mut t = Duration::ZERO;
        let mut calls = Vec::new();
        while t <= span {
            while b.try_take(t.as_millis() as i64).is_ok() {
                calls.push(t);
            }
            clock.advance(step);
            t += step;
        }
        calls
    }

    /// The most calls inside any window of length `w` (closed at both ends,
    /// the strictest count an ERP could make).
    fn most_in_window(calls: &[Duration], w: Duration) -> usize {
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..calls.len() {
            while calls[hi] - calls[lo] > w {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    /// R2: Xero's 60 a minute, taken greedily for an hour: never more than
    /// 60 in any minute, yet most of the budget used.
    #[test]
    fn r2_never_more_than_the_minute_budget_in_any_minute() {
        for n in [1, 2, 5, 60, 500] {
            let clock = FakeRelativeClock::default();
            let b = Budget::with_clock(&limits(Some(n), None), clock.clone());
            let calls = greedy(
                &b,
                &clock,
                Duration::from_millis(7),
                Duration::from_secs(3600),
            );
            let most = most_in_window(&calls, MINUTE);
            assert!(
                most <= n as usize,
                "{n} a minute: {most} calls in one minute"
            );
            // The budget is used: in the long run the spread part of it,
            // (n - n/10) / 1.02 a minute, at least one.
            let per_minute = calls.len() as f64 / 60.0;
            let spread = f64::from(n - (n / 10).max(1)).max(1.0);
            assert!(
                per_minute >= spread / 1.03,
                "{n} a minute: only {per_minute:.1} used"
            );
        }
    }

    /// R2: 5,000 a day alongside 60 a minute over three days: never more
    /// than 5,000 in any 24 hours, nor 60 in any minute.
    #[test]
    fn r2_never_more_than_the_day_budget_in_any_day() {
        let clock = FakeRelativeClock::default();
        let b = Budget::with_clock(&limits(Some(60), Some(5000)), clock.clone());
        let calls = greedy(&b, &clock, Duration::from_millis(250), 3 * DAY);
        assert!(most_in_window(&calls, DAY) <= 5000);
        assert!(most_in_window(&calls, MINUTE) <= 60);
        // The day's budget binds: most of it is used each day.
        assert!(
            calls.len() >= 3 * 4500,
            "{} calls in three days",
            calls.len()
        );
    }

    /// A refusal says how long until a share is free, and takes nothing.
    #[test]
    fn a_refusal_says_when_and_takes_nothing() {
        let clock = FakeRelativeClock::default();
        let b = Budget::with_clock(&limits(Some(60), None), clock.clone());
        let mut taken = 0;
        while b.try_take(0).is_ok() {
            taken += 1;
        }
        assert_eq!(taken, 6, "a tenth of the minute's budget at once");
        let wait = b.try_take(0).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait < Duration::from_millis(1400),
            "{wait:?}"
        );
        clock.advance(wait);
        assert!(b.try_take(wait.as_millis() as i64).is_ok());
        assert_eq!(b.used(wait.as_millis() as i64).0, 7);
    }

    #[test]
    fn no_limits_no_budget() {
        let b = Budget::new(&LimitOverrides::default());
        for _ in 0..100_000 {
            assert!(b.try_take(0).is_ok());
        }
        assert_eq!(b.used(0), (100_000, 100_000));
        assert_eq!(b.used(61_000).0, 0);
    }

    /// R2 with two worker processes on one store: each keeps half of the
    /// minute's budget, and one that learns of the other keeps what it
    /// already spent counted.
    #[test]
    fn r2_processes_sharing_a_store_share_each_budget() {
        let budgets = Budgets::default();
        let l = limits(Some(60), Some(5000));
        let now = crate::store::now_ms();
        let alone = budgets.of("c", &l);
        assert_eq!(alone.limits.calls_per_minute, Some(60));
        let mut taken = 0;
        while alone.try_take(now).is_ok() {
            taken += 1;
        }
        assert_eq!(taken, 6);
        budgets.set_share(2);
        let half = budgets.of("c", &l);
        assert_eq!(
            (half.limits.calls_per_minute, half.limits.calls_per_day),
            (Some(30), Some(2500))
        );
        // The 6 calls already made fill the half budget's burst of 3.
        assert!(half.try_take(now).is_err());
        assert_eq!(half.used(now).0, 6);
        budgets.set_share(1000);
        assert_eq!(budgets.of("c", &l).limits.calls_per_minute, Some(1));
    }

    /// Finding of the issue 9 attack: a restarted worker began with a fresh
    /// burst; calls its predecessors recorded are spent already.
    #[test]
    fn r2_a_restarted_worker_counts_what_was_spent_before_it() {
        let budgets = Budgets::default();
        budgets.seed("c", 59, 59);
        let b = budgets.of("c", &limits(Some(60), None));
        assert!(b.try_take(crate::store::now_ms()).is_err(), "no burst left");
        let fresh = budgets.of("d", &limits(Some(60), None));
        assert!(fresh.try_take(crate::store::now_ms()).is_ok());
    }

    #[test]
    fn budgets_follow_their_limits_and_keep_a_pause() {
        let budgets = Budgets::default();
        let a = budgets.of("c", &limits(Some(60), None));
        a.pause_until(10_000);
        assert!(Arc::ptr_eq(&a, &budgets.of("c", &limits(Some(60), None))));
        let b = budgets.of("c", &limits(Some(30), None));
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.paused_for(4_000), Some(Duration::from_secs(6)));
        assert_eq!(b.paused_for(10_000), None);
    }
}
