//! Campaigns: what each one sends, every line of its file (accepted, rejected or skipped), and
//! its batches as a work queue that any process on the backend can claim under a lease.
//!
//! A campaign is *enqueued* by streaming its file into the ledger — lines in file order, each
//! accepted recipient given its batch and position — and each full batch is queued as soon as its
//! last recipient is in. Workers claim queued batches (the lowest first) under a lease, send them
//! through the journal under the key `CAMPAIGN/BATCH`, and release them done; a batch whose
//! holder died is claimed again once its lease expires, and the journal resumes it.

use async_trait::async_trait;

use super::{Detail, Scope};
use crate::error::Result;
use crate::types::{CampaignStatus, Recipient, ReportLine, WorkerStatus};

/// What a campaign sends, as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CampaignRecord {
    pub(crate) id: String,
    pub(crate) scope: Scope,
    pub(crate) coupon: String,
    pub(crate) quantity: u32,
    pub(crate) options: Vec<(String, String)>,
    /// The recipients file (canonical path), for people.
    pub(crate) source: String,
    /// The file's SHA-256: a changed file is refused.
    pub(crate) source_sha256: String,
    /// Recipient lines in the file.
    pub(crate) total_lines: u64,
    /// Recipients per batch (the adapter's max per call when the campaign started).
    pub(crate) batch_size: u64,
}

/// A line the campaign does not send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    pub(crate) line: u64,
    /// The line's text (cut), or the recipient.
    pub(crate) text: String,
    /// `rejected` (malformed, a kind the plugin does not take) or `skipped` (a repeat).
    pub(crate) state: &'static str,
    pub(crate) reason: String,
}

/// A batch claimed for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    pub(crate) campaign: String,
    pub(crate) index: u64,
    pub(crate) recipients: Vec<Recipient>,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// A batch, now leased to the claimer.
    Batch(Batch),
    /// Nothing to claim now, but the campaign is not finished: batches are leased by others,
    /// or the file is still being enqueued. Ask again later.
    Wait,
    /// Every batch is done.
    Done,
    /// The campaign was stopped (a batch refused for a reason every batch would meet): why.
    Stopped(String),
}

/// The campaign ledger.
#[async_trait]
pub(crate) trait Ledger: Send + Sync {
    /// Registers a campaign; when one is registered under that id already, returns it unchanged
    /// (for the caller to compare).
    async fn campaign_open(&self, record: &CampaignRecord) -> Result<Option<CampaignRecord>>;

    /// A registered campaign.
    async fn campaign_get(&self, id: &str) -> Result<Option<CampaignRecord>>;

    /// Takes recipients in file order, `accepted` being how many earlier lines were accepted:
    /// each recipient not listed on an earlier line gets batch `accepted / batch_size` and
    /// position `accepted % batch_size` (the same on every run over the same file); a repeat is
    /// recorded `skipped`. Returns the recipients accepted, in order.
    async fn campaign_accept(
        &self,
        id: &str,
        candidates: Vec<(u64, Recipient)>,
        accepted: u64,
        batch_size: u64,
    ) -> Result<Vec<Recipient>>;

    /// Records lines that will not be sent.
    async fn campaign_reject(&self, id: &str, rejects: Vec<Reject>) -> Result<()>;

    /// Queues batch `index` (all its recipients accepted) for claiming; a batch queued before
    /// keeps its state.
    async fn campaign_queue(&self, id: &str, index: u64) -> Result<()>;

    /// Marks the whole file enqueued: once every batch is done, the campaign is.
    async fn campaign_enqueued(&self, id: &str) -> Result<()>;

    /// Claims the lowest queued batch of `campaign` (any running campaign when `None`), or one
    /// whose holder's lease expired, leasing it to `holder` until `until_ms`.
    async fn campaign_claim(
        &self,
        campaign: Option<&str>,
        holder: &str,
        until_ms: i64,
    ) -> Result<Claim>;

    /// Extends `holder`'s lease on a batch; `false` if it lost it. (Claims, renewals and
    /// releases all say the holder is alive, for [`Ledger::campaign_workers`].)
    async fn campaign_renew(
        &self,
        id: &str,
        index: u64,
        holder: &str,
        until_ms: i64,
    ) -> Result<bool>;

    /// Ends `holder`'s lease on a batch: `done` (never claimed again; `recipients` count towards
    /// the holder's progress), or not (queued again, to be sent later).
    async fn campaign_release(
        &self,
        id: &str,
        index: u64,
        holder: &str,
        done: bool,
        recipients: u64,
    ) -> Result<()>;

    /// Gives every batch `holder` has leased back to the queue (a process cut short on its way
    /// out), so another process may claim them at once.
    async fn campaign_release_holder(&self, holder: &str) -> Result<()>;

    /// Stops the campaign (no batch is claimed until it is started again), or with `None`
    /// starts it again.
    async fn campaign_stop(&self, id: &str, reason: Option<&str>) -> Result<()>;

    /// Where a campaign stands (`state` becomes `done` once every batch is done).
    async fn campaign_status(&self, id: &str) -> Result<CampaignStatus>;

    /// Up to `limit` report lines after line `after`, in file order.
    async fn campaign_report(&self, id: &str, after: u64, limit: usize) -> Result<Vec<ReportLine>>;

    /// The workers that worked on a campaign and were seen since `since_ms`, with their progress.
    async fn campaign_workers(&self, id: &str, since_ms: i64) -> Result<Vec<WorkerStatus>>;
}

/// Completes a status from what the backend read besides the journal's counts: the lines not
/// sent (by state: `rejected`, `skipped`) and why the campaign was stopped, if it was. A stopped
/// campaign that is not done says `stopped`, with the refusal that stopped it.
pub(crate) fn settle_status(
    status: &mut CampaignStatus,
    rejects: impl IntoIterator<Item = (String, u64)>,
    stopped: Option<String>,
) {
    for (state, n) in rejects {
        match state.as_str() {
            "skipped" => status.skipped += n,
            _ => status.rejected += n,
        }
    }
    status.pending = status.total.saturating_sub(status.finished());
    if let Some(why) = stopped
        && status.state != "done"
    {
        status.state = "stopped".to_owned();
        status.error = Some(serde_json::from_str(&why).unwrap_or_else(|_| {
            crate::types::AdapterError::new(crate::types::ErrorClass::Unknown, "stopped", why)
        }));
    }
}

/// The journal key of a campaign's batch.
pub(crate) fn batch_key(id: &str, index: u64) -> String {
    format!("{id}/{index:08}")
}

/// One report line from a stored line state and detail.
pub(crate) fn report_line(
    line: u64,
    recipient: String,
    state: Option<String>,
    detail: Option<String>,
) -> ReportLine {
    let mut report = ReportLine {
        line,
        recipient,
        state: String::new(),
        coupon_id: None,
        class: None,
        code: None,
        message: None,
    };
    match state.as_deref() {
        Some(state @ ("rejected" | "skipped")) => {
            report.state = state.to_owned();
            report.message = detail;
        }
        Some(state @ ("issued" | "failed" | "unknown")) => {
            report.state = state.to_owned();
            match detail.as_deref().and_then(Detail::parse) {
                Some(Detail::Issued(issued)) => report.coupon_id = issued.coupon_id,
                Some(Detail::Error(error)) => {
                    report.class = Some(error.class.to_string());
                    report.code = Some(error.code);
                    report.message = Some(error.message);
                }
                None => {}
            }
        }
        _ => report.state = "pending".to_owned(),
    }
    report
}
