//! [`Journal`] on PostgreSQL: `sends` (one row per send, with its lease) and `send_recipients`
//! (one row per recipient).
//!
//! Every call is one round trip. A new send is one statement (the send and its rows, inserted
//! only if the key is free); a key already there is decided in one transaction that locks its
//! row first. A record is one transaction whose first statement checks and extends the lease:
//! the statements after it write only while the send is still this holder's, and with `finish`
//! the send's end and its outcome are in the same transaction.

use async_trait::async_trait;
use tokio_postgres::Row as PgRow;
use tokio_postgres::types::ToSql;

use super::{Postgres, Wrap, pipeline, prepare};
use crate::error::{Error, Result};
use crate::store::journal::{MAX_REQUEST_IDS, final_state, outcome_of};
use crate::store::{Begin, Detail, Journal, Lease, Row, RowState, RowUpdate, SendKey, now_ms};
use crate::types::{Recipient, SendOutcome};

/// Opens a new send: `$1`–`$3` its key, `$4` fingerprint, `$5` holder, `$6` the lease's end,
/// `$7` now, `$8` the recipients, of which the first `$9` are written `$10` (in flight, first
/// attempt) and the rest `$11` (new). `true` when the key was free; when it was not, nothing is
/// written.
const BEGIN_NEW: &str = "
    WITH send AS (
        INSERT INTO sends (plugin, account, key, fingerprint, state, holder, lease_until_ms,
                           created_ms, updated_ms)
        VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7, $7)
        ON CONFLICT (plugin, account, key) DO NOTHING
        RETURNING 1),
    recipients AS (
        INSERT INTO send_recipients (plugin, account, key, position, recipient, state, attempts)
        SELECT $1::text, $2::text, $3::text, r.n - 1, r.recipient,
               CASE WHEN r.n <= $9::int8 THEN $10::text ELSE $11::text END,
               CASE WHEN r.n <= $9::int8 THEN 1 ELSE 0 END
        FROM unnest($8::text[]) WITH ORDINALITY AS r(recipient, n)
        WHERE EXISTS (SELECT 1 FROM send))
    SELECT EXISTS (SELECT 1 FROM send)";

/// A send already there, its row locked until the transaction ends: what [`decide`] needs.
const LOCK_SEND: &str = "SELECT fingerprint, state, holder, lease_until_ms, request_ids FROM sends
    WHERE plugin = $1 AND account = $2 AND key = $3 FOR UPDATE";

/// Takes a pending send over for `$4` (until `$5`) when the fingerprint `$6` matches and its
/// lease is `$4`'s or ran out by `$7`: the same condition [`decide`] applies to the locked row.
const TAKE_OVER: &str = "UPDATE sends SET holder = $4, lease_until_ms = $5
    WHERE plugin = $1 AND account = $2 AND key = $3 AND fingerprint = $6 AND state = 'pending'
    AND (holder = $4 OR lease_until_ms <= $7)";

const ROWS: &str = "SELECT position, recipient, state, attempts, detail FROM send_recipients
    WHERE plugin = $1 AND account = $2 AND key = $3 ORDER BY position";

/// Checks `$4` holds the send and extends its lease to `$5`, appending the request ids `$6`
/// (kept to `$7`): a row back when held. Every statement of a record runs after this one, in
/// its transaction, while the send's row stays locked.
const HOLD: &str = "UPDATE sends SET lease_until_ms = $5,
        request_ids = (request_ids || $6::text[])[1:$7::int4],
        updated_ms = CASE WHEN cardinality($6::text[]) > 0 THEN $8::int8 ELSE updated_ms END
    WHERE plugin = $1 AND account = $2 AND key = $3 AND holder = $4
    RETURNING 1";

/// Writes rows' new states, while `$4` holds the send.
const UPDATE_ROWS: &str = "
    UPDATE send_recipients r SET state = u.state, attempts = u.attempts, detail = u.detail
    FROM unnest($5::int8[], $6::text[], $7::int8[], $8::text[])
        AS u(position, state, attempts, detail)
    WHERE r.plugin = $1 AND r.account = $2 AND r.key = $3 AND r.position = u.position
    AND EXISTS (SELECT 1 FROM sends
                WHERE plugin = $1 AND account = $2 AND key = $3 AND holder = $4)";

/// Ends the send `$4` holds: `unknown` if a row is in one of the states `$6` (unknown, in
/// flight), else `done` — [`final_state`]'s rule; the Rust side checks they agree. The holder
/// stays, so it may still forget the send.
const FINISH: &str = "
    UPDATE sends SET updated_ms = $5, lease_until_ms = 0,
        state = CASE WHEN EXISTS (
                    SELECT 1 FROM send_recipients
                    WHERE plugin = $1 AND account = $2 AND key = $3 AND state = ANY($6::text[]))
                THEN 'unknown' ELSE 'done' END
    WHERE plugin = $1 AND account = $2 AND key = $3 AND holder = $4
    RETURNING state, request_ids";

/// Extends `$4`'s lease to `$5`: a row back when held.
const RENEW: &str = "UPDATE sends SET lease_until_ms = $5
    WHERE plugin = $1 AND account = $2 AND key = $3 AND holder = $4 RETURNING 1";

/// Drops the send and its rows if `$4` holds it: a row back when it did.
const FORGET: &str = "
    WITH send AS (
        DELETE FROM sends WHERE plugin = $1 AND account = $2 AND key = $3 AND holder = $4
        RETURNING 1),
    recipients AS (
        DELETE FROM send_recipients WHERE plugin = $1 AND account = $2 AND key = $3
        AND EXISTS (SELECT 1 FROM send))
    SELECT 1 FROM send";

/// Gives up every lease `$1` holds on pending sends.
const RELEASE_HOLDER: &str =
    "UPDATE sends SET lease_until_ms = 0 WHERE holder = $1 AND state = 'pending'";

const STATE: &str = "SELECT state, request_ids FROM sends
    WHERE plugin = $1 AND account = $2 AND key = $3";

fn lease_lost(send: &SendKey) -> Error {
    Error::LeaseLost {
        key: send.key.clone(),
    }
}

fn rows_of(found: &[PgRow]) -> Result<Vec<Row>> {
    found
        .iter()
        .map(|row| {
            let recipient: String = row.get(1);
            let state: String = row.get(2);
            let detail: Option<String> = row.get(4);
            Ok(Row {
                position: row.get::<_, i64>(0) as u32,
                recipient: recipient
                    .parse()
                    .map_err(|e| Error::storage_from("a stored recipient does not read", e))?,
                state: RowState::parse(&state),
                attempts: row.get::<_, i64>(3) as u32,
                detail: detail.as_deref().and_then(Detail::parse),
            })
        })
        .collect()
}

/// What [`LOCK_SEND`] found, and whether this lease may take it.
fn decide(
    found: &PgRow,
    fingerprint: &str,
    lease: &Lease,
    now: i64,
    rows: &[PgRow],
    key: &str,
) -> Result<Begin> {
    let stored: String = found.get(0);
    let state: String = found.get(1);
    let holder: String = found.get(2);
    let until: i64 = found.get(3);
    Ok(if stored != fingerprint {
        Begin::Mismatch
    } else if state != "pending" {
        Begin::Ended(outcome_of(key, found.get(4), rows_of(rows)?))
    } else if holder != lease.holder && until > now {
        Begin::Busy { until_ms: until }
    } else {
        Begin::Resumed(rows_of(rows)?)
    })
}

#[async_trait]
impl Journal for Postgres {
    async fn journal_begin(
        &self,
        send: &SendKey,
        fingerprint: &str,
        recipients: &[Recipient],
        in_flight: usize,
        lease: &Lease,
    ) -> Result<Begin> {
        let conn = self.conn().await?;
        let [begin_new, lock_send, take_over, rows] =
            prepare(&conn, [BEGIN_NEW, LOCK_SEND, TAKE_OVER, ROWS]).await?;
        let (plugin, account, key) = (&send.scope.plugin, &send.scope.account, &send.key);
        let texts: Vec<String> = recipients.iter().map(ToString::to_string).collect();
        let in_flight_count = in_flight as i64;
        // A key forgotten between the two steps below is free again: try again (a few times;
        // only a holder forgetting and beginning it in a loop could keep this going).
        for _ in 0..8 {
            let now = now_ms();
            let until = now + lease.ttl_ms;
            let created = pipeline(
                &conn,
                Wrap::None,
                "cannot open the send in the journal",
                &[(
                    &begin_new,
                    &[
                        plugin,
                        account,
                        key,
                        &fingerprint,
                        &lease.holder,
                        &until,
                        &now,
                        &texts,
                        &in_flight_count,
                        &RowState::InFlight.as_str(),
                        &RowState::New.as_str(),
                    ],
                )],
            )
            .await?;
            if created[0][0].get::<_, bool>(0) {
                return Ok(Begin::New {
                    in_flight,
                    rows: recipients
                        .iter()
                        .enumerate()
                        .map(|(position, recipient)| Row::new(position as u32, recipient.clone()))
                        .collect(),
                });
            }
            let found = pipeline(
                &conn,
                Wrap::Atomic,
                "cannot read the send in the journal",
                &[
                    (&lock_send, &[plugin, account, key]),
                    (
                        &take_over,
                        &[
                            plugin,
                            account,
                            key,
                            &lease.holder,
                            &until,
                            &fingerprint,
                            &now,
                        ],
                    ),
                    (&rows, &[plugin, account, key]),
                ],
            )
            .await?;
            if let Some(existing) = found[0].first() {
                return decide(existing, fingerprint, lease, now, &found[2], key);
            }
        }
        Err(Error::storage(format!(
            "the send {key:?} kept being forgotten while it was opened"
        )))
    }

    async fn journal_record(
        &self,
        send: &SendKey,
        lease: &Lease,
        rows: Vec<RowUpdate>,
        request_ids: Vec<String>,
        finish: bool,
    ) -> Result<Option<SendOutcome>> {
        let conn = self.conn().await?;
        let [hold, update_rows, finish_send, select_rows] =
            prepare(&conn, [HOLD, UPDATE_ROWS, FINISH, ROWS]).await?;
        let (plugin, account, key) = (&send.scope.plugin, &send.scope.account, &send.key);
        let now = now_ms();
        let until = now + lease.ttl_ms;
        let max_ids = MAX_REQUEST_IDS as i32;
        let positions: Vec<i64> = rows.iter().map(|r| i64::from(r.position)).collect();
        let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
        let attempts: Vec<i64> = rows.iter().map(|r| i64::from(r.attempts)).collect();
        let details: Vec<Option<&str>> = rows.iter().map(|r| r.detail.as_deref()).collect();
        let open: &[&str] = &[RowState::Unknown.as_str(), RowState::InFlight.as_str()];
        let hold_params: [&(dyn ToSql + Sync); 8] = [
            plugin,
            account,
            key,
            &lease.holder,
            &until,
            &request_ids,
            &max_ids,
            &now,
        ];
        let update_params: [&(dyn ToSql + Sync); 8] = [
            plugin,
            account,
            key,
            &lease.holder,
            &positions,
            &states,
            &attempts,
            &details,
        ];
        let finish_params: [&(dyn ToSql + Sync); 6] =
            [plugin, account, key, &lease.holder, &now, &open];
        let key_params: [&(dyn ToSql + Sync); 3] = [plugin, account, key];
        let mut steps = vec![(&hold, &hold_params[..])];
        if !rows.is_empty() {
            steps.push((&update_rows, &update_params[..]));
        }
        if finish {
            steps.push((&finish_send, &finish_params[..]));
            steps.push((&select_rows, &key_params[..]));
        }
        let found = pipeline(&conn, Wrap::Atomic, "cannot record in the journal", &steps).await?;
        if found[0].is_empty() {
            return Err(lease_lost(send));
        }
        if !finish {
            return Ok(None);
        }
        let (ended, recorded) = (&found[found.len() - 2], &found[found.len() - 1]);
        let ended = ended.first().ok_or_else(|| lease_lost(send))?;
        let rows = rows_of(recorded)?;
        let state: String = ended.get(0);
        debug_assert_eq!(
            state,
            final_state(rows.iter().map(|row| row.state)),
            "FINISH and final_state agree"
        );
        Ok(Some(outcome_of(key, ended.get(1), rows)))
    }

    async fn journal_renew(&self, send: &SendKey, lease: &Lease) -> Result<()> {
        let conn = self.conn().await?;
        let [renew] = prepare(&conn, [RENEW]).await?;
        let until = now_ms() + lease.ttl_ms;
        let found = pipeline(
            &conn,
            Wrap::None,
            "cannot renew the send's lease",
            &[(
                &renew,
                &[
                    &send.scope.plugin,
                    &send.scope.account,
                    &send.key,
                    &lease.holder,
                    &until,
                ],
            )],
        )
        .await?;
        if found[0].is_empty() {
            return Err(lease_lost(send));
        }
        Ok(())
    }

    async fn journal_forget(&self, send: &SendKey, lease: &Lease) -> Result<()> {
        let conn = self.conn().await?;
        let [forget] = prepare(&conn, [FORGET]).await?;
        let found = pipeline(
            &conn,
            Wrap::None,
            "cannot forget a send",
            &[(
                &forget,
                &[
                    &send.scope.plugin,
                    &send.scope.account,
                    &send.key,
                    &lease.holder,
                ],
            )],
        )
        .await?;
        if found[0].is_empty() {
            return Err(lease_lost(send));
        }
        Ok(())
    }

    async fn journal_release_holder(&self, holder: &str) -> Result<()> {
        let conn = self.conn().await?;
        let [release] = prepare(&conn, [RELEASE_HOLDER]).await?;
        pipeline(
            &conn,
            Wrap::None,
            "cannot give up the sends' leases",
            &[(&release, &[&holder])],
        )
        .await?;
        Ok(())
    }

    async fn journal_outcome(&self, send: &SendKey) -> Result<Option<(String, SendOutcome)>> {
        let conn = self.conn().await?;
        let [state, rows] = prepare(&conn, [STATE, ROWS]).await?;
        let key_params: [&(dyn ToSql + Sync); 3] =
            [&send.scope.plugin, &send.scope.account, &send.key];
        let found = pipeline(
            &conn,
            Wrap::None,
            "cannot read the journal",
            &[(&state, &key_params), (&rows, &key_params)],
        )
        .await?;
        let Some(sent) = found[0].first() else {
            return Ok(None);
        };
        let outcome = outcome_of(&send.key, sent.get(1), rows_of(&found[1])?);
        Ok(Some((sent.get(0), outcome)))
    }
}
