//! Abuses kv: writes past its key quota, writes an oversized value and an oversized key, and
//! tries to read another plugin's keys by every spelling it can think of. Reports what happened.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

use coupon::adapter::kv;

fn kind(result: Result<(), kv::KvError>) -> &'static str {
    match result {
        Ok(()) => "ok",
        Err(kv::KvError::QuotaExceeded) => "quota-exceeded",
        Err(kv::KvError::TooLarge) => "too-large",
        Err(kv::KvError::NotANumber) => "not-a-number",
        Err(kv::KvError::Other(_)) => "other",
    }
}

fn hostile_send(_: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let mut report = Vec::new();
    let writes: Vec<&str> = (0..10)
        .map(|i| kind(kv::set(&format!("key-{i}"), b"v", None)))
        .collect();
    report.push(format!("writes {}", writes.join(",")));
    report.push(format!(
        "big value {}",
        kind(kv::set("key-0", &vec![0u8; 64 * 1024 + 1], None))
    ));
    report.push(format!(
        "big key {}",
        kind(kv::set(&"k".repeat(513), b"v", None))
    ));
    for key in [
        "secret",
        "../taobao/secret",
        "taobao/secret",
        "taobao:secret",
        "taobao\0secret",
        "/taobao/secret",
        "%",
        "' OR '1'='1",
    ] {
        if let Ok(Some(value)) = kv::get(key) {
            report.push(format!(
                "read {key:?} = {}",
                String::from_utf8_lossy(&value)
            ));
        }
    }
    Err(t::AdapterError {
        class: t::ErrorClass::Unknown,
        code: "kv".into(),
        message: report.join("; "),
        retry_after_ms: None,
    })
}
