//! Auth schemes: how the host authenticates a plugin's requests with credentials the adapter
//! never sees.
//!
//! A scheme ([`Scheme`]) says what credentials it needs (its `auth = { scheme = "…", … }` table,
//! parsed by its own module), which secrets to scrub from what a guest or a log can see, what a
//! guest may not set in a request, how it authorises a request (TOP: system parameters and a
//! signature; Douyin: a client token in a header), and how it recognises the platform refusing
//! a credential (so the host can refresh it once). Schemes are chosen by name through
//! [`SCHEMES`]: a third scheme is one new file under `auth/` and one line there.
//!
//! The credentials of one merchant (an [`Account`]) travel with each call: the plugin's scheme
//! holds the app's own credentials (TOP app key and secret), the account the merchant's
//! (the TOP session).

pub(crate) mod douyin;
pub(crate) mod top;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::secret::{EnvLookup, Secret};
use crate::store::{Scope, Storage};
use crate::transport::{HttpResponse, Method, Transport};

/// A request as the guest built it, in the host's types, before the scheme authorises it.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    pub(crate) url: url::Url,
    pub(crate) headers: Vec<(String, String)>,
    /// Form parameters: a GET's query string, a POST's form body.
    pub(crate) params: Vec<(String, String)>,
    pub(crate) body: Option<Vec<u8>>,
}

/// One merchant's authorization on one plugin: its secrets, and its settings, which override
/// the plugin's for the adapter (`settings.get`).
#[derive(Clone, Default)]
pub(crate) struct Account {
    pub(crate) name: String,
    /// TOP: the seller's session (OAuth access token).
    pub(crate) session: Option<Secret>,
    /// Douyin: the merchant's own client key and secret, used instead of the plugin's.
    pub(crate) client: Option<(String, Secret)>,
    pub(crate) settings: BTreeMap<String, String>,
    /// Requests per second for this account alone, under the app's own limit.
    pub(crate) qps: Option<u32>,
    /// Kept by the host (`coupon-host accounts`), rather than the plugin's own credentials from
    /// the config: only a kept account can be refreshed or marked for re-authorization.
    pub(crate) kept: bool,
}

/// What an OAuth token endpoint granted: a session, and how to renew it.
pub(crate) struct Grant {
    pub(crate) session: Secret,
    /// When the session expires, unix ms.
    pub(crate) expires_at_ms: Option<i64>,
    /// The refresh token, when the platform allows refreshing (`re_expires_in` > 0).
    pub(crate) refresh_token: Option<Secret>,
    /// When the refresh token expires, unix ms.
    pub(crate) refresh_expires_at_ms: Option<i64>,
    /// The seller the session acts for, as the platform named it.
    pub(crate) seller: Option<String>,
}

/// What a grant is asked with.
pub(crate) enum GrantRequest<'a> {
    /// An authorization code the merchant's consent produced.
    Code(&'a str),
    /// A refresh token of an earlier grant.
    Refresh(&'a Secret),
}

/// What the HTTP capability tells the host when the platform refuses an account's credential
/// for good (after the scheme's own one refresh): the host refreshes the account where it can
/// (`Some`: the account as it is now), or marks it for re-authorization.
#[async_trait]
pub(crate) trait Refusals: Send + Sync {
    async fn refused(
        &self,
        plugin: &str,
        account: &Account,
        why: &str,
    ) -> Option<std::sync::Arc<Account>>;
}

/// A [`Refusals`] that does nothing (the host's own credentials, benchmarks).
pub(crate) struct IgnoreRefusals;

#[async_trait]
impl Refusals for IgnoreRefusals {
    async fn refused(
        &self,
        _plugin: &str,
        _account: &Account,
        _why: &str,
    ) -> Option<std::sync::Arc<Account>> {
        None
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What a scheme may use while authorising one request.
pub(crate) struct AuthContext<'a> {
    /// Whose call it is.
    pub(crate) scope: &'a Scope,
    pub(crate) account: &'a Account,
    /// Where tokens are cached and their refresh is locked, for every host on the backend.
    pub(crate) storage: &'a Storage,
    /// The plugin's way out (token endpoints go through the same egress guard).
    pub(crate) transport: &'a dyn Transport,
    /// Deadline of one request of the scheme's own (a token fetch).
    pub(crate) http_timeout: Duration,
    /// This process, for locks.
    pub(crate) holder: &'a str,
    /// Now, for signatures.
    pub(crate) now: chrono::DateTime<chrono::Utc>,
}

/// Why a request could not be authorised: nothing was sent to the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// The platform refused the credentials themselves (a wrong client secret): permanent.
    Unauthorized(String),
    /// Credentials could not be had for now (the token endpoint failed).
    Other(String),
}

/// An auth scheme.
#[async_trait]
pub(crate) trait Scheme: Send + Sync {
    /// Its name in the config.
    fn name(&self) -> &'static str;

    /// What the platform counts requests against (TOP app key, Douyin client key): the rate
    /// limiter's key.
    fn credential(&self, account: &Account) -> String;

    /// Every secret a request of `account` may carry, for redaction.
    fn secrets(&self, account: &Account) -> Vec<Secret>;

    /// Refuses what a guest may not set in a request (the scheme's own parameters, a query
    /// string that would go out unsigned).
    fn check(&self, request: &Outgoing) -> Result<(), String>;

    /// Authorises `request` in place for `ctx.account`. `stale` is a credential the platform
    /// has just refused (see [`Scheme::refused`]): get a fresh one. Returns the credential used,
    /// if it is one that can go stale.
    async fn authorize(
        &self,
        request: &mut Outgoing,
        ctx: &AuthContext<'_>,
        stale: Option<&Secret>,
    ) -> Result<Option<Secret>, AuthError>;

    /// Whether the platform's answer says the credential used is invalid or expired (and what it
    /// said): a fresh token (one [`Scheme::authorize`] with `stale`) or a refreshed account may
    /// help.
    fn refused(&self, response: &HttpResponse) -> Option<String>;

    /// Exchanges an authorization code or a refresh token for a session at the scheme's OAuth
    /// endpoint (TOP). Schemes without accounts of that kind refuse.
    async fn grant(
        &self,
        _request: GrantRequest<'_>,
        _transport: &dyn Transport,
        _http_timeout: Duration,
    ) -> Result<Grant, AuthError> {
        Err(AuthError::Unauthorized(format!(
            "the {} scheme has no OAuth authorization: add the account's credentials instead",
            self.name()
        )))
    }

    /// The account fields this scheme's accounts carry: `session` (TOP), `client` (Douyin).
    fn account_fields(&self) -> &'static [&'static str] {
        &[]
    }
}

/// The schemes a config can name.
pub(crate) struct SchemeKind {
    pub(crate) name: &'static str,
    /// Parses the `auth` table (without `scheme`): the scheme, and the account the plugin's
    /// own credentials stand for. An error names the table's key at fault.
    pub(crate) parse: fn(toml::Table, &SchemeInput<'_>) -> Result<Parsed, KeyError>,
}

/// What a scheme's parser may read besides its table.
pub(crate) struct SchemeInput<'a> {
    /// Secrets come from the environment, by name.
    pub(crate) env: EnvLookup<'a>,
    /// The plugin's settings (Douyin's token URL defaults from `base_url`).
    pub(crate) settings: &'a BTreeMap<String, String>,
}

/// A parsed `auth` table.
pub(crate) struct Parsed {
    pub(crate) scheme: Arc<dyn Scheme>,
    pub(crate) default_account: Account,
}

/// A config error inside the `auth` table: the key (relative to `settings` when it starts
/// there, else to `auth`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyError {
    pub(crate) key: Vec<String>,
    pub(crate) message: String,
}

impl KeyError {
    pub(crate) fn at(key: &str, message: impl Into<String>) -> KeyError {
        KeyError {
            key: vec!["auth".to_owned(), key.to_owned()],
            message: message.into(),
        }
    }
}

/// Every scheme. A new scheme: a file under `auth/` and one line here.
pub(crate) const SCHEMES: &[SchemeKind] = &[top::KIND, douyin::KIND];

/// Parses an `auth` table (`None`: requests go out as the adapter built them).
pub(crate) fn parse(
    table: Option<toml::Table>,
    input: &SchemeInput<'_>,
) -> Result<Parsed, KeyError> {
    let Some(mut table) = table else {
        return Ok(Parsed {
            scheme: Arc::new(NoAuth),
            default_account: default_account(),
        });
    };
    let name = match table.remove("scheme") {
        Some(toml::Value::String(name)) => name,
        Some(_) => return Err(KeyError::at("scheme", "must be a string")),
        None => {
            return Err(KeyError {
                key: vec!["auth".to_owned()],
                message: format!("missing field `scheme` (one of {})", names()),
            });
        }
    };
    let kind = SCHEMES
        .iter()
        .find(|kind| kind.name == name)
        .ok_or_else(|| {
            KeyError::at(
                "scheme",
                format!("unknown scheme {name:?}: use one of {}", names()),
            )
        })?;
    (kind.parse)(table, input)
}

fn names() -> String {
    SCHEMES
        .iter()
        .map(|kind| format!("{:?}", kind.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The account of a plugin's own credentials, without secrets yet.
pub(crate) fn default_account() -> Account {
    Account {
        name: crate::store::DEFAULT_ACCOUNT.to_owned(),
        ..Account::default()
    }
}

/// Deserializes a scheme's table into its raw struct; serde's error (an unknown or missing
/// field, a wrong type) is reported at the `auth` table.
pub(crate) fn fields<T: serde::de::DeserializeOwned>(table: toml::Table) -> Result<T, KeyError> {
    T::deserialize(toml::Value::Table(table)).map_err(|e| KeyError {
        key: vec!["auth".to_owned()],
        message: e.message().trim().replace('\n', " "),
    })
}

/// No auth: requests go out as the adapter built them.
struct NoAuth;

#[async_trait]
impl Scheme for NoAuth {
    fn name(&self) -> &'static str {
        "none"
    }

    fn credential(&self, _account: &Account) -> String {
        String::new()
    }

    fn secrets(&self, _account: &Account) -> Vec<Secret> {
        Vec::new()
    }

    fn check(&self, _request: &Outgoing) -> Result<(), String> {
        Ok(())
    }

    async fn authorize(
        &self,
        _request: &mut Outgoing,
        _ctx: &AuthContext<'_>,
        _stale: Option<&Secret>,
    ) -> Result<Option<Secret>, AuthError> {
        Ok(None)
    }

    fn refused(&self, _response: &HttpResponse) -> Option<String> {
        None
    }
}
