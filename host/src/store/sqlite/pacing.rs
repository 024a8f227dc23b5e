//! [`Pacing`] on SQLite: `pace` (one row per request in the window) and `bans`.
//!
//! An admission is one write: the writer thread serialises every process's admissions to the
//! file (SQLite's write lock orders those of other processes), so the count and the insert
//! cannot interleave with another admission.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::{Context, Sqlite};
use crate::error::Result;
use crate::store::{Admission, Pacing};

#[async_trait]
impl Pacing for Sqlite {
    async fn pace_admit(
        &self,
        credential: &str,
        qps: u32,
        window_ms: i64,
        holder: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Admission> {
        let (credential, holder) = (credential.to_owned(), holder.to_owned());
        self.write(move |conn| {
            let banned: Option<i64> = conn
                .prepare_cached("SELECT until_ms FROM bans WHERE credential = ?1 AND until_ms > ?2")
                .and_then(|mut select| {
                    select
                        .query_row(params![credential, now_ms], |row| row.get(0))
                        .optional()
                })
                .doing("cannot read bans")?;
            if let Some(until) = banned {
                return Ok(Admission::Wait(until - now_ms));
            }
            // A request counts from its permit until its response was read (or, if its holder
            // died, until its lease ran out), and for one window after that.
            let horizon = now_ms - window_ms;
            conn.prepare_cached(
                "DELETE FROM pace WHERE credential = ?1 AND COALESCE(finished_ms, lease_until_ms) <= ?2",
            )
            .and_then(|mut delete| delete.execute(params![credential, horizon]))
            .doing("cannot prune the request window")?;
            let (count, oldest_end): (i64, Option<i64>) = conn
                .prepare_cached("SELECT COUNT(*), MIN(finished_ms) FROM pace WHERE credential = ?1")
                .and_then(|mut select| {
                    select.query_row(params![credential], |row| Ok((row.get(0)?, row.get(1)?)))
                })
                .doing("cannot read the request window")?;
            if count >= i64::from(qps) {
                // The earliest a slot frees: the oldest finished request leaving the window; if
                // every one is still in flight, soon after one finishes.
                let wait = oldest_end.map_or(5, |end| (end + window_ms - now_ms).max(1));
                return Ok(Admission::Wait(wait));
            }
            // Ids are never reused (AUTOINCREMENT), so a late release cannot end another request.
            conn.prepare_cached(
                "INSERT INTO pace (credential, holder, started_ms, lease_until_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut insert| {
                insert.execute(params![credential, holder, now_ms, lease_until_ms])
            })
            .doing("cannot record a request in the window")?;
            Ok(Admission::Granted(conn.last_insert_rowid()))
        })
        .await
    }

    async fn pace_release(&self, credential: &str, id: i64, now_ms: i64) -> Result<()> {
        let credential = credential.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE pace SET finished_ms = ?3 WHERE credential = ?1 AND id = ?2",
            )
            .and_then(|mut update| update.execute(params![credential, id, now_ms]))
            .map(drop)
            .doing("cannot record a finished request")
        })
        .await
    }

    async fn pace_ban(&self, credential: &str, until_ms: i64) -> Result<()> {
        let credential = credential.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO bans (credential, until_ms) VALUES (?1, ?2)
                 ON CONFLICT (credential) DO UPDATE SET until_ms = MAX(until_ms, ?2)",
            )
            .and_then(|mut upsert| upsert.execute(params![credential, until_ms]))
            .map(drop)
            .doing("cannot record a ban")
        })
        .await
    }

    async fn pace_banned_until(&self, credential: &str, now_ms: i64) -> Result<Option<i64>> {
        let credential = credential.to_owned();
        self.read(move |conn| {
            conn.prepare_cached("SELECT until_ms FROM bans WHERE credential = ?1 AND until_ms > ?2")
                .and_then(|mut select| {
                    select
                        .query_row(params![credential, now_ms], |row| row.get(0))
                        .optional()
                })
                .doing("cannot read bans")
        })
        .await
    }
}
