//! Delivery: how one send (plugin, idempotency key) reaches the platform exactly once per
//! recipient, whatever fails on the way.
//!
//! 1. **Coalesce.** Sends with one key run one at a time in this process ([`KeyLocks`]); the
//!    second finds the first's outcome in the journal and returns it without a platform call.
//! 2. **Journal first.** A batch's rows are marked `in-flight` before the adapter is called and
//!    get their outcome after, so a crash leaves exactly the recipients whose fate is open.
//! 3. **Retry by class.** `transient` and `rate-limited` failures are sent again after an
//!    exponential backoff with full jitter (at least what the platform asked for), within
//!    `retry.max_attempts` and `retry.budget_ms`. A `rate-limited` answer also pauses the
//!    plugin's rate limiter, so no other call of the process runs into the same ban.
//! 4. **Never blindly resend the ambiguous.** An `unknown` outcome (a timeout after the request
//!    left, a recipient the adapter did not report, a row left in flight by a crash) is resent
//!    only when the adapter declares its send idempotent. Otherwise the engine waits
//!    `retry.reconcile_after_ms` and asks the platform through `query-coupons`: the coupon is
//!    there → issued; it is not → safe to send again; the query fails → `unknown`, for review.
//! 5. **Sandbox kills are final.** An adapter killed mid-call may have sent anything; its
//!    recipients are `unknown` and the broken adapter is not run again for them.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::journal::{Begin, Detail, Row, RowState};
use crate::runtime::bindings::latest::coupon::adapter::types as wit;
use crate::runtime::{Op, OpResult};
use crate::types::{
    AdapterError, CouponState, ErrorClass, IssuedCoupon, QueryRequest, Recipient, SendOutcome,
    SendRequest,
};
use crate::{Error, Host, Plugin, Result};

/// How long the limiter pauses a plugin on a `rate-limited` answer that names no duration.
const DEFAULT_BAN: Duration = Duration::from_secs(1);

/// (plugin, idempotency key) → its lock, while someone holds or waits for it.
type LockMap = HashMap<(String, String), Weak<tokio::sync::Mutex<()>>>;

/// One async lock per (plugin, idempotency key) in use.
#[derive(Default)]
pub(crate) struct KeyLocks {
    locks: std::sync::Mutex<LockMap>,
}

impl KeyLocks {
    async fn lock(&self, plugin: &str, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.retain(|_, lock| lock.strong_count() > 0);
            let entry = locks
                .entry((plugin.to_owned(), key.to_owned()))
                .or_default();
            match entry.upgrade() {
                Some(lock) => lock,
                None => {
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    *entry = Arc::downgrade(&lock);
                    lock
                }
            }
        };
        lock.lock_owned().await
    }
}

/// What identifies a request under one key: a key reused for another request is refused.
fn fingerprint(request: &SendRequest) -> String {
    let mut hash = Sha256::new();
    hash.update(request.coupon.as_bytes());
    hash.update([0]);
    hash.update(request.quantity.to_le_bytes());
    for (name, value) in &request.options {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
        hash.update([0]);
    }
    hash.update([1]);
    for recipient in &request.recipients {
        hash.update(recipient.to_string().as_bytes());
        hash.update([0]);
    }
    hex::encode(hash.finalize())
}

/// What to do with a recipient after a failure of this class.
enum Next {
    Retry,
    Reconcile,
    Final,
}

fn next_step(class: ErrorClass, idempotent: bool) -> Next {
    match class {
        ErrorClass::Transient | ErrorClass::RateLimited => Next::Retry,
        ErrorClass::Unknown if idempotent => Next::Retry,
        ErrorClass::Unknown => Next::Reconcile,
        _ => Next::Final,
    }
}

/// The backoff before retry round `round` (1-based): full jitter up to `base × 2^(round-1)`,
/// capped, and never less than the longest wait the platform asked for.
fn backoff(retry: &crate::config::Retry, round: u32, asked: Option<Duration>) -> Duration {
    let cap = Duration::from_millis(retry.max_backoff_ms);
    let ceiling = Duration::from_millis(retry.base_backoff_ms)
        .saturating_mul(1 << round.saturating_sub(1).min(20))
        .min(cap);
    let jittered = ceiling.mul_f64(rand::random::<f64>());
    jittered.max(asked.unwrap_or_default())
}

impl Host {
    /// Runs one send under its key, through the journal, with retries. With
    /// `forget_whole_failures`, a send that had no effect at all (every call refused as a whole,
    /// nothing issued, nothing unknown) returns that error and leaves no journal entry, so the
    /// caller may fix the cause and use the key again.
    pub(crate) async fn deliver(
        &self,
        plugin: &Plugin,
        request: &SendRequest,
        key: &str,
        forget_whole_failures: bool,
    ) -> Result<SendOutcome> {
        let name = plugin.info.name.as_str();
        let _one_at_a_time = self.inner.key_locks.lock(name, key).await;
        let store = &plugin.context.store;
        let batch_size = plugin.info.describe.max_recipients_per_call as usize;
        // A new send's first batch is written in flight with the send itself (one write, not
        // two), unless the plugin is paused and the batch may never go.
        let first_batch = match plugin.context.limiter.paused_for() {
            None => batch_size.min(request.recipients.len()),
            Some(_) => 0,
        };
        let (mut rows, mut already_in_flight) = match store
            .journal_begin(
                name,
                key,
                &fingerprint(request),
                &request.recipients,
                first_batch,
            )
            .await?
        {
            Begin::Ended(mut outcome) => {
                tracing::info!("replaying the recorded outcome; the platform is not called");
                outcome.replayed = true;
                return Ok(outcome);
            }
            Begin::Mismatch => return Err(crate::journal::mismatch(key)),
            Begin::Rows(rows) => (rows, 0),
            Begin::New { rows, in_flight } => (rows, in_flight),
        };

        let retry = &plugin.context.config.retry;
        let budget = Duration::from_millis(retry.budget_ms);
        let idempotent = plugin.info.describe.idempotent_send;
        let started = Instant::now();

        // Rows an interrupted process left in flight.
        let mut to_reconcile = Vec::new();
        for (index, row) in rows.iter_mut().enumerate() {
            if row.state == RowState::InFlight {
                if idempotent {
                    row.state = RowState::Retry;
                } else {
                    to_reconcile.push(index);
                }
            }
        }
        if !to_reconcile.is_empty() {
            tracing::info!(
                recipients = to_reconcile.len(),
                "resuming a send interrupted while in flight"
            );
        }

        let mut calls = 0usize;
        let mut finished = None;
        let mut whole_failures = Vec::new();
        let mut round = 0u32;
        loop {
            if !to_reconcile.is_empty() {
                self.reconcile(plugin, request, key, &mut rows, &to_reconcile)
                    .await?;
                to_reconcile.clear();
            }
            // Retries out of attempts or time end here.
            let out_of_time = started.elapsed() >= budget;
            let mut ended = Vec::new();
            for row in rows.iter_mut() {
                if row.state == RowState::Retry
                    && (row.attempts >= retry.max_attempts || out_of_time)
                {
                    row.state = RowState::Failed;
                    ended.push(row.position);
                }
            }
            self.record(plugin, key, &rows, &ended, &[]).await?;
            let pending: Vec<usize> = (0..rows.len())
                .filter(|&i| matches!(rows[i].state, RowState::New | RowState::Retry))
                .collect();
            if pending.is_empty() {
                break;
            }
            if pending.iter().any(|&i| rows[i].state == RowState::Retry) {
                round += 1;
                let asked = pending
                    .iter()
                    .filter_map(|&i| match &rows[i].detail {
                        Some(Detail::Error(e)) => e.retry_after_ms,
                        _ => None,
                    })
                    .max()
                    .map(|ms| Duration::from_millis(ms.into()));
                let wait = backoff(retry, round, asked);
                if started.elapsed() + wait >= budget {
                    // No time left for another attempt: the retries end as they stand.
                    for &i in &pending {
                        if rows[i].state == RowState::Retry {
                            rows[i].state = RowState::Failed;
                        }
                    }
                    let positions: Vec<u32> = pending.iter().map(|&i| rows[i].position).collect();
                    self.record(plugin, key, &rows, &positions, &[]).await?;
                    continue;
                }
                tracing::debug!(round, wait_ms = wait.as_millis() as u64, "backing off");
                tokio::time::sleep(wait).await;
            }

            for batch in pending.chunks(batch_size) {
                // Only a new send's first batch, which `journal_begin` wrote in flight.
                let written_in_flight = std::mem::take(&mut already_in_flight) == batch.len();
                if let Some(pause) = plugin.context.limiter.paused_for() {
                    // The platform banned this plugin: wait it out, or leave it to the next round.
                    if started.elapsed() + pause >= budget {
                        for &i in batch {
                            rows[i].state = RowState::Failed;
                            rows[i].detail.get_or_insert_with(|| {
                                Detail::Error(AdapterError::new(
                                    ErrorClass::RateLimited,
                                    "paused",
                                    "the platform paused this plugin past the retry budget",
                                ))
                            });
                        }
                        let positions: Vec<u32> = batch.iter().map(|&i| rows[i].position).collect();
                        self.record(plugin, key, &rows, &positions, &[]).await?;
                        continue;
                    }
                    tokio::time::sleep(pause).await;
                }
                calls += 1;
                let recipients: Vec<Recipient> =
                    batch.iter().map(|&i| rows[i].recipient.clone()).collect();
                for &i in batch {
                    rows[i].state = RowState::InFlight;
                    rows[i].attempts += 1;
                }
                let positions: Vec<u32> = batch.iter().map(|&i| rows[i].position).collect();
                if !written_in_flight {
                    self.record(plugin, key, &rows, &positions, &[]).await?;
                }

                let wit_request = wit::SendRequest {
                    coupon: request.coupon.clone(),
                    recipients: recipients.iter().map(Into::into).collect(),
                    quantity: request.quantity,
                    idempotency_key: key.to_owned(),
                    options: request.options.clone(),
                };
                let call_started = std::time::Instant::now();
                let result = self
                    .inner
                    .runtime
                    .call(&plugin.context, &plugin.component, Op::Send(wit_request))
                    .await;
                tracing::debug!(
                    elapsed_ms = call_started.elapsed().as_millis() as u64,
                    "adapter call"
                );
                let mut answers: HashMap<
                    Recipient,
                    std::result::Result<IssuedCoupon, AdapterError>,
                > = HashMap::new();
                let mut request_ids = Vec::new();
                match result {
                    Ok(OpResult::Send(Ok(answer))) => {
                        for issued in answer.issued {
                            let issued = IssuedCoupon::from(issued);
                            answers
                                .entry(issued.recipient.clone())
                                .or_insert(Ok(issued));
                        }
                        for failure in answer.failed {
                            answers
                                .entry(Recipient::from(failure.recipient))
                                .or_insert(Err(failure.error.into()));
                        }
                        request_ids = answer
                            .platform_request_ids
                            .into_iter()
                            .take(64)
                            .map(|id| id.chars().take(128).collect())
                            .collect();
                    }
                    Ok(OpResult::Send(Err(error))) => {
                        let error = AdapterError::from(error);
                        tracing::debug!(class = %error.class, code = %error.code, "the call failed as a whole");
                        for recipient in &recipients {
                            answers.insert(recipient.clone(), Err(error.clone()));
                        }
                        whole_failures.push(Error::Adapter {
                            plugin: name.to_owned(),
                            error,
                        });
                    }
                    Ok(_) => unreachable!("send answers send"),
                    Err(error) => {
                        tracing::error!(%error, "adapter stopped by the sandbox");
                        let failure =
                            AdapterError::new(ErrorClass::Unknown, "sandbox", error.to_string());
                        for &i in batch {
                            rows[i].state = RowState::Unknown;
                            rows[i].detail = Some(Detail::Error(failure.clone()));
                        }
                        self.record(plugin, key, &rows, &positions, &[]).await?;
                        whole_failures.push(error);
                        continue;
                    }
                }

                let mut ban = None;
                for &i in batch {
                    let row = &mut rows[i];
                    let answer = answers.remove(&row.recipient).unwrap_or_else(|| {
                        Err(AdapterError::new(
                            ErrorClass::Unknown,
                            "not-reported",
                            "the adapter did not report this recipient",
                        ))
                    });
                    match answer {
                        Ok(issued) => {
                            row.state = RowState::Issued;
                            row.detail = Some(Detail::Issued(issued));
                        }
                        Err(error) => {
                            if matches!(next_step(error.class, idempotent), Next::Retry) {
                                crate::metrics::retry(name, error.class);
                            }
                            if error.class == ErrorClass::RateLimited {
                                let asked = error
                                    .retry_after_ms
                                    .map(|ms| Duration::from_millis(ms.into()))
                                    .unwrap_or(DEFAULT_BAN);
                                ban = ban.max(Some(asked));
                            }
                            row.state = match next_step(error.class, idempotent) {
                                Next::Retry => RowState::Retry,
                                Next::Reconcile => {
                                    to_reconcile.push(i);
                                    RowState::InFlight
                                }
                                Next::Final => RowState::Failed,
                            };
                            row.detail = Some(Detail::Error(error));
                        }
                    }
                }
                if !answers.is_empty() {
                    tracing::warn!(
                        extra = answers.len(),
                        "adapter reported recipients not in the batch; ignored"
                    );
                }
                if let Some(ban) = ban {
                    tracing::info!(
                        ban_ms = ban.as_millis() as u64,
                        "platform says too frequent; pausing the plugin"
                    );
                    plugin.context.limiter.pause(ban);
                }
                // When nothing is left to do, the send ends in the same write.
                let last = to_reconcile.is_empty()
                    && rows
                        .iter()
                        .all(|row| !matches!(row.state, RowState::New | RowState::Retry));
                finished = store
                    .journal_record(name, key, updates(&rows, &positions), request_ids, last)
                    .await?;
            }
        }

        let outcome = match finished {
            Some(outcome) => outcome,
            None => store.journal_finish(name, key).await?,
        };
        let nothing_happened = outcome.issued.is_empty()
            && !whole_failures.is_empty()
            && whole_failures.len() == calls;
        if nothing_happened {
            // Every call was refused as a whole. With no effect anywhere, the key is freed and
            // the error returned; a sandbox kill is returned too (its recipients stay unknown in
            // the journal); otherwise the outcome shows each recipient's state.
            let any_unknown = rows.iter().any(|row| row.state == RowState::Unknown);
            let last = whole_failures.pop().expect("checked non-empty");
            if forget_whole_failures && !any_unknown {
                store.journal_forget(name, key).await?;
                return Err(last);
            }
            if matches!(last, Error::Sandbox { .. }) {
                return Err(last);
            }
        }
        Ok(outcome)
    }

    async fn record(
        &self,
        plugin: &Plugin,
        key: &str,
        rows: &[Row],
        positions: &[u32],
        request_ids: &[String],
    ) -> Result<()> {
        if positions.is_empty() && request_ids.is_empty() {
            return Ok(());
        }
        let updates = updates(rows, positions);
        plugin
            .context
            .store
            .journal_record(&plugin.info.name, key, updates, request_ids.to_vec(), false)
            .await
            .map(drop)
    }

    /// A query, retried like a send when it fails in a way that may pass.
    async fn query_with_retries(
        &self,
        plugin: &Plugin,
        query: QueryRequest,
    ) -> Result<Vec<crate::types::Coupon>> {
        let retry = &plugin.context.config.retry;
        let mut attempt = 1;
        loop {
            match self.query_plugin(plugin, query.clone()).await {
                Err(Error::Adapter { error, .. })
                    if attempt < retry.max_attempts
                        // A query changes nothing, so even an ambiguous failure can be retried.
                        && matches!(
                            error.class,
                            ErrorClass::Transient | ErrorClass::RateLimited | ErrorClass::Unknown
                        ) =>
                {
                    let asked = error
                        .retry_after_ms
                        .map(|ms| Duration::from_millis(ms.into()));
                    if error.class == ErrorClass::RateLimited {
                        plugin.context.limiter.pause(asked.unwrap_or(DEFAULT_BAN));
                    }
                    tokio::time::sleep(backoff(retry, attempt, asked)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Asks the platform whether ambiguous sends to `indices` applied (see the module docs).
    async fn reconcile(
        &self,
        plugin: &Plugin,
        request: &SendRequest,
        key: &str,
        rows: &mut [Row],
        indices: &[usize],
    ) -> Result<()> {
        let retry = &plugin.context.config.retry;
        tracing::info!(
            recipients = indices.len(),
            "reconciling ambiguous sends through query-coupons"
        );
        tokio::time::sleep(Duration::from_millis(retry.reconcile_after_ms)).await;
        let mut positions = Vec::new();
        for &i in indices {
            let row = &mut rows[i];
            let query = QueryRequest {
                recipient: row.recipient.clone(),
                options: request.options.clone(),
            };
            let original = match row.detail.take() {
                Some(Detail::Error(error)) => error,
                _ => AdapterError::new(
                    ErrorClass::Unknown,
                    "interrupted",
                    "the send was interrupted while in flight",
                ),
            };
            match self.query_with_retries(plugin, query).await {
                Ok(coupons) => {
                    let held = coupons.into_iter().find(|coupon| {
                        coupon.template_id.as_deref() == Some(request.coupon.as_str())
                            && coupon.state != CouponState::Claimable
                    });
                    match held {
                        Some(coupon) => {
                            row.state = RowState::Issued;
                            row.detail = Some(Detail::Issued(IssuedCoupon {
                                coupon_id: Some(coupon.id),
                                name: coupon.title,
                                amount_fen: coupon.amount_fen,
                                threshold_fen: coupon.threshold_fen,
                                valid_from: coupon.valid_from,
                                valid_until: coupon.valid_until,
                                ..IssuedCoupon::new(row.recipient.clone())
                            }));
                        }
                        None if row.attempts < retry.max_attempts => {
                            // Not applied: sending again cannot issue twice.
                            row.state = RowState::Retry;
                            row.detail = Some(Detail::Error(original));
                        }
                        None => {
                            row.state = RowState::Failed;
                            row.detail = Some(Detail::Error(AdapterError::new(
                                ErrorClass::Transient,
                                "not-applied",
                                format!(
                                    "the platform did not apply the send (checked with query-coupons) after {} attempts; last: {}",
                                    row.attempts, original
                                ),
                            )));
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot reconcile; leaving the recipient unknown");
                    row.state = RowState::Unknown;
                    row.detail = Some(Detail::Error(AdapterError::new(
                        ErrorClass::Unknown,
                        original.code.clone(),
                        format!(
                            "{}; query-coupons could not tell whether it applied: {error}",
                            original.message
                        ),
                    )));
                }
            }
            positions.push(row.position);
        }
        self.record(plugin, key, rows, &positions, &[]).await
    }
}

/// The journal updates for the rows at `positions`.
fn updates(rows: &[Row], positions: &[u32]) -> Vec<crate::journal::RowUpdate> {
    positions
        .iter()
        .filter_map(|p| rows.iter().find(|row| row.position == *p))
        .map(Row::update)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_honours_the_platform() {
        let retry = crate::config::Retry::default();
        for round in 1..10 {
            let wait = backoff(&retry, round, None);
            assert!(wait <= Duration::from_millis(retry.max_backoff_ms));
            assert!(wait <= Duration::from_millis(retry.base_backoff_ms << (round - 1)));
        }
        let asked = Duration::from_secs(22);
        assert!(backoff(&retry, 1, Some(asked)) >= asked);
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        let one = SendRequest::new("1", vec!["nick:a".parse().unwrap()]);
        let mut other = one.clone();
        other.quantity = 2;
        assert_ne!(fingerprint(&one), fingerprint(&other));
        assert_eq!(fingerprint(&one), fingerprint(&one.clone()));
    }
}
