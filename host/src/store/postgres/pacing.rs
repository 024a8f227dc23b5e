//! [`Pacing`] on PostgreSQL: `pace` (one row per request in the window) and `bans`.
//!
//! An admission is one transaction, one round trip: the credential's advisory lock, then one
//! statement that reads the ban, prunes the window, counts it and records the request if there
//! is room. The lock serialises every host's admissions of a credential, and the statement after
//! it sees every admission committed before it (see the module doc of `postgres.rs`).

use async_trait::async_trait;

use super::{LOCK, LockClass, Postgres, Wrap, pipeline, prepare};
use crate::error::Result;
use crate::store::{Admission, Pacing};

/// `$1` credential, `$2` now, `$3` the window's start (now − window), `$4` holder, `$5` the
/// lease's end, `$6` qps. Returns the ban in force, the requests in the window, the earliest
/// end of a finished one, and the new request's id when it was admitted.
///
/// A request counts from its permit until its response was read (or, if its holder died, until
/// its lease ran out), and for one window after that. The CTEs all see the table as it was when
/// the statement began, so the count leaves out what the prune deletes by the same condition.
const ADMIT: &str = "
    WITH ban AS (
        SELECT until_ms FROM bans WHERE credential = $1 AND until_ms > $2::int8),
    pruned AS (
        DELETE FROM pace
        WHERE credential = $1 AND COALESCE(finished_ms, lease_until_ms) <= $3::int8),
    window_ AS (
        SELECT COUNT(*) AS n, MIN(finished_ms) AS oldest_end FROM pace
        WHERE credential = $1 AND COALESCE(finished_ms, lease_until_ms) > $3::int8),
    granted AS (
        INSERT INTO pace (credential, holder, started_ms, lease_until_ms)
        SELECT $1::text, $4::text, $2::int8, $5::int8
        WHERE NOT EXISTS (SELECT 1 FROM ban) AND (SELECT n FROM window_) < $6::int8
        RETURNING id)
    SELECT (SELECT until_ms FROM ban), (SELECT oldest_end FROM window_), (SELECT id FROM granted)";

const RELEASE: &str = "UPDATE pace SET finished_ms = $3 WHERE credential = $1 AND id = $2";

const BAN: &str = "INSERT INTO bans (credential, until_ms) VALUES ($1, $2)
    ON CONFLICT (credential) DO UPDATE SET until_ms = GREATEST(bans.until_ms, EXCLUDED.until_ms)";

const BANNED_UNTIL: &str = "SELECT until_ms FROM bans WHERE credential = $1 AND until_ms > $2";

#[async_trait]
impl Pacing for Postgres {
    async fn pace_admit(
        &self,
        credential: &str,
        qps: u32,
        window_ms: i64,
        holder: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Admission> {
        let conn = self.conn().await?;
        let [lock, admit] = prepare(&conn, [LOCK, ADMIT]).await?;
        let key = self.lock_key(&[credential]);
        let rows = pipeline(
            &conn,
            Wrap::Atomic,
            "cannot admit a request to the window",
            &[
                (&lock, &[&(LockClass::Credential as i32), &key]),
                (
                    &admit,
                    &[
                        &credential,
                        &now_ms,
                        &(now_ms - window_ms),
                        &holder,
                        &lease_until_ms,
                        &i64::from(qps),
                    ],
                ),
            ],
        )
        .await?;
        let row = &rows[1][0];
        let (banned, oldest_end, granted): (Option<i64>, Option<i64>, Option<i64>) =
            (row.get(0), row.get(1), row.get(2));
        Ok(match (banned, granted) {
            (Some(until), _) => Admission::Wait(until - now_ms),
            (None, Some(id)) => Admission::Granted(id),
            // The earliest a slot frees: the oldest finished request leaving the window; if
            // every one is still in flight, soon after one finishes.
            (None, None) => {
                Admission::Wait(oldest_end.map_or(5, |end| (end + window_ms - now_ms).max(1)))
            }
        })
    }

    async fn pace_release(&self, credential: &str, id: i64, now_ms: i64) -> Result<()> {
        let conn = self.conn().await?;
        let [release] = prepare(&conn, [RELEASE]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot record a finished request",
            &[(&release, &[&credential, &id, &now_ms])],
        )
        .await?;
        Ok(())
    }

    async fn pace_ban(&self, credential: &str, until_ms: i64) -> Result<()> {
        let conn = self.conn().await?;
        let [ban] = prepare(&conn, [BAN]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot record a ban",
            &[(&ban, &[&credential, &until_ms])],
        )
        .await?;
        Ok(())
    }

    async fn pace_banned_until(&self, credential: &str, now_ms: i64) -> Result<Option<i64>> {
        let conn = self.conn().await?;
        let [banned] = prepare(&conn, [BANNED_UNTIL]).await?;
        let rows = pipeline(
            &conn,
            Wrap::None,
            "cannot read bans",
            &[(&banned, &[&credential, &now_ms])],
        )
        .await?;
        Ok(rows[0].first().map(|row| row.get(0)))
    }
}
