//! [`Ledger`] on PostgreSQL: `campaigns`, `campaign_lines` (accepted recipients with their batch
//! and position), `campaign_rejects`, `campaign_batches` (the work queue) and the workers'
//! progress. Status and reports join the journal's tables here, inside the backend.
//!
//! A batch is claimed with `FOR UPDATE SKIP LOCKED`: hosts claiming at once each get another
//! batch, never waiting for each other. A campaign's end (`settle`) is decided with its row
//! locked, by the release of its last batch or by the end of its enqueueing, whichever commits
//! second: each sees what the other committed.

use std::collections::HashMap;

use async_trait::async_trait;
use tokio_postgres::Row as PgRow;
use tokio_postgres::types::ToSql;

use super::{LOCK, LockClass, Postgres, Tx, Wrap, pipeline, prepare};
use crate::error::{Error, Result};
use crate::store::ledger::{batch_key, report_line, settle_status};
use crate::store::{Batch, CampaignRecord, Claim, Ledger, Reject, Scope, now_ms};
use crate::types::{CampaignStatus, Recipient, ReportLine, WorkerStatus};

const OPEN: &str = "INSERT INTO campaigns (id, plugin, account, coupon, quantity, options, source,
        source_sha256, total_lines, batch_size, state, created_ms, updated_ms)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'running', $11, $11)
    ON CONFLICT (id) DO NOTHING RETURNING 1";

const GET: &str = "SELECT plugin, account, coupon, quantity, options, source, source_sha256,
    total_lines, batch_size FROM campaigns WHERE id = $1";

const EXISTS: &str = "SELECT 1 FROM campaigns WHERE id = $1";

/// Locks a campaign's row until the transaction ends.
const LOCK_CAMPAIGN: &str = "SELECT 1 FROM campaigns WHERE id = $1 FOR UPDATE";

/// The first line of each of the recipients `$2` already accepted.
const FIRST_LINES: &str = "SELECT recipient, line FROM campaign_lines
    WHERE campaign = $1 AND recipient = ANY($2::text[])";

const INSERT_LINES: &str = "INSERT INTO campaign_lines (campaign, recipient, line, batch, position)
    SELECT $1::text, * FROM unnest($2::text[], $3::int8[], $4::int8[], $5::int8[])
    ON CONFLICT DO NOTHING";

const INSERT_REJECTS: &str = "INSERT INTO campaign_rejects (campaign, line, text, state, reason)
    SELECT $1::text, * FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[])
    ON CONFLICT DO NOTHING";

const QUEUE: &str =
    "INSERT INTO campaign_batches (campaign, batch, state) VALUES ($1, $2, 'queued')
    ON CONFLICT DO NOTHING";

const ENQUEUED: &str = "UPDATE campaigns SET enqueued = true, updated_ms = $2 WHERE id = $1";

/// Marks the campaign `done` once it is enqueued and every batch is done. Run with the
/// campaign's row locked (see the module doc).
const SETTLE: &str = "UPDATE campaigns SET state = 'done', updated_ms = $2
    WHERE id = $1 AND enqueued AND state <> 'done'
    AND NOT EXISTS (SELECT 1 FROM campaign_batches WHERE campaign = $1 AND state <> 'done')";

/// Whether the campaign is stopped, and whether it is enqueued.
const CLAIM_CHECK: &str = "SELECT stopped, enqueued FROM campaigns WHERE id = $1";

/// Leases the lowest claimable batch of `$1` (of any running campaign when null) to `$3` until
/// `$4` — a queued one, or one whose lease ran out by `$2` — and returns it with its recipients
/// in position order (one row with a null recipient when the batch has none).
const CLAIM: &str = "
    WITH next AS (
        SELECT b.campaign, b.batch FROM campaign_batches b JOIN campaigns c ON c.id = b.campaign
        WHERE ($1::text IS NULL OR b.campaign = $1::text) AND c.stopped IS NULL
        AND b.state <> 'done'
        AND (b.state = 'queued' OR (b.state = 'leased' AND b.lease_until_ms <= $2::int8))
        ORDER BY c.created_ms, b.campaign, b.batch LIMIT 1
        FOR UPDATE OF b SKIP LOCKED),
    took AS (
        UPDATE campaign_batches b SET state = 'leased', holder = $3, lease_until_ms = $4
        FROM next WHERE b.campaign = next.campaign AND b.batch = next.batch
        RETURNING b.campaign, b.batch)
    SELECT took.campaign, took.batch, l.recipient FROM took
    LEFT JOIN campaign_lines l ON l.campaign = took.campaign AND l.batch = took.batch
    ORDER BY l.position";

/// Whether a campaign may still have work: not enqueued to the end, or a batch not done.
const STILL_OPEN: &str = "SELECT NOT enqueued
    OR EXISTS (SELECT 1 FROM campaign_batches WHERE campaign = $1 AND state <> 'done')
    FROM campaigns WHERE id = $1";

/// Records that a holder is alive.
const SEEN: &str = "INSERT INTO worker_seen (holder, seen_ms) VALUES ($1, $2)
    ON CONFLICT (holder) DO UPDATE SET seen_ms = GREATEST(worker_seen.seen_ms, EXCLUDED.seen_ms)";

const RENEW: &str = "UPDATE campaign_batches SET lease_until_ms = $4
    WHERE campaign = $1 AND batch = $2 AND holder = $3 AND state = 'leased' RETURNING 1";

/// Ends `$3`'s lease on a batch (state `$4`: done or queued again) and, when `$7` (done) and the
/// lease was `$3`'s, counts the batch and its `$6` recipients towards `$3`'s progress.
const RELEASE: &str = "
    WITH released AS (
        UPDATE campaign_batches SET state = $4, holder = '', lease_until_ms = 0
        WHERE campaign = $1 AND batch = $2 AND holder = $3 AND state = 'leased'
        RETURNING 1)
    INSERT INTO workers (holder, campaign, seen_ms, batches, recipients)
    SELECT $3::text, $1::text, $5::int8, 1, $6::int8
    WHERE $7::bool AND EXISTS (SELECT 1 FROM released)
    ON CONFLICT (holder, campaign) DO UPDATE SET seen_ms = EXCLUDED.seen_ms,
        batches = workers.batches + 1, recipients = workers.recipients + EXCLUDED.recipients";

/// Gives every batch `$1` has leased back to the queue.
const RELEASE_HOLDER: &str = "UPDATE campaign_batches SET state = 'queued', holder = '',
    lease_until_ms = 0 WHERE holder = $1 AND state = 'leased'";

const STOP: &str = "UPDATE campaigns SET stopped = $2, updated_ms = $3 WHERE id = $1";

const STATUS: &str = "SELECT plugin, account, coupon, source, state, total_lines, stopped
    FROM campaigns WHERE id = $1";

/// A campaign's recipients by state in the journal: its batches' sends are the keys from
/// `CAMPAIGN/` to `CAMPAIGN/~` of its scope (`batch_key`).
const COUNTS: &str = "SELECT r.state, COUNT(*) FROM campaigns c
    JOIN send_recipients r ON r.plugin = c.plugin AND r.account = c.account
        AND r.key > c.id || '/' AND r.key < c.id || '/~'
    WHERE c.id = $1 GROUP BY r.state";

const REJECTED: &str =
    "SELECT state, COUNT(*) FROM campaign_rejects WHERE campaign = $1 GROUP BY state";

/// Up to `$3` report lines after line `$2`, in file order. A line's send is its batch's
/// (`batch_key`: the campaign, `/`, the batch zero-padded to 8 digits).
const REPORT: &str = "
    SELECT l.line, l.recipient, r.state, r.detail FROM campaign_lines l
    JOIN campaigns c ON c.id = l.campaign
    LEFT JOIN send_recipients r ON r.plugin = c.plugin AND r.account = c.account
        AND r.key = l.campaign || '/' || CASE WHEN l.batch < 100000000
                                              THEN lpad(l.batch::text, 8, '0')
                                              ELSE l.batch::text END
        AND r.position = l.position
    WHERE l.campaign = $1 AND l.line > $2
    UNION ALL
    SELECT line, text, state, reason FROM campaign_rejects WHERE campaign = $1 AND line > $2
    ORDER BY 1 LIMIT $3";

const WORKERS: &str = "SELECT w.holder, s.seen_ms, w.batches, w.recipients FROM workers w
    JOIN worker_seen s ON s.holder = w.holder
    WHERE w.campaign = $1 AND s.seen_ms >= $2 ORDER BY w.holder";

fn unknown(id: &str) -> Error {
    Error::UnknownCampaign(id.chars().take(64).collect())
}

fn record_of(id: &str, row: &PgRow) -> CampaignRecord {
    let options: String = row.get(4);
    CampaignRecord {
        id: id.to_owned(),
        scope: Scope::new(row.get::<_, String>(0), row.get::<_, String>(1)),
        coupon: row.get(2),
        quantity: row.get::<_, i64>(3) as u32,
        options: serde_json::from_str(&options).unwrap_or_default(),
        source: row.get(5),
        source_sha256: row.get(6),
        total_lines: row.get::<_, i64>(7) as u64,
        batch_size: row.get::<_, i64>(8) as u64,
    }
}

/// What a campaign's accept writes: the lines accepted, and the repeats skipped.
#[derive(Default)]
struct Accepted {
    kept: Vec<Recipient>,
    recipients: Vec<String>,
    lines: Vec<i64>,
    batches: Vec<i64>,
    positions: Vec<i64>,
    skipped_lines: Vec<i64>,
    skipped_texts: Vec<String>,
    skipped_reasons: Vec<String>,
}

/// Decides, in file order, which candidates are accepted: a recipient whose first line is this
/// one (new, or accepted by an earlier run over the same file), and not a repeat.
fn accept(
    mut first: HashMap<String, i64>,
    candidates: Vec<(u64, Recipient)>,
    mut accepted: u64,
    batch_size: u64,
) -> Accepted {
    let mut out = Accepted::default();
    for (line, recipient) in candidates {
        let (line, text) = (line as i64, recipient.to_string());
        match first.get(&text) {
            None => {
                first.insert(text.clone(), line);
                out.recipients.push(text);
                out.lines.push(line);
                out.batches.push((accepted / batch_size) as i64);
                out.positions.push((accepted % batch_size) as i64);
            }
            Some(&earlier) if earlier == line => {}
            Some(&earlier) => {
                out.skipped_lines.push(line);
                out.skipped_texts.push(text);
                out.skipped_reasons
                    .push(format!("repeats line {earlier}; sent once"));
                continue;
            }
        }
        accepted += 1;
        out.kept.push(recipient);
    }
    out
}

#[async_trait]
impl Ledger for Postgres {
    async fn campaign_open(&self, record: &CampaignRecord) -> Result<Option<CampaignRecord>> {
        let conn = self.conn().await?;
        let [open, get] = prepare(&conn, [OPEN, GET]).await?;
        let options = serde_json::to_string(&record.options).expect("strings serialize");
        let now = now_ms();
        let inserted = pipeline(
            &conn,
            Wrap::None,
            "cannot register the campaign",
            &[(
                &open,
                &[
                    &record.id,
                    &record.scope.plugin,
                    &record.scope.account,
                    &record.coupon,
                    &i64::from(record.quantity),
                    &options,
                    &record.source,
                    &record.source_sha256,
                    &(record.total_lines as i64),
                    &(record.batch_size as i64),
                    &now,
                ],
            )],
        )
        .await?;
        if !inserted[0].is_empty() {
            return Ok(None);
        }
        // Registered before (or by another host just now, whose insert this one waited for):
        // read in a statement of its own, which sees it.
        let found = pipeline(
            &conn,
            Wrap::None,
            "cannot read campaigns",
            &[(&get, &[&record.id])],
        )
        .await?;
        Ok(found[0].first().map(|row| record_of(&record.id, row)))
    }

    async fn campaign_get(&self, id: &str) -> Result<Option<CampaignRecord>> {
        let conn = self.conn().await?;
        let [get] = prepare(&conn, [GET]).await?;
        let found = pipeline(
            &conn,
            Wrap::None,
            "cannot read campaigns",
            &[(&get, &[&id])],
        )
        .await?;
        Ok(found[0].first().map(|row| record_of(id, row)))
    }

    async fn campaign_accept(
        &self,
        id: &str,
        candidates: Vec<(u64, Recipient)>,
        accepted: u64,
        batch_size: u64,
    ) -> Result<Vec<Recipient>> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn().await?;
        let [lock, first_lines, insert_lines, insert_rejects] =
            prepare(&conn, [LOCK, FIRST_LINES, INSERT_LINES, INSERT_REJECTS]).await?;
        let key = self.lock_key(&[id]);
        let texts: Vec<String> = candidates.iter().map(|(_, r)| r.to_string()).collect();
        // Two round trips in one transaction under the campaign's accept lock: what was accepted
        // before is read, the batches and positions are decided here, then written. Two hosts
        // enqueueing one campaign take turns.
        let (tx, found) = Tx::begin(
            conn,
            "cannot enqueue recipients",
            &[
                (&lock, &[&(LockClass::CampaignAccept as i32), &key]),
                (&first_lines, &[&id, &texts]),
            ],
        )
        .await?;
        let first = found[1]
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
            .collect();
        let decided = accept(first, candidates, accepted, batch_size.max(1));
        let lines: [&(dyn ToSql + Sync); 5] = [
            &id,
            &decided.recipients,
            &decided.lines,
            &decided.batches,
            &decided.positions,
        ];
        let skipped = ["skipped"].repeat(decided.skipped_lines.len());
        let rejects: [&(dyn ToSql + Sync); 5] = [
            &id,
            &decided.skipped_lines,
            &decided.skipped_texts,
            &skipped,
            &decided.skipped_reasons,
        ];
        tx.commit(
            "cannot enqueue recipients",
            &[(&insert_lines, &lines), (&insert_rejects, &rejects)],
        )
        .await?;
        Ok(decided.kept)
    }

    async fn campaign_reject(&self, id: &str, rejects: Vec<Reject>) -> Result<()> {
        if rejects.is_empty() {
            return Ok(());
        }
        let conn = self.conn().await?;
        let [insert] = prepare(&conn, [INSERT_REJECTS]).await?;
        let lines: Vec<i64> = rejects.iter().map(|r| r.line as i64).collect();
        let texts: Vec<&str> = rejects.iter().map(|r| r.text.as_str()).collect();
        let states: Vec<&str> = rejects.iter().map(|r| r.state).collect();
        let reasons: Vec<&str> = rejects.iter().map(|r| r.reason.as_str()).collect();
        pipeline(
            &conn,
            Wrap::None,
            "cannot record rejected lines",
            &[(&insert, &[&id, &lines, &texts, &states, &reasons])],
        )
        .await?;
        Ok(())
    }

    async fn campaign_queue(&self, id: &str, index: u64) -> Result<()> {
        let conn = self.conn().await?;
        let [queue] = prepare(&conn, [QUEUE]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot queue a batch",
            &[(&queue, &[&id, &(index as i64)])],
        )
        .await?;
        Ok(())
    }

    async fn campaign_enqueued(&self, id: &str) -> Result<()> {
        let conn = self.conn().await?;
        let [lock, enqueued, settle] = prepare(&conn, [LOCK_CAMPAIGN, ENQUEUED, SETTLE]).await?;
        let now = now_ms();
        pipeline(
            &conn,
            Wrap::Atomic,
            "cannot mark the campaign enqueued",
            &[
                (&lock, &[&id]),
                (&enqueued, &[&id, &now]),
                (&settle, &[&id, &now]),
            ],
        )
        .await?;
        Ok(())
    }

    async fn campaign_claim(
        &self,
        campaign: Option<&str>,
        holder: &str,
        until_ms: i64,
    ) -> Result<Claim> {
        let conn = self.conn().await?;
        let [check, seen, claim, still_open] =
            prepare(&conn, [CLAIM_CHECK, SEEN, CLAIM, STILL_OPEN]).await?;
        let now = now_ms();
        let id = campaign.unwrap_or_default();
        // Independent statements, each committing on its own, in one round trip: the claim is
        // one statement, and the checks around it only say why there was none.
        let mut steps: Vec<(&tokio_postgres::Statement, &[&(dyn ToSql + Sync)])> = Vec::new();
        let id_params: [&(dyn ToSql + Sync); 1] = [&id];
        let seen_params: [&(dyn ToSql + Sync); 2] = [&holder, &now];
        let claim_params: [&(dyn ToSql + Sync); 4] = [&campaign, &now, &holder, &until_ms];
        if campaign.is_some() {
            steps.push((&check, &id_params));
        }
        steps.push((&seen, &seen_params));
        steps.push((&claim, &claim_params));
        if campaign.is_some() {
            steps.push((&still_open, &id_params));
        }
        let found = pipeline(&conn, Wrap::None, "cannot claim a batch", &steps).await?;
        if campaign.is_some() {
            match found[0].first() {
                None => return Err(unknown(id)),
                Some(row) => {
                    if let Some(reason) = row.get::<_, Option<String>>(0) {
                        return Ok(Claim::Stopped(reason));
                    }
                }
            }
        }
        let claimed = &found[if campaign.is_some() { 2 } else { 1 }];
        if let Some(first) = claimed.first() {
            let recipients = claimed
                .iter()
                .filter_map(|row| row.get::<_, Option<String>>(2))
                .map(|text| {
                    text.parse().map_err(|e| {
                        Error::storage_from("a campaign's stored recipient does not read", e)
                    })
                })
                .collect::<Result<Vec<Recipient>>>()?;
            return Ok(Claim::Batch(Batch {
                campaign: first.get(0),
                index: first.get::<_, i64>(1) as u64,
                recipients,
            }));
        }
        if campaign.is_none() {
            return Ok(Claim::Wait);
        }
        let open = found[3].first().is_none_or(|row| row.get::<_, bool>(0));
        Ok(if open { Claim::Wait } else { Claim::Done })
    }

    async fn campaign_renew(
        &self,
        id: &str,
        index: u64,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool> {
        let conn = self.conn().await?;
        let [renew, seen] = prepare(&conn, [RENEW, SEEN]).await?;
        let found = pipeline(
            &conn,
            Wrap::None,
            "cannot renew a batch's lease",
            &[
                (&renew, &[&id, &(index as i64), &holder, &until_ms]),
                (&seen, &[&holder, &now_ms()]),
            ],
        )
        .await?;
        Ok(!found[0].is_empty())
    }

    async fn campaign_release(
        &self,
        id: &str,
        index: u64,
        holder: &str,
        done: bool,
        recipients: u64,
    ) -> Result<()> {
        let conn = self.conn().await?;
        let [lock, release, settle, seen] =
            prepare(&conn, [LOCK_CAMPAIGN, RELEASE, SETTLE, SEEN]).await?;
        let now = now_ms();
        let state = if done { "done" } else { "queued" };
        let (index, recipients) = (index as i64, recipients as i64);
        let lock_params: [&(dyn ToSql + Sync); 1] = [&id];
        let release_params: [&(dyn ToSql + Sync); 7] =
            [&id, &index, &holder, &state, &now, &recipients, &done];
        let settle_params: [&(dyn ToSql + Sync); 2] = [&id, &now];
        let seen_params: [&(dyn ToSql + Sync); 2] = [&holder, &now];
        let mut steps = vec![(&lock, &lock_params[..]), (&release, &release_params[..])];
        if done {
            steps.push((&settle, &settle_params[..]));
        }
        steps.push((&seen, &seen_params[..]));
        pipeline(&conn, Wrap::Atomic, "cannot release a batch", &steps).await?;
        Ok(())
    }

    async fn campaign_release_holder(&self, holder: &str) -> Result<()> {
        let conn = self.conn().await?;
        let [release] = prepare(&conn, [RELEASE_HOLDER]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot give the batches back",
            &[(&release, &[&holder])],
        )
        .await?;
        Ok(())
    }

    async fn campaign_stop(&self, id: &str, reason: Option<&str>) -> Result<()> {
        let conn = self.conn().await?;
        let [stop] = prepare(&conn, [STOP]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot stop the campaign",
            &[(&stop, &[&id, &reason, &now_ms()])],
        )
        .await?;
        Ok(())
    }

    async fn campaign_status(&self, id: &str) -> Result<CampaignStatus> {
        let conn = self.conn().await?;
        let [status, counts, rejected] = prepare(&conn, [STATUS, COUNTS, REJECTED]).await?;
        let id_params: [&(dyn ToSql + Sync); 1] = [&id];
        let found = pipeline(
            &conn,
            Wrap::None,
            "cannot read the campaign's status",
            &[
                (&status, &id_params),
                (&counts, &id_params),
                (&rejected, &id_params),
            ],
        )
        .await?;
        let row = found[0].first().ok_or_else(|| unknown(id))?;
        let mut status = CampaignStatus {
            id: id.to_owned(),
            plugin: row.get(0),
            account: row.get(1),
            coupon: row.get(2),
            source: row.get(3),
            state: row.get(4),
            total: row.get::<_, i64>(5) as u64,
            ..CampaignStatus::default()
        };
        for row in &found[1] {
            let n = row.get::<_, i64>(1) as u64;
            match row.get::<_, &str>(0) {
                "issued" => status.issued += n,
                "failed" => status.failed += n,
                "unknown" => status.unknown += n,
                _ => {}
            }
        }
        let stopped: Option<String> = row.get(6);
        let rejects = found[2]
            .iter()
            .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64));
        settle_status(&mut status, rejects, stopped);
        Ok(status)
    }

    async fn campaign_report(&self, id: &str, after: u64, limit: usize) -> Result<Vec<ReportLine>> {
        debug_assert_eq!(
            batch_key("c", 1),
            "c/00000001",
            "REPORT builds the same keys"
        );
        let conn = self.conn().await?;
        let [exists, report] = prepare(&conn, [EXISTS, REPORT]).await?;
        let found = pipeline(
            &conn,
            Wrap::None,
            "cannot read the report",
            &[
                (&exists, &[&id]),
                (&report, &[&id, &(after as i64), &(limit as i64)]),
            ],
        )
        .await?;
        if found[0].is_empty() {
            return Err(unknown(id));
        }
        Ok(found[1]
            .iter()
            .map(|row| {
                report_line(
                    row.get::<_, i64>(0) as u64,
                    row.get(1),
                    row.get(2),
                    row.get(3),
                )
            })
            .collect())
    }

    async fn campaign_workers(&self, id: &str, since_ms: i64) -> Result<Vec<WorkerStatus>> {
        let conn = self.conn().await?;
        let [workers] = prepare(&conn, [WORKERS]).await?;
        let found = pipeline(
            &conn,
            Wrap::None,
            "cannot read workers",
            &[(&workers, &[&id, &since_ms])],
        )
        .await?;
        Ok(found[0]
            .iter()
            .map(|row| WorkerStatus {
                id: row.get(0),
                seen_ago_ms: WorkerStatus::age(row.get(1)),
                batches: row.get::<_, i64>(2) as u64,
                recipients: row.get::<_, i64>(3) as u64,
            })
            .collect())
    }
}
