//! Accounts: one plugin serves many merchants, each with its own authorization, kept by the
//! host.
//!
//! An account is one merchant's authorization on one plugin: its secrets (a TOP session with its
//! refresh token and expiries, or a Douyin merchant's own client key and secret) and its settings,
//! which override the plugin's. The plugin keeps the app's credentials (TOP app key and secret);
//! its `session_env`, if any, is the account named `default`. Secrets are sealed with the master
//! key (`[accounts] master_key_env`, 32 bytes as 64 hex digits; `seal.rs`), bound to (plugin,
//! account, field), before they reach storage; a check value sealed with the same key tells a
//! right key from a wrong one at start.
//!
//! Lifecycle: `active` → (the platform refuses the session — TOP 26/27, Douyin 28001003/28001008
//! after one token refresh — and a refresh, where the platform allows one, fails) →
//! `needs-reauth`, whose calls fail at once with class `unauthorized` naming the account →
//! (`accounts authorize` with a new code) → `active`. A session close to expiry is refreshed
//! before it is used, by one host for all (the storage's lock).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::auth::{Account, AuthError, Grant, GrantRequest, Refusals, Scheme};
use crate::error::{Error, Result};
use crate::seal::{SealKey, place};
use crate::secret::Secret;
use crate::store::{DEFAULT_ACCOUNT, Scope, Storage, StoredAccount, now_ms};
use crate::transport::Transport;
use crate::types::{AccountInfo, AccountSpec, AdapterError, ErrorClass};

/// What the master key's check value says when opened.
const CHECK: &[u8] = b"coupon-host master key check v1";

/// How long a resolved account is trusted before storage is asked again (another host may have
/// refreshed it, or marked it for re-authorization).
const FRESH_FOR: Duration = Duration::from_secs(2);

/// A session expiring sooner than this is refreshed before use (where it can be).
const REFRESH_AHEAD_MS: i64 = 10 * 60 * 1000;

/// What the book needs of a plugin: its name, its scheme, its own credentials, its way out.
#[derive(Clone)]
pub(crate) struct PluginAuth {
    pub(crate) plugin: String,
    pub(crate) scheme: Arc<dyn Scheme>,
    /// The account its `auth` table's own credentials stand for (`default`).
    pub(crate) default_account: Account,
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) http_timeout: Duration,
}

impl PluginAuth {
    /// Whether the plugin's own credentials make an account to count: a TOP plugin's only with
    /// a `session_env`, any other scheme's always.
    fn default_counts(&self) -> bool {
        !self.scheme.account_fields().contains(&"session") || self.default_account.session.is_some()
    }
}

/// Accounts resolved lately, by (plugin, name), with when.
type Resolved = HashMap<(String, String), (Instant, Arc<Account>)>;

/// Every plugin's kept accounts.
pub(crate) struct AccountBook {
    storage: Storage,
    master: Option<SealKey>,
    /// The variable the master key came from, for messages.
    master_var: Option<String>,
    holder: String,
    /// Accounts resolved lately, by (plugin, name), and when.
    cache: Mutex<Resolved>,
    /// Each plugin's account names, and when they were read.
    names: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

/// Checks a name for a kept account.
fn check_name(name: &str) -> Result<()> {
    if name == DEFAULT_ACCOUNT {
        return Err(Error::InvalidRequest(format!(
            "account name {DEFAULT_ACCOUNT:?} is the plugin's own credentials (auth in the config): choose another"
        )));
    }
    // It starts with a letter or digit: `.` and `..` would not survive a URL path's
    // normalisation, so the HTTP API could not name them.
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric())
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(Error::InvalidRequest(format!(
            "account name {:?}: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit",
            crate::text::prefix(name, 64)
        )));
    }
    Ok(())
}

/// The failure of a call for an account that must be authorized again.
fn needs_reauth(plugin: &str, name: &str, reason: Option<&str>) -> Error {
    Error::Adapter {
        plugin: plugin.to_owned(),
        error: AdapterError::new(
            ErrorClass::Unauthorized,
            "needs-reauth",
            format!(
                "account {name:?} needs re-authorization{}: run `coupon-host accounts authorize {plugin} {name} --code CODE`",
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
        ),
    }
}

impl AccountBook {
    /// Opens the book: with `master` (the variable and its value), the key must open the stored
    /// check value (or, on first use, seals one); without it, no account may be stored.
    pub(crate) async fn open(
        storage: Storage,
        master: Option<(String, Secret)>,
        holder: String,
    ) -> Result<AccountBook> {
        let (master, master_var) = match master {
            None => {
                let stored = storage.account_list(None).await?;
                if !stored.is_empty() {
                    return Err(Error::Config(crate::error::ConfigError {
                        file: Default::default(),
                        line: None,
                        key: "accounts.master_key_env".to_owned(),
                        message: format!(
                            "{} accounts are kept in the storage: set [accounts] master_key_env to the variable holding their master key",
                            stored.len()
                        ),
                    }));
                }
                (None, None)
            }
            Some((var, value)) => {
                let key = master_key(&var, &value)?;
                match storage.master_check_get().await? {
                    Some(sealed) => {
                        if key.open(&sealed, &place(&["master"])).as_deref() != Some(CHECK) {
                            return Err(Error::Config(crate::error::ConfigError {
                                file: Default::default(),
                                line: None,
                                key: "accounts.master_key_env".to_owned(),
                                message: format!(
                                    "the key in {var} is not the master key the stored accounts were sealed with: set {var} to that key (to change keys, run `accounts rekey --new-key-env NEW` with the old one, then name NEW here; make a key with `openssl rand -hex 32`)"
                                ),
                            }));
                        }
                    }
                    None => {
                        storage
                            .master_check_put(&key.seal(CHECK, &place(&["master"])))
                            .await?
                    }
                }
                (Some(key), Some(var))
            }
        };
        Ok(AccountBook {
            storage,
            master,
            master_var,
            holder,
            cache: Mutex::default(),
            names: Mutex::default(),
        })
    }

    fn key(&self) -> Result<&SealKey> {
        self.master.as_ref().ok_or_else(|| {
            Error::InvalidRequest(
                "no master key: set [accounts] master_key_env to a variable holding 64 hex digits, so the host can keep accounts"
                    .to_owned(),
            )
        })
    }

    fn seal(&self, plugin: &str, name: &str, field: &str, secret: &Secret) -> Result<Vec<u8>> {
        Ok(self
            .key()?
            .seal(secret.expose().as_bytes(), &place(&[plugin, name, field])))
    }

    fn open_field(&self, stored: &StoredAccount, field: &str) -> Result<Option<Secret>> {
        let Some(sealed) = stored.sealed.get(field) else {
            return Ok(None);
        };
        let plain = self
            .key()?
            .open(sealed, &place(&[&stored.plugin, &stored.name, field]))
            .ok_or_else(|| {
                Error::storage(format!(
                    "account {} of plugin {}: its {field} does not open with the master key in {}",
                    stored.name,
                    stored.plugin,
                    self.master_var.as_deref().unwrap_or("(none)")
                ))
            })?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map(Some)
            .map_err(|_| {
                Error::storage(format!("account {}: its {field} is not text", stored.name))
            })
    }

    fn forget(&self, plugin: &str, name: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(plugin.to_owned(), name.to_owned()));
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(plugin);
    }

    /// The names of a plugin's kept accounts (read again after [`FRESH_FOR`]).
    async fn names(&self, plugin: &str) -> Result<Vec<String>> {
        if let Some((read, names)) = self
            .names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
            && read.elapsed() < FRESH_FOR
        {
            return Ok(names.clone());
        }
        let names: Vec<String> = self
            .storage
            .account_list(Some(plugin))
            .await?
            .into_iter()
            .map(|account| account.name)
            .collect();
        self.names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(plugin.to_owned(), (Instant::now(), names.clone()));
        Ok(names)
    }

    /// The account a call names; with none named, the plugin's only account. A kept account
    /// close to its session's expiry is refreshed first; one that needs re-authorization fails
    /// at once (class `unauthorized`, naming it).
    pub(crate) async fn resolve(
        &self,
        auth: &PluginAuth,
        name: Option<&str>,
    ) -> Result<Arc<Account>> {
        let name = match name {
            Some(name) => name.to_owned(),
            None => {
                let mut names = self.names(&auth.plugin).await?;
                if auth.default_counts() {
                    names.insert(0, DEFAULT_ACCOUNT.to_owned());
                }
                match names.len() {
                    0 => DEFAULT_ACCOUNT.to_owned(),
                    1 => names.remove(0),
                    _ => {
                        return Err(Error::InvalidRequest(format!(
                            "plugin {:?} has several accounts ({}): name one (--account, or \"account\" in the request)",
                            auth.plugin,
                            names.join(", ")
                        )));
                    }
                }
            }
        };
        if name == DEFAULT_ACCOUNT {
            return Ok(Arc::new(auth.default_account.clone()));
        }
        let key = (auth.plugin.clone(), name.clone());
        if let Some((read, account)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && read.elapsed() < FRESH_FOR
        {
            return Ok(account.clone());
        }
        let mut stored = self
            .storage
            .account_get(&auth.plugin, &name)
            .await?
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "plugin {:?} has no account {:?}",
                    auth.plugin,
                    crate::text::prefix(&name, 64)
                ))
            })?;
        if stored.state != "active" {
            crate::metrics::account_state(&auth.plugin, &name, &stored.state);
            return Err(needs_reauth(&auth.plugin, &name, stored.reason.as_deref()));
        }
        let expiring = stored
            .expires_at_ms
            .is_some_and(|at| at - now_ms() < REFRESH_AHEAD_MS);
        let refreshable = stored.refresh_expires_at_ms.is_some_and(|at| at > now_ms());
        if expiring && refreshable {
            stored = match self.refresh(auth, &stored).await {
                Ok(refreshed) => refreshed,
                Err(error) => {
                    tracing::warn!(plugin = %auth.plugin, account = %name, error = %crate::error::full_message(&error), "cannot refresh the session ahead of its expiry");
                    stored
                }
            };
        }
        let account = Arc::new(self.account(&stored)?);
        crate::metrics::account_state(&auth.plugin, &name, "active");
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (Instant::now(), account.clone()));
        Ok(account)
    }

    /// A stored account, opened.
    fn account(&self, stored: &StoredAccount) -> Result<Account> {
        let client = match (
            &stored.client_key,
            self.open_field(stored, "client_secret")?,
        ) {
            (Some(key), Some(secret)) => Some((key.clone(), secret)),
            _ => None,
        };
        Ok(Account {
            name: stored.name.clone(),
            session: self.open_field(stored, "session")?,
            client,
            settings: stored.settings.clone(),
            qps: stored.qps,
            kept: true,
        })
    }

    /// Refreshes a kept account's session with its refresh token: one host does it for all
    /// (the storage's lock; the others find the refreshed account after taking it).
    async fn refresh(&self, auth: &PluginAuth, stored: &StoredAccount) -> Result<StoredAccount> {
        let scope = Scope::new(auth.plugin.clone(), stored.name.clone());
        let lock_until = now_ms() + auth.http_timeout.as_millis() as i64 + 5_000;
        let give_up = Instant::now() + auth.http_timeout + Duration::from_secs(6);
        loop {
            if self
                .storage
                .token_lock(&scope, "oauth", &self.holder, lock_until)
                .await?
            {
                break;
            }
            if Instant::now() >= give_up {
                return Err(Error::storage(
                    "another host holds the session's refresh lock",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let result = async {
            // Another host may have refreshed it while this one waited for the lock.
            let current = self
                .storage
                .account_get(&auth.plugin, &stored.name)
                .await?
                .unwrap_or_else(|| stored.clone());
            if current.updated_ms != stored.updated_ms && current.state == "active" {
                return Ok(current);
            }
            let refresh_token = self.open_field(&current, "refresh_token")?.ok_or_else(|| {
                Error::InvalidRequest(format!("account {} has no refresh token", current.name))
            })?;
            let grant = auth
                .scheme
                .grant(
                    GrantRequest::Refresh(&refresh_token),
                    auth.transport.as_ref(),
                    auth.http_timeout,
                )
                .await
                .map_err(|e| auth_error(&auth.plugin, e))?;
            let refreshed = self.granted(&auth.plugin, current, grant)?;
            self.storage.account_put(&refreshed).await?;
            tracing::info!(plugin = %auth.plugin, account = %refreshed.name, "refreshed the session");
            Ok(refreshed)
        }
        .await;
        let _ = self
            .storage
            .token_unlock(&scope, "oauth", &self.holder)
            .await;
        self.forget(&auth.plugin, &stored.name);
        result
    }

    /// A stored account with a new grant's session, refresh token and expiries, active.
    fn granted(
        &self,
        plugin: &str,
        mut stored: StoredAccount,
        grant: Grant,
    ) -> Result<StoredAccount> {
        let name = stored.name.clone();
        stored.sealed.insert(
            "session".into(),
            self.seal(plugin, &name, "session", &grant.session)?,
        );
        match &grant.refresh_token {
            Some(token) => {
                stored.sealed.insert(
                    "refresh_token".into(),
                    self.seal(plugin, &name, "refresh_token", token)?,
                );
            }
            None => {
                stored.sealed.remove("refresh_token");
            }
        }
        stored.expires_at_ms = grant.expires_at_ms;
        stored.refresh_expires_at_ms = grant.refresh_expires_at_ms;
        stored.seller = grant.seller.or(stored.seller);
        stored.state = "active".into();
        stored.reason = None;
        Ok(stored)
    }

    /// Keeps a new account (or replaces one of that name).
    pub(crate) async fn add(&self, auth: &PluginAuth, spec: AccountSpec) -> Result<AccountInfo> {
        check_name(&spec.name)?;
        let fields = auth.scheme.account_fields();
        if spec.session.is_some() && !fields.contains(&"session") {
            return Err(Error::InvalidRequest(format!(
                "plugin {:?} ({} scheme) takes no session",
                auth.plugin,
                auth.scheme.name()
            )));
        }
        if spec.client.is_some() && !fields.contains(&"client") {
            return Err(Error::InvalidRequest(format!(
                "plugin {:?} ({} scheme) takes no client key",
                auth.plugin,
                auth.scheme.name()
            )));
        }
        if spec.qps == Some(0) {
            return Err(Error::InvalidRequest("qps must be at least 1".to_owned()));
        }
        let name = spec.name.clone();
        let mut stored = StoredAccount {
            plugin: auth.plugin.clone(),
            name: name.clone(),
            state: "active".into(),
            settings: spec.settings,
            qps: spec.qps,
            ..StoredAccount::default()
        };
        if let Some(session) = &spec.session {
            stored.sealed.insert(
                "session".into(),
                self.seal(&auth.plugin, &name, "session", session)?,
            );
        }
        if let Some((key, secret)) = &spec.client {
            stored.client_key = Some(key.clone());
            stored.sealed.insert(
                "client_secret".into(),
                self.seal(&auth.plugin, &name, "client_secret", secret)?,
            );
        }
        self.storage.account_put(&stored).await?;
        self.forget(&auth.plugin, &name);
        tracing::info!(plugin = %auth.plugin, account = %name, "account kept");
        Ok(info(&stored))
    }

    /// Exchanges an authorization code at the scheme's OAuth endpoint, through the host (never
    /// the adapter), and keeps the session, its refresh token and their expiries; the account is
    /// created if it is new, and active again if it needed re-authorization.
    pub(crate) async fn authorize(
        &self,
        auth: &PluginAuth,
        name: &str,
        code: &str,
    ) -> Result<AccountInfo> {
        check_name(name)?;
        self.key()?;
        let grant = auth
            .scheme
            .grant(
                GrantRequest::Code(code),
                auth.transport.as_ref(),
                auth.http_timeout,
            )
            .await
            .map_err(|e| auth_error(&auth.plugin, e))?;
        let stored = self
            .storage
            .account_get(&auth.plugin, name)
            .await?
            .unwrap_or_else(|| StoredAccount {
                plugin: auth.plugin.clone(),
                name: name.to_owned(),
                ..StoredAccount::default()
            });
        let stored = self.granted(&auth.plugin, stored, grant)?;
        self.storage.account_put(&stored).await?;
        self.forget(&auth.plugin, name);
        crate::metrics::account_state(&auth.plugin, name, "active");
        tracing::info!(plugin = %auth.plugin, account = %name, "account authorized");
        Ok(info(&stored))
    }

    /// A plugin's accounts: its own (`default`, when its config holds credentials) and the kept.
    pub(crate) async fn list(&self, auth: &PluginAuth) -> Result<Vec<AccountInfo>> {
        let mut accounts = Vec::new();
        if auth.default_counts() {
            accounts.push(AccountInfo {
                plugin: auth.plugin.clone(),
                name: DEFAULT_ACCOUNT.to_owned(),
                state: "active".into(),
                reason: None,
                source: "config".into(),
                session: auth.default_account.session.is_some(),
                expires_at: None,
                refresh_expires_at: None,
                seller: None,
                client_key: None,
                qps: None,
                settings: Default::default(),
                warning: None,
            });
        }
        for stored in self.storage.account_list(Some(&auth.plugin)).await? {
            accounts.push(info(&stored));
        }
        Ok(accounts)
    }

    /// One account.
    pub(crate) async fn show(&self, auth: &PluginAuth, name: &str) -> Result<AccountInfo> {
        self.list(auth)
            .await?
            .into_iter()
            .find(|account| account.name == name)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "plugin {:?} has no account {:?}",
                    auth.plugin,
                    crate::text::prefix(name, 64)
                ))
            })
    }

    /// Forgets a kept account (its journal and campaigns stay).
    pub(crate) async fn remove(&self, auth: &PluginAuth, name: &str) -> Result<()> {
        if name == DEFAULT_ACCOUNT {
            return Err(Error::InvalidRequest(format!(
                "account {DEFAULT_ACCOUNT:?} of plugin {:?} is the plugin's own credentials in the config (plugins.{}.auth), not an account the host keeps: there is nothing to remove; to stop using it, change the config",
                auth.plugin, auth.plugin
            )));
        }
        check_name(name)?;
        if !self.storage.account_remove(&auth.plugin, name).await? {
            return Err(Error::InvalidRequest(format!(
                "plugin {:?} has no account {:?}",
                auth.plugin,
                crate::text::prefix(name, 64)
            )));
        }
        self.forget(&auth.plugin, name);
        Ok(())
    }

    /// Marks a kept account for re-authorization.
    async fn mark(&self, plugin: &str, name: &str, why: &str) {
        tracing::warn!(
            plugin,
            account = name,
            why,
            "the account needs re-authorization"
        );
        if let Err(e) = self
            .storage
            .account_set_state(plugin, name, "needs-reauth", Some(why))
            .await
        {
            tracing::error!(error = %crate::error::full_message(&e), "cannot mark the account");
        }
        crate::metrics::account_state(plugin, name, "needs-reauth");
        self.forget(plugin, name);
    }

    /// Seals every kept secret again under `new` (given as 64 hex digits, from `new_var`), and
    /// the check value last, so a run cut short can be run again. Returns how many accounts.
    pub(crate) async fn rekey(&self, new_var: &str, new: &Secret) -> Result<usize> {
        let old = self.key()?;
        let new = master_key(new_var, new)?;
        let accounts = self.storage.account_list(None).await?;
        for mut stored in accounts.clone() {
            for (field, sealed) in stored.sealed.iter_mut() {
                let here = place(&[&stored.plugin, &stored.name, field]);
                let plain = match old.open(sealed, &here) {
                    Some(plain) => plain,
                    // Re-sealed by an earlier run cut short.
                    None if new.open(sealed, &here).is_some() => continue,
                    None => {
                        return Err(Error::storage(format!(
                            "account {} of plugin {}: its {field} opens with neither key",
                            stored.name, stored.plugin
                        )));
                    }
                };
                *sealed = new.seal(&plain, &here);
            }
            self.storage.account_put(&stored).await?;
        }
        self.storage
            .master_check_put(&new.seal(CHECK, &place(&["master"])))
            .await?;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        Ok(accounts.len())
    }
}

/// A master key from its variable's value: 64 hex digits.
fn master_key(var: &str, value: &Secret) -> Result<SealKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(value.expose().trim(), &mut bytes).map_err(|_| {
        Error::Config(crate::error::ConfigError {
            file: Default::default(),
            line: None,
            key: "accounts.master_key_env".to_owned(),
            message: crate::config::master_key_format(var),
        })
    })?;
    Ok(SealKey::new(&bytes))
}

/// An OAuth failure as the library says it.
fn auth_error(plugin: &str, error: AuthError) -> Error {
    let (class, message) = match error {
        AuthError::Unauthorized(message) => (ErrorClass::Unauthorized, message),
        AuthError::Other(message) => (ErrorClass::Transient, message),
    };
    Error::Adapter {
        plugin: plugin.to_owned(),
        error: AdapterError::new(class, "oauth", message),
    }
}

/// What `accounts list` shows of a kept account.
fn info(stored: &StoredAccount) -> AccountInfo {
    AccountInfo {
        plugin: stored.plugin.clone(),
        name: stored.name.clone(),
        state: stored.state.clone(),
        reason: stored.reason.clone(),
        source: "host".into(),
        session: stored.sealed.contains_key("session"),
        expires_at: stored.expires_at_ms.map(|ms| ms / 1000),
        refresh_expires_at: stored.refresh_expires_at_ms.map(|ms| ms / 1000),
        seller: stored.seller.clone(),
        client_key: stored.client_key.clone(),
        qps: stored.qps,
        settings: stored.settings.clone(),
        warning: None,
    }
}

/// What a plugin's calls tell the book when the platform refuses an account's credential.
pub(crate) struct PluginRefusals {
    pub(crate) book: Arc<AccountBook>,
    pub(crate) auth: PluginAuth,
}

#[async_trait]
impl Refusals for PluginRefusals {
    async fn refused(&self, plugin: &str, account: &Account, why: &str) -> Option<Arc<Account>> {
        if !account.kept {
            // The plugin's own credentials come from the config: only the operator can fix them.
            tracing::error!(plugin, account = %account.name, why, "the platform refused the plugin's own credentials");
            return None;
        }
        let stored = self
            .book
            .storage
            .account_get(plugin, &account.name)
            .await
            .ok()??;
        if stored.refresh_expires_at_ms.is_some_and(|at| at > now_ms()) {
            match self.book.refresh(&self.auth, &stored).await {
                Ok(refreshed) if refreshed.state == "active" => {
                    if let Ok(account) = self.book.account(&refreshed) {
                        return Some(Arc::new(account));
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(plugin, account = %account.name, error = %crate::error::full_message(&error), "cannot refresh the refused session")
                }
            }
        }
        self.book.mark(plugin, &account.name, why).await;
        None
    }
}
