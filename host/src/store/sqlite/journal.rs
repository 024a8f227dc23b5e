//! [`Journal`] on SQLite: `sends` (one row per send, with its lease) and `send_recipients`
//! (one row per recipient), both clustered on (plugin, account, key).

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Context, Sqlite};
use crate::error::{Error, Result};
use crate::store::journal::{MAX_REQUEST_IDS, final_state, outcome_of};
use crate::store::{Begin, Journal, Lease, Row, RowState, RowUpdate, SendKey, now_ms};
use crate::types::{Recipient, SendOutcome};

#[async_trait]
impl Journal for Sqlite {
    async fn journal_begin(
        &self,
        send: &SendKey,
        fingerprint: &str,
        recipients: &[Recipient],
        in_flight: usize,
        lease: &Lease,
    ) -> Result<Begin> {
        let (send, fingerprint, lease) = (send.clone(), fingerprint.to_owned(), lease.clone());
        let recipients = recipients.to_vec();
        self.write(move |conn| {
            begin(conn, &send, &fingerprint, recipients, in_flight, &lease)
                .doing("cannot open the send in the journal")
        })
        .await
    }

    async fn journal_record(
        &self,
        send: &SendKey,
        lease: &Lease,
        rows: Vec<RowUpdate>,
        request_ids: Vec<String>,
        finish: bool,
    ) -> Result<Option<SendOutcome>> {
        let (send, lease) = (send.clone(), lease.clone());
        self.write(move |conn| {
            hold(conn, &send, &lease)?;
            record(conn, &send, rows, request_ids, finish).doing("cannot record in the journal")
        })
        .await
    }

    async fn journal_renew(&self, send: &SendKey, lease: &Lease) -> Result<()> {
        let (send, lease) = (send.clone(), lease.clone());
        self.write(move |conn| hold(conn, &send, &lease)).await
    }

    async fn journal_forget(&self, send: &SendKey, lease: &Lease) -> Result<()> {
        let (send, lease) = (send.clone(), lease.clone());
        self.write(move |conn| {
            hold(conn, &send, &lease)?;
            let (plugin, account, key) = (&send.scope.plugin, &send.scope.account, &send.key);
            conn.prepare_cached(
                "DELETE FROM send_recipients WHERE plugin = ?1 AND account = ?2 AND key = ?3",
            )
            .and_then(|mut delete| delete.execute(params![plugin, account, key]))
            .and_then(|_| {
                conn.prepare_cached(
                    "DELETE FROM sends WHERE plugin = ?1 AND account = ?2 AND key = ?3",
                )?
                .execute(params![plugin, account, key])
            })
            .map(drop)
            .doing("cannot forget a send")
        })
        .await
    }

    async fn journal_release_holder(&self, holder: &str) -> Result<()> {
        let holder = holder.to_owned();
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE sends SET lease_until_ms = 0 WHERE holder = ?1 AND state = 'pending'",
            )
            .and_then(|mut update| update.execute(params![holder]))
            .map(drop)
            .doing("cannot give up the sends' leases")
        })
        .await
    }

    async fn journal_outcome(&self, send: &SendKey) -> Result<Option<(String, SendOutcome)>> {
        let send = send.clone();
        self.read(move |conn| {
            let state: Option<String> = conn
                .prepare_cached(
                    "SELECT state FROM sends WHERE plugin = ?1 AND account = ?2 AND key = ?3",
                )
                .and_then(|mut select| {
                    select
                        .query_row(
                            params![send.scope.plugin, send.scope.account, send.key],
                            |row| row.get(0),
                        )
                        .optional()
                })
                .doing("cannot read the journal")?;
            match state {
                None => Ok(None),
                Some(state) => Ok(Some((
                    state,
                    outcome_in(conn, &send).doing("cannot read the journal")?,
                ))),
            }
        })
        .await
    }
}

/// Checks `lease` still holds the pending send and extends it; fails with
/// [`Error::LeaseLost`] when another process took it over.
fn hold(conn: &Connection, send: &SendKey, lease: &Lease) -> Result<()> {
    let updated = conn
        .prepare_cached(
            "UPDATE sends SET lease_until_ms = ?5
             WHERE plugin = ?1 AND account = ?2 AND key = ?3 AND holder = ?4",
        )
        .and_then(|mut update| {
            update.execute(params![
                send.scope.plugin,
                send.scope.account,
                send.key,
                lease.holder,
                now_ms() + lease.ttl_ms
            ])
        })
        .doing("cannot renew the send's lease")?;
    if updated == 0 {
        return Err(Error::LeaseLost {
            key: send.key.clone(),
        });
    }
    Ok(())
}

fn begin(
    conn: &Connection,
    send: &SendKey,
    fingerprint: &str,
    recipients: Vec<Recipient>,
    in_flight: usize,
    lease: &Lease,
) -> rusqlite::Result<Begin> {
    let (plugin, account, key) = (&send.scope.plugin, &send.scope.account, &send.key);
    let now = now_ms();
    let existing: Option<(String, String, String, i64)> = conn
        .prepare_cached(
            "SELECT fingerprint, state, holder, lease_until_ms FROM sends
             WHERE plugin = ?1 AND account = ?2 AND key = ?3",
        )?
        .query_row(params![plugin, account, key], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    Ok(match existing {
        Some((stored, ..)) if stored != fingerprint => Begin::Mismatch,
        Some((_, state, ..)) if state != "pending" => Begin::Ended(outcome_in(conn, send)?),
        Some((_, _, holder, until)) if holder != lease.holder && until > now => {
            Begin::Busy { until_ms: until }
        }
        Some(_) => {
            conn.prepare_cached(
                "UPDATE sends SET holder = ?4, lease_until_ms = ?5
                 WHERE plugin = ?1 AND account = ?2 AND key = ?3",
            )?
            .execute(params![
                plugin,
                account,
                key,
                lease.holder,
                now + lease.ttl_ms
            ])?;
            Begin::Resumed(rows_in(conn, send)?)
        }
        None => {
            conn.prepare_cached(
                "INSERT INTO sends (plugin, account, key, fingerprint, state, holder,
                 lease_until_ms, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7, ?7)",
            )?
            .execute(params![
                plugin,
                account,
                key,
                fingerprint,
                lease.holder,
                now + lease.ttl_ms,
                now
            ])?;
            let mut insert = conn.prepare_cached(
                "INSERT INTO send_recipients (plugin, account, key, position, recipient, state, attempts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for (position, recipient) in recipients.iter().enumerate() {
                let (state, attempts) = if position < in_flight {
                    (RowState::InFlight, 1)
                } else {
                    (RowState::New, 0)
                };
                insert.execute(params![
                    plugin,
                    account,
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
                    .map(|(position, recipient)| Row::new(position as u32, recipient))
                    .collect(),
            }
        }
    })
}

fn record(
    conn: &Connection,
    send: &SendKey,
    rows: Vec<RowUpdate>,
    request_ids: Vec<String>,
    finish: bool,
) -> rusqlite::Result<Option<SendOutcome>> {
    let (plugin, account, key) = (&send.scope.plugin, &send.scope.account, &send.key);
    let mut update = conn.prepare_cached(
        "UPDATE send_recipients SET state = ?5, attempts = ?6, detail = ?7
         WHERE plugin = ?1 AND account = ?2 AND key = ?3 AND position = ?4",
    )?;
    for row in rows {
        update.execute(params![
            plugin,
            account,
            key,
            row.position,
            row.state.as_str(),
            row.attempts,
            row.detail
        ])?;
    }
    drop(update);
    let ids = if request_ids.is_empty() {
        None
    } else {
        let mut ids = stored_request_ids(conn, send)?;
        ids.extend(request_ids);
        ids.truncate(MAX_REQUEST_IDS);
        Some(serde_json::to_string(&ids).expect("strings serialize"))
    };
    if finish {
        let rows = rows_in(conn, send)?;
        let state = final_state(rows.iter().map(|row| row.state));
        // The ids go in with the send's end: one update of the send's row, not two.
        // An ended send needs no lease; its holder stays, so it may still forget the send.
        conn.prepare_cached(
            "UPDATE sends SET state = ?4, updated_ms = ?5, request_ids = COALESCE(?6, request_ids),
             lease_until_ms = 0
             WHERE plugin = ?1 AND account = ?2 AND key = ?3",
        )?
        .execute(params![plugin, account, key, state, now_ms(), ids])?;
        return Ok(Some(outcome_of(key, stored_request_ids(conn, send)?, rows)));
    }
    if let Some(ids) = ids {
        conn.prepare_cached(
            "UPDATE sends SET request_ids = ?4, updated_ms = ?5
             WHERE plugin = ?1 AND account = ?2 AND key = ?3",
        )?
        .execute(params![plugin, account, key, ids, now_ms()])?;
    }
    Ok(None)
}

fn stored_request_ids(conn: &Connection, send: &SendKey) -> rusqlite::Result<Vec<String>> {
    let stored: String = conn
        .prepare_cached(
            "SELECT request_ids FROM sends WHERE plugin = ?1 AND account = ?2 AND key = ?3",
        )?
        .query_row(
            params![send.scope.plugin, send.scope.account, send.key],
            |row| row.get(0),
        )?;
    Ok(serde_json::from_str(&stored).unwrap_or_default())
}

fn rows_in(conn: &Connection, send: &SendKey) -> rusqlite::Result<Vec<Row>> {
    let mut select = conn.prepare_cached(
        "SELECT position, recipient, state, attempts, detail FROM send_recipients
         WHERE plugin = ?1 AND account = ?2 AND key = ?3 ORDER BY position",
    )?;
    let rows = select.query_map(
        params![send.scope.plugin, send.scope.account, send.key],
        |row| {
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
                detail: detail.as_deref().and_then(crate::store::Detail::parse),
            })
        },
    )?;
    rows.collect()
}

fn outcome_in(conn: &Connection, send: &SendKey) -> rusqlite::Result<SendOutcome> {
    Ok(outcome_of(
        &send.key,
        stored_request_ids(conn, send)?,
        rows_in(conn, send)?,
    ))
}
