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
