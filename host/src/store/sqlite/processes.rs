//! [`Processes`] on SQLite: `processes`, one row per process start.

use async_trait::async_trait;
use rusqlite::params;

use super::{Context, Sqlite};
use crate::error::Result;
use crate::store::{Process, Processes, Reaped};

/// How long an ended process's row is kept (for people reading the table).
const KEEP_ENDED_MS: i64 = 86_400_000;

#[async_trait]
impl Processes for Sqlite {
    async fn process_beat(&self, process: &Process) -> Result<()> {
        let process = process.clone();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO processes (holder, host, pid, works, beat_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (holder) DO UPDATE SET works = ?4, beat_ms = MAX(beat_ms, ?5),
                 ended_ms = NULL",
            )
            .and_then(|mut upsert| {
                upsert.execute(params![
                    process.holder,
                    process.host,
                    process.pid,
                    process.works,
                    process.beat_ms
                ])
            })
            .doing("cannot record the heartbeat")?;
            conn.prepare_cached("DELETE FROM processes WHERE ended_ms < ?1")
                .and_then(|mut delete| delete.execute(params![process.beat_ms - KEEP_ENDED_MS]))
                .doing("cannot drop ended processes")?;
            Ok(())
        })
        .await
    }

    async fn processes(&self) -> Result<Vec<Process>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT holder, host, pid, works, beat_ms FROM processes
                 WHERE ended_ms IS NULL ORDER BY holder",
            )
            .and_then(|mut select| {
                select
                    .query_map([], |row| {
                        Ok(Process {
                            holder: row.get(0)?,
                            host: row.get(1)?,
                            pid: row.get(2)?,
                            works: row.get(3)?,
                            beat_ms: row.get(4)?,
                        })
                    })?
                    .collect()
            })
            .doing("cannot read the processes")
        })
        .await
    }

    async fn process_reap(&self, holder: &str, beat_ms: Option<i64>) -> Result<Option<Reaped>> {
        let holder = holder.to_owned();
        self.write(move |conn| {
            let ended = conn
                .prepare_cached(
                    "UPDATE processes SET ended_ms = ?3 WHERE holder = ?1 AND ended_ms IS NULL
                     AND (?2 IS NULL OR beat_ms = ?2)",
                )
                .and_then(|mut update| {
                    update.execute(params![holder, beat_ms, crate::store::now_ms()])
                })
                .doing("cannot mark a process ended")?;
            if ended == 0 {
                return Ok(None);
            }
            let batches = conn
                .prepare_cached(
                    "UPDATE campaign_batches SET state = 'queued', holder = '', lease_until_ms = 0
                     WHERE holder = ?1 AND state = 'leased'",
                )
                .and_then(|mut update| update.execute(params![holder]))
                .doing("cannot give the batches back")?;
            let sends = conn
                .prepare_cached(
                    "UPDATE sends SET lease_until_ms = 0
                     WHERE holder = ?1 AND state = 'pending' AND lease_until_ms > 0",
                )
                .and_then(|mut update| update.execute(params![holder]))
                .doing("cannot give up the sends' leases")?;
            Ok(Some(Reaped {
                batches: batches as u64,
                sends: sends as u64,
            }))
        })
        .await
    }
}
