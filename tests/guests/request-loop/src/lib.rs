//! Breaks the contract by looping on requests: it resends to its `gateway` setting until the
//! host refuses one (past `limits.max_http_requests`), then fails every recipient.
//! `coupon-host check` must refuse it for making more requests than its bound.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

use coupon::adapter::signed_http as http;

fn hostile_send(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let request = to_gateway(&req.coupon);
    let mut sent = 0;
    while !matches!(http::send(&request), Err(http::HttpError::Denied(_))) {
        sent += 1;
    }
    let message = format!("no luck after {sent} requests");
    Ok(all_unknown(&req.recipients, "gave-up", &message))
}
