//! `signed-http`: the only way out of the sandbox.
//!
//! Policy, in order: the URL must be on the plugin's allowlist; the guest may not set what the
//! host owns (the scheme's parameters, auth and framing headers); the request waits for the rate
//! limiter; the plugin's auth scheme authorises it for the call's account; it leaves through the
//! plugin's transport (whose resolver is the egress guard, `transport/egress.rs`), with no
//! redirect followed and the answer capped in size and time; secrets are scrubbed from the answer
//! before the guest sees it (an allowed host could echo the request back). When the scheme says
//! the platform refused the credential, it is refreshed once and the request sent once more.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::auth::{Account, AuthContext, AuthError, Outgoing};
use crate::limiter::Permit;
use crate::runtime::PluginContext;
use crate::runtime::bindings::latest::coupon::adapter::signed_http::{
    self, HttpError, Method, Request, Response,
};
use crate::runtime::caps::HostState;
use crate::secret::{redact_bytes, redact_str};
use crate::store::Scope;
use crate::transport::{self, HttpRequest, HttpResponse, TransportError};

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
        let result = send(
            &plugin,
            &mut self.account,
            &self.scope,
            request,
            chrono::Utc::now(),
            &waited,
        )
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
    pub(crate) async fn pace(
        &self,
        account: &Account,
        waited: &AtomicU64,
    ) -> Result<(Permit, Option<Permit>), HttpError> {
        let refused = |crate::limiter::WouldWait(wait): crate::limiter::WouldWait| {
            HttpError::Connect(format!(
                "not sent: the plugin is rate-limited for another {} ms",
                wait.as_millis()
            ))
        };
        let permit = self
            .limiter
            .acquire(MAX_LIMITER_WAIT)
            .await
            .map_err(refused)?;
        // An account with a limit of its own waits for it too, under the app's.
        let own = match self.account_limiter(account) {
            Some(limiter) => Some(limiter.acquire(MAX_LIMITER_WAIT).await.map_err(refused)?),
            None => None,
        };
        let total = permit.waited + own.as_ref().map(|p| p.waited).unwrap_or_default();
        waited.fetch_add(total.as_millis() as u64, Ordering::Relaxed);
        crate::metrics::limiter_wait(&self.name, total);
        Ok((permit, own))
    }
}

/// Checks, paces, authorises and sends one request of the guest's, for `account`. `waited`
/// collects the time spent waiting for the rate limiter (see [`PluginContext::pace`]). When the
/// platform refuses the credential, a token scheme gets one fresh token and one retry; if it is
/// still refused, the account is refreshed (one more retry) or marked for re-authorization, and
/// `account` becomes the account as it is now.
pub(crate) async fn send(
    plugin: &PluginContext,
    account: &mut std::sync::Arc<Account>,
    scope: &Scope,
    request: Request,
    now: chrono::DateTime<chrono::Utc>,
    waited: &AtomicU64,
) -> Result<Response, HttpError> {
    let outgoing = check(plugin, request)?;
    // Held until the response is read: the limiter counts the request until then.
    let _permit = plugin.pace(account, waited).await?;
    let (mut response, used) = authorized(plugin, account, scope, &outgoing, now, None).await?;
    let Some(mut why) = plugin.scheme.refused(&response) else {
        return Ok(to_guest(response));
    };
    if used.is_some() {
        // Expired or revoked: one refresh (shared with concurrent callers), one retry.
        tracing::info!(plugin = %plugin.name, "the platform refused the token; refreshing once");
        let _second = plugin.pace(account, waited).await?;
        response = authorized(plugin, account, scope, &outgoing, now, used.as_ref())
            .await?
            .0;
        why = match plugin.scheme.refused(&response) {
            None => return Ok(to_guest(response)),
            Some(why) => why,
        };
    }
    if let Some(fresh) = plugin.refusals.refused(&plugin.name, account, &why).await {
        *account = fresh;
        let _third = plugin.pace(account, waited).await?;
        response = authorized(plugin, account, scope, &outgoing, now, None)
            .await?
            .0;
    }
    Ok(to_guest(response))
}

/// Authorises `outgoing` for `account` and sends it; returns the answer and the credential used.
async fn authorized(
    plugin: &PluginContext,
    account: &Account,
    scope: &Scope,
    outgoing: &Outgoing,
    now: chrono::DateTime<chrono::Utc>,
    stale: Option<&crate::secret::Secret>,
) -> Result<(HttpResponse, Option<crate::secret::Secret>), HttpError> {
    let ctx = AuthContext {
        scope,
        account,
        storage: &plugin.storage,
        transport: plugin.transport.as_ref(),
        http_timeout: Duration::from_millis(plugin.config.limits.http_timeout_ms),
        holder: &plugin.holder,
        now,
    };
    let mut request = outgoing.clone();
    let used = plugin
        .scheme
        .authorize(&mut request, &ctx, stale)
        .await
        .map_err(auth_error)?;
    Ok((execute(plugin, account, request).await?, used))
}

/// The policy checks, before anything is paced or sent: the request as the host will send it.
fn check(plugin: &PluginContext, request: Request) -> Result<Outgoing, HttpError> {
    let url = url::Url::parse(&request.url)
        .map_err(|e| HttpError::Denied(format!("invalid URL: {e}")))?;
    if !plugin.config.allowed_hosts.iter().any(|h| h.matches(&url)) {
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
    let mut seen = HashSet::new();
    for (name, _) in &request.params {
        if !seen.insert(name.as_str()) {
            return Err(HttpError::Denied(format!("parameter {name:?} given twice")));
        }
    }
    let method = match request.method {
        Method::Get => transport::Method::Get,
        Method::Post => transport::Method::Post,
    };
    match (method, &request.body) {
        (transport::Method::Get, Some(_)) => {
            return Err(HttpError::Denied("a GET request has no body".to_owned()));
        }
        (transport::Method::Post, Some(_)) if !request.params.is_empty() => {
            return Err(HttpError::Denied(
                "a request carries either params or a body, not both".to_owned(),
            ));
        }
        _ => {}
    }
    let outgoing = Outgoing {
        method,
        url,
        headers: request.headers,
        params: request.params,
        body: request.body,
    };
    plugin.scheme.check(&outgoing).map_err(HttpError::Denied)?;
    Ok(outgoing)
}

/// Sends an authorised request and reads the answer within the plugin's caps, scrubbed of the
/// call's secrets.
async fn execute(
    plugin: &PluginContext,
    account: &Account,
    request: Outgoing,
) -> Result<HttpResponse, HttpError> {
    let limits = &plugin.config.limits;
    let mut headers = request.headers;
    let (query, body) = match (request.method, request.body) {
        (transport::Method::Get, _) => (request.params, None),
        (transport::Method::Post, Some(body)) => (Vec::new(), Some(body)),
        (transport::Method::Post, None) => {
            headers.push((
                "content-type".to_owned(),
                "application/x-www-form-urlencoded;charset=utf-8".to_owned(),
            ));
            (Vec::new(), Some(transport::form_encode(&request.params)))
        }
    };
    let response = plugin
        .transport
        .send(HttpRequest {
            method: request.method,
            url: request.url,
            headers,
            query,
            body,
            timeout: Duration::from_millis(limits.http_timeout_ms),
            max_response_bytes: u64::from(limits.max_response_kib) * 1024,
        })
        .await
        .map_err(|e| match e {
            TransportError::Denied(why) => HttpError::Denied(why),
            TransportError::Connect(why) => HttpError::Connect(why),
            TransportError::Timeout => HttpError::Timeout,
            TransportError::TooLarge => HttpError::TooLarge,
            TransportError::Other(why) => HttpError::Other(why),
        })?;
    let secrets = plugin.scheme.secrets(account);
    let headers = response
        .headers
        .into_iter()
        .map(|(name, value)| {
            let value = redact_str(&value, &secrets);
            (name, value)
        })
        .collect();
    let body = redact_bytes(&response.body, &secrets).unwrap_or(response.body);
    Ok(HttpResponse {
        status: response.status,
        headers,
        body,
    })
}

fn to_guest(response: HttpResponse) -> Response {
    Response {
        status: response.status,
        headers: response.headers,
        body: response.body,
    }
}

fn auth_error(error: AuthError) -> HttpError {
    match error {
        AuthError::Unauthorized(why) => HttpError::Unauthorized(why),
        AuthError::Other(why) => HttpError::Other(why),
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
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;
    use crate::runtime::tests::test_plugin;
    use crate::transport::Transport;

    const TOP_PLUGIN: &str = r#"
allowed_hosts = ["https://eco.taobao.com"]
auth = { scheme = "top", app_key = "12345678", app_secret_env = "APP_SECRET", session_env = "SESSION", sign_method = "md5" }
"#;

    /// A transport that records what would go out and answers 200 with the request's own body.
    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<HttpRequest>>,
    }

    #[async_trait]
    impl Transport for Recorder {
        async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
            let body = request.body.clone().unwrap_or_default();
            self.sent.lock().unwrap().push(request);
            Ok(HttpResponse {
                status: 200,
                headers: vec![("x-echo".into(), String::from_utf8_lossy(&body).into_owned())],
                body,
            })
        }
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

    async fn send_with(
        transport: Arc<Recorder>,
        request: Request,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Response, HttpError> {
        let (_dir, plugin, mut account) = test_plugin(TOP_PLUGIN, Some(transport)).await;
        let scope = Scope::new(plugin.name.clone(), account.name.clone());
        send(
            &plugin,
            &mut account,
            &scope,
            request,
            now,
            &AtomicU64::new(0),
        )
        .await
    }

    async fn denied(request: Request) -> String {
        let recorder = Arc::new(Recorder::default());
        match send_with(recorder.clone(), request, chrono::Utc::now()).await {
            Err(HttpError::Denied(why)) => {
                assert!(recorder.sent.lock().unwrap().is_empty(), "nothing is sent");
                why
            }
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

    #[tokio::test]
    async fn signs_what_it_sends_adds_the_system_parameters_and_scrubs_the_answer() {
        let now = chrono::DateTime::parse_from_rfc3339("2016-01-01T04:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let recorder = Arc::new(Recorder::default());
        let answer = send_with(
            recorder.clone(),
            request(GATEWAY, &[("method", "m"), ("blank", " ")], &[]),
            now,
        )
        .await
        .unwrap();
        let sent = recorder.sent.lock().unwrap().pop().unwrap();
        let body = sent.body.unwrap();
        let map: BTreeMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
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
            crate::auth::top::sign(
                &unsigned,
                "app-secret-value",
                crate::auth::top::SignMethod::Md5
            )
        );
        // The echo carried the session: the guest sees it scrubbed, in the body and the headers.
        let echoed = String::from_utf8(answer.body).unwrap();
        assert!(
            !echoed.contains("session-value") && echoed.contains("session=***"),
            "{echoed}"
        );
        assert!(
            answer
                .headers
                .iter()
                .all(|(_, v)| !v.contains("session-value"))
        );
    }
}

/// The egress guard seen through the capability: names that resolve to loopback are refused,
/// IP literals the operator listed are reached, redirects come back to the guest unfollowed.
#[cfg(test)]
mod egress_tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::runtime::tests::test_plugin;

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

    /// Sends `request` through a plugin on the real network transport (with the egress guard).
    async fn send_get(
        allowed: &str,
        allow_private: bool,
        request: Request,
    ) -> Result<Response, HttpError> {
        let plugin_toml =
            format!("allowed_hosts = [{allowed:?}]\nallow_private_addresses = {allow_private}\n");
        let (_dir, plugin, mut account) = test_plugin(&plugin_toml, None).await;
        let scope = Scope::new(plugin.name.clone(), account.name.clone());
        send(
            &plugin,
            &mut account,
            &scope,
            request,
            chrono::Utc::now(),
            &AtomicU64::new(0),
        )
        .await
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
        let origin = format!("http://localhost:{port}");
        let answer = send_get(&origin, false, get(&format!("{origin}/x"))).await;
        match answer {
            Err(HttpError::Denied(why)) => assert!(why.contains("localhost"), "{why}"),
            other => panic!("expected a denial, got {other:?}"),
        }
        assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the server");
    }

    #[tokio::test]
    async fn the_opt_in_and_listed_ip_literals_reach_loopback() {
        let (port, hits) = serve(OK).await;
        for (origin, allow_private) in [
            (format!("http://localhost:{port}"), true),
            (format!("http://127.0.0.1:{port}"), false),
        ] {
            let answer = send_get(&origin, allow_private, get(&format!("{origin}/x")))
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
        let origin = format!("http://127.0.0.1:{port}");
        let answer = send_get(&origin, false, get(&format!("{origin}/x")))
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
