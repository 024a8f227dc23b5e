//! Conversions between each contract version's generated types and the host's own.
//!
//! The records both versions share are converted by one macro, [`shared`], instantiated per
//! version; what changed in 0.2.0 (a call's `account`, `describe`'s auth scheme and limits) is
//! converted per version below it. Guest strings are bounded ([`bounded`]) on the way in: an
//! adapter could return megabytes.

use super::{SendAnswer, SendCall};
use crate::text::bounded;
use crate::types::{
    AdapterError, AdapterInfo, Coupon, CouponState, ErrorClass, IssuedCoupon, PlatformLimits,
    QueryRequest, Recipient, RecipientFailure, RecipientKind,
};

/// The conversions of the records every version has alike, for the version whose `types` are
/// at `$wit`.
macro_rules! shared {
    ($wit:path) => {
        use $wit as wit;

        impl From<&Recipient> for wit::Recipient {
            fn from(recipient: &Recipient) -> Self {
                match recipient {
                    Recipient::Nick(id) => wit::Recipient::Nick(id.clone()),
                    Recipient::OpenId(id) => wit::Recipient::OpenId(id.clone()),
                    Recipient::CustomerId(id) => wit::Recipient::CustomerId(id.clone()),
                }
            }
        }

        impl From<wit::Recipient> for Recipient {
            fn from(recipient: wit::Recipient) -> Self {
                match recipient {
                    wit::Recipient::Nick(id) => Recipient::Nick(id),
                    wit::Recipient::OpenId(id) => Recipient::OpenId(id),
                    wit::Recipient::CustomerId(id) => Recipient::CustomerId(id),
                }
            }
        }

        impl From<wit::RecipientKind> for RecipientKind {
            fn from(kind: wit::RecipientKind) -> Self {
                match kind {
                    wit::RecipientKind::Nick => RecipientKind::Nick,
                    wit::RecipientKind::OpenId => RecipientKind::OpenId,
                    wit::RecipientKind::CustomerId => RecipientKind::CustomerId,
                }
            }
        }

        impl From<wit::ErrorClass> for ErrorClass {
            fn from(class: wit::ErrorClass) -> Self {
                match class {
                    wit::ErrorClass::InvalidRequest => ErrorClass::InvalidRequest,
                    wit::ErrorClass::Unauthorized => ErrorClass::Unauthorized,
                    wit::ErrorClass::AuthExpired => ErrorClass::AuthExpired,
                    wit::ErrorClass::RateLimited => ErrorClass::RateLimited,
                    wit::ErrorClass::CouponUnavailable => ErrorClass::CouponUnavailable,
                    wit::ErrorClass::RecipientLimit => ErrorClass::RecipientLimit,
                    wit::ErrorClass::RecipientInvalid => ErrorClass::RecipientInvalid,
                    wit::ErrorClass::Transient => ErrorClass::Transient,
                    wit::ErrorClass::Unknown => ErrorClass::Unknown,
                }
            }
        }

        impl From<wit::AdapterError> for AdapterError {
            fn from(error: wit::AdapterError) -> Self {
                AdapterError {
                    class: error.class.into(),
                    code: bounded(error.code, 128),
                    message: bounded(error.message, 1024),
                    retry_after_ms: error.retry_after_ms,
                }
            }
        }

        impl From<wit::IssuedCoupon> for IssuedCoupon {
            fn from(issued: wit::IssuedCoupon) -> Self {
                IssuedCoupon {
                    recipient: issued.recipient.into(),
                    coupon_id: issued.coupon_id.map(|s| bounded(s, 256)),
                    name: issued.name.map(|s| bounded(s, 256)),
                    amount_fen: issued.amount_fen,
                    threshold_fen: issued.threshold_fen,
                    valid_from: issued.valid_from,
                    valid_until: issued.valid_until,
                }
            }
        }

        impl From<wit::CouponState> for CouponState {
            fn from(state: wit::CouponState) -> Self {
                match state {
                    wit::CouponState::Claimable => CouponState::Claimable,
                    wit::CouponState::Held => CouponState::Held,
                    wit::CouponState::Used => CouponState::Used,
                    wit::CouponState::Expired => CouponState::Expired,
                    wit::CouponState::Unknown => CouponState::Unknown,
                }
            }
        }

        impl From<wit::Coupon> for Coupon {
            fn from(coupon: wit::Coupon) -> Self {
                Coupon {
                    id: bounded(coupon.id, 256),
                    template_id: coupon.template_id.map(|s| bounded(s, 256)),
                    title: coupon.title.map(|s| bounded(s, 256)),
                    state: coupon.state.into(),
                    amount_fen: coupon.amount_fen,
                    threshold_fen: coupon.threshold_fen,
                    valid_from: coupon.valid_from,
                    valid_until: coupon.valid_until,
                    claim_url: coupon.claim_url.map(|s| bounded(s, 2048)),
                }
            }
        }

        impl From<wit::SendOutcome> for SendAnswer {
            fn from(outcome: wit::SendOutcome) -> Self {
                SendAnswer {
                    issued: outcome.issued.into_iter().map(Into::into).collect(),
                    failed: outcome
                        .failed
                        .into_iter()
                        .map(|failure| RecipientFailure {
                            recipient: failure.recipient.into(),
                            error: failure.error.into(),
                        })
                        .collect(),
                    // Ids are for support tickets: a few, short.
                    platform_request_ids: outcome
                        .platform_request_ids
                        .into_iter()
                        .take(64)
                        .map(|id| id.chars().take(128).collect())
                        .collect(),
                }
            }
        }
    };
}

mod v0_1 {
    use super::*;
    shared!(super::super::bindings::v0_1::coupon::adapter::types);

    impl From<wit::AdapterInfo> for AdapterInfo {
        fn from(info: wit::AdapterInfo) -> Self {
            AdapterInfo {
                platform: bounded(info.platform, 64),
                version: bounded(info.version, 64),
                max_recipients_per_call: info.max_recipients_per_call,
                idempotent_send: info.idempotent_send,
                recipient_kinds: info.recipient_kinds.into_iter().map(Into::into).collect(),
                operations: operations(info.operations),
                // 0.1.0 adapters say neither.
                auth_scheme: None,
                limits: PlatformLimits::default(),
            }
        }
    }

    impl From<SendCall> for wit::SendRequest {
        fn from(call: SendCall) -> Self {
            wit::SendRequest {
                coupon: call.coupon,
                recipients: call.recipients.iter().map(Into::into).collect(),
                quantity: call.quantity,
                idempotency_key: call.idempotency_key,
                options: call.options,
            }
        }
    }

    impl From<&QueryRequest> for wit::QueryRequest {
        fn from(request: &QueryRequest) -> Self {
            wit::QueryRequest {
                recipient: (&request.recipient).into(),
                options: request.options.clone(),
            }
        }
    }
}

mod v0_2 {
    use super::*;
    shared!(super::super::bindings::v0_2::coupon::adapter::types);

    impl From<wit::AdapterInfo> for AdapterInfo {
        fn from(info: wit::AdapterInfo) -> Self {
            let scheme = match info.auth_scheme {
                wit::AuthScheme::None => "none",
                wit::AuthScheme::Top => "top",
                wit::AuthScheme::Douyin => "douyin",
            };
            AdapterInfo {
                platform: bounded(info.platform, 64),
                version: bounded(info.version, 64),
                max_recipients_per_call: info.max_recipients_per_call,
                idempotent_send: info.idempotent_send,
                recipient_kinds: info.recipient_kinds.into_iter().map(Into::into).collect(),
                operations: operations(info.operations),
                auth_scheme: Some(scheme.to_owned()),
                limits: PlatformLimits {
                    qps: info.limits.qps,
                },
            }
        }
    }

    impl From<SendCall> for wit::SendRequest {
        fn from(call: SendCall) -> Self {
            wit::SendRequest {
                account: call.account,
                coupon: call.coupon,
                recipients: call.recipients.iter().map(Into::into).collect(),
                quantity: call.quantity,
                idempotency_key: call.idempotency_key,
                options: call.options,
            }
        }
    }

    impl From<&QueryRequest> for wit::QueryRequest {
        fn from(request: &QueryRequest) -> Self {
            wit::QueryRequest {
                account: request.account.clone().unwrap_or_default(),
                recipient: (&request.recipient).into(),
                options: request.options.clone(),
            }
        }
    }
}

/// An adapter's operation names, bounded.
fn operations(operations: Vec<String>) -> Vec<String> {
    operations
        .into_iter()
        .take(16)
        .map(|s| bounded(s, 64))
        .collect()
}
