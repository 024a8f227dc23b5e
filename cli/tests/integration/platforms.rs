//! Platform guarantees beyond the conformance kit: idempotent resends and Douyin token refresh.

use coupon_host::{Recipient, SendRequest};
use coupon_sim::SimConfig;

use crate::conformance::{ALSC, DOUYIN, Platform, TMALL_NRT};
use crate::support::{Options, TestEnv};

async fn resend_with_the_same_key_issues_once(platform: &Platform) {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let recipient = (platform.recipient)(format!("{}-retry", platform.plugin));
    let mut request = SendRequest::new(platform.coupon, vec![recipient]);
    request.idempotency_key = Some("campaign-7:batch-1".into());
    let first = host.send(platform.plugin, request.clone()).await.unwrap();
    let second = host.send(platform.plugin, request.clone()).await.unwrap();
    assert_eq!(first.issued.len(), 1, "{first:?}");
    assert_eq!(
        second.issued.len(),
        1,
        "the platform answers a repeat as success: {second:?}"
    );
    assert_eq!(env.sim.ledger().len(), 1, "the platform issued twice");
    assert_eq!(env.sim.duplicate_issuances(), 0);

    // A different key is a different send.
    request.idempotency_key = Some("campaign-8:batch-1".into());
    request.recipients = vec![(platform.recipient)(format!("{}-other", platform.plugin))];
    host.send(platform.plugin, request).await.unwrap();
    assert_eq!(env.sim.ledger().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tmall_resend_with_the_same_key_issues_once() {
    resend_with_the_same_key_issues_once(&TMALL_NRT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alsc_resend_with_the_same_key_issues_once() {
    resend_with_the_same_key_issues_once(&ALSC).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn douyin_resend_with_the_same_key_issues_once() {
    resend_with_the_same_key_issues_once(&DOUYIN).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_douyin_token_expiring_mid_run_is_refreshed_once_for_all_calls() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    let host = env.host().await;
    let send = |i: usize| {
        let host = host.clone();
        async move {
            host.send(
                "douyin",
                SendRequest::new(DOUYIN.coupon, vec![Recipient::OpenId(format!("open-{i}"))]),
            )
            .await
        }
    };
    send(0).await.unwrap();
    assert_eq!(env.sim.douyin_token_fetches(), 1);
    for i in 1..=5 {
        send(i).await.unwrap();
    }
    assert_eq!(
        env.sim.douyin_token_fetches(),
        1,
        "the token is cached, not fetched per call"
    );

    env.sim.expire_douyin_tokens();
    let calls: Vec<_> = (10..30).map(|i| tokio::spawn(send(i))).collect();
    for call in calls {
        let outcome = call
            .await
            .unwrap()
            .expect("no call fails for an expired token");
        assert_eq!(outcome.issued.len(), 1, "{outcome:?}");
    }
    assert_eq!(
        env.sim.douyin_token_fetches(),
        2,
        "one refresh, not one per call"
    );
    assert_eq!(env.sim.ledger().len(), 26);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_host_process_reuses_the_stored_douyin_token() {
    let env = TestEnv::start(SimConfig::demo(), Options::default()).await;
    for i in 0..2 {
        // A new Host is what a new `coupon-host` process is: it finds the token in storage.
        let host = env.host().await;
        host.send(
            "douyin",
            SendRequest::new(DOUYIN.coupon, vec![Recipient::OpenId(format!("p-{i}"))]),
        )
        .await
        .unwrap();
    }
    assert_eq!(env.sim.douyin_token_fetches(), 1);
}
