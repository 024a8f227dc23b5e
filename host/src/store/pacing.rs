//! The platform's view of our requests, per credential (TOP app key, Douyin client key), kept
//! where every host on the backend sees it: a sliding window of requests — each counted from its
//! permit until its response was read (or, for a holder that died, until its lease ran out) —
//! and platform bans.

use async_trait::async_trait;

use crate::error::Result;

/// What an admission found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Admitted: release this id once the response is read.
    Granted(i64),
    /// The window is full (or the credential banned): ask again after this many ms.
    Wait(i64),
}

/// The fleet-wide window and bans.
#[async_trait]
pub(crate) trait Pacing: Send + Sync {
    /// Admits one request of `credential` if fewer than `qps` were in flight or finished within
    /// the last `window_ms` and no ban is in force: records it as in flight for `holder` until
    /// `lease_until_ms` at the latest.
    async fn pace_admit(
        &self,
        credential: &str,
        qps: u32,
        window_ms: i64,
        holder: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Admission>;

    /// The request's response was read at `now_ms`.
    async fn pace_release(&self, credential: &str, id: i64, now_ms: i64) -> Result<()>;

    /// Records a platform ban of `credential` until `until_ms` (a later ban in force stays).
    async fn pace_ban(&self, credential: &str, until_ms: i64) -> Result<()>;

    /// The ban in force on `credential` at `now_ms`, if any: until when.
    async fn pace_banned_until(&self, credential: &str, now_ms: i64) -> Result<Option<i64>>;
}
