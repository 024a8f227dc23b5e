//! The classified error every adapter returns (top-common calls it `TopError`).

use std::fmt;

/// Mirrors the WIT `error-class`: what the host does with a failure depends only on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request is wrong (bad parameters, unsupported recipient kind): do not retry.
    InvalidRequest,
    /// Credentials are wrong or lack permission: do not retry.
    Unauthorized,
    /// The session or token expired: refresh it, then retry once.
    AuthExpired,
    /// The platform says "too frequent" or a quota is used up: back off.
    RateLimited,
    /// The coupon does not exist, expired, or its stock ran out.
    CouponUnavailable,
    /// This recipient reached the coupon's per-user limit.
    RecipientLimit,
    /// This recipient does not exist or cannot receive the coupon.
    RecipientInvalid,
    /// A platform or network failure that may succeed when retried.
    Transient,
    /// The outcome is not known (e.g. a timeout after the request left): reconcile, never resend.
    Unknown,
}

impl ErrorClass {
    /// The WIT spelling, e.g. `rate-limited`, for messages and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid-request",
            Self::Unauthorized => "unauthorized",
            Self::AuthExpired => "auth-expired",
            Self::RateLimited => "rate-limited",
            Self::CouponUnavailable => "coupon-unavailable",
            Self::RecipientLimit => "recipient-limit",
            Self::RecipientInvalid => "recipient-invalid",
            Self::Transient => "transient",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A classified failure, with the platform's own code and message kept for people.
///
/// It maps one to one onto the WIT `adapter-error`; `request_id` is extra, so that an adapter can
/// report the platform request id (TOP `request_id`) of a failed call too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterError {
    /// What the host should do about it.
    pub class: ErrorClass,
    /// The platform's code (for TOP the `sub_code` when sent, else the numeric `code`), or an
    /// adapter code such as `bad-response` or `config`.
    pub code: String,
    /// For people: the platform's `msg` and `sub_msg`, or what the adapter found wrong.
    pub message: String,
    /// How long the platform asked us to wait, when it said so.
    pub retry_after_ms: Option<u32>,
    /// The platform request id (TOP `request_id`) of the call that failed, when the answer
    /// carried one.
    pub request_id: Option<String>,
}

impl AdapterError {
    /// An error with no retry hint and no request id.
    pub fn new(class: ErrorClass, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class,
            code: code.into(),
            message: message.into(),
            retry_after_ms: None,
            request_id: None,
        }
    }
}

impl fmt::Display for AdapterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]: {}", self.class, self.code, self.message)
    }
}

impl std::error::Error for AdapterError {}
