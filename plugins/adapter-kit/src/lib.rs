//! What every coupon-host adapter shares, whatever its platform: the adapter contract as plain
//! types ([`contract`]), the classified error ([`AdapterError`], [`ErrorClass`]), the generic
//! shapes of the `signed-http` import ([`HttpResponse`], [`HttpError`]), how settings are read
//! ([`Lookup`]), typed reads of answers ([`json`]) and the WIT glue that converts between them and the records wit-bindgen generates
//! in each adapter ([`wit_glue!`]).
//!
//! The crate is plain Rust with no WIT types, so it is tested natively. Platform families build
//! on it: `top-common` adds everything the Taobao Open Platform adapters share.
//!
//! ```
//! use adapter_kit::{AdapterError, ErrorClass};
//!
//! let error = AdapterError::new(ErrorClass::RateLimited, "7", "App Call Limited");
//! assert_eq!(error.to_string(), "rate-limited [7]: App Call Limited");
//! ```

pub mod contract;
mod error;
mod glue;
mod http;
pub mod json;
mod settings;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use error::{AdapterError, ErrorClass};
pub use http::{HttpError, HttpResponse};
pub use settings::{Lookup, config_error};
