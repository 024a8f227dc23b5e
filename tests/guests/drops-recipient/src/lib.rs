//! Breaks the contract by dropping a recipient: every recipient of a send but the last is
//! failed, and the last is never reported. `coupon-host check` must refuse it.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

fn hostile_send(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let kept = req.recipients.len().saturating_sub(1);
    Ok(all_unknown(
        &req.recipients[..kept],
        "not-sent",
        "this guest sends nothing",
    ))
}
