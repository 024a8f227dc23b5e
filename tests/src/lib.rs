//! Paths of the wasm components built from this workspace's sources by `build.rs`.
//!
//! `PLUGINS` lists every platform adapter (`plugins/*`), `GUESTS` every test guest
//! (`tests/guests/*`); each also has its own constant, e.g. [`TAOBAO`].

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
