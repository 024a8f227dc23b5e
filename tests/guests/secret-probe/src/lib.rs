//! Looks for secrets everywhere a guest could: environment, arguments, files, directories,
//! sockets, the kv namespace of another plugin. Reports everything it found in its error message,
//! which the host test inspects.
#![allow(unsafe_code, reason = "wit-bindgen glue")]
include!("../../common.rs");

fn hostile_send(_: t::SendRequest) -> Result<t::SendOutcome, t::AdapterError> {
    let mut found = Vec::new();
    for (key, value) in std::env::vars() {
        found.push(format!("env {key}={value}"));
    }
    for arg in std::env::args() {
        found.push(format!("arg {arg}"));
    }
    for path in [
        "/",
        ".",
        "/etc/passwd",
        "/proc/self/environ",
        "coupon-host.db",
    ] {
        if let Ok(entries) = std::fs::read_dir(path) {
            found.push(format!("dir {path}: {} entries", entries.count()));
        }
        if let Ok(bytes) = std::fs::read(path) {
            found.push(format!("file {path}: {} bytes", bytes.len()));
        }
    }
    if std::net::TcpStream::connect("127.0.0.1:80").is_ok() {
        found.push("socket 127.0.0.1:80".into());
    }
    // Another plugin's namespace cannot be named: keys are relative to this plugin's.
    if let Ok(Some(value)) = coupon::adapter::kv::get("../taobao/secret") {
        found.push(format!("kv {}", String::from_utf8_lossy(&value)));
    }
    Err(t::AdapterError {
        class: t::ErrorClass::Unknown,
        code: "probe".into(),
        message: found.join("; "),
        retry_after_ms: None,
    })
}
