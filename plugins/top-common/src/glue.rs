//! The WIT glue every TOP adapter needs, written once.

/// Writes a private module `glue` into an adapter crate: conversions between the WIT records that
/// `wit_bindgen::generate!` made in that crate and the plain types of [`crate::contract`], and
/// `send`, the `signed-http` call as a closure-friendly function.
///
/// Invoke it at the crate root, after `wit_bindgen::generate!({ path: "../../wit/adapter@0.1.0",
/// world: "plugin" })`, whose `coupon::adapter::{signed_http, types}` modules it uses:
///
/// ```text
/// wit_bindgen::generate!({ path: "../../wit/adapter@0.1.0", world: "plugin" });
/// top_common::wit_glue!();
///
/// impl Guest for MyAdapter {
///     fn describe() -> t::AdapterInfo {
///         glue::info_to_wit(&api::INFO)
///     }
///     fn send_coupon(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
///         let req = glue::send_request_from_wit(req);
///         api::send_coupon(&req, &settings::get, glue::send)
///             .map(glue::outcome_to_wit)
///             .map_err(glue::error_to_wit)
///     }
///     // ...
/// }
/// ```
///
/// Natively wit-bindgen turns the imports into `unreachable!()` stubs, so only `api` is tested
/// natively; this glue is exercised by the host's integration tests.
#[macro_export]
macro_rules! wit_glue {
    () => {
        /// Conversions between the WIT records and `top_common::contract`, and the
        /// `signed-http` call (written by `top_common::wit_glue!`).
        mod glue {
            // `super` is the invoking crate's root, where `generate!` put the bindings.
            use super::coupon::adapter::{signed_http as http, types as t};
            use $crate::contract as c;

            /// Every TOP call is a signed form POST: the host adds and signs the system
            /// parameters.
            pub(crate) fn send(
                req: &$crate::HttpRequest,
            ) -> ::core::result::Result<$crate::HttpResponse, $crate::HttpError> {
                let request = http::Request {
                    method: http::Method::Post,
                    url: req.url.clone(),
                    headers: ::std::vec::Vec::new(),
                    params: req.params.clone(),
                    body: ::core::option::Option::None,
                };
                match http::send(&request) {
                    Ok(response) => Ok($crate::HttpResponse {
                        status: response.status,
                        body: response.body,
                    }),
                    Err(http::HttpError::Denied(why)) => Err($crate::HttpError::Denied(why)),
                    Err(http::HttpError::Connect(why)) => Err($crate::HttpError::Connect(why)),
                    Err(http::HttpError::Timeout) => Err($crate::HttpError::Timeout),
                    Err(http::HttpError::TooLarge) => Err($crate::HttpError::TooLarge),
                    Err(http::HttpError::Unauthorized(why)) => {
                        Err($crate::HttpError::Unauthorized(why))
                    }
                    Err(http::HttpError::Other(why)) => Err($crate::HttpError::Other(why)),
                }
            }

            pub(crate) fn info_to_wit(info: &c::AdapterInfo) -> t::AdapterInfo {
                let kinds = info.recipient_kinds.iter().map(|kind| match kind {
                    c::RecipientKind::Nick => t::RecipientKind::Nick,
                    c::RecipientKind::OpenId => t::RecipientKind::OpenId,
                    c::RecipientKind::CustomerId => t::RecipientKind::CustomerId,
                });
                t::AdapterInfo {
                    platform: info.platform.into(),
                    version: info.version.into(),
                    max_recipients_per_call: info.max_recipients_per_call,
                    idempotent_send: info.idempotent_send,
                    recipient_kinds: kinds.collect(),
                    operations: info.operations.iter().map(|op| (*op).into()).collect(),
                }
            }

            pub(crate) fn recipient_from_wit(recipient: t::Recipient) -> c::Recipient {
                match recipient {
                    t::Recipient::Nick(v) => c::Recipient::Nick(v),
                    t::Recipient::OpenId(v) => c::Recipient::OpenId(v),
                    t::Recipient::CustomerId(v) => c::Recipient::CustomerId(v),
                }
            }

            pub(crate) fn recipient_to_wit(recipient: c::Recipient) -> t::Recipient {
                match recipient {
                    c::Recipient::Nick(v) => t::Recipient::Nick(v),
                    c::Recipient::OpenId(v) => t::Recipient::OpenId(v),
                    c::Recipient::CustomerId(v) => t::Recipient::CustomerId(v),
                }
            }

            pub(crate) fn send_request_from_wit(req: t::SendRequest) -> c::SendRequest {
                let recipients = req.recipients.into_iter().map(recipient_from_wit).collect();
                c::SendRequest {
                    coupon: req.coupon,
                    recipients,
                    quantity: req.quantity,
                    idempotency_key: req.idempotency_key,
                    options: req.options,
                }
            }

            pub(crate) fn error_to_wit(error: $crate::TopError) -> t::AdapterError {
                use $crate::ErrorClass as C;
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
                t::AdapterError {
                    class,
                    code: error.code,
                    message: error.message,
                    retry_after_ms: error.retry_after_ms,
                }
            }

            pub(crate) fn outcome_to_wit(outcome: c::Outcome) -> t::SendOutcome {
                let issued = outcome.issued.into_iter().map(|i| t::IssuedCoupon {
                    recipient: recipient_to_wit(i.recipient),
                    coupon_id: i.coupon.coupon_id,
                    name: i.coupon.name,
                    amount_fen: i.coupon.amount_fen,
                    threshold_fen: i.coupon.threshold_fen,
                    valid_from: i.coupon.valid_from,
                    valid_until: i.coupon.valid_until,
                });
                let failed = outcome.failed.into_iter().map(|f| t::RecipientFailure {
                    recipient: recipient_to_wit(f.recipient),
                    error: error_to_wit(f.error),
                });
                t::SendOutcome {
                    issued: issued.collect(),
                    failed: failed.collect(),
                    platform_request_ids: outcome.request_ids,
                }
            }

            pub(crate) fn coupon_to_wit(coupon: c::Coupon) -> t::Coupon {
                let state = match coupon.state {
                    c::CouponState::Claimable => t::CouponState::Claimable,
                    c::CouponState::Held => t::CouponState::Held,
                    c::CouponState::Used => t::CouponState::Used,
                    c::CouponState::Expired => t::CouponState::Expired,
                    c::CouponState::Unknown => t::CouponState::Unknown,
                };
                t::Coupon {
                    id: coupon.id,
                    template_id: coupon.template_id,
                    title: coupon.title,
                    state,
                    amount_fen: coupon.amount_fen,
                    threshold_fen: coupon.threshold_fen,
                    valid_from: coupon.valid_from,
                    valid_until: coupon.valid_until,
                    claim_url: coupon.claim_url,
                }
            }
        }
    };
}
