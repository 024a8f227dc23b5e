//! `coupon-host campaign run | status | report`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::{Subcommand, ValueEnum};
use coupon_host::Host;
use coupon_host::campaign::{CampaignSpec, CampaignStatus, Encoding, Progress};

#[derive(Subcommand)]
pub(crate) enum CampaignCommand {
    /// Send a coupon to every recipient of a file; run it again to resume after a crash.
    Run {
        /// The plugin.
        plugin: String,
        /// The platform's coupon reference.
        #[arg(long)]
        coupon: String,
        /// One `KIND:ID` per line, or CSV with a `recipient` column; streamed, any size. Lines
        /// of at most 4096 bytes; a longer one is rejected whole.
        #[arg(long, value_name = "FILE")]
        recipients: PathBuf,
        /// The file's text encoding: utf-8 (strict: a line that is not UTF-8 is rejected, a
        /// file mostly not UTF-8 is refused), gb18030 or gbk (Chinese spreadsheet exports).
        #[arg(long, value_name = "ENCODING", default_value = "utf-8", value_parser = parse_encoding)]
        encoding: Encoding,
        /// Batches in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Coupons per recipient.
        #[arg(long, default_value_t = 1)]
        quantity: u32,
        /// Name the campaign (default: derived from plugin, coupon, quantity, options and the
        /// file's path, so the same command resumes the same campaign).
        #[arg(long)]
        id: Option<String>,
        /// Override a plugin setting for this campaign, `KEY=VALUE`; repeatable.
        #[arg(long = "option", value_name = "KEY=VALUE", value_parser = crate::cli::parse_option)]
        options: Vec<(String, String)>,
        /// The account (merchant) to send for; needed when the plugin has several.
        #[arg(long)]
        account: Option<String>,
        /// Only enqueue it (every line into the storage, every batch queued) and print its id:
        /// `coupon-host worker` processes, or this same command without `--detach`, send it.
        #[arg(long)]
        detach: bool,
        /// Print the final status (with `--detach`: `{"id":…}`) as one JSON object (progress
        /// still goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Where a campaign stands.
    Status {
        /// The campaign id (printed by `campaign run`).
        id: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Every recipient line's final state, in file order.
    Report {
        /// The campaign id.
        id: String,
        /// CSV (with a header) or JSON Lines.
        #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
        format: ReportFormat,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

impl CampaignCommand {
    /// Whether it was given `--json` (its failure is then a JSON object too).
    pub(crate) fn json(&self) -> bool {
        match self {
            CampaignCommand::Run { json, .. } | CampaignCommand::Status { json, .. } => *json,
            CampaignCommand::Report { .. } => false,
        }
    }
}

fn parse_encoding(name: &str) -> Result<Encoding, String> {
    name.parse()
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReportFormat {
    Csv,
    Json,
}

pub(crate) async fn run(host: &Host, command: CampaignCommand) -> anyhow::Result<()> {
    match command {
        CampaignCommand::Run {
            plugin,
            coupon,
            recipients,
            encoding,
            concurrency,
            quantity,
            id,
            options,
            account,
            detach,
            json,
        } => {
            let mut spec = CampaignSpec::new(plugin, coupon, recipients);
            spec.encoding = encoding;
            spec.account = account;
            spec.concurrency = concurrency;
            spec.quantity = quantity;
            spec.id = id;
            spec.options = options;
            if detach {
                let id = host.campaign_enqueue(spec).await?;
                if json {
                    crate::cli::print_json(&serde_json::json!({ "id": id }))?;
                } else {
                    println!("{id}");
                }
                return Ok(());
            }
            let prepared = host.campaign_prepare(spec).await?;
            let (mut display, watch) = ProgressDisplay::start(host, prepared.id()).await;
            let status = prepared.run(|p| display.update(p)).await;
            watch.abort();
            display.finish();
            let status = status?;
            if json {
                crate::cli::print_json(&status)?;
            } else {
                print_status(&status);
            }
        }
        CampaignCommand::Status { id, json } => {
            let status = host.campaign_status(&id).await?;
            if json {
                crate::cli::print_json(&status)?;
            } else {
                print_status(&status);
            }
        }
        CampaignCommand::Report { id, format, output } => {
            // An unknown id fails before anything is written: no header, no file.
            host.campaign_status(&id).await?;
            let out: Box<dyn Write> = match &output {
                Some(path) => Box::new(
                    std::fs::File::create(path)
                        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?,
                ),
                None => Box::new(std::io::stdout().lock()),
            };
            let out = std::io::BufWriter::new(out);
            match format {
                ReportFormat::Csv => {
                    let mut writer = csv::Writer::from_writer(out);
                    writer.write_record([
                        "line",
                        "recipient",
                        "state",
                        "coupon_id",
                        "class",
                        "code",
                        "message",
                    ])?;
                    host.campaign_report(&id, |line| {
                        let text = |field: &Option<String>| field.clone().unwrap_or_default();
                        writer
                            .write_record([
                                line.line.to_string(),
                                line.recipient,
                                line.state,
                                text(&line.coupon_id),
                                text(&line.class),
                                text(&line.code),
                                text(&line.message),
                            ])
                            .map_err(io_error)
                    })
                    .await?;
                    writer.flush()?;
                }
                ReportFormat::Json => {
                    let mut out = out;
                    host.campaign_report(&id, |line| {
                        serde_json::to_writer(&mut out, &line)?;
                        out.write_all(b"\n")
                    })
                    .await?;
                    out.flush()?;
                }
            }
        }
    }
    Ok(())
}

/// A CSV writer's error as the I/O error it is, when it is one (a closed pipe must stay
/// recognisable, to end quietly).
fn io_error(error: csv::Error) -> std::io::Error {
    if error.is_io_error()
        && let csv::ErrorKind::Io(io) = error.into_kind()
    {
        return io;
    }
    std::io::Error::other("cannot write the report as CSV")
}

fn print_status(status: &CampaignStatus) {
    println!(
        "campaign {}\t{}\t{} of {} done: {} issued, {} failed, {} unknown, {} rejected, {} skipped, {} pending",
        status.id,
        status.state,
        status.finished(),
        status.total,
        status.issued,
        status.failed,
        status.unknown,
        status.rejected,
        status.skipped,
        status.pending
    );
    if let Some(error) = &status.error {
        println!(
            "stopped: {} {}: {}; fix the cause and run it again to resume",
            error.class, error.code, error.message
        );
    }
}

/// How often the whole campaign's status is read while it runs, and a plain progress line
/// printed when stderr is not a terminal.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A progress bar on a terminal; a plain line every few seconds otherwise (logs, CI). It shows
/// the whole campaign (read from the storage, so the work of earlier runs and of other processes
/// on it counts) and what this run did, apart.
struct ProgressDisplay {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: Instant,
    /// The whole campaign, as last read from the storage.
    whole: std::sync::Arc<std::sync::Mutex<Option<CampaignStatus>>>,
    /// Lines finished when this run started.
    finished_before: u64,
}

impl ProgressDisplay {
    /// Reads where the campaign stands (saying so when this run joins work already done) and
    /// starts reading it again every [`PROGRESS_EVERY`] until the returned task is aborted.
    async fn start(host: &Host, id: &str) -> (Self, tokio::task::JoinHandle<()>) {
        let before = host.campaign_status(id).await.ok();
        let finished_before = before.as_ref().map_or(0, CampaignStatus::finished);
        if let Some(before) = &before
            && finished_before > 0
        {
            eprintln!(
                "campaign {id}: {finished_before} of {} done before this run (by earlier runs or other processes); progress counts the whole campaign, and this run apart",
                before.total
            );
        }
        let whole = std::sync::Arc::new(std::sync::Mutex::new(before));
        let watch = {
            let (host, id, whole) = (host.clone(), id.to_owned(), whole.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(PROGRESS_EVERY).await;
                    if let Ok(status) = host.campaign_status(&id).await {
                        *whole.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
                    }
                }
            })
        };
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} {msg} [{elapsed_precise}, ETA {eta}]",
                )
                .expect("a valid template"),
            );
            bar
        });
        let display = ProgressDisplay {
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
            whole,
            finished_before,
        };
        (display, watch)
    }

    fn update(&mut self, progress: &Progress) {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let own = progress.finished_this_run;
        let own_rate = own as f64 / elapsed;
        // The whole as last read; before the first read, this run's own count on top of what
        // was done before it.
        let whole = self
            .whole
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| progress.status.clone());
        let finished = whole.finished().max(self.finished_before + own);
        let pending = whole.total.saturating_sub(finished);
        // Everyone's pace (other processes' too), for the ETA.
        let rate = (finished.saturating_sub(self.finished_before) as f64 / elapsed).max(own_rate);
        let message = format!(
            "issued {} failed {} unknown {} rejected {} skipped {} · this run {own} · {own_rate:.0}/s",
            whole.issued, whole.failed, whole.unknown, whole.rejected, whole.skipped
        );
        match &self.bar {
            Some(bar) => {
                bar.set_length(whole.total);
                bar.set_position(finished);
                bar.set_message(message);
            }
            None => {
                if self.last_line.elapsed() >= PROGRESS_EVERY {
                    self.last_line = Instant::now();
                    let eta = if rate > 0.0 {
                        format!("{:.0}s", pending as f64 / rate)
                    } else {
                        "-".to_owned()
                    };
                    eprintln!(
                        "campaign {}: {finished}/{} done, {message}, ETA {eta}",
                        whole.id, whole.total
                    );
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
