//! Breaks the contract by reporting a recipient twice: every recipient of a send is failed, and
//! the first one twice. `coupon-host check` must refuse it.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

fn hostile_send(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let mut outcome = all_unknown(&req.recipients, "not-sent", "this guest sends nothing");
    if let Some(first) = outcome.failed.first().cloned() {
        outcome.failed.push(first);
    }
    Ok(outcome)
}
