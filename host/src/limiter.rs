//! The rate limiter: one per plugin and credential, shared by every call in the process.
//!
//! Platforms count requests in a sliding (or fixed) one-second window and answer "too frequent"
//! over it. A token bucket alone cannot promise that: a full bucket of `burst` followed by a
//! second of refill puts `qps + burst` requests in one window. So a permit must pass two checks:
//!
//! * a GCRA token bucket (`qps` per second, `burst` back to back) that spreads requests out, and
//! * a sliding-window log: no `qps + 1` permits within one second plus [`WINDOW_MARGIN`], the
//!   margin absorbing the jitter between our clock and the moment the platform counts the call.
//!
//! Permits are reserved in order (first come, first served): a caller learns its slot at once
//! and sleeps until then, so waiters never stampede. A platform ban ([`RateLimiter::pause`])
//! moves every slot past its end; callers already asleep check again when they wake.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Slack added to the one-second window.
pub(crate) const WINDOW_MARGIN: Duration = Duration::from_millis(30);

/// Limits one plugin's requests under one credential.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    pace: Option<Pace>,
    state: Mutex<State>,
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
    /// The last `qps` permits handed out (possibly in the future: reserved slots).
    window: VecDeque<Instant>,
    /// No permit before this (a platform ban).
    paused_until: Option<Instant>,
}

/// Why no permit was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WouldWait(pub(crate) Duration);

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
                window: VecDeque::new(),
                paused_until: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a permit and returns how long it waited; refuses at once, saying how long it
    /// would have waited, when that is over `max_wait`.
    pub(crate) async fn acquire(&self, max_wait: Duration) -> Result<Duration, WouldWait> {
        let started = Instant::now();
        loop {
            let slot = self.reserve(max_wait.saturating_sub(started.elapsed()))?;
            tokio::time::sleep_until(slot).await;
            // A ban that arrived while we slept moves us past it.
            match self.lock().paused_until {
                Some(until) if until > Instant::now() => continue,
                _ => return Ok(started.elapsed()),
            }
        }
    }

    /// Reserves the earliest slot both checks allow, unless it is more than `max_wait` away.
    fn reserve(&self, max_wait: Duration) -> Result<Instant, WouldWait> {
        let now = Instant::now();
        let mut state = self.lock();
        let mut slot = now;
        if let Some(until) = state.paused_until {
            if until > slot {
                slot = until;
            } else {
                state.paused_until = None;
            }
        }
        if let Some(pace) = self.pace {
            slot = slot.max(state.tat.checked_sub(pace.tolerance).unwrap_or(now));
            if state.window.len() >= pace.qps as usize {
                let oldest = state.window[state.window.len() - pace.qps as usize];
                slot = slot.max(oldest + Duration::from_secs(1) + WINDOW_MARGIN);
            }
        }
        let wait = slot.saturating_duration_since(now);
        if wait > max_wait {
            return Err(WouldWait(wait));
        }
        if let Some(pace) = self.pace {
            state.tat = state.tat.max(slot) + pace.interval;
            state.window.push_back(slot);
            while state.window.len() > pace.qps as usize {
                state.window.pop_front();
            }
        }
        Ok(slot)
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
    async fn permits(limiter: &RateLimiter, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..n {
            limiter.acquire(Duration::MAX).await.unwrap();
            times.push(start.elapsed());
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
        let limiter = RateLimiter::new(Some(100), 100);
        let times = permits(&limiter, 1000).await;
        assert!(max_in_any_second(&times) <= 100, "{}", max_in_any_second(&times));
        // …and the pace is not wasted: 1000 permits in about 10 seconds.
        let total = *times.last().unwrap();
        assert!(total < Duration::from_millis(10_500), "{total:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn burst_bounds_back_to_back_permits() {
        let limiter = RateLimiter::new(Some(100), 5);
        let times = permits(&limiter, 20).await;
        let immediate = times.iter().filter(|t| t.is_zero()).count();
        assert_eq!(immediate, 5);
        assert_eq!(times[5], Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_permit_and_refuses_long_waits() {
        let limiter = RateLimiter::new(None, 1);
        assert_eq!(limiter.acquire(Duration::ZERO).await, Ok(Duration::ZERO));
        limiter.pause(Duration::from_secs(3));
        assert!(limiter.paused_for().is_some());
        assert_eq!(
            limiter.acquire(Duration::from_secs(1)).await,
            Err(WouldWait(Duration::from_secs(3)))
        );
        let waited = limiter.acquire(Duration::from_secs(5)).await.unwrap();
        assert_eq!(waited, Duration::from_secs(3));
        assert_eq!(limiter.paused_for(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_limit() {
        let limiter = std::sync::Arc::new(RateLimiter::new(Some(50), 10));
        let start = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut times = Vec::new();
                    for _ in 0..25 {
                        limiter.acquire(Duration::MAX).await.unwrap();
                        times.push(start.elapsed());
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
}
