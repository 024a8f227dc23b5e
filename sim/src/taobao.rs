//! `taobao.promotion.coupon.sns.send` and `taobao.qianniu.coupon.buyer.get`, shaped like the seed
//! pages (seeds/000 and seeds/002).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::top::{Shape, TopError};
use crate::{Issuance, Shared, lock};

const SNS_SEND: &str = "taobao.promotion.coupon.sns.send";
const BUYER_GET: &str = "taobao.qianniu.coupon.buyer.get";

pub fn knows(api: &str) -> bool {
    matches!(api, SNS_SEND | BUYER_GET)
}

pub fn needs_session(api: &str) -> bool {
    matches!(api, SNS_SEND | BUYER_GET)
}

pub fn dispatch(
    shared: &Shared,
    api: &str,
    params: &BTreeMap<String, String>,
    shape: Shape,
) -> Result<Value, TopError> {
    match api {
        SNS_SEND => sns_send(shared, params, shape),
        BUYER_GET => buyer_get(shared, params, shape),
        _ => Err(TopError::new(22, "Invalid Method")),
    }
}

fn missing(name: &str) -> TopError {
    TopError::new(40, "Missing Required Arguments")
        .sub("isv.missing-parameter", format!("missing {name}"))
}

fn invalid(what: String) -> TopError {
    TopError::new(41, "Invalid Arguments").sub("isv.invalid-parameter", what)
}

fn list(value: Option<&String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn sns_send(
    shared: &Shared,
    params: &BTreeMap<String, String>,
    shape: Shape,
) -> Result<Value, TopError> {
    let coupon_id: i64 = params
        .get("coupon_id")
        .ok_or_else(|| missing("coupon_id"))?
        .parse()
        .map_err(|_| invalid("coupon_id is not a number".into()))?;
    let nicks = list(params.get("buyer_nick"));
    let open_uids = list(params.get("open_uids"));
    if nicks.is_empty() && open_uids.is_empty() {
        return Err(missing("buyer_nick or open_uids"));
    }
    if nicks.len() > 100 {
        return Err(invalid("buyer_nick: at most 100".into()));
    }
    if open_uids.len() > 999 {
        return Err(invalid("open_uids: at most 999".into()));
    }

    let mut state = lock(shared);
    let now = state.now();
    let Some(coupon) = state
        .config
        .taobao
        .coupons
        .iter()
        .find(|c| c.coupon_id == coupon_id)
        .cloned()
    else {
        return Err(coupon_error());
    };
    let ends = chrono::NaiveDateTime::parse_from_str(&coupon.end_time, "%Y-%m-%d %H:%M:%S")
        .map(|t| t.and_utc().timestamp() - 8 * 3600)
        .unwrap_or(i64::MAX);
    if now.timestamp() > ends {
        return Err(coupon_error());
    }

    let mut results = Vec::new();
    let mut failures = Vec::new();
    let recipients = nicks
        .iter()
        .map(|n| ("buyer_nick", n))
        .chain(open_uids.iter().map(|u| ("open_uid", u)));
    for (field, buyer) in recipients {
        let issued = state.issued_count.get(&coupon_id).copied().unwrap_or(0);
        let held = state
            .held
            .get(&(coupon_id, buyer.clone()))
            .copied()
            .unwrap_or(0);
        let reason = if state.config.taobao.unknown_buyers.contains(buyer) {
            Some("买家不存在")
        } else if coupon.stock.is_some_and(|stock| issued >= stock) {
            Some("优惠券已发完")
        } else if coupon.per_buyer_limit.is_some_and(|limit| held >= limit) {
            Some("领取数量超过限制")
        } else {
            None
        };
        if let Some(reason) = reason {
            failures.push(json!({ field: buyer, "reason": reason }));
            continue;
        }
        let number = state.next_number;
        state.next_number += 1;
        *state.issued_count.entry(coupon_id).or_default() += 1;
        *state.held.entry((coupon_id, buyer.clone())).or_default() += 1;
        state.ledger.push(Issuance {
            platform: "taobao".into(),
            coupon: coupon_id.to_string(),
            recipient: buyer.clone(),
            instance_id: number.to_string(),
            idempotency_id: None,
        });
        results.push(json!({ "coupon_number": number, field: buyer }));
    }

    // The platform leaves empty lists out, and says success even when every buyer failed.
    let mut answer = json!({ "is_success": true });
    if !results.is_empty() {
        answer["coupon_results"] = shape.list("coupon_result", results);
    }
    if !failures.is_empty() {
        answer["failure_buyers"] = shape.list("error_message", failures);
    }
    Ok(answer)
}

fn coupon_error() -> TopError {
    TopError::new(15, "Remote service error")
        .sub("isv.coupon-error", "优惠券不存在或者优惠券已经过期")
}

fn buyer_get(
    shared: &Shared,
    params: &BTreeMap<String, String>,
    shape: Shape,
) -> Result<Value, TopError> {
    let buyer = params
        .get("buyer_nick")
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| missing("buyer_nick"))?;
    let state = lock(shared);
    let coupons = state
        .config
        .taobao
        .coupons
        .iter()
        .map(|c| {
            let held = state
                .held
                .get(&(c.coupon_id, buyer.clone()))
                .copied()
                .unwrap_or(0);
            json!({
                "id": format!("{:x}-{}", c.coupon_id, buyer.len()),
                "status": if held > 0 { 1 } else { 0 },
                "amount": c.amount_yuan,
                "type": 1,
                "start_fee": c.start_fee_yuan,
                "total_count": c.stock.unwrap_or(1_000_000),
                "apply_count": state.issued_count.get(&c.coupon_id).copied().unwrap_or(0),
                "has_limit": true,
                "title": c.title,
                "start_time": c.start_time,
                "end_time": c.end_time,
                "template_id": c.coupon_id,
                "template_code": c.coupon_id,
                "apply_url": format!("https://taoquan.taobao.com/coupon/unify_apply.htm?activityId={}", c.coupon_id),
            })
        })
        .collect();
    Ok(json!({ "is_success": true, "coupons": shape.list("coupon_info_do", coupons) }))
}
