//! The TOML config: parsed into typed, validated values, with errors that name file, line and key.
//!
//! Secrets are never written in the file: `auth` names environment variables, and loading reads
//! them into [`Secret`]s. Every table rejects keys it does not know.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

pub use crate::error::ConfigError;
pub use crate::secret::EnvLookup;

/// The whole host config.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Where state lives.
    pub storage: StorageConfig,
    /// Engine-wide settings.
    pub runtime: RuntimeConfig,
    /// The plugins, by name.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Accounts kept by the host.
    pub accounts: AccountsConfig,
    /// `[serve]` as written: checked by [`Config::serve`] only, so that a server's settings
    /// (a `campaigns_dir` that exists on the server alone) do not stop other commands.
    serve: RawServe,
    /// Where the config came from, to name its file and line in errors found after it parsed.
    pub(crate) origin: Origin,
}

/// A config's file, folder and text: errors the host finds at start (a wrong master key, a
/// component that does not match its pin, a `limits.qps` above the platform's) name the line.
#[derive(Clone)]
pub(crate) struct Origin {
    file: PathBuf,
    base: PathBuf,
    text: Arc<str>,
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Origin").field("file", &self.file).finish()
    }
}

impl Origin {
    fn locator(&self) -> Locator<'_> {
        Locator::new(&self.text, &self.file)
    }

    /// Names the file and line of an error about what the config says that was found without
    /// them (a [`ConfigError`] with no file; a pin mismatch with no place): other errors pass.
    pub(crate) fn locate(&self, error: crate::Error) -> crate::Error {
        match error {
            crate::Error::Config(e) if e.file.as_os_str().is_empty() => {
                let path: Vec<&str> = e.key.split('.').collect();
                crate::Error::Config(self.locator().at(&path, e.message))
            }
            crate::Error::Integrity {
                plugin,
                path,
                expected,
                actual,
                pinned_at: None,
            } => {
                let at = self
                    .locator()
                    .at(&["plugins", plugin.as_str(), "sha256"], "");
                crate::Error::Integrity {
                    pinned_at: Some(at.place()),
                    plugin,
                    path,
                    expected,
                    actual,
                }
            }
            other => other,
        }
    }
}

/// `[serve]`: who may call the HTTP API, which files a campaign may name, and how long the
/// server waits for what. Only `coupon-host serve` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServeConfig {
    /// API keys by name (`[serve.keys.NAME]`). Empty: the API is open, which `serve` allows
    /// only on a loopback address (or with `--insecure-no-auth`).
    pub keys: BTreeMap<String, ApiKeyConfig>,
    /// The folder `recipients_file` of `POST /v1/campaigns` is resolved in (absolute,
    /// canonical); `None` refuses `recipients_file`.
    pub campaigns_dir: Option<PathBuf>,
    /// How long a SIGTERM waits for requests, calls and campaigns before cancelling them.
    pub drain_timeout_s: u64,
    /// How long a client may take to send a request's head, and then its body.
    pub read_timeout_s: u64,
    /// Campaigns the server runs at once; one more is answered `429`.
    pub max_campaigns: u32,
    /// The largest `recipients_file`, in MiB.
    pub max_campaign_file_mib: u32,
    /// Whether the server also works every unfinished campaign on the storage, as
    /// `coupon-host worker` does (so a campaign cut off by a drain resumes on restart).
    pub work_campaigns: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            keys: BTreeMap::new(),
            campaigns_dir: None,
            drain_timeout_s: 30,
            read_timeout_s: 10,
            max_campaigns: 16,
            max_campaign_file_mib: 256,
            work_campaigns: true,
        }
    }
}

/// `[serve.keys.NAME]`: one API key, stored as its digest.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiKeyConfig {
    /// The SHA-256 of the key.
    pub sha256: [u8; 32],
    /// What the key may do.
    pub scopes: std::collections::BTreeSet<Scope>,
}

impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The digest is not the key, but nothing gains from printing it either.
        f.debug_struct("ApiKeyConfig")
            .field("sha256", &"…")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// What an API key may do on the HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Scope {
    /// `POST /v1/plugins/{name}/send`.
    Send,
    /// `POST /v1/plugins/{name}/query`.
    Query,
    /// `POST /v1/campaigns`, `GET /v1/campaigns/{id}`.
    Campaigns,
    /// Administration of merchants' accounts (`/v1/plugins/{name}/accounts…`).
    Accounts,
    /// `GET /metrics`.
    Metrics,
}

impl Scope {
    /// The scope's name in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Send => "send",
            Scope::Query => "query",
            Scope::Campaigns => "campaigns",
            Scope::Accounts => "accounts",
            Scope::Metrics => "metrics",
        }
    }
}

/// `[accounts]`
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct AccountsConfig {
    /// The variable that held the master key, and its value (64 hex digits), when
    /// `master_key_env` is set.
    pub(crate) master_key: Option<(String, crate::secret::Secret)>,
}

impl fmt::Debug for AccountsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountsConfig")
            .field(
                "master_key_env",
                &self.master_key.as_ref().map(|(var, _)| var),
            )
            .finish()
    }
}

/// `[storage]`: which backend keeps the host's state, and its settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StorageConfig {
    /// The backend's name (`sqlite`, the default).
    pub backend: String,
    /// How long a process's lease on a send or a campaign batch lasts past its last renewal
    /// (`lease_ms`, default 30 000): a process that dies holds its work this long before
    /// another takes it over.
    pub lease_ms: u64,
    /// The `[storage]` table (checked by the backend), with paths resolved against the config
    /// file's folder.
    pub(crate) options: crate::store::Options,
}

/// `[runtime]`
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Where compiled components are cached (absolute).
    pub cache_dir: PathBuf,
    /// How many adapter instances may be live at once (pooling allocator slots).
    pub max_instances: u32,
}

/// `[plugins.NAME]`
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PluginConfig {
    /// The component file (absolute).
    pub component: PathBuf,
    /// Optional pin: SHA-256 of the component, lowercase hex.
    pub sha256: Option<String>,
    /// Where the plugin may send requests.
    pub allowed_hosts: Vec<AllowedHost>,
    /// Whether a host *name* on the allowlist may resolve to a loopback or private address
    /// (never to a cloud metadata address). IP literals on the allowlist are reached regardless.
    pub allow_private_addresses: bool,
    /// How the host authenticates the plugin's requests.
    pub auth: Auth,
    /// Sandbox and network limits.
    pub limits: Limits,
    /// Retries of failed sends.
    pub retry: Retry,
    /// Non-secret strings the adapter may read.
    pub settings: BTreeMap<String, String>,
}

/// One `allowed_hosts` entry: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// `http` or `https`.
    pub scheme: String,
    /// Lowercase host name or IP literal.
    pub host: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

impl AllowedHost {
    /// Whether `url` points at this origin.
    pub fn matches(&self, url: &url::Url) -> bool {
        url.scheme() == self.scheme
            && url.host_str().map(|h| h.to_ascii_lowercase()).as_deref() == Some(&*self.host)
            && url.port_or_known_default() == Some(self.port)
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// How the host authenticates a plugin's outgoing requests: its `auth = { scheme = "…", … }`
/// table, parsed by the scheme (see `auth.rs`), and the account its own credentials stand for.
#[derive(Clone)]
pub struct Auth {
    pub(crate) scheme: std::sync::Arc<dyn crate::auth::Scheme>,
    pub(crate) default_account: crate::auth::Account,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets: the scheme's name says enough.
        f.debug_struct("Auth")
            .field("scheme", &self.scheme.name())
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// The scheme's name: `top`, `douyin`, or `none`.
    pub fn scheme(&self) -> &'static str {
        self.scheme.name()
    }
}

/// `limits = { … }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one adapter call, in milliseconds (default 10 000).
    pub timeout_ms: u64,
    /// Linear-memory cap of one adapter instance, in MiB (default 64).
    pub memory_mib: u32,
    /// Deadline of one outgoing HTTP request, in milliseconds (default 5 000).
    pub http_timeout_ms: u64,
    /// Largest HTTP response body handed to the adapter, in KiB (default 4 096).
    pub max_response_kib: u32,
    /// Most HTTP requests one adapter call may make (default 64).
    pub max_http_requests: u32,
    /// Most live keys in the plugin's kv namespace (default 10 000).
    pub kv_max_keys: u64,
    /// Platform requests per second allowed for this plugin and credential, shared by every call
    /// in the process (`None`: unlimited). No window of a second ever holds more.
    pub qps: Option<u32>,
    /// Most requests sent back to back before the pace of `qps` applies (default: a tenth of
    /// `qps`, at least 1).
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 10_000,
            memory_mib: 64,
            http_timeout_ms: 5_000,
            max_response_kib: 4_096,
            max_http_requests: 64,
            kv_max_keys: 10_000,
            qps: None,
            burst: 1,
        }
    }
}

/// `retry = { … }`: how a send retries failures that may succeed later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Most attempts per recipient, the first included (default 5; 1 turns retries off).
    pub max_attempts: u32,
    /// Time after which no new attempt starts, from the start of a send, in ms (default 60 000).
    pub budget_ms: u64,
    /// First backoff, doubled per attempt, with full jitter, in ms (default 200).
    pub base_backoff_ms: u64,
    /// Longest backoff, in ms (default 10 000). A platform ban's own duration overrides it.
    pub max_backoff_ms: u64,
    /// How long to wait after an ambiguous failure of a non-idempotent send before asking the
    /// platform (through `query-coupons`) whether it applied, in ms (default 2 000).
    pub reconcile_after_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 5,
            budget_ms: 60_000,
            base_backoff_ms: 200,
            max_backoff_ms: 10_000,
            reconcile_after_ms: 2_000,
        }
    }
}

/// The largest `memory_mib` a plugin may ask for (one pooling-allocator slot).
pub const MAX_MEMORY_MIB: u32 = 1024;

// The file's shape. Kept private: the public types above are what is left after validation.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// `backend`, and the rest for the backend to check.
    #[serde(default)]
    storage: toml::Table,
    #[serde(default)]
    runtime: RawRuntime,
    #[serde(default)]
    plugins: BTreeMap<String, RawPlugin>,
    #[serde(default)]
    accounts: RawAccounts,
    #[serde(default)]
    serve: RawServe,
}

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct RawServe {
    #[serde(default)]
    keys: BTreeMap<String, RawApiKey>,
    campaigns_dir: Option<PathBuf>,
    drain_timeout_s: Option<u64>,
    read_timeout_s: Option<u64>,
    max_campaigns: Option<u32>,
    max_campaign_file_mib: Option<u32>,
    work_campaigns: Option<bool>,
}

#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
struct RawApiKey {
    sha256: String,
    scopes: Vec<Scope>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAccounts {
    master_key_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    cache_dir: Option<PathBuf>,
    max_instances: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    component: PathBuf,
    sha256: Option<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    allow_private_addresses: bool,
    /// Parsed by the scheme it names (see `auth.rs`).
    auth: Option<toml::Table>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    retry: RawRetry,
    #[serde(default)]
    settings: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    timeout_ms: Option<u64>,
    memory_mib: Option<u32>,
    http_timeout_ms: Option<u64>,
    max_response_kib: Option<u32>,
    max_http_requests: Option<u32>,
    kv_max_keys: Option<u64>,
    qps: Option<u32>,
    burst: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    budget_ms: Option<u64>,
    base_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    reconcile_after_ms: Option<u64>,
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Loads and validates a config file, reading secrets from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with_env(path, &process_env)
    }

    /// Like [`Config::load`], with secrets from `env`.
    pub fn load_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            line: None,
            key: String::new(),
            message: format!("cannot read the config file: {e}"),
        })?;
        let base = path
            .parent()
            .map(Path::to_owned)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, path, &base, env)
    }

    /// Parses config text. `file` names it in errors; relative paths resolve against `base`.
    pub fn parse(
        text: &str,
        file: &Path,
        base: &Path,
        env: EnvLookup<'_>,
    ) -> Result<Config, ConfigError> {
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
        let locator = Locator::new(text, file);
        let raw: RawConfig = toml::from_str(text).map_err(|e| locator.toml_error(&e))?;

        let storage = {
            let mut table = raw.storage.clone();
            let backend = match table.remove("backend") {
                None => "sqlite".to_owned(),
                Some(toml::Value::String(name)) => name,
                Some(_) => {
                    return Err(locator.at(&["storage", "backend"], "must be a string"));
                }
            };
            let Some(kind) = crate::store::backend(&backend) else {
                let known: Vec<_> = crate::store::BACKENDS
                    .iter()
                    .map(|kind| format!("{:?}", kind.name))
                    .collect();
                return Err(locator.at(
                    &["storage", "backend"],
                    format!(
                        "unknown backend {backend:?}: use one of {}",
                        known.join(", ")
                    ),
                ));
            };
            let lease_ms = match table.remove("lease_ms") {
                None => 30_000,
                Some(toml::Value::Integer(ms)) if (1_000..=3_600_000).contains(&ms) => ms as u64,
                Some(_) => {
                    return Err(locator.at(
                        &["storage", "lease_ms"],
                        "must be a whole number of milliseconds between 1000 and 3600000",
                    ));
                }
            };
            (kind.check)(&table).map_err(|(key, why)| locator.at(&["storage", &key], why))?;
            // A key ending in `_env` names the environment variable that holds a secret (the
            // PostgreSQL URL, password included), as in `[plugins.*.auth]`: it is read now, so a
            // variable not set fails the load, and the backend gets the value as a `Secret`.
            let mut secrets = BTreeMap::new();
            for (key, value) in &table {
                if let (true, Some(var)) = (key.ends_with("_env"), value.as_str()) {
                    let secret = crate::secret::read_secret(var, env)
                        .map_err(|why| locator.at(&["storage", key], why))?;
                    secrets.insert(key.clone(), secret);
                }
            }
            StorageConfig {
                backend,
                lease_ms,
                options: crate::store::Options {
                    table,
                    base: base.clone(),
                    secrets,
                },
            }
        };
        let runtime = RuntimeConfig {
            cache_dir: base.join(
                raw.runtime
                    .cache_dir
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(".coupon-host/cache")),
            ),
            max_instances: match raw.runtime.max_instances {
                None => 256,
                Some(n @ 1..=10_000) => n,
                Some(_) => {
                    return Err(
                        locator.at(&["runtime", "max_instances"], "must be between 1 and 10000")
                    );
                }
            },
        };

        let accounts = AccountsConfig {
            master_key: match &raw.accounts.master_key_env {
                None => None,
                Some(var) => {
                    let key = crate::secret::read_secret(var, env)
                        .map_err(|why| locator.at(&["accounts", "master_key_env"], why))?;
                    if key.expose().trim().len() != 64
                        || !key.expose().trim().bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(
                            locator.at(&["accounts", "master_key_env"], master_key_format(var))
                        );
                    }
                    Some((var.clone(), key))
                }
            },
        };
        let mut plugins = BTreeMap::new();
        for (name, plugin) in raw.plugins {
            let plugin = validate_plugin(&name, plugin, &base, &locator, env)?;
            plugins.insert(name, plugin);
        }
        Ok(Config {
            storage,
            runtime,
            plugins,
            accounts,
            serve: raw.serve,
            origin: Origin {
                file: file.to_owned(),
                base,
                text: text.into(),
            },
        })
    }

    /// `[serve]`, checked: API keys, `campaigns_dir` (which must exist), the timeouts and
    /// caps. Only `coupon-host serve` asks, so that another command (`plugins`, `worker`, …)
    /// on a machine without the server's folders runs with the same file.
    pub fn serve(&self) -> Result<ServeConfig, ConfigError> {
        validate_serve(
            self.serve.clone(),
            &self.origin.base,
            &self.origin.locator(),
        )
    }
}

/// What a master key must look like, and how to make one.
pub(crate) fn master_key_format(var: &str) -> String {
    format!("{var} must hold 32 bytes as 64 hex digits; make a key with `openssl rand -hex 32`")
}

/// Whether `name` is a valid plugin or key name: a-z, 0-9, '-' and '_', at least one.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn validate_serve(
    raw: RawServe,
    base: &Path,
    locator: &Locator<'_>,
) -> Result<ServeConfig, ConfigError> {
    let at = |key: &[&str], message: String| {
        let mut path = vec!["serve"];
        path.extend_from_slice(key);
        locator.at(&path, message)
    };
    let defaults = ServeConfig::default();
    let mut keys = BTreeMap::new();
    let mut digests = BTreeMap::new();
    for (name, key) in raw.keys {
        if !is_name(&name) || name.len() > 64 {
            return Err(at(
                &["keys", &name],
                "key names use 1 to 64 of a-z, 0-9, '-' and '_' (they appear in logs)".to_owned(),
            ));
        }
        let digest = key.sha256.to_ascii_lowercase();
        let mut sha256 = [0u8; 32];
        if hex::decode_to_slice(&digest, &mut sha256).is_err() {
            return Err(at(
                &["keys", &name, "sha256"],
                "must be 64 hex digits: the SHA-256 of the key (`printf %s KEY | sha256sum`)"
                    .to_owned(),
            ));
        }
        if let Some(other) = digests.insert(sha256, name.clone()) {
            return Err(at(
                &["keys", &name, "sha256"],
                format!("the same key as serve.keys.{other}: give each client its own key"),
            ));
        }
        if key.scopes.is_empty() {
            return Err(at(
                &["keys", &name, "scopes"],
                "name at least one of send, query, campaigns, accounts, metrics".to_owned(),
            ));
        }
        keys.insert(
            name,
            ApiKeyConfig {
                sha256,
                scopes: key.scopes.into_iter().collect(),
            },
        );
    }
    let campaigns_dir = match raw.campaigns_dir {
        None => None,
        Some(dir) => {
            let dir = base.join(dir);
            let canonical = std::fs::canonicalize(&dir)
                .ok()
                .filter(|dir| dir.is_dir())
                .ok_or_else(|| {
                    at(
                        &["campaigns_dir"],
                        format!("{} is not a folder", dir.display()),
                    )
                })?;
            if let Some(system) = system_folder(&canonical) {
                return Err(at(
                    &["campaigns_dir"],
                    format!(
                        "{} is {system}: any client with the `campaigns` scope could read every \
                         file in it; give a folder that holds only campaign files",
                        canonical.display()
                    ),
                ));
            }
            Some(canonical)
        }
    };
    let range = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64| match value {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(_) => Err(at(&[key], format!("must be between {min} and {max}"))),
    };
    Ok(ServeConfig {
        keys,
        campaigns_dir,
        drain_timeout_s: range(
            "drain_timeout_s",
            raw.drain_timeout_s,
            defaults.drain_timeout_s,
            0,
            3600,
        )?,
        read_timeout_s: range(
            "read_timeout_s",
            raw.read_timeout_s,
            defaults.read_timeout_s,
            1,
            3600,
        )?,
        max_campaigns: range(
            "max_campaigns",
            raw.max_campaigns.map(u64::from),
            defaults.max_campaigns.into(),
            1,
            1000,
        )? as u32,
        max_campaign_file_mib: range(
            "max_campaign_file_mib",
            raw.max_campaign_file_mib.map(u64::from),
            defaults.max_campaign_file_mib.into(),
            1,
            65536,
        )? as u32,
        work_campaigns: raw.work_campaigns.unwrap_or(defaults.work_campaigns),
    })
}

fn validate_plugin(
    name: &str,
    raw: RawPlugin,
    base: &Path,
    locator: &Locator<'_>,
    env: EnvLookup<'_>,
) -> Result<PluginConfig, ConfigError> {
    let at = |key: &[&str], message: String| {
        let mut path = vec!["plugins", name];
        path.extend_from_slice(key);
        locator.at(&path, message)
    };
    if !is_name(name) {
        return Err(at(
            &[],
            "plugin names use only a-z, 0-9, '-' and '_'".to_owned(),
        ));
    }

    let component = base.join(&raw.component);
    match std::fs::metadata(&component) {
        Ok(metadata) => {
            if let Some(what) = crate::open::not_regular(&metadata) {
                return Err(at(
                    &["component"],
                    format!(
                        "component file {} is {what}, not a regular file",
                        component.display()
                    ),
                ));
            }
        }
        Err(error) => {
            let why = match error.kind() {
                std::io::ErrorKind::NotFound => "not found".to_owned(),
                _ => error.to_string(),
            };
            return Err(at(
                &["component"],
                format!("component file {}: {why}", component.display()),
            ));
        }
    }

    let sha256 = match raw.sha256 {
        Some(pin) => {
            let pin = pin.to_ascii_lowercase();
            if pin.len() != 64 || !pin.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(at(
                    &["sha256"],
                    "must be 64 hex digits (the component's SHA-256)".to_owned(),
                ));
            }
            Some(pin)
        }
        None => None,
    };

    let mut allowed_hosts = Vec::new();
    for (i, entry) in raw.allowed_hosts.iter().enumerate() {
        let host = parse_allowed_host(entry)
            .map_err(|why| at(&["allowed_hosts"], format!("entry {}: {why}", i + 1)))?;
        allowed_hosts.push(host);
    }

    let auth = crate::auth::parse(
        raw.auth,
        &crate::auth::SchemeInput {
            env,
            settings: &raw.settings,
        },
    )
    .map_err(|error| {
        let mut path: Vec<&str> = vec!["plugins", name];
        path.extend(error.key.iter().map(String::as_str));
        locator.at(&path, error.message)
    })?;
    let auth = Auth {
        scheme: auth.scheme,
        default_account: auth.default_account,
    };

    let defaults = Limits::default();
    let range = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64| match value {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(_) => Err(at(
            &["limits", key],
            format!("must be between {min} and {max}"),
        )),
    };
    let mut limits = Limits {
        timeout_ms: range(
            "timeout_ms",
            raw.limits.timeout_ms,
            defaults.timeout_ms,
            1,
            600_000,
        )?,
        memory_mib: range(
            "memory_mib",
            raw.limits.memory_mib.map(u64::from),
            defaults.memory_mib.into(),
            1,
            MAX_MEMORY_MIB.into(),
        )? as u32,
        http_timeout_ms: range(
            "http_timeout_ms",
            raw.limits.http_timeout_ms,
            defaults.http_timeout_ms,
            1,
            600_000,
        )?,
        max_response_kib: range(
            "max_response_kib",
            raw.limits.max_response_kib.map(u64::from),
            defaults.max_response_kib.into(),
            1,
            256 * 1024,
        )? as u32,
        max_http_requests: range(
            "max_http_requests",
            raw.limits.max_http_requests.map(u64::from),
            defaults.max_http_requests.into(),
            1,
            100_000,
        )? as u32,
        kv_max_keys: range(
            "kv_max_keys",
            raw.limits.kv_max_keys,
            defaults.kv_max_keys,
            1,
            1_000_000,
        )?,
        qps: raw
            .limits
            .qps
            .map(|qps| range("qps", Some(qps.into()), 0, 1, 100_000))
            .transpose()?
            .map(|qps| qps as u32),
        burst: 1,
    };
    limits.burst = match (raw.limits.burst, limits.qps) {
        (Some(_), None) => {
            return Err(at(
                &["limits", "burst"],
                "burst needs qps: set limits.qps too".to_owned(),
            ));
        }
        (Some(burst), Some(qps)) if burst == 0 || burst > qps => {
            return Err(at(
                &["limits", "burst"],
                format!("must be between 1 and qps ({qps})"),
            ));
        }
        (Some(burst), Some(_)) => burst,
        (None, Some(qps)) => (qps / 10).max(1),
        (None, None) => 1,
    };

    let retry_defaults = Retry::default();
    let retry_range = |key: &str, value: Option<u64>, default: u64, min: u64, max: u64| match value
    {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(_) => Err(at(
            &["retry", key],
            format!("must be between {min} and {max}"),
        )),
    };
    let retry = Retry {
        max_attempts: retry_range(
            "max_attempts",
            raw.retry.max_attempts.map(u64::from),
            retry_defaults.max_attempts.into(),
            1,
            100,
        )? as u32,
        budget_ms: retry_range(
            "budget_ms",
            raw.retry.budget_ms,
            retry_defaults.budget_ms,
            0,
            86_400_000,
        )?,
        base_backoff_ms: retry_range(
            "base_backoff_ms",
            raw.retry.base_backoff_ms,
            retry_defaults.base_backoff_ms,
            1,
            600_000,
        )?,
        max_backoff_ms: retry_range(
            "max_backoff_ms",
            raw.retry.max_backoff_ms,
            retry_defaults.max_backoff_ms,
            1,
            3_600_000,
        )?,
        reconcile_after_ms: retry_range(
            "reconcile_after_ms",
            raw.retry.reconcile_after_ms,
            retry_defaults.reconcile_after_ms,
            0,
            600_000,
        )?,
    };

    for (key, value) in &raw.settings {
        if key.is_empty() || value.len() > 4096 {
            return Err(at(
                &["settings", key],
                "setting keys must be non-empty and values at most 4096 bytes".to_owned(),
            ));
        }
    }

    Ok(PluginConfig {
        component,
        sha256,
        allowed_hosts,
        allow_private_addresses: raw.allow_private_addresses,
        auth,
        limits,
        retry,
        settings: raw.settings,
    })
}

/// Parses `scheme://host[:port]`; anything more (a path, a query, credentials) is refused.
pub fn parse_allowed_host(entry: &str) -> Result<AllowedHost, String> {
    if entry.trim().is_empty() {
        return Err("is empty; write scheme://host[:port]".to_owned());
    }
    let url = url::Url::parse(entry).map_err(|e| format!("{entry:?} is not a URL: {e}"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("{entry:?}: the scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{entry:?}: credentials are not allowed here"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{entry:?}: write only scheme://host[:port], without a path"
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("{entry:?}: no host"))?
        .to_ascii_lowercase();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("{entry:?}: no port"))?;
    Ok(AllowedHost {
        scheme: url.scheme().to_owned(),
        host,
        port,
    })
}

/// Finds the line of a key in the config text, for error messages.
struct Locator<'a> {
    text: &'a str,
    file: &'a Path,
    document: Option<toml_edit::Document<String>>,
}

impl<'a> Locator<'a> {
    fn new(text: &'a str, file: &'a Path) -> Self {
        Locator {
            text,
            file,
            document: toml_edit::Document::parse(text.to_owned()).ok(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .bytes()
            .filter(|&b| b == b'\n')
            .count()
            + 1
    }

    /// An error at the key `path` (or at the deepest part of it that exists).
    fn at(&self, path: &[&str], message: impl Into<String>) -> ConfigError {
        let mut line = None;
        if let Some(document) = &self.document {
            let mut item = document.as_item();
            for key in path {
                let Some((k, next)) = item.as_table_like().and_then(|t| t.get_key_value(key))
                else {
                    break;
                };
                if let Some(span) = k.span() {
                    line = Some(self.line_of(span.start));
                }
                item = next;
            }
        }
        ConfigError {
            file: self.file.to_owned(),
            line,
            key: path.join("."),
            message: message.into(),
        }
    }

    /// A deserialization error: the key is the deepest one whose value holds the error's span.
    fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let message = error.message().trim().replace('\n', " ");
        let Some(span) = error.span() else {
            return ConfigError {
                file: self.file.to_owned(),
                line: None,
                key: String::new(),
                message,
            };
        };
        let mut key = Vec::new();
        if let Some(document) = &self.document {
            find_key(document.as_item(), &span, &mut key);
        }
        ConfigError {
            file: self.file.to_owned(),
            line: Some(self.line_of(span.start)),
            key: key.join("."),
            message,
        }
    }
}

fn find_key(item: &toml_edit::Item, span: &Range<usize>, path: &mut Vec<String>) {
    let Some(table) = item.as_table_like() else {
        return;
    };
    for (name, _) in table.iter() {
        let Some((key, value)) = table.get_key_value(name) else {
            continue;
        };
        let key_hit = key
            .span()
            .is_some_and(|k| k.start <= span.start && span.start < k.end.max(k.start + 1));
        let value_hit = value
            .span()
            .is_some_and(|v| v.start <= span.start && span.end <= v.end);
        let table_hit = value.is_table() && contains_offset(value, span.start);
        if key_hit || value_hit || table_hit {
            path.push(name.to_owned());
            if !key_hit {
                find_key(value, span, path);
            }
            return;
        }
    }
}

/// Whether a `[table]` section (whose own span covers only its header) holds `offset`.
fn contains_offset(item: &toml_edit::Item, offset: usize) -> bool {
    let Some(table) = item.as_table_like() else {
        return false;
    };
    table.iter().any(|(name, _)| {
        table.get_key_value(name).is_some_and(|(k, v)| {
            k.span()
                .is_some_and(|s| s.start <= offset && offset < s.end)
                || v.span()
                    .is_some_and(|s| s.start <= offset && offset <= s.end)
                || (v.is_table() && contains_offset(v, offset))
        })
    })
}

/// The folders a `campaigns_dir` may not be, nor be inside: the root and the system's own.
const SYSTEM_FOLDERS: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/sbin",
    "/sys", "/usr", "/var/lib", "/var/log",
];

/// What a canonical folder is when it is no place for campaign files: the root, a system
/// folder, inside one, or holding one.
fn system_folder(dir: &Path) -> Option<String> {
    if dir.parent().is_none() {
        return Some("the root folder".to_owned());
    }
    SYSTEM_FOLDERS.iter().find_map(|system| {
        if dir.starts_with(system) {
            Some(format!("the system folder {system} or inside it"))
        } else if Path::new(system).starts_with(dir) {
            Some(format!("a folder that holds the system folder {system}"))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join("coupon-host-config-test");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.wasm"), b"not really").unwrap();
        let env = |name: &str| match name {
            "SECRET" => Some("s3cret-value".to_owned()),
            "SESSION" => Some("sess-value".to_owned()),
            "FLEET_DB" => Some("postgres://coupon:db-pass-123@db.internal/coupons".to_owned()),
            _ => None,
        };
        Config::parse(text, Path::new("test.toml"), &dir, &env)
    }

    const GOOD: &str = r#"
[plugins.taobao]
component = "a.wasm"
allowed_hosts = ["https://eco.taobao.com", "http://127.0.0.1:8080"]
auth = { scheme = "top", app_key = "123", app_secret_env = "SECRET", session_env = "SESSION", sign_method = "md5" }
limits = { timeout_ms = 2000, memory_mib = 32 }
settings = { gateway = "https://eco.taobao.com/router/rest" }
"#;

    #[test]
    fn loads_a_good_config() {
        let config = parse(GOOD).unwrap();
        let plugin = &config.plugins["taobao"];
        assert_eq!(plugin.limits.timeout_ms, 2000);
        assert_eq!(plugin.allowed_hosts[0].port, 443);
        assert_eq!(plugin.allowed_hosts[1].host, "127.0.0.1");
        assert_eq!(plugin.auth.scheme(), "top");
        let session = plugin.auth.default_account.session.as_ref().unwrap();
        assert_eq!(session.expose(), "sess-value");
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_keys_name_file_line_and_key() {
        let text = GOOD.replace("memory_mib = 32", "memory_mib = 32, qps_typo = 5");
        assert_eq!(
            error(&text),
            "test.toml:6: plugins.taobao.limits.qps_typo: unknown field `qps_typo`, expected one of `timeout_ms`, `memory_mib`, `http_timeout_ms`, `max_response_kib`, `max_http_requests`, `kv_max_keys`, `qps`, `burst`"
        );
        let top_level = format!("{GOOD}\n[bogus]\nx = 1\n");
        assert!(error(&top_level).starts_with("test.toml:9: bogus: unknown field `bogus`"));
    }

    #[test]
    fn wrong_types_name_the_key() {
        let text = GOOD.replace("timeout_ms = 2000", "timeout_ms = \"soon\"");
        let err = error(&text);
        assert!(
            err.starts_with("test.toml:6: plugins.taobao.limits.timeout_ms: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn validation_errors_name_the_key() {
        let zero = GOOD.replace("timeout_ms = 2000", "timeout_ms = 0");
        assert_eq!(
            error(&zero),
            "test.toml:6: plugins.taobao.limits.timeout_ms: must be between 1 and 600000"
        );
        let huge = GOOD.replace("memory_mib = 32", "memory_mib = 100000");
        assert!(
            error(&huge).contains("plugins.taobao.limits.memory_mib: must be between 1 and 1024")
        );
        let empty_host = GOOD.replace("\"https://eco.taobao.com\", ", "\"\", ");
        assert_eq!(
            error(&empty_host),
            "test.toml:4: plugins.taobao.allowed_hosts: entry 1: is empty; write scheme://host[:port]"
        );
        let path_host = GOOD.replace(
            "https://eco.taobao.com\"",
            "https://eco.taobao.com/router/rest\"",
        );
        assert!(error(&path_host).contains("without a path"));
        let missing = GOOD.replace("a.wasm", "missing.wasm");
        assert!(error(&missing).ends_with("missing.wasm: not found"));
        // Not a file: said what it is, not "not found".
        for (path, what) in [("/dev/zero", "a character device"), ("/", "a folder")] {
            let refused = error(&GOOD.replace("a.wasm", path));
            assert_eq!(
                refused,
                format!(
                    "test.toml:3: plugins.taobao.component: component file {path} is {what}, not a regular file"
                )
            );
        }
    }

    #[test]
    fn missing_secret_variable_names_the_variable_not_a_value() {
        let text = GOOD.replace("\"SESSION\"", "\"NOT_SET_ANYWHERE\"");
        assert_eq!(
            error(&text),
            "test.toml:5: plugins.taobao.auth.session_env: environment variable NOT_SET_ANYWHERE is not set"
        );
    }

    #[test]
    fn secrets_cannot_be_written_in_the_file() {
        let text = GOOD.replace("app_secret_env = \"SECRET\"", "app_secret = \"plain\"");
        let err = error(&text);
        assert!(err.contains("unknown field `app_secret`"), "{err}");
        assert!(err.contains("plugins.taobao.auth"), "{err}");
    }

    #[test]
    fn serve_keys_scopes_and_limits_are_checked() {
        let digest = "ab".repeat(32);
        let text = format!(
            "{GOOD}\n[serve]\ndrain_timeout_s = 5\n\n[serve.keys.engine]\nsha256 = \"{digest}\"\nscopes = [\"send\", \"metrics\"]\n"
        );
        let serve = parse(&text).unwrap().serve().unwrap();
        assert_eq!(serve.drain_timeout_s, 5);
        assert_eq!(serve.read_timeout_s, 10);
        assert_eq!(serve.campaigns_dir, None);
        let key = &serve.keys["engine"];
        assert_eq!(key.sha256, [0xab; 32]);
        assert_eq!(
            key.scopes.iter().copied().collect::<Vec<_>>(),
            [Scope::Send, Scope::Metrics]
        );
        assert!(!format!("{key:?}").contains("abab"));

        assert_eq!(
            error(&text.replace("\"metrics\"", "\"admin\"")),
            "test.toml:14: serve.keys.engine.scopes: unknown variant `admin`, expected one of `send`, `query`, `campaigns`, `accounts`, `metrics`"
        );
        assert_eq!(
            serve_error(&text.replace(&digest, "abc")),
            "test.toml:13: serve.keys.engine.sha256: must be 64 hex digits: the SHA-256 of the key (`printf %s KEY | sha256sum`)"
        );
        assert_eq!(
            serve_error(&text.replace("[\"send\", \"metrics\"]", "[]")),
            "test.toml:14: serve.keys.engine.scopes: name at least one of send, query, campaigns, accounts, metrics"
        );
        assert_eq!(
            serve_error(&text.replace("drain_timeout_s = 5", "drain_timeout_s = 5000")),
            "test.toml:10: serve.drain_timeout_s: must be between 0 and 3600"
        );
        assert!(
            error(&text.replace("drain_timeout_s = 5", "keys_file = \"k\""))
                .starts_with("test.toml:10: serve.keys_file: unknown field `keys_file`")
        );
        let twice =
            format!("{text}\n[serve.keys.other]\nsha256 = \"{digest}\"\nscopes = [\"query\"]\n");
        assert_eq!(
            serve_error(&twice),
            "test.toml:17: serve.keys.other.sha256: the same key as serve.keys.engine: give each client its own key"
        );
        assert!(
            serve_error(&text.replace("drain_timeout_s = 5", "campaigns_dir = \"no-such-dir\""))
                .starts_with("test.toml:10: serve.campaigns_dir: ")
        );
        for system in ["/", "/etc", "/proc/self", "/usr/share", "/dev", "/var"] {
            let refused = serve_error(&text.replace(
                "drain_timeout_s = 5",
                &format!("campaigns_dir = \"{system}\""),
            ));
            assert!(
                refused.starts_with("test.toml:10: serve.campaigns_dir: ")
                    && (refused.contains("the root folder") || refused.contains("system folder")),
                "{refused}"
            );
        }
        // Only `serve` asks: the rest of the config loads, for `plugins`, `worker`, ….
        let elsewhere = text.replace("drain_timeout_s = 5", "campaigns_dir = \"no-such-dir\"");
        assert!(parse(&elsewhere).unwrap().plugins.contains_key("taobao"));
    }

    /// The error `Config::serve` finds in a config that loads.
    fn serve_error(text: &str) -> String {
        parse(text).unwrap().serve().unwrap_err().to_string()
    }

    #[test]
    fn bad_toml_names_the_line() {
        let err = error("[plugins.taobao\ncomponent = 1");
        assert!(err.starts_with("test.toml:1"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn the_storage_table_is_checked_by_the_backend_it_names() {
        let with = |storage: &str| format!("[storage]\n{storage}\n{GOOD}");
        let config = parse(&with("path = \"state.db\"")).unwrap();
        assert_eq!(config.storage.backend, "sqlite");
        assert_eq!(
            error(&with("backend = \"mongo\"")),
            "test.toml:2: storage.backend: unknown backend \"mongo\": use one of \"sqlite\", \"postgres\""
        );
        let typo = error(&with("pth = \"state.db\""));
        assert!(
            typo.starts_with("test.toml:2: storage.pth: unknown key"),
            "{typo}"
        );
        let wrong = error(&with("path = 3"));
        assert!(
            wrong.starts_with("test.toml:2: storage.path: must be a string"),
            "{wrong}"
        );
    }

    #[test]
    fn the_postgres_url_is_read_from_the_variable_url_env_names() {
        let with = |storage: &str| format!("[storage]\nbackend = \"postgres\"\n{storage}\n{GOOD}");
        let config = parse(&with(
            "url_env = \"FLEET_DB\"\npool_size = 4\nschema = \"fleet\"",
        ))
        .unwrap();
        assert_eq!(config.storage.backend, "postgres");
        assert_eq!(
            config
                .storage
                .options
                .secret("url_env")
                .map(crate::secret::Secret::expose),
            Some("postgres://coupon:db-pass-123@db.internal/coupons")
        );
        assert!(!format!("{config:?}").contains("db-pass-123"));
        assert_eq!(
            error(&with("url_env = \"NOT_SET_ANYWHERE\"")),
            "test.toml:3: storage.url_env: environment variable NOT_SET_ANYWHERE is not set"
        );
        let missing = error(&with("pool_size = 4"));
        assert!(
            missing.starts_with("test.toml:1: storage.url_env: is required"),
            "{missing}"
        );
        assert_eq!(
            error(&with("url_env = \"FLEET_DB\"\npool_size = 0")),
            "test.toml:4: storage.pool_size: must be an integer from 1 to 256"
        );
        let schema = error(&with("url_env = \"FLEET_DB\"\nschema = \"Fleet; DROP\""));
        assert!(
            schema.starts_with("test.toml:4: storage.schema: \"Fleet; DROP\" is not a schema name"),
            "{schema}"
        );
        let path = error(&with("url_env = \"FLEET_DB\"\npath = \"state.db\""));
        assert!(
            path.starts_with("test.toml:4: storage.path: unknown key for the postgres backend"),
            "{path}"
        );
    }
}
