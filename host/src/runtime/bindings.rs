//! Host bindings of each supported `coupon:adapter` WIT version. Only `runtime/` sees them.
//!
//! `latest` is the version the capabilities implement; an older frozen version maps its
//! unchanged interfaces onto it with `with:`, and converts what changed in `convert.rs`
//! (see wit/README.md).

/// `coupon:adapter@0.1.0`
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/adapter@0.1.0",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    /// The export an adapter of this version has.
    pub(crate) const EXPORT: &str = "coupon:adapter/adapter@0.1.0";
}

pub(crate) use v0_1 as latest;
