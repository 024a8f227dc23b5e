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
//!
//! Those checks see this process. A limiter that is [`shared`](RateLimiter::shared) keeps the
//! promise across every process on the same storage: after the local checks, each permit is
//! admitted into the storage's window of the credential ([`crate::store::Pacing`]: requests in
//! flight, or finished within the last second, stay under `qps`), and a ban is recorded there
//! for every host to honour. The window outlives the process, so a host restarted at once does not
//! burst into the platform's current second.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::store::{Admission, Storage, now_ms};

/// Slack added to the one-second window, for the platform's clock granularity.
pub(crate) const WINDOW_MARGIN: Duration = Duration::from_millis(5);

/// Limits one plugin's requests under one credential.
pub(crate) struct RateLimiter {
    pace: Option<Pace>,
    state: Mutex<State>,
    /// Wakes waiters when a permit finishes.
    finished: Notify,
    /// The window and bans every process on the storage shares, when shared.
    fleet: Option<Fleet>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("pace", &self.pace)
            .field("shared", &self.fleet.is_some())
            .finish_non_exhaustive()
    }
}

/// The storage side of a shared limiter.
struct Fleet {
    storage: Storage,
    /// The credential the platform counts (TOP app key, Douyin client key), with the plugin.
    credential: String,
    /// This process.
    holder: String,
    /// How long a request of a process that died counts as in flight.
    lease: Duration,
    /// The fleet's ban as last read (for limiters without `qps`, which do not ask the window):
    /// when it was read, and until when the credential is banned.
    ban: Mutex<Option<(Instant, Option<i64>)>>,
}

/// How long a limiter without `qps` trusts the fleet's ban it read.
const BAN_FRESH: Duration = Duration::from_millis(250);

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
    /// Its entry in the fleet's window, if shared.
    admitted: Option<i64>,
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
        if let (Some(id), Some(fleet)) = (self.admitted, &self.limiter.fleet) {
            // The response is read now; the storage learns it a moment later (until then it
            // counts the request longer, never shorter).
            let (storage, credential, now) =
                (fleet.storage.clone(), fleet.credential.clone(), now_ms());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = storage.pace_release(&credential, id, now).await {
                        tracing::warn!(error = %crate::error::full_message(&e), "cannot record a finished request in the shared window");
                    }
                });
            }
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
            fleet: None,
        }
    }

    /// Shares the limiter with every process on `storage`: `credential` names what the platform
    /// counts, `holder` this process, `lease` how long a request of a process that died counts.
    pub(crate) fn shared(
        mut self,
        storage: Storage,
        credential: String,
        holder: String,
        lease: Duration,
    ) -> Self {
        self.fleet = Some(Fleet {
            storage,
            credential,
            holder,
            lease,
            ban: Mutex::new(None),
        });
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a permit; refuses at once, saying how long it would have waited, when that is
    /// over `max_wait`.
    pub(crate) async fn acquire(self: &Arc<Self>, max_wait: Duration) -> Result<Permit, WouldWait> {
        let started = Instant::now();
        let mut permit = self.acquire_here(started, max_wait).await?;
        let Some(fleet) = &self.fleet else {
            return Ok(permit);
        };
        loop {
            let wait = match self.pace {
                Some(pace) => {
                    let now = now_ms();
                    let window = (Duration::from_secs(1) + WINDOW_MARGIN).as_millis() as i64;
                    let lease = now + fleet.lease.as_millis() as i64;
                    match fleet
                        .storage
                        .pace_admit(
                            &fleet.credential,
                            pace.qps,
                            window,
                            &fleet.holder,
                            now,
                            lease,
                        )
                        .await
                    {
                        Ok(Admission::Granted(id)) => {
                            permit.admitted = Some(id);
                            permit.waited = started.elapsed();
                            return Ok(permit);
                        }
                        Ok(Admission::Wait(ms)) => Duration::from_millis(ms.max(1) as u64),
                        Err(e) => {
                            // The storage is down: the local checks still hold for this process.
                            tracing::warn!(error = %crate::error::full_message(&e), "the shared request window is unreachable; pacing this process alone");
                            return Ok(permit);
                        }
                    }
                }
                None => match fleet.banned_for().await {
                    None => {
                        permit.waited = started.elapsed();
                        return Ok(permit);
                    }
                    Some(wait) => wait,
                },
            };
            if started.elapsed() + wait > max_wait {
                return Err(WouldWait(wait));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// This process's checks: the GCRA, the local window, a local pause.
    async fn acquire_here(
        self: &Arc<Self>,
        started: Instant,
        max_wait: Duration,
    ) -> Result<Permit, WouldWait> {
        loop {
            // Register for a wake-up before looking, so a finish in between is not missed.
            let notified = self.finished.notified();
            let wait = match self.try_grant() {
                Ok(()) => {
                    return Ok(Permit {
                        limiter: self.clone(),
                        waited: started.elapsed(),
                        admitted: None,
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
    /// force stays. A shared limiter records the ban for every process.
    pub(crate) fn pause(&self, duration: Duration) {
        let until = Instant::now() + duration;
        let mut state = self.lock();
        if state.paused_until.is_none_or(|current| current < until) {
            state.paused_until = Some(until);
        }
        drop(state);
        if let Some(fleet) = &self.fleet {
            let until_ms = now_ms() + duration.as_millis() as i64;
            let (storage, credential) = (fleet.storage.clone(), fleet.credential.clone());
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(e) = storage.pace_ban(&credential, until_ms).await {
                        tracing::warn!(error = %crate::error::full_message(&e), "cannot record the ban for the other hosts");
                    }
                });
            }
        }
    }

    /// How long the current pause has left, if any.
    pub(crate) fn paused_for(&self) -> Option<Duration> {
        let until = self.lock().paused_until?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

impl Fleet {
    /// How long the fleet's ban on the credential has left, as last read (read again when
    /// older than [`BAN_FRESH`]).
    async fn banned_for(&self) -> Option<Duration> {
        let cached = *self.ban.lock().unwrap_or_else(|p| p.into_inner());
        let until = match cached {
            Some((read, until)) if read.elapsed() < BAN_FRESH => until,
            _ => {
                let until = self
                    .storage
                    .pace_banned_until(&self.credential, now_ms())
                    .await
                    .unwrap_or(None);
                *self.ban.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), until));
                until
            }
        }?;
        let left = until - now_ms();
        (left > 0).then(|| Duration::from_millis(left as u64))
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
