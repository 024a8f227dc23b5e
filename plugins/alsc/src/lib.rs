//! The alsc adapter component: glue between the `coupon:adapter` world and [`api`], which
//! holds every decision and is tested natively.
#![allow(
    unsafe_code,
    reason = "wit-bindgen's generate!/export! emit the canonical-ABI glue as unsafe code; api.rs forbids unsafe"
)]

wit_bindgen::generate!({ path: "../../wit/adapter@0.1.0", world: "plugin" });
// The conversions between the WIT records and top-common's plain types, and `glue::send`.
top_common::wit_glue!();

pub mod api;

use coupon::adapter::{settings, types as t};
use exports::coupon::adapter::adapter::Guest;

/// The exported `coupon:adapter/adapter` implementation.
pub struct Alsc;
// Only the component exports the ABI symbols: native linkers reject the `:` in their names, and
// natively the imports are `unreachable!()` stubs anyway, so native tests cover `api` only.
#[cfg(target_arch = "wasm32")]
export!(Alsc);

impl Guest for Alsc {
    fn describe() -> t::AdapterInfo {
        glue::info_to_wit(&api::INFO)
    }

    fn send_coupon(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
        let req = glue::send_request_from_wit(req);
        api::send_coupon(&req, &settings::get, glue::send)
            .map(glue::outcome_to_wit)
            .map_err(glue::error_to_wit)
    }

    fn query_coupons(req: t::QueryRequest) -> Result<Vec<t::Coupon>, t::AdapterError> {
        let recipient = glue::recipient_from_wit(req.recipient);
        let coupons = api::query_coupons(&recipient, &req.options, &settings::get, glue::send)
            .map_err(glue::error_to_wit)?;
        Ok(coupons.into_iter().map(glue::coupon_to_wit).collect())
    }
}
