//! Host bindings of each supported `coupon:adapter` WIT version. Only `runtime/` sees them.
//!
//! `latest` is the version the capabilities implement. An older frozen version has its own
//! generated imports, which `caps/compat.rs` implements by converting to `latest` (a generated
//! `add_to_linker` registers an interface under its own version's name only), and its own
//! records, which `convert.rs` converts (see wit/README.md).

/// `coupon:adapter@0.2.0`
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/adapter@0.2.0",
        world: "plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });

    /// The export an adapter of this version has.
    pub(crate) const EXPORT: &str = "coupon:adapter/adapter@0.2.0";
}

/// `coupon:adapter@0.1.0`: `types` and the exported `adapter` differ from 0.2.0; the imported
/// capabilities are the same but for their names.
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

pub(crate) use v0_2 as latest;
