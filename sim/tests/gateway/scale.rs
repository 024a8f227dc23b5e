//! A campaign's worth of sends through one simulator: 100 000 distinct nicks, 100 a call, from
//! three clients at once, as three host workers would send them (issue 13's fleet campaign).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use coupon_sim::{Sim, SimConfig, TaobaoCoupon};

use super::Req;

const RECIPIENTS: usize = 100_000;
const BATCH: usize = 100;
const WORKERS: usize = 3;
const COUPON: i64 = 48600;

fn nick(index: usize) -> String {
    format!("fan-{index:06}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_nicks_in_batches_of_a_hundred_are_each_issued_once() {
    let mut config = SimConfig::demo();
    config.taobao.coupons.push(TaobaoCoupon {
        coupon_id: COUPON,
        title: "粉丝专享满100减20".into(),
        amount_yuan: 20,
        start_fee_yuan: 100,
        stock: Some(RECIPIENTS as u64),
        per_buyer_limit: Some(1),
        ..SimConfig::demo().taobao.coupons[0].clone()
    });
    let sim = Arc::new(Sim::start(config).await.unwrap());
    let next_batch = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let sim = Arc::clone(&sim);
            let next_batch = Arc::clone(&next_batch);
            tokio::spawn(async move {
                let mut issued = 0;
                loop {
                    let batch = next_batch.fetch_add(1, Ordering::Relaxed);
                    let first = batch * BATCH;
                    if first >= RECIPIENTS {
                        return issued;
                    }
                    let nicks: Vec<String> = (first..first + BATCH).map(nick).collect();
                    let answer = Req::sns(&nicks.join(","))
                        .set("coupon_id", &COUPON.to_string())
                        .send(&sim)
                        .await;
                    let response = &answer["promotion_coupon_sns_send_response"];
                    assert!(response["failure_buyers"].is_null(), "{answer}");
                    let results = response["coupon_results"]["coupon_result"]
                        .as_array()
                        .unwrap_or_else(|| panic!("{answer}"));
                    assert_eq!(results.len(), BATCH, "{answer}");
                    issued += results.len();
                }
            })
        })
        .collect();
    let mut issued = 0;
    for worker in workers {
        issued += worker.await.unwrap();
    }
    assert_eq!(issued, RECIPIENTS);

    // The ledger agrees: everyone once, nobody else, every coupon number distinct.
    let ledger = sim.ledger();
    assert_eq!(ledger.len(), RECIPIENTS);
    let recipients: HashSet<&str> = ledger.iter().map(|i| i.recipient.as_str()).collect();
    assert_eq!(recipients.len(), RECIPIENTS);
    assert!((0..RECIPIENTS).all(|i| recipients.contains(nick(i).as_str())));
    let numbers: HashSet<&str> = ledger.iter().map(|i| i.instance_id.as_str()).collect();
    assert_eq!(numbers.len(), RECIPIENTS);
    let stats = sim.stats();
    assert_eq!(stats.issued, RECIPIENTS);
    assert_eq!(stats.calls, RECIPIENTS / BATCH);
    assert!(stats.error_counts.is_empty(), "{:?}", stats.error_counts);

    // The stock was exactly that: one more fan, or a fan sent again, gets 优惠券已发完 (stock is
    // checked before the per-buyer limit).
    let answer = Req::sns(&format!("{},{}", nick(RECIPIENTS), nick(0)))
        .set("coupon_id", &COUPON.to_string())
        .send(&sim)
        .await;
    let failures = &answer["promotion_coupon_sns_send_response"]["failure_buyers"]["error_message"];
    assert_eq!(failures[0]["reason"], "优惠券已发完", "{answer}");
    assert_eq!(failures[1]["reason"], "优惠券已发完", "{answer}");
    assert_eq!(sim.ledger().len(), RECIPIENTS);
}
