//! Campaigns: one coupon to every recipient of a file, resumable after any crash.
//!
//! The recipients file is streamed, never loaded whole: one `KIND:ID` per line (blank lines and
//! `#` comments skipped), or a CSV file whose header names a `recipient` column. A reader thread
//! turns it into batches of the adapter's `max-recipients-per-call`, in file order, and the
//! batches are sent `concurrency` at a time through the same journal and retries as
//! [`Host::send`], each under the key `CAMPAIGN/BATCH`.
//!
//! Batches are a pure function of the file: the n-th batch holds the n-th group of accepted
//! recipients (malformed lines are rejected, a recipient listed twice is skipped the second time,
//! both kept for the report). So running the same campaign again after a `kill -9` rebuilds the
//! same batches: the finished ones replay from the journal without a platform call, the one that
//! was in flight resumes exactly where the journal says, and the rest are sent. The campaign id
//! comes from the plugin, coupon, quantity, options and the file's path; its content's SHA-256
//! is recorded, and a file that changed under a campaign is refused rather than sent twice.
//!
//! A batch the platform refuses whole, for a reason every later batch would meet too (credentials,
//! an expired session, the coupon unknown or out of stock), stops the campaign with
//! [`Error::CampaignStopped`]: that batch is forgotten and the rest left unsent, so that after
//! the operator fixes the cause, the same command resumes from there.
//!
//! Memory stays flat however long the file: a bounded channel of batches, counters, and SQLite.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::journal::Detail;
use crate::store::{Store, now_ms, storage};
use crate::types::{Recipient, SendOutcome, SendRequest};
use crate::{Error, Host, Result};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS campaigns (
    id TEXT PRIMARY KEY,
    plugin TEXT NOT NULL,
    coupon TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    options TEXT NOT NULL,
    source TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    total_lines INTEGER NOT NULL,
    batch_size INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS campaign_lines (
    campaign TEXT NOT NULL,
    recipient TEXT NOT NULL,
    line INTEGER NOT NULL,
    batch INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (campaign, recipient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaign_rejects (
    campaign TEXT NOT NULL,
    line INTEGER NOT NULL,
    text TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (campaign, line)
) WITHOUT ROWID;
";

/// What to run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CampaignSpec {
    /// The plugin to send through.
    pub plugin: String,
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
}

impl CampaignSpec {
    /// A campaign of one coupon each, 4 batches at a time.
    pub fn new(plugin: impl Into<String>, coupon: impl Into<String>, recipients: PathBuf) -> Self {
        CampaignSpec {
            plugin: plugin.into(),
            coupon: coupon.into(),
            recipients,
            quantity: 1,
            options: Vec::new(),
            concurrency: 4,
            id: None,
        }
    }
}

/// Where a campaign stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignStatus {
    /// Its id.
    pub id: String,
    /// The plugin.
    pub plugin: String,
    /// The coupon.
    pub coupon: String,
    /// The recipients file.
    pub source: String,
    /// `running` (started, not finished: run it again to resume) or `done`.
    pub state: String,
    /// Recipient lines in the file (blank lines, comments and a CSV header not counted).
    pub total: u64,
    /// Recipients that got the coupon.
    pub issued: u64,
    /// Recipients that did not, with a class.
    pub failed: u64,
    /// Recipients whose fate could not be told (review them).
    pub unknown: u64,
    /// Lines not sent: malformed, a kind the plugin does not take, or a repeat of an earlier
    /// line's recipient.
    pub rejected: u64,
    /// Recipients not finished yet.
    pub pending: u64,
}

impl CampaignStatus {
    /// Lines with a final state.
    pub fn finished(&self) -> u64 {
        self.issued + self.failed + self.unknown + self.rejected
    }
}

/// One line of a campaign report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportLine {
    /// The line number in the recipients file (1-based).
    pub line: u64,
    /// The recipient (`KIND:ID`), or the line's text when it was rejected.
    pub recipient: String,
    /// `issued`, `failed`, `unknown`, `rejected`, `skipped` (a repeat) or `pending`.
    pub state: String,
    /// The issued coupon's id, when the platform said it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coupon_id: Option<String>,
    /// The failure's class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The platform's code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Why, for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
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

/// The longest line read from a recipients file.
const MAX_LINE_BYTES: usize = 4096;

/// How recipients are laid out in the file.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// One `KIND:ID` per line.
    Lines,
    /// CSV with a header; the recipient is in this column.
    Csv { column: usize },
}

/// Calls `each` with every line of the file (its number from 1, its raw bytes, its text
/// trimmed), in order, until it answers `false`. A line over 64 KiB is cut into pieces.
fn each_line(path: &Path, mut each: impl FnMut(u64, &[u8], &str) -> bool) -> Result<()> {
    let unreadable =
        |e: std::io::Error| Error::InvalidRequest(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut number = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 * 16)
            .read_until(b'\n', &mut line)
            .map_err(unreadable)?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        let text = String::from_utf8_lossy(&line);
        if !each(number, &line, text.trim()) {
            return Ok(());
        }
    }
}

/// Neither a recipient nor a header: blank, or a `#` comment.
fn is_blank(text: &str) -> bool {
    text.is_empty() || text.starts_with('#')
}

/// Reads the file once: its SHA-256, its layout and how many recipient lines it has.
fn survey(path: &Path) -> Result<(String, Layout, u64)> {
    let mut hash = Sha256::new();
    let mut layout = None;
    let mut total = 0u64;
    each_line(path, |_, raw, text| {
        hash.update(raw);
        if is_blank(text) {
            return true;
        }
        if layout.is_none() {
            if let Some(column) = csv_header(text) {
                // The header is not a recipient.
                layout = Some(Layout::Csv { column });
                return true;
            }
            layout = Some(Layout::Lines);
        }
        total += 1;
        true
    })?;
    Ok((
        hex::encode(hash.finalize()),
        layout.unwrap_or(Layout::Lines),
        total,
    ))
}

/// A CSV header naming a `recipient` column: that column's index.
fn csv_header(first: &str) -> Option<usize> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(first.as_bytes());
    let record = reader.records().next()?.ok()?;
    record
        .iter()
        .position(|field| field.trim().eq_ignore_ascii_case("recipient"))
}

/// One parsed line.
enum Parsed {
    Recipient(u64, Recipient),
    Rejected(u64, String, String),
}

/// Streams the file's recipient lines in order.
fn read_lines(path: &Path, layout: Layout, mut emit: impl FnMut(Parsed) -> bool) -> Result<()> {
    let mut header_seen = false;
    each_line(path, |number, line, text| {
        if is_blank(text) {
            return true;
        }
        let field = match layout {
            Layout::Lines => Some(text.to_owned()),
            Layout::Csv { .. } if !header_seen => {
                header_seen = true;
                return true;
            }
            Layout::Csv { column } => csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(text.as_bytes())
                .records()
                .next()
                .and_then(|r| r.ok())
                .and_then(|record| record.get(column).map(|f| f.trim().to_owned())),
        };
        let shown: String = text.chars().take(200).collect();
        let parsed = match field {
            None => Parsed::Rejected(number, shown, "no recipient column on this line".into()),
            Some(_) if line.len() > MAX_LINE_BYTES => {
                Parsed::Rejected(number, shown, "line too long".into())
            }
            Some(field) => match field.parse::<Recipient>() {
                Ok(recipient) => Parsed::Recipient(number, recipient),
                Err(e) => Parsed::Rejected(number, shown, e.to_string()),
            },
        };
        emit(parsed)
    })
}

/// One batch to send.
struct Batch {
    index: u64,
    recipients: Vec<Recipient>,
}

fn batch_key(id: &str, index: u64) -> String {
    format!("{id}/{index:08}")
}

fn campaign_id(spec: &CampaignSpec, source: &Path) -> String {
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

/// A campaign checked and registered, ready to run ([`Host::campaign_prepare`]).
pub struct PreparedCampaign {
    host: Host,
    spec: CampaignSpec,
    id: String,
    source: PathBuf,
    layout: Layout,
    total: u64,
}

impl PreparedCampaign {
    /// The campaign's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Host {
    /// Runs a campaign, or resumes it where an earlier run stopped. `on_progress` is called
    /// after every batch. Returns the final status; recipients are in [`Host::campaign_report`].
    pub async fn campaign(
        &self,
        spec: CampaignSpec,
        on_progress: impl FnMut(&Progress),
    ) -> Result<CampaignStatus> {
        self.campaign_prepare(spec).await?.run(on_progress).await
    }

    /// Checks a campaign (plugin, coupon, the file: readable, not empty, unchanged under an
    /// earlier run) and registers it, without sending anything: for callers that must answer
    /// with its id before it runs, as `serve` does.
    pub async fn campaign_prepare(&self, spec: CampaignSpec) -> Result<PreparedCampaign> {
        let plugin = self.plugin(&spec.plugin)?;
        if spec.coupon.trim().is_empty() {
            return Err(Error::InvalidRequest("the coupon is empty".to_owned()));
        }
        if spec.quantity == 0 {
            return Err(Error::InvalidRequest(
                "the quantity must be at least 1".to_owned(),
            ));
        }
        if !(1..=256).contains(&spec.concurrency) {
            return Err(Error::InvalidRequest(
                "the concurrency must be between 1 and 256".to_owned(),
            ));
        }
        let source = std::fs::canonicalize(&spec.recipients).map_err(|e| {
            Error::InvalidRequest(format!("cannot read {}: {e}", spec.recipients.display()))
        })?;
        let id = match &spec.id {
            Some(id) => {
                check_id(id)?;
                id.clone()
            }
            None => campaign_id(&spec, &source),
        };
        let surveyed = {
            let source = source.clone();
            tokio::task::spawn_blocking(move || survey(&source))
                .await
                .map_err(|e| Error::Runtime(format!("reading the recipients failed: {e}")))??
        };
        let (sha256, layout, total) = surveyed;
        if total == 0 {
            return Err(Error::InvalidRequest(format!(
                "{} has no recipients",
                spec.recipients.display()
            )));
        }
        let batch_size = plugin.info.describe.max_recipients_per_call as u64;
        self.inner
            .store
            .campaign_open(&id, &spec, &source, &sha256, total, batch_size)?;
        Ok(PreparedCampaign {
            host: self.clone(),
            spec,
            id,
            source,
            layout,
            total,
        })
    }
}

impl PreparedCampaign {
    /// Runs it (see [`Host::campaign`]).
    pub async fn run(self, mut on_progress: impl FnMut(&Progress)) -> Result<CampaignStatus> {
        let PreparedCampaign {
            host,
            spec,
            id,
            source,
            layout,
            total,
        } = self;
        let this = &host;
        let plugin = this.plugin(&spec.plugin)?;
        let store = this.inner.store.clone();
        let batch_size = plugin.info.describe.max_recipients_per_call as usize;
        let span = tracing::info_span!("campaign", id = %id, plugin = %spec.plugin);
        let _entered = span.enter();
        tracing::info!(total, "campaign running");
        drop(_entered);

        // The reader: file → accepted recipients → batches, through a bounded channel.
        let (sender, mut batches) = tokio::sync::mpsc::channel::<Batch>(spec.concurrency * 2);
        let reader = {
            let store = store.clone();
            let id = id.clone();
            let kinds = plugin.info.describe.recipient_kinds.clone();
            let platform = plugin.info.describe.platform.clone();
            tokio::task::spawn_blocking(move || -> Result<()> {
                let mut accepted = 0u64;
                let mut emitted = 0u64;
                let mut current = Vec::with_capacity(batch_size);
                let mut pending: Vec<(u64, Recipient)> = Vec::with_capacity(batch_size);
                let mut failure = None;
                let flush = |pending: &mut Vec<(u64, Recipient)>,
                             current: &mut Vec<Recipient>,
                             accepted: &mut u64,
                             emitted: &mut u64|
                 -> Result<bool> {
                    let kept = store.campaign_accept(&id, pending, accepted, batch_size as u64)?;
                    pending.clear();
                    for recipient in kept {
                        current.push(recipient);
                        if current.len() == batch_size {
                            let index = *emitted;
                            *emitted += 1;
                            let recipients =
                                std::mem::replace(current, Vec::with_capacity(batch_size));
                            if sender.blocking_send(Batch { index, recipients }).is_err() {
                                return Ok(false);
                            }
                        }
                    }
                    Ok(true)
                };
                read_lines(&source, layout, |parsed| {
                    let step = match parsed {
                        Parsed::Recipient(line, recipient)
                            if !kinds.contains(&recipient.kind()) =>
                        {
                            let reason = format!(
                                "{platform} takes {} recipients, not {}",
                                kinds
                                    .iter()
                                    .map(|k| k.as_str())
                                    .collect::<Vec<_>>()
                                    .join(" or "),
                                recipient.kind().as_str()
                            );
                            store
                                .campaign_reject(
                                    &id,
                                    line,
                                    &recipient.to_string(),
                                    "rejected",
                                    &reason,
                                )
                                .map(|()| true)
                        }
                        Parsed::Recipient(line, recipient) => {
                            pending.push((line, recipient));
                            if pending.len() >= batch_size {
                                flush(&mut pending, &mut current, &mut accepted, &mut emitted)
                            } else {
                                Ok(true)
                            }
                        }
                        Parsed::Rejected(line, text, reason) => store
                            .campaign_reject(&id, line, &text, "rejected", &reason)
                            .map(|()| true),
                    };
                    match step {
                        Ok(go_on) => go_on,
                        Err(e) => {
                            failure = Some(e);
                            false
                        }
                    }
                })?;
                if let Some(e) = failure {
                    return Err(e);
                }
                if !flush(&mut pending, &mut current, &mut accepted, &mut emitted)? {
                    return Ok(());
                }
                if !current.is_empty() {
                    let index = emitted;
                    let _ = sender.blocking_send(Batch {
                        index,
                        recipients: current,
                    });
                }
                Ok(())
            })
        };

        // The senders: `concurrency` batches at a time.
        let mut status = store.campaign_status(&id)?;
        status.pending = total.saturating_sub(status.rejected);
        status.issued = 0;
        status.failed = 0;
        status.unknown = 0;
        let mut progress = Progress {
            status,
            ..Progress::default()
        };
        let mut in_flight = tokio::task::JoinSet::new();
        let mut reading = true;
        let mut first_error = None;
        let mut stopped = None;
        let request = Arc::new(SendRequest {
            coupon: spec.coupon.clone(),
            recipients: Vec::new(),
            quantity: spec.quantity,
            idempotency_key: None,
            options: spec.options.clone(),
        });
        loop {
            while reading
                && in_flight.len() < spec.concurrency
                && first_error.is_none()
                && stopped.is_none()
            {
                match batches.recv().await {
                    Some(batch) => {
                        let host = this.clone();
                        let plugin_name = spec.plugin.clone();
                        let key = batch_key(&id, batch.index);
                        let request = SendRequest {
                            recipients: batch.recipients,
                            ..(*request).clone()
                        };
                        in_flight.spawn(async move {
                            // A batch is a call: after Host::shutdown no new one starts, and
                            // shutdown waits for those running.
                            let _call = host.inner.calls.enter()?;
                            let plugin = host.plugin(&plugin_name)?;
                            let span = tracing::info_span!("batch", key = %key);
                            let result = tracing::Instrument::instrument(
                                host.deliver(&plugin, &request, &key, false),
                                span,
                            )
                            .await;
                            match result {
                                Ok(outcome) if stops_the_campaign(&outcome) => {
                                    // Nothing of it happened: forget it, so a rerun sends it.
                                    plugin
                                        .context
                                        .store
                                        .journal_forget(&plugin_name, &key)
                                        .await?;
                                    Err(Stop::Refused(outcome.failed[0].error.clone()))
                                }
                                Ok(outcome) => Ok(outcome),
                                // Sandbox kills and whole-call failures are in the journal.
                                Err(Error::Sandbox { .. } | Error::Adapter { .. }) => plugin
                                    .context
                                    .store
                                    .journal_outcome(&plugin_name, &key)
                                    .map_err(Stop::from),
                                Err(e) => Err(Stop::from(e)),
                            }
                        });
                    }
                    None => reading = false,
                }
            }
            let Some(done) = in_flight.join_next().await else {
                break;
            };
            match done {
                Ok(Ok(outcome)) => {
                    count(&mut progress, &outcome);
                    on_progress(&progress);
                }
                Ok(Err(Stop::Refused(error))) => {
                    tracing::error!(%error, "the platform refused a whole batch; stopping the campaign");
                    stopped.get_or_insert(error);
                }
                Ok(Err(Stop::Failed(e))) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(Error::Runtime(format!("a batch task failed: {e}")));
                }
            }
        }
        if stopped.is_some() {
            // Read the rest of the file without sending it, so the report lists every line
            // (the unsent ones as pending).
            while batches.recv().await.is_some() {}
        }
        drop(batches);
        let read = reader
            .await
            .map_err(|e| Error::Runtime(format!("reading the recipients failed: {e}")))?;
        if let Some(e) = first_error {
            return Err(e);
        }
        if let Some(error) = stopped {
            let status = store.campaign_status(&id)?;
            return Err(Error::CampaignStopped {
                id,
                error,
                pending: status.pending,
            });
        }
        read?;
        let status = store.campaign_status(&id)?;
        if status.pending == 0 {
            store.campaign_set_state(&id, "done")?;
        }
        let status = store.campaign_status(&id)?;
        tracing::info!(
            issued = status.issued,
            failed = status.failed,
            unknown = status.unknown,
            rejected = status.rejected,
            "campaign finished"
        );
        Ok(status)
    }
}

impl Host {
    /// Keeps an inline list of recipients as a campaign file in the host's data folder (next to
    /// the storage file), named by its content, so that posting the same list again names the
    /// same file, and so the same campaign, which then resumes rather than starts over.
    pub fn campaign_file(&self, recipients: &[Recipient]) -> Result<PathBuf> {
        let mut text = String::new();
        for recipient in recipients {
            text.push_str(&recipient.to_string());
            text.push('\n');
        }
        let name = format!(
            "{}.txt",
            &hex::encode(Sha256::digest(text.as_bytes()))[..32]
        );
        let dir = self.inner.data_dir.join("campaigns");
        let path = dir.join(name);
        if !path.exists() {
            let io =
                |e: std::io::Error| Error::Storage(format!("cannot write {}: {e}", dir.display()));
            std::fs::create_dir_all(&dir).map_err(io)?;
            // A name of its own per write: two requests posting the same list at once must not
            // write (and rename) the same partial file.
            let partial = path.with_extension(format!(
                "tmp{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::write(&partial, text).map_err(io)?;
            std::fs::rename(&partial, &path).map_err(io)?;
        }
        Ok(path)
    }

    /// Where a campaign stands.
    pub fn campaign_status(&self, id: &str) -> Result<CampaignStatus> {
        self.inner.store.campaign_status(id)
    }

    /// Streams a campaign's report, one line per recipient line of the file, in file order.
    pub fn campaign_report(
        &self,
        id: &str,
        mut each: impl FnMut(ReportLine) -> std::io::Result<()>,
    ) -> Result<()> {
        self.inner.store.campaign_report(id, &mut each)
    }
}

/// How a batch task ended other than with an outcome.
enum Stop {
    /// The platform refused the whole batch for a reason the next batches share.
    Refused(crate::AdapterError),
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
    use crate::ErrorClass::*;
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
        if failure.error.class == crate::ErrorClass::Unknown {
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

impl Store {
    fn campaign_open(
        &self,
        id: &str,
        spec: &CampaignSpec,
        source: &Path,
        sha256: &str,
        total: u64,
        batch_size: u64,
    ) -> Result<()> {
        let conn = self.conn();
        let existing: Option<(String, String, String, i64)> = conn
            .query_row(
                "SELECT plugin, coupon, source_sha256, batch_size FROM campaigns WHERE id = ?1",
                params![id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()
            .map_err(storage)?;
        match existing {
            None => {
                let now = now_ms();
                conn.execute(
                    "INSERT INTO campaigns (id, plugin, coupon, quantity, options, source,
                     source_sha256, total_lines, batch_size, state, created_ms, updated_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'running', ?10, ?10)",
                    params![
                        id,
                        spec.plugin,
                        spec.coupon,
                        spec.quantity,
                        serde_json::to_string(&spec.options).expect("strings serialize"),
                        source.to_string_lossy(),
                        sha256,
                        total as i64,
                        batch_size as i64,
                        now
                    ],
                )
                .map_err(storage)?;
                Ok(())
            }
            Some((plugin, coupon, _, _)) if plugin != spec.plugin || coupon != spec.coupon => {
                Err(Error::InvalidRequest(format!(
                    "campaign {id} sends coupon {coupon} through {plugin}; choose another id"
                )))
            }
            Some((_, _, stored, _)) if stored != sha256 => Err(Error::InvalidRequest(format!(
                "the recipients file changed since campaign {id} started (sha256 {stored}, now {sha256}); \
                 restore it to resume, or start a new campaign with another id"
            ))),
            Some((_, _, _, stored)) if stored as u64 != batch_size => {
                Err(Error::InvalidRequest(format!(
                    "campaign {id} was batched by {stored} and the adapter now takes {batch_size} per call; \
                     resume it with the adapter it started with"
                )))
            }
            Some(_) => {
                tracing::info!(campaign = id, "resuming");
                Ok(())
            }
        }
    }

    fn campaign_set_state(&self, id: &str, state: &str) -> Result<()> {
        self.conn()
            .execute(
                "UPDATE campaigns SET state = ?2, updated_ms = ?3 WHERE id = ?1",
                params![id, state, now_ms()],
            )
            .map_err(storage)?;
        Ok(())
    }

    /// Takes recipients in file order, skipping repeats of an earlier line's recipient, and
    /// gives each its batch and position (the same on every run over the same file).
    fn campaign_accept(
        &self,
        id: &str,
        candidates: &[(u64, Recipient)],
        accepted: &mut u64,
        batch_size: u64,
    ) -> Result<Vec<Recipient>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(storage)?;
        let mut kept = Vec::with_capacity(candidates.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO campaign_lines (campaign, recipient, line, batch, position)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(storage)?;
            let mut first = tx
                .prepare_cached(
                    "SELECT line FROM campaign_lines WHERE campaign = ?1 AND recipient = ?2",
                )
                .map_err(storage)?;
            let mut reject = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO campaign_rejects (campaign, line, text, state, reason)
                     VALUES (?1, ?2, ?3, 'skipped', ?4)",
                )
                .map_err(storage)?;
            for (line, recipient) in candidates {
                let text = recipient.to_string();
                let batch = *accepted / batch_size;
                let position = *accepted % batch_size;
                let inserted = insert
                    .execute(params![
                        id,
                        text,
                        *line as i64,
                        batch as i64,
                        position as i64
                    ])
                    .map_err(storage)?;
                let is_first = inserted == 1
                    || first
                        .query_row(params![id, text], |row| row.get::<_, i64>(0))
                        .map_err(storage)?
                        == *line as i64;
                if is_first {
                    *accepted += 1;
                    kept.push(recipient.clone());
                } else {
                    let earlier: i64 = first
                        .query_row(params![id, text], |row| row.get(0))
                        .map_err(storage)?;
                    reject
                        .execute(params![
                            id,
                            *line as i64,
                            text,
                            format!("repeats line {earlier}; sent once")
                        ])
                        .map_err(storage)?;
                }
            }
        }
        tx.commit().map_err(storage)?;
        Ok(kept)
    }

    fn campaign_reject(
        &self,
        id: &str,
        line: u64,
        text: &str,
        state: &str,
        reason: &str,
    ) -> Result<()> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO campaign_rejects (campaign, line, text, state, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, line as i64, text, state, reason],
            )
            .map_err(storage)?;
        Ok(())
    }

    fn campaign_status(&self, id: &str) -> Result<CampaignStatus> {
        let conn = self.conn();
        let mut status = conn
            .query_row(
                "SELECT id, plugin, coupon, source, state, total_lines FROM campaigns WHERE id = ?1",
                params![id],
                |row| {
                    Ok(CampaignStatus {
                        id: row.get(0)?,
                        plugin: row.get(1)?,
                        coupon: row.get(2)?,
                        source: row.get(3)?,
                        state: row.get(4)?,
                        total: row.get::<_, i64>(5)? as u64,
                        ..CampaignStatus::default()
                    })
                },
            )
            .optional()
            .map_err(storage)?
            .ok_or_else(|| Error::UnknownCampaign(id.chars().take(64).collect()))?;
        let (low, high) = (format!("{id}/"), format!("{id}/~"));
        let mut counts = conn
            .prepare_cached(
                "SELECT state, COUNT(*) FROM send_recipients
                 WHERE plugin = ?1 AND key > ?2 AND key < ?3 GROUP BY state",
            )
            .map_err(storage)?;
        let rows = counts
            .query_map(params![status.plugin, low, high], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)? as u64))
            })
            .map_err(storage)?;
        for row in rows {
            let (state, n) = row.map_err(storage)?;
            match state.as_str() {
                "issued" => status.issued += n,
                "failed" => status.failed += n,
                "unknown" => status.unknown += n,
                _ => {}
            }
        }
        status.rejected = conn
            .query_row(
                "SELECT COUNT(*) FROM campaign_rejects WHERE campaign = ?1",
                params![id],
                |row| row.get::<_, i64>(0),
            )
            .map_err(storage)? as u64;
        status.pending = status.total.saturating_sub(status.finished());
        Ok(status)
    }

    fn campaign_report(
        &self,
        id: &str,
        each: &mut dyn FnMut(ReportLine) -> std::io::Result<()>,
    ) -> Result<()> {
        let status = self.campaign_status(id)?;
        let conn = self.conn();
        let mut select = conn
            .prepare(
                "SELECT l.line, l.recipient, r.state, r.detail FROM campaign_lines l
                 LEFT JOIN send_recipients r ON r.plugin = ?2
                     AND r.key = ?1 || '/' || printf('%08d', l.batch) AND r.position = l.position
                 WHERE l.campaign = ?1
                 UNION ALL
                 SELECT line, text, state, reason FROM campaign_rejects WHERE campaign = ?1
                 ORDER BY 1",
            )
            .map_err(storage)?;
        let mut rows = select.query(params![id, status.plugin]).map_err(storage)?;
        while let Some(row) = rows.next().map_err(storage)? {
            let line = row.get::<_, i64>(0).map_err(storage)? as u64;
            let recipient: String = row.get(1).map_err(storage)?;
            let state: Option<String> = row.get(2).map_err(storage)?;
            let detail: Option<String> = row.get(3).map_err(storage)?;
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
                    match detail.and_then(|d| serde_json::from_str::<Detail>(&d).ok()) {
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
            each(report).map_err(|e| Error::Runtime(format!("cannot write the report: {e}")))?;
        }
        Ok(())
    }
}
