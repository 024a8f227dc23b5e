//! `coupon-host check ADAPTER.wasm`: holds one adapter component to the contract, with no config
//! and no platform.
//!
//! The component is loaded by the same [`Runtime`] the host runs plugins in (contract version
//! detection, linking, the sandbox's limits), asked to `describe` itself, and the answer is
//! validated. Then its `send-coupon` (and `query-coupons`, when it lists it) runs once per
//! scenario of a scripted platform (`check/script.rs`: 5xx, a refused connection, a timeout,
//! truncated JSON, an HTML page, a 20 MiB body, random bytes, a success that leaves recipients
//! out, …), through the same capabilities a configured plugin gets: `signed-http` with the
//! policy and an auth scheme (`none`: there are no credentials to add), `kv` on a temporary
//! SQLite file, `log`, and `settings` (dummy defaults, overridden or extended by
//! [`CheckOptions::settings`]). Every call is held to the rules a host relies on: every
//! recipient of a send ends exactly once, issued or failed, and no recipient the request did not
//! carry is reported; nothing is issued (and no query answers `Ok`) unless the platform answered
//! with a success; a send that is not idempotent is never failed as `transient` or
//! `rate-limited` after a timeout, since the host would resend it blindly; no trap, no hang past
//! the deadline, and no more HTTP requests than a bound.

mod script;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use self::script::{Observed, SCENARIOS, Scenario, Scripted};
use crate::auth::{Account, SchemeInput};
use crate::config::{Auth, Limits, PluginConfig, Retry};
use crate::error::{Error, Result, SandboxKill};
use crate::limiter::RateLimiter;
use crate::runtime::{LoadedComponent, PluginContext, Runtime, SendAnswer, SendCall};
use crate::types::{AdapterInfo, Coupon, ErrorClass, QueryRequest, Recipient, RecipientKind};

/// The settings every checked adapter gets unless [`CheckOptions::settings`] says otherwise:
/// what the in-tree adapters require, pointing at an origin that does not exist (nothing is
/// sent anywhere). Every setting whose value is an http(s) URL puts its origin on the
/// allowlist, so an adapter that builds its URLs from its settings reaches the scripted
/// platform.
pub const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("gateway", "https://platform.check.invalid/router/rest"),
    ("base_url", "https://platform.check.invalid"),
    ("app_id", "check-app-id"),
];

/// The operations an adapter may list in `describe`.
pub const OPERATIONS: &[&str] = &["send-coupon", "query-coupons"];

/// The most recipients of one kind the check sends in one call.
const RECIPIENTS_PER_KIND: usize = 3;

/// The most recipients the check sends in one call: [`RECIPIENTS_PER_KIND`] of each of the three
/// kinds.
const MAX_RECIPIENTS: usize = RECIPIENTS_PER_KIND * 3;

/// Requests one call may make: two per recipient and coupon (a request and one retry), and two
/// more (a lookup, a token).
fn request_bound(recipients: usize, quantity: u32) -> u32 {
    let recipients = u32::try_from(recipients).unwrap_or(u32::MAX);
    recipients
        .saturating_mul(quantity)
        .saturating_mul(2)
        .saturating_add(2)
}

/// How to check.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CheckOptions {
    /// Settings over [`DEFAULT_SETTINGS`] (`--setting KEY=VALUE`): a key given here replaces
    /// the default, any other is added.
    pub settings: Vec<(String, String)>,
    /// The coupon every send names (digits, which every in-tree platform takes).
    pub coupon: String,
    /// The deadline of one adapter call, in ms (`limits.timeout_ms`; a call past it hangs).
    pub timeout_ms: u64,
    /// Where compiled components are cached; `None`: a temporary folder, removed afterwards.
    pub cache_dir: Option<PathBuf>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            settings: Vec::new(),
            coupon: "10000001".to_owned(),
            timeout_ms: Limits::default().timeout_ms,
            cache_dir: None,
        }
    }
}

/// What `check` found: the component, what it said of itself, and every scenario's verdict.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// Whether the adapter held the contract everywhere: no violation at all.
    pub passed: bool,
    /// The component file.
    pub component: PathBuf,
    /// SHA-256 of the file, lowercase hex (a config's `sha256` pin).
    pub sha256: String,
    /// The contract version it exports.
    pub contract: Contract,
    /// The names of its imports.
    pub imports: Vec<String>,
    /// The names of its exports.
    pub exports: Vec<String>,
    /// What `describe` returned (`None` when the call failed).
    pub describe: Option<AdapterInfo>,
    /// What is wrong with `describe`'s answer, or why the call failed.
    pub describe_violations: Vec<String>,
    /// The settings the adapter was given.
    pub settings: BTreeMap<String, String>,
    /// The recipients of every send (the first of them is the query's).
    pub recipients: Vec<Recipient>,
    /// One verdict per operation and scenario, in the order they ran.
    pub scenarios: Vec<Verdict>,
    /// Every violation, `describe`'s and the scenarios', one line each.
    pub violations: Vec<Violation>,
    /// What makes the check say less than it could, though nothing broke (e.g. the adapter made
    /// no request at all, perhaps for want of a setting).
    pub warnings: Vec<String>,
}

/// The contract version a component exports.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Contract {
    /// The exported interface, e.g. `coupon:adapter/adapter@0.1.0`.
    pub export: String,
    /// Its version, e.g. `0.1.0`.
    pub version: String,
}

/// How one operation fared in one scenario.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Verdict {
    /// `send-coupon` or `query-coupons`.
    pub operation: String,
    /// The scenario's name, e.g. `timeout`.
    pub scenario: String,
    /// What the scripted platform did.
    pub about: String,
    /// HTTP requests the call made.
    pub requests: u32,
    /// What the adapter answered, in a few words.
    pub outcome: String,
    /// Whether it held the contract.
    pub passed: bool,
    /// What it broke, one line each.
    pub violations: Vec<String>,
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Violation {
    /// Where: `describe`, or `OPERATION/SCENARIO` (e.g. `send-coupon/timeout`).
    pub check: String,
    /// What broke.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check, self.message)
    }
}

/// Checks the adapter component at `path`. `Err` when it cannot be checked at all (not a file,
/// a core module, a component that is not an adapter, a host failure); a broken contract is a
/// report with `passed: false`.
pub async fn check(path: &Path, options: &CheckOptions) -> Result<CheckReport> {
    let scratch = tempfile::tempdir()
        .map_err(|e| Error::runtime_from("cannot make a temporary folder for the check", e))?;
    let cache_dir = options
        .cache_dir
        .clone()
        .unwrap_or_else(|| scratch.path().join("cache"));
    let runtime = Runtime::new(2, &cache_dir)?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "adapter".to_owned());
    let component = runtime.load(&name, path, None)?;
    let export = component.adapter.contract().to_owned();
    let contract = Contract {
        version: export
            .rsplit_once('@')
            .map(|(_, version)| version.to_owned())
            .unwrap_or_default(),
        export,
    };

    let settings = settings(options);
    let ids: Vec<String> = (1..=MAX_RECIPIENTS)
        .map(|i| format!("check-收件人-{i}"))
        .collect();
    let transport = Arc::new(Scripted::new(ids.clone()));
    let context = Arc::new(context(&settings, options, scratch.path(), transport.clone()).await?);
    let account = Arc::new(context.config.auth.default_account.clone());

    let mut report = CheckReport {
        passed: false,
        component: path.to_owned(),
        sha256: component.sha256.clone(),
        contract,
        imports: component.imports.clone(),
        exports: component.exports.clone(),
        describe: None,
        describe_violations: Vec::new(),
        settings,
        recipients: Vec::new(),
        scenarios: Vec::new(),
        violations: Vec::new(),
        warnings: Vec::new(),
    };
    let info = match runtime.describe(&context, &component).await {
        Ok(info) => info,
        Err(Error::Sandbox { kind, message, .. }) => {
            report.describe_violations.push(format!(
                "describe failed: {}",
                killed(kind, &message, options)
            ));
            return Ok(report.finish());
        }
        Err(other) => return Err(other),
    };
    report.describe_violations = validate(&info);
    report.describe = Some(info.clone());
    report.recipients = recipients(&info, &ids);
    if report.recipients.is_empty() {
        report
            .warnings
            .push("no scenario ran: describe names no recipient kind to send to".to_owned());
        return Ok(report.finish());
    }

    let calls = Calls {
        runtime: &runtime,
        context: &context,
        account: &account,
        component: &component,
        transport: &transport,
        info: &info,
        options,
    };
    for scenario in SCENARIOS {
        let verdict = calls.send(scenario, &report.recipients).await?;
        report.scenarios.push(verdict);
    }
    if info.operations.iter().any(|o| o == "query-coupons") {
        for scenario in SCENARIOS {
            let verdict = calls.query(scenario, &report.recipients[0]).await?;
            report.scenarios.push(verdict);
        }
    }
    for operation in ["send-coupon", "query-coupons"] {
        if let Some(ok) = report
            .scenarios
            .iter()
            .find(|v| v.operation == operation && v.scenario == "ok")
            && ok.requests == 0
        {
            report.warnings.push(format!(
                "{operation} made no HTTP request when the platform answered, so the scenarios \
                 tested nothing of how it reads answers (it answered: {}); does it need a \
                 setting (--setting KEY=VALUE)?",
                ok.outcome
            ));
        }
    }
    Ok(report.finish())
}

impl CheckReport {
    /// Collects the violations and the verdict.
    fn finish(mut self) -> CheckReport {
        let mut violations: Vec<Violation> = self
            .describe_violations
            .iter()
            .map(|message| Violation {
                check: "describe".to_owned(),
                message: message.clone(),
            })
            .collect();
        for verdict in &self.scenarios {
            for message in &verdict.violations {
                violations.push(Violation {
                    check: format!("{}/{}", verdict.operation, verdict.scenario),
                    message: message.clone(),
                });
            }
        }
        self.passed = violations.is_empty();
        self.violations = violations;
        self
    }
}

/// [`DEFAULT_SETTINGS`] with the caller's over them.
fn settings(options: &CheckOptions) -> BTreeMap<String, String> {
    let mut settings: BTreeMap<String, String> = DEFAULT_SETTINGS
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    settings.extend(options.settings.iter().cloned());
    settings
}

/// The plugin the adapter runs as: default limits (but the deadline, and an HTTP cap one past
/// the bound, so that going past it shows), the origins of its URL settings allowed, no auth,
/// kv on a SQLite file in `scratch`, and the scripted transport.
async fn context(
    settings: &BTreeMap<String, String>,
    options: &CheckOptions,
    scratch: &Path,
    transport: Arc<Scripted>,
) -> Result<PluginContext> {
    let allowed_hosts = settings
        .values()
        .filter_map(|value| url::Url::parse(value).ok())
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
        .filter_map(|url| {
            crate::config::parse_allowed_host(&url.origin().ascii_serialization()).ok()
        })
        .collect();
    let parsed = crate::auth::parse(
        None,
        &SchemeInput {
            env: &|_| None,
            settings,
        },
    )
    .map_err(|e| Error::runtime(e.message))?;
    let limits = Limits {
        timeout_ms: options.timeout_ms,
        max_http_requests: request_bound(MAX_RECIPIENTS, 1) + 1,
        ..Limits::default()
    };
    let config = PluginConfig {
        component: PathBuf::new(),
        sha256: None,
        allowed_hosts,
        allow_private_addresses: false,
        auth: Auth {
            scheme: parsed.scheme,
            default_account: parsed.default_account,
        },
        limits,
        retry: Retry::default(),
        settings: settings.clone(),
    };
    let mut table = toml::Table::new();
    table.insert(
        "path".to_owned(),
        toml::Value::String(scratch.join("check.db").to_string_lossy().into_owned()),
    );
    let storage = crate::store::open(
        "sqlite",
        crate::store::Options {
            table,
            base: scratch.to_owned(),
            secrets: Default::default(),
        },
    )
    .await?;
    Ok(PluginContext::new(
        "check".to_owned(),
        config,
        storage,
        transport,
        Arc::new(RateLimiter::new(None, 1)),
        "check".into(),
    ))
}

/// What is wrong with a `describe` answer.
fn validate(info: &AdapterInfo) -> Vec<String> {
    let mut wrong = Vec::new();
    if info.platform.trim().is_empty() {
        wrong.push("platform is empty".to_owned());
    }
    if info.version.trim().is_empty() {
        wrong.push("version is empty".to_owned());
    }
    if info.max_recipients_per_call == 0 {
        wrong.push("max-recipients-per-call is 0: the host could send nobody".to_owned());
    }
    if info.recipient_kinds.is_empty() {
        wrong.push("recipient-kinds is empty: name at least one kind".to_owned());
    }
    for (i, kind) in info.recipient_kinds.iter().enumerate() {
        if info.recipient_kinds[..i].contains(kind) {
            wrong.push(format!("recipient-kinds lists {} twice", kind.as_str()));
        }
    }
    for (i, operation) in info.operations.iter().enumerate() {
        if !OPERATIONS.contains(&operation.as_str()) {
            wrong.push(format!(
                "operations lists {operation:?}, which is not an operation (known: {})",
                OPERATIONS.join(", ")
            ));
        } else if info.operations[..i].contains(operation) {
            wrong.push(format!("operations lists {operation} twice"));
        }
    }
    if !info.operations.iter().any(|o| o == "send-coupon") {
        wrong.push("operations does not list send-coupon".to_owned());
    }
    // Contract 0.2.0 and later: the auth scheme and the platform's limits.
    if let Some(scheme) = &info.auth_scheme {
        let known: Vec<&str> = std::iter::once("none")
            .chain(crate::auth::SCHEMES.iter().map(|kind| kind.name))
            .collect();
        if !known.contains(&scheme.as_str()) {
            wrong.push(format!(
                "auth-scheme is {scheme:?}, which the host does not know (known: {})",
                known.join(", ")
            ));
        }
    }
    if info.limits.qps == Some(0) {
        wrong.push(
            "limits.qps is 0: the host would send nothing (leave it out when the platform \
             documents no limit)"
                .to_owned(),
        );
    }
    wrong
}

/// The recipients of every send: up to [`RECIPIENTS_PER_KIND`] of each kind the adapter takes,
/// taken in turn, within its `max-recipients-per-call`.
fn recipients(info: &AdapterInfo, ids: &[String]) -> Vec<Recipient> {
    let mut kinds: Vec<RecipientKind> = Vec::new();
    for kind in &info.recipient_kinds {
        if !kinds.contains(kind) {
            kinds.push(*kind);
        }
    }
    if kinds.is_empty() {
        return Vec::new();
    }
    let count =
        (RECIPIENTS_PER_KIND * kinds.len()).min(info.max_recipients_per_call.max(1) as usize);
    ids.iter()
        .take(count)
        .enumerate()
        .map(|(i, id)| {
            let id = id.clone();
            match kinds[i % kinds.len()] {
                RecipientKind::Nick => Recipient::Nick(id),
                RecipientKind::OpenId => Recipient::OpenId(id),
                RecipientKind::CustomerId => Recipient::CustomerId(id),
            }
        })
        .collect()
}

/// What a sandbox kill says about the adapter.
fn killed(kind: SandboxKill, message: &str, options: &CheckOptions) -> String {
    match kind {
        SandboxKill::Deadline => format!(
            "hung: no answer within {} ms (the deadline of one call)",
            options.timeout_ms
        ),
        SandboxKill::Memory => format!("ran out of memory: {message}"),
        SandboxKill::Trap => format!("trapped: {message}"),
        SandboxKill::Contract => format!("broke the contract with the host: {message}"),
    }
}

/// Everything one call needs.
struct Calls<'a> {
    runtime: &'a Runtime,
    context: &'a Arc<PluginContext>,
    account: &'a Arc<Account>,
    component: &'a LoadedComponent,
    transport: &'a Scripted,
    info: &'a AdapterInfo,
    options: &'a CheckOptions,
}

impl Calls<'_> {
    /// The host's cap on one call's requests.
    fn cap(&self) -> u32 {
        self.context.config.limits.max_http_requests
    }

    /// Sends to `recipients` against `scenario`, and judges the answer.
    async fn send(&self, scenario: &'static Scenario, recipients: &[Recipient]) -> Result<Verdict> {
        let call = SendCall {
            account: self.account.name.clone(),
            coupon: self.options.coupon.clone(),
            recipients: recipients.to_vec(),
            quantity: 1,
            idempotency_key: format!("check-{}", scenario.name),
            options: Vec::new(),
        };
        self.transport.begin(scenario);
        let result = self
            .runtime
            .send(self.context, self.account, self.component, call)
            .await;
        let observed = self.transport.end();
        let mut violations = Vec::new();
        let bound = request_bound(recipients.len(), 1);
        let outcome = match result {
            Err(Error::Sandbox { kind, message, .. }) => {
                violations.push(killed(kind, &message, self.options));
                format!("killed: {kind}")
            }
            Err(other) => return Err(other),
            Ok(Err(error)) => {
                if scenario.timed_out {
                    violations.extend(blind_resend(self.info, "the send", error.class));
                }
                format!("error {error}")
            }
            Ok(Ok(answer)) => {
                violations.extend(judge_send(
                    &answer, recipients, observed, scenario, self.info,
                ));
                summary(&answer)
            }
        };
        if observed.requests > bound {
            violations.push(too_many(observed, bound, recipients.len(), self.cap()));
        }
        Ok(verdict(
            "send-coupon",
            scenario,
            observed,
            outcome,
            violations,
        ))
    }

    /// Queries `recipient`'s coupons against `scenario`, and judges the answer.
    async fn query(&self, scenario: &'static Scenario, recipient: &Recipient) -> Result<Verdict> {
        self.transport.begin(scenario);
        let request = QueryRequest {
            account: Some(self.account.name.clone()),
            ..QueryRequest::new(recipient.clone())
        };
        let result = self
            .runtime
            .query(self.context, self.account, self.component, request)
            .await;
        let observed = self.transport.end();
        let mut violations = Vec::new();
        let bound = request_bound(1, 1);
        let outcome = match result {
            Err(Error::Sandbox { kind, message, .. }) => {
                violations.push(killed(kind, &message, self.options));
                format!("killed: {kind}")
            }
            Err(other) => return Err(other),
            Ok(Err(error)) => format!("error {error}"),
            Ok(Ok(coupons)) => {
                violations.extend(judge_query(&coupons, observed));
                format!("{} coupons", coupons.len())
            }
        };
        if observed.requests > bound {
            violations.push(too_many(observed, bound, 1, self.cap()));
        }
        Ok(verdict(
            "query-coupons",
            scenario,
            observed,
            outcome,
            violations,
        ))
    }
}

fn verdict(
    operation: &str,
    scenario: &Scenario,
    observed: Observed,
    outcome: String,
    violations: Vec<String>,
) -> Verdict {
    Verdict {
        operation: operation.to_owned(),
        scenario: scenario.name.to_owned(),
        about: scenario.about.to_owned(),
        requests: observed.requests,
        outcome,
        passed: violations.is_empty(),
        violations,
    }
}

/// `cap` is the host's own cap on requests per call: a call that reached it made more, which the
/// host denied before they reached the transport.
fn too_many(observed: Observed, bound: u32, recipients: usize, cap: u32) -> String {
    format!(
        "made {}{} HTTP requests for {recipients} recipients; at most {bound} are allowed (two \
         per recipient, and two more)",
        if observed.requests >= cap {
            "at least "
        } else {
            ""
        },
        observed.requests
    )
}

/// The rule for sends that are not idempotent: after a timeout, a failure the host resends
/// blindly could issue twice.
fn blind_resend(info: &AdapterInfo, who: &str, class: ErrorClass) -> Option<String> {
    let blind = matches!(class, ErrorClass::Transient | ErrorClass::RateLimited);
    (blind && !info.idempotent_send).then(|| {
        format!(
            "failed {who} as {class} after a timeout, but describe says the send is not \
             idempotent: the host would resend it blindly and could issue twice (use unknown)"
        )
    })
}

/// Every recipient ends exactly once; nobody else is reported; nothing is issued without a
/// success; no blind resend of a send that is not idempotent after a timeout.
fn judge_send(
    answer: &SendAnswer,
    recipients: &[Recipient],
    observed: Observed,
    scenario: &Scenario,
    info: &AdapterInfo,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let reports: Vec<(&Recipient, &str)> = answer
        .issued
        .iter()
        .map(|issued| (&issued.recipient, "issued"))
        .chain(answer.failed.iter().map(|f| (&f.recipient, "failed")))
        .collect();
    for recipient in recipients {
        let ends: Vec<&str> = reports
            .iter()
            .filter(|(reported, _)| *reported == recipient)
            .map(|(_, how)| *how)
            .collect();
        match ends.len() {
            0 => wrong.push(format!(
                "{recipient} was not reported: every recipient of the request must end issued \
                 or failed"
            )),
            1 => {}
            n => wrong.push(format!(
                "{recipient} was reported {n} times ({}): a recipient ends exactly once",
                ends.join(", ")
            )),
        }
    }
    let mut strangers: Vec<&Recipient> = reports
        .iter()
        .map(|(reported, _)| *reported)
        .filter(|reported| !recipients.contains(reported))
        .collect();
    strangers.dedup();
    for stranger in strangers {
        wrong.push(format!(
            "reported {stranger}, which the request did not carry"
        ));
    }
    if !answer.issued.is_empty() && !observed.success {
        wrong.push(format!(
            "reported {} recipients issued, but no request of the call was answered with a 2xx \
             status and a JSON body",
            answer.issued.len()
        ));
    }
    if scenario.timed_out
        && let Some(failure) = answer.failed.iter().find(|f| {
            matches!(
                f.error.class,
                ErrorClass::Transient | ErrorClass::RateLimited
            )
        })
    {
        wrong.extend(blind_resend(
            info,
            &failure.recipient.to_string(),
            failure.error.class,
        ));
    }
    wrong
}

/// A query answers `Ok` only from a success: an empty list made of a failure would tell
/// delivery's reconciliation that a coupon is not there, and the host would send it again.
fn judge_query(coupons: &[Coupon], observed: Observed) -> Vec<String> {
    if observed.requests > 0 && !observed.success {
        vec![format!(
            "answered {} coupons, but no request of the call was answered with a 2xx status and \
             a JSON body: delivery would take that for \"not there\" and send again",
            coupons.len()
        )]
    } else {
        Vec::new()
    }
}

/// "2 issued, 1 failed (transient)".
fn summary(answer: &SendAnswer) -> String {
    let mut classes: Vec<&str> = answer
        .failed
        .iter()
        .map(|f| f.error.class.as_str())
        .collect();
    classes.sort_unstable();
    classes.dedup();
    let mut text = format!(
        "{} issued, {} failed",
        answer.issued.len(),
        answer.failed.len()
    );
    if !classes.is_empty() {
        text.push_str(&format!(" ({})", classes.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{AdapterError, PlatformLimits, RecipientFailure};

    fn info() -> AdapterInfo {
        AdapterInfo {
            platform: "p".into(),
            version: "1".into(),
            max_recipients_per_call: 10,
            idempotent_send: false,
            recipient_kinds: vec![RecipientKind::Nick, RecipientKind::OpenId],
            operations: vec!["send-coupon".into(), "query-coupons".into()],
            auth_scheme: Some("top".into()),
            limits: PlatformLimits { qps: Some(100) },
        }
    }

    #[test]
    fn a_sound_describe_passes_and_each_flaw_is_named() {
        assert!(validate(&info()).is_empty());
        let flawed = AdapterInfo {
            platform: " ".into(),
            max_recipients_per_call: 0,
            recipient_kinds: vec![RecipientKind::Nick, RecipientKind::Nick],
            operations: vec![
                "query-coupons".into(),
                "refund".into(),
                "query-coupons".into(),
            ],
            auth_scheme: Some("oauth9".into()),
            limits: PlatformLimits { qps: Some(0) },
            ..info()
        };
        let wrong = validate(&flawed);
        for expected in [
            "platform is empty",
            "max-recipients-per-call is 0",
            "recipient-kinds lists nick twice",
            "operations lists \"refund\"",
            "operations lists query-coupons twice",
            "operations does not list send-coupon",
            "auth-scheme is \"oauth9\", which the host does not know (known: none, top, douyin)",
            "limits.qps is 0",
        ] {
            assert!(
                wrong.iter().any(|w| w.contains(expected)),
                "{expected}: {wrong:?}"
            );
        }
        assert_eq!(wrong.len(), 8, "{wrong:?}");
        // A contract 0.1.0 adapter says neither.
        let old = AdapterInfo {
            auth_scheme: None,
            limits: PlatformLimits::default(),
            ..info()
        };
        assert!(validate(&old).is_empty());
    }

    #[test]
    fn recipients_take_turns_by_kind_within_the_batch_size() {
        let ids: Vec<String> = (1..=9).map(|i| format!("r{i}")).collect();
        let all = recipients(&info(), &ids);
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], Recipient::Nick("r1".into()));
        assert_eq!(all[1], Recipient::OpenId("r2".into()));
        let one = AdapterInfo {
            max_recipients_per_call: 1,
            ..info()
        };
        assert_eq!(recipients(&one, &ids).len(), 1);
    }

    fn failed(recipient: &Recipient, class: ErrorClass) -> RecipientFailure {
        RecipientFailure {
            recipient: recipient.clone(),
            error: AdapterError::new(class, "c", "m"),
        }
    }

    #[test]
    fn a_send_answer_is_held_to_every_rule() {
        let to = vec![Recipient::Nick("a".into()), Recipient::Nick("b".into())];
        let ok = SCENARIOS.iter().find(|s| s.name == "ok").unwrap();
        let timeout = SCENARIOS.iter().find(|s| s.name == "timeout").unwrap();
        let answered = Observed {
            requests: 1,
            success: true,
        };
        let good = SendAnswer {
            issued: vec![crate::types::IssuedCoupon::new(to[0].clone())],
            failed: vec![failed(&to[1], ErrorClass::Unknown)],
            platform_request_ids: Vec::new(),
        };
        assert!(judge_send(&good, &to, answered, ok, &info()).is_empty());

        let bad = SendAnswer {
            issued: vec![crate::types::IssuedCoupon::new(to[0].clone())],
            failed: vec![
                failed(&to[0], ErrorClass::Unknown),
                failed(&Recipient::Nick("z".into()), ErrorClass::Unknown),
            ],
            platform_request_ids: Vec::new(),
        };
        let wrong = judge_send(&bad, &to, Observed::default(), ok, &info());
        for expected in [
            "nick:a was reported 2 times (issued, failed)",
            "nick:b was not reported",
            "reported nick:z, which the request did not carry",
            "reported 1 recipients issued, but no request",
        ] {
            assert!(
                wrong.iter().any(|w| w.contains(expected)),
                "{expected}: {wrong:?}"
            );
        }

        let blind = SendAnswer {
            failed: vec![
                failed(&to[0], ErrorClass::Transient),
                failed(&to[1], ErrorClass::Unknown),
            ],
            ..SendAnswer::default()
        };
        let wrong = judge_send(&blind, &to, Observed::default(), timeout, &info());
        assert!(
            wrong[0].contains("as transient after a timeout"),
            "{wrong:?}"
        );
        let idempotent = AdapterInfo {
            idempotent_send: true,
            ..info()
        };
        assert!(judge_send(&blind, &to, Observed::default(), timeout, &idempotent).is_empty());
    }

    #[test]
    fn a_query_answers_ok_only_from_a_success() {
        let failed = Observed {
            requests: 1,
            success: false,
        };
        assert!(judge_query(&[], failed)[0].contains("not there"));
        assert!(
            judge_query(
                &[],
                Observed {
                    requests: 1,
                    success: true
                }
            )
            .is_empty()
        );
    }
}
