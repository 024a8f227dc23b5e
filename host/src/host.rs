//! [`Host`]: the embedding API, in one place. It loads plugins, and hands each call to what
//! does the work: sends and queries to [`Delivery`], campaigns to [`Campaigns`], both over the
//! storage backend and the sandbox.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use tracing::Instrument;
use tracing::field::Empty;

use crate::accounts::{AccountBook, PluginAuth, PluginRefusals};
use crate::auth::Account;
use crate::campaign::{CampaignSpec, Campaigns, PreparedCampaign, Progress, WorkReport};
use crate::config::{Config, PluginConfig};
use crate::delivery::{Delivery, Mode};
use crate::error::{Error, Result};
use crate::limiter::RateLimiter;
use crate::runtime::{Plugin, PluginContext, Runtime};
use crate::store::{Lease, Storage};
use crate::transport::{Network, Transport, egress};
use crate::types::{
    AccountInfo, AccountSpec, AdapterInfo, CampaignStatus, Coupon, PluginInfo, QueryRequest,
    Recipient, ReportLine, SendOutcome, SendRequest,
};

/// The host: loaded plugins, their sandbox, and the state they share.
///
/// Cheap to clone; clones share everything. Every call runs the adapter on a fresh instance.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Arc<Runtime>,
    storage: Storage,
    http: egress::Clients,
    /// Replaces the network in every plugin (benchmarks only).
    transport: Option<Arc<dyn Transport>>,
    /// Swapped whole by [`Host::reload`]; a call holds its plugin's `Arc` until it ends.
    plugins: std::sync::RwLock<Arc<BTreeMap<String, Arc<Plugin>>>>,
    /// One limiter per (plugin, credential, qps, burst), kept across reloads.
    limiters: std::sync::Mutex<HashMap<LimiterKey, Arc<RateLimiter>>>,
    delivery: Arc<Delivery>,
    campaigns: Arc<Campaigns>,
    accounts: Arc<AccountBook>,
    /// Calls in flight; closed by [`Host::shutdown`].
    calls: Arc<crate::drain::CallGate>,
    /// This process's heartbeat in the storage.
    heartbeat: Arc<crate::heartbeat::Heartbeat>,
}

type LimiterKey = (String, String, Option<u32>, u32);

/// What [`Host::reload`] did, plugin by plugin.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct ReloadReport {
    /// Plugins loaded from the new config (new, or replacing their old version).
    pub loaded: Vec<String>,
    /// Plugins the new config no longer names; calls already running finish.
    pub removed: Vec<String>,
    /// Plugins whose new version failed to load: the old version keeps serving (or, for a
    /// plugin that is new, none does). Each with its error.
    pub failed: Vec<(String, Error)>,
}

/// This process, as it names itself in leases and locks: host name, pid, and a random part
/// (a pid can be reused after a restart).
fn holder_id() -> Arc<str> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "host".to_owned());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
    .into()
}

impl Host {
    /// Loads a config file (secrets from the environment) and every plugin it names.
    pub async fn from_config_file(path: &Path) -> Result<Host> {
        Host::new(Config::load(path)?).await
    }

    /// Starts a host from a validated config: opens storage, compiles (or loads cached)
    /// components, checks each is an adapter and asks it to `describe` itself. Any plugin that
    /// fails to load fails the whole start: a host never starts half-configured.
    pub async fn new(config: Config) -> Result<Host> {
        Host::with_transport(config, None).await
    }

    /// [`Host::new`], with every plugin's requests answered by `transport` instead of the
    /// network (benchmarks).
    pub(crate) async fn with_transport(
        config: Config,
        transport: Option<Arc<dyn Transport>>,
    ) -> Result<Host> {
        let runtime = Arc::new(Runtime::new(
            config.runtime.max_instances,
            &config.runtime.cache_dir,
        )?);
        let options = config.storage.options.clone();
        let data_dir = crate::store::data_dir(&options, &config.runtime.cache_dir);
        let storage = crate::store::open(&config.storage.backend, options).await?;
        let lease = Lease {
            holder: holder_id().to_string(),
            ttl_ms: config.storage.lease_ms as i64,
        };
        let origin = config.origin.clone();
        let accounts = Arc::new(
            AccountBook::open(
                storage.clone(),
                config.accounts.master_key.clone(),
                lease.holder.clone(),
            )
            .await
            .map_err(|e| origin.locate(e))?,
        );
        let heartbeat = crate::heartbeat::Heartbeat::start(storage.clone(), &lease.holder).await?;
        let delivery = Arc::new(Delivery::new(runtime.clone(), storage.clone(), lease));
        let http = egress::Clients::new()?;
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| Inner {
            campaigns: Arc::new(Campaigns {
                plugins: Arc::new(Lookup(weak.clone())),
                delivery: delivery.clone(),
                storage: storage.clone(),
                data_dir,
                heartbeat: heartbeat.clone(),
            }),
            heartbeat,
            runtime,
            storage,
            http,
            transport,
            plugins: Default::default(),
            limiters: Default::default(),
            delivery,
            accounts,
            calls: Arc::default(),
        });
        let host = Host { inner };
        let mut plugins = BTreeMap::new();
        for (name, plugin_config) in config.plugins {
            let plugin = host.load_plugin(&name, plugin_config, &origin).await?;
            plugins.insert(name, Arc::new(plugin));
        }
        *host.write_plugins() = Arc::new(plugins);
        Ok(host)
    }

    /// Swaps in a new config's plugins while calls are running: a call that started finishes on
    /// the version it started with; calls that start after this returns use the new one. A
    /// plugin whose new version fails to load (missing file, wrong digest, not an adapter) keeps
    /// its old version running, and the failure is logged and reported. Storage and runtime
    /// settings are fixed for the life of the host: changes to them are ignored with a warning.
    pub async fn reload(&self, config: Config) -> ReloadReport {
        let mut report = ReloadReport::default();
        let current = self.read_plugins();
        let mut next = BTreeMap::new();
        let origin = config.origin.clone();
        for (name, plugin_config) in config.plugins {
            match self.load_plugin(&name, plugin_config, &origin).await {
                Ok(plugin) => {
                    report.loaded.push(name.clone());
                    next.insert(name, Arc::new(plugin));
                }
                Err(error) => {
                    tracing::error!(plugin = %name, %error, "reload: the new version failed to load; the old one keeps serving");
                    if let Some(old) = current.get(&name) {
                        next.insert(name.clone(), old.clone());
                    }
                    report.failed.push((name, error));
                }
            }
        }
        report.removed = current
            .keys()
            .filter(|name| !next.contains_key(*name))
            .cloned()
            .collect();
        *self.write_plugins() = Arc::new(next);
        tracing::info!(loaded = ?report.loaded, removed = ?report.removed, failed = report.failed.len(), "reloaded");
        report
    }

    /// [`Host::reload`] from a config file; a file that does not parse changes nothing.
    pub async fn reload_from_file(&self, path: &Path) -> Result<ReloadReport> {
        let config = Config::load(path)?;
        Ok(self.reload(config).await)
    }

    /// Loads one plugin; an error about what the config says names its file and line
    /// (`origin`).
    async fn load_plugin(
        &self,
        name: &str,
        plugin_config: PluginConfig,
        origin: &crate::config::Origin,
    ) -> Result<Plugin> {
        self.load_plugin_unlocated(name, plugin_config)
            .await
            .map_err(|e| origin.locate(e))
    }

    async fn load_plugin_unlocated(
        &self,
        name: &str,
        mut plugin_config: PluginConfig,
    ) -> Result<Plugin> {
        let runtime = &self.inner.runtime;
        let component = runtime.load(
            name,
            &plugin_config.component,
            plugin_config.sha256.as_deref(),
        )?;
        let transport = match &self.inner.transport {
            Some(transport) => transport.clone(),
            None => Arc::new(Network::new(
                self.inner
                    .http
                    .for_plugin(plugin_config.allow_private_addresses),
            )),
        };
        let holder: Arc<str> = self.inner.delivery.lease().holder.as_str().into();
        // `describe` first, on a context of its own: what the adapter declares decides the
        // plugin's limits.
        let probe = Arc::new(PluginContext::new(
            name.to_owned(),
            plugin_config.clone(),
            self.inner.storage.clone(),
            transport.clone(),
            Arc::new(RateLimiter::new(None, 1)),
            holder.clone(),
        ));
        let describe = runtime.describe(&probe, &component).await?;
        let component_path = plugin_config.component.clone();
        let load_error = |reason: String| Error::Load {
            plugin: name.to_owned(),
            path: component_path.clone(),
            reason,
        };
        if describe.max_recipients_per_call == 0 || describe.recipient_kinds.is_empty() {
            return Err(load_error("describe() must name at least one recipient kind and allow at least one recipient per call".to_owned()));
        }
        fit_to_declared(name, &mut plugin_config, &describe)?;
        let limiter = self.limiter(name, &plugin_config);
        let auth = PluginAuth {
            plugin: name.to_owned(),
            scheme: plugin_config.auth.scheme.clone(),
            default_account: plugin_config.auth.default_account.clone(),
            transport: transport.clone(),
            http_timeout: std::time::Duration::from_millis(plugin_config.limits.http_timeout_ms),
        };
        let refusals = Arc::new(PluginRefusals {
            book: self.inner.accounts.clone(),
            auth,
        });
        let context = Arc::new(
            PluginContext::new(
                name.to_owned(),
                plugin_config,
                self.inner.storage.clone(),
                transport,
                limiter,
                holder,
            )
            .with_refusals(refusals),
        );
        let info = PluginInfo {
            name: name.to_owned(),
            component: context.config.component.clone(),
            sha256: component.sha256.clone(),
            contract: component.adapter.contract().to_owned(),
            describe,
        };
        tracing::info!(plugin = %name, platform = %info.describe.platform, contract = %info.contract, sha256 = %info.sha256, "plugin loaded");
        Ok(Plugin {
            context,
            component,
            info,
        })
    }

    /// The plugin's rate limiter: one per (plugin, credential, qps, burst), kept across reloads
    /// and shared by every host on the storage (the platform counts the credential's requests,
    /// not one process's).
    fn limiter(&self, name: &str, config: &PluginConfig) -> Arc<RateLimiter> {
        let credential = config.auth.scheme.credential(&config.auth.default_account);
        self.inner
            .limiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((
                name.to_owned(),
                credential.clone(),
                config.limits.qps,
                config.limits.burst,
            ))
            .or_insert_with(|| {
                Arc::new(
                    RateLimiter::new(config.limits.qps, config.limits.burst).shared(
                        self.inner.storage.clone(),
                        format!("{name}/{credential}"),
                        self.inner.delivery.lease().holder.clone(),
                        std::time::Duration::from_millis(config.limits.http_timeout_ms)
                            + std::time::Duration::from_secs(5),
                    ),
                )
            })
            .clone()
    }

    fn read_plugins(&self) -> Arc<BTreeMap<String, Arc<Plugin>>> {
        read_plugins(&self.inner)
    }

    fn write_plugins(&self) -> std::sync::RwLockWriteGuard<'_, Arc<BTreeMap<String, Arc<Plugin>>>> {
        self.inner
            .plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        self.read_plugins()
            .values()
            .map(|p| p.info.clone())
            .collect()
    }

    fn plugin(&self, name: &str) -> Result<Arc<Plugin>> {
        plugin(&self.inner, name)
    }

    /// Sends a coupon. Every recipient ends in exactly one of `issued` / `failed`; an error is
    /// returned only when the send failed as a whole (bad request, bad credentials, sandbox kill).
    ///
    /// The send runs under an idempotency key (`request.idempotency_key`, or a generated one,
    /// returned in the outcome). The host journals it: sending again with a key that already
    /// ended returns the recorded outcome (`replayed: true`) without calling the platform, and
    /// concurrent sends with one key make one platform call — in this process or in any other
    /// on the same storage. Failures that may pass are retried by class within the plugin's
    /// `retry` settings; see [`SendOutcome`] for what each recipient's final state means. A send
    /// that failed as a whole and had no effect leaves no journal entry, so its key can be used
    /// again.
    pub async fn send(&self, plugin_name: &str, request: SendRequest) -> Result<SendOutcome> {
        let _call = self.inner.calls.enter()?;
        let plugin = self.plugin(plugin_name)?;
        let account = account(&self.inner, &plugin, request.account.as_deref()).await?;
        let key = match &request.idempotency_key {
            Some(key) => {
                validate_key(key)?;
                key.clone()
            }
            None => crate::types::new_idempotency_key(),
        };
        validate_send(&request, &plugin.info.describe)?;
        let span = tracing::info_span!("send", plugin = plugin_name, idempotency_key = %key, recipients = request.recipients.len(),
            issued = Empty, failed = Empty, platform_request_ids = Empty, error_class = Empty, elapsed_ms = Empty);
        let started = std::time::Instant::now();
        let mode = Mode {
            forget_whole_failures: true,
            wait_when_busy: true,
        };
        let result = self
            .inner
            .delivery
            .send(&plugin, &account, &request, &key, mode)
            .instrument(span.clone())
            .await;
        record_send(&span, plugin_name, &result, started.elapsed());
        result
    }

    /// Lists a recipient's coupons.
    pub async fn query(&self, plugin_name: &str, request: QueryRequest) -> Result<Vec<Coupon>> {
        let _call = self.inner.calls.enter()?;
        let plugin = self.plugin(plugin_name)?;
        let account = account(&self.inner, &plugin, request.account.as_deref()).await?;
        let span = tracing::info_span!(
            "query",
            plugin = plugin_name,
            coupons = Empty,
            error_class = Empty,
            elapsed_ms = Empty
        );
        let started = std::time::Instant::now();
        let result = async {
            if !plugin
                .info
                .describe
                .recipient_kinds
                .contains(&request.recipient.kind())
            {
                return Err(unsupported_kind(&plugin.info.describe, &request.recipient));
            }
            self.inner.delivery.query(&plugin, &account, request).await
        }
        .instrument(span.clone())
        .await;
        record_query(&span, plugin_name, &result, started.elapsed());
        result
    }

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
        self.inner.campaigns.prepare(spec).await
    }

    /// Enqueues a campaign whole without sending anything (`campaign run --detach`): its
    /// batches wait in the storage for whoever works them ([`Host::work`], another
    /// [`Host::campaign`] of the same campaign). Returns its id.
    pub async fn campaign_enqueue(&self, spec: CampaignSpec) -> Result<String> {
        self.campaign_prepare(spec).await?.enqueue().await
    }

    /// Works the batches of every running campaign on the storage, `concurrency` at a time
    /// (`coupon-host worker`), until `stop` resolves; then lets the batches in flight finish.
    /// Any number of processes may work together: each batch is claimed by one under a lease,
    /// and a batch whose worker died is claimed again once its lease expires.
    pub async fn work(
        &self,
        concurrency: usize,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<WorkReport> {
        self.inner.campaigns.work_until(concurrency, stop).await
    }

    /// Keeps an inline list of recipients as a campaign file in the host's data folder (next to
    /// the storage file), named by its content, so that posting the same list again names the
    /// same file, and so the same campaign, which then resumes rather than starts over.
    pub fn campaign_file(&self, recipients: &[Recipient]) -> Result<std::path::PathBuf> {
        self.inner.campaigns.file(recipients).map(|(path, _)| path)
    }

    /// [`Host::campaign_file`], saying whether this call wrote the file (a refused start
    /// removes what it wrote).
    #[cfg(feature = "serve")]
    pub(crate) fn campaign_file_written(
        &self,
        recipients: &[Recipient],
    ) -> Result<(std::path::PathBuf, bool)> {
        self.inner.campaigns.file(recipients)
    }

    /// Where a campaign stands.
    pub async fn campaign_status(&self, id: &str) -> Result<CampaignStatus> {
        self.inner.campaigns.status(id).await
    }

    /// Streams a campaign's report, one line per recipient line of the file, in file order.
    pub async fn campaign_report(
        &self,
        id: &str,
        each: impl FnMut(ReportLine) -> std::io::Result<()>,
    ) -> Result<()> {
        self.inner.campaigns.report(id, each).await
    }

    /// Keeps a merchant's authorization on `plugin` (or replaces the account of that name): its
    /// credentials are sealed with the master key before they are stored.
    ///
    /// When the plugin had one account and now has two, calls that name no
    /// account fail (`invalid-request`) until they name one: the returned
    /// [`AccountInfo::warning`] says so, and so does a warning in the log.
    pub async fn account_add(&self, plugin: &str, spec: AccountSpec) -> Result<AccountInfo> {
        let plugin = self.plugin(plugin)?;
        let auth = plugin_auth(&plugin);
        let before: Vec<String> = self
            .inner
            .accounts
            .list(&auth)
            .await?
            .into_iter()
            .map(|a| a.name)
            .collect();
        let mut info = self.inner.accounts.add(&auth, spec).await?;
        if before.len() == 1 && !before.contains(&info.name) {
            let mut names = before;
            names.push(info.name.clone());
            let warning = format!(
                "plugin {:?} now has {} accounts ({}): from now on, every send, query or \
                 campaign of it that names no account (--account, or \"account\" in a request) \
                 fails with invalid-request (HTTP 422) until it names one",
                info.plugin,
                names.len(),
                names.join(", ")
            );
            tracing::warn!(plugin = %info.plugin, "{warning}");
            info.warning = Some(warning);
        }
        Ok(info)
    }

    /// Exchanges an OAuth authorization code for `account`'s session at the plugin's OAuth
    /// endpoint (TOP: `auth.oauth_token_url`), through the host, and keeps it with its refresh
    /// token and expiries; the account is created if new, and active again if it needed
    /// re-authorization.
    pub async fn account_authorize(
        &self,
        plugin: &str,
        account: &str,
        code: &str,
    ) -> Result<AccountInfo> {
        let plugin = self.plugin(plugin)?;
        self.inner
            .accounts
            .authorize(&plugin_auth(&plugin), account, code)
            .await
    }

    /// A plugin's accounts, without secrets: `default` (its own credentials, when the config
    /// holds some) and the kept ones.
    pub async fn account_list(&self, plugin: &str) -> Result<Vec<AccountInfo>> {
        let plugin = self.plugin(plugin)?;
        self.inner.accounts.list(&plugin_auth(&plugin)).await
    }

    /// One account, without secrets.
    pub async fn account_show(&self, plugin: &str, account: &str) -> Result<AccountInfo> {
        let plugin = self.plugin(plugin)?;
        self.inner
            .accounts
            .show(&plugin_auth(&plugin), account)
            .await
    }

    /// Forgets a kept account.
    pub async fn account_remove(&self, plugin: &str, account: &str) -> Result<()> {
        let plugin = self.plugin(plugin)?;
        self.inner
            .accounts
            .remove(&plugin_auth(&plugin), account)
            .await
    }

    /// Seals every kept account again under a new master key (32 bytes as 64 hex digits, read
    /// from environment variable `new_key_env`); afterwards, start hosts with that key. Returns
    /// how many accounts were sealed again.
    pub async fn accounts_rekey(&self, new_key_env: &str) -> Result<usize> {
        let new = crate::secret::read_secret(new_key_env, &|var| std::env::var(var).ok())
            .map_err(|why| Error::InvalidRequest(format!("the new master key: {why}")))?;
        self.inner.accounts.rekey(new_key_env, &new).await
    }

    /// Shuts the host down gracefully: from now on every [`send`](Host::send) and
    /// [`query`](Host::query) fails at once with [`Error::ShuttingDown`], and this returns when
    /// the calls already running have finished (each is bounded by its plugin's
    /// `limits.timeout_ms` per adapter call). Clones share the state, so shutting down one
    /// clone shuts down all. Calling it again waits again; it never reopens the host.
    ///
    /// ```no_run
    /// # async fn demo(host: coupon_host::Host) {
    /// tokio::signal::ctrl_c().await.ok();
    /// host.shutdown().await; // in-flight sends complete; new ones are refused
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.inner.calls.close_and_wait().await;
        // Nothing runs any more: the others need not wait to see this process dead.
        self.inner.heartbeat.end().await;
    }

    /// Gives up every lease this process holds on sends and campaign batches, so another process
    /// may take them over at once: for a process cut short on its way out (the calls it
    /// cancelled stay in flight in the journal, to be reconciled by whoever takes them).
    pub async fn release_leases(&self) -> Result<()> {
        let holder = &self.inner.delivery.lease().holder;
        self.inner.storage.journal_release_holder(holder).await?;
        self.inner.storage.campaign_release_holder(holder).await?;
        self.inner.heartbeat.end().await;
        Ok(())
    }

    /// Whether [`shutdown`](Host::shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.calls.is_closed()
    }
}

fn read_plugins(inner: &Inner) -> Arc<BTreeMap<String, Arc<Plugin>>> {
    inner
        .plugins
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn plugin(inner: &Inner, name: &str) -> Result<Arc<Plugin>> {
    read_plugins(inner)
        .get(name)
        .cloned()
        .ok_or_else(|| Error::UnknownPlugin(name.to_owned()))
}

/// What the account book needs of a plugin.
fn plugin_auth(plugin: &Plugin) -> PluginAuth {
    let context = &plugin.context;
    PluginAuth {
        plugin: context.name.clone(),
        scheme: context.scheme.clone(),
        default_account: context.config.auth.default_account.clone(),
        transport: context.transport.clone(),
        http_timeout: std::time::Duration::from_millis(context.config.limits.http_timeout_ms),
    }
}

/// The account a call names, or the plugin's only one.
async fn account(inner: &Inner, plugin: &Plugin, name: Option<&str>) -> Result<Arc<Account>> {
    inner.accounts.resolve(&plugin_auth(plugin), name).await
}

/// What campaigns see of the host: its plugins as they are now, and its call gate. Weak, so a
/// dropped host is dropped whole.
struct Lookup(std::sync::Weak<Inner>);

impl Lookup {
    fn inner(&self) -> Result<Arc<Inner>> {
        self.0.upgrade().ok_or(Error::ShuttingDown)
    }
}

#[async_trait::async_trait]
impl crate::campaign::Plugins for Lookup {
    fn plugin(&self, name: &str) -> Result<Arc<Plugin>> {
        plugin(&*self.inner()?, name)
    }

    async fn account(&self, plugin: &Plugin, name: Option<&str>) -> Result<Arc<Account>> {
        account(&*self.inner()?, plugin, name).await
    }

    fn enter(&self) -> Result<Box<dyn Send + 'static>> {
        Ok(Box::new(self.inner()?.calls.enter_owned()?))
    }
}

/// Holds a plugin's config to what its adapter declares (contract 0.2.0): the auth scheme must
/// be the one the adapter expects, and `limits.qps` defaults to the platform's documented limit
/// and may not exceed it.
/// Holds a plugin's config to what its adapter declares. A mismatch is the config's fault: a
/// config error at the key (its file and line are added by the caller, see `Origin::locate`).
fn fit_to_declared(name: &str, config: &mut PluginConfig, describe: &AdapterInfo) -> Result<()> {
    let config_error = |key: &str, message: String| {
        Error::Config(crate::error::ConfigError {
            file: Default::default(),
            line: None,
            key: format!("plugins.{name}.{key}"),
            message,
        })
    };
    if let Some(expected) = &describe.auth_scheme {
        let configured = config.auth.scheme();
        if configured != expected {
            return Err(config_error(
                "auth",
                format!(
                    "the adapter expects auth scheme {expected:?}, and this {}",
                    if configured == "none" {
                        "is not set".to_owned()
                    } else {
                        format!("says {configured:?}")
                    }
                ),
            ));
        }
    }
    #[cfg(feature = "bench")]
    if crate::bench::declared_limits_lifted() {
        return Ok(());
    }
    if let Some(platform) = describe.limits.qps {
        match config.limits.qps {
            None => {
                tracing::info!(
                    plugin = name,
                    qps = platform,
                    "limits.qps defaults to the platform's documented limit"
                );
                config.limits.qps = Some(platform);
                config.limits.burst = (platform / 10).max(1);
            }
            Some(qps) if qps > platform => {
                return Err(config_error(
                    "limits.qps",
                    format!(
                        "{qps} is above the {platform} requests a second the platform allows (the adapter declares it): set at most {platform}, or leave it out"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn validate_key(key: &str) -> Result<()> {
    // Counted in characters, as JSON Schema's `maxLength` (the HTTP API's description) counts.
    if key.trim().is_empty() || key.chars().count() > 128 || key.chars().any(char::is_control) {
        return Err(Error::InvalidRequest(
            "the idempotency key must be 1 to 128 characters, not blank, without control characters"
                .to_owned(),
        ));
    }
    Ok(())
}

fn unsupported_kind(info: &AdapterInfo, recipient: &Recipient) -> Error {
    let kinds: Vec<_> = info.recipient_kinds.iter().map(|k| k.as_str()).collect();
    Error::InvalidRequest(format!(
        "{} takes {} recipients, not {}",
        info.platform,
        kinds.join(" or "),
        recipient.kind().as_str()
    ))
}

fn validate_send(request: &SendRequest, info: &AdapterInfo) -> Result<()> {
    if request.coupon.trim().is_empty() {
        return Err(Error::InvalidRequest("the coupon is empty".to_owned()));
    }
    if request.recipients.is_empty() {
        return Err(Error::InvalidRequest("no recipients".to_owned()));
    }
    if request.quantity == 0 {
        return Err(Error::InvalidRequest(
            "the quantity must be at least 1".to_owned(),
        ));
    }
    let mut seen = HashSet::new();
    for recipient in &request.recipients {
        if !info.recipient_kinds.contains(&recipient.kind()) {
            return Err(unsupported_kind(info, recipient));
        }
        if !seen.insert(recipient) {
            return Err(Error::InvalidRequest(format!(
                "recipient {recipient} is listed twice"
            )));
        }
    }
    Ok(())
}

/// Records a finished send on its span (outcome, platform request ids, latency) and in metrics.
fn record_send(
    span: &tracing::Span,
    plugin: &str,
    result: &Result<SendOutcome>,
    elapsed: std::time::Duration,
) {
    span.record("elapsed_ms", elapsed.as_millis() as u64);
    match result {
        Ok(outcome) => {
            span.record("issued", outcome.issued.len());
            span.record("failed", outcome.failed.len());
            span.record(
                "platform_request_ids",
                outcome.platform_request_ids.join(","),
            );
        }
        Err(error) => {
            span.record("error_class", error.kind());
        }
    }
    crate::metrics::send_finished(plugin, result, elapsed);
}

/// Records a finished query on its span and in metrics.
fn record_query(
    span: &tracing::Span,
    plugin: &str,
    result: &Result<Vec<Coupon>>,
    elapsed: std::time::Duration,
) {
    span.record("elapsed_ms", elapsed.as_millis() as u64);
    match result {
        Ok(coupons) => span.record("coupons", coupons.len()),
        Err(error) => span.record("error_class", error.kind()),
    };
    crate::metrics::query_finished(plugin, result, elapsed);
}
