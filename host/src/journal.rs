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

use rusqlite::{Connection, OptionalExtension, params};
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
    /// Unfinished (an earlier process was interrupted): its rows as recorded.
    Rows(Vec<Row>),
    /// New: its rows, all `new` here, of which the first `in_flight` were written `in-flight`
    /// (first attempt) in the same write.
    New { rows: Vec<Row>, in_flight: usize },
}

/// A row's new state as the journal stores it: position, state, attempts, detail (JSON).
pub(crate) type RowUpdate = (u32, &'static str, u32, Option<String>);

impl Row {
    /// This row's state, ready for [`Store::journal_record`].
    pub(crate) fn update(&self) -> RowUpdate {
        let detail = self
            .detail
            .as_ref()
            .map(|d| serde_json::to_string(d).expect("details serialize"));
        (self.position, self.state.as_str(), self.attempts, detail)
    }
}

impl Store {
    /// Opens a send's journal entry, or finds the one already there. A new entry's first
    /// `in_flight` recipients are written in flight at once, for a caller about to send them.
    pub(crate) async fn journal_begin(
        &self,
        plugin: &str,
        key: &str,
        fingerprint: &str,
        recipients: &[Recipient],
        in_flight: usize,
    ) -> Result<Begin> {
        let (plugin, key, fingerprint) =
            (plugin.to_owned(), key.to_owned(), fingerprint.to_owned());
        let recipients = recipients.to_vec();
        self.write(move |tx| {
            let existing: Option<(String, String)> = tx
                .prepare_cached(
                    "SELECT fingerprint, state FROM sends WHERE plugin = ?1 AND key = ?2",
                )?
                .query_row(params![plugin, key], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            Ok(match existing {
                Some((stored, _)) if stored != fingerprint => Begin::Mismatch,
                Some((_, state)) if state != "pending" => {
                    Begin::Ended(outcome_in(tx, &plugin, &key)?)
                }
                Some(_) => Begin::Rows(rows_in(tx, &plugin, &key)?),
                None => {
                    let now = now_ms();
                    tx.prepare_cached(
                        "INSERT INTO sends (plugin, key, fingerprint, state, created_ms, updated_ms)
                         VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
                    )?
                    .execute(params![plugin, key, fingerprint, now])?;
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO send_recipients (plugin, key, position, recipient, state, attempts)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    for (position, recipient) in recipients.iter().enumerate() {
                        let (state, attempts) = if position < in_flight {
                            (RowState::InFlight, 1)
                        } else {
                            (RowState::New, 0)
                        };
                        insert.execute(params![
                            plugin,
                            key,
                            position as u32,
                            recipient.to_string(),
                            state.as_str(),
                            attempts
                        ])?;
                    }
                    Begin::New {
                        in_flight,
                        rows: recipients
                            .into_iter()
                            .enumerate()
                            .map(|(position, recipient)| Row {
                                position: position as u32,
                                recipient,
                                state: RowState::New,
                                attempts: 0,
                                detail: None,
                            })
                            .collect(),
                    }
                }
            })
        })
        .await
    }

    /// Records rows' new states (and attempt counts) in one write, with the platform request ids
    /// the call answered; with `finish`, also ends the send (see [`Store::journal_finish`]) in
    /// the same write and returns its outcome.
    pub(crate) async fn journal_record(
        &self,
        plugin: &str,
        key: &str,
        rows: Vec<RowUpdate>,
        request_ids: Vec<String>,
        finish: bool,
    ) -> Result<Option<SendOutcome>> {
        let (plugin, key) = (plugin.to_owned(), key.to_owned());
        self.write(move |tx| {
            let mut update = tx.prepare_cached(
                "UPDATE send_recipients SET state = ?4, attempts = ?5, detail = ?6
                 WHERE plugin = ?1 AND key = ?2 AND position = ?3",
            )?;
            for (position, state, attempts, detail) in rows {
                update.execute(params![plugin, key, position, state, attempts, detail])?;
            }
            drop(update);
            let ids = if request_ids.is_empty() {
                None
            } else {
                let stored: String = tx
                    .prepare_cached("SELECT request_ids FROM sends WHERE plugin = ?1 AND key = ?2")?
                    .query_row(params![plugin, key], |row| row.get(0))?;
                let mut ids: Vec<String> = serde_json::from_str(&stored).unwrap_or_default();
                ids.extend(request_ids);
                ids.truncate(1024);
                Some(serde_json::to_string(&ids).expect("strings serialize"))
            };
            if finish {
                // The ids go in with the send's end: one update of the send's row, not two.
                return finish_in(tx, &plugin, &key, ids.as_deref()).map(Some);
            }
            if let Some(ids) = ids {
                tx.prepare_cached(
                    "UPDATE sends SET request_ids = ?3, updated_ms = ?4 WHERE plugin = ?1 AND key = ?2",
                )?
                .execute(params![plugin, key, ids, now_ms()])?;
            }
            Ok(None)
        })
        .await
    }

    /// Ends a send: `done`, or `unknown` when some recipient's fate is unknown.
    pub(crate) async fn journal_finish(&self, plugin: &str, key: &str) -> Result<SendOutcome> {
        let (plugin, key) = (plugin.to_owned(), key.to_owned());
        self.write(move |tx| finish_in(tx, &plugin, &key, None))
            .await
    }

    /// Drops a send that had no effect on the platform, so its key can be used again.
    pub(crate) async fn journal_forget(&self, plugin: &str, key: &str) -> Result<()> {
        let (plugin, key) = (plugin.to_owned(), key.to_owned());
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM send_recipients WHERE plugin = ?1 AND key = ?2")?
                .execute(params![plugin, key])?;
            tx.prepare_cached("DELETE FROM sends WHERE plugin = ?1 AND key = ?2")?
                .execute(params![plugin, key])?;
            Ok(())
        })
        .await
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

/// Ends a send in the open transaction `tx`: `done`, or `unknown` when some recipient's fate is
/// unknown; `request_ids` (JSON), when given, replace the recorded ones. Returns its outcome.
fn finish_in(
    tx: &Connection,
    plugin: &str,
    key: &str,
    request_ids: Option<&str>,
) -> rusqlite::Result<SendOutcome> {
    let unknown: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM send_recipients
             WHERE plugin = ?1 AND key = ?2 AND state IN ('unknown', 'in-flight'))",
        )?
        .query_row(params![plugin, key], |row| row.get(0))?;
    let state = if unknown { "unknown" } else { "done" };
    tx.prepare_cached(
        "UPDATE sends SET state = ?3, updated_ms = ?4, request_ids = COALESCE(?5, request_ids)
         WHERE plugin = ?1 AND key = ?2",
    )?
    .execute(params![plugin, key, state, now_ms(), request_ids])?;
    outcome_in(tx, plugin, key)
}

fn rows_in(tx: &Connection, plugin: &str, key: &str) -> rusqlite::Result<Vec<Row>> {
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

fn outcome_in(tx: &Connection, plugin: &str, key: &str) -> rusqlite::Result<SendOutcome> {
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
