//! How a command that failed says so: one `error:` line on stderr (a JSON log line with
//! `--log-format json`), and with `--json` one JSON object on stdout as well, so a script reading
//! stdout gets the same shape of answer either way. A send names the idempotency key it ran
//! under, generated or given, so that a failure as a whole can be resent under it.

use std::io::Write;

use serde_json::{Value, json};

use crate::cli::LogFormat;

/// The log format the command was given, for its last words.
static LOG_FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Says which log format the `error:` lines take (text until this is called).
pub(crate) fn init(format: LogFormat) {
    let _ = LOG_FORMAT.set(format);
}

/// A send that failed as a whole, with the idempotency key it ran under.
#[derive(Debug)]
pub(crate) struct SendFailed {
    pub(crate) key: String,
    pub(crate) error: coupon_host::Error,
}

impl std::fmt::Display for SendFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for SendFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

/// Whether the failure is only that the reader of stdout went away (`… | head`): nothing to
/// report, the output was not wanted any more.
pub(crate) fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Reports `error` as the command's last words: on stderr as the log format says, and as a JSON
/// object on stdout when the command was given `--json`.
pub(crate) fn report(error: &anyhow::Error, json: bool) {
    // One line: the chain joined, as scripts read stderr line by line.
    let message = format!("{error:#}").replace('\n', " ");
    let failed = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<SendFailed>());
    let key = failed.map(|failed| failed.key.as_str());
    if json {
        let mut object = json!({
            "class": class(error),
            "code": code(error),
            "message": message,
        });
        if let Some(key) = key {
            object["idempotency_key"] = key.into();
        }
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", json!({ "error": object }));
        let _ = stdout.flush();
    }
    // Sending again under the key helps only when the send itself could not finish (the
    // platform, the sandbox, the storage); a request the host refused would be refused again.
    let resendable = failed.is_some_and(|failed| {
        !matches!(
            failed.error,
            coupon_host::Error::InvalidRequest(_)
                | coupon_host::Error::Config(_)
                | coupon_host::Error::UnknownPlugin(_)
        )
    });
    let text = match key {
        Some(key) if resendable => format!(
            "{message} (idempotency key {key}: send again with --idempotency-key {key}; nobody gets the coupon twice)"
        ),
        Some(key) => format!("{message} (idempotency key {key})"),
        None => message,
    };
    line(&text, key);
}

/// One `error:` line on stderr, or a JSON log line shaped like the log's own lines.
pub(crate) fn line(message: &str, key: Option<&str>) {
    match LOG_FORMAT.get().copied().unwrap_or(LogFormat::Text) {
        LogFormat::Text => eprintln!("error: {message}"),
        LogFormat::Json => {
            let mut fields = json!({ "message": format!("error: {message}") });
            if let Some(key) = key {
                fields["idempotency_key"] = key.into();
            }
            let line = json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "ERROR",
                "fields": fields,
                "target": "coupon_host",
            });
            eprintln!("{line}");
        }
    }
}

fn host_error(error: &anyhow::Error) -> Option<&coupon_host::Error> {
    error.chain().find_map(|cause| {
        cause
            .downcast_ref::<SendFailed>()
            .map(|failed| &failed.error)
            .or_else(|| cause.downcast_ref::<coupon_host::Error>())
    })
}

/// The error's class: the library's name for its kind (an adapter error's platform class,
/// `config`, `invalid-request`, `unknown-plugin`, `campaign-stopped`, …); `invalid-request` for a
/// recipient that does not parse, `error` for anything else.
fn class(error: &anyhow::Error) -> &'static str {
    if let Some(host) = host_error(error) {
        return host.kind();
    }
    if error
        .chain()
        .any(|cause| cause.downcast_ref::<coupon_host::ConfigError>().is_some())
    {
        return "config";
    }
    let bad_input = error.chain().any(|cause| {
        cause
            .downcast_ref::<coupon_host::ParseRecipientError>()
            .is_some()
    });
    if bad_input {
        "invalid-request"
    } else {
        "error"
    }
}

/// The platform's code, when the platform answered one.
fn code(error: &anyhow::Error) -> Value {
    match host_error(error) {
        Some(
            coupon_host::Error::Adapter { error, .. }
            | coupon_host::Error::CampaignStopped { error, .. },
        ) => error.code.clone().into(),
        _ => Value::Null,
    }
}
