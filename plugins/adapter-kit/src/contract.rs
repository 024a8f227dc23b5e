//! The adapter contract (`wit/adapter@0.2.0` `types`) as plain Rust types.
//!
//! wit-bindgen generates the WIT records inside each component crate, so code shared between
//! adapters cannot name them. These mirrors carry the same fields; an adapter's `api.rs` works on
//! them and its `lib.rs` converts at the boundary with the functions [`crate::wit_glue!`] writes.

use crate::AdapterError;

/// The WIT `recipient-kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecipientKind {
    /// A buyer nick (Taobao).
    Nick,
    /// A platform open id (Taobao open_uid, Tmall encrypted open_id).
    OpenId,
    /// A CRM customer id (Alibaba local services).
    CustomerId,
}

impl RecipientKind {
    /// The WIT spelling, e.g. `open-id`, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nick => "nick",
            Self::OpenId => "open-id",
            Self::CustomerId => "customer-id",
        }
    }
}

/// The WIT `recipient`: who a coupon goes to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recipient {
    /// A buyer nick.
    Nick(String),
    /// A platform open id.
    OpenId(String),
    /// A CRM customer id.
    CustomerId(String),
}

impl Recipient {
    /// Which kind of recipient this is.
    pub fn kind(&self) -> RecipientKind {
        match self {
            Self::Nick(_) => RecipientKind::Nick,
            Self::OpenId(_) => RecipientKind::OpenId,
            Self::CustomerId(_) => RecipientKind::CustomerId,
        }
    }

    /// The nick or id, as given.
    pub fn value(&self) -> &str {
        match self {
            Self::Nick(value) | Self::OpenId(value) | Self::CustomerId(value) => value,
        }
    }

    /// The nick or id, trimmed, of a recipient that must be of `kind`; otherwise the
    /// `invalid-request` error every adapter reports for it without a call: `recipient-kind`
    /// ("`who` takes open-id recipients, not nick") or `recipient-empty` ("the open-id is
    /// empty"). `who` names the platform or API in the message.
    ///
    /// ```
    /// use adapter_kit::contract::{Recipient, RecipientKind};
    ///
    /// let open_id = Recipient::OpenId(" o-1 ".into());
    /// assert_eq!(open_id.checked(RecipientKind::OpenId, "douyin").unwrap(), "o-1");
    /// let error = open_id.checked(RecipientKind::Nick, "taobao").unwrap_err();
    /// assert_eq!(error.code, "recipient-kind");
    /// assert_eq!(error.message, "taobao takes nick recipients, not open-id");
    /// ```
    pub fn checked(&self, kind: RecipientKind, who: &str) -> Result<&str, AdapterError> {
        let invalid = |code: &str, message: String| {
            AdapterError::new(crate::ErrorClass::InvalidRequest, code, message)
        };
        if self.kind() != kind {
            let message = format!(
                "{who} takes {} recipients, not {}",
                kind.as_str(),
                self.kind().as_str()
            );
            return Err(invalid("recipient-kind", message));
        }
        let value = self.value().trim();
        if value.is_empty() {
            return Err(invalid(
                "recipient-empty",
                format!("the {} is empty", kind.as_str()),
            ));
        }
        Ok(value)
    }
}

/// The WIT `adapter-info`, as a constant each adapter declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterInfo {
    /// Platform name for people, e.g. `tmall-nrt`.
    pub platform: &'static str,
    /// The adapter's own version.
    pub version: &'static str,
    /// The most recipients one `send-coupon` call may carry; the host batches to this.
    pub max_recipients_per_call: u32,
    /// True when resending the same request with the same idempotency key cannot issue twice.
    pub idempotent_send: bool,
    /// The recipient kinds `send-coupon` takes.
    pub recipient_kinds: &'static [RecipientKind],
    /// Operations implemented: `send-coupon`, `query-coupons`.
    pub operations: &'static [&'static str],
    /// How the host must authenticate the adapter's requests (0.2.0).
    pub auth_scheme: AuthScheme,
    /// What the platform documents about its limits (0.2.0).
    pub limits: PlatformLimits,
}

/// The WIT `auth-scheme`: how the host authenticates an adapter's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// Requests go out as the adapter built them.
    None,
    /// TOP system parameters and signature.
    Top,
    /// A Douyin client token in the `access-token` header.
    Douyin,
}

/// The WIT `platform-limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformLimits {
    /// Requests per second the platform allows per credential, when it documents it. The host's
    /// `limits.qps` defaults to it and refuses a higher value.
    pub qps: Option<u32>,
}

impl PlatformLimits {
    /// A platform that documents no limit.
    pub const UNDOCUMENTED: Self = Self { qps: None };
}

/// The WIT `send-request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    /// The platform's coupon reference (Tmall uuid, ALSC voucher_id, ...).
    pub coupon: String,
    /// Everyone to send to.
    pub recipients: Vec<Recipient>,
    /// Coupons per recipient.
    pub quantity: u32,
    /// Stable across retries of the same send; platform idempotency ids derive from it.
    pub idempotency_key: String,
    /// Per-call overrides of the plugin's settings (`--option KEY=VALUE`).
    pub options: Vec<(String, String)>,
    /// The account (merchant) the send is for; empty from a 0.1.0 host binding. For logs and
    /// platform idempotency ids only: the host holds the credentials.
    pub account: String,
}

/// What the platform said about a coupon it issued: the WIT `issued-coupon` less its recipient.
/// Every field is optional, since not every platform answers with each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuedCoupon {
    /// The issued coupon's (instance) id.
    pub coupon_id: Option<String>,
    /// The coupon's name.
    pub name: Option<String>,
    /// Face value in fen.
    pub amount_fen: Option<i64>,
    /// Minimum spend in fen.
    pub threshold_fen: Option<i64>,
    /// Start of validity, unix seconds.
    pub valid_from: Option<i64>,
    /// End of validity, unix seconds.
    pub valid_until: Option<i64>,
}

/// A recipient who got the coupon (the WIT `issued-coupon`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// As in the request.
    pub recipient: Recipient,
    /// What the platform said about it.
    pub coupon: IssuedCoupon,
}

/// A recipient who did not get the coupon, or whose outcome is unknown (the WIT
/// `recipient-failure`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// As in the request.
    pub recipient: Recipient,
    /// Why, classified.
    pub error: AdapterError,
}

/// The WIT `send-outcome`: one entry per recipient of the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Recipients who got the coupon, in request order.
    pub issued: Vec<Issued>,
    /// Recipients who did not, or whose outcome is unknown, in request order.
    pub failed: Vec<Failed>,
    /// The platform request id (TOP `request_id`, Douyin `log_id`, ...) of every call that
    /// answered with one, in call order.
    pub request_ids: Vec<String>,
}

/// The WIT `coupon-state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponState {
    /// The buyer can still claim it.
    Claimable,
    /// The buyer has it.
    Held,
    /// Used.
    Used,
    /// Expired or deleted.
    Expired,
    /// Anything the platform said that is none of the above.
    Unknown,
}

/// The WIT `coupon`: one coupon a recipient holds or can claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    /// The platform's id of the coupon (instance); empty when the platform sent none.
    pub id: String,
    /// The template it was issued from.
    pub template_id: Option<String>,
    /// Its name.
    pub title: Option<String>,
    /// Held, used, expired, ...
    pub state: CouponState,
    /// Face value in fen.
    pub amount_fen: Option<i64>,
    /// Minimum spend in fen.
    pub threshold_fen: Option<i64>,
    /// Start of validity, unix seconds.
    pub valid_from: Option<i64>,
    /// End of validity, unix seconds.
    pub valid_until: Option<i64>,
    /// Where the buyer claims it.
    pub claim_url: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_know_their_kind_and_value() {
        let cases = [
            (Recipient::Nick("张三".into()), RecipientKind::Nick, "nick"),
            (
                Recipient::OpenId("o".into()),
                RecipientKind::OpenId,
                "open-id",
            ),
            (
                Recipient::CustomerId("5757".into()),
                RecipientKind::CustomerId,
                "customer-id",
            ),
        ];
        for (recipient, kind, name) in cases {
            assert_eq!(recipient.kind(), kind);
            assert_eq!(kind.as_str(), name);
        }
        assert_eq!(Recipient::Nick("张三".into()).value(), "张三");
    }

    #[test]
    fn checked_refuses_other_kinds_and_blanks() {
        let nick = Recipient::Nick(" 张三 ".into());
        assert_eq!(nick.checked(RecipientKind::Nick, "taobao"), Ok("张三"));
        let error = nick.checked(RecipientKind::CustomerId, "alsc").unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str(), error.message.as_str()),
            (
                crate::ErrorClass::InvalidRequest,
                "recipient-kind",
                "alsc takes customer-id recipients, not nick"
            )
        );
        let blank = Recipient::OpenId("  ".into());
        let error = blank.checked(RecipientKind::OpenId, "douyin").unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str(), error.message.as_str()),
            (
                crate::ErrorClass::InvalidRequest,
                "recipient-empty",
                "the open-id is empty"
            )
        );
        let error = blank.checked(RecipientKind::Nick, "taobao").unwrap_err();
        assert_eq!(error.code, "recipient-kind", "the kind is checked first");
    }
}
