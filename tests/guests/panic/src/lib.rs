//! Panics mid-call: a trap the host classifies, after which the host keeps serving.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

fn hostile_send(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    panic!("adapter bug while sending {}", req.coupon)
}
