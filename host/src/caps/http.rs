//! `signed-http`: the only way out of the sandbox.
//!
//! Policy, in order: the URL must be on the plugin's allowlist; the guest may not set what the
//! host owns (auth parameters and headers, framing headers); the plugin's auth scheme is applied;
//! no redirect is followed; the answer is capped in size and time; secrets are scrubbed from it
//! before the guest sees it (an allowed host could echo the request back).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::caps::{HostState, PluginContext};
use crate::config::Auth;
use crate::runtime::bindings::latest::coupon::adapter::signed_http::{
    self, HttpError, Method, Request, Response,
};
use crate::secret::{Secret, redact_bytes, redact_str};
use crate::signing::top;

/// TOP system parameters the host adds; a guest that sets one is refused.
const TOP_RESERVED: &[&str] = &[
    "app_key",
    "session",
    "timestamp",
    "v",
    "sign_method",
    "sign",
];

/// Headers the host or the HTTP stack owns.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "access-token",
    "authorization",
    "proxy-authorization",
    "cookie",
];

impl signed_http::Host for HostState {
    async fn send(&mut self, request: Request) -> wasmtime::Result<Result<Response, HttpError>> {
        self.http_requests += 1;
        let limit = self.plugin.config.limits.max_http_requests;
        if self.http_requests > limit {
            return Ok(Err(HttpError::Denied(format!(
                "more than {limit} requests in one call (limits.max_http_requests)"
            ))));
        }
        let plugin = self.plugin.clone();
        Ok(plugin.send(request, chrono::Utc::now()).await)
    }
}

impl PluginContext {
    pub(crate) async fn send(
        &self,
        request: Request,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Response, HttpError> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| HttpError::Denied(format!("invalid URL: {e}")))?;
        if !self.config.allowed_hosts.iter().any(|h| h.matches(&url)) {
            let origin = url.origin().ascii_serialization();
            return Err(HttpError::Denied(format!(
                "{origin} is not in allowed_hosts"
            )));
        }
        for (name, _) in &request.headers {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(HttpError::Denied(format!(
                    "header {name:?} is set by the host"
                )));
            }
        }

        let params = self.signed_params(&request, now)?;
        let prepared = Prepared {
            method: request.method,
            url,
            headers: request.headers,
            params,
            body: request.body,
        };
        match &self.config.auth {
            Auth::Douyin(auth) => {
                let token = self.douyin_token(auth, None).await?;
                let response = self.execute(&prepared, Some(&token)).await?;
                if !token_refused(&response) {
                    return Ok(response);
                }
                // Expired or revoked: one refresh (shared with concurrent callers), one retry.
                tracing::info!(plugin = %self.name, "douyin token refused; refreshing once");
                let fresh = self.douyin_token(auth, Some(&token)).await?;
                self.execute(&prepared, Some(&fresh)).await
            }
            _ => self.execute(&prepared, None).await,
        }
    }

    /// Sends a checked, signed request and reads the answer within the plugin's caps.
    async fn execute(
        &self,
        prepared: &Prepared,
        access_token: Option<&Secret>,
    ) -> Result<Response, HttpError> {
        let limits = &self.config.limits;
        let method = match prepared.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
        };
        let mut builder = self
            .http
            .request(method, prepared.url.clone())
            .timeout(Duration::from_millis(limits.http_timeout_ms));
        for (name, value) in &prepared.headers {
            builder = builder.header(name, value);
        }
        if let Some(token) = access_token {
            builder = builder.header("access-token", token.expose());
        }
        builder = match (prepared.method, &prepared.body) {
            (Method::Get, Some(_)) => {
                return Err(HttpError::Denied("a GET request has no body".to_owned()));
            }
            (Method::Get, None) => builder.query(&prepared.params),
            (Method::Post, Some(_)) if !prepared.params.is_empty() => {
                return Err(HttpError::Denied(
                    "a request carries either params or a body, not both".to_owned(),
                ));
            }
            (Method::Post, Some(body)) => builder.body(body.clone()),
            (Method::Post, None) => builder
                .header(
                    "content-type",
                    "application/x-www-form-urlencoded;charset=utf-8",
                )
                .body(form_encode(&prepared.params)),
        };

        let mut response = builder.send().await.map_err(transport_error)?;
        let status = response.status().as_u16();
        let max = u64::from(limits.max_response_kib) * 1024;
        if response.content_length().is_some_and(|len| len > max) {
            return Err(HttpError::TooLarge);
        }
        let secrets = self.secrets();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes());
                (name.as_str().to_owned(), redact_str(&value, &secrets))
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() as u64 + chunk.len() as u64 > max {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let body = redact_bytes(&body, &secrets).unwrap_or(body);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// The parameters as sent: the guest's, plus the auth scheme's, signed.
    fn signed_params(
        &self,
        request: &Request,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(String, String)>, HttpError> {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &request.params {
            if !seen.insert(name.as_str()) {
                return Err(HttpError::Denied(format!("parameter {name:?} given twice")));
            }
        }
        match &self.config.auth {
            Auth::None | Auth::Douyin(_) => Ok(request.params.clone()),
            Auth::Top(auth) => {
                if request.body.is_some() {
                    return Err(HttpError::Denied(
                        "TOP requests carry params, not a body".to_owned(),
                    ));
                }
                let mut params = BTreeMap::new();
                for (name, value) in &request.params {
                    if TOP_RESERVED.contains(&name.as_str()) {
                        return Err(HttpError::Denied(format!(
                            "parameter {name:?} is set by the host"
                        )));
                    }
                    // TOP neither signs nor sends blank values; dropping them keeps the two in step.
                    if !top::is_blank(name) && !top::is_blank(value) {
                        params.insert(name.clone(), value.clone());
                    }
                }
                params.insert("app_key".into(), auth.app_key.clone());
                params.insert("timestamp".into(), top::timestamp(now));
                params.insert("v".into(), "2.0".into());
                params.insert("sign_method".into(), auth.sign_method.as_str().into());
                if let Some(session) = &auth.session {
                    params.insert("session".into(), session.expose().to_owned());
                }
                let sign = top::sign(&params, auth.app_secret.expose(), auth.sign_method);
                params.insert("sign".into(), sign);
                Ok(params.into_iter().collect())
            }
        }
    }
}

/// A request after policy checks and signing, ready to send (again, after a token refresh).
struct Prepared {
    method: Method,
    url: url::Url,
    headers: Vec<(String, String)>,
    params: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

/// Whether a Douyin answer says the access token is invalid or expired.
fn token_refused(response: &Response) -> bool {
    response.status == 200
        && serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v["err_no"].as_i64())
            .is_some_and(|code| crate::caps::douyin::REFRESH_CODES.contains(&code))
}

fn form_encode(params: &[(String, String)]) -> Vec<u8> {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish().into_bytes()
}

/// Sorts a transport failure into "never left" (connect) and "may have been applied" (timeout).
/// The URL is stripped: on a GET it carries the session.
fn transport_error(error: reqwest::Error) -> HttpError {
    let error = error.without_url();
    if error.is_connect() {
        HttpError::Connect(error.to_string())
    } else if error.is_builder() {
        HttpError::Other(error.to_string())
    } else {
        // Timed out, or the connection broke after the request was written: either way the
        // platform may have applied it.
        HttpError::Timeout
    }
}
