//! The douyin adapter component: glue between the `coupon:adapter` world and [`api`], which holds
//! every decision and is tested natively.
#![allow(
    unsafe_code,
    reason = "wit-bindgen's generate!/export! emit the canonical-ABI glue as unsafe code; api.rs forbids unsafe"
)]

wit_bindgen::generate!({ path: "../../wit/adapter@0.1.0", world: "plugin" });

pub mod api;

use coupon::adapter::{log, settings, signed_http as http, types as t};
use exports::coupon::adapter::adapter::Guest;

/// The exported `coupon:adapter/adapter` implementation.
pub struct Douyin;
// Only the component exports the ABI symbols: native linkers reject the `:` in their names, and
// natively the imports are `unreachable!()` stubs anyway, so native tests cover `api` only.
#[cfg(target_arch = "wasm32")]
export!(Douyin);

impl Guest for Douyin {
    fn describe() -> t::AdapterInfo {
        t::AdapterInfo {
            platform: api::PLATFORM.into(),
            version: api::VERSION.into(),
            max_recipients_per_call: api::MAX_RECIPIENTS_PER_CALL,
            idempotent_send: api::IDEMPOTENT_SEND,
            recipient_kinds: vec![t::RecipientKind::OpenId],
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

/// Every call is a JSON POST; the host adds the `access-token` header.
fn send(req: &api::HttpRequest) -> Result<api::HttpResponse, api::HttpError> {
    let request = http::Request {
        method: http::Method::Post,
        url: req.url.clone(),
        headers: req.headers.clone(),
        params: Vec::new(),
        body: Some(req.body.clone()),
    };
    match http::send(&request) {
        Ok(response) => Ok(api::HttpResponse {
            status: response.status,
            headers: response.headers,
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
    let recipients = req.recipients.into_iter().map(from_wit).collect();
    let (coupon, quantity, options) = (req.coupon, req.quantity, req.options);
    api::SendRequest {
        coupon,
        recipients,
        quantity,
        idempotency_key: req.idempotency_key,
        options,
    }
}

fn outcome_to_wit(outcome: api::Outcome) -> t::SendOutcome {
    let issued = outcome.issued.into_iter().map(|i| {
        if !i.extra_coupon_ids.is_empty() {
            // The contract carries one coupon id per recipient: keep the others in the log.
            let ids = i.extra_coupon_ids.join(", ");
            let first = i.coupon.coupon_id.as_deref().unwrap_or("?");
            let message = format!("issued more than one coupon: coupon_id {first}, then {ids}");
            log::log(log::Level::Info, &message);
        }
        let c = i.coupon;
        t::IssuedCoupon {
            recipient: to_wit(i.recipient),
            coupon_id: c.coupon_id,
            name: c.name,
            amount_fen: c.amount_fen,
            threshold_fen: c.threshold_fen,
            valid_from: c.valid_from,
            valid_until: c.valid_until,
        }
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

fn to_wit_error(error: api::AdapterError) -> t::AdapterError {
    use api::ErrorClass as C;
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
    let (id, title) = (c.id, c.title);
    let (amount_fen, threshold_fen) = (c.amount_fen, c.threshold_fen);
    let (valid_from, valid_until) = (c.valid_from, c.valid_until);
    t::Coupon {
        id,
        template_id: None,
        title,
        state,
        amount_fen,
        threshold_fen,
        valid_from,
        valid_until,
        claim_url: None,
    }
}
