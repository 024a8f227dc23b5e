//! The WIT glue every adapter needs, written once.

/// Writes a private module `glue` into an adapter crate: conversions between the WIT records that
/// `wit_bindgen::generate!` made in that crate and the plain types of [`crate::contract`], and
/// `http_error_from_wit` for the `signed-http` failure. Items passed to the macro are put in the
/// module too, where `http` names the `signed-http` import and `t` the WIT `types`: that is how
/// a platform family adds its `send` (`top_common::wit_glue!` adds the TOP form POST).
///
/// Invoke it at the crate root, after `wit_bindgen::generate!({ path: "../../wit/adapter@0.2.0",
/// world: "plugin" })`, whose `coupon::adapter::{signed_http, types}` modules it uses. A crate
/// still generated from `wit/adapter@0.1.0` writes `adapter_kit::wit_glue!(@v0_1)`: its sends
/// carry an empty `account`, and its `describe` drops the auth scheme and limits 0.1.0 has no
/// place for.
///
/// ```text
/// wit_bindgen::generate!({ path: "../../wit/adapter@0.2.0", world: "plugin" });
/// adapter_kit::wit_glue!();
///
/// impl Guest for MyAdapter {
///     fn describe() -> t::AdapterInfo {
///         glue::info_to_wit(&api::INFO)
///     }
///     fn send_coupon(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
///         let req = glue::send_request_from_wit(req);
///         api::send_coupon(&req, &settings::get, send)
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
    // A crate generated from `wit/adapter@0.1.0`: no account, no auth scheme, no limits.
    (@v0_1 $($extra:item)*) => {
        $crate::wit_glue! {
            @module [
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
                pub(crate) fn send_request_from_wit(req: t::SendRequest) -> c::SendRequest {
                    let recipients = req.recipients.into_iter().map(recipient_from_wit).collect();
                    c::SendRequest {
                        coupon: req.coupon,
                        recipients,
                        quantity: req.quantity,
                        idempotency_key: req.idempotency_key,
                        options: req.options,
                        // 0.1.0 sends carry no account.
                        account: ::std::string::String::new(),
                    }
                }
            ]
            $($extra)*
        }
    };
    (@module [$($versioned:item)*] $($extra:item)*) => {
        /// Conversions between the WIT records and `adapter_kit::contract` (written by
        /// `adapter_kit::wit_glue!`).
        #[allow(dead_code, reason = "an adapter uses the conversions its operations need")]
        mod glue {
            // `super` is the invoking crate's root, where `generate!` put the bindings.
            use super::coupon::adapter::{signed_http as http, types as t};
            use $crate::contract as c;

            /// The `signed-http` failure as the plain `adapter_kit::HttpError`.
            pub(crate) fn http_error_from_wit(error: http::HttpError) -> $crate::HttpError {
                match error {
                    http::HttpError::Denied(why) => $crate::HttpError::Denied(why),
                    http::HttpError::Connect(why) => $crate::HttpError::Connect(why),
                    http::HttpError::Timeout => $crate::HttpError::Timeout,
                    http::HttpError::TooLarge => $crate::HttpError::TooLarge,
                    http::HttpError::Unauthorized(why) => $crate::HttpError::Unauthorized(why),
                    http::HttpError::Other(why) => $crate::HttpError::Other(why),
                }
            }

            $($versioned)*

            $($extra)*

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

            pub(crate) fn error_to_wit(error: $crate::AdapterError) -> t::AdapterError {
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
    // The current contract, `wit/adapter@0.2.0`.
    ($($extra:item)*) => {
        $crate::wit_glue! {
            @module [
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
                        auth_scheme: match info.auth_scheme {
                            c::AuthScheme::None => t::AuthScheme::None,
                            c::AuthScheme::Top => t::AuthScheme::Top,
                            c::AuthScheme::Douyin => t::AuthScheme::Douyin,
                        },
                        limits: t::PlatformLimits { qps: info.limits.qps },
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
                        account: req.account,
                    }
                }
            ]
            $($extra)*
        }
    };
}
