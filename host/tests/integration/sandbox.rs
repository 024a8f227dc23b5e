//! Hostile guests: each is contained with a classified error while another plugin's call, made
//! at the same time, succeeds; and the host keeps serving both afterwards.

use coupon_host::{Error, Host, Recipient, SandboxKill, SendRequest};
use coupon_sim::SimConfig;

use crate::support::{Options, TestEnv};

async fn env_with(guest: &str) -> TestEnv {
    let extra_toml = format!(
        "[plugins.hostile]\ncomponent = {guest:?}\nlimits = {{ timeout_ms = 1000, memory_mib = 16 }}\n"
    );
    TestEnv::start(
        SimConfig::demo(),
        Options {
            extra_toml,
            ..Options::default()
        },
    )
    .await
}

async fn hostile_send(host: Host) -> coupon_host::Result<coupon_host::SendOutcome> {
    host.send(
        "hostile",
        SendRequest::new("1", vec![Recipient::Nick("x".into())]),
    )
    .await
}

/// Runs the hostile send next to a Taobao send, twice, and returns the hostile error.
async fn contained(guest: &str) -> Error {
    let env = env_with(guest).await;
    let host = env.host().await;
    let mut last = None;
    for round in 0..2 {
        let hostile = tokio::spawn(hostile_send(host.clone()));
        let neighbour = host
            .send(
                "taobao",
                SendRequest::new("48552", vec![Recipient::Nick(format!("邻居{round}"))]),
            )
            .await;
        assert_eq!(
            neighbour.expect("the other plugin is served").issued.len(),
            1
        );
        let error = hostile.await.unwrap().expect_err("the hostile call fails");
        last = Some(error);
    }
    last.unwrap()
}

fn kill(error: &Error) -> SandboxKill {
    match error {
        Error::Sandbox { kind, .. } => *kind,
        other => panic!("expected a sandbox kill, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spin_loop() {
    let error = contained(coupon_host_tests::GUEST_SPIN_LOOP).await;
    assert_eq!(kill(&error), SandboxKill::Deadline, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_bomb() {
    let error = contained(coupon_host_tests::GUEST_MEMORY_BOMB).await;
    assert_eq!(kill(&error), SandboxKill::Memory, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn recursion() {
    let error = contained(coupon_host_tests::GUEST_RECURSION).await;
    assert_eq!(kill(&error), SandboxKill::Trap, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn panic() {
    let error = contained(coupon_host_tests::GUEST_PANIC).await;
    assert_eq!(kill(&error), SandboxKill::Trap, "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_probe() {
    let error = contained(coupon_host_tests::GUEST_SECRET_PROBE).await;
    let Error::Adapter { error, .. } = &error else {
        panic!("the probe answers with what it found, got {error}");
    };
    // No environment, no arguments, no files or directories, no sockets, no foreign kv.
    assert_eq!(error.code, "probe");
    assert_eq!(error.message, "", "the guest reached: {}", error.message);
}

#[test]
fn every_guest_has_a_test() {
    let tested = [
        "spin-loop",
        "memory-bomb",
        "recursion",
        "panic",
        "secret-probe",
    ];
    for (crate_name, _) in coupon_host_tests::GUESTS {
        let name = crate_name.trim_start_matches("guest-");
        assert!(
            tested.contains(&name),
            "guest {crate_name} has no test in sandbox.rs"
        );
    }
}
