//! `signed-http`: the only way out of the sandbox.
//!
//! Policy, in order: the URL must be on the plugin's allowlist; the guest may not set what the
//! host owns (auth parameters and headers, framing headers); the plugin's auth scheme is applied;
//! a host name is resolved through the egress guard (`caps/egress.rs`); no redirect is followed; the answer is capped in size and time; secrets are scrubbed from it
//! before the guest sees it (an allowed host could echo the request back).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::caps::{HostState, PluginContext};
use crate::config::Auth;
use crate::limiter::Permit;
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
        let waited = self.limiter_wait_ms.clone();
        let (span, started) = (platform_call_span(&plugin.name, &request), Instant::now());
        let result = plugin
            .send(request, chrono::Utc::now(), &waited)
            .instrument(span.clone())
            .await;
        self.platform_time += record_platform_call(&span, &plugin.name, &result, started);
        Ok(result)
    }
}

/// The longest one request waits for the rate limiter inside an adapter call; beyond it (a long
/// platform ban), the request is refused as never sent and the host retries the send later.
const MAX_LIMITER_WAIT: Duration = Duration::from_secs(30);

impl PluginContext {
    /// Waits for the plugin's rate limiter; refuses (as a connect error: nothing was sent) when
    /// the wait would be longer than [`MAX_LIMITER_WAIT`].
    /// The wait is added to `waited` (ms), which moves the call's deadline.
    pub(crate) async fn pace(&self, waited: &AtomicU64) -> Result<Permit, HttpError> {
        let permit = self.limiter.acquire(MAX_LIMITER_WAIT).await.map_err(
            |crate::limiter::WouldWait(wait)| {
                HttpError::Connect(format!(
                    "not sent: the plugin is rate-limited for another {} ms",
                    wait.as_millis()
                ))
            },
        )?;
        waited.fetch_add(permit.waited.as_millis() as u64, Ordering::Relaxed);
        crate::metrics::limiter_wait(&self.name, permit.waited);
        Ok(permit)
    }

    /// Checks, paces, signs and sends one request for the guest. `waited` collects the time
    /// spent waiting for the rate limiter (see [`PluginContext::pace`]).
    pub(crate) async fn send(
        &self,
        request: Request,
        now: chrono::DateTime<chrono::Utc>,
        waited: &AtomicU64,
    ) -> Result<Response, HttpError> {
        let url = url::Url::parse(&request.url)
            .map_err(|e| HttpError::Denied(format!("invalid URL: {e}")))?;
        if !self.config.allowed_hosts.iter().any(|h| h.matches(&url)) {
            let origin = url.origin().ascii_serialization();
            return Err(HttpError::Denied(format!(
                "{origin} is not in allowed_hosts"
            )));
        }
        if matches!(self.config.auth, Auth::Top(_)) && url.query().is_some() {
            // The gateway reads the query string too (and prefers it): parameters there would
            // go out unsigned, or shadow the host's own.
            return Err(HttpError::Denied(
                "TOP parameters go in params, not in the URL's query string".to_owned(),
            ));
        }
        for (name, _) in &request.headers {
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(HttpError::Denied(format!(
                    "header {name:?} is set by the host"
                )));
            }
        }

        // Held until the response is read: the limiter counts the request until then.
        let _permit = self.pace(waited).await?;
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
                let _second = self.pace(waited).await?;
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
        if let Some(canned) = &self.canned {
            // A benchmark without network: encode what would be sent, answer the canned reply.
            let form = std::hint::black_box(form_encode(&prepared.params));
            let (status, body) = canned(&prepared.params, prepared.body.as_deref());
            drop(form);
            return Ok(Response {
                status,
                headers: Vec::new(),
                body,
            });
        }
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
    if let Some(refused) = crate::caps::egress::refused_in(&error) {
        // The egress guard refused the resolved address: nothing was sent.
        return HttpError::Denied(refused.to_string());
    }
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

/// One span per outgoing request: which plugin, which API (TOP `method`, else the URL path).
fn platform_call_span(plugin: &str, request: &Request) -> tracing::Span {
    let api = match request.params.iter().find(|(name, _)| name == "method") {
        Some((_, method)) => method.clone(),
        None => url::Url::parse(&request.url)
            .map(|url| url.path().to_owned())
            .unwrap_or_default(),
    };
    tracing::info_span!(
        "platform_call",
        plugin,
        api,
        status = tracing::field::Empty,
        elapsed_ms = tracing::field::Empty
    )
}

/// Records how a request ended on its span and in metrics; returns its duration.
fn record_platform_call(
    span: &tracing::Span,
    plugin: &str,
    result: &Result<Response, HttpError>,
    started: Instant,
) -> Duration {
    let elapsed = started.elapsed();
    let status = match result {
        Ok(response) => response.status.to_string(),
        Err(HttpError::Denied(_)) => "denied".to_owned(),
        Err(HttpError::Timeout) => "timeout".to_owned(),
        Err(HttpError::Connect(_)) => "connect".to_owned(),
        Err(HttpError::TooLarge) => "too-large".to_owned(),
        Err(HttpError::Unauthorized(_)) => "unauthorized".to_owned(),
        Err(HttpError::Other(_)) => "other".to_owned(),
    };
    span.record("status", status.as_str());
    span.record("elapsed_ms", elapsed.as_millis() as u64);
    crate::metrics::platform_call(plugin, status, elapsed);
    elapsed
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::config::{Limits, PluginConfig, TopAuth, parse_allowed_host};
    use crate::signing::top::SignMethod;
    use crate::store::Store;

    fn plugin(dir: &std::path::Path) -> PluginContext {
        let config = PluginConfig {
            component: dir.join("x.wasm"),
            sha256: None,
            allowed_hosts: vec![parse_allowed_host("https://eco.taobao.com").unwrap()],
            allow_private_addresses: false,
            auth: Auth::Top(TopAuth {
                app_key: "12345678".into(),
                app_secret: Secret::new("app-secret-value"),
                session: Some(Secret::new("session-value")),
                sign_method: SignMethod::Md5,
            }),
            limits: Limits::default(),
            retry: Default::default(),
            settings: BTreeMap::new(),
        };
        let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
        let limiter = Arc::new(crate::limiter::RateLimiter::new(None, 1));
        PluginContext::new(
            "taobao".into(),
            config,
            store,
            crate::caps::egress::Clients::new().unwrap(),
            limiter,
        )
    }

    fn request(url: &str, params: &[(&str, &str)], headers: &[(&str, &str)]) -> Request {
        Request {
            method: Method::Post,
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: None,
        }
    }

    async fn denied(request: Request) -> String {
        let dir = tempfile::tempdir().unwrap();
        match plugin(dir.path())
            .send(request, chrono::Utc::now(), &AtomicU64::new(0))
            .await
        {
            Err(HttpError::Denied(why)) => why,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    const GATEWAY: &str = "https://eco.taobao.com/router/rest";

    #[tokio::test]
    async fn rejects_urls_outside_allowed_hosts() {
        for url in [
            "https://evil.example.com/router/rest",
            "http://eco.taobao.com/router/rest",
            "https://eco.taobao.com:8443/router/rest",
            "https://169.254.169.254/latest/meta-data",
            "https://127.0.0.1/router/rest",
            "not a url",
        ] {
            let why = denied(request(url, &[("method", "x")], &[])).await;
            assert!(
                why.contains("not in allowed_hosts") || why.contains("invalid URL"),
                "{url}: {why}"
            );
        }
    }

    #[tokio::test]
    async fn refuses_parameters_the_host_owns() {
        for name in [
            "app_key",
            "session",
            "timestamp",
            "v",
            "sign_method",
            "sign",
        ] {
            let why = denied(request(GATEWAY, &[(name, "x")], &[])).await;
            assert!(why.contains("set by the host"), "{name}: {why}");
        }
        let why = denied(request(GATEWAY, &[("a", "1"), ("a", "2")], &[])).await;
        assert!(why.contains("given twice"), "{why}");
        let why = denied(request(&format!("{GATEWAY}?session=x"), &[], &[])).await;
        assert!(why.contains("query string"), "{why}");
    }

    #[tokio::test]
    async fn refuses_headers_the_host_owns() {
        for name in [
            "Host",
            "access-token",
            "Authorization",
            "content-length",
            "Cookie",
        ] {
            let why = denied(request(GATEWAY, &[], &[(name, "x")])).await;
            assert!(why.contains("set by the host"), "{name}: {why}");
        }
    }

    #[test]
    fn signs_what_it_sends_and_adds_the_system_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let plugin = plugin(dir.path());
        let now = chrono::DateTime::parse_from_rfc3339("2016-01-01T04:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let params = plugin
            .signed_params(
                &request(GATEWAY, &[("method", "m"), ("blank", " ")], &[]),
                now,
            )
            .unwrap();
        let map: BTreeMap<_, _> = params.into_iter().collect();
        assert_eq!(map["timestamp"], "2016-01-01 12:00:00");
        assert_eq!(map["v"], "2.0");
        assert_eq!(map["sign_method"], "md5");
        assert_eq!(map["session"], "session-value");
        assert!(
            !map.contains_key("blank"),
            "blank values are neither signed nor sent"
        );
        let mut unsigned = map.clone();
        let sign = unsigned.remove("sign").unwrap();
        assert_eq!(
            sign,
            top::sign(&unsigned, "app-secret-value", SignMethod::Md5)
        );
    }
}

/// The egress guard seen through the capability: names that resolve to loopback are refused,
/// IP literals the operator listed are reached, redirects come back to the guest unfollowed.
#[cfg(test)]
mod egress_tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::{Limits, PluginConfig, parse_allowed_host};
    use crate::store::Store;

    /// A one-answer-fits-all HTTP server on 127.0.0.1; counts the requests it got.
    async fn serve(answer: &'static str) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buffer = [0u8; 4096];
                let _ = socket.read(&mut buffer).await;
                let _ = socket.write_all(answer.as_bytes()).await;
                let _ = socket.shutdown().await;
            }
        });
        (port, hits)
    }

    fn plugin(dir: &std::path::Path, allowed: &str, allow_private: bool) -> PluginContext {
        let config = PluginConfig {
            component: dir.join("x.wasm"),
            sha256: None,
            allowed_hosts: vec![parse_allowed_host(allowed).unwrap()],
            allow_private_addresses: allow_private,
            auth: Auth::None,
            limits: Limits::default(),
            retry: Default::default(),
            settings: BTreeMap::new(),
        };
        let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
        PluginContext::new(
            "p".into(),
            config,
            store,
            crate::caps::egress::Clients::new().unwrap(),
            Arc::new(crate::limiter::RateLimiter::new(None, 1)),
        )
    }

    fn get(url: &str) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            headers: Vec::new(),
            params: Vec::new(),
            body: None,
        }
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nreached";

    #[tokio::test]
    async fn refuses_an_allowed_name_that_resolves_to_loopback() {
        let (port, hits) = serve(OK).await;
        let dir = tempfile::tempdir().unwrap();
        let origin = format!("http://localhost:{port}");
        let answer = plugin(dir.path(), &origin, false)
            .send(
                get(&format!("{origin}/x")),
                chrono::Utc::now(),
                &AtomicU64::new(0),
            )
            .await;
        match answer {
            Err(HttpError::Denied(why)) => assert!(why.contains("localhost"), "{why}"),
            other => panic!("expected a denial, got {other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the server");
    }

    #[tokio::test]
    async fn the_opt_in_and_listed_ip_literals_reach_loopback() {
        let (port, hits) = serve(OK).await;
        let dir = tempfile::tempdir().unwrap();
        for (origin, allow_private) in [
            (format!("http://localhost:{port}"), true),
            (format!("http://127.0.0.1:{port}"), false),
        ] {
            let answer = plugin(dir.path(), &origin, allow_private)
                .send(
                    get(&format!("{origin}/x")),
                    chrono::Utc::now(),
                    &AtomicU64::new(0),
                )
                .await
                .unwrap_or_else(|e| panic!("{origin}: {e:?}"));
            assert_eq!(answer.body, b"reached", "{origin}");
        }
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn hands_a_redirect_back_without_following_it() {
        let (target, target_hits) = serve(OK).await;
        let redirect: &'static str = Box::leak(
            format!(
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target}/secret\r\n\
                 content-length: 0\r\nconnection: close\r\n\r\n"
            )
            .into_boxed_str(),
        );
        let (port, _) = serve(redirect).await;
        let dir = tempfile::tempdir().unwrap();
        let origin = format!("http://127.0.0.1:{port}");
        let answer = plugin(dir.path(), &origin, false)
            .send(
                get(&format!("{origin}/x")),
                chrono::Utc::now(),
                &AtomicU64::new(0),
            )
            .await
            .unwrap();
        assert_eq!(answer.status, 302);
        assert!(answer.body.is_empty());
        assert_eq!(
            target_hits.load(Ordering::SeqCst),
            0,
            "the target was not fetched"
        );
    }
}
