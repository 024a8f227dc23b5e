//! The simulator's demo credentials (`SimConfig::demo()`) under the variables
//! `examples/sandbox.toml` names. The README's embedding commands set the same values, and a tidy
//! test (`cli/tests/integration/tidy.rs`, which includes this file) holds them equal.

pub const DEMO_SECRETS: &[(&str, &str)] = &[
    ("TAOBAO_APP_SECRET", "sim-app-secret"),
    ("TAOBAO_SESSION", "sim-session"),
    ("DOUYIN_CLIENT_SECRET", "sim-douyin-secret"),
    // The demo's master key for kept accounts: 32 bytes as 64 hex digits, as every master key
    // (a real one: `openssl rand -hex 32`). It is "coupon-host demo key: not secret".
    (
        "COUPON_HOST_MASTER_KEY",
        "636f75706f6e2d686f73742064656d6f206b65793a206e6f7420736563726574",
    ),
];
