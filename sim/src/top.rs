//! The TOP gateway, `/router/rest` (PROTOCOLS.md §1).
//!
//! A request goes through: merge parameters from the query string and the form body; apply an
//! injected fault if one matches; check the protocol in the real gateway's order; count the call
//! against the app's rate; dispatch to the API's handler; wrap the answer in the envelope the
//! caller asked for. Every step's outcome is recorded as a [`CallRecord`].
//!
//! Every answer is JSON. The real gateway answers XML when `format` is absent or `xml`; the
//! adapters always ask for JSON, and an XML writer would be dead weight here.
//!
//! The checks, first failure wins (HTTP 200, `error_response`):
//!
//! | check | code | msg | sub_code |
//! |---|---|---|---|
//! | HTTP method other than GET/POST | 9 | Http Action Not Allowed | |
//! | `method` missing | 21 | Missing method | |
//! | `method` not served | 22 | Invalid method | |
//! | `app_key` missing | 28 | Missing app key | |
//! | `app_key` unknown | 29 | Invalid app Key | `isv.appkey-not-exists` |
//! | `sign` missing | 24 | Missing signature | |
//! | `sign_method` not md5/hmac/hmac-sha256 (absent = md5) | 25 | Invalid signature | |
//! | `timestamp` missing | 30 | Missing timestamp | |
//! | `timestamp` unparsable or > 10 min off | 31 | Invalid timestamp | |
//! | `v` missing | 32 | Missing version | |
//! | `v` not `2.0` | 33 | Invalid version | |
//! | `format` not json/xml | 23 | Invalid format | |
//! | signature mismatch | 25 | Invalid signature | |
//! | `session` missing (API needs one) | 26 | Missing session | |
//! | `session` unknown, of another app key, expired or revoked (checked whenever sent) | 27 | Invalid session | `invalid-sessionkey` |
//! | over `qps_per_app` | 7 | App Call Limited | `isv.access-limited-by-app-access-count` |
//!
//! Then the API's own checks (40 `isv.missing-parameter`, 41 `isv.invalid-parameter`, business
//! errors such as 15 `isv.coupon-error`, or a success envelope reporting a business failure, as
//! alsc's `biz_success: false`).

pub(crate) mod oauth;
pub(crate) mod sellers;
pub(crate) mod sign;

use std::cell::RefCell;
use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use rand::Rng;
use serde_json::{Value, json};

use self::sellers::SellerId;
use self::sign::SignMethod;
use crate::CallRecord;
use crate::dispatch::{self, Endpoint, InjectedError, Outcome};
use crate::server::ResetHandle;
use crate::state::{Shared, State, lock};

/// Request parameters, merged from the query string and the form body.
pub(crate) type Params = BTreeMap<String, String>;

/// The largest form body the simulator reads. TOP's own limit is not published; coupon calls
/// are a few kilobytes even with 999 open_uids.
pub(crate) const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How far a request's timestamp may be from the gateway's clock: "最大时间误差为10分钟".
const TIMESTAMP_WINDOW_SECS: i64 = 10 * 60;

/// A TOP API the gateway serves.
pub(crate) struct TopApi {
    /// The `method` name, e.g. `taobao.promotion.coupon.sns.send`.
    pub(crate) name: &'static str,
    /// Whether the API is tagged "需要授权" (needs the seller's `session`). A session sent to an
    /// API that does not need one is still checked, as the gateway does.
    pub(crate) needs_session: bool,
    /// Answers a call that passed every protocol check. The returned object is the response
    /// body without envelope and `request_id`; use [`Call::shape`] for list fields.
    pub(crate) handle: fn(&mut State, &Call<'_>) -> Result<Value, TopError>,
}

/// Every TOP API the simulator serves. A new platform module adds its table here.
fn apis() -> impl Iterator<Item = &'static TopApi> {
    let apis = crate::taobao::APIS
        .iter()
        .chain(crate::tmall::APIS)
        .chain(crate::alsc::APIS);
    #[cfg(test)]
    let apis = apis.chain(tests::TEST_APIS);
    apis
}

fn find_api(name: &str) -> Option<&'static TopApi> {
    apis().find(|api| api.name == name)
}

/// A call that passed the protocol checks, as a handler sees it.
pub(crate) struct Call<'a> {
    params: &'a Params,
    /// The calling app's key: idempotency ids are scoped to it (and to the seller).
    pub(crate) app_key: &'a str,
    /// The seller of the call's session (`None` without one). A handler answers with this
    /// seller's data only.
    pub(crate) seller: Option<SellerId>,
    /// How lists are to be rendered.
    pub(crate) shape: Shape,
    /// The simulator's (skewed) now.
    pub(crate) now: DateTime<Utc>,
    /// A business failure answered inside a success envelope, for the call record.
    failure: RefCell<Option<BusinessFailure>>,
}

/// What [`Call::report_failure`] noted.
struct BusinessFailure {
    code: String,
    detail: String,
}

impl Call<'_> {
    /// An application parameter, `None` when absent or blank (TOP drops blank parameters).
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        non_blank(self.params, name)
    }

    /// Notes that the success answer the handler returns reports a business failure (alsc's
    /// `biz_success: false`), so the call is recorded as failed with `code` and `detail`
    /// rather than as a success.
    pub(crate) fn report_failure(&self, code: &str, detail: impl Into<String>) {
        *self.failure.borrow_mut() = Some(BusinessFailure {
            code: code.to_owned(),
            detail: detail.into(),
        });
    }
}

/// A parameter's value, `None` when absent or blank. Blank is judged as the signer judges it, so
/// a value is either both signed and present, or neither.
fn non_blank<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|value| !sign::is_blank(value))
}

/// Whether the caller asked for `simplify=true` (compared as Java's `Boolean.parseBoolean` does).
fn wants_simplify(params: &Params) -> bool {
    params
        .get("simplify")
        .is_some_and(|value| value.eq_ignore_ascii_case("true"))
}

/// How the caller asked lists to be rendered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    simplify: bool,
}

impl Shape {
    /// A list field: a plain array with `simplify=true`; otherwise wrapped in an object keyed by
    /// the item type, e.g. `{"coupon_result": [...]}` (the Java SDK's `@ApiListField` layout).
    pub(crate) fn list(&self, item: &str, values: Vec<Value>) -> Value {
        if self.simplify {
            Value::Array(values)
        } else {
            json!({ item: values })
        }
    }
}

/// A TOP error answer: `{"error_response": {code, msg, sub_code, sub_msg, request_id}}`.
#[derive(Debug, Clone)]
pub(crate) struct TopError {
    code: i64,
    msg: String,
    sub_code: Option<String>,
    sub_msg: Option<String>,
    /// Why, for [`CallRecord::detail`]; never sent.
    detail: Option<String>,
}

impl TopError {
    pub(crate) fn new(code: i64, msg: impl Into<String>) -> TopError {
        TopError {
            code,
            msg: msg.into(),
            sub_code: None,
            sub_msg: None,
            detail: None,
        }
    }

    pub(crate) fn sub(mut self, sub_code: impl Into<String>, sub_msg: impl Into<String>) -> Self {
        self.sub_code = Some(sub_code.into());
        self.sub_msg = Some(sub_msg.into());
        self
    }

    /// A `sub_code` without `sub_msg`, as some platform errors come.
    pub(crate) fn sub_code(mut self, sub_code: impl Into<String>) -> Self {
        self.sub_code = Some(sub_code.into());
        self
    }

    pub(crate) fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Code 40, as the gateway words it: `Missing required arguments:coupon_id`.
    pub(crate) fn missing(name: &str) -> TopError {
        TopError::new(40, format!("Missing required arguments:{name}"))
            .sub("isv.missing-parameter", format!("缺少必选参数 {name}"))
    }

    /// Code 41, as the gateway words it: `Invalid arguments:coupon_id`.
    pub(crate) fn invalid(name: &str, why: impl Into<String>) -> TopError {
        TopError::new(41, format!("Invalid arguments:{name}")).sub("isv.invalid-parameter", why)
    }

    fn body(&self, request_id: &str) -> Value {
        let mut body = json!({ "code": self.code, "msg": self.msg, "request_id": request_id });
        if let Some(sub_code) = &self.sub_code {
            body["sub_code"] = json!(sub_code);
        }
        if let Some(sub_msg) = &self.sub_msg {
            body["sub_msg"] = json!(sub_msg);
        }
        json!({ "error_response": body })
    }
}

/// A request id like the gateway's (`rxvsf5lo4ufl`): 13 characters of `[0-9a-z]`.
fn request_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..13)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// The envelope key of an API's answer: strip `taobao.`, dots to underscores, add `_response`.
fn response_name(api: &str) -> String {
    let name = api.strip_prefix("taobao.").unwrap_or(api);
    format!("{}_response", name.replace('.', "_"))
}

/// The gateway's `content-type`.
const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

fn json_response(value: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, JSON_CONTENT_TYPE)],
        value.to_string(),
    )
        .into_response()
}

/// Parameters from the query string, then from the body when it is a URL-encoded form. When a
/// name comes twice the first value wins, as with a servlet's `getParameter`. A multipart body is
/// not read (no coupon API uploads files), so its parameters are missing to the gateway.
fn merge_params(query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Params {
    let is_form = content_type.is_some_and(|value| {
        value.split(';').next().is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    });
    let body: &[u8] = if is_form { body } else { b"" };
    let mut params = Params::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .chain(url::form_urlencoded::parse(body))
    {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}

/// Parses `yyyy-MM-dd HH:mm:ss` in GMT+8, or epoch milliseconds (the old Python SDK's form).
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Utc.timestamp_millis_opt(text.parse().ok()?).single();
    }
    let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
    let gmt8 = chrono::FixedOffset::east_opt(8 * 3600)?;
    Some(gmt8.from_local_datetime(&local).single()?.to_utc())
}

/// The protocol checks, in the order the real gateway applies them, then the handler. A
/// success answer comes with the business failure it reports, if any. `seller` is set as soon
/// as the session is found valid, for the call record.
fn gateway(
    state: &mut State,
    params: &Params,
    seller: &mut Option<SellerId>,
) -> Result<(Value, Option<BusinessFailure>), TopError> {
    // Messages are worded as the production gateway words them in answers seen in the wild
    // ("Invalid method", "Invalid signature", "Missing session", "Invalid app Key"), which is
    // not always the capitalisation of the documented error table.
    let method = non_blank(params, "method").ok_or_else(|| TopError::new(21, "Missing method"))?;
    let api = find_api(method).ok_or_else(|| TopError::new(22, "Invalid method"))?;
    let app_key =
        non_blank(params, "app_key").ok_or_else(|| TopError::new(28, "Missing app key"))?;
    let app_secret = state
        .top_apps
        .iter()
        .find(|app| app.app_key == app_key)
        .map(|app| app.app_secret.clone())
        .ok_or_else(|| TopError::new(29, "Invalid app Key").sub_code("isv.appkey-not-exists"))?;
    let sign = non_blank(params, "sign").ok_or_else(|| TopError::new(24, "Missing signature"))?;
    // Old TOP docs make `sign_method` optional with md5 as the default, and Java's signer falls
    // back to md5 for any name it does not know. An unknown name is answered as a bad
    // signature (25, not 22 "Invalid method"): the request is fine, its signing is not.
    let sign_method = match non_blank(params, "sign_method") {
        None => SignMethod::Md5,
        Some(name) => SignMethod::parse(name).ok_or_else(|| {
            TopError::new(25, "Invalid signature").detail(format!(
                "sign_method {name:?} is not md5, hmac or hmac-sha256"
            ))
        })?,
    };
    let timestamp =
        non_blank(params, "timestamp").ok_or_else(|| TopError::new(30, "Missing timestamp"))?;
    let now = state.now();
    match parse_timestamp(timestamp) {
        Some(sent) if (now - sent).num_seconds().abs() <= TIMESTAMP_WINDOW_SECS => {}
        Some(sent) => {
            return Err(TopError::new(31, "Invalid timestamp").detail(format!(
                "timestamp {timestamp:?} is {}s away from the gateway's clock (at most {TIMESTAMP_WINDOW_SECS}s)",
                (sent - now).num_seconds()
            )));
        }
        None => {
            return Err(TopError::new(31, "Invalid timestamp").detail(format!(
                "timestamp {timestamp:?} is neither yyyy-MM-dd HH:mm:ss (GMT+8) nor epoch milliseconds"
            )));
        }
    }
    match non_blank(params, "v") {
        None => return Err(TopError::new(32, "Missing version")),
        Some("2.0") => {}
        Some(other) => {
            return Err(TopError::new(33, "Invalid version").detail(format!("v={other:?}")));
        }
    }
    match non_blank(params, "format") {
        None | Some("json" | "xml") => {}
        Some(other) => {
            return Err(TopError::new(23, "Invalid format").detail(format!("format={other:?}")));
        }
    }
    let text = sign::string_to_sign(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let expected = sign::digest(sign_method, &app_secret, &text);
    if !sign::matches(&expected, sign) {
        // The string to sign holds the session key; the record shows it masked.
        let shown = sign::string_to_sign(
            params
                .iter()
                .map(|(k, v)| (k.as_str(), if k == "session" { "***" } else { v.as_str() })),
        );
        return Err(TopError::new(25, "Invalid signature").detail(format!(
            "{sign_method:?} over {shown:?} is {expected}, the request says {sign}"
        )));
    }
    // An API that does not need a session (the alsc send) still has one checked when it is
    // sent: the gateway resolves every session it gets.
    match non_blank(params, "session") {
        None if api.needs_session => return Err(TopError::new(26, "Missing session")),
        None => {}
        Some(session) => match state.sellers.check(session, app_key, now) {
            Ok(owner) => *seller = Some(owner),
            Err(why) => {
                return Err(TopError::new(27, "Invalid session")
                    .sub("invalid-sessionkey", "session key is invalid or expired")
                    .detail(why));
            }
        },
    }
    check_rate(state, app_key)?;
    let call = Call {
        params,
        app_key,
        seller: *seller,
        shape: Shape {
            simplify: wants_simplify(params),
        },
        now,
        failure: RefCell::new(None),
    };
    let answer = (api.handle)(state, &call)?;
    Ok((answer, call.failure.into_inner()))
}

/// Counts a call against the app's sliding one-second window; over the limit is code 7. Only
/// admitted calls count, so a client that backs off for a second gets through again.
fn check_rate(state: &mut State, app_key: &str) -> Result<(), TopError> {
    let Some(qps) = state.qps_per_app else {
        return Ok(());
    };
    let window = state.rate_windows.entry(app_key.to_owned()).or_default();
    if !crate::state::admit(window, qps) {
        return Err(TopError::new(7, "App Call Limited").sub(
            "isv.access-limited-by-app-access-count",
            "This ban will last 1 more seconds",
        ));
    }
    Ok(())
}

fn record(state: &mut State, params: &Params, outcome: Outcome) {
    let mut logged = params.clone();
    if let Some(session) = logged.get_mut("session") {
        "***".clone_into(session);
    }
    state.record_call(CallRecord {
        api: params.get("method").cloned().unwrap_or_default(),
        ok: outcome.ok,
        error_code: outcome.error_code,
        sub_code: outcome.sub_code,
        sign_method: params.get("sign_method").cloned().unwrap_or_default(),
        request_id: outcome.request_id,
        params: logged,
        detail: outcome.detail,
        seller: outcome.seller,
    });
}

/// Runs the gateway for one call and records it, all under one lock so the call is atomic.
fn answer(shared: &Shared, params: &Params) -> Value {
    let mut state = lock(shared);
    let request_id = request_id();
    let mut seller = None;
    let result = gateway(&mut state, params, &mut seller);
    let seller = seller.map(|id| state.sellers.seller(id).nick.clone());
    let (body, outcome) = match result {
        Ok((mut body, failure)) => {
            body["request_id"] = json!(request_id);
            let body = if wants_simplify(params) {
                body
            } else {
                let api = params.get("method").map(String::as_str).unwrap_or("");
                json!({ response_name(api): body })
            };
            let outcome = Outcome {
                ok: failure.is_none(),
                error_code: failure.as_ref().map(|f| f.code.clone()),
                sub_code: None,
                request_id: Some(request_id),
                detail: failure.map(|f| f.detail),
                seller,
            };
            (body, outcome)
        }
        Err(error) => {
            let body = error.body(&request_id);
            let outcome = Outcome {
                ok: false,
                error_code: Some(error.code.to_string()),
                sub_code: error.sub_code,
                request_id: Some(request_id),
                detail: error.detail,
                seller,
            };
            (body, outcome)
        }
    };
    record(&mut state, params, outcome);
    body
}

/// A gateway call as the fault dispatcher sees it.
struct Gateway<'a> {
    params: &'a Params,
}

impl Endpoint for Gateway<'_> {
    fn api(&self) -> &str {
        self.params.get("method").map_or("", String::as_str)
    }

    fn answer(&self, shared: &Shared) -> Response {
        json_response(&answer(shared, self.params))
    }

    fn record(&self, state: &mut State, outcome: Outcome) {
        record(state, self.params, outcome);
    }

    fn injected_error(&self, state: &mut State, injected: InjectedError) -> Response {
        let request_id = request_id();
        let error = TopError {
            code: injected.code,
            msg: injected.msg,
            sub_code: injected.sub_code,
            sub_msg: injected.sub_msg,
            detail: Some("injected".into()),
        };
        let outcome = Outcome {
            ok: false,
            error_code: Some(error.code.to_string()),
            sub_code: error.sub_code.clone(),
            request_id: Some(request_id.clone()),
            detail: error.detail.clone(),
            seller: None,
        };
        record(state, self.params, outcome);
        json_response(&error.body(&request_id))
    }

    fn content_type(&self) -> &'static str {
        JSON_CONTENT_TYPE
    }
}

/// The `/router/rest` handler, for every HTTP method.
pub(crate) async fn handle(AxumState(shared): AxumState<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let body = if parts.method == Method::GET {
        Default::default()
    } else {
        match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
            Ok(bytes) => bytes,
            Err(error) => {
                return (StatusCode::BAD_REQUEST, format!("coupon-sim: {error}")).into_response();
            }
        }
    };
    let params = merge_params(parts.uri.query(), content_type, &body);

    if parts.method != Method::GET && parts.method != Method::POST {
        let mut state = lock(&shared);
        let request_id = request_id();
        let error = TopError::new(9, "Http Action Not Allowed");
        let mut outcome = Outcome::failed("9");
        outcome.request_id = Some(request_id.clone());
        record(&mut state, &params, outcome);
        return json_response(&error.body(&request_id));
    }

    let reset = parts.extensions.get::<ResetHandle>();
    dispatch::serve(&shared, &Gateway { params: &params }, reset).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    /// An API whose handler panics, to show that a panic is contained.
    pub(super) const TEST_APIS: &[TopApi] = &[TopApi {
        name: "sim.test.panic",
        needs_session: false,
        handle: |_, _| panic!("deliberate test panic"),
    }];

    fn signed(api: &str) -> Params {
        let gmt8 = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
        let mut params: Params = [
            ("method", api.to_owned()),
            ("app_key", "12345678".to_owned()),
            ("session", "sim-session".to_owned()),
            ("buyer_nick", "张三".to_owned()),
            ("v", "2.0".to_owned()),
            ("sign_method", "hmac".to_owned()),
            (
                "timestamp",
                Utc::now()
                    .with_timezone(&gmt8)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let text = sign::string_to_sign(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let sign = sign::digest(SignMethod::Hmac, "sim-app-secret", &text);
        params.insert("sign".into(), sign);
        params
    }

    #[test]
    fn a_panicking_handler_is_a_500_and_the_simulator_carries_on() {
        let shared = State::new(SimConfig::demo()).unwrap().into_shared();
        let params = signed("sim.test.panic");
        let response = dispatch::answer_catching_panics(&shared, &Gateway { params: &params });
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let params = signed("taobao.qianniu.coupon.buyer.get");
        let response = dispatch::answer_catching_panics(&shared, &Gateway { params: &params });
        assert_eq!(response.status(), StatusCode::OK);
        let calls = lock(&shared).calls().to_vec();
        assert_eq!(calls[0].error_code.as_deref(), Some("panic"));
        assert_eq!(calls[0].detail.as_deref(), Some("deliberate test panic"));
        assert!(calls[1].ok, "{:?}", calls[1]);
    }

    #[test]
    fn response_names_follow_the_sdk_rule() {
        assert_eq!(
            response_name("taobao.promotion.coupon.sns.send"),
            "promotion_coupon_sns_send_response"
        );
        assert_eq!(
            response_name("taobao.qianniu.coupon.buyer.get"),
            "qianniu_coupon_buyer_get_response"
        );
        assert_eq!(
            response_name("tmall.nrt.coupon.send"),
            "tmall_nrt_coupon_send_response"
        );
    }

    #[test]
    fn query_and_form_body_merge_and_plus_is_a_space() {
        let params = merge_params(
            Some("method=a&sign=S"),
            Some("application/x-www-form-urlencoded;charset=UTF-8"),
            "buyer_nick=%E5%BC%A0%E4%B8%89,%E6%9D%8E%E5%9B%9B&timestamp=2026-01-01+00:00:00&method=b"
                .as_bytes(),
        );
        assert_eq!(params["method"], "a");
        assert_eq!(params["sign"], "S");
        assert_eq!(params["buyer_nick"], "张三,李四");
        assert_eq!(params["timestamp"], "2026-01-01 00:00:00");
    }

    #[test]
    fn a_body_that_is_not_a_form_is_not_read() {
        let params = merge_params(Some("v=2.0"), Some("application/json"), b"method=a");
        assert_eq!(params.len(), 1);
        let params = merge_params(None, None, b"method=a");
        assert!(params.is_empty());
    }

    #[test]
    fn timestamps_are_gmt8_or_epoch_millis() {
        let gmt8 = parse_timestamp("2016-01-01 12:00:00").unwrap();
        assert_eq!(gmt8.to_rfc3339(), "2016-01-01T04:00:00+00:00");
        let millis = parse_timestamp("1451620800000").unwrap();
        assert_eq!(millis, gmt8);
        for bad in [
            "2016-01-01T12:00:00",
            "2016/01/01 12:00:00",
            "-5",
            "",
            "1451620800.5",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }
}
