//! The rate limiter: one per plugin and credential, shared by every call in the process.
//!
//! Platforms count requests in a sliding (or fixed) one-second window and answer "too frequent"
//! over it. A token bucket alone cannot promise that: a full bucket of `burst` followed by a
//! second of refill puts `qps + burst` requests in one window. And our clock is not the
//! platform's: a request granted at `t` arrives some time after `t`, later still when the
//! machine is busy, so spacing grants a second apart is not enough either. So a permit must pass
//! two checks:
//!
//! * a GCRA token bucket (`qps` per second, `burst` back to back) that spreads requests out, and
//! * a window of completions: permits in flight plus permits *finished* (response read) within
//!   the last second and [`WINDOW_MARGIN`] stay under `qps`. A request arrives at the platform
//!   before its response is read, so however late it arrived, it left the platform's window by
//!   the time it leaves ours.
//!
//! A platform ban ([`RateLimiter::pause`]) holds every permit until it ends.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Slack added to the one-second window, for the platform's clock granularity.
pub(crate) const WINDOW_MARGIN: Duration = Duration::from_millis(5);

/// Limits one plugin's requests under one credential.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    pace: Option<Pace>,
    state: Mutex<State>,
    /// Wakes waiters when a permit finishes.
    finished: Notify,
}

#[derive(Debug, Clone, Copy)]
struct Pace {
    qps: u32,
    /// 1 / qps.
    interval: Duration,
    /// (burst - 1) × interval: how far ahead of the pace a permit may be.
    tolerance: Duration,
}

#[derive(Debug)]
struct State {
    /// GCRA's theoretical arrival time.
    tat: Instant,
    /// When recent permits finished, oldest first.
    finished: VecDeque<Instant>,
    /// Permits granted and not finished.
    in_flight: u32,
    /// No permit before this (a platform ban).
    paused_until: Option<Instant>,
}

/// Why no permit was given: it would have come after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WouldWait(pub(crate) Duration);

/// A granted request; drop it once the response is read.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Arc<RateLimiter>,
    /// How long the caller waited for it.
    pub(crate) waited: Duration,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.limiter.pace.is_some() {
            let mut state = self.limiter.lock();
            state.in_flight -= 1;
            state.finished.push_back(Instant::now());
            drop(state);
            self.limiter.finished.notify_waiters();
        }
    }
}

/// What a permit has to wait for.
enum Wait {
    Until(Instant),
    AFinish,
}

impl RateLimiter {
    /// `qps: None` limits nothing but still honours pauses.
    pub(crate) fn new(qps: Option<u32>, burst: u32) -> Self {
        let pace = qps.filter(|&q| q > 0).map(|qps| {
            let interval = Duration::from_secs(1) / qps;
            Pace {
                qps,
                interval,
                tolerance: interval * burst.clamp(1, qps).saturating_sub(1),
            }
        });
        RateLimiter {
            pace,
            state: Mutex::new(State {
                tat: Instant::now(),
                finished: VecDeque::new(),
                in_flight: 0,
                paused_until: None,
            }),
            finished: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a permit; refuses at once, saying how long it would have waited, when that is
    /// over `max_wait`.
    pub(crate) async fn acquire(self: &Arc<Self>, max_wait: Duration) -> Result<Permit, WouldWait> {
        let started = Instant::now();
        loop {
            // Register for a wake-up before looking, so a finish in between is not missed.
            let notified = self.finished.notified();
            let wait = match self.try_grant() {
                Ok(()) => {
                    return Ok(Permit {
                        limiter: self.clone(),
                        waited: started.elapsed(),
                    });
                }
                Err(wait) => wait,
            };
            match wait {
                Wait::Until(until) => {
                    let total = until.saturating_duration_since(started);
                    if total > max_wait {
                        return Err(WouldWait(until.saturating_duration_since(Instant::now())));
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = notified => {}
                    }
                }
                Wait::AFinish => notified.await,
            }
        }
    }

    fn try_grant(&self) -> Result<(), Wait> {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(until) = state.paused_until {
            if until > now {
                return Err(Wait::Until(until));
            }
            state.paused_until = None;
        }
        let Some(pace) = self.pace else {
            return Ok(());
        };
        let window = Duration::from_secs(1) + WINDOW_MARGIN;
        while state
            .finished
            .front()
            .is_some_and(|finished| *finished + window <= now)
        {
            state.finished.pop_front();
        }
        if state.finished.len() + state.in_flight as usize >= pace.qps as usize {
            return Err(match state.finished.front() {
                Some(oldest) => Wait::Until(*oldest + window),
                None => Wait::AFinish,
            });
        }
        if let Some(earliest) = state.tat.checked_sub(pace.tolerance)
            && earliest > now
        {
            return Err(Wait::Until(earliest));
        }
        state.tat = state.tat.max(now) + pace.interval;
        state.in_flight += 1;
        Ok(())
    }

    /// Stops every permit until `duration` from now (a platform ban); a longer pause already in
    /// force stays.
    pub(crate) fn pause(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let mut state = self.lock();
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
    }

    /// How long the current pause has left, if any.
    pub(crate) fn paused_for(&self) -> Option<Duration> {
        let until = self.lock().paused_until?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Permits over `seconds` of paused virtual time, as offsets from the start.
    async fn permits(limiter: &Arc<RateLimiter>, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..n {
            let permit = limiter.acquire(Duration::MAX).await.unwrap();
            times.push(start.elapsed());
            drop(permit);
        }
        times
    }

    fn max_in_any_second(times: &[Duration]) -> usize {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t < times[i] + Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn no_second_holds_more_than_qps_even_with_a_full_burst() {
        let limiter = Arc::new(RateLimiter::new(Some(100), 100));
        let times = permits(&limiter, 1000).await;
        assert!(
            max_in_any_second(&times) <= 100,
            "{}",
            max_in_any_second(&times)
        );
        // …and the pace is not wasted: 1000 permits in about 10 seconds.
        let total = *times.last().unwrap();
        assert!(total < Duration::from_millis(10_500), "{total:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn burst_bounds_back_to_back_permits() {
        let limiter = Arc::new(RateLimiter::new(Some(100), 5));
        let times = permits(&limiter, 20).await;
        let immediate = times.iter().filter(|t| t.is_zero()).count();
        assert_eq!(immediate, 5);
        assert_eq!(times[5], Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_permit_and_refuses_long_waits() {
        let limiter = Arc::new(RateLimiter::new(None, 1));
        let permit = limiter.acquire(Duration::ZERO).await.unwrap();
        assert_eq!(permit.waited, Duration::ZERO);
        limiter.pause(Duration::from_secs(3));
        assert!(limiter.paused_for().is_some());
        assert_eq!(
            limiter.acquire(Duration::from_secs(1)).await.unwrap_err(),
            WouldWait(Duration::from_secs(3))
        );
        let permit = limiter.acquire(Duration::from_secs(5)).await.unwrap();
        assert_eq!(permit.waited, Duration::from_secs(3));
        assert_eq!(limiter.paused_for(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_limit() {
        let limiter = Arc::new(RateLimiter::new(Some(50), 10));
        let start = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut times = Vec::new();
                    for _ in 0..25 {
                        let permit = limiter.acquire(Duration::MAX).await.unwrap();
                        times.push(start.elapsed());
                        // A request that takes a while: the window counts it until it ends.
                        tokio::time::sleep(Duration::from_millis(30)).await;
                        drop(permit);
                    }
                    times
                })
            })
            .collect();
        let mut times = Vec::new();
        for task in tasks {
            times.extend(task.await.unwrap());
        }
        times.sort();
        assert_eq!(times.len(), 200);
        assert!(max_in_any_second(&times) <= 50);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_count_until_they_finish() {
        let limiter = Arc::new(RateLimiter::new(Some(2), 2));
        let a = limiter.acquire(Duration::MAX).await.unwrap();
        let _b = limiter.acquire(Duration::MAX).await.unwrap();
        // Two in flight for a long time: a third waits for one to finish, then a second more.
        let waiter = {
            let limiter = limiter.clone();
            tokio::spawn(async move { limiter.acquire(Duration::MAX).await.unwrap().waited })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(a);
        let waited = waiter.await.unwrap();
        assert!(waited >= Duration::from_secs(6), "{waited:?}");
    }
}
