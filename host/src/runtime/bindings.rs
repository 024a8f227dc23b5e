//! Host bindings of each supported `coupon:adapter` WIT version.
//!
//! `latest` is the version host code implements; older frozen versions (none yet) will map their
//! unchanged interfaces onto it with `with:` (see wit/README.md).

/// `coupon:adapter@0.1.0`
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/adapter@0.1.0",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub(crate) use v0_1 as latest;
