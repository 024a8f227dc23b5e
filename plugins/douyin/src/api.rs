//! Everything the douyin adapter decides, as pure functions over plain types (no WIT types).
//!
//! `lib.rs` converts the WIT records to these types and passes the `settings.get` and
//! `signed-http.send` imports in as closures, so the whole send and query flow, including calls that
//! fail half way, is tested natively with the fixtures under `fixtures/`.
//!
//! Wire conventions: `docs/PLATFORMS.md` § douyin and PROTOCOLS.md §2.
//!
//! * Send: `POST {base_url}/api/promotion/v1/coupon/send_coupon_to_designated_user/`, one call per
//!   recipient and unit of quantity, each with its own `merchant_coupon_id` (the platform's
//!   idempotency key), so resending a request with the same idempotency key issues nothing twice.
//! * Query: `POST {base_url}/api/promotion/v1/coupon/get_coupon_receive_info/` for one open id.
//! * The host adds the `access-token` header and refreshes the token itself; nothing here sees it.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use adapter_kit::Lookup;
use adapter_kit::contract::RecipientKind;
/// `CouponInfo` is what the platform said about one issued coupon (`data.coupon_info`):
/// `coupon_id`, `coupon_name`, `discount_amount` and `min_pay_amount` (fen), `valid_begin_time`
/// and `valid_end_time` (unix seconds); every field is optional. `CouponState` `held` is
/// `coupon_status` 10 (待使用), `used` 20 and `expired` 30 (convention); `claimable` is not
/// reported by this API.
pub use adapter_kit::contract::{CouponState, IssuedCoupon as CouponInfo, Recipient, SendRequest};
use adapter_kit::json::{Field, Items, Obj, from_value};
pub use adapter_kit::{ErrorClass, HttpError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[cfg(test)]
mod tests;

/// The platform name for `describe`.
pub const PLATFORM: &str = "douyin";
/// The adapter's own version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The host batches to this. Every recipient costs one call per unit of quantity.
pub const MAX_RECIPIENTS_PER_CALL: u32 = 20;
/// Every call carries a `merchant_coupon_id` derived from the idempotency key, which the platform
/// deduplicates: a resend answers the first `coupon_info` and issues nothing.
pub const IDEMPOTENT_SEND: bool = true;
/// The operations this adapter implements.
pub const OPERATIONS: [&str; 2] = ["send-coupon", "query-coupons"];

/// The Douyin open API root when neither `base_url` setting nor option is given.
pub const DEFAULT_BASE_URL: &str = "https://open.douyin.com";
/// The path of the send API under `base_url`.
pub const SEND_PATH: &str = "/api/promotion/v1/coupon/send_coupon_to_designated_user/";
/// The path of the query API under `base_url`.
pub const QUERY_PATH: &str = "/api/promotion/v1/coupon/get_coupon_receive_info/";
/// The most coupons one recipient may get in one request (one call each).
pub const MAX_QUANTITY: u32 = 10;
/// `coupon_status` 10 (待使用): the only value the query page documents.
pub const QUERY_COUPON_STATUS: u32 = 10;
/// `send_coupon_to_designated_user`: "接口QPS限制为100/appid" (the send API page).
pub const QPS_PER_APP: u32 = 100;
/// How long to wait after the platform said "too frequent" (29005012, 28003018).
pub const RATE_LIMIT_RETRY_AFTER_MS: u32 = 1000;

/// The contract's `adapter-error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterError {
    /// What the host does with it.
    pub class: ErrorClass,
    /// The platform's `err_no` as decimal, or one of this adapter's codes (`config`, `http.503`…).
    pub code: String,
    /// For people: the platform's `err_msg` / `err_tips` (with its `log_id`), or ours.
    pub message: String,
    /// Set for the "too frequent" codes.
    pub retry_after_ms: Option<u32>,
}

impl AdapterError {
    /// An error with no retry hint.
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
        }
    }
}

/// adapter-kit's error as this adapter's, which has no request id: log ids go with the outcome.
impl From<adapter_kit::AdapterError> for AdapterError {
    fn from(error: adapter_kit::AdapterError) -> Self {
        Self {
            retry_after_ms: error.retry_after_ms,
            ..Self::new(error.class, error.code, error.message)
        }
    }
}

/// This adapter's error as the contract's (no request id).
impl From<AdapterError> for adapter_kit::AdapterError {
    fn from(error: AdapterError) -> Self {
        Self {
            retry_after_ms: error.retry_after_ms,
            ..Self::new(error.class, error.code, error.message)
        }
    }
}

fn invalid(code: &str, message: impl Into<String>) -> AdapterError {
    AdapterError::new(ErrorClass::InvalidRequest, code, message)
}

fn config_error(message: impl Into<String>) -> AdapterError {
    invalid("config", message)
}

/// A recipient who got every unit of the quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// As in the request.
    pub recipient: Recipient,
    /// The first unit's coupon: the contract has one `issued-coupon` per recipient.
    pub coupon: CouponInfo,
    /// The `coupon_id`s of units 2.. (quantity > 1), which the contract cannot carry: logged.
    pub extra_coupon_ids: Vec<String>,
}

/// A recipient who did not get (every unit of) the coupon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// As in the request.
    pub recipient: Recipient,
    /// Why, classified.
    pub error: AdapterError,
}

/// The WIT `send-outcome`: one entry per recipient of the request, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Recipients who got the coupon.
    pub issued: Vec<Issued>,
    /// Recipients who did not.
    pub failed: Vec<Failed>,
    /// Every `log_id` (and distinct `X-Tt-Logid` header) of the calls made, in call order.
    pub request_ids: Vec<String>,
}

/// One call for `signed-http.send`: always a POST of a JSON body, no form params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Absolute URL.
    pub url: String,
    /// Only `content-type`; the host adds `access-token`.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Vec<u8>,
}

/// The WIT `signed-http.response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers (any case).
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

/// The WIT `coupon`, from one `coupon_receive_list` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    /// `coupon_id`; empty when the platform sent none.
    pub id: String,
    /// `coupon_name`.
    pub title: Option<String>,
    /// From `coupon_status`.
    pub state: CouponState,
    /// `discount_amount` (fen).
    pub amount_fen: Option<i64>,
    /// `min_pay_amount` (fen).
    pub threshold_fen: Option<i64>,
    /// `valid_begin_time` (unix seconds).
    pub valid_from: Option<i64>,
    /// `valid_end_time` (unix seconds).
    pub valid_until: Option<i64>,
}

/// The plugin settings this adapter reads, after `--option` overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `base_url`, without a trailing `/`. Default [`DEFAULT_BASE_URL`].
    pub base_url: String,
    /// `app_id`: the mini-app appid. Required.
    pub app_id: String,
}

impl Config {
    /// Reads `base_url` and `app_id`; an option with the same key overrides the setting (the last
    /// one wins).
    pub fn resolve(
        options: &[(String, String)],
        settings: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, AdapterError> {
        let lookup = Lookup::new(options, settings);
        let base_url = lookup
            .get("base_url")
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        let base_url = base_url.trim_end_matches('/').to_owned();
        let has_host = ["https://", "http://"]
            .iter()
            .any(|scheme| base_url.strip_prefix(scheme).is_some_and(|h| !h.is_empty()));
        if !has_host {
            return Err(config_error(format!(
                "settings.base_url must be an http(s) URL such as {DEFAULT_BASE_URL}, got {base_url:?}"
            )));
        }
        let app_id = lookup.get("app_id").ok_or_else(|| {
            config_error("settings.app_id is missing: set it to the mini-app appid (tt…)")
        })?;
        Ok(Self { base_url, app_id })
    }
}

/// The `merchant_coupon_id` of one unit: `hex(sha256(idempotency_key + "\n" + open_id))[..32]`,
/// plus `-2`, `-3`… for units after the first (PLATFORMS.md conventions).
pub fn merchant_coupon_id(idempotency_key: &str, open_id: &str, unit: u32) -> String {
    let digest = Sha256::new()
        .chain_update(idempotency_key.as_bytes())
        .chain_update(b"\n")
        .chain_update(open_id.as_bytes())
        .finalize();
    let mut id: String = digest
        .iter()
        .take(16)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    if unit > 1 {
        id.push_str(&format!("-{unit}"));
    }
    id
}

#[derive(Serialize)]
struct SendBody<'a> {
    activity_id: &'a str,
    app_id: &'a str,
    open_id: &'a str,
    merchant_coupon_id: &'a str,
}

#[derive(Serialize)]
struct QueryBody<'a> {
    app_id: &'a str,
    open_id: &'a str,
    coupon_status: u32,
}

fn json_post(url: String, body: &impl Serialize) -> HttpRequest {
    // Serializing borrowed strings and integers into a Vec cannot fail.
    let body = serde_json::to_vec(body).unwrap_or_default();
    HttpRequest {
        url,
        headers: vec![("content-type".to_owned(), "application/json".to_owned())],
        body,
    }
}

/// The call that sends one unit to one open id.
pub fn build_send_request(
    config: &Config,
    activity_id: &str,
    open_id: &str,
    merchant_coupon_id: &str,
) -> HttpRequest {
    let body = SendBody {
        activity_id,
        app_id: &config.app_id,
        open_id,
        merchant_coupon_id,
    };
    json_post(format!("{}{SEND_PATH}", config.base_url), &body)
}

/// The call that lists an open id's unused coupons.
pub fn build_query_request(config: &Config, open_id: &str) -> HttpRequest {
    let body = QueryBody {
        app_id: &config.app_id,
        open_id,
        coupon_status: QUERY_COUPON_STATUS,
    };
    json_post(format!("{}{QUERY_PATH}", config.base_url), &body)
}

/// Every `err_no` this adapter knows: class and meaning (used when the answer has no message).
/// Sources: PLATFORMS.md § douyin, PROTOCOLS.md §2.4, seed 004.
pub static KNOWN_CODES: &[(i64, ErrorClass, &str)] = {
    use ErrorClass::*;
    &[
        (28001003, AuthExpired, "access_token无效"),
        (28001005, Transient, "系统内部错误,请重试"),
        (28001006, Transient, "网络调用错误,请重试"),
        (28001007, InvalidRequest, "参数不合法"),
        (28001008, AuthExpired, "access_token过期,请刷新或重新授权"),
        (
            28001012,
            InvalidRequest,
            "the user did not authorize this OpenAPI",
        ),
        (
            28001014,
            Unauthorized,
            "the app has no capability authorized",
        ),
        (
            28001015,
            InvalidRequest,
            "the access_token and open_id do not match",
        ),
        (28001016, Unauthorized, "the app is banned or offline"),
        (28001017, InvalidRequest, "unknown URI"),
        (28001018, Unauthorized, "the app lacks this capability"),
        (
            28001019,
            Unauthorized,
            "the capability is banned or offline",
        ),
        (28001020, InvalidRequest, "test app: the user is not bound"),
        (28001021, InvalidRequest, "test app: the app expired"),
        (28001052, RateLimited, "abnormal risk, try later"),
        (28001056, InvalidRequest, "the API was taken offline"),
        (28003017, RateLimited, "quota exhausted"),
        (28003018, RateLimited, "请求频率过高"),
        (
            29005001,
            CouponUnavailable,
            "the activity does not exist or has ended",
        ),
        (
            29005002,
            CouponUnavailable,
            "the activity's stock is exhausted",
        ),
        (
            29005003,
            RecipientLimit,
            "the user reached the activity's per-user limit",
        ),
        (
            29005004,
            RecipientInvalid,
            "the user is not eligible (no mini-app use in 7 days)",
        ),
        (29005012, RateLimited, "尝试过于频繁"),
        (29005077, InvalidRequest, "资源不存在"),
        // Legacy codes of the old open API.
        (2100004, Transient, "系统繁忙"),
        (2100005, InvalidRequest, "参数不合法"),
        (2190002, AuthExpired, "access_token无效"),
        (2190008, AuthExpired, "access_token过期"),
    ]
};

/// The class of a non-zero `err_no`: from [`KNOWN_CODES`], else `unknown`.
pub fn classify(err_no: i64) -> ErrorClass {
    KNOWN_CODES
        .iter()
        .find(|(code, _, _)| *code == err_no)
        .map_or(ErrorClass::Unknown, |(_, class, _)| *class)
}

/// A platform error: `code` is the `err_no`, the message the platform's (else the known meaning),
/// with the call's `log_id`.
pub fn platform_error(err_no: i64, message: &str, log_id: Option<&str>) -> AdapterError {
    let known = KNOWN_CODES.iter().find(|(code, _, _)| *code == err_no);
    let mut text = match (message.trim(), known) {
        ("", Some((_, _, meaning))) => (*meaning).to_owned(),
        ("", None) => format!("err_no {err_no} without a message"),
        (message, _) => message.to_owned(),
    };
    if let Some(id) = log_id {
        text.push_str(&format!(" (log_id {id})"));
    }
    let mut error = AdapterError::new(classify(err_no), err_no.to_string(), text);
    if matches!(err_no, 29005012 | 28003018) {
        error.retry_after_ms = Some(RATE_LIMIT_RETRY_AFTER_MS);
    }
    error
}

/// A `signed-http` failure, classified.
pub fn http_error(error: HttpError) -> AdapterError {
    use ErrorClass::{InvalidRequest, Transient, Unauthorized};
    match error {
        HttpError::Denied(why) => AdapterError::new(InvalidRequest, "http.denied", why),
        HttpError::Connect(why) => AdapterError::new(Transient, "http.connect", why),
        HttpError::Timeout => AdapterError::new(
            Transient,
            "http.timeout",
            "no answer in time; the platform may have applied the call, but a resend with the same idempotency key reuses the merchant_coupon_id and cannot issue twice",
        ),
        HttpError::TooLarge => AdapterError::new(
            Transient,
            "http.too-large",
            "the answer was larger than the host allows",
        ),
        HttpError::Unauthorized(why) => AdapterError::new(Unauthorized, "http.unauthorized", why),
        HttpError::Other(why) => AdapterError::new(Transient, "http.other", why),
    }
}

/// One call's answer: its `log_id`s (body `log_id`, then an `X-Tt-Logid` header that differs), and
/// the envelope's `data` (`null` when absent) or the call's error.
///
/// Success is HTTP 200 with `err_no` 0 (a number or a numeric string). An answer without `err_no`
/// but with the older `data.error_code` envelope is read from that. Anything else that is not a
/// JSON object with a numeric code is `transient` / `bad-response`.
pub fn read_answer(
    answer: Result<HttpResponse, HttpError>,
) -> (Vec<String>, Result<Value, AdapterError>) {
    read_answer_as(&answer)
}

/// [`read_answer`], with the envelope's `data` read as the adapter's own `D` (see
/// [`adapter_kit::json`]), borrowing from the answer.
///
/// A success (HTTP 200, a JSON object with `err_no` 0) is read in one pass without building a
/// `serde_json::Value`; every other answer, and one the typed read leaves open (a key given
/// twice, an escaped key), goes through the `Value` reader, so both mean the same.
pub fn read_answer_as<'a, D: Deserialize<'a>>(
    answer: &'a Result<HttpResponse, HttpError>,
) -> (Vec<String>, Result<D, AdapterError>) {
    let response = match answer {
        Ok(response) => response,
        Err(error) => return (Vec::new(), Err(http_error(error.clone()))),
    };
    if let Some(read) = read_success(response) {
        return read;
    }
    let (log_ids, data) = read_value(response);
    let data = data.and_then(|data| {
        from_value::<D>(data).map_err(|error| {
            let message = format!("the answer's data does not have the expected shape ({error})");
            AdapterError::new(ErrorClass::Transient, "bad-response", message)
        })
    });
    (log_ids, data)
}

/// The envelope of a success, with `data` read as `D`.
#[derive(Deserialize)]
struct Envelope<'a, D> {
    #[serde(borrow, default)]
    err_no: Field<'a>,
    #[serde(borrow, default)]
    log_id: Field<'a>,
    /// Missing reads as `None` (serde's rule for `Option` fields).
    data: Option<D>,
}

/// The fast path of [`read_answer_as`]: `None` for anything but a success it reads alone.
fn read_success<'a, D: Deserialize<'a>>(
    response: &'a HttpResponse,
) -> Option<(Vec<String>, Result<D, AdapterError>)> {
    if response.status != 200 {
        return None;
    }
    // Through `Obj`: a derived struct would also take an array, field by field.
    let Obj(envelope) = serde_json::from_slice::<Obj<Envelope<'a, D>>>(&response.body).ok()?;
    let envelope = envelope?;
    if as_i64(&envelope.err_no) != Some(0) {
        return None;
    }
    let data = match envelope.data {
        Some(data) => data,
        // `data` absent or null reads as `null`, as the `Value` reader has it.
        None => from_value(Value::Null).ok()?,
    };
    let log_ids = log_ids(field_text(&envelope.log_id), response);
    Some((log_ids, Ok(data)))
}

/// The body's `log_id`, then the `X-Tt-Logid` header when it differs.
fn log_ids(body_id: Option<String>, response: &HttpResponse) -> Vec<String> {
    let mut log_ids: Vec<String> = Vec::new();
    let header_id = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-tt-logid"))
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty());
    for id in [body_id, header_id].into_iter().flatten() {
        if !log_ids.contains(&id) {
            log_ids.push(id);
        }
    }
    log_ids
}

/// [`read_answer`] through a `serde_json::Value`: every answer, success or not.
fn read_value(response: &HttpResponse) -> (Vec<String>, Result<Value, AdapterError>) {
    let json = serde_json::from_slice::<Value>(&response.body).ok();
    let body_id = json.as_ref().and_then(|v| text(v, "log_id"));
    let log_ids = log_ids(body_id, response);
    let log_id = log_ids.first().cloned();
    let with_log_id = |message: String| match &log_id {
        Some(id) => format!("{message} (log_id {id})"),
        None => message,
    };

    let status = response.status;
    if status != 200 {
        let message = with_log_id(format!("the Douyin open API answered HTTP {status}"));
        // 429 is the gateway's own "too many requests": back off like 29005012, not like a 5xx.
        let class = if status == 429 {
            ErrorClass::RateLimited
        } else {
            ErrorClass::Transient
        };
        let mut error = AdapterError::new(class, format!("http.{status}"), message);
        if status == 429 {
            error.retry_after_ms = Some(RATE_LIMIT_RETRY_AFTER_MS);
        }
        return (log_ids, Err(error));
    }
    let bad = |why: &str| {
        let message = format!("{why}: {}", snippet(&response.body));
        Err(AdapterError::new(
            ErrorClass::Transient,
            "bad-response",
            with_log_id(message),
        ))
    };
    let Some(root) = json.filter(Value::is_object) else {
        return (log_ids, bad("the answer is not a JSON object"));
    };
    let data = root.get("data").cloned().unwrap_or(Value::Null);
    let (code, message) = match root.get("err_no").and_then(as_i64) {
        Some(code) => {
            let message = text(&root, "err_msg").or_else(|| text(&root, "err_tips"));
            (code, message)
        }
        None => match data.get("error_code").and_then(as_i64) {
            Some(code) => (code, text(&data, "description")),
            None => return (log_ids, bad("the answer has no numeric err_no")),
        },
    };
    if code == 0 {
        return (log_ids, Ok(data));
    }
    let message = message.unwrap_or_default();
    let error = platform_error(code, &message, log_id.as_deref());
    (log_ids, Err(error))
}

/// The first 120 characters of a body, for messages about answers that are not JSON.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut short: String = text.chars().take(120).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    if short.is_empty() {
        "(empty body)".to_owned()
    } else {
        short
    }
}

/// An integer from a JSON number (integral floats too) or a decimal string. Takes a `Value`
/// or a typed [`Field`].
pub fn as_i64<'a>(value: impl Into<Field<'a>>) -> Option<i64> {
    let float = |f: f64| {
        // Integral and within i64 (2^63 is exactly representable, so `<` excludes it).
        let in_range = f.is_finite() && f.fract() == 0.0 && f.abs() < 9_223_372_036_854_775_808.0;
        in_range.then_some(f as i64)
    };
    match value.into() {
        Field::Number(number) => number.as_i64().or_else(|| number.as_f64().and_then(float)),
        Field::Text(text) => {
            let text = text.trim();
            text.parse::<i64>()
                .ok()
                .or_else(|| text.parse::<f64>().ok().and_then(float))
        }
        _ => None,
    }
}

/// A non-empty trimmed string from a JSON string or number field.
fn field_text(field: &Field<'_>) -> Option<String> {
    let text = match field {
        Field::Text(text) => text.trim().to_owned(),
        Field::Number(number) => number.to_string(),
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

/// [`field_text`] of `object[key]`.
fn text(object: &Value, key: &str) -> Option<String> {
    field_text(&object.get(key)?.into())
}

/// Epoch numbers at or above this are milliseconds (10^11 s is the year 5138).
const MILLIS_THRESHOLD: i64 = 100_000_000_000;

/// Unix seconds from a number or numeric string; milliseconds are tolerated and converted.
fn unix(field: &Field<'_>) -> Option<i64> {
    let time = as_i64(field)?;
    Some(if time >= MILLIS_THRESHOLD {
        time / 1000
    } else {
        time
    })
}

/// What this adapter reads of a coupon: the send's `data.coupon_info`, or one item of the
/// query's `data.coupon_receive_list`. Every field is optional.
#[derive(Debug, Default, Deserialize)]
pub struct CouponFields<'a> {
    /// The coupon id.
    #[serde(borrow, default)]
    pub coupon_id: Field<'a>,
    /// Its name.
    #[serde(borrow, default)]
    pub coupon_name: Field<'a>,
    /// 10 held, 20 used, 30 expired (query only).
    #[serde(borrow, default)]
    pub coupon_status: Field<'a>,
    /// Face value in fen.
    #[serde(borrow, default)]
    pub discount_amount: Field<'a>,
    /// Minimum spend in fen.
    #[serde(borrow, default)]
    pub min_pay_amount: Field<'a>,
    /// Start of validity, unix seconds (milliseconds tolerated).
    #[serde(borrow, default)]
    pub valid_begin_time: Field<'a>,
    /// End of validity.
    #[serde(borrow, default)]
    pub valid_end_time: Field<'a>,
}

/// A send answer's `data`.
#[derive(Debug, Default, Deserialize)]
pub struct SendData<'a> {
    /// The issued coupon.
    #[serde(borrow, default)]
    pub coupon_info: Obj<CouponFields<'a>>,
}

/// A query answer's `data`.
#[derive(Debug, Default, Deserialize)]
pub struct QueryData<'a> {
    /// The coupons; items that are not objects are skipped.
    #[serde(borrow, default)]
    pub coupon_receive_list: Items<Obj<CouponFields<'a>>>,
}

/// The coupon of a send answer's `data` (`data.coupon_info`); every field is optional.
pub fn parse_coupon_info(data: &Value) -> CouponInfo {
    // Reading a struct of tolerant fields from a `Value` cannot fail.
    let data = Obj::<SendData<'_>>::deserialize(data).unwrap_or_default();
    coupon_info(&data)
}

/// [`parse_coupon_info`] of a typed `data` (`null` or not an object: a coupon with no fields).
fn coupon_info(data: &Obj<SendData<'_>>) -> CouponInfo {
    let Some(info) = data.0.as_ref().and_then(|data| data.coupon_info.0.as_ref()) else {
        return CouponInfo::default();
    };
    CouponInfo {
        coupon_id: field_text(&info.coupon_id),
        name: field_text(&info.coupon_name),
        amount_fen: as_i64(&info.discount_amount),
        threshold_fen: as_i64(&info.min_pay_amount),
        valid_from: unix(&info.valid_begin_time),
        valid_until: unix(&info.valid_end_time),
    }
}

/// How far an error reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Only this recipient: continue with the next.
    Recipient,
    /// Every recipient would fail the same way (credentials, rate limit, transport, bad common
    /// parameters): `Err` for the request if nothing was issued yet, else fail the rest uncalled.
    Request,
    /// The activity is gone or out of stock: fail the rest uncalled.
    Coupon,
}

fn scope(error: &AdapterError, first_call: bool) -> Scope {
    use ErrorClass::*;
    match error.class {
        Unauthorized | AuthExpired | RateLimited => Scope::Request,
        CouponUnavailable => Scope::Coupon,
        // Nothing reached the platform, and the next call would go the same way.
        _ if matches!(
            error.code.as_str(),
            "http.denied" | "http.connect" | "http.timeout" | "http.other"
        ) =>
        {
            Scope::Request
        }
        // 参数不合法 before any call succeeded: the app_id or activity_id is wrong.
        InvalidRequest if first_call && error.code == "28001007" => Scope::Request,
        _ => Scope::Recipient,
    }
}

/// Sends `quantity` coupons of the activity to every recipient, one call per unit.
///
/// Returns `Err` when the request itself is wrong (quantity, activity id, idempotency key,
/// settings), or when an error that would hit every recipient (see [`Scope::Request`]) comes
/// before anything was issued. Otherwise every recipient ends up issued or failed, in request
/// order: a recipient fails with the first error among its units (the message says which units
/// were issued; a resend with the same idempotency key issues only the missing ones), and after a
/// request-wide or coupon-unavailable error the remaining recipients fail with it, uncalled.
pub fn send_coupon(
    request: &SendRequest,
    settings: &dyn Fn(&str) -> Option<String>,
    mut http: impl FnMut(&HttpRequest) -> Result<HttpResponse, HttpError>,
) -> Result<Outcome, AdapterError> {
    let quantity = request.quantity;
    if !(1..=MAX_QUANTITY).contains(&quantity) {
        let message = format!(
            "douyin sends 1 to {MAX_QUANTITY} coupons per recipient (one call each); quantity is {quantity}"
        );
        return Err(invalid("quantity", message));
    }
    let activity_id = request.coupon.trim();
    if activity_id.is_empty() {
        return Err(invalid(
            "coupon",
            "the coupon must be a douyin activity_id; it is empty",
        ));
    }
    let key = request.idempotency_key.as_str();
    if key.trim().is_empty() {
        let message = "the idempotency key is empty: every merchant_coupon_id derives from it";
        return Err(invalid("idempotency-key", message));
    }
    let config = Config::resolve(&request.options, settings)?;

    let mut outcome = Outcome::default();
    let mut issued_any = false;
    let mut calls = 0_usize;
    let mut stopped: Option<AdapterError> = None;
    let mut seen = BTreeSet::new();
    for recipient in &request.recipients {
        let fail = |outcome: &mut Outcome, error: AdapterError| {
            let recipient = recipient.clone();
            outcome.failed.push(Failed { recipient, error });
        };
        if let Err(error) = recipient.checked(RecipientKind::OpenId, PLATFORM) {
            fail(&mut outcome, error.into());
            continue;
        }
        // Sent as given, untrimmed: the merchant_coupon_id derives from exactly this text.
        let open_id = recipient.value();
        if !seen.insert(open_id) {
            let message = format!("open_id {open_id:?} is listed twice; sent once");
            fail(&mut outcome, invalid("recipient-duplicate", message));
            continue;
        }
        if let Some(error) = &stopped {
            let mut error = error.clone();
            error.message = format!("not sent because an earlier call failed: {}", error.message);
            fail(&mut outcome, error);
            continue;
        }

        let mut units: Vec<CouponInfo> = Vec::new();
        let mut failure = None;
        for unit in 1..=quantity {
            let id = merchant_coupon_id(key, open_id, unit);
            let call = build_send_request(&config, activity_id, open_id, &id);
            let first_call = calls == 0;
            calls += 1;
            let answer = http(&call);
            let (log_ids, data) = read_answer_as::<Obj<SendData<'_>>>(&answer);
            outcome.request_ids.extend(log_ids);
            match data {
                Ok(data) => {
                    units.push(coupon_info(&data));
                    issued_any = true;
                }
                Err(error) => {
                    match scope(&error, first_call) {
                        Scope::Request if !issued_any => return Err(error),
                        Scope::Request | Scope::Coupon => stopped = Some(error.clone()),
                        Scope::Recipient => {}
                    }
                    failure = Some(error);
                    break;
                }
            }
        }
        match failure {
            Some(mut error) => {
                if !units.is_empty() {
                    error.message.push_str(&partial_note(&units, quantity));
                }
                fail(&mut outcome, error);
            }
            None => {
                let mut units = units.into_iter();
                let coupon = units.next().unwrap_or_default();
                let extra_coupon_ids = units.filter_map(|unit| unit.coupon_id).collect();
                outcome.issued.push(Issued {
                    recipient: recipient.clone(),
                    coupon,
                    extra_coupon_ids,
                });
            }
        }
    }
    Ok(outcome)
}

fn partial_note(units: &[CouponInfo], quantity: u32) -> String {
    let ids: Vec<&str> = units
        .iter()
        .map(|unit| unit.coupon_id.as_deref().unwrap_or("?"))
        .collect();
    format!(
        "; {} of {quantity} coupons were issued to this recipient (coupon_id {}), and a resend with the same idempotency key does not issue them again",
        units.len(),
        ids.join(", ")
    )
}

/// Lists the open id's unused coupons (`coupon_status` 10).
pub fn query_coupons(
    recipient: &Recipient,
    options: &[(String, String)],
    settings: &dyn Fn(&str) -> Option<String>,
    mut http: impl FnMut(&HttpRequest) -> Result<HttpResponse, HttpError>,
) -> Result<Vec<Coupon>, AdapterError> {
    recipient
        .checked(RecipientKind::OpenId, PLATFORM)
        .map_err(AdapterError::from)?;
    // Sent as given, untrimmed, as the send does.
    let open_id = recipient.value();
    let config = Config::resolve(options, settings)?;
    let answer = http(&build_query_request(&config, open_id));
    let (_, data) = read_answer_as::<Obj<QueryData<'_>>>(&answer);
    Ok(query_coupons_of(&data?))
}

/// The coupons of a query answer's `data.coupon_receive_list`; items that are not objects are
/// skipped, every field is optional, and extra fields are ignored.
pub fn parse_query_response(data: &Value) -> Vec<Coupon> {
    // Reading a struct of tolerant fields from a `Value` cannot fail.
    let data = Obj::<QueryData<'_>>::deserialize(data).unwrap_or_default();
    query_coupons_of(&data)
}

/// [`parse_query_response`] of a typed `data`.
fn query_coupons_of(data: &Obj<QueryData<'_>>) -> Vec<Coupon> {
    let Some(data) = &data.0 else {
        return Vec::new();
    };
    data.coupon_receive_list
        .0
        .iter()
        .filter_map(|item| item.0.as_ref())
        .map(parse_coupon)
        .collect()
}

fn parse_coupon(item: &CouponFields<'_>) -> Coupon {
    let state = match as_i64(&item.coupon_status) {
        Some(10) => CouponState::Held,
        Some(20) => CouponState::Used,
        Some(30) => CouponState::Expired,
        _ => CouponState::Unknown,
    };
    Coupon {
        id: field_text(&item.coupon_id).unwrap_or_default(),
        title: field_text(&item.coupon_name),
        state,
        amount_fen: as_i64(&item.discount_amount),
        threshold_fen: as_i64(&item.min_pay_amount),
        valid_from: unix(&item.valid_begin_time),
        valid_until: unix(&item.valid_end_time),
    }
}
