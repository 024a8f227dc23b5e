//! # coupon-host
//!
//! Sends and queries coupons on Chinese e-commerce platforms (Taobao, Tmall, Alibaba local
//! services, Douyin) through per-platform adapters compiled to sandboxed WebAssembly components.
//!
//! The host owns everything dangerous or shared — secrets, request signing, network egress,
//! storage, limits — and lends it to adapters over the `coupon:adapter` WIT contract. An adapter
//! owns only the platform mapping.
//!
//! ```no_run
//! # async fn demo() -> Result<(), coupon_host::Error> {
//! use coupon_host::{Host, SendRequest};
//!
//! let host = Host::from_config_file("coupon-host.toml".as_ref()).await?;
//! let outcome = host
//!     .send("taobao", SendRequest::new("48552", vec!["nick:张三".parse().unwrap()]))
//!     .await?;
//! for issued in &outcome.issued {
//!     println!("{} got {:?}", issued.recipient, issued.coupon_id);
//! }
//! # Ok(()) }
//! ```
//!
//! Cargo features: `serve` (default) adds the HTTP API ([`serve`]) and its Prometheus exporter;
//! without it the library carries no web server.
#![warn(missing_docs)]

pub mod campaign;
pub mod check;
pub mod config;
pub mod error;
pub mod metrics;
#[cfg(feature = "serve")]
pub mod serve;

#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench;

mod accounts;
mod auth;
mod delivery;
mod drain;
mod heartbeat;
mod host;
mod limiter;
mod open;
mod runtime;
mod seal;
mod secret;
mod store;
mod text;
mod transport;
mod types;

pub use crate::config::{Config, ConfigError};
pub use crate::error::{Error, Result, SandboxKill};
pub use crate::host::{Host, ReloadReport};
pub use crate::types::{
    AccountInfo, AccountSpec, AdapterError, AdapterInfo, Coupon, CouponState, ErrorClass,
    IssuedCoupon, MAX_RECIPIENT_ID_BYTES, ParseRecipientError, PlatformLimits, PluginInfo,
    QueryRequest, Recipient, RecipientFailure, RecipientKind, SendOutcome, SendRequest,
};
