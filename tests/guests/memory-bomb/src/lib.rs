//! Allocates without end: the host must stop it at `memory_mib`.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

fn hostile_send(_: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 1 << 20]);
        std::hint::black_box(&hoard);
    }
}
