//! One TOP call through the host's `signed-http`: the request an adapter builds, the answer it
//! gets, and how a failed call is classified.
//!
//! The shapes mirror the WIT `signed-http` records, so an adapter's pure code takes the import as
//! a closure `FnMut(&HttpRequest) -> Result<HttpResponse, HttpError>` and native tests script it.

use serde_json::Value;

use crate::classify::rule_for;
use crate::{
    ErrorClass, HttpError, HttpResponse, TopError, TopResponse, parse_envelope_as, request_id,
};

/// One call for `signed-http.send`: always a POST of form `params`, no body, no extra headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The TOP gateway URL.
    pub url: String,
    /// Application parameters plus `method`, `format` and `simplify`; the host adds and signs the
    /// rest (`app_key`, `session`, `timestamp`, `v`, `sign_method`, `sign`).
    pub params: Vec<(String, String)>,
}

impl HttpRequest {
    /// A call of TOP API `method` on `gateway`: `method`, `format=json`, and `simplify=true` when
    /// asked for.
    ///
    /// ```
    /// let call = top_common::HttpRequest::top("https://eco.taobao.com/router/rest", "tmall.nrt.coupon.send", true)
    ///     .param("nrt_coupon_send_dto", "{}");
    /// let names: Vec<&str> = call.params.iter().map(|(name, _)| name.as_str()).collect();
    /// assert_eq!(names, ["method", "format", "simplify", "nrt_coupon_send_dto"]);
    /// ```
    pub fn top(gateway: &str, method: &str, simplify: bool) -> Self {
        let mut params = vec![
            ("method".to_owned(), method.to_owned()),
            ("format".to_owned(), "json".to_owned()),
        ];
        if simplify {
            params.push(("simplify".to_owned(), "true".to_owned()));
        }
        Self {
            url: gateway.to_owned(),
            params,
        }
    }

    /// Adds an application parameter.
    #[must_use]
    pub fn param(mut self, name: &str, value: impl Into<String>) -> Self {
        self.params.push((name.to_owned(), value.into()));
        self
    }
}

/// Whether repeating a call is safe, which decides what a timeout means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotence {
    /// Repeating the call cannot apply it twice (a read, or a send with a platform idempotency
    /// id): a timeout is `transient`.
    Idempotent,
    /// The call may have been applied and has no idempotency id (Taobao's SNS send): a timeout is
    /// `unknown`, to be reconciled with a query, never resent blindly.
    NotIdempotent,
}

/// A `signed-http` failure, classified.
///
/// `denied` is `invalid-request`, `unauthorized` is `unauthorized`, `connect`, `too-large` and
/// `other` are `transient`, and `timeout` depends on [`Idempotence`]. Codes are `http.<variant>`.
pub fn http_error(error: HttpError, idempotence: Idempotence) -> TopError {
    use ErrorClass::{InvalidRequest, Transient, Unauthorized, Unknown};
    match error {
        HttpError::Denied(why) => TopError::new(InvalidRequest, "http.denied", why),
        HttpError::Connect(why) => TopError::new(Transient, "http.connect", why),
        HttpError::Timeout => match idempotence {
            Idempotence::Idempotent => TopError::new(
                Transient,
                "http.timeout",
                "no answer in time: the platform may have applied the call, and resending it with the same idempotency id is safe",
            ),
            Idempotence::NotIdempotent => TopError::new(
                Unknown,
                "http.timeout",
                "no answer in time: the platform may have applied the call, and this API has no idempotency key, so check with query-coupons before resending",
            ),
        },
        HttpError::TooLarge => TopError::new(
            Transient,
            "http.too-large",
            "the answer was larger than the host allows",
        ),
        HttpError::Unauthorized(why) => TopError::new(Unauthorized, "http.unauthorized", why),
        HttpError::Other(why) => TopError::new(Transient, "http.other", why),
    }
}

/// One call's answer: its TOP `request_id`, and the response object (see [`parse_envelope`]) or
/// the call's classified error.
///
/// A transport failure is classified by [`http_error`]; an HTTP status other than 200 is
/// `transient` with code `http.<status>` (keeping a `request_id` if the body has one); a 200 goes
/// through [`parse_envelope`].
pub fn read_answer(
    answer: Result<HttpResponse, HttpError>,
    idempotence: Idempotence,
) -> (Option<String>, Result<Value, TopError>) {
    read_answer_as(&answer, idempotence)
}

/// [`read_answer`], with the response object read as the adapter's own `T` (see
/// [`parse_envelope_as`]), borrowing from the answer.
pub fn read_answer_as<'a, T: TopResponse<'a>>(
    answer: &'a Result<HttpResponse, HttpError>,
    idempotence: Idempotence,
) -> (Option<String>, Result<T, TopError>) {
    let response = match answer {
        Ok(response) => response,
        Err(error) => return (None, Err(http_error(error.clone(), idempotence))),
    };
    if response.status != 200 {
        let id = serde_json::from_slice::<Value>(&response.body)
            .ok()
            .and_then(|v| request_id(&v));
        let status = response.status;
        let message = format!("the TOP gateway answered HTTP {status}");
        let error = TopError::new(ErrorClass::Transient, format!("http.{status}"), message);
        return (
            id.clone(),
            Err(TopError {
                request_id: id,
                ..error
            }),
        );
    }
    match parse_envelope_as(&response.body) {
        Ok((typed, id)) => (id, Ok(typed)),
        Err(error) => (error.request_id.clone(), Err(error)),
    }
}

/// Whether an error of one call says the same about every call of the request, so that no
/// further call should be made: the app or session is refused (`unauthorized`, `auth-expired`),
/// the app must back off (`rate-limited`), the host refused or could not reach the gateway
/// (`http.denied`, `http.connect`), the adapter's settings are wrong (`config`), or the gateway
/// rejected the protocol itself (TOP codes 9, 21–24, 30–34: method, format, signature, timestamp,
/// version).
///
/// Everything else (business errors, timeouts, 5xx, unreadable answers) concerns one call only.
///
/// ```
/// use top_common::{stops_later_calls, ErrorClass, TopError};
///
/// assert!(stops_later_calls(&TopError::new(ErrorClass::RateLimited, "7", "App Call Limited")));
/// assert!(stops_later_calls(&TopError::new(ErrorClass::InvalidRequest, "31", "Invalid timestamp")));
/// assert!(!stops_later_calls(&TopError::new(ErrorClass::InvalidRequest, "isv.invalid-parameter", "")));
/// ```
pub fn stops_later_calls(error: &TopError) -> bool {
    match error.class {
        ErrorClass::Unauthorized | ErrorClass::AuthExpired | ErrorClass::RateLimited => true,
        _ => {
            matches!(
                error.code.as_str(),
                "http.denied" | "http.connect" | "config"
            ) || error.code.parse::<i64>().is_ok_and(is_protocol_error)
        }
    }
}

/// TOP codes that reject the request's protocol rather than its content: the `invalid-request`
/// rows of the classifier that match on the numeric code alone.
fn is_protocol_error(code: i64) -> bool {
    rule_for(code, None, None, None).is_some_and(|rule| {
        rule.class == ErrorClass::InvalidRequest
            && matches!(rule.when, crate::classify::When::Code(_))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(status: u16, body: &str) -> Result<HttpResponse, HttpError> {
        Ok(HttpResponse {
            status,
            body: body.as_bytes().to_vec(),
        })
    }

    #[test]
    fn builds_a_top_call() {
        let call = HttpRequest::top("http://gw/router/rest", "a.b", false).param("x", "1");
        assert_eq!(call.url, "http://gw/router/rest");
        assert_eq!(
            call.params,
            [("method", "a.b"), ("format", "json"), ("x", "1")]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn transport_failures_are_classified() {
        use ErrorClass::*;
        let cases = [
            (
                HttpError::Denied("host".into()),
                InvalidRequest,
                "http.denied",
            ),
            (
                HttpError::Connect("refused".into()),
                Transient,
                "http.connect",
            ),
            (HttpError::TooLarge, Transient, "http.too-large"),
            (
                HttpError::Unauthorized("no".into()),
                Unauthorized,
                "http.unauthorized",
            ),
            (HttpError::Other("x".into()), Transient, "http.other"),
        ];
        for (error, class, code) in cases {
            for idempotence in [Idempotence::Idempotent, Idempotence::NotIdempotent] {
                let classified = http_error(error.clone(), idempotence);
                assert_eq!((classified.class, classified.code.as_str()), (class, code));
            }
        }
    }

    #[test]
    fn a_timeout_is_transient_only_when_repeating_is_safe() {
        let idempotent = http_error(HttpError::Timeout, Idempotence::Idempotent);
        assert_eq!(
            (idempotent.class, idempotent.code.as_str()),
            (ErrorClass::Transient, "http.timeout")
        );
        let not = http_error(HttpError::Timeout, Idempotence::NotIdempotent);
        assert_eq!(
            (not.class, not.code.as_str()),
            (ErrorClass::Unknown, "http.timeout")
        );
        assert!(not.message.contains("query-coupons"));
    }

    #[test]
    fn reads_answers() {
        let (id, value) = read_answer(
            ok(200, r#"{"x_response":{"a":1,"request_id":"r1"}}"#),
            Idempotence::Idempotent,
        );
        assert_eq!(id.as_deref(), Some("r1"));
        assert_eq!(value.unwrap()["a"], 1);

        let (id, error) = read_answer(
            ok(
                200,
                r#"{"error_response":{"code":7,"msg":"App Call Limited","request_id":"r2"}}"#,
            ),
            Idempotence::Idempotent,
        );
        assert_eq!(id.as_deref(), Some("r2"));
        assert_eq!(error.unwrap_err().class, ErrorClass::RateLimited);

        let (id, error) = read_answer(ok(502, r#"{"request_id":"r3"}"#), Idempotence::Idempotent);
        let error = error.unwrap_err();
        assert_eq!(id.as_deref(), Some("r3"));
        assert_eq!(
            (
                error.class,
                error.code.as_str(),
                error.request_id.as_deref()
            ),
            (ErrorClass::Transient, "http.502", Some("r3"))
        );

        let (id, error) = read_answer(ok(503, "<html>"), Idempotence::Idempotent);
        assert_eq!((id, error.unwrap_err().code.as_str()), (None, "http.503"));

        let (id, error) = read_answer(Err(HttpError::Timeout), Idempotence::NotIdempotent);
        assert_eq!((id, error.unwrap_err().class), (None, ErrorClass::Unknown));
    }

    #[test]
    fn request_wide_errors_stop_later_calls() {
        use ErrorClass::*;
        let stops = [
            (Unauthorized, "isv.error-unauthorized"),
            (Unauthorized, "25"),
            (AuthExpired, "invalid-sessionkey"),
            (RateLimited, "isv.access-limited-by-app-access-count"),
            (InvalidRequest, "http.denied"),
            (Transient, "http.connect"),
            (InvalidRequest, "config"),
            (InvalidRequest, "9"),
            (InvalidRequest, "21"),
            (InvalidRequest, "22"),
            (InvalidRequest, "23"),
            (InvalidRequest, "24"),
            (InvalidRequest, "30"),
            (InvalidRequest, "31"),
            (InvalidRequest, "32"),
            (InvalidRequest, "33"),
            (InvalidRequest, "34"),
        ];
        for (class, code) in stops {
            assert!(
                stops_later_calls(&TopError::new(class, code, "")),
                "{class} {code}"
            );
        }
        let per_call = [
            (InvalidRequest, "isv.invalid-parameter"),
            (InvalidRequest, "41"),
            (InvalidRequest, "15"),
            (InvalidRequest, "-11"),
            (RecipientLimit, "-7"),
            (CouponUnavailable, "-3"),
            (Transient, "-9999"),
            (Transient, "http.timeout"),
            (Transient, "http.502"),
            (Transient, "bad-response"),
            (Transient, "isp.top-remote-connection-timeout"),
            (Unknown, "not-reported"),
        ];
        for (class, code) in per_call {
            assert!(
                !stops_later_calls(&TopError::new(class, code, "")),
                "{class} {code}"
            );
        }
    }
}
