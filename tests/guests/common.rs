// Shared by every hostile test guest: the bindings and a well-behaved `describe` and
// `query-coupons`; each guest's lib.rs supplies only `hostile_send`, its one misbehaviour.

wit_bindgen::generate!({ path: "../../../wit/adapter@0.1.0", world: "plugin" });

use coupon::adapter::types as t;
use exports::coupon::adapter::adapter::Guest;

struct Hostile;

#[cfg(target_arch = "wasm32")]
export!(Hostile);

impl Guest for Hostile {
    fn describe() -> t::AdapterInfo {
        t::AdapterInfo {
            platform: "hostile".into(),
            version: "0".into(),
            max_recipients_per_call: 10,
            idempotent_send: false,
            recipient_kinds: vec![t::RecipientKind::Nick],
            operations: vec!["send-coupon".into(), "query-coupons".into()],
        }
    }

    fn send_coupon(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
        hostile_send(req)
    }

    fn query_coupons(_: t::QueryRequest) -> Result<Vec<t::Coupon>, t::AdapterError> {
        Ok(Vec::new())
    }
}

/// An outcome that fails every one of `recipients` as `unknown`, with `code` and `message`: how
/// the guests that break the contract in some other way end the recipients they report.
#[allow(dead_code, reason = "only the guests checked by `coupon-host check` use it")]
fn all_unknown(recipients: &[t::Recipient], code: &str, message: &str) -> t::SendOutcome {
    let failed = recipients
        .iter()
        .map(|recipient| t::RecipientFailure {
            recipient: recipient.clone(),
            error: t::AdapterError {
                class: t::ErrorClass::Unknown,
                code: code.into(),
                message: message.into(),
                retry_after_ms: None,
            },
        })
        .collect();
    t::SendOutcome {
        issued: Vec::new(),
        failed,
        platform_request_ids: Vec::new(),
    }
}

/// A POST of the coupon to the URL in the guest's `gateway` setting (which `coupon-host check`
/// sets by default).
#[allow(dead_code, reason = "only the guests that call out use it")]
fn to_gateway(coupon: &str) -> coupon::adapter::signed_http::Request {
    coupon::adapter::signed_http::Request {
        method: coupon::adapter::signed_http::Method::Post,
        url: coupon::adapter::settings::get("gateway").unwrap_or_default(),
        headers: Vec::new(),
        params: vec![("coupon".into(), coupon.into())],
        body: None,
    }
}
