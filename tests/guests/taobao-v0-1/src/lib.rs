//! The Taobao adapter as an adapter author built it against `wit/adapter@0.1.0`, before the
//! contract gained accounts, auth schemes and limits: the same platform mapping (`api.rs` is the
//! taobao crate's), the 0.1.0 bindings and glue. The host must keep loading and serving it.
#![allow(
    unsafe_code,
    reason = "wit-bindgen's generate!/export! emit the canonical-ABI glue as unsafe code"
)]

wit_bindgen::generate!({ path: "../../../wit/adapter@0.1.0", world: "plugin" });
top_common::wit_glue!(@v0_1);

#[path = "../../../../plugins/taobao/src"]
pub mod taobao {
    pub mod api;
}
use taobao::api;

use coupon::adapter::{settings, types as t};
use exports::coupon::adapter::adapter::Guest;
use top_common::contract as c;

/// What `describe` reports; 0.1.0 has no place for the auth scheme or limits.
const INFO: c::AdapterInfo = c::AdapterInfo {
    platform: api::PLATFORM,
    version: "0.1.0",
    max_recipients_per_call: api::MAX_RECIPIENTS_PER_CALL,
    idempotent_send: api::IDEMPOTENT_SEND,
    recipient_kinds: &[c::RecipientKind::Nick, c::RecipientKind::OpenId],
    operations: &api::OPERATIONS,
    auth_scheme: c::AuthScheme::Top,
    limits: c::PlatformLimits::UNDOCUMENTED,
};

/// The exported `coupon:adapter/adapter@0.1.0` implementation.
pub struct TaobaoV01;
#[cfg(target_arch = "wasm32")]
export!(TaobaoV01);

impl Guest for TaobaoV01 {
    fn describe() -> t::AdapterInfo {
        glue::info_to_wit(&INFO)
    }

    fn send_coupon(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
        let req = glue::send_request_from_wit(req);
        let req = api::SendRequest {
            coupon: req.coupon,
            recipients: req.recipients,
            quantity: req.quantity,
            options: req.options,
        };
        api::send_coupon(&req, &settings::get, glue::send)
            .map(|outcome| {
                let issued = outcome.issued.into_iter().map(|i| c::Issued {
                    recipient: i.recipient,
                    coupon: c::IssuedCoupon {
                        coupon_id: i.coupon_id,
                        ..c::IssuedCoupon::default()
                    },
                });
                glue::outcome_to_wit(c::Outcome {
                    issued: issued.collect(),
                    failed: outcome.failed,
                    request_ids: outcome.request_ids,
                })
            })
            .map_err(glue::error_to_wit)
    }

    fn query_coupons(req: t::QueryRequest) -> Result<Vec<t::Coupon>, t::AdapterError> {
        let recipient = glue::recipient_from_wit(req.recipient);
        let coupons = api::query_coupons(&recipient, &req.options, &settings::get, glue::send)
            .map_err(glue::error_to_wit)?;
        Ok(coupons.into_iter().map(glue::coupon_to_wit).collect())
    }
}
