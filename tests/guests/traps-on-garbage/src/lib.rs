//! Breaks the contract by trapping on a body it cannot read: it sends one request to its
//! `gateway` setting and panics when the answer is not text that starts like a JSON object (an
//! HTML page, random bytes, an empty body). `coupon-host check` must refuse it.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

fn hostile_send(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    if let Ok(response) = coupon::adapter::signed_http::send(&to_gateway(&req.coupon)) {
        // The bug: trusting the platform to always answer JSON.
        let text = String::from_utf8(response.body).expect("the platform answers UTF-8");
        assert!(text.trim_start().starts_with('{'), "not JSON: {text:.40}");
    }
    Ok(all_unknown(
        &req.recipients,
        "unread",
        "this guest reads no answer",
    ))
}
