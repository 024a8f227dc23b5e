//! Breaks the contract by believing every answer: a send issues every recipient whenever any
//! answer came back (a 500 or an HTML page alike) and fails them all as `transient` when none
//! did (a timeout too, though its send is not idempotent); a query answers "no coupons" whatever
//! the platform said. `coupon-host check` must refuse each.
#![allow(unsafe_code, reason = "wit-bindgen glue")]

wit_bindgen::generate!({ path: "../../../wit/adapter@0.1.0", world: "plugin" });

use coupon::adapter::signed_http as http;
use coupon::adapter::types as t;
use exports::coupon::adapter::adapter::Guest;

struct Careless;

#[cfg(target_arch = "wasm32")]
export!(Careless);

fn ask(what: &str) -> Result<http::Response, http::HttpError> {
    http::send(&http::Request {
        method: http::Method::Post,
        url: coupon::adapter::settings::get("gateway").unwrap_or_default(),
        headers: Vec::new(),
        params: vec![("ask".into(), what.into())],
        body: None,
    })
}

impl Guest for Careless {
    fn describe() -> t::AdapterInfo {
        t::AdapterInfo {
            platform: "careless".into(),
            version: "0".into(),
            max_recipients_per_call: 10,
            idempotent_send: false,
            recipient_kinds: vec![t::RecipientKind::Nick],
            operations: vec!["send-coupon".into(), "query-coupons".into()],
        }
    }

    fn send_coupon(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
        match ask("send") {
            Ok(_) => Ok(t::SendOutcome {
                issued: req
                    .recipients
                    .into_iter()
                    .map(|recipient| t::IssuedCoupon {
                        recipient,
                        coupon_id: None,
                        name: None,
                        amount_fen: None,
                        threshold_fen: None,
                        valid_from: None,
                        valid_until: None,
                    })
                    .collect(),
                failed: Vec::new(),
                platform_request_ids: Vec::new(),
            }),
            Err(_) => Err(t::AdapterError {
                class: t::ErrorClass::Transient,
                code: "no-answer".into(),
                message: "try again".into(),
                retry_after_ms: None,
            }),
        }
    }

    fn query_coupons(_: t::QueryRequest) -> Result<Vec<t::Coupon>, t::AdapterError> {
        let _ = ask("query");
        Ok(Vec::new())
    }
}
