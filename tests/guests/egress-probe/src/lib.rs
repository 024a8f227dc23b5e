//! Tries to reach every URL in setting `targets` (space-separated) through signed-http and
//! reports, one line per URL, what it got: `URL => denied: …`, `URL => connect: …` or
//! `URL => status N body …`. The host test checks nothing outside the policy was reached.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

use coupon::adapter::signed_http as http;

fn hostile_send(_: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let targets = coupon::adapter::settings::get("targets").unwrap_or_default();
    let mut report = Vec::new();
    for url in targets.split_whitespace() {
        let request = http::Request {
            method: http::Method::Get,
            url: url.to_owned(),
            headers: Vec::new(),
            params: Vec::new(),
            body: None,
        };
        let outcome = match http::send(&request) {
            Ok(response) => format!(
                "status {} body {:?}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ),
            Err(http::HttpError::Denied(why)) => format!("denied: {why}"),
            Err(http::HttpError::Connect(why)) => format!("connect: {why}"),
            Err(other) => format!("error: {other:?}"),
        };
        report.push(format!("{url} => {outcome}"));
    }
    Err(t::AdapterError {
        class: t::ErrorClass::Unknown,
        code: "egress".into(),
        message: report.join("\n"),
        retry_after_ms: None,
    })
}
