//! The taobao adapter component: glue between the `coupon:adapter` world and [`api`], which holds
//! every decision and is tested natively.
#![allow(
    unsafe_code,
    reason = "wit-bindgen's generate!/export! emit the canonical-ABI glue as unsafe code; api.rs forbids unsafe"
)]

wit_bindgen::generate!({ path: "../../wit/adapter@0.2.0", world: "plugin" });
// The conversions between the WIT records and top-common's plain types, and `glue::send`.
top_common::wit_glue!();

pub mod api;

use coupon::adapter::{settings, types as t};
use exports::coupon::adapter::adapter::Guest;
use top_common::contract as c;

/// What `describe` reports.
const INFO: c::AdapterInfo = c::AdapterInfo {
    platform: api::PLATFORM,
    version: api::VERSION,
    max_recipients_per_call: api::MAX_RECIPIENTS_PER_CALL,
    idempotent_send: api::IDEMPOTENT_SEND,
    recipient_kinds: &[c::RecipientKind::Nick, c::RecipientKind::OpenId],
    operations: &api::OPERATIONS,
    auth_scheme: c::AuthScheme::Top,
    // TOP limits per app key and API by contract, not in the API pages: `limits.qps` says it.
    limits: c::PlatformLimits::UNDOCUMENTED,
};

/// The exported `coupon:adapter/adapter` implementation.
pub struct Taobao;
// Only the component exports the ABI symbols: native linkers reject the `:` in their names, and
// natively the imports are `unreachable!()` stubs anyway, so native tests cover `api` only.
#[cfg(target_arch = "wasm32")]
export!(Taobao);

impl Guest for Taobao {
    fn describe() -> t::AdapterInfo {
        glue::info_to_wit(&INFO)
    }

    fn send_coupon(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
        let req = send_request(glue::send_request_from_wit(req));
        api::send_coupon(&req, &settings::get, glue::send)
            .map(|outcome| glue::outcome_to_wit(contract_outcome(outcome)))
            .map_err(glue::error_to_wit)
    }

    fn query_coupons(req: t::QueryRequest) -> Result<Vec<t::Coupon>, t::AdapterError> {
        let recipient = glue::recipient_from_wit(req.recipient);
        let coupons = api::query_coupons(&recipient, &req.options, &settings::get, glue::send)
            .map_err(glue::error_to_wit)?;
        Ok(coupons.into_iter().map(glue::coupon_to_wit).collect())
    }
}

/// The idempotency key is dropped: this API has no field to carry it (describe says so).
fn send_request(req: c::SendRequest) -> api::SendRequest {
    api::SendRequest {
        coupon: req.coupon,
        recipients: req.recipients,
        quantity: req.quantity,
        options: req.options,
    }
}

/// The platform says only the `coupon_number` of an issued coupon.
fn contract_outcome(outcome: api::Outcome) -> c::Outcome {
    let issued = outcome.issued.into_iter().map(|i| c::Issued {
        recipient: i.recipient,
        coupon: c::IssuedCoupon {
            coupon_id: i.coupon_id,
            ..c::IssuedCoupon::default()
        },
    });
    c::Outcome {
        issued: issued.collect(),
        failed: outcome.failed,
        request_ids: outcome.request_ids,
    }
}
