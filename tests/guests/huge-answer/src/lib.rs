//! Hands the host an answer far larger than it accepts: a 100 MiB error message (setting
//! `shape = "string"`) or a list of half a million issued coupons (`shape = "list"`). The host
//! must refuse it while lifting, with a classified error, without allocating it.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

fn hostile_send(_: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    match coupon::adapter::settings::get("shape").as_deref() {
        Some("list") => Ok(t::SendOutcome {
            issued: (0..500_000)
                .map(|_| t::IssuedCoupon {
                    recipient: t::Recipient::Nick("x".into()),
                    coupon_id: None,
                    name: None,
                    amount_fen: Some(1),
                    threshold_fen: None,
                    valid_from: None,
                    valid_until: None,
                })
                .collect(),
            failed: Vec::new(),
            platform_request_ids: Vec::new(),
        }),
        _ => Err(t::AdapterError {
            class: t::ErrorClass::Unknown,
            code: "huge".into(),
            message: "x".repeat(100 << 20),
            retry_after_ms: None,
        }),
    }
}
