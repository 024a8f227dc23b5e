//! [`Ledger`] on SQLite: `campaigns`, `campaign_lines` (accepted recipients with their batch and
//! position), `campaign_rejects`, `campaign_batches` (the work queue) and the workers' progress.
//! Status and reports join the journal's tables here, inside the backend.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Context, Sqlite};
use crate::error::{Error, Result};
use crate::store::ledger::{batch_key, report_line, settle_status};
use crate::store::{Batch, CampaignRecord, Claim, Ledger, Reject, Scope, now_ms};
use crate::types::{CampaignStatus, Recipient, ReportLine, WorkerStatus};

fn record_in(conn: &Connection, id: &str) -> rusqlite::Result<Option<CampaignRecord>> {
    conn.prepare_cached(
        "SELECT plugin, account, coupon, quantity, options, source, source_sha256, total_lines,
         batch_size FROM campaigns WHERE id = ?1",
    )?
    .query_row(params![id], |row| {
        let options: String = row.get(4)?;
        Ok(CampaignRecord {
            id: id.to_owned(),
            scope: Scope::new(row.get::<_, String>(0)?, row.get::<_, String>(1)?),
            coupon: row.get(2)?,
            quantity: row.get(3)?,
            options: serde_json::from_str(&options).unwrap_or_default(),
            source: row.get(5)?,
            source_sha256: row.get(6)?,
            total_lines: row.get::<_, i64>(7)? as u64,
            batch_size: row.get::<_, i64>(8)? as u64,
        })
    })
    .optional()
}

fn unknown(id: &str) -> Error {
    Error::UnknownCampaign(id.chars().take(64).collect())
}

/// The recipients of a batch, in position order.
fn batch_recipients(conn: &Connection, id: &str, index: u64) -> Result<Vec<Recipient>> {
    let mut select = conn
        .prepare_cached(
            "SELECT recipient FROM campaign_lines WHERE campaign = ?1 AND batch = ?2
             ORDER BY position",
        )
        .doing("cannot read a batch")?;
    let texts = select
        .query_map(params![id, index as i64], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .doing("cannot read a batch")?;
    texts
        .into_iter()
        .map(|text| {
            text.parse()
                .map_err(|e| Error::storage_from(format!("campaign {id}: a stored recipient"), e))
        })
        .collect()
}

#[async_trait]
impl Ledger for Sqlite {
    async fn campaign_open(&self, record: &CampaignRecord) -> Result<Option<CampaignRecord>> {
        let record = record.clone();
        self.write(move |conn| {
            if let Some(existing) = record_in(conn, &record.id).doing("cannot read campaigns")? {
                return Ok(Some(existing));
            }
            let now = now_ms();
            conn.prepare_cached(
                "INSERT INTO campaigns (id, plugin, account, coupon, quantity, options, source,
                 source_sha256, total_lines, batch_size, state, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'running', ?11, ?11)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    record.id,
                    record.scope.plugin,
                    record.scope.account,
                    record.coupon,
                    record.quantity,
                    serde_json::to_string(&record.options).expect("strings serialize"),
                    record.source,
                    record.source_sha256,
                    record.total_lines as i64,
                    record.batch_size as i64,
                    now
                ])
            })
            .doing("cannot register the campaign")?;
            Ok(None)
        })
        .await
    }

    async fn campaign_get(&self, id: &str) -> Result<Option<CampaignRecord>> {
        let id = id.to_owned();
        self.read(move |conn| record_in(conn, &id).doing("cannot read campaigns"))
            .await
    }

    async fn campaign_accept(
        &self,
        id: &str,
        candidates: Vec<(u64, Recipient)>,
        accepted: u64,
        batch_size: u64,
    ) -> Result<Vec<Recipient>> {
        let id = id.to_owned();
        self.write(move |conn| {
            accept(conn, &id, candidates, accepted, batch_size).doing("cannot enqueue recipients")
        })
        .await
    }

    async fn campaign_reject(&self, id: &str, rejects: Vec<Reject>) -> Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        let id = id.to_owned();
        self.write(move |conn| {
            let mut insert = conn
                .prepare_cached(
                    "INSERT OR IGNORE INTO campaign_rejects (campaign, line, text, state, reason)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .doing("cannot record rejected lines")?;
            for reject in rejects {
                insert
                    .execute(params![
                        id,
                        reject.line as i64,
                        reject.text,
                        reject.state,
                        reject.reason
                    ])
                    .doing("cannot record rejected lines")?;
            }
            Ok(())
        })
        .await
    }

    async fn campaign_queue(&self, id: &str, index: u64) -> Result<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO campaign_batches (campaign, batch, state)
                 VALUES (?1, ?2, 'queued')",
            )
            .and_then(|mut insert| insert.execute(params![id, index as i64]))
            .map(drop)
            .doing("cannot queue a batch")
        })
        .await
    }

    async fn campaign_enqueued(&self, id: &str) -> Result<()> {
        let id = id.to_owned();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE campaigns SET enqueued = 1, updated_ms = ?2 WHERE id = ?1")
                .and_then(|mut update| update.execute(params![id, now_ms()]))
                .doing("cannot mark the campaign enqueued")?;
            settle(conn, &id)
        })
        .await
    }

    async fn campaign_claim(
        &self,
        campaign: Option<&str>,
        holder: &str,
        until_ms: i64,
    ) -> Result<Claim> {
        let (campaign, holder) = (campaign.map(str::to_owned), holder.to_owned());
        self.write(move |conn| claim(conn, campaign.as_deref(), &holder, until_ms))
            .await
    }

    async fn campaign_renew(
        &self,
        id: &str,
        index: u64,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.write(move |conn| {
            let renewed = conn
                .prepare_cached(
                    "UPDATE campaign_batches SET lease_until_ms = ?4
                     WHERE campaign = ?1 AND batch = ?2 AND holder = ?3 AND state = 'leased'",
                )
                .and_then(|mut update| update.execute(params![id, index as i64, holder, until_ms]))
                .doing("cannot renew a batch's lease")?;
            seen(conn, &holder, now_ms())?;
            Ok(renewed == 1)
        })
        .await
    }

    async fn campaign_release(
        &self,
        id: &str,
        index: u64,
        holder: &str,
        done: bool,
        recipients: u64,
    ) -> Result<()> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.write(move |conn| {
            let now = now_ms();
            let released = conn
                .prepare_cached(
                    "UPDATE campaign_batches SET state = ?4, holder = '', lease_until_ms = 0
                     WHERE campaign = ?1 AND batch = ?2 AND holder = ?3 AND state = 'leased'",
                )
                .and_then(|mut update| {
                    update.execute(params![
                        id,
                        index as i64,
                        holder,
                        if done { "done" } else { "queued" }
                    ])
                })
                .doing("cannot release a batch")?;
            if done && released == 1 {
                conn.prepare_cached(
                    "INSERT INTO workers (holder, campaign, seen_ms, batches, recipients)
                     VALUES (?1, ?2, ?3, 1, ?4)
                     ON CONFLICT (holder, campaign) DO UPDATE SET seen_ms = ?3,
                     batches = batches + 1, recipients = recipients + ?4",
                )
                .and_then(|mut upsert| upsert.execute(params![holder, id, now, recipients as i64]))
                .doing("cannot record a worker's progress")?;
                settle(conn, &id)?;
            }
            seen(conn, &holder, now)
        })
        .await
    }

    async fn campaign_release_holder(&self, holder: &str) -> Result<()> {
        let holder = holder.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE campaign_batches SET state = 'queued', holder = '', lease_until_ms = 0
                 WHERE holder = ?1 AND state = 'leased'",
            )
            .and_then(|mut update| update.execute(params![holder]))
            .map(drop)
            .doing("cannot give the batches back")
        })
        .await
    }

    async fn campaign_stop(&self, id: &str, reason: Option<&str>) -> Result<()> {
        let (id, reason) = (id.to_owned(), reason.map(str::to_owned));
        self.write(move |conn| {
            conn.prepare_cached("UPDATE campaigns SET stopped = ?2, updated_ms = ?3 WHERE id = ?1")
                .and_then(|mut update| update.execute(params![id, reason, now_ms()]))
                .map(drop)
                .doing("cannot stop the campaign")
        })
        .await
    }

    async fn campaign_status(&self, id: &str) -> Result<CampaignStatus> {
        let id = id.to_owned();
        self.read(move |conn| status(conn, &id)).await
    }

    async fn campaign_report(&self, id: &str, after: u64, limit: usize) -> Result<Vec<ReportLine>> {
        let id = id.to_owned();
        self.read(move |conn| report(conn, &id, after, limit)).await
    }

    async fn campaign_workers(&self, id: &str, since_ms: i64) -> Result<Vec<WorkerStatus>> {
        let id = id.to_owned();
        self.read(move |conn| {
            let mut select = conn
                .prepare_cached(
                    "SELECT w.holder, s.seen_ms, w.batches, w.recipients FROM workers w
                     JOIN worker_seen s ON s.holder = w.holder
                     WHERE w.campaign = ?1 AND s.seen_ms >= ?2 ORDER BY w.holder",
                )
                .doing("cannot read workers")?;
            select
                .query_map(params![id, since_ms], |row| {
                    Ok(WorkerStatus {
                        id: row.get(0)?,
                        seen_ago_ms: WorkerStatus::age(row.get(1)?),
                        batches: row.get::<_, i64>(2)? as u64,
                        recipients: row.get::<_, i64>(3)? as u64,
                    })
                })
                .and_then(|rows| rows.collect())
                .doing("cannot read workers")
        })
        .await
    }
}

fn seen(conn: &Connection, holder: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO worker_seen (holder, seen_ms) VALUES (?1, ?2)
         ON CONFLICT (holder) DO UPDATE SET seen_ms = MAX(seen_ms, ?2)",
    )
    .and_then(|mut upsert| upsert.execute(params![holder, now]))
    .map(drop)
    .doing("cannot record a worker")
}

/// Marks the campaign `done` once it is enqueued and every batch is done.
fn settle(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached(
        "UPDATE campaigns SET state = 'done', updated_ms = ?2
         WHERE id = ?1 AND enqueued = 1 AND state != 'done'
         AND NOT EXISTS (SELECT 1 FROM campaign_batches
                         WHERE state IN ('queued', 'leased') AND campaign = ?1)",
    )
    .and_then(|mut update| update.execute(params![id, now_ms()]))
    .map(drop)
    .doing("cannot settle the campaign")
}

fn accept(
    conn: &Connection,
    id: &str,
    candidates: Vec<(u64, Recipient)>,
    mut accepted: u64,
    batch_size: u64,
) -> rusqlite::Result<Vec<Recipient>> {
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO campaign_lines (campaign, recipient, line, batch, position)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut first = conn
        .prepare_cached("SELECT line FROM campaign_lines WHERE campaign = ?1 AND recipient = ?2")?;
    let mut reject = conn.prepare_cached(
        "INSERT OR IGNORE INTO campaign_rejects (campaign, line, text, state, reason)
         VALUES (?1, ?2, ?3, 'skipped', ?4)",
    )?;
    let mut kept = Vec::with_capacity(candidates.len());
    for (line, recipient) in candidates {
        let text = recipient.to_string();
        let inserted = insert.execute(params![
            id,
            text,
            line as i64,
            (accepted / batch_size) as i64,
            (accepted % batch_size) as i64
        ])?;
        // A rerun over the same file meets its own earlier insert: the first line is this one.
        let earlier: i64 = if inserted == 1 {
            line as i64
        } else {
            first.query_row(params![id, text], |row| row.get(0))?
        };
        if earlier == line as i64 {
            accepted += 1;
            kept.push(recipient);
        } else {
            reject.execute(params![
                id,
                line as i64,
                text,
                format!("repeats line {earlier}; sent once")
            ])?;
        }
    }
    Ok(kept)
}

fn claim(conn: &Connection, campaign: Option<&str>, holder: &str, until_ms: i64) -> Result<Claim> {
    let now = now_ms();
    if let Some(id) = campaign {
        let state: Option<(Option<String>, i64)> = conn
            .prepare_cached("SELECT stopped, enqueued FROM campaigns WHERE id = ?1")
            .and_then(|mut select| {
                select
                    .query_row(params![id], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .doing("cannot read campaigns")?;
        match state {
            None => return Err(unknown(id)),
            Some((Some(reason), _)) => return Ok(Claim::Stopped(reason)),
            Some(_) => {}
        }
    }
    // The campaigns to claim from, oldest first; then, in each, two lookups in
    // `campaign_batches_open`. One query with an `OR` over the states scanned every batch of the
    // campaign on each claim, which made a campaign's claims quadratic in its batches.
    let candidates: Vec<String> = match campaign {
        Some(id) => vec![id.to_owned()],
        None => conn
            .prepare_cached(
                "SELECT id FROM campaigns WHERE stopped IS NULL AND state != 'done'
                 ORDER BY created_ms, id",
            )
            .and_then(|mut select| {
                select
                    .query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()
            })
            .doing("cannot claim a batch")?,
    };
    let mut next = None;
    for id in candidates {
        if let Some(index) = next_batch(conn, &id, now)? {
            next = Some((id, index));
            break;
        }
    }
    seen(conn, holder, now)?;
    if let Some((id, index)) = next {
        conn.prepare_cached(
            "UPDATE campaign_batches SET state = 'leased', holder = ?3, lease_until_ms = ?4
             WHERE campaign = ?1 AND batch = ?2",
        )
        .and_then(|mut update| update.execute(params![id, index, holder, until_ms]))
        .doing("cannot claim a batch")?;
        let recipients = batch_recipients(conn, &id, index as u64)?;
        return Ok(Claim::Batch(Batch {
            campaign: id,
            index: index as u64,
            recipients,
        }));
    }
    let Some(id) = campaign else {
        return Ok(Claim::Wait);
    };
    let open: bool = conn
        .prepare_cached(
            "SELECT (SELECT enqueued FROM campaigns WHERE id = ?1) = 0
             OR EXISTS (SELECT 1 FROM campaign_batches
                        WHERE state IN ('queued', 'leased') AND campaign = ?1)",
        )
        .and_then(|mut select| select.query_row(params![id], |row| row.get(0)))
        .doing("cannot read campaigns")?;
    Ok(if open { Claim::Wait } else { Claim::Done })
}

/// The lowest claimable batch of campaign `id`: a queued one, or a leased one whose lease ran
/// out by `now`.
fn next_batch(conn: &Connection, id: &str, now: i64) -> Result<Option<i64>> {
    let lowest = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> Result<Option<i64>> {
        conn.prepare_cached(sql)
            .and_then(|mut select| select.query_row(params, |row| row.get(0)).optional())
            .doing("cannot claim a batch")
    };
    let queued = lowest(
        "SELECT batch FROM campaign_batches WHERE state = 'queued' AND campaign = ?1
         ORDER BY batch LIMIT 1",
        params![id],
    )?;
    // Without statistics the planner takes the primary key for this one, and scans every batch.
    let expired = lowest(
        "SELECT batch FROM campaign_batches INDEXED BY campaign_batches_open
         WHERE state = 'leased' AND campaign = ?1
         AND lease_until_ms <= ?2 ORDER BY batch LIMIT 1",
        params![id, now],
    )?;
    Ok(match (queued, expired) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    })
}

fn status(conn: &Connection, id: &str) -> Result<CampaignStatus> {
    let (mut status, stopped) = conn
        .prepare_cached(
            "SELECT plugin, account, coupon, source, state, total_lines, stopped FROM campaigns
             WHERE id = ?1",
        )
        .and_then(|mut select| {
            select
                .query_row(params![id], |row| {
                    Ok((
                        CampaignStatus {
                            id: id.to_owned(),
                            plugin: row.get(0)?,
                            account: row.get(1)?,
                            coupon: row.get(2)?,
                            source: row.get(3)?,
                            state: row.get(4)?,
                            total: row.get::<_, i64>(5)? as u64,
                            ..CampaignStatus::default()
                        },
                        row.get::<_, Option<String>>(6)?,
                    ))
                })
                .optional()
        })
        .doing("cannot read campaigns")?
        .ok_or_else(|| unknown(id))?;
    let (low, high) = (format!("{id}/"), format!("{id}/~"));
    let mut counts = conn
        .prepare_cached(
            "SELECT state, COUNT(*) FROM send_recipients
             WHERE plugin = ?1 AND account = ?2 AND key > ?3 AND key < ?4 GROUP BY state",
        )
        .doing("cannot count a campaign's recipients")?;
    let rows = counts
        .query_map(params![status.plugin, status.account, low, high], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
        })
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .doing("cannot count a campaign's recipients")?;
    for (state, n) in rows {
        match state.as_str() {
            "issued" => status.issued += n,
            "failed" => status.failed += n,
            "unknown" => status.unknown += n,
            _ => {}
        }
    }
    let rejects = conn
        .prepare_cached(
            "SELECT state, COUNT(*) FROM campaign_rejects WHERE campaign = ?1 GROUP BY state",
        )
        .and_then(|mut select| {
            select
                .query_map(params![id], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .doing("cannot count a campaign's rejected lines")?;
    settle_status(&mut status, rejects, stopped);
    Ok(status)
}

fn report(conn: &Connection, id: &str, after: u64, limit: usize) -> Result<Vec<ReportLine>> {
    let record = record_in(conn, id)
        .doing("cannot read campaigns")?
        .ok_or_else(|| unknown(id))?;
    let mut select = conn
        .prepare_cached(
            "SELECT l.line, l.recipient, r.state, r.detail FROM campaign_lines l
             LEFT JOIN send_recipients r ON r.plugin = ?2 AND r.account = ?3
                 AND r.key = ?1 || '/' || printf('%08d', l.batch) AND r.position = l.position
             WHERE l.campaign = ?1 AND l.line > ?4
             UNION ALL
             SELECT line, text, state, reason FROM campaign_rejects WHERE campaign = ?1 AND line > ?4
             ORDER BY 1 LIMIT ?5",
        )
        .doing("cannot read the report")?;
    debug_assert_eq!(
        batch_key("c", 1),
        "c/00000001",
        "the join above builds the same keys"
    );
    let rows = select
        .query_map(
            params![
                id,
                record.scope.plugin,
                record.scope.account,
                after as i64,
                limit as i64
            ],
            |row| {
                Ok((
                    row.get::<_, i64>(0)? as u64,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                ))
            },
        )
        .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        .doing("cannot read the report")?;
    Ok(rows
        .into_iter()
        .map(|(line, recipient, state, detail)| report_line(line, recipient, state, detail))
        .collect())
}
