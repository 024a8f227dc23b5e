//! The tmall-nrt adapter component: glue between the `coupon:adapter` world and [`api`], which
//! holds every decision and is tested natively.
#![allow(
    unsafe_code,
    reason = "wit-bindgen's generate!/export! emit the canonical-ABI glue as unsafe code; api.rs forbids unsafe"
)]

wit_bindgen::generate!({ path: "../../wit/adapter@0.2.0", world: "plugin" });
// The conversions between the WIT records and top-common's plain types, and `glue::send`.
top_common::wit_glue!();

pub mod api;

// The exported struct and `impl Guest`, the same for every conventional TOP adapter.
top_common::export_adapter!(TmallNrt);
