//! What every TOP (Taobao Open Platform) adapter shares: the response envelope, read untyped
//! ([`parse_envelope`]) or into the adapter's own struct ([`parse_envelope_as`], [`TopList`]), the
//! error classifier and the unit conversions; the call through `signed-http` and its failures
//! ([`HttpRequest`], [`read_answer`]); settings ([`Lookup`], [`TopConfig`]); platform
//! idempotency ids ([`recipient_idempotency_id`]); the one-call-per-recipient send loop
//! ([`send_one_by_one`]); and the WIT glue with the TOP form POST ([`wit_glue!`]). The adapter
//! contract as plain types ([`contract`]), the error ([`TopError`], [`ErrorClass`]) and the
//! `signed-http` shapes ([`HttpResponse`], [`HttpError`]) come from `adapter-kit`, re-exported.
//!
//! The crate is plain Rust with no WIT types, so it is tested natively and each adapter maps
//! [`ErrorClass`] onto the WIT `error-class` in its glue code. Nothing here panics on platform
//! data: every accessor returns an `Option` or a [`TopError`].
//!
//! ```
//! use top_common::{parse_envelope, ErrorClass};
//!
//! let body = br#"{"error_response":{"code":27,"msg":"Invalid session","sub_code":"invalid-sessionkey","request_id":"rxvsf5lo4ufl"}}"#;
//! let error = parse_envelope(body).unwrap_err();
//! assert_eq!(error.class, ErrorClass::AuthExpired);
//! assert_eq!(error.request_id.as_deref(), Some("rxvsf5lo4ufl"));
//! ```

mod call;
mod classify;
mod envelope;
mod glue;
mod idempotency;
mod one_by_one;
mod settings;
mod typed;
mod units;

// The platform-independent pieces live in adapter-kit; re-exported so TOP adapters need one
// dependency. `TopError` is adapter-kit's `AdapterError`.
#[doc(hidden)]
pub use adapter_kit as __adapter_kit;
pub use adapter_kit::contract;
pub use adapter_kit::json::{Field, Obj};
pub use adapter_kit::{
    AdapterError as TopError, ErrorClass, HttpError, HttpResponse, Lookup, config_error,
};
pub use call::{
    HttpRequest, Idempotence, http_error, read_answer, read_answer_as, stops_later_calls,
};
pub use classify::classify;
pub use envelope::{as_bool, as_i64, as_text, field_list, parse_envelope, request_id, unwrap_list};
pub use idempotency::recipient_idempotency_id;
pub use one_by_one::{RecipientCall, send_one_by_one};
pub use settings::TopConfig;
pub use typed::{ListKey, ResultResponse, TopList, TopResponse, non_blank, parse_envelope_as};
pub use units::{gmt8_to_unix, millis_to_unix, value_to_unix, yuan_to_fen};
