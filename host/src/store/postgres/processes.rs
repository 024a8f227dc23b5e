//! [`Processes`] on PostgreSQL: `processes`, one row per process start. A reap is one
//! transaction, one round trip: the row marked ended only if it did not beat since, then its
//! leases given back only if this transaction ended it.

use async_trait::async_trait;

use super::{Postgres, Wrap, pipeline, prepare};
use crate::error::Result;
use crate::store::{Process, Processes, Reaped, now_ms};

/// How long an ended process's row is kept (for people reading the table).
const KEEP_ENDED_MS: i64 = 86_400_000;

const BEAT: &str = "INSERT INTO processes (holder, host, pid, works, beat_ms)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (holder) DO UPDATE SET works = $4,
    beat_ms = GREATEST(processes.beat_ms, $5), ended_ms = NULL";

const PRUNE: &str = "DELETE FROM processes WHERE ended_ms < $1";

const LIST: &str = "SELECT holder, host, pid, works, beat_ms FROM processes
    WHERE ended_ms IS NULL ORDER BY holder";

/// `$1` holder, `$2` the beat seen (NULL: any), `$3` now.
const END: &str = "UPDATE processes SET ended_ms = $3 WHERE holder = $1 AND ended_ms IS NULL
    AND ($2::int8 IS NULL OR beat_ms = $2::int8) RETURNING holder";

/// `$1` holder, `$2` when [`END`] ended it.
const REQUEUE: &str =
    "UPDATE campaign_batches SET state = 'queued', holder = '', lease_until_ms = 0
    WHERE holder = $1 AND state = 'leased'
    AND EXISTS (SELECT 1 FROM processes WHERE holder = $1 AND ended_ms = $2::int8)
    RETURNING batch";

/// `$1` holder, `$2` when [`END`] ended it.
const EXPIRE: &str = "UPDATE sends SET lease_until_ms = 0
    WHERE holder = $1 AND state = 'pending' AND lease_until_ms > 0
    AND EXISTS (SELECT 1 FROM processes WHERE holder = $1 AND ended_ms = $2::int8)
    RETURNING key";

#[async_trait]
impl Processes for Postgres {
    async fn process_beat(&self, process: &Process) -> Result<()> {
        let conn = self.conn().await?;
        let [beat, prune] = prepare(&conn, [BEAT, PRUNE]).await?;
        let pid = i64::from(process.pid);
        pipeline(
            &conn,
            Wrap::None,
            "cannot record the heartbeat",
            &[
                (
                    &beat,
                    &[
                        &process.holder,
                        &process.host,
                        &pid,
                        &process.works,
                        &process.beat_ms,
                    ],
                ),
                (&prune, &[&(process.beat_ms - KEEP_ENDED_MS)]),
            ],
        )
        .await?;
        Ok(())
    }

    async fn processes(&self) -> Result<Vec<Process>> {
        let conn = self.conn().await?;
        let [list] = prepare(&conn, [LIST]).await?;
        let found = pipeline(
            &conn,
            Wrap::None,
            "cannot read the processes",
            &[(&list, &[])],
        )
        .await?;
        Ok(found[0]
            .iter()
            .map(|row| Process {
                holder: row.get(0),
                host: row.get(1),
                pid: u32::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                works: row.get(3),
                beat_ms: row.get(4),
            })
            .collect())
    }

    async fn process_reap(&self, holder: &str, beat_ms: Option<i64>) -> Result<Option<Reaped>> {
        let conn = self.conn().await?;
        let [end, requeue, expire] = prepare(&conn, [END, REQUEUE, EXPIRE]).await?;
        let now = now_ms();
        let found = pipeline(
            &conn,
            Wrap::Atomic,
            "cannot reap a process",
            &[
                (&end, &[&holder, &beat_ms, &now]),
                (&requeue, &[&holder, &now]),
                (&expire, &[&holder, &now]),
            ],
        )
        .await?;
        if found[0].is_empty() {
            return Ok(None);
        }
        Ok(Some(Reaped {
            batches: found[1].len() as u64,
            sends: found[2].len() as u64,
        }))
    }
}
