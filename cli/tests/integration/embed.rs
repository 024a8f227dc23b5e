//! The library as an engine embeds it: the runnable example, and a graceful shutdown.

use coupon_host::{CouponState, Error, SendRequest};
use coupon_sim::SimConfig;

use crate::support::{Options, TAOBAO_COUPON, TestEnv};

#[path = "../../../host/examples/embed.rs"]
mod example;

#[tokio::test(flavor = "multi_thread")]
async fn the_embedding_example_runs_against_the_simulator() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let report = example::run(
        &host,
        "taobao",
        TAOBAO_COUPON,
        "nick:张三".parse().unwrap(),
        None,
    )
    .await
    .expect("the example runs");
    assert_eq!(report.plugins, ["alsc", "douyin", "taobao", "tmall-nrt"]);
    assert_eq!(report.outcome.issued.len(), 1);
    assert!(report.outcome.failed.is_empty());
    assert!(
        report.coupons.iter().any(
            |c| c.state == CouponState::Held && c.template_id.as_deref() == Some(TAOBAO_COUPON)
        ),
        "{:?}",
        report.coupons
    );
    assert_eq!(env.sim.ledger().len(), 1);
    // The example shuts its host down last: every clone now refuses calls.
    let refused = host
        .send(
            "taobao",
            SendRequest::new(TAOBAO_COUPON, vec!["nick:李四".parse().unwrap()]),
        )
        .await;
    assert!(matches!(refused, Err(Error::ShuttingDown)), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_refuses_new_calls_and_waits_for_running_ones() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    env.add_slow_plugin();
    let host = env.host().await;
    env.delay_next_send(1_500);
    let running = tokio::spawn({
        let host = host.clone();
        async move {
            host.send(
                "slow",
                SendRequest::new(TAOBAO_COUPON, vec!["nick:running".parse().unwrap()]),
            )
            .await
        }
    });
    env.wait_for_sends(1).await;

    let shutdown = tokio::spawn({
        let host = host.clone();
        async move { host.shutdown().await }
    });
    while !host.is_shutting_down() {
        tokio::task::yield_now().await;
    }
    let refused = host
        .query(
            "taobao",
            coupon_host::QueryRequest {
                recipient: "nick:running".parse().unwrap(),
                options: Vec::new(),
                account: None,
            },
        )
        .await;
    assert!(matches!(refused, Err(Error::ShuttingDown)), "{refused:?}");
    assert!(refused.unwrap_err().to_string().contains("shutting down"));

    shutdown.await.unwrap();
    // Shutdown returned, so the running send had already ended — and it ended well.
    assert!(running.is_finished());
    let outcome = running.await.unwrap().expect("the running send completes");
    assert_eq!(outcome.issued.len(), 1);
}
