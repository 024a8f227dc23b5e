//! `coupon-host campaign run | status | report`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use clap::{Subcommand, ValueEnum};
use coupon_host::Host;
use coupon_host::campaign::{CampaignSpec, CampaignStatus, Progress};

#[derive(Subcommand)]
pub(crate) enum CampaignCommand {
    /// Send a coupon to every recipient of a file; run it again to resume after a crash.
    Run {
        /// The plugin.
        plugin: String,
        /// The platform's coupon reference.
        #[arg(long)]
        coupon: String,
        /// One `KIND:ID` per line, or CSV with a `recipient` column; streamed, any size.
        #[arg(long, value_name = "FILE")]
        recipients: PathBuf,
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
            concurrency,
            quantity,
            id,
            options,
            account,
            detach,
            json,
        } => {
            let mut spec = CampaignSpec::new(plugin, coupon, recipients);
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
            let mut display = ProgressDisplay::new();
            let status = host.campaign(spec, |p| display.update(p)).await;
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
                            .map_err(std::io::Error::other)
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

/// A progress bar on a terminal; a plain line every few seconds otherwise (logs, CI).
struct ProgressDisplay {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_line: Instant,
}

impl ProgressDisplay {
    fn new() -> Self {
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
        ProgressDisplay {
            bar,
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    fn update(&mut self, progress: &Progress) {
        let s = &progress.status;
        let rate =
            progress.finished_this_run as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        let message = format!(
            "issued {} failed {} unknown {} rejected {} skipped {} · {rate:.0}/s",
            s.issued, s.failed, s.unknown, s.rejected, s.skipped
        );
        match &self.bar {
            Some(bar) => {
                bar.set_length(s.total);
                bar.set_position(s.finished());
                bar.set_message(message);
            }
            None => {
                if self.last_line.elapsed() >= std::time::Duration::from_secs(2) {
                    self.last_line = Instant::now();
                    let eta = if rate > 0.0 {
                        format!("{:.0}s", s.pending as f64 / rate)
                    } else {
                        "-".to_owned()
                    };
                    eprintln!(
                        "campaign {}: {}/{} done, {message}, ETA {eta}",
                        s.id,
                        s.finished(),
                        s.total
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
