//! A coupon-host adapter: the template's Taobao mapping, written directly on the WIT types.
//!
//! The host (coupon-host) owns secrets, signing, the network, storage and limits; an adapter only
//! turns a send or a query into the platform's HTTP call, and the answer back into the contract's
//! records. Everything marked REPLACE is Taobao's and is what you change for your platform:
//!
//! * send: `taobao.promotion.coupon.sns.send`, one call for up to 100 nicks (`buyer_nick`, comma
//!   separated); the answer lists who got a coupon (`coupon_results`) and who did not
//!   (`failure_buyers`).
//! * query: `taobao.qianniu.coupon.buyer.get` for one nick.
//!
//! The rules every adapter keeps (docs/WRITING_AN_ADAPTER.md in coupon-host; `coupon-host check`
//! tests them): every recipient of a send ends exactly once, issued or failed; nobody is issued
//! unless the platform said so; every failure has the error class the host acts on; never panic
//! (a panic is a trap); a few HTTP calls per recipient at most.

// The contract version is pinned HERE: wit/ is a copy of coupon-host's `wit/adapter@0.2.0`, and
// `plugin` is its world. The component then exports `coupon:adapter/adapter@0.2.0`, which is how
// the host knows what this adapter speaks. Released contract folders never change, so this keeps
// building and loading; to move to a newer contract, copy its folder over wit/ and fix what the
// compiler then points at.
wit_bindgen::generate!({ path: "wit", world: "plugin" });

use coupon::adapter::signed_http::{self as http, HttpError, Method, Request, Response};
use coupon::adapter::types::{
    AdapterError, AdapterInfo, AuthScheme, Coupon, CouponState, ErrorClass, IssuedCoupon,
    PlatformLimits, QueryRequest, Recipient, RecipientFailure, RecipientKind, SendOutcome,
    SendRequest,
};
use coupon::adapter::{log, settings};
use serde_json::Value;

/// The component's export. Only the wasm build exports it: natively (`cargo test`) the imports
/// are stubs that must not be called, and the tests call the functions below instead.
pub struct Adapter;
#[cfg(target_arch = "wasm32")]
export!(Adapter);

// REPLACE: your platform's name, APIs and limits.
const PLATFORM: &str = "taobao";
const SEND_METHOD: &str = "taobao.promotion.coupon.sns.send";
const QUERY_METHOD: &str = "taobao.qianniu.coupon.buyer.get";
/// The API takes at most 100 nicks per call; the host batches to `max-recipients-per-call`.
const MAX_NICKS: usize = 100;

impl exports::coupon::adapter::adapter::Guest for Adapter {
    /// What the host (and `coupon-host check`) learns about the adapter when it loads it.
    fn describe() -> AdapterInfo {
        AdapterInfo {
            platform: PLATFORM.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            max_recipients_per_call: MAX_NICKS as u32,
            // Taobao's send has no idempotency key: a resend after a lost answer could issue
            // twice. With `false`, the host never resends blindly after an `unknown` failure; it
            // asks query-coupons first.
            idempotent_send: false,
            recipient_kinds: vec![RecipientKind::Nick],
            operations: vec!["send-coupon".into(), "query-coupons".into()],
            // The host signs every request with the plugin's TOP credentials (`auth.scheme = "top"`
            // in its config); the adapter never sees a secret.
            auth_scheme: AuthScheme::Top,
            // The platform's documented requests per second per credential, if it has one.
            limits: PlatformLimits { qps: None },
        }
    }

    fn send_coupon(req: SendRequest) -> Result<SendOutcome, AdapterError> {
        let outcome = send_coupon(&req, &settings::get, &mut |call| http::send(call))?;
        let unknown = outcome.failed.iter();
        let unknown = unknown.filter(|f| f.error.class == ErrorClass::Unknown);
        let count = unknown.count();
        if count > 0 {
            // A line in the host's log, under the plugin's name (shown with COUPON_HOST_LOG=info).
            let message = format!("account {}: {count} outcomes unknown", req.account);
            log::log(log::Level::Info, &message);
        }
        Ok(outcome)
    }

    fn query_coupons(req: QueryRequest) -> Result<Vec<Coupon>, AdapterError> {
        query_coupons(&req, &settings::get, &mut |call| http::send(call))
    }
}

/// `settings.get`, or a test's stand-in.
type Settings<'a> = &'a dyn Fn(&str) -> Option<String>;
/// `signed-http.send`, or a test's scripted platform.
type Http<'a> = &'a mut dyn FnMut(&Request) -> Result<Response, HttpError>;

/// A failure, with the platform's code and message kept for people.
fn error(class: ErrorClass, code: &str, message: impl Into<String>) -> AdapterError {
    AdapterError {
        class,
        code: code.into(),
        message: message.into(),
        retry_after_ms: None,
    }
}

/// A setting: the call's `--option KEY=VALUE` first, then the plugin's `settings` in the config.
fn setting(options: &[(String, String)], settings: Settings, key: &str) -> Option<String> {
    let option = options
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone());
    option.or_else(|| settings(key))
}

/// REPLACE: the platform's endpoint. TOP has one gateway URL for every API, set in the plugin's
/// `settings = { gateway = "…" }`; its origin must be in the plugin's `allowed_hosts`.
fn gateway(options: &[(String, String)], settings: Settings) -> Result<String, AdapterError> {
    setting(options, settings, "gateway").ok_or_else(|| {
        let message = "the plugin has no `gateway` setting (settings = { gateway = \"…\" })";
        error(ErrorClass::InvalidRequest, "config", message)
    })
}

/// REPLACE: one call of a TOP API. Only the application parameters: the host adds `app_key`,
/// `session`, `timestamp`, `v`, `sign_method` and the signature, then form-encodes the POST.
fn top_call(gateway: &str, method: &str, params: &[(&str, &str)]) -> Request {
    let mut all = vec![("method", method), ("format", "json")];
    all.extend_from_slice(params);
    Request {
        method: Method::Post,
        url: gateway.into(),
        headers: Vec::new(),
        params: all
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: None,
    }
}

pub fn send_coupon(
    req: &SendRequest,
    settings: Settings,
    send: Http,
) -> Result<SendOutcome, AdapterError> {
    // A whole-request error fails every recipient with it (the host does that).
    if req.quantity != 1 {
        let message = format!("{SEND_METHOD} sends one coupon per recipient");
        return Err(error(ErrorClass::InvalidRequest, "quantity", message));
    }
    if req.coupon.is_empty() || !req.coupon.bytes().all(|b| b.is_ascii_digit()) {
        let message = format!(
            "a Taobao coupon_id is a decimal number, not {:?}",
            req.coupon
        );
        return Err(error(ErrorClass::InvalidRequest, "coupon-id", message));
    }
    let gateway = gateway(&req.options, settings)?;

    let mut outcome = SendOutcome {
        issued: Vec::new(),
        failed: Vec::new(),
        platform_request_ids: Vec::new(),
    };
    // Recipients the platform cannot take fail here, without a call; the rest are sent.
    let mut nicks: Vec<(&Recipient, &str)> = Vec::new();
    for recipient in &req.recipients {
        let refused = match recipient {
            Recipient::Nick(nick) if nick.trim().is_empty() || nick.contains(',') => {
                Some("a nick must not be empty or contain ',' (TOP's list separator)")
            }
            // The same nick twice would get two coupons: send it once, fail the repeat.
            Recipient::Nick(nick) if nicks.iter().any(|(_, n)| n == nick) => {
                Some("this nick is already in the request; it is sent once")
            }
            Recipient::Nick(nick) => {
                nicks.push((recipient, nick));
                None
            }
            _ => Some("taobao takes nick recipients only"),
        };
        if let Some(why) = refused {
            let error = error(ErrorClass::InvalidRequest, "recipient", why);
            outcome.failed.push(RecipientFailure {
                recipient: recipient.clone(),
                error,
            });
        }
    }

    // The host sends at most `max-recipients-per-call` recipients at once: one platform call.
    if nicks.is_empty() {
        return Ok(outcome);
    }
    if nicks.len() > MAX_NICKS {
        let message = format!("at most {MAX_NICKS} recipients per call (describe says so)");
        return Err(error(ErrorClass::InvalidRequest, "batch-size", message));
    }
    let list: Vec<&str> = nicks.iter().map(|(_, nick)| *nick).collect();
    let params = [
        ("coupon_id", req.coupon.as_str()),
        ("buyer_nick", &list.join(",")),
    ];
    let answer = send(&top_call(&gateway, SEND_METHOD, &params));
    // No idempotency key: a lost answer may hide an issued coupon, so it is `unknown`.
    let (request_id, answer) = read_answer(answer, SEND_METHOD, ErrorClass::Unknown);
    outcome.platform_request_ids.extend(request_id);
    // A call that failed as a whole fails the whole request with its error.
    let body = answer?;

    // REPLACE: reading the platform's success answer.
    let issued = list_of(&body, "coupon_results", "coupon_result");
    let refused = list_of(&body, "failure_buyers", "error_message");
    for (recipient, nick) in nicks {
        let recipient = recipient.clone();
        let names = |entry: &&Value| entry["buyer_nick"].as_str() == Some(nick);
        if let Some(entry) = issued.iter().find(names) {
            outcome.issued.push(IssuedCoupon {
                recipient,
                coupon_id: text(&entry["coupon_number"]),
                name: None,
                amount_fen: None,
                threshold_fen: None,
                valid_from: None,
                valid_until: None,
            });
        } else if let Some(entry) = refused.iter().find(names) {
            let reason = entry["reason"].as_str().unwrap_or("no reason given");
            let error = error(failure_class(reason), "failure_buyers", reason);
            outcome.failed.push(RecipientFailure { recipient, error });
        } else {
            // The platform answered but did not name this buyer: maybe issued, maybe not.
            // Never guess "failed" here: the host would send again.
            let message = "the platform's answer does not name this recipient";
            let error = error(ErrorClass::Unknown, "not-reported", message);
            outcome.failed.push(RecipientFailure { recipient, error });
        }
    }
    Ok(outcome)
}

pub fn query_coupons(
    req: &QueryRequest,
    settings: Settings,
    send: Http,
) -> Result<Vec<Coupon>, AdapterError> {
    let Recipient::Nick(nick) = &req.recipient else {
        let message = format!("{QUERY_METHOD} looks up nicks only");
        return Err(error(ErrorClass::InvalidRequest, "recipient", message));
    };
    let gateway = gateway(&req.options, settings)?;
    let answer = send(&top_call(&gateway, QUERY_METHOD, &[("buyer_nick", nick)]));
    // A read is safe to repeat: a lost answer is `transient`.
    let (_, answer) = read_answer(answer, QUERY_METHOD, ErrorClass::Transient);
    let body = answer?;
    // Never answer "no coupons" for a failure: the host would take it as "not there" and send.
    if body["is_success"] == Value::Bool(false) {
        return Err(error(
            ErrorClass::Transient,
            "not-success",
            "is_success is false",
        ));
    }
    // REPLACE: the platform's coupon records. Amounts in fen, times in unix seconds UTC.
    let coupons = list_of(&body, "coupons", "coupon_info_do")
        .iter()
        .map(|item| Coupon {
            id: text(&item["id"]).unwrap_or_default(),
            template_id: text(&item["template_id"]),
            title: text(&item["title"]),
            state: match item["status"].as_i64() {
                Some(1) => CouponState::Held,
                Some(0) => CouponState::Claimable,
                _ => CouponState::Unknown,
            },
            amount_fen: yuan_to_fen(&item["amount"]),
            threshold_fen: yuan_to_fen(&item["start_fee"]),
            valid_from: item["start_time"].as_str().and_then(gmt8_to_unix),
            valid_until: item["end_time"].as_str().and_then(gmt8_to_unix),
            claim_url: text(&item["apply_url"]),
        });
    Ok(coupons.collect())
}

/// REPLACE: reads one call's answer: the TOP `request_id`, and the API's response object or the
/// call's classified error. `lost` is the class of an answer that never arrived whole (a
/// timeout, a garbled body): for a send without an idempotency key it is `unknown`, since the
/// platform may have applied the call.
fn read_answer(
    answer: Result<Response, HttpError>,
    method: &str,
    lost: ErrorClass,
) -> (Option<String>, Result<Value, AdapterError>) {
    use ErrorClass as C;
    let response = match answer {
        Ok(response) => response,
        Err(failure) => {
            let error = match failure {
                HttpError::Denied(why) => error(C::InvalidRequest, "http.denied", why),
                // Nothing reached the platform: safe to retry.
                HttpError::Connect(why) => error(C::Transient, "http.connect", why),
                HttpError::Timeout => error(lost, "http.timeout", "no answer in time"),
                HttpError::TooLarge => error(lost, "http.too-large", "the answer was too large"),
                HttpError::Unauthorized(why) => error(C::Unauthorized, "http.unauthorized", why),
                HttpError::Other(why) => error(C::Transient, "http.other", why),
            };
            return (None, Err(error));
        }
    };
    let json: Option<Value> = serde_json::from_slice(&response.body).ok();
    let body = json.unwrap_or(Value::Null);
    let status = response.status;
    if !(200..300).contains(&status) {
        let class = if status == 429 {
            C::RateLimited
        } else {
            C::Transient
        };
        return (
            None,
            Err(error(
                class,
                &format!("http.{status}"),
                format!("the gateway answered HTTP {status}"),
            )),
        );
    }
    // A TOP error: {"error_response": {"code", "msg", "sub_code", "sub_msg", "request_id"}}.
    let top_error = &body["error_response"];
    if top_error.is_object() {
        let code = top_error["code"].as_i64().unwrap_or(0);
        let sub_code = top_error["sub_code"].as_str().unwrap_or("");
        let message = [&top_error["msg"], &top_error["sub_msg"]]
            .iter()
            .filter_map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(": ");
        let code_text = if sub_code.is_empty() {
            code.to_string()
        } else {
            sub_code.to_owned()
        };
        let error = error(top_error_class(code, sub_code), &code_text, message);
        return (text(&top_error["request_id"]), Err(error));
    }
    // A success is wrapped as `<method without "taobao.", dots as _>_response`.
    let key = format!(
        "{}_response",
        method.trim_start_matches("taobao.").replace('.', "_")
    );
    let response = body.get(key.as_str()).filter(|r| r.is_object()).cloned();
    match response {
        Some(response) => (text(&response["request_id"]), Ok(response)),
        None => {
            let message = format!("HTTP {status} without {key} or error_response");
            (None, Err(error(lost, "unexpected-answer", message)))
        }
    }
}

/// REPLACE: the platform's error codes as the host's classes (TOP's, in short).
fn top_error_class(code: i64, sub_code: &str) -> ErrorClass {
    match code {
        _ if sub_code.contains("limited-by") => ErrorClass::RateLimited,
        _ if sub_code.starts_with("isp.") => ErrorClass::Transient,
        // Call limits; service unavailable.
        4..=8 => ErrorClass::RateLimited,
        10 => ErrorClass::Transient,
        // The seller's session expired: the host refreshes it and retries once.
        27 | 44 => ErrorClass::AuthExpired,
        // Wrong app key or secret, no session, or no permission.
        11..=13 | 25 | 26 | 28 | 29 | 53 => ErrorClass::Unauthorized,
        _ if sub_code == "isv.coupon-error" => ErrorClass::CouponUnavailable,
        _ => ErrorClass::InvalidRequest,
    }
}

/// REPLACE: why one buyer of a send got nothing (the platform's words).
fn failure_class(reason: &str) -> ErrorClass {
    if ["优惠券不存在", "过期", "已发完"]
        .iter()
        .any(|w| reason.contains(w))
    {
        ErrorClass::CouponUnavailable
    } else if ["超过", "上限", "限制"].iter().any(|w| reason.contains(w)) {
        ErrorClass::RecipientLimit
    } else {
        ErrorClass::RecipientInvalid
    }
}

/// The items of a TOP list field: `{"field": {"item": [...]}}`, or `{"field": [...]}` when the
/// call asked for `simplify`. Anything else is an empty list, never a panic.
fn list_of<'a>(body: &'a Value, field: &str, item: &str) -> &'a [Value] {
    let value = &body[field];
    let items = value.get(item).unwrap_or(value);
    items.as_array().map_or(&[], Vec::as_slice)
}

/// A string or a number as text (platforms send ids as either).
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Yuan (`10`, `"9.5"`, `"0.01"`) to fen, exactly; anything else is unknown.
fn yuan_to_fen(value: &Value) -> Option<i64> {
    let text = text(value)?;
    let (yuan, fen) = text.split_once('.').unwrap_or((&text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if yuan.is_empty() || !digits(yuan) || fen.len() > 2 || !digits(fen) {
        return None;
    }
    let fen: i64 = format!("{fen:0<2}").parse().ok()?;
    yuan.parse::<i64>().ok()?.checked_mul(100)?.checked_add(fen)
}

/// `yyyy-MM-dd HH:mm:ss` in GMT+8 (TOP's time format) to unix seconds.
fn gmt8_to_unix(text: &str) -> Option<i64> {
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let bytes = text.as_bytes();
    if bytes.len() != 19 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b' ' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - 8 * 3600)
}

/// Native unit tests (`cargo test`): the mapping against scripted answers, no host needed.
#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Result<Response, HttpError> {
        Ok(Response {
            status,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        })
    }

    fn request(nicks: &[&str]) -> SendRequest {
        SendRequest {
            account: "default".into(),
            coupon: "48552".into(),
            recipients: nicks
                .iter()
                .map(|n| Recipient::Nick(n.to_string()))
                .collect(),
            quantity: 1,
            idempotency_key: "key".into(),
            options: Vec::new(),
        }
    }

    fn settings(key: &str) -> Option<String> {
        (key == "gateway").then(|| "https://gw.example/router/rest".into())
    }

    #[test]
    fn every_recipient_ends_once() {
        let body = r#"{"promotion_coupon_sns_send_response":{"request_id":"r1",
            "coupon_results":{"coupon_result":[{"coupon_number":7,"buyer_nick":"张三"}]},
            "failure_buyers":{"error_message":[{"buyer_nick":"李四","reason":"买家不存在"}]}}}"#;
        let mut calls = 0;
        let outcome = send_coupon(
            &request(&["张三", "李四", "王五", "张三"]),
            &settings,
            &mut |_| {
                calls += 1;
                answer(200, body)
            },
        )
        .unwrap();
        assert_eq!(calls, 1);
        assert_eq!(outcome.issued.len(), 1);
        assert_eq!(outcome.issued[0].coupon_id.as_deref(), Some("7"));
        let classes: Vec<_> = outcome.failed.iter().map(|f| f.error.class).collect();
        // The repeat, the refused buyer, and the one the answer does not name.
        assert_eq!(
            classes,
            [
                ErrorClass::InvalidRequest,
                ErrorClass::RecipientInvalid,
                ErrorClass::Unknown
            ]
        );
        assert_eq!(outcome.platform_request_ids, ["r1"]);
    }

    #[test]
    fn errors_are_classified() {
        let top = |code: i64, sub: &str| {
            let body = format!(r#"{{"error_response":{{"code":{code},"sub_code":"{sub}"}}}}"#);
            read_answer(answer(200, &body), SEND_METHOD, ErrorClass::Unknown)
                .1
                .unwrap_err()
                .class
        };
        assert_eq!(top(7, ""), ErrorClass::RateLimited);
        assert_eq!(top(25, ""), ErrorClass::Unauthorized);
        assert_eq!(top(27, "invalid-sessionkey"), ErrorClass::AuthExpired);
        assert_eq!(top(15, "isv.coupon-error"), ErrorClass::CouponUnavailable);
        let lost = |answer| {
            read_answer(answer, SEND_METHOD, ErrorClass::Unknown)
                .1
                .unwrap_err()
                .class
        };
        assert_eq!(lost(Err(HttpError::Timeout)), ErrorClass::Unknown);
        assert_eq!(lost(answer(502, "")), ErrorClass::Transient);
        assert_eq!(lost(answer(200, "<html>")), ErrorClass::Unknown);
    }

    #[test]
    fn amounts_and_times() {
        assert_eq!(yuan_to_fen(&Value::from(10)), Some(1000));
        assert_eq!(yuan_to_fen(&Value::from("9.5")), Some(950));
        assert_eq!(yuan_to_fen(&Value::from("x")), None);
        assert_eq!(gmt8_to_unix("2020-01-01 08:00:00"), Some(1_577_836_800));
        assert_eq!(gmt8_to_unix("2020-01-01"), None);
    }
}
