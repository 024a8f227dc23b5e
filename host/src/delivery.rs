//! Delivery: how one send (plugin, account, idempotency key) reaches the platform exactly once
//! per recipient, whatever fails on the way.
//!
//! 1. **One holder.** Sends with one key run one at a time in this process ([`KeyLocks`]); across
//!    processes the journal's lease decides: a send another live process holds is waited for
//!    (or answered `in-progress`), and taken over only once its lease expires.
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
//!
//! The decisions are pure functions in `delivery/plan.rs`; this file does the IO around them.

mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use self::plan::Applied;
use crate::auth::Account;
use crate::error::{Error, Result};
use crate::runtime::{Plugin, Runtime, SendCall};
use crate::store::{Begin, Lease, Row, RowState, Scope, SendKey, Storage, now_ms};
use crate::types::{
    AdapterError, Coupon, ErrorClass, QueryRequest, Recipient, SendOutcome, SendRequest,
};

/// (plugin, account, idempotency key) → its lock, while someone holds or waits for it.
type LockMap = HashMap<SendKey, Weak<tokio::sync::Mutex<()>>>;

/// One async lock per send key in use.
#[derive(Default)]
struct KeyLocks {
    locks: std::sync::Mutex<LockMap>,
}

impl KeyLocks {
    async fn lock(&self, key: &SendKey) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.retain(|_, lock| lock.strong_count() > 0);
            let entry = locks.entry(key.clone()).or_default();
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

/// How a send treats what it cannot do now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mode {
    /// A send that had no effect at all (every call refused as a whole, nothing issued, nothing
    /// unknown) returns that error and leaves no journal entry, so the caller may fix the cause
    /// and use the key again.
    pub(crate) forget_whole_failures: bool,
    /// A send another process holds is waited for (until its lease lapses or it ends); without
    /// this, it is answered [`Error::InProgress`] at once.
    pub(crate) wait_when_busy: bool,
}

/// Sends through the journal, with retries: what `Host::send` and campaign batches run.
pub(crate) struct Delivery {
    runtime: Arc<Runtime>,
    storage: Storage,
    key_locks: KeyLocks,
    lease: Lease,
}

/// Renews a send's lease while it runs; stops when dropped.
struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Delivery {
    pub(crate) fn new(runtime: Arc<Runtime>, storage: Storage, lease: Lease) -> Delivery {
        Delivery {
            runtime,
            storage,
            key_locks: KeyLocks::default(),
            lease,
        }
    }

    /// This process's lease on sends.
    pub(crate) fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Runs one send under its key, through the journal, with retries (see the module docs).
    pub(crate) async fn send(
        &self,
        plugin: &Plugin,
        account: &Arc<Account>,
        request: &SendRequest,
        key: &str,
        mode: Mode,
    ) -> Result<SendOutcome> {
        let send = SendKey {
            scope: Scope::new(plugin.name(), account.name.clone()),
            key: key.to_owned(),
        };
        let _one_at_a_time = self.key_locks.lock(&send).await;
        let batch_size = plugin.info.describe.max_recipients_per_call as usize;
        // A new send's first batch is written in flight with the send itself (one write, not
        // two), unless the plugin is paused and the batch may never go.
        let first_batch = match plugin.context.limiter.paused_for() {
            None => batch_size.min(request.recipients.len()),
            Some(_) => 0,
        };
        let (rows, in_flight) = match self
            .begin(plugin, &send, request, first_batch, mode)
            .await?
        {
            Begin::Ended(mut outcome) => {
                tracing::info!("replaying the recorded outcome; the platform is not called");
                outcome.replayed = true;
                return Ok(outcome);
            }
            Begin::Mismatch => return Err(crate::store::journal::mismatch(key)),
            Begin::Busy { .. } => {
                return Err(Error::InProgress {
                    key: key.to_owned(),
                });
            }
            Begin::Resumed(rows) => (rows, 0),
            Begin::New { rows, in_flight } => (rows, in_flight),
        };
        let _renewal = self.renew_while_running(&send);
        Run {
            delivery: self,
            plugin,
            account,
            request,
            send: &send,
            rows,
            already_in_flight: in_flight,
        }
        .run(mode)
        .await
    }

    /// Opens the send in the journal; while another process holds it and `mode` says wait,
    /// waits (until its lease lapses, or for as long as a send of this plugin may take).
    async fn begin(
        &self,
        plugin: &Plugin,
        send: &SendKey,
        request: &SendRequest,
        first_batch: usize,
        mode: Mode,
    ) -> Result<Begin> {
        let config = &plugin.context.config;
        let patience = Duration::from_millis(
            config.retry.budget_ms + 2 * config.limits.timeout_ms + self.lease.ttl_ms as u64,
        );
        let give_up = Instant::now() + patience;
        let fingerprint = fingerprint(request);
        loop {
            let begin = self
                .storage
                .journal_begin(
                    send,
                    &fingerprint,
                    &request.recipients,
                    first_batch,
                    &self.lease,
                )
                .await?;
            let Begin::Busy { until_ms } = begin else {
                return Ok(begin);
            };
            if !mode.wait_when_busy || Instant::now() >= give_up {
                return Ok(begin);
            }
            tracing::info!(
                until_ms,
                "another process is sending under this key; waiting for it"
            );
            let wait = Duration::from_millis((until_ms - now_ms()).clamp(20, 1000) as u64);
            tokio::time::sleep(wait).await;
        }
    }

    fn renew_while_running(&self, send: &SendKey) -> Renewal {
        let (storage, lease, send) = (self.storage.clone(), self.lease.clone(), send.clone());
        let every = Duration::from_millis((lease.ttl_ms / 3).max(10) as u64);
        Renewal(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(error) = storage.journal_renew(&send, &lease).await {
                    // The next journal write fails the same way and ends the send.
                    tracing::warn!(error = %crate::error::full_message(&error), "cannot renew the send's lease");
                    return;
                }
            }
        }))
    }

    /// A send's outcome as the journal has it now (for a campaign batch that failed as a whole).
    pub(crate) async fn recorded(
        &self,
        plugin: &Plugin,
        account: &Account,
        key: &str,
    ) -> Result<SendOutcome> {
        let send = SendKey {
            scope: Scope::new(plugin.name(), account.name.clone()),
            key: key.to_owned(),
        };
        self.storage
            .journal_outcome(&send)
            .await?
            .map(|(_, outcome)| outcome)
            .ok_or_else(|| Error::storage(format!("the journal has no send {key:?}")))
    }

    /// Drops a send that had no effect, so it can be sent again.
    pub(crate) async fn forget(&self, plugin: &Plugin, account: &Account, key: &str) -> Result<()> {
        let send = SendKey {
            scope: Scope::new(plugin.name(), account.name.clone()),
            key: key.to_owned(),
        };
        self.storage.journal_forget(&send, &self.lease).await
    }

    /// Lists a recipient's coupons (one adapter call).
    pub(crate) async fn query(
        &self,
        plugin: &Plugin,
        account: &Arc<Account>,
        request: QueryRequest,
    ) -> Result<Vec<Coupon>> {
        self.runtime
            .query(&plugin.context, account, &plugin.component, request)
            .await?
            .map_err(|error| Error::Adapter {
                plugin: plugin.name().to_owned(),
                error,
            })
    }

    /// A query, retried like a send when it fails in a way that may pass.
    async fn query_with_retries(
        &self,
        plugin: &Plugin,
        account: &Arc<Account>,
        query: QueryRequest,
    ) -> Result<Vec<Coupon>> {
        let retry = &plugin.context.config.retry;
        let mut attempt = 1;
        loop {
            match self.query(plugin, account, query.clone()).await {
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
                        plugin
                            .context
                            .limiter
                            .pause(asked.unwrap_or(plan::DEFAULT_BAN));
                    }
                    tokio::time::sleep(plan::backoff(retry, attempt, asked, rand::random())).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// One run of a send: its rows, and the IO that moves them.
struct Run<'a> {
    delivery: &'a Delivery,
    plugin: &'a Plugin,
    account: &'a Arc<Account>,
    request: &'a SendRequest,
    send: &'a SendKey,
    rows: Vec<Row>,
    /// Rows of the first batch `journal_begin` already wrote in flight.
    already_in_flight: usize,
}

impl Run<'_> {
    async fn run(mut self, mode: Mode) -> Result<SendOutcome> {
        let retry = &self.plugin.context.config.retry;
        let budget = Duration::from_millis(retry.budget_ms);
        let idempotent = self.plugin.info.describe.idempotent_send;
        let batch_size = self.plugin.info.describe.max_recipients_per_call as usize;
        let started = Instant::now();

        let mut to_reconcile = plan::resume(&mut self.rows, idempotent);
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
                self.reconcile(&std::mem::take(&mut to_reconcile)).await?;
            }
            // Retries out of attempts or time end here.
            let out_of_time = started.elapsed() >= budget;
            let ended = plan::expire_retries(&mut self.rows, retry.max_attempts, out_of_time);
            self.record(&ended, Vec::new(), false).await?;
            let pending = plan::pending(&self.rows);
            if pending.is_empty() {
                break;
            }
            if pending
                .iter()
                .any(|&i| self.rows[i].state == RowState::Retry)
            {
                round += 1;
                let asked = plan::asked_wait(&self.rows, &pending);
                let wait = plan::backoff(retry, round, asked, rand::random());
                if started.elapsed() + wait >= budget {
                    // No time left for another attempt: the retries end as they stand.
                    let retrying: Vec<usize> = pending
                        .iter()
                        .copied()
                        .filter(|&i| self.rows[i].state == RowState::Retry)
                        .collect();
                    for &i in &retrying {
                        self.rows[i].state = RowState::Failed;
                    }
                    let positions: Vec<u32> =
                        pending.iter().map(|&i| self.rows[i].position).collect();
                    self.record(&positions, Vec::new(), false).await?;
                    continue;
                }
                tracing::debug!(round, wait_ms = wait.as_millis() as u64, "backing off");
                tokio::time::sleep(wait).await;
            }

            for batch in pending.chunks(batch_size) {
                // Only a new send's first batch, which `journal_begin` wrote in flight.
                let written_in_flight = std::mem::take(&mut self.already_in_flight) == batch.len();
                if let Some(pause) = self.plugin.context.limiter.paused_for() {
                    // The platform banned this plugin: wait it out, or leave it to the next round.
                    if started.elapsed() + pause >= budget {
                        let paused = AdapterError::new(
                            ErrorClass::RateLimited,
                            "paused",
                            "the platform paused this plugin past the retry budget",
                        );
                        let positions = plan::fail(&mut self.rows, batch, &paused);
                        self.record(&positions, Vec::new(), false).await?;
                        continue;
                    }
                    tokio::time::sleep(pause).await;
                }
                calls += 1;
                let recipients: Vec<Recipient> = batch
                    .iter()
                    .map(|&i| self.rows[i].recipient.clone())
                    .collect();
                let positions = plan::start_attempt(&mut self.rows, batch);
                if !written_in_flight {
                    self.record(&positions, Vec::new(), false).await?;
                }

                let call = SendCall {
                    account: self.account.name.clone(),
                    coupon: self.request.coupon.clone(),
                    recipients,
                    quantity: self.request.quantity,
                    idempotency_key: self.send.key.clone(),
                    options: self.request.options.clone(),
                };
                let call_started = std::time::Instant::now();
                let plugin = &self.plugin;
                let result = self
                    .delivery
                    .runtime
                    .send(&plugin.context, self.account, &plugin.component, call)
                    .await;
                tracing::debug!(
                    elapsed_ms = call_started.elapsed().as_millis() as u64,
                    "adapter call"
                );
                let answer = match result {
                    Ok(answer) => answer,
                    Err(error) => {
                        tracing::error!(%error, "adapter stopped by the sandbox");
                        let lost =
                            AdapterError::new(ErrorClass::Unknown, "sandbox", error.to_string());
                        plan::lose(&mut self.rows, batch, &lost);
                        self.record(&positions, Vec::new(), false).await?;
                        whole_failures.push(error);
                        continue;
                    }
                };
                if let Err(error) = &answer {
                    tracing::debug!(class = %error.class, code = %error.code, "the call failed as a whole");
                    whole_failures.push(Error::Adapter {
                        plugin: plugin.name().to_owned(),
                        error: error.clone(),
                    });
                }
                let request_ids = answer
                    .as_ref()
                    .map(|a| a.platform_request_ids.clone())
                    .unwrap_or_default();
                let Applied {
                    to_reconcile: ambiguous,
                    ban,
                    retried,
                    strangers,
                } = plan::apply(&mut self.rows, batch, &answer, idempotent);
                to_reconcile.extend(ambiguous);
                for class in retried {
                    crate::metrics::retry(plugin.name(), class);
                }
                if strangers > 0 {
                    tracing::warn!(
                        extra = strangers,
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
                let last = to_reconcile.is_empty() && plan::finished(&self.rows);
                finished = self.record(&positions, request_ids, last).await?;
            }
        }

        let outcome = match finished {
            Some(outcome) => outcome,
            None => self
                .record(&[], Vec::new(), true)
                .await?
                .expect("finishing returns the outcome"),
        };
        let nothing_happened = outcome.issued.is_empty()
            && !whole_failures.is_empty()
            && whole_failures.len() == calls;
        if nothing_happened {
            // Every call was refused as a whole. With no effect anywhere, the key is freed and
            // the error returned; a sandbox kill is returned too (its recipients stay unknown in
            // the journal); otherwise the outcome shows each recipient's state.
            let any_unknown = self.rows.iter().any(|row| row.state == RowState::Unknown);
            let last = whole_failures.pop().expect("checked non-empty");
            if mode.forget_whole_failures && !any_unknown {
                self.delivery
                    .storage
                    .journal_forget(self.send, &self.delivery.lease)
                    .await?;
                return Err(last);
            }
            if matches!(last, Error::Sandbox { .. }) {
                return Err(last);
            }
        }
        Ok(outcome)
    }

    /// Records the rows at `positions` (and the call's request ids) in one write; with `finish`,
    /// ends the send in the same write and returns its outcome.
    async fn record(
        &self,
        positions: &[u32],
        request_ids: Vec<String>,
        finish: bool,
    ) -> Result<Option<SendOutcome>> {
        if positions.is_empty() && request_ids.is_empty() && !finish {
            return Ok(None);
        }
        let updates = positions
            .iter()
            .filter_map(|p| self.rows.iter().find(|row| row.position == *p))
            .map(Row::update)
            .collect();
        self.delivery
            .storage
            .journal_record(
                self.send,
                &self.delivery.lease,
                updates,
                request_ids,
                finish,
            )
            .await
    }

    /// Asks the platform whether ambiguous sends to `indices` applied (see the module docs).
    async fn reconcile(&mut self, indices: &[usize]) -> Result<()> {
        let retry = &self.plugin.context.config.retry;
        tracing::info!(
            recipients = indices.len(),
            "reconciling ambiguous sends through query-coupons"
        );
        tokio::time::sleep(Duration::from_millis(retry.reconcile_after_ms)).await;
        let mut positions = Vec::new();
        for &i in indices {
            let query = QueryRequest {
                recipient: self.rows[i].recipient.clone(),
                options: self.request.options.clone(),
                account: Some(self.account.name.clone()),
            };
            let original = plan::ambiguity(&mut self.rows[i]);
            let found = self
                .delivery
                .query_with_retries(self.plugin, self.account, query)
                .await;
            if let Err(error) = &found {
                tracing::warn!(%error, "cannot reconcile; leaving the recipient unknown");
            }
            let found = found.map_err(|e| e.to_string());
            plan::reconciled(
                &mut self.rows[i],
                &self.request.coupon,
                original,
                found.as_deref().map_err(String::as_str),
                retry.max_attempts,
            );
            positions.push(self.rows[i].position);
        }
        self.record(&positions, Vec::new(), false).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_tell_requests_apart() {
        let one = SendRequest::new("1", vec!["nick:a".parse().unwrap()]);
        let mut other = one.clone();
        other.quantity = 2;
        assert_ne!(fingerprint(&one), fingerprint(&other));
        assert_eq!(fingerprint(&one), fingerprint(&one.clone()));
    }
}
