//! Makes `quantity` cheap host calls (`settings.get` of a key that is not set) in one call and
//! reports the count in its error: the benchmarks time one import with it, and the sandbox
//! test shows such calls are served, not capped.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

fn hostile_send(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let mut found = 0u32;
    for _ in 0..req.quantity {
        if coupon::adapter::settings::get("bench-unset").is_some() {
            found += 1;
        }
    }
    Err(t::AdapterError {
        class: t::ErrorClass::InvalidRequest,
        code: "host-calls".into(),
        message: format!("{} calls, {found} found", req.quantity),
        retry_after_ms: None,
    })
}
