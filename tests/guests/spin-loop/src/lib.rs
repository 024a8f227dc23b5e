//! Never returns: the host must stop it at the plugin's deadline.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

fn hostile_send(_: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let mut x: u64 = 0;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}
