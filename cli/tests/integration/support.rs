//! A test environment: a simulator on loopback, a config file pointing at it, known secrets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use coupon_host::{Config, Host};
use coupon_sim::{Sim, SimConfig};

/// Secret values used by every test; the secret-scan tests look for them in all output.
pub const APP_SECRET: &str = "sim-app-secret";
pub const SESSION: &str = "sim-session";
pub const APP_SECRET_ENV: &str = "COUPON_TEST_TAOBAO_SECRET";
pub const SESSION_ENV: &str = "COUPON_TEST_TAOBAO_SESSION";
/// The alsc plugin's session: the same seller's session as [`SESSION`], under a variable of its
/// own so that a test removing [`SESSION_ENV`] still sees the taobao plugin's key named first.
pub const ALSC_SESSION_ENV: &str = "COUPON_TEST_ALSC_SESSION";
pub const DOUYIN_SECRET: &str = "sim-douyin-secret";
pub const DOUYIN_SECRET_ENV: &str = "COUPON_TEST_DOUYIN_SECRET";

pub struct TestEnv {
    pub sim: Sim,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub secrets: Vec<(String, String)>,
    /// Dropped after everything else: what the test must clean up at its end (a PostgreSQL
    /// schema, `coupon_host_tests::postgres::SchemaGuard`).
    pub cleanup: Vec<Box<dyn Send + Sync>>,
}

/// Compiled components are cached across the tests of one run.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

pub struct Options {
    pub sign_method: &'static str,
    pub app_secret: &'static str,
    pub douyin_secret: &'static str,
    pub extra_plugin_toml: String,
    /// Appended to the config (e.g. more plugins).
    pub extra_toml: String,
    /// The `retry = { … }` of every plugin (fast backoffs by default, so tests stay quick).
    pub retry: String,
    /// The body of `[storage]` (default: the SQLite file `state.db` in the env's folder).
    pub storage: String,
    /// Also configure the JavaScript adapters (`douyin-js`, like `douyin`). Off by default, so
    /// that only the tests about them load a ~12 MB component.
    pub javascript: bool,
    /// Also configure `taobao-v0-1`, the Taobao adapter built against `wit/adapter@0.1.0`
    /// (like `taobao`).
    pub taobao_v0_1: bool,
    /// Also configure this adapter template (`template-rust` or `template-js`, from
    /// `templates/`), like `taobao`: both implement the Taobao mapping.
    pub template: Option<&'static str>,
}

/// Retries as configured for tests unless a test says otherwise.
pub const FAST_RETRY: &str = "base_backoff_ms = 20, max_backoff_ms = 500, reconcile_after_ms = 100";

impl Default for Options {
    fn default() -> Self {
        Options {
            sign_method: "hmac-sha256",
            app_secret: APP_SECRET,
            douyin_secret: DOUYIN_SECRET,
            extra_plugin_toml: String::new(),
            extra_toml: String::new(),
            retry: FAST_RETRY.to_owned(),
            storage: "path = \"state.db\"".to_owned(),
            javascript: false,
            taobao_v0_1: false,
            template: None,
        }
    }
}

impl TestEnv {
    pub async fn start(sim_config: SimConfig, options: Options) -> TestEnv {
        let sim = Sim::start(sim_config).await.expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("coupon-host.toml");
        // The Douyin adapters, in Rust and in JavaScript, are configured alike.
        let douyin = |name: &str, component: &str| {
            format!(
                r#"[plugins.{name}]
component = {component:?}
allowed_hosts = [{origin:?}]
auth = {{ scheme = "douyin", client_key = "tt-demo-key", client_secret_env = "{DOUYIN_SECRET_ENV}" }}
limits = {{ http_timeout_ms = 2000 }}
settings = {{ base_url = "{origin}", app_id = "tt-demo-app" }}
retry = {{ {retry} }}
"#,
                origin = sim.base_url(),
                retry = options.retry,
            )
        };
        // So are the Taobao adapters of both contract versions.
        let taobao = |name: &str, component: &str| {
            format!(
                r#"[plugins.{name}]
component = {component:?}
allowed_hosts = [{origin:?}]
auth = {{ scheme = "top", app_key = "12345678", app_secret_env = "{APP_SECRET_ENV}", session_env = "{SESSION_ENV}", sign_method = "{sign_method}", oauth_token_url = "{origin}/token" }}
limits = {{ timeout_ms = 10000, memory_mib = 64, http_timeout_ms = 2000 }}
settings = {{ gateway = "{gateway}" }}
retry = {{ {retry} }}
{extra}
"#,
                origin = sim.base_url(),
                sign_method = options.sign_method,
                gateway = sim.top_gateway(),
                retry = options.retry,
                extra = options.extra_plugin_toml,
            )
        };
        let config = format!(
            r#"[storage]
{storage}

[runtime]
cache_dir = {cache:?}
max_instances = 16

{taobao}
{taobao_v0_1}
{template}

[plugins.tmall-nrt]
component = {tmall:?}
allowed_hosts = [{origin:?}]
auth = {{ scheme = "top", app_key = "12345678", app_secret_env = "{APP_SECRET_ENV}", session_env = "{SESSION_ENV}", sign_method = "{sign_method}" }}
limits = {{ http_timeout_ms = 2000 }}
settings = {{ gateway = "{gateway}", biz_code = "YXX", channel = "app", coupon_type = "247" }}
retry = {{ {retry} }}

[plugins.alsc]
component = {alsc:?}
allowed_hosts = [{origin:?}]
auth = {{ scheme = "top", app_key = "12345678", app_secret_env = "{APP_SECRET_ENV}", session_env = "{ALSC_SESSION_ENV}", sign_method = "{sign_method}" }}
limits = {{ http_timeout_ms = 2000 }}
settings = {{ gateway = "{gateway}" }}
retry = {{ {retry} }}

{douyin}
{douyin_js}
{extra_toml}
"#,
            taobao = taobao("taobao", coupon_host_tests::TAOBAO),
            taobao_v0_1 = if options.taobao_v0_1 {
                taobao("taobao-v0-1", coupon_host_tests::GUEST_TAOBAO_V0_1)
            } else {
                String::new()
            },
            template = match options.template {
                Some(name) => {
                    let (_, component) = coupon_host_tests::TEMPLATES
                        .iter()
                        .find(|(template, _)| *template == name)
                        .unwrap_or_else(|| panic!("no adapter template {name}"));
                    taobao(name, component)
                }
                None => String::new(),
            },
            douyin = douyin("douyin", coupon_host_tests::DOUYIN),
            douyin_js = if options.javascript {
                douyin("douyin-js", coupon_host_tests::DOUYIN_JS)
            } else {
                String::new()
            },
            extra_toml = options.extra_toml,
            storage = options.storage,
            retry = options.retry,
            tmall = coupon_host_tests::TMALL_NRT,
            alsc = coupon_host_tests::ALSC,
            cache = cache_dir().display().to_string(),
            origin = sim.base_url(),
            sign_method = options.sign_method,
            gateway = sim.top_gateway(),
        );
        std::fs::write(&config_path, config).unwrap();
        TestEnv {
            sim,
            dir,
            config_path,
            secrets: vec![
                (APP_SECRET_ENV.to_owned(), options.app_secret.to_owned()),
                (SESSION_ENV.to_owned(), SESSION.to_owned()),
                (ALSC_SESSION_ENV.to_owned(), SESSION.to_owned()),
                (
                    DOUYIN_SECRET_ENV.to_owned(),
                    options.douyin_secret.to_owned(),
                ),
            ],
            cleanup: Vec::new(),
        }
    }

    pub fn config(&self) -> Result<Config, coupon_host::ConfigError> {
        let env = |name: &str| {
            self.secrets
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        Config::load_with_env(&self.config_path, &env)
    }

    pub async fn host(&self) -> Host {
        Host::new(self.config().expect("config loads"))
            .await
            .expect("host starts")
    }

    /// The 1-based number of the config file's first line containing `needle`: where an error
    /// about that line must point.
    pub fn config_line(&self, needle: &str) -> usize {
        std::fs::read_to_string(&self.config_path)
            .unwrap()
            .lines()
            .position(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no config line holds {needle:?}"))
            + 1
    }

    /// The `coupon-host` binary with this env's config and secrets, and `args`.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_coupon-host"));
        command
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env_remove("COUPON_HOST_LOG")
            .envs(self.secrets.iter().map(|(k, v)| (k, v)));
        command
    }

    /// Runs the `coupon-host` binary with this env's config and secrets.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        run(self.command(args)).await
    }

    /// Checks the simulator's ledger for `platform` against what the host said: nobody got the
    /// coupon twice, everyone `issued` is in the ledger, and everyone in the ledger was reported
    /// issued or unknown (never a definite failure). Recipients are platform ids (no `KIND:`).
    pub fn assert_ledger(
        &self,
        platform: &str,
        issued: &BTreeSet<String>,
        unknown: &BTreeSet<String>,
    ) {
        let mut in_ledger: BTreeMap<String, usize> = BTreeMap::new();
        for issuance in self.sim.ledger() {
            if issuance.platform == platform {
                *in_ledger.entry(issuance.recipient).or_default() += 1;
            }
        }
        let twice: Vec<_> = in_ledger.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "issued more than once: {twice:?}");
        assert_eq!(self.sim.duplicate_issuances(), 0);
        for recipient in issued {
            assert!(
                in_ledger.contains_key(recipient),
                "{recipient} reported issued but the platform has no such coupon"
            );
        }
        for recipient in in_ledger.keys() {
            assert!(
                issued.contains(recipient) || unknown.contains(recipient),
                "the platform issued to {recipient} but the host reported a definite failure"
            );
        }
    }
}

pub struct CliOutput {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn json(&self) -> serde_json::Value {
        assert!(
            self.status.success(),
            "coupon-host failed: {}\n{}",
            self.status,
            self.stderr
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", self.stdout))
    }
}

pub async fn run(mut command: tokio::process::Command) -> CliOutput {
    let output = command.output().await.expect("coupon-host runs");
    CliOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `count` distinct Chinese nicks.
pub fn nicks(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("买家{i:03}")).collect()
}

/// The coupon the demo seed's Taobao shop has plenty of.
pub const TAOBAO_COUPON: &str = "48552";
/// The TOP method of a Taobao send, for faults and call records.
pub const TAOBAO_SEND_API: &str = "taobao.promotion.coupon.sns.send";

impl TestEnv {
    /// Adds plugin `slow`: the Taobao adapter with a 30 s HTTP timeout, so a test can hold a
    /// call open with a `Fault::Delay` without the host giving up on it.
    pub fn add_slow_plugin(&self) {
        let mut text = std::fs::read_to_string(&self.config_path).unwrap();
        text.push_str(&format!(
            r#"
[plugins.slow]
component = {component:?}
allowed_hosts = [{origin:?}]
auth = {{ scheme = "top", app_key = "12345678", app_secret_env = "{APP_SECRET_ENV}", session_env = "{SESSION_ENV}" }}
limits = {{ timeout_ms = 60000, http_timeout_ms = 30000 }}
settings = {{ gateway = "{gateway}" }}
"#,
            component = coupon_host_tests::TAOBAO,
            origin = self.sim.base_url(),
            gateway = self.sim.top_gateway(),
        ));
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Holds the next Taobao send `millis` at the simulator, after it took effect.
    pub fn delay_next_send(&self, millis: u64) {
        self.sim.inject(coupon_sim::Fault::Delay {
            api: Some(TAOBAO_SEND_API.to_owned()),
            millis,
            apply: true,
            times: 1,
        });
    }

    /// Waits until the simulator has received `count` Taobao sends (polling, bounded).
    pub async fn wait_for_sends(&self, count: usize) {
        for _ in 0..2000 {
            let seen = self
                .sim
                .calls()
                .iter()
                .filter(|call| call.api == TAOBAO_SEND_API)
                .count();
            if seen >= count {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the simulator never saw {count} Taobao sends");
    }
}

/// Makes a FIFO (named pipe) at `path`, with the system's `mkfifo`.
pub fn mkfifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}
