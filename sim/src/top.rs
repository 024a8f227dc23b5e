//! The TOP gateway: merges parameters from the query string and the form body, checks them in the
//! order the real gateway does, then dispatches to an API. Every answer is JSON (a real gateway
//! answers XML when `format` is absent; the adapters always ask for JSON).

pub mod sign;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDateTime, TimeZone};
use serde_json::{Value, json};

use crate::{CallRecord, Fault, Shared, lock};

/// A TOP error answer.
#[derive(Debug, Clone)]
pub struct TopError {
    pub code: i64,
    pub msg: &'static str,
    pub sub_code: Option<&'static str>,
    pub sub_msg: Option<String>,
}

impl TopError {
    pub fn new(code: i64, msg: &'static str) -> Self {
        TopError {
            code,
            msg,
            sub_code: None,
            sub_msg: None,
        }
    }

    pub fn sub(mut self, sub_code: &'static str, sub_msg: impl Into<String>) -> Self {
        self.sub_code = Some(sub_code);
        self.sub_msg = Some(sub_msg.into());
        self
    }
}

/// How the caller asked the answer to be shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub simplify: bool,
}

impl Shape {
    /// A list field: plain array when simplified, else wrapped by its item type.
    pub fn list(&self, item: &str, values: Vec<Value>) -> Value {
        if self.simplify {
            Value::Array(values)
        } else {
            json!({ item: values })
        }
    }
}

fn request_id() -> String {
    format!("{:x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

fn error_body(error: &TopError) -> Value {
    let mut body = json!({ "code": error.code, "msg": error.msg, "request_id": request_id() });
    if let Some(sub_code) = error.sub_code {
        body["sub_code"] = json!(sub_code);
    }
    if let Some(sub_msg) = &error.sub_msg {
        body["sub_msg"] = json!(sub_msg);
    }
    json!({ "error_response": body })
}

fn json_response(value: &Value) -> Response {
    (
        [("content-type", "text/javascript;charset=UTF-8")],
        value.to_string(),
    )
        .into_response()
}

/// The response name of an API: strip `taobao.`, dots to underscores, add `_response`.
fn response_name(api: &str) -> String {
    format!(
        "{}_response",
        api.strip_prefix("taobao.").unwrap_or(api).replace('.', "_")
    )
}

fn merge_params(query: Option<&str>, body: &[u8]) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let pairs = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .chain(url::form_urlencoded::parse(body));
    for (key, value) in pairs {
        params.entry(key.into_owned()).or_insert(value.into_owned());
    }
    params
}

/// Parses `yyyy-MM-dd HH:mm:ss` in GMT+8, or epoch milliseconds.
fn parse_timestamp(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(millis) = text.parse::<i64>() {
        return chrono::Utc.timestamp_millis_opt(millis).single();
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
    let gmt8 = chrono::FixedOffset::east_opt(8 * 3600)?;
    gmt8.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Checks the protocol, as the real gateway does, in its order. Returns the app key.
fn check_protocol(shared: &Shared, params: &BTreeMap<String, String>) -> Result<String, TopError> {
    let state = lock(shared);
    let method = params.get("method").map(String::as_str).unwrap_or("");
    if method.is_empty() {
        return Err(TopError::new(21, "Missing Method"));
    }
    if !crate::taobao::knows(method) {
        return Err(TopError::new(22, "Invalid Method"));
    }
    let app_key = params.get("app_key").map(String::as_str).unwrap_or("");
    if app_key.is_empty() {
        return Err(TopError::new(28, "Missing App Key"));
    }
    let Some(app) = state.config.top_apps.iter().find(|a| a.app_key == app_key) else {
        return Err(TopError::new(29, "Invalid App Key"));
    };
    let Some(sign) = params.get("sign").filter(|s| !s.is_empty()) else {
        return Err(TopError::new(24, "Missing Signature"));
    };
    let Some(timestamp) = params.get("timestamp").filter(|s| !s.is_empty()) else {
        return Err(TopError::new(30, "Missing Timestamp"));
    };
    match parse_timestamp(timestamp) {
        Some(sent) if (state.now() - sent).num_seconds().abs() <= 600 => {}
        _ => {
            return Err(TopError::new(31, "Invalid Timestamp").sub(
                "isv.invalid-timestamp",
                "timestamp is not yyyy-MM-dd HH:mm:ss GMT+8 or is more than 10 minutes off",
            ));
        }
    }
    match params.get("v").map(String::as_str) {
        None | Some("") => return Err(TopError::new(32, "Missing Version")),
        Some("2.0") => {}
        Some(_) => return Err(TopError::new(34, "Unsupported Version")),
    }
    // The gateway takes md5 when sign_method is absent.
    let sign_method = params
        .get("sign_method")
        .map(String::as_str)
        .unwrap_or("md5");
    match sign::expected(params, &app.app_secret, sign_method) {
        // Java's byte2hex renders uppercase; the gateway compares exactly.
        Some(expected) if &expected == sign => {}
        _ => return Err(TopError::new(25, "Invalid Signature")),
    }
    if crate::taobao::needs_session(method) {
        match params.get("session").filter(|s| !s.trim().is_empty()) {
            None => return Err(TopError::new(26, "Missing Session")),
            Some(session) if !app.sessions.contains(session) => {
                return Err(TopError::new(27, "Invalid Session")
                    .sub("invalid-sessionkey", "session key is invalid or expired"));
            }
            Some(_) => {}
        }
    }
    Ok(app_key.to_owned())
}

/// Counts a call against the app's one-second window; over the limit is TOP code 7.
fn check_rate(shared: &Shared, app_key: &str) -> Result<(), TopError> {
    let mut state = lock(shared);
    let Some(qps) = state.config.qps_per_app else {
        return Ok(());
    };
    let now = Instant::now();
    let window = state.recent_calls.entry(app_key.to_owned()).or_default();
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
    {
        window.pop_front();
    }
    if window.len() >= qps as usize {
        return Err(TopError::new(7, "App Call Limited").sub(
            "isv.access-limited-by-app-access-count",
            "This ban will last 1 more seconds",
        ));
    }
    window.push_back(now);
    Ok(())
}

pub async fn handle(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = merge_params(query.as_deref(), &body);
    let api = params.get("method").cloned().unwrap_or_default();
    let sign_method = params
        .get("sign_method")
        .cloned()
        .unwrap_or_else(|| "md5".into());
    let shape = Shape {
        simplify: params.get("simplify").is_some_and(|v| v == "true"),
    };
    let record = |ok: bool, code: Option<String>| {
        lock(&shared).calls.push(CallRecord {
            api: api.clone(),
            ok,
            error_code: code,
            sign_method: sign_method.clone(),
        });
    };

    let fault = lock(&shared).take_fault(&api);
    let mut delay_after = None;
    match fault {
        Some(Fault::Status { status, .. }) => {
            record(false, Some(format!("http.{status}")));
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let page = format!(
                "<html><head><title>{status}</title></head><body><h1>{status}</h1><p>tengine</p></body></html>"
            );
            return (status, [("content-type", "text/html")], page).into_response();
        }
        Some(Fault::Body { body, .. }) => {
            record(false, Some("bad-body".into()));
            return ([("content-type", "text/javascript")], body).into_response();
        }
        Some(Fault::TopError {
            code,
            msg,
            sub_code,
            sub_msg,
            ..
        }) => {
            record(false, Some(code.to_string()));
            let mut body = json!({ "code": code, "msg": msg, "request_id": request_id() });
            if let Some(s) = sub_code {
                body["sub_code"] = json!(s);
            }
            if let Some(s) = sub_msg {
                body["sub_msg"] = json!(s);
            }
            return json_response(&json!({ "error_response": body }));
        }
        Some(Fault::Delay { millis, apply, .. }) => {
            if apply {
                delay_after = Some(Duration::from_millis(millis));
            } else {
                tokio::time::sleep(Duration::from_millis(millis)).await;
            }
        }
        None => {}
    }

    let result = check_protocol(&shared, &params)
        .and_then(|app_key| check_rate(&shared, &app_key))
        .and_then(|()| crate::taobao::dispatch(&shared, &api, &params, shape));
    let response = match result {
        Ok(mut answer) => {
            record(true, None);
            answer["request_id"] = json!(request_id());
            if shape.simplify {
                json_response(&answer)
            } else {
                json_response(&json!({ response_name(&api): answer }))
            }
        }
        Err(error) => {
            record(false, Some(error.code.to_string()));
            json_response(&error_body(&error))
        }
    };
    if let Some(delay) = delay_after {
        tokio::time::sleep(delay).await;
    }
    response
}
