//! The Douyin client_token: fetched by the host with the client key/secret, cached in memory and
//! in storage (so separate processes share it) until shortly before it expires, refreshed by one
//! caller at a time, and refreshed once more when the platform calls it invalid or expired.

use std::time::Duration;

use crate::caps::PluginContext;
use crate::config::DouyinAuth;
use crate::runtime::bindings::latest::coupon::adapter::signed_http::HttpError;
use crate::secret::Secret;
use crate::store::now_ms;

/// Platform answers that mean "get a new token and try once more" (PROTOCOLS.md §2.4).
pub(crate) const REFRESH_CODES: [i64; 2] = [28001003, 28001008];

/// Token errors that mean the client key or secret is wrong: permanent (PROTOCOLS.md §2.1).
const CREDENTIAL_ERRORS: [i64; 6] = [10002, 10003, 10013, 20010002, 20010003, 20010013];

#[derive(Clone)]
pub(crate) struct CachedToken {
    pub(crate) token: Secret,
    refresh_at_ms: i64,
}

impl PluginContext {
    /// A valid token. `stale` is one the platform just refused: it is never handed out again,
    /// unless another caller already replaced it.
    pub(crate) async fn douyin_token(
        &self,
        auth: &DouyinAuth,
        stale: Option<&Secret>,
    ) -> Result<Secret, HttpError> {
        let mut cached = self.token.lock().await;
        let usable =
            |token: &CachedToken| stale != Some(&token.token) && now_ms() < token.refresh_at_ms;
        if let Some(token) = cached.as_ref().filter(|t| usable(t)) {
            return Ok(token.token.clone());
        }
        // Another process may have refreshed it.
        if let Ok(Some((token, refresh_at_ms))) = self.store.token_get(&self.name, &auth.client_key)
        {
            let token = CachedToken {
                token,
                refresh_at_ms,
            };
            if usable(&token) {
                self.remember(&token.token);
                *cached = Some(token.clone());
                return Ok(token.token);
            }
        }
        let token = self.fetch_token(auth).await?;
        if let Err(e) = self.store.token_put(
            &self.name,
            &auth.client_key,
            &token.token,
            token.refresh_at_ms,
        ) {
            tracing::warn!(plugin = %self.name, error = %e, "cannot cache the douyin token");
        }
        self.remember(&token.token);
        *cached = Some(token.clone());
        Ok(token.token)
    }

    fn remember(&self, token: &Secret) {
        let mut recent = self.recent_tokens.lock().unwrap_or_else(|p| p.into_inner());
        if !recent.contains(token) {
            recent.push(token.clone());
            let excess = recent.len().saturating_sub(4);
            recent.drain(..excess);
        }
    }

    async fn fetch_token(&self, auth: &DouyinAuth) -> Result<CachedToken, HttpError> {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "client_key": auth.client_key,
            "client_secret": auth.client_secret.expose(),
        });
        let failed = |why: String| HttpError::Other(format!("douyin client_token: {why}"));
        let response = self
            .http
            .post(auth.token_url.clone())
            .timeout(Duration::from_millis(self.config.limits.http_timeout_ms))
            .json(&body)
            .send()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| failed(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(failed(format!("HTTP {status}")));
        }
        let answer: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| failed("the answer is not JSON".to_owned()))?;
        let data = &answer["data"];
        let code = data["error_code"].as_i64().unwrap_or(0);
        let description = data["description"].as_str().unwrap_or("").to_owned();
        if code != 0 {
            let message = format!("douyin client_token refused: error_code {code} {description}");
            tracing::warn!(plugin = %self.name, code, "douyin client_token refused");
            return Err(if CREDENTIAL_ERRORS.contains(&code) {
                HttpError::Unauthorized(message)
            } else {
                HttpError::Other(message)
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
        tracing::info!(plugin = %self.name, expires_in, "fetched a douyin client_token");
        Ok(CachedToken {
            token: Secret::new(token),
            refresh_at_ms: now_ms() + (expires_in - margin_s) * 1000,
        })
    }
}
