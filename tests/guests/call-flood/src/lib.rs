//! Floods the host in one call: thousands of signed-http requests (to the URL in setting
//! `target`), thousands of kv writes and a hundred thousand log lines. Reports how many of each
//! the host served, in its error message, for the host test to check against the caps.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

use coupon::adapter::{kv, log, signed_http as http};

fn hostile_send(_: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let target = coupon::adapter::settings::get("target").unwrap_or_default();
    let (mut http_ok, mut http_denied, mut http_other) = (0, 0, 0);
    for _ in 0..5_000 {
        let request = http::Request {
            method: http::Method::Get,
            url: target.clone(),
            headers: Vec::new(),
            params: Vec::new(),
            body: None,
        };
        match http::send(&request) {
            Ok(_) => http_ok += 1,
            Err(http::HttpError::Denied(_)) => http_denied += 1,
            Err(_) => http_other += 1,
        }
    }
    let (mut kv_ok, mut kv_refused) = (0, 0);
    for i in 0..5_000 {
        match kv::set(&format!("flood-{i}"), b"v", None) {
            Ok(()) => kv_ok += 1,
            Err(_) => kv_refused += 1,
        }
    }
    for i in 0..100_000 {
        log::log(log::Level::Info, &format!("flood line {i}"));
    }
    Err(t::AdapterError {
        class: t::ErrorClass::Unknown,
        code: "flood".into(),
        message: format!(
            "http ok={http_ok} denied={http_denied} other={http_other}; kv ok={kv_ok} refused={kv_refused}"
        ),
        retry_after_ms: None,
    })
}
