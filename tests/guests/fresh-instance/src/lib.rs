//! Counts its calls in a global static and keeps what it saw in a global buffer. On a fresh
//! instance per call, every call is its first and the buffer starts empty; a host that reused an
//! instance (or a memory without resetting it) would show a count above one.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

static CALLS: AtomicU32 = AtomicU32::new(0);
static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn hostile_send(req: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    let before = seen.len();
    seen.push(req.idempotency_key);
    Err(t::AdapterError {
        class: t::ErrorClass::Unknown,
        code: "fresh".into(),
        message: format!("calls={calls} seen_before={before}"),
        retry_after_ms: None,
    })
}
