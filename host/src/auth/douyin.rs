//! The Douyin scheme: a client_token, fetched by the host with the client key and secret, rides
//! in the `access-token` header (PROTOCOLS.md §2).
//!
//! A token is cached in memory and in storage (sealed with a key derived from the client secret,
//! so every host of the same config shares it and storage never holds it in clear) until shortly
//! before it expires. One host refreshes it for all: it takes the storage's refresh lock,
//! re-checks the stored token (another host may just have refreshed it), fetches, stores,
//! releases; the others wait for its token, for a bounded time. A failed refresh leaves a token
//! that has not expired yet in use. When the platform calls a token invalid or expired
//! (28001003 / 28001008), the host refreshes once and retries once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{
    Account, AuthContext, AuthError, KeyError, Outgoing, Parsed, Scheme, SchemeInput, SchemeKind,
};
use crate::seal::{SealKey, place};
use crate::secret::{Secret, read_secret};
use crate::store::{Scope, StoredToken, now_ms};
use crate::transport::{HttpRequest, HttpResponse, Method};

/// The registry entry for `scheme = "douyin"`.
pub(crate) const KIND: SchemeKind = SchemeKind {
    name: "douyin",
    parse,
};

/// The Douyin open API's root when `settings.base_url` is not set.
pub const DOUYIN_BASE_URL: &str = "https://open.douyin.com";

/// Platform answers that mean "get a new token and try once more" (PROTOCOLS.md §2.4).
pub(crate) const REFRESH_CODES: [i64; 2] = [28001003, 28001008];

/// Token errors that mean the client key or secret is wrong: permanent (PROTOCOLS.md §2.1).
const CREDENTIAL_ERRORS: [i64; 6] = [10002, 10003, 10013, 20010002, 20010003, 20010013];

/// How often a host waiting for another's refresh looks for the new token.
const WAIT_STEP: Duration = Duration::from_millis(50);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    client_key: String,
    client_secret_env: String,
    token_url: Option<String>,
}

fn parse(table: toml::Table, input: &SchemeInput<'_>) -> Result<Parsed, KeyError> {
    let raw: Raw = super::fields(table)?;
    if raw.client_key.trim().is_empty() {
        return Err(KeyError::at("client_key", "must not be empty"));
    }
    let client_secret = read_secret(&raw.client_secret_env, input.env)
        .map_err(|why| KeyError::at("client_secret_env", why))?;
    let (text, key) = match raw.token_url {
        Some(url) => (url, vec!["auth".to_owned(), "token_url".to_owned()]),
        None => {
            let base = input
                .settings
                .get("base_url")
                .map(String::as_str)
                .unwrap_or(DOUYIN_BASE_URL);
            (
                format!("{}/oauth/client_token/", base.trim_end_matches('/')),
                vec!["settings".to_owned(), "base_url".to_owned()],
            )
        }
    };
    let token_url = url::Url::parse(&text)
        .ok()
        .filter(|u| u.scheme() == "http" || u.scheme() == "https")
        .ok_or_else(|| KeyError {
            key,
            message: format!("{text:?} is not an http(s) URL"),
        })?;
    Ok(Parsed {
        scheme: Arc::new(Douyin {
            client_key: raw.client_key,
            client_secret,
            token_url,
            cache: Default::default(),
            recent: Default::default(),
        }),
        default_account: super::default_account(),
    })
}

/// Douyin app credentials, and the tokens fetched with them.
pub(crate) struct Douyin {
    client_key: String,
    client_secret: Secret,
    token_url: url::Url,
    /// Tokens this process holds, by client key; the async lock makes one refresh at a time here.
    cache: tokio::sync::Mutex<HashMap<String, Cached>>,
    /// Tokens handed out lately, for redaction (readable without awaiting the lock above).
    recent: std::sync::Mutex<Vec<Secret>>,
}

#[derive(Clone)]
struct Cached {
    token: Secret,
    refresh_at_ms: i64,
    expires_at_ms: i64,
}

/// What a stored token's sealed payload holds.
#[derive(Serialize, Deserialize)]
struct Sealed {
    token: String,
    expires_at_ms: i64,
}

/// The client key and secret a call of `account` uses: the merchant's own, else the app's.
struct Client<'a> {
    key: &'a str,
    secret: &'a Secret,
    /// Where its token is kept: the app's token is shared by the plugin's accounts, a
    /// merchant's own is that account's.
    scope: Scope,
}

#[async_trait]
impl Scheme for Douyin {
    fn name(&self) -> &'static str {
        "douyin"
    }

    fn credential(&self, account: &Account) -> String {
        match &account.client {
            Some((key, _)) => key.clone(),
            None => self.client_key.clone(),
        }
    }

    fn secrets(&self, account: &Account) -> Vec<Secret> {
        let mut secrets = vec![self.client_secret.clone()];
        secrets.extend(account.client.as_ref().map(|(_, secret)| secret.clone()));
        secrets.extend(
            self.recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        secrets
    }

    fn check(&self, _request: &Outgoing) -> Result<(), String> {
        Ok(())
    }

    async fn authorize(
        &self,
        request: &mut Outgoing,
        ctx: &AuthContext<'_>,
        stale: Option<&Secret>,
    ) -> Result<Option<Secret>, AuthError> {
        let client = self.client(ctx);
        let token = self.token(ctx, &client, stale).await?;
        request
            .headers
            .push(("access-token".to_owned(), token.expose().to_owned()));
        Ok(Some(token))
    }

    fn account_fields(&self) -> &'static [&'static str] {
        &["client"]
    }

    fn refused(&self, response: &HttpResponse) -> Option<String> {
        if response.status != 200 {
            return None;
        }
        let code = serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v["err_no"].as_i64())?;
        REFRESH_CODES
            .contains(&code)
            .then(|| format!("douyin err_no {code}: the access token is invalid or expired"))
    }
}

impl Douyin {
    fn client<'a>(&'a self, ctx: &'a AuthContext<'_>) -> Client<'a> {
        match &ctx.account.client {
            Some((key, secret)) => Client {
                key,
                secret,
                scope: ctx.scope.clone(),
            },
            None => Client {
                key: &self.client_key,
                secret: &self.client_secret,
                scope: Scope::new(ctx.scope.plugin.clone(), ""),
            },
        }
    }

    /// A valid token. `stale` is one the platform just refused: it is never handed out again,
    /// unless another caller already replaced it.
    async fn token(
        &self,
        ctx: &AuthContext<'_>,
        client: &Client<'_>,
        stale: Option<&Secret>,
    ) -> Result<Secret, AuthError> {
        let mut cache = self.cache.lock().await;
        let fresh = |token: &Cached| stale != Some(&token.token) && now_ms() < token.refresh_at_ms;
        if let Some(token) = cache.get(client.key).filter(|t| fresh(t)) {
            return Ok(token.token.clone());
        }
        // Another process may have refreshed it.
        if let Some(token) = self.load(ctx, client).await.filter(|t| fresh(t)) {
            return Ok(self.keep(&mut cache, client, token));
        }
        // One refresh for every host on the backend: the lock's holder fetches; the others wait
        // for its token, until the lock would have expired (a holder that died lets it go).
        let lock_for = ctx.http_timeout + Duration::from_secs(5);
        let give_up = tokio::time::Instant::now() + lock_for + Duration::from_secs(1);
        loop {
            let until = now_ms() + lock_for.as_millis() as i64;
            let locked = ctx
                .storage
                .token_lock(&client.scope, client.key, ctx.holder, until)
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %crate::error::full_message(&e), "cannot take the token refresh lock; refreshing anyway");
                    true
                });
            if locked || tokio::time::Instant::now() >= give_up {
                let result = self.refresh(ctx, client, &fresh).await;
                if locked
                    && let Err(e) = ctx
                        .storage
                        .token_unlock(&client.scope, client.key, ctx.holder)
                        .await
                {
                    tracing::warn!(error = %crate::error::full_message(&e), "cannot release the token refresh lock");
                }
                return match result {
                    Ok(token) => Ok(self.keep(&mut cache, client, token)),
                    Err(error) => {
                        // A token that has not expired yet still works: keep using it.
                        let still_valid = cache
                            .get(client.key)
                            .filter(|t| stale != Some(&t.token) && now_ms() < t.expires_at_ms)
                            .cloned();
                        match still_valid {
                            Some(token) => {
                                tracing::warn!(
                                    ?error,
                                    "douyin token refresh failed; the current token is still valid"
                                );
                                Ok(token.token)
                            }
                            None => Err(error),
                        }
                    }
                };
            }
            tokio::time::sleep(WAIT_STEP).await;
            if let Some(token) = self.load(ctx, client).await.filter(|t| fresh(t)) {
                return Ok(self.keep(&mut cache, client, token));
            }
        }
    }

    /// Under the refresh lock: the stored token if another host refreshed it meanwhile, else a
    /// fetched one, stored for the others.
    async fn refresh(
        &self,
        ctx: &AuthContext<'_>,
        client: &Client<'_>,
        fresh: &(dyn Fn(&Cached) -> bool + Sync),
    ) -> Result<Cached, AuthError> {
        if let Some(token) = self.load(ctx, client).await.filter(|t| fresh(t)) {
            return Ok(token);
        }
        let token = self.fetch(ctx, client).await?;
        let payload = serde_json::to_vec(&Sealed {
            token: token.token.expose().to_owned(),
            expires_at_ms: token.expires_at_ms,
        })
        .expect("a token serializes");
        let stored = StoredToken {
            sealed: seal_key(client).seal(&payload, &aad(client)),
            refresh_at_ms: token.refresh_at_ms,
        };
        if let Err(e) = ctx
            .storage
            .token_put(&client.scope, client.key, &stored)
            .await
        {
            tracing::warn!(error = %crate::error::full_message(&e), "cannot cache the douyin token");
        }
        Ok(token)
    }

    fn keep(
        &self,
        cache: &mut HashMap<String, Cached>,
        client: &Client<'_>,
        token: Cached,
    ) -> Secret {
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if !recent.contains(&token.token) {
            recent.push(token.token.clone());
            let excess = recent.len().saturating_sub(4);
            recent.drain(..excess);
        }
        let secret = token.token.clone();
        cache.insert(client.key.to_owned(), token);
        secret
    }

    /// The token another host stored, if it opens.
    async fn load(&self, ctx: &AuthContext<'_>, client: &Client<'_>) -> Option<Cached> {
        let stored = ctx
            .storage
            .token_get(&client.scope, client.key)
            .await
            .ok()??;
        let payload = seal_key(client).open(&stored.sealed, &aad(client))?;
        let sealed: Sealed = serde_json::from_slice(&payload).ok()?;
        Some(Cached {
            token: Secret::new(sealed.token),
            refresh_at_ms: stored.refresh_at_ms,
            expires_at_ms: sealed.expires_at_ms,
        })
    }

    async fn fetch(&self, ctx: &AuthContext<'_>, client: &Client<'_>) -> Result<Cached, AuthError> {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "client_key": client.key,
            "client_secret": client.secret.expose(),
        });
        let failed = |why: String| AuthError::Other(format!("douyin client_token: {why}"));
        let request = HttpRequest {
            method: Method::Post,
            url: self.token_url.clone(),
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            query: Vec::new(),
            body: Some(serde_json::to_vec(&body).expect("json serializes")),
            timeout: ctx.http_timeout,
            max_response_bytes: 64 * 1024,
        };
        let response = ctx
            .transport
            .send(request)
            .await
            .map_err(|e| failed(format!("{e:?}")))?;
        if !(200..300).contains(&response.status) {
            return Err(failed(format!("HTTP {}", response.status)));
        }
        let answer: serde_json::Value = serde_json::from_slice(&response.body)
            .map_err(|_| failed("the answer is not JSON".to_owned()))?;
        let data = &answer["data"];
        let code = data["error_code"].as_i64().unwrap_or(0);
        let description = data["description"].as_str().unwrap_or("").to_owned();
        if code != 0 {
            let message = format!("douyin client_token refused: error_code {code} {description}");
            tracing::warn!(plugin = %ctx.scope.plugin, code, "douyin client_token refused");
            return Err(if CREDENTIAL_ERRORS.contains(&code) {
                AuthError::Unauthorized(message)
            } else {
                AuthError::Other(message)
            });
        }
        let token = data["access_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| failed("no access_token in the answer".to_owned()))?;
        let expires_in = data["expires_in"].as_i64().unwrap_or(7200).max(1);
        // Refresh five minutes early (less for short-lived tokens): a token in use must not
        // expire between our check and the platform's.
        let margin_s = (expires_in / 2).min(300);
        tracing::info!(plugin = %ctx.scope.plugin, expires_in, "fetched a douyin client_token");
        let now = now_ms();
        Ok(Cached {
            token: Secret::new(token),
            refresh_at_ms: now + (expires_in - margin_s) * 1000,
            expires_at_ms: now + expires_in * 1000,
        })
    }
}

/// The key a client's tokens are sealed with: only holders of its client secret can open them.
fn seal_key(client: &Client<'_>) -> SealKey {
    SealKey::derive(client.secret.expose().as_bytes(), "douyin client_token")
}

fn aad(client: &Client<'_>) -> Vec<u8> {
    place(&[
        &client.scope.plugin,
        &client.scope.account,
        client.key,
        "client_token",
    ])
}
