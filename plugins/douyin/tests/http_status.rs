//! How a non-200 HTTP status from the Douyin gateway is classified.

use douyin::api::{ErrorClass, HttpResponse, RATE_LIMIT_RETRY_AFTER_MS, read_answer};

fn status(code: u16) -> HttpResponse {
    HttpResponse {
        status: code,
        headers: vec![("x-tt-logid".into(), "20261123abc".into())],
        body: b"<html>busy</html>".to_vec(),
    }
}

#[test]
fn http_429_is_rate_limited_and_asks_for_the_documented_wait() {
    let (_, answer) = read_answer(Ok(status(429)));
    let error = answer.unwrap_err();
    assert_eq!(error.class, ErrorClass::RateLimited);
    assert_eq!(error.code, "http.429");
    assert_eq!(error.retry_after_ms, Some(RATE_LIMIT_RETRY_AFTER_MS));
}

#[test]
fn other_5xx_are_transient() {
    for code in [500, 502, 503, 504] {
        let (_, answer) = read_answer(Ok(status(code)));
        let error = answer.unwrap_err();
        assert_eq!(error.class, ErrorClass::Transient, "{code}");
        assert_eq!(error.retry_after_ms, None);
    }
}
