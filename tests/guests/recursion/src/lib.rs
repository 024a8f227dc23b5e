//! Recurses without end: the stack overflows into a trap, not into the host.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

#[allow(unconditional_recursion, reason = "the point of this guest")]
fn deeper(n: u64) -> u64 {
    std::hint::black_box(deeper(std::hint::black_box(n + 1)) + 1)
}

fn hostile_send(_: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    deeper(0);
    unreachable!()
}
