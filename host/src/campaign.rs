//! Campaigns: one coupon to every recipient of a file, shared by any number of processes, and
//! resumable after any crash.
//!
//! A campaign is *enqueued*: its file is streamed (never loaded whole; `campaign/file.rs`) into
//! the ledger — every line accepted, rejected (malformed, a kind the plugin does not take) or
//! skipped (a repeat of an earlier line's recipient), each accepted recipient given a batch of
//! the adapter's `max-recipients-per-call` in file order — and each batch is queued once full.
//! Workers claim queued batches under a lease and send each through the same journal and retries
//! as [`Host::send`](crate::Host::send), under the key `CAMPAIGN/BATCH`: `campaign run` works
//! `concurrency` batches at a time until the campaign is done, and so may any other process on
//! the same storage (`coupon-host worker`). A worker that dies leaves its batch leased until the
//! lease expires; then another claims it and the journal resumes it where it stood.
//!
//! Batches are a pure function of the file, so running the same campaign again rebuilds the
//! same batches and keys: finished ones are done, the one in flight resumes from the journal,
//! and the rest are sent. The campaign id comes from the plugin, coupon, quantity, options and
//! the file's path; its content's SHA-256 is recorded, and a file that changed under a campaign is
//! refused rather than sent twice.
//!
//! A batch the platform refuses whole, for a reason every later batch would meet too (credentials,
//! an expired session, the coupon unknown or out of stock), stops the campaign with
//! [`Error::CampaignStopped`]: that batch is forgotten and queued again, no batch is claimed by
//! anyone, and after the operator fixes the cause, the same command resumes from there.

mod file;

pub use self::file::{Encoding, MAX_LINE_BYTES};

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use self::file::{Batcher, Line};
use crate::auth::Account;
use crate::delivery::{Delivery, Mode};
use crate::error::{Error, Result};
use crate::runtime::Plugin;
use crate::store::{Batch, CampaignRecord, Claim, Scope, Storage, now_ms};
pub use crate::types::{CampaignStatus, ReportLine, WorkerStatus};
use crate::types::{ErrorClass, Recipient, SendOutcome, SendRequest};

/// What to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CampaignSpec {
    /// The plugin to send through.
    pub plugin: String,
    /// The account (merchant) to send for; the plugin's only account when `None`.
    pub account: Option<String>,
    /// The coupon, as for [`SendRequest::coupon`].
    pub coupon: String,
    /// The recipients file.
    pub recipients: PathBuf,
    /// Coupons per recipient.
    pub quantity: u32,
    /// Per-call overrides of the plugin's settings.
    pub options: Vec<(String, String)>,
    /// Batches in flight at once (default 4).
    pub concurrency: usize,
    /// The campaign id; derived from the rest when `None`.
    pub id: Option<String>,
    /// The recipients file's text encoding (default UTF-8).
    pub encoding: Encoding,
    /// The largest recipients file read, in bytes (default [`MAX_FILE_BYTES`]).
    pub max_file_bytes: u64,
    /// The recipients file, already opened and checked (by `serve`, beneath its campaigns
    /// folder); `recipients` only names it then.
    pub(crate) opened: Option<Arc<std::fs::File>>,
}

/// The largest recipients file a campaign reads by default (4 GiB, some 100 million lines).
pub const MAX_FILE_BYTES: u64 = 4 << 30;

impl CampaignSpec {
    /// A campaign of one coupon each, 4 batches at a time.
    pub fn new(plugin: impl Into<String>, coupon: impl Into<String>, recipients: PathBuf) -> Self {
        CampaignSpec {
            plugin: plugin.into(),
            account: None,
            coupon: coupon.into(),
            recipients,
            quantity: 1,
            options: Vec::new(),
            concurrency: 4,
            id: None,
            encoding: Encoding::Utf8,
            max_file_bytes: MAX_FILE_BYTES,
            opened: None,
        }
    }

    /// Checks what can be checked without reading anything: the coupon, the quantity, the
    /// concurrency and a given id. A start is checked this way before anything is written.
    pub fn check(&self) -> Result<()> {
        if self.coupon.trim().is_empty() {
            return Err(Error::InvalidRequest("the coupon is empty".to_owned()));
        }
        if self.quantity == 0 {
            return Err(Error::InvalidRequest(
                "the quantity must be at least 1".to_owned(),
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(Error::InvalidRequest(
                "the concurrency must be between 1 and 256".to_owned(),
            ));
        }
        if let Some(id) = &self.id {
            check_id(id)?;
        }
        Ok(())
    }
}

/// Progress, reported after every batch.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The status so far (`pending` counts what is left).
    pub status: CampaignStatus,
    /// Recipients finished by this run (not by earlier runs), for rates.
    pub finished_this_run: u64,
    /// Batches replayed from the journal (finished by an earlier run).
    pub replayed_batches: u64,
}

/// What a worker did before it stopped ([`Host::work`](crate::Host::work)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkReport {
    /// Batches it finished.
    pub batches: u64,
    /// Recipients of those batches that got the coupon.
    pub issued: u64,
    /// Recipients of those batches that did not (a class each, or unknown).
    pub failed: u64,
}

/// What a campaign needs of the host that runs it: its plugins (as they are now: a reload may
/// swap them between batches), its accounts, and its gate for calls (a batch is a call:
/// after shutdown no new one starts).
#[async_trait::async_trait]
pub(crate) trait Plugins: Send + Sync + 'static {
    fn plugin(&self, name: &str) -> Result<Arc<Plugin>>;
    async fn account(&self, plugin: &Plugin, name: Option<&str>) -> Result<Arc<Account>>;
    fn enter(&self) -> Result<Box<dyn Send + 'static>>;
}

/// Runs campaigns: what they use of the host.
pub(crate) struct Campaigns {
    pub(crate) plugins: Arc<dyn Plugins>,
    pub(crate) delivery: Arc<Delivery>,
    pub(crate) storage: Storage,
    /// Where inline recipient lists are kept as files.
    pub(crate) data_dir: PathBuf,
    /// This process's heartbeat: says which campaigns it works, and tells who works one.
    pub(crate) heartbeat: Arc<crate::heartbeat::Heartbeat>,
}

/// A campaign checked and registered, ready to run ([`Host::campaign_prepare`](crate::Host::campaign_prepare)).
pub struct PreparedCampaign {
    campaigns: Arc<Campaigns>,
    spec: CampaignSpec,
    record: CampaignRecord,
    /// The host's copy of the file, as it was read when the campaign was checked: what is
    /// enqueued, whatever happens to the operator's file meanwhile.
    copy: std::fs::File,
    layout: file::Layout,
}

impl PreparedCampaign {
    /// The campaign's id.
    pub fn id(&self) -> &str {
        &self.record.id
    }
}

/// How long a worker with nothing to claim waits before asking again (a batch of another
/// process, or one whose lease expires, comes without a signal).
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Recipients accepted per ledger write while enqueuing.
const ENQUEUE_CHUNK: usize = 256;

impl Campaigns {
    /// Checks a campaign (plugin, coupon, the file: readable, not empty, unchanged under an
    /// earlier run) and registers it, without sending anything.
    pub(crate) async fn prepare(self: &Arc<Self>, spec: CampaignSpec) -> Result<PreparedCampaign> {
        spec.check()?;
        let plugin = self.plugins.plugin(&spec.plugin)?;
        let account = self
            .plugins
            .account(&plugin, spec.account.as_deref())
            .await?;
        let cannot_read = |e: std::io::Error| {
            Error::InvalidRequest(format!("cannot read {}: {e}", spec.recipients.display()))
        };
        // Opened once: checked on the descriptor, then read whole (through the cap) into the
        // host's copy, which is all that is read after.
        let opened = match &spec.opened {
            Some(opened) => opened.clone(),
            None => Arc::new(
                crate::open::open_regular(&spec.recipients, true)
                    .map_err(cannot_read)?
                    .0,
            ),
        };
        let source = crate::open::path_of(&opened)
            .or_else(|| std::fs::canonicalize(&spec.recipients).ok())
            .unwrap_or_else(|| spec.recipients.clone());
        let id = match &spec.id {
            Some(id) => id.clone(),
            None => campaign_id(&spec, &account.name, &source),
        };
        let copy = tempfile::tempfile_in(&self.data_dir)
            .or_else(|_| tempfile::tempfile())
            .map_err(|e| Error::storage_from("cannot make the campaign's copy of its file", e))?;
        let (encoding, cap) = (spec.encoding, spec.max_file_bytes);
        let (survey, copy) = tokio::task::spawn_blocking(move || {
            let mut copy = copy;
            let survey =
                file::survey(crate::open::Capped::new(&*opened, cap), &mut copy, encoding)?;
            copy.seek(SeekFrom::Start(0))?;
            Ok::<_, std::io::Error>((survey, copy))
        })
        .await
        .map_err(|e| Error::runtime_from("reading the recipients failed", e))?
        .map_err(cannot_read)?;
        let shown = spec.recipients.display().to_string();
        survey.check_encoding(&shown, spec.encoding)?;
        let file::Survey {
            sha256,
            layout,
            total,
            ..
        } = survey;
        if total == 0 {
            return Err(Error::InvalidRequest(format!("{shown} has no recipients")));
        }
        let record = CampaignRecord {
            id: id.clone(),
            scope: Scope::new(spec.plugin.clone(), account.name.clone()),
            coupon: spec.coupon.clone(),
            quantity: spec.quantity,
            options: spec.options.clone(),
            source: source.to_string_lossy().into_owned(),
            source_sha256: sha256,
            total_lines: total,
            batch_size: plugin.info.describe.max_recipients_per_call as u64,
        };
        if let Some(existing) = self.storage.campaign_open(&record).await? {
            check_resumable(&existing, &record)?;
            tracing::info!(campaign = %id, "resuming");
        }
        Ok(PreparedCampaign {
            campaigns: self.clone(),
            spec,
            record,
            copy,
            layout,
        })
    }

    /// Keeps an inline list of recipients as a campaign file in the host's data folder, named by
    /// its content, so that posting the same list again names the same file, and so the same
    /// campaign, which then resumes rather than starts over.
    /// Returns the file, and whether this call wrote it.
    pub(crate) fn file(&self, recipients: &[Recipient]) -> Result<(PathBuf, bool)> {
        let mut text = String::new();
        for recipient in recipients {
            text.push_str(&recipient.to_string());
            text.push('\n');
        }
        let name = format!(
            "{}.txt",
            &hex::encode(Sha256::digest(text.as_bytes()))[..32]
        );
        let path = self.data_dir.join("campaigns").join(name);
        if path.exists() {
            return Ok((path, false));
        }
        crate::text::write_atomically(&path, text.as_bytes())
            .map_err(|e| Error::storage_from(format!("cannot write {}", path.display()), e))?;
        Ok((path, true))
    }

    /// Where a campaign stands, with the workers seen on it in the last minute.
    pub(crate) async fn status(&self, id: &str) -> Result<CampaignStatus> {
        let mut status = self.storage.campaign_status(id).await?;
        // `running` in the ledger means only "not finished": it runs if a live process works it.
        if status.state == "running" && !self.heartbeat.is_worked(id).await? {
            status.state = "waiting".to_owned();
        }
        status.workers = self.storage.campaign_workers(id, now_ms() - 60_000).await?;
        Ok(status)
    }

    /// Streams a campaign's report, one line per recipient line of the file, in file order.
    pub(crate) async fn report(
        &self,
        id: &str,
        mut each: impl FnMut(ReportLine) -> std::io::Result<()>,
    ) -> Result<()> {
        let mut after = 0;
        loop {
            let page = self.storage.campaign_report(id, after, 1000).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.line;
            for line in page {
                each(line).map_err(|e| Error::runtime_from("cannot write the report", e))?;
            }
        }
    }

    /// Works one claimed batch: sends it through the journal, releases it, and says what came
    /// of it.
    async fn work_batch(
        &self,
        batch: &Batch,
        holder: &str,
    ) -> std::result::Result<SendOutcome, Stop> {
        let record = self
            .storage
            .campaign_get(&batch.campaign)
            .await?
            .ok_or_else(|| Error::UnknownCampaign(batch.campaign.clone()))?;
        let key = crate::store::ledger::batch_key(&record.id, batch.index);
        let _call = match self.plugins.enter() {
            Ok(call) => call,
            Err(e) => {
                // Shutting down: the batch goes back unsent, for whoever works the campaign next.
                let _ = self
                    .storage
                    .campaign_release(&batch.campaign, batch.index, holder, false, 0)
                    .await;
                return Err(Stop::Failed(e));
            }
        };
        let plugin = self.plugins.plugin(&record.scope.plugin)?;
        let account = match self
            .plugins
            .account(&plugin, Some(&record.scope.account))
            .await
        {
            Ok(account) => account,
            // The account needs re-authorization: the campaign stops, its batch unsent.
            Err(Error::Adapter { error, .. }) => {
                self.storage
                    .campaign_release(&batch.campaign, batch.index, holder, false, 0)
                    .await?;
                let why = serde_json::to_string(&error).expect("an error serializes");
                self.storage.campaign_stop(&record.id, Some(&why)).await?;
                return Err(Stop::Refused(error));
            }
            Err(e) => return Err(Stop::Failed(e)),
        };
        let request = SendRequest {
            coupon: record.coupon.clone(),
            recipients: batch.recipients.clone(),
            quantity: record.quantity,
            idempotency_key: Some(key.clone()),
            options: record.options.clone(),
            account: Some(record.scope.account.clone()),
        };
        let _renewal = self.renew_while_working(batch, holder);
        let span = tracing::info_span!("batch", key = %key);
        let mode = Mode {
            forget_whole_failures: false,
            wait_when_busy: false,
        };
        let result = tracing::Instrument::instrument(
            self.delivery.send(&plugin, &account, &request, &key, mode),
            span,
        )
        .await;
        let release = |done| {
            self.storage.campaign_release(
                &batch.campaign,
                batch.index,
                holder,
                done,
                batch.recipients.len() as u64,
            )
        };
        let outcome = match result {
            Ok(outcome) if stops_the_campaign(&outcome) => {
                // Nothing of it happened: forget it, so a rerun sends it.
                self.delivery.forget(&plugin, &account, &key).await?;
                release(false).await?;
                let mut error = outcome.failed[0].error.clone();
                if matches!(
                    error.class,
                    ErrorClass::Unauthorized | ErrorClass::AuthExpired
                ) && let Err(Error::Adapter {
                    error: account_error,
                    ..
                }) = self
                    .plugins
                    .account(&plugin, Some(&record.scope.account))
                    .await
                {
                    // The refusal made the account need re-authorization: say that, and how.
                    error = account_error;
                }
                let why = serde_json::to_string(&error).expect("an error serializes");
                self.storage.campaign_stop(&record.id, Some(&why)).await?;
                return Err(Stop::Refused(error));
            }
            Ok(outcome) => outcome,
            Err(Error::InProgress { .. }) => {
                // Another process sends this batch (its batch lease lapsed while it worked):
                // give the batch back; it is done once that process ends it.
                tokio::time::sleep(IDLE_POLL).await;
                release(false).await?;
                return Err(Stop::Skipped);
            }
            // Sandbox kills and whole-call failures are in the journal.
            Err(Error::Sandbox { .. } | Error::Adapter { .. }) => {
                self.delivery.recorded(&plugin, &account, &key).await?
            }
            Err(e) => {
                let _ = release(false).await;
                return Err(Stop::Failed(e));
            }
        };
        release(true).await?;
        Ok(outcome)
    }

    /// Starts `concurrency` tasks that claim and work batches — of `campaign`, or of any running
    /// campaign when `None` — until `halt`, and report each batch on `results`. With a campaign,
    /// they end when it is done or stopped; without, they wait for work (woken by `queued`, or
    /// every [`IDLE_POLL`]).
    fn spawn_workers(
        self: &Arc<Self>,
        campaign: Option<String>,
        concurrency: usize,
        queued: Arc<tokio::sync::Notify>,
        halt: Arc<AtomicBool>,
        results: tokio::sync::mpsc::UnboundedSender<std::result::Result<SendOutcome, Stop>>,
    ) -> tokio::task::JoinSet<()> {
        let holder = self.delivery.lease().holder.clone();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency {
            let (campaigns, campaign, holder) = (self.clone(), campaign.clone(), holder.clone());
            let (queued, halt, results) = (queued.clone(), halt.clone(), results.clone());
            workers.spawn(async move {
                let ttl = campaigns.delivery.lease().ttl_ms;
                while !halt.load(Ordering::SeqCst) {
                    let waiting = queued.notified();
                    let claim = match campaigns
                        .storage
                        .campaign_claim(campaign.as_deref(), &holder, now_ms() + ttl)
                        .await
                    {
                        Ok(claim) => claim,
                        Err(e) if campaign.is_none() => {
                            // A worker outlives a storage hiccup: it says so and tries again.
                            tracing::warn!(error = %crate::error::full_message(&e), "cannot claim a batch");
                            tokio::time::sleep(IDLE_POLL).await;
                            continue;
                        }
                        Err(e) => {
                            let _ = results.send(Err(Stop::Failed(e)));
                            return;
                        }
                    };
                    match claim {
                        Claim::Batch(batch) => {
                            let result = campaigns.work_batch(&batch, &holder).await;
                            let closing = matches!(result, Err(Stop::Failed(Error::ShuttingDown)));
                            let failed = matches!(result, Err(Stop::Failed(_)));
                            let _ = results.send(result);
                            if closing {
                                // The host takes no new call: no batch is claimed any more.
                                return;
                            }
                            if failed {
                                // Given back at once (if it is still ours), not left leased
                                // until the lease runs out; and a pause before the next claim.
                                let _ = campaigns
                                    .storage
                                    .campaign_release(&batch.campaign, batch.index, &holder, false, 0)
                                    .await;
                                tokio::time::sleep(IDLE_POLL).await;
                            }
                        }
                        Claim::Wait => {
                            let _ = tokio::time::timeout(IDLE_POLL, waiting).await;
                        }
                        Claim::Done => return,
                        Claim::Stopped(reason) => {
                            let _ = results.send(Err(Stop::Stopped(reason)));
                            return;
                        }
                    }
                }
            });
        }
        workers
    }

    /// Works batches of every running campaign on the storage, `concurrency` at a time, until
    /// `stop` resolves; then lets the batches in flight finish and returns what it did.
    pub(crate) async fn work_until(
        self: &Arc<Self>,
        concurrency: usize,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<WorkReport> {
        if !(1..=256).contains(&concurrency) {
            return Err(Error::InvalidRequest(
                "the concurrency must be between 1 and 256".to_owned(),
            ));
        }
        let halt = Arc::new(AtomicBool::new(false));
        let (results, mut done) = tokio::sync::mpsc::unbounded_channel();
        let mut workers = self.spawn_workers(
            None,
            concurrency,
            Arc::new(tokio::sync::Notify::new()),
            halt.clone(),
            results,
        );
        let _working = self.heartbeat.works_every_campaign();
        tracing::info!(concurrency, holder = %self.delivery.lease().holder, "worker running");
        let mut report = WorkReport::default();
        let mut stop = std::pin::pin!(stop);
        let mut stopping = false;
        loop {
            tokio::select! {
                () = &mut stop, if !stopping => {
                    tracing::info!("worker stopping: finishing the batches in flight");
                    stopping = true;
                    halt.store(true, Ordering::SeqCst);
                }
                result = done.recv() => match result {
                    None => break,
                    Some(Ok(outcome)) => {
                        report.batches += 1;
                        report.issued += outcome.issued.len() as u64;
                        report.failed += outcome.failed.len() as u64;
                    }
                    Some(Err(Stop::Refused(error))) => {
                        tracing::error!(%error, "the platform refused a whole batch; its campaign is stopped");
                    }
                    Some(Err(Stop::Failed(Error::ShuttingDown))) => {
                        tracing::info!("worker stopping: the host is shutting down");
                    }
                    Some(Err(Stop::Failed(error))) => {
                        tracing::error!(error = %crate::error::full_message(&error), "a batch failed; it will be claimed again");
                    }
                    Some(Err(Stop::Skipped | Stop::Stopped(_))) => {}
                },
            }
        }
        while workers.join_next().await.is_some() {}
        Ok(report)
    }

    fn renew_while_working(&self, batch: &Batch, holder: &str) -> Renewal {
        let storage = self.storage.clone();
        let (id, index, holder) = (batch.campaign.clone(), batch.index, holder.to_owned());
        let ttl = self.delivery.lease().ttl_ms;
        let every = Duration::from_millis((ttl / 3).max(10) as u64);
        Renewal(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if !matches!(
                    storage
                        .campaign_renew(&id, index, &holder, now_ms() + ttl)
                        .await,
                    Ok(true)
                ) {
                    tracing::warn!(campaign = %id, batch = index, "lost the batch's lease");
                    return;
                }
            }
        }))
    }
}

/// Renews a batch's lease while it is worked; stops when dropped.
struct Renewal(tokio::task::JoinHandle<()>);

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Refuses to resume a campaign registered under the same id with something else.
fn check_resumable(existing: &CampaignRecord, record: &CampaignRecord) -> Result<()> {
    let id = &record.id;
    if existing.scope != record.scope || existing.coupon != record.coupon {
        return Err(Error::InvalidRequest(format!(
            "campaign {id} sends coupon {} through {}; choose another id",
            existing.coupon, existing.scope.plugin
        )));
    }
    if existing.source_sha256 != record.source_sha256 {
        return Err(Error::InvalidRequest(format!(
            "the recipients file changed since campaign {id} started (sha256 {}, now {}); \
             restore it to resume, or start a new campaign with another id",
            existing.source_sha256, record.source_sha256
        )));
    }
    if existing.batch_size != record.batch_size {
        return Err(Error::InvalidRequest(format!(
            "campaign {id} was batched by {} and the adapter now takes {} per call; \
             resume it with the adapter it started with",
            existing.batch_size, record.batch_size
        )));
    }
    Ok(())
}

impl PreparedCampaign {
    /// Enqueues it whole (every line of its file into the ledger, every batch queued) without
    /// sending anything, for workers to work (`coupon-host worker`, or another `campaign run`).
    pub async fn enqueue(self) -> Result<String> {
        let PreparedCampaign {
            campaigns,
            spec,
            record,
            copy,
            layout,
        } = self;
        let plugin = campaigns.plugins.plugin(&spec.plugin)?;
        campaigns.storage.campaign_stop(&record.id, None).await?;
        enqueue(
            campaigns.storage.clone(),
            record.clone(),
            copy,
            (layout, spec.encoding),
            plugin,
            Arc::new(tokio::sync::Notify::new()),
        )
        .await?;
        Ok(record.id)
    }

    /// Runs it (see [`Host::campaign`](crate::Host::campaign)): enqueues its file and works its
    /// batches, `concurrency` at a time, until it is done or stopped. `on_progress` is called
    /// after every batch this run worked.
    pub async fn run(self, mut on_progress: impl FnMut(&Progress)) -> Result<CampaignStatus> {
        let PreparedCampaign {
            campaigns,
            spec,
            record,
            copy,
            layout,
        } = self;
        let id = record.id.clone();
        let span = tracing::info_span!("campaign", id = %id, plugin = %spec.plugin);
        let _working = campaigns.heartbeat.works(&id);
        let total = record.total_lines;
        span.in_scope(|| tracing::info!(total, "campaign running"));
        let plugin = campaigns.plugins.plugin(&spec.plugin)?;
        // A rerun starts a stopped campaign again.
        campaigns.storage.campaign_stop(&id, None).await?;

        let queued = Arc::new(tokio::sync::Notify::new());
        let halt = Arc::new(AtomicBool::new(false));
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let enqueuer = {
            let read = enqueue(
                campaigns.storage.clone(),
                record.clone(),
                copy,
                (layout, spec.encoding),
                plugin,
                queued.clone(),
            );
            let (halt, done_tx) = (halt.clone(), done_tx.clone());
            tokio::spawn(async move {
                if let Err(error) = read.await {
                    // Workers waiting for batches that will never come must stop.
                    halt.store(true, Ordering::SeqCst);
                    let _ = done_tx.send(Err(Stop::Failed(error)));
                }
            })
        };

        let mut progress = Progress {
            status: campaigns.storage.campaign_status(&id).await?,
            ..Progress::default()
        };
        progress.status.pending =
            total.saturating_sub(progress.status.rejected + progress.status.skipped);
        progress.status.issued = 0;
        progress.status.failed = 0;
        progress.status.unknown = 0;

        let mut workers = campaigns.spawn_workers(
            Some(id.clone()),
            spec.concurrency,
            queued.clone(),
            halt.clone(),
            done_tx.clone(),
        );
        drop(done_tx);

        let mut first_error = None;
        let mut stopped = None;
        while let Some(result) = done_rx.recv().await {
            match result {
                Ok(outcome) => {
                    count(&mut progress, &outcome);
                    on_progress(&progress);
                }
                Err(Stop::Skipped) => {}
                Err(Stop::Refused(error)) => {
                    span.in_scope(|| tracing::error!(%error, "the platform refused a whole batch; stopping the campaign"));
                    stopped.get_or_insert(error);
                    halt.store(true, Ordering::SeqCst);
                }
                Err(Stop::Stopped(why)) => {
                    // Another process stopped it, with the platform's error.
                    stopped.get_or_insert_with(|| {
                        serde_json::from_str(&why).unwrap_or_else(|_| {
                            crate::types::AdapterError::new(ErrorClass::Unknown, "stopped", why)
                        })
                    });
                    halt.store(true, Ordering::SeqCst);
                }
                Err(Stop::Failed(e)) => {
                    first_error.get_or_insert(e);
                    halt.store(true, Ordering::SeqCst);
                }
            }
        }
        while let Some(joined) = workers.join_next().await {
            if let Err(e) = joined {
                first_error.get_or_insert(Error::runtime_from("a batch task failed", e));
            }
        }
        // The file is read to its end even when the campaign stopped, so the report lists
        // every line (the unsent ones as pending).
        enqueuer
            .await
            .map_err(|e| Error::runtime_from("reading the recipients failed", e))?;
        if let Some(e) = first_error {
            return Err(e);
        }
        if let Some(error) = stopped {
            let status = campaigns.storage.campaign_status(&id).await?;
            return Err(Error::CampaignStopped {
                id,
                error,
                pending: status.pending,
            });
        }
        let status = campaigns.status(&id).await?;
        span.in_scope(|| {
            tracing::info!(
                issued = status.issued,
                failed = status.failed,
                unknown = status.unknown,
                rejected = status.rejected,
                skipped = status.skipped,
                "campaign finished"
            )
        });
        Ok(status)
    }
}

/// Streams the file (the host's copy) into the ledger: rejects, accepted recipients, and each
/// batch queued once full (the last one at the end), waking the workers; then marks the
/// campaign enqueued.
async fn enqueue(
    storage: Storage,
    record: CampaignRecord,
    copy: std::fs::File,
    (layout, encoding): (file::Layout, Encoding),
    plugin: Arc<Plugin>,
    queued: Arc<tokio::sync::Notify>,
) -> Result<()> {
    let id = record.id.as_str();
    let (sender, mut lines) = tokio::sync::mpsc::channel::<Vec<Line>>(4);
    let reader = {
        let kinds = plugin.info.describe.recipient_kinds.clone();
        let platform = plugin.info.describe.platform.clone();
        tokio::task::spawn_blocking(move || {
            let mut chunk = Vec::with_capacity(ENQUEUE_CHUNK);
            let mut open = true;
            file::read_lines(copy, layout, encoding, |parsed| {
                chunk.push(file::classify(parsed, &kinds, &platform));
                if chunk.len() >= ENQUEUE_CHUNK {
                    open = sender.blocking_send(std::mem::take(&mut chunk)).is_ok();
                }
                open
            })
            .map_err(|e| Error::runtime_from("cannot read the campaign's copy of its file", e))?;
            if !chunk.is_empty() {
                let _ = sender.blocking_send(chunk);
            }
            Ok::<(), Error>(())
        })
    };
    let mut batcher = Batcher::new(record.batch_size);
    while let Some(chunk) = lines.recv().await {
        let mut candidates = Vec::new();
        let mut rejects = Vec::new();
        for line in chunk {
            match line {
                Line::Candidate(line, recipient) => candidates.push((line, recipient)),
                Line::Rejected(reject) => rejects.push(reject),
            }
        }
        storage.campaign_reject(id, rejects).await?;
        let kept = storage
            .campaign_accept(id, candidates, batcher.accepted(), record.batch_size)
            .await?;
        for index in batcher.accept(kept.len() as u64) {
            storage.campaign_queue(id, index).await?;
            queued.notify_waiters();
        }
    }
    reader
        .await
        .map_err(|e| Error::runtime_from("reading the recipients failed", e))??;
    if let Some(last) = batcher.finish() {
        storage.campaign_queue(id, last).await?;
    }
    storage.campaign_enqueued(id).await?;
    queued.notify_waiters();
    Ok(())
}

/// How a batch ended other than with an outcome.
enum Stop {
    /// The platform refused the whole batch for a reason the next batches share.
    Refused(crate::types::AdapterError),
    /// The campaign was stopped (by another process): why.
    Stopped(String),
    /// Another process is sending the batch: given back.
    Skipped,
    /// The host failed (storage, …).
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Stop::Failed(error)
    }
}

/// A batch that issued nothing and failed only for reasons every later batch would meet too:
/// credentials, the session, the coupon (unknown, expired, out of stock) or the request itself.
fn stops_the_campaign(outcome: &SendOutcome) -> bool {
    use crate::types::ErrorClass::*;
    !outcome.replayed
        && outcome.issued.is_empty()
        && !outcome.failed.is_empty()
        && outcome.failed.iter().all(|failure| {
            matches!(
                failure.error.class,
                Unauthorized | AuthExpired | CouponUnavailable | InvalidRequest
            )
        })
}

fn count(progress: &mut Progress, outcome: &SendOutcome) {
    let finished = (outcome.issued.len() + outcome.failed.len()) as u64;
    let status = &mut progress.status;
    status.issued += outcome.issued.len() as u64;
    for failure in &outcome.failed {
        if failure.error.class == ErrorClass::Unknown {
            status.unknown += 1;
        } else {
            status.failed += 1;
        }
    }
    status.pending = status.pending.saturating_sub(finished);
    if outcome.replayed {
        progress.replayed_batches += 1;
    } else {
        progress.finished_this_run += finished;
    }
}

fn campaign_id(spec: &CampaignSpec, account: &str, source: &Path) -> String {
    let mut hash = Sha256::new();
    for part in [spec.plugin.as_str(), spec.coupon.as_str()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update(spec.quantity.to_le_bytes());
    for (k, v) in &spec.options {
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(v.as_bytes());
        hash.update([0]);
    }
    hash.update(source.to_string_lossy().as_bytes());
    // UTF-8 adds nothing, so campaigns started before encodings keep their ids.
    if spec.encoding != Encoding::Utf8 {
        hash.update([2]);
        hash.update(spec.encoding.as_str().as_bytes());
    }
    // The default account adds nothing, so campaigns started before accounts keep their ids.
    if account != crate::store::DEFAULT_ACCOUNT {
        hash.update([1]);
        hash.update(account.as_bytes());
    }
    format!("c-{}", &hex::encode(hash.finalize())[..16])
}

/// Validates a campaign id given by the caller.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(Error::InvalidRequest(format!(
            "campaign id {id:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AdapterError, IssuedCoupon, RecipientFailure};

    fn outcome(issued: usize, failed: &[ErrorClass], replayed: bool) -> SendOutcome {
        SendOutcome {
            issued: (0..issued)
                .map(|i| IssuedCoupon::new(Recipient::Nick(format!("i{i}"))))
                .collect(),
            failed: failed
                .iter()
                .enumerate()
                .map(|(i, class)| RecipientFailure {
                    recipient: Recipient::Nick(format!("f{i}")),
                    error: AdapterError::new(*class, "c", "m"),
                })
                .collect(),
            replayed,
            ..SendOutcome::default()
        }
    }

    #[test]
    fn only_a_batch_refused_whole_for_a_shared_reason_stops_the_campaign() {
        use ErrorClass::*;
        assert!(stops_the_campaign(&outcome(
            0,
            &[CouponUnavailable, CouponUnavailable],
            false
        )));
        assert!(stops_the_campaign(&outcome(0, &[Unauthorized], false)));
        assert!(!stops_the_campaign(&outcome(
            1,
            &[CouponUnavailable],
            false
        )));
        assert!(!stops_the_campaign(&outcome(
            0,
            &[CouponUnavailable, RecipientLimit],
            false
        )));
        assert!(!stops_the_campaign(&outcome(0, &[CouponUnavailable], true)));
        assert!(!stops_the_campaign(&outcome(0, &[], false)));
    }

    #[test]
    fn progress_counts_this_run_apart_from_replays() {
        let mut progress = Progress::default();
        progress.status.pending = 10;
        count(
            &mut progress,
            &outcome(
                2,
                &[ErrorClass::Unknown, ErrorClass::RecipientInvalid],
                false,
            ),
        );
        count(&mut progress, &outcome(3, &[], true));
        let status = &progress.status;
        assert_eq!(
            (status.issued, status.failed, status.unknown, status.pending),
            (5, 1, 1, 3)
        );
        assert_eq!(
            (progress.finished_this_run, progress.replayed_batches),
            (4, 1)
        );
    }

    #[test]
    fn ids_are_stable_and_the_default_account_adds_nothing() {
        let spec = CampaignSpec::new("taobao", "48552", PathBuf::from("/l.txt"));
        let id = campaign_id(&spec, crate::store::DEFAULT_ACCOUNT, Path::new("/l.txt"));
        assert_eq!(id, campaign_id(&spec, "default", Path::new("/l.txt")));
        assert_ne!(id, campaign_id(&spec, "shop-b", Path::new("/l.txt")));
        assert!(check_id(&id).is_ok());
        assert!(check_id("a/b").is_err());
        assert!(check_id("").is_err());
    }
}
