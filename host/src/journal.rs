//! The idempotency journal: what every send (plugin, idempotency key) did, recipient by recipient,
//! in the host's SQLite file, written before and after each platform call.
//!
//! A send is `pending` while it runs and `done` (every recipient issued or failed) or `unknown`
//! (some recipient's fate could not be told) when it ends. Each recipient row moves
//! `new` → `in-flight` (written *before* the adapter is called) → `issued` | `failed` | `retry`
//! | `unknown`. After a crash, an `in-flight` row is the only one whose platform effect is not
//! known: the delivery engine resends it only where that is safe (see `delivery.rs`).
//!
//! Rows hold recipients, coupon ids and classified platform errors; never a credential (the
//! host scrubs secrets from everything an adapter can read, so its error messages carry none).

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{Store, now_ms, storage};
use crate::types::{AdapterError, IssuedCoupon, Recipient, RecipientFailure, SendOutcome};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sends (
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    request_ids TEXT NOT NULL DEFAULT '[]',
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (plugin, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS send_recipients (
    plugin TEXT NOT NULL,
    key TEXT NOT NULL,
    position INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    detail TEXT,
    PRIMARY KEY (plugin, key, position)
) WITHOUT ROWID;
";

/// Where one recipient of a send stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowState {
    /// Not sent yet.
    New,
    /// Handed to the adapter; what the platform did is not recorded yet.
    InFlight,
    /// Got the coupon (detail: the [`IssuedCoupon`]).
    Issued,
    /// Did not, for good (detail: the [`AdapterError`]).
    Failed,
    /// Did not, but may on a later attempt (detail: the last [`AdapterError`]).
    Retry,
    /// Nobody can tell (detail: the [`AdapterError`]); left for review.
    Unknown,
}

impl RowState {
    fn as_str(self) -> &'static str {
        match self {
            RowState::New => "new",
            RowState::InFlight => "in-flight",
            RowState::Issued => "issued",
            RowState::Failed => "failed",
            RowState::Retry => "retry",
            RowState::Unknown => "unknown",
        }
    }

    fn parse(text: &str) -> RowState {
        match text {
            "in-flight" => RowState::InFlight,
            "issued" => RowState::Issued,
            "failed" => RowState::Failed,
            "retry" => RowState::Retry,
            "unknown" => RowState::Unknown,
            _ => RowState::New,
        }
    }
}

/// One recipient's row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) position: u32,
    pub(crate) recipient: Recipient,
    pub(crate) state: RowState,
    pub(crate) attempts: u32,
    pub(crate) detail: Option<Detail>,
}

/// What a row records about its recipient.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Detail {
    Issued(IssuedCoupon),
    Error(AdapterError),
}

/// What the journal knew when a send began.
pub(crate) enum Begin {
    /// The key already ended: its recorded outcome.
    Ended(SendOutcome),
    /// The key was used for a different request.
    Mismatch,
    /// New or unfinished: its rows (all `new` when new).
    Rows(Vec<Row>),
}

impl Store {
    /// Opens a send's journal entry, or finds the one already there.
    pub(crate) fn journal_begin(
        &self,
        plugin: &str,
        key: &str,
        fingerprint: &str,
        recipients: &[Recipient],
    ) -> Result<Begin> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(storage)?;
        let existing: Option<(String, String)> = tx
            .prepare_cached("SELECT fingerprint, state FROM sends WHERE plugin = ?1 AND key = ?2")
            .and_then(|mut select| {
                select
                    .query_row(params![plugin, key], |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
            .map_err(storage)?;
        let begin = match existing {
            Some((stored, _)) if stored != fingerprint => Begin::Mismatch,
            Some((_, state)) if state != "pending" => {
                Begin::Ended(outcome_in(&tx, plugin, key).map_err(storage)?)
            }
            Some(_) => Begin::Rows(rows_in(&tx, plugin, key).map_err(storage)?),
            None => {
                let now = now_ms();
                tx.prepare_cached(
                    "INSERT INTO sends (plugin, key, fingerprint, state, created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
                )
                .and_then(|mut insert| insert.execute(params![plugin, key, fingerprint, now]))
                .map_err(storage)?;
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO send_recipients (plugin, key, position, recipient, state)
                         VALUES (?1, ?2, ?3, ?4, 'new')",
                    )
                    .map_err(storage)?;
                for (position, recipient) in recipients.iter().enumerate() {
                    insert
                        .execute(params![plugin, key, position as u32, recipient.to_string()])
                        .map_err(storage)?;
                }
                drop(insert);
                Begin::Rows(
                    recipients
                        .iter()
                        .enumerate()
                        .map(|(position, recipient)| Row {
                            position: position as u32,
                            recipient: recipient.clone(),
                            state: RowState::New,
                            attempts: 0,
                            detail: None,
                        })
                        .collect(),
                )
            }
        };
        tx.commit().map_err(storage)?;
        Ok(begin)
    }

    /// Records rows' new states (and attempt counts) in one transaction, with the platform
    /// request ids the call answered.
    pub(crate) fn journal_record(
        &self,
        plugin: &str,
        key: &str,
        rows: &[&Row],
        request_ids: &[String],
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(storage)?;
        {
            let mut update = tx
                .prepare_cached(
                    "UPDATE send_recipients SET state = ?4, attempts = ?5, detail = ?6
                     WHERE plugin = ?1 AND key = ?2 AND position = ?3",
                )
                .map_err(storage)?;
            for row in rows {
                let detail = row
                    .detail
                    .as_ref()
                    .map(|d| serde_json::to_string(d).expect("details serialize"));
                update
                    .execute(params![
                        plugin,
                        key,
                        row.position,
                        row.state.as_str(),
                        row.attempts,
                        detail
                    ])
                    .map_err(storage)?;
            }
        }
        if !request_ids.is_empty() {
            let stored: String = tx
                .prepare_cached("SELECT request_ids FROM sends WHERE plugin = ?1 AND key = ?2")
                .and_then(|mut select| select.query_row(params![plugin, key], |row| row.get(0)))
                .map_err(storage)?;
            let mut ids: Vec<String> = serde_json::from_str(&stored).unwrap_or_default();
            ids.extend(request_ids.iter().cloned());
            ids.truncate(1024);
            tx.prepare_cached(
                "UPDATE sends SET request_ids = ?3, updated_ms = ?4 WHERE plugin = ?1 AND key = ?2",
            )
            .and_then(|mut update| {
                update.execute(params![
                    plugin,
                    key,
                    serde_json::to_string(&ids).expect("strings serialize"),
                    now_ms()
                ])
            })
            .map_err(storage)?;
        }
        tx.commit().map_err(storage)
    }

    /// Ends a send: `done`, or `unknown` when some recipient's fate is unknown.
    pub(crate) fn journal_finish(&self, plugin: &str, key: &str) -> Result<SendOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(storage)?;
        let unknown: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM send_recipients
                 WHERE plugin = ?1 AND key = ?2 AND state IN ('unknown', 'in-flight'))",
            )
            .and_then(|mut select| select.query_row(params![plugin, key], |row| row.get(0)))
            .map_err(storage)?;
        let state = if unknown { "unknown" } else { "done" };
        tx.prepare_cached(
            "UPDATE sends SET state = ?3, updated_ms = ?4 WHERE plugin = ?1 AND key = ?2",
        )
        .and_then(|mut update| update.execute(params![plugin, key, state, now_ms()]))
        .map_err(storage)?;
        let outcome = outcome_in(&tx, plugin, key).map_err(storage)?;
        tx.commit().map_err(storage)?;
        Ok(outcome)
    }

    /// Drops a send that had no effect on the platform, so its key can be used again.
    pub(crate) fn journal_forget(&self, plugin: &str, key: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute(
            "DELETE FROM send_recipients WHERE plugin = ?1 AND key = ?2",
            params![plugin, key],
        )
        .map_err(storage)?;
        conn.execute(
            "DELETE FROM sends WHERE plugin = ?1 AND key = ?2",
            params![plugin, key],
        )
        .map_err(storage)?;
        Ok(())
    }

    /// A send's outcome as recorded so far.
    pub(crate) fn journal_outcome(&self, plugin: &str, key: &str) -> Result<SendOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(storage)?;
        outcome_in(&tx, plugin, key).map_err(storage)
    }

    /// The state of a send (`pending`, `done`, `unknown`), if the journal has it.
    pub fn journal_state(&self, plugin: &str, key: &str) -> Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT state FROM sends WHERE plugin = ?1 AND key = ?2",
                params![plugin, key],
                |row| row.get(0),
            )
            .optional()
            .map_err(storage)
    }
}

fn rows_in(tx: &rusqlite::Transaction<'_>, plugin: &str, key: &str) -> rusqlite::Result<Vec<Row>> {
    let mut select = tx.prepare_cached(
        "SELECT position, recipient, state, attempts, detail FROM send_recipients
         WHERE plugin = ?1 AND key = ?2 ORDER BY position",
    )?;
    let rows = select.query_map(params![plugin, key], |row| {
        let recipient: String = row.get(1)?;
        let state: String = row.get(2)?;
        let detail: Option<String> = row.get(4)?;
        Ok(Row {
            position: row.get(0)?,
            recipient: recipient.parse().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    1,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
            state: RowState::parse(&state),
            attempts: row.get(3)?,
            detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        })
    })?;
    rows.collect()
}

fn outcome_in(
    tx: &rusqlite::Transaction<'_>,
    plugin: &str,
    key: &str,
) -> rusqlite::Result<SendOutcome> {
    let request_ids: String = tx
        .prepare_cached("SELECT request_ids FROM sends WHERE plugin = ?1 AND key = ?2")?
        .query_row(params![plugin, key], |row| row.get(0))?;
    let mut outcome = SendOutcome {
        idempotency_key: key.to_owned(),
        platform_request_ids: serde_json::from_str(&request_ids).unwrap_or_default(),
        ..SendOutcome::default()
    };
    for row in rows_in(tx, plugin, key)? {
        push_row(&mut outcome, row);
    }
    Ok(outcome)
}

/// Adds a row to an outcome: issued, or failed with its recorded error (an unfinished row, which
/// only an interrupted send has, counts as unknown).
pub(crate) fn push_row(outcome: &mut SendOutcome, row: Row) {
    match (row.state, row.detail) {
        (RowState::Issued, Some(Detail::Issued(issued))) => outcome.issued.push(issued),
        (RowState::Issued, _) => outcome.issued.push(IssuedCoupon::new(row.recipient)),
        (state, detail) => {
            let error = match (state, detail) {
                (
                    RowState::Failed | RowState::Retry | RowState::Unknown,
                    Some(Detail::Error(e)),
                ) => e,
                _ => AdapterError::new(
                    crate::types::ErrorClass::Unknown,
                    "interrupted",
                    "the send was interrupted before this recipient's outcome was recorded",
                ),
            };
            outcome.failed.push(RecipientFailure {
                recipient: row.recipient,
                error,
            });
        }
    }
}

/// Fails with a storage error naming the key, for messages.
pub(crate) fn mismatch(key: &str) -> Error {
    Error::InvalidRequest(format!(
        "idempotency key {key:?} was already used for a different request"
    ))
}
