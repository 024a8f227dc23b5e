//! What every TOP (Taobao Open Platform) adapter shares: the response envelope, the error
//! classifier and the unit conversions.
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

mod classify;
mod envelope;
mod error;
mod units;

pub use classify::classify;
pub use envelope::{as_bool, as_i64, as_text, field_list, parse_envelope, request_id, unwrap_list};
pub use error::{ErrorClass, TopError};
pub use units::{gmt8_to_unix, value_to_unix, yuan_to_fen};
