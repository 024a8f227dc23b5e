//! The whole stack through its public surfaces: the library API and the `coupon-host` binary,
//! against adapters built from source and the simulator on loopback.

mod accounts;
mod campaign;
mod check;
mod cli;
mod conformance;
mod delivery;
mod docs;
mod embed;
mod fleet;
mod hostile;
mod platforms;
mod properties;
mod reload;
mod sandbox;
mod serve;
mod support;
mod taobao;
mod tidy;
mod versions;
