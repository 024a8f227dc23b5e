//! The idempotency journal: for each send (scope, idempotency key), its fingerprint, its state
//! and one row per recipient, written before and after each platform call.
//!
//! A send is `pending` while it runs and `done` (every recipient issued or failed) or `unknown`
//! (some recipient's fate could not be told) when it ends. Each recipient row moves
//! `new` → `in-flight` (written *before* the adapter is called) → `issued` | `failed` | `retry`
//! | `unknown`. After a crash, an `in-flight` row is the only one whose platform effect is not
//! known: the delivery engine resends it only where that is safe (see `delivery.rs`).
//!
//! A pending send belongs to one process under a [`Lease`]: every write checks the writer still
//! holds it (and extends it), and another process takes a pending send over only once its lease
//! has expired (`Begin::Busy` until then).
//!
//! Rows hold recipients, coupon ids and classified platform errors; never a credential (the
//! host scrubs secrets from everything an adapter can read, so its error messages carry none).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::Scope;
use crate::error::{Error, Result};
use crate::types::{
    AdapterError, ErrorClass, IssuedCoupon, Recipient, RecipientFailure, SendOutcome,
};

/// One send: whose, and under which idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SendKey {
    pub(crate) scope: Scope,
    pub(crate) key: String,
}

/// Who holds a pending send, and for how long each write extends the hold.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    /// This process (unique per process start).
    pub(crate) holder: String,
    /// How long a lease lasts past its last renewal, in ms.
    pub(crate) ttl_ms: i64,
}

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
    /// The state's name in storage.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RowState::New => "new",
            RowState::InFlight => "in-flight",
            RowState::Issued => "issued",
            RowState::Failed => "failed",
            RowState::Retry => "retry",
            RowState::Unknown => "unknown",
        }
    }

    /// The state a stored name stands for.
    pub(crate) fn parse(text: &str) -> RowState {
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
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub(crate) position: u32,
    pub(crate) recipient: Recipient,
    pub(crate) state: RowState,
    pub(crate) attempts: u32,
    pub(crate) detail: Option<Detail>,
}

impl Row {
    /// A row not sent yet.
    pub(crate) fn new(position: u32, recipient: Recipient) -> Row {
        Row {
            position,
            recipient,
            state: RowState::New,
            attempts: 0,
            detail: None,
        }
    }

    /// This row's state, ready for [`Journal::journal_record`].
    pub(crate) fn update(&self) -> RowUpdate {
        RowUpdate {
            position: self.position,
            state: self.state,
            attempts: self.attempts,
            detail: self
                .detail
                .as_ref()
                .map(|d| serde_json::to_string(d).expect("details serialize")),
        }
    }
}

/// What a row records about its recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Detail {
    Issued(IssuedCoupon),
    Error(AdapterError),
}

impl Detail {
    /// A stored detail (JSON), if it reads.
    pub(crate) fn parse(text: &str) -> Option<Detail> {
        serde_json::from_str(text).ok()
    }
}

/// A row's new state as a backend stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowUpdate {
    pub(crate) position: u32,
    pub(crate) state: RowState,
    pub(crate) attempts: u32,
    /// The [`Detail`], as JSON.
    pub(crate) detail: Option<String>,
}

/// What the journal knew when a send began.
#[derive(Debug)]
pub(crate) enum Begin {
    /// The key already ended: its recorded outcome.
    Ended(SendOutcome),
    /// The key was used for a different request.
    Mismatch,
    /// Another live process holds the send's lease until this time (unix ms).
    Busy { until_ms: i64 },
    /// Unfinished (an earlier run was interrupted, or its holder's lease expired): its rows as
    /// recorded; the lease is now ours.
    Resumed(Vec<Row>),
    /// New: its rows, all `new` here, of which the first `in_flight` were written `in-flight`
    /// (first attempt) in the same write; the lease is ours.
    New { rows: Vec<Row>, in_flight: usize },
}

/// The idempotency journal.
#[async_trait]
pub(crate) trait Journal: Send + Sync {
    /// Opens a send's entry under `lease`, or finds the one already there. A new entry's first
    /// `in_flight` recipients are written in flight at once, for a caller about to send them.
    async fn journal_begin(
        &self,
        send: &SendKey,
        fingerprint: &str,
        recipients: &[Recipient],
        in_flight: usize,
        lease: &Lease,
    ) -> Result<Begin>;

    /// Records rows' new states (and attempt counts) in one write, with the platform request ids
    /// the call answered (appended to the recorded ones); with `finish`, also ends the send in
    /// the same write — `done`, or `unknown` when a row is unknown or still in flight — and
    /// returns its outcome. Fails with [`Error::LeaseLost`] when `lease` no longer holds it.
    async fn journal_record(
        &self,
        send: &SendKey,
        lease: &Lease,
        rows: Vec<RowUpdate>,
        request_ids: Vec<String>,
        finish: bool,
    ) -> Result<Option<SendOutcome>>;

    /// Extends the lease while a long step (an adapter call, a backoff) runs.
    async fn journal_renew(&self, send: &SendKey, lease: &Lease) -> Result<()>;

    /// Drops a send that had no effect on the platform, so its key can be used again.
    async fn journal_forget(&self, send: &SendKey, lease: &Lease) -> Result<()>;

    /// Gives up every lease `holder` has on pending sends (a process cut short on its way out),
    /// so another process may take them over at once.
    async fn journal_release_holder(&self, holder: &str) -> Result<()>;

    /// A send's state (`pending`, `done`, `unknown`) and outcome as recorded so far.
    async fn journal_outcome(&self, send: &SendKey) -> Result<Option<(String, SendOutcome)>>;
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
                    ErrorClass::Unknown,
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

/// A send's outcome from its rows and recorded request ids.
pub(crate) fn outcome_of(key: &str, request_ids: Vec<String>, rows: Vec<Row>) -> SendOutcome {
    let mut outcome = SendOutcome {
        idempotency_key: key.to_owned(),
        platform_request_ids: request_ids,
        ..SendOutcome::default()
    };
    for row in rows {
        push_row(&mut outcome, row);
    }
    outcome
}

/// The state a finished send is recorded with.
pub(crate) fn final_state(rows: impl IntoIterator<Item = RowState>) -> &'static str {
    let open = rows
        .into_iter()
        .any(|state| matches!(state, RowState::Unknown | RowState::InFlight));
    if open { "unknown" } else { "done" }
}

/// Most platform request ids kept per send.
pub(crate) const MAX_REQUEST_IDS: usize = 1024;

/// The refusal of a key reused for another request.
pub(crate) fn mismatch(key: &str) -> Error {
    Error::InvalidRequest(format!(
        "idempotency key {key:?} was already used for a different request"
    ))
}
