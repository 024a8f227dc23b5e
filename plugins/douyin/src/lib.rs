//! The douyin adapter component: glue between the `coupon:adapter` world and [`api`], which holds
//! every decision and is tested natively.
#![allow(
    unsafe_code,
    reason = "wit-bindgen's generate!/export! emit the canonical-ABI glue as unsafe code; api.rs forbids unsafe"
)]

wit_bindgen::generate!({ path: "../../wit/adapter@0.2.0", world: "plugin" });
// The conversions between the WIT records and adapter-kit's plain types, plus `glue::send`.
adapter_kit::wit_glue! {
    /// Every call is a JSON POST; the host adds the `access-token` header.
    pub(crate) fn send(req: &crate::api::HttpRequest) -> Result<crate::api::HttpResponse, crate::api::HttpError> {
        let request = http::Request {
            method: http::Method::Post,
            url: req.url.clone(),
            headers: req.headers.clone(),
            params: Vec::new(),
            body: Some(req.body.clone()),
        };
        let response = http::send(&request).map_err(http_error_from_wit)?;
        Ok(crate::api::HttpResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

pub mod api;

use adapter_kit::contract as c;
use coupon::adapter::{log, settings, types as t};
use exports::coupon::adapter::adapter::Guest;

/// What `describe` reports.
const INFO: c::AdapterInfo = c::AdapterInfo {
    platform: api::PLATFORM,
    version: api::VERSION,
    max_recipients_per_call: api::MAX_RECIPIENTS_PER_CALL,
    idempotent_send: api::IDEMPOTENT_SEND,
    recipient_kinds: &[c::RecipientKind::OpenId],
    operations: &api::OPERATIONS,
    auth_scheme: c::AuthScheme::Douyin,
    limits: c::PlatformLimits {
        qps: Some(api::QPS_PER_APP),
    },
};

/// The exported `coupon:adapter/adapter` implementation.
pub struct Douyin;
// Only the component exports the ABI symbols: native linkers reject the `:` in their names, and
// natively the imports are `unreachable!()` stubs anyway, so native tests cover `api` only.
#[cfg(target_arch = "wasm32")]
export!(Douyin);

impl Guest for Douyin {
    fn describe() -> t::AdapterInfo {
        glue::info_to_wit(&INFO)
    }

    fn send_coupon(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
        let req = glue::send_request_from_wit(req);
        api::send_coupon(&req, &settings::get, glue::send)
            .map(|outcome| glue::outcome_to_wit(contract_outcome(outcome)))
            .map_err(to_wit_error)
    }

    fn query_coupons(req: t::QueryRequest) -> Result<Vec<t::Coupon>, t::AdapterError> {
        let recipient = glue::recipient_from_wit(req.recipient);
        let coupons = api::query_coupons(&recipient, &req.options, &settings::get, glue::send)
            .map_err(to_wit_error)?;
        Ok(coupons
            .into_iter()
            .map(|coupon| glue::coupon_to_wit(contract_coupon(coupon)))
            .collect())
    }
}

fn to_wit_error(error: api::AdapterError) -> t::AdapterError {
    glue::error_to_wit(error.into())
}

fn contract_outcome(outcome: api::Outcome) -> c::Outcome {
    let issued = outcome.issued.into_iter().map(|i| {
        if !i.extra_coupon_ids.is_empty() {
            // The contract carries one coupon id per recipient: keep the others in the log.
            let ids = i.extra_coupon_ids.join(", ");
            let first = i.coupon.coupon_id.as_deref().unwrap_or("?");
            let message = format!("issued more than one coupon: coupon_id {first}, then {ids}");
            log::log(log::Level::Info, &message);
        }
        c::Issued {
            recipient: i.recipient,
            coupon: i.coupon,
        }
    });
    let failed = outcome.failed.into_iter().map(|f| c::Failed {
        recipient: f.recipient,
        error: f.error.into(),
    });
    c::Outcome {
        issued: issued.collect(),
        failed: failed.collect(),
        request_ids: outcome.request_ids,
    }
}

/// This API reports no template id and no claim URL.
fn contract_coupon(coupon: api::Coupon) -> c::Coupon {
    c::Coupon {
        id: coupon.id,
        template_id: None,
        title: coupon.title,
        state: coupon.state,
        amount_fen: coupon.amount_fen,
        threshold_fen: coupon.threshold_fen,
        valid_from: coupon.valid_from,
        valid_until: coupon.valid_until,
        claim_url: None,
    }
}
