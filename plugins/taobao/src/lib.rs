//! The taobao adapter component: glue between the `coupon:adapter` world and [`api`], which holds
//! every decision and is tested natively.
#![allow(
    unsafe_code,
    reason = "wit-bindgen's generate!/export! emit the canonical-ABI glue as unsafe code; api.rs forbids unsafe"
)]

wit_bindgen::generate!({ path: "../../wit/adapter@0.1.0", world: "plugin" });

pub mod api;

use coupon::adapter::{settings, signed_http as http, types as t};
use exports::coupon::adapter::adapter::Guest;

/// The exported `coupon:adapter/adapter` implementation.
pub struct Taobao;
// Only the component exports the ABI symbols: native linkers reject the `:` in their names, and
// natively the imports are `unreachable!()` stubs anyway, so native tests cover `api` only.
#[cfg(target_arch = "wasm32")]
export!(Taobao);

impl Guest for Taobao {
    fn describe() -> t::AdapterInfo {
        t::AdapterInfo {
            platform: api::PLATFORM.into(),
            version: api::VERSION.into(),
            max_recipients_per_call: api::MAX_RECIPIENTS_PER_CALL,
            idempotent_send: api::IDEMPOTENT_SEND,
            recipient_kinds: vec![t::RecipientKind::Nick, t::RecipientKind::OpenId],
            operations: api::OPERATIONS.map(String::from).to_vec(),
        }
    }

    fn send_coupon(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
        let req = send_request_from_wit(req);
        let outcome = api::send_coupon(&req, &settings::get, send).map_err(to_wit_error)?;
        Ok(outcome_to_wit(outcome))
    }

    fn query_coupons(req: t::QueryRequest) -> Result<Vec<t::Coupon>, t::AdapterError> {
        let recipient = from_wit(req.recipient);
        let coupons = api::query_coupons(&recipient, &req.options, &settings::get, send);
        Ok(coupons
            .map_err(to_wit_error)?
            .into_iter()
            .map(coupon_to_wit)
            .collect())
    }
}

/// Every call is a signed form POST: the host adds and signs the TOP system parameters.
fn send(req: &api::HttpRequest) -> Result<api::HttpResponse, api::HttpError> {
    let (url, params) = (req.url.clone(), req.params.clone());
    let request = http::Request {
        method: http::Method::Post,
        url,
        headers: vec![],
        params,
        body: None,
    };
    match http::send(&request) {
        Ok(response) => Ok(api::HttpResponse {
            status: response.status,
            body: response.body,
        }),
        Err(http::HttpError::Denied(why)) => Err(api::HttpError::Denied(why)),
        Err(http::HttpError::Connect(why)) => Err(api::HttpError::Connect(why)),
        Err(http::HttpError::Timeout) => Err(api::HttpError::Timeout),
        Err(http::HttpError::TooLarge) => Err(api::HttpError::TooLarge),
        Err(http::HttpError::Unauthorized(why)) => Err(api::HttpError::Unauthorized(why)),
        Err(http::HttpError::Other(why)) => Err(api::HttpError::Other(why)),
    }
}

fn send_request_from_wit(req: t::SendRequest) -> api::SendRequest {
    // The idempotency key is dropped: this API has no field to carry it (describe says so).
    let recipients = req.recipients.into_iter().map(from_wit).collect();
    let (coupon, quantity, options) = (req.coupon, req.quantity, req.options);
    api::SendRequest {
        coupon,
        recipients,
        quantity,
        options,
    }
}

fn outcome_to_wit(outcome: api::Outcome) -> t::SendOutcome {
    let issued = outcome.issued.into_iter().map(|i| t::IssuedCoupon {
        recipient: to_wit(i.recipient),
        coupon_id: i.coupon_id,
        name: None,
        amount_fen: None,
        threshold_fen: None,
        valid_from: None,
        valid_until: None,
    });
    let failed = outcome.failed.into_iter().map(|f| t::RecipientFailure {
        recipient: to_wit(f.recipient),
        error: to_wit_error(f.error),
    });
    let (issued, failed) = (issued.collect(), failed.collect());
    t::SendOutcome {
        issued,
        failed,
        platform_request_ids: outcome.request_ids,
    }
}

fn from_wit(recipient: t::Recipient) -> api::Recipient {
    match recipient {
        t::Recipient::Nick(v) => api::Recipient::Nick(v),
        t::Recipient::OpenId(v) => api::Recipient::OpenId(v),
        t::Recipient::CustomerId(v) => api::Recipient::CustomerId(v),
    }
}

fn to_wit(recipient: api::Recipient) -> t::Recipient {
    match recipient {
        api::Recipient::Nick(v) => t::Recipient::Nick(v),
        api::Recipient::OpenId(v) => t::Recipient::OpenId(v),
        api::Recipient::CustomerId(v) => t::Recipient::CustomerId(v),
    }
}

fn to_wit_error(error: top_common::TopError) -> t::AdapterError {
    use top_common::ErrorClass as C;
    let class = match error.class {
        C::InvalidRequest => t::ErrorClass::InvalidRequest,
        C::Unauthorized => t::ErrorClass::Unauthorized,
        C::AuthExpired => t::ErrorClass::AuthExpired,
        C::RateLimited => t::ErrorClass::RateLimited,
        C::CouponUnavailable => t::ErrorClass::CouponUnavailable,
        C::RecipientLimit => t::ErrorClass::RecipientLimit,
        C::RecipientInvalid => t::ErrorClass::RecipientInvalid,
        C::Transient => t::ErrorClass::Transient,
        C::Unknown => t::ErrorClass::Unknown,
    };
    let (code, message, retry_after_ms) = (error.code, error.message, error.retry_after_ms);
    t::AdapterError {
        class,
        code,
        message,
        retry_after_ms,
    }
}

fn coupon_to_wit(c: api::Coupon) -> t::Coupon {
    let state = match c.state {
        api::CouponState::Claimable => t::CouponState::Claimable,
        api::CouponState::Held => t::CouponState::Held,
        api::CouponState::Used => t::CouponState::Used,
        api::CouponState::Expired => t::CouponState::Expired,
        api::CouponState::Unknown => t::CouponState::Unknown,
    };
    let (id, template_id, title, claim_url) = (c.id, c.template_id, c.title, c.claim_url);
    let (amount_fen, threshold_fen) = (c.amount_fen, c.threshold_fen);
    let (valid_from, valid_until) = (c.valid_from, c.valid_until);
    t::Coupon {
        id,
        template_id,
        title,
        state,
        amount_fen,
        threshold_fen,
        valid_from,
        valid_until,
        claim_url,
    }
}
