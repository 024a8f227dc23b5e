//! The Taobao shop behind the TOP gateway: `taobao.promotion.coupon.sns.send` and
//! `taobao.qianniu.coupon.buyer.get`, shaped like their documentation pages
//! (seeds/000 and seeds/002; PROTOCOLS.md §1.8 and §3).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use md5::{Digest, Md5};
use serde_json::{Value, json};

use crate::state::State;
use crate::top::sellers::{SellerId, Sellers};
use crate::top::{Call, TopApi, TopError};
use crate::{Issuance, TaobaoCoupon, TaobaoSeed};

const SNS_SEND: &str = "taobao.promotion.coupon.sns.send";
const BUYER_GET: &str = "taobao.qianniu.coupon.buyer.get";

/// Most nicks one sns.send takes ("最大列表长度：100").
const MAX_NICKS: usize = 100;
/// Most open_uids one sns.send takes ("最大列表长度：999").
const MAX_OPEN_UIDS: usize = 999;

/// The Taobao APIs the gateway serves. Both are tagged "需要授权".
pub(crate) const APIS: &[TopApi] = &[
    TopApi {
        name: SNS_SEND,
        needs_session: true,
        handle: sns_send,
    },
    TopApi {
        name: BUYER_GET,
        needs_session: true,
        handle: buyer_get,
    },
];

/// A coupon template with its validity and owner resolved.
struct Template {
    seed: TaobaoCoupon,
    ends: DateTime<Utc>,
    seller: SellerId,
}

/// The shop's state: coupon templates, how many of each were issued, who holds what.
pub(crate) struct Shop {
    templates: Vec<Template>,
    unknown_buyers: HashSet<String>,
    /// Coupons held per (coupon_id, nick or open_uid).
    held: HashMap<(i64, String), u32>,
    /// Coupons issued per coupon_id.
    issued: HashMap<i64, u64>,
    /// The next `coupon_number`. Numbers are unique across the shop, like the platform's.
    next_number: u64,
}

/// Parses a seed time, `yyyy-MM-dd HH:mm:ss` in GMT+8.
pub(crate) fn parse_gmt8(text: &str) -> Option<DateTime<Utc>> {
    let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
    let gmt8 = chrono::FixedOffset::east_opt(8 * 3600)?;
    Some(gmt8.from_local_datetime(&local).single()?.to_utc())
}

impl Shop {
    /// Builds the shop from its seed; a seed error names the coupon and the field.
    pub(crate) fn new(seed: TaobaoSeed, sellers: &Sellers) -> Result<Shop, String> {
        let mut templates: Vec<Template> = Vec::new();
        for coupon in seed.coupons {
            let id = coupon.coupon_id;
            if templates.iter().any(|t| t.seed.coupon_id == id) {
                return Err(format!("taobao.coupons: coupon_id {id} is listed twice"));
            }
            let bad_time = |field: &str, value: &str| {
                format!(
                    "taobao.coupons[{id}].{field}: {value:?} is not yyyy-MM-dd HH:mm:ss (GMT+8)"
                )
            };
            parse_gmt8(&coupon.start_time)
                .ok_or_else(|| bad_time("start_time", &coupon.start_time))?;
            let ends = parse_gmt8(&coupon.end_time)
                .ok_or_else(|| bad_time("end_time", &coupon.end_time))?;
            let seller =
                sellers.owner(coupon.seller.as_deref(), &format!("taobao.coupons[{id}]"))?;
            templates.push(Template {
                seed: coupon,
                ends,
                seller,
            });
        }
        Ok(Shop {
            templates,
            unknown_buyers: seed.unknown_buyers.into_iter().collect(),
            held: HashMap::new(),
            issued: HashMap::new(),
            next_number: 3_000_000_001,
        })
    }

    fn held(&self, coupon_id: i64, buyer: &str) -> u32 {
        self.held
            .get(&(coupon_id, buyer.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    fn issued(&self, coupon_id: i64) -> u64 {
        self.issued.get(&coupon_id).copied().unwrap_or(0)
    }

    /// Why `buyer` cannot get the coupon now, in the platform's words; `None` when they can.
    fn refusal(&self, template: &Template, buyer: &str) -> Option<&'static str> {
        let coupon = &template.seed;
        if self.unknown_buyers.contains(buyer) {
            Some("买家不存在")
        } else if coupon
            .stock
            .is_some_and(|stock| self.issued(coupon.coupon_id) >= stock)
        {
            Some("优惠券已发完")
        } else if coupon
            .per_buyer_limit
            .is_some_and(|limit| self.held(coupon.coupon_id, buyer) >= limit)
        {
            Some("领取数量超过限制")
        } else {
            None
        }
    }

    /// Issues one coupon to `buyer` and returns its `coupon_number`.
    fn issue(&mut self, coupon_id: i64, buyer: &str) -> u64 {
        let number = self.next_number;
        self.next_number += 1;
        *self.issued.entry(coupon_id).or_default() += 1;
        *self.held.entry((coupon_id, buyer.to_owned())).or_default() += 1;
        number
    }
}

/// A `String[]` parameter: one comma-joined string. Empty items are dropped; items are not
/// trimmed, so `张三, 李四` names a buyer " 李四" (who would then hold the coupon in the ledger).
fn split_list(value: Option<&str>) -> Vec<&str> {
    value
        .map(|v| v.split(',').filter(|item| !item.is_empty()).collect())
        .unwrap_or_default()
}

/// The business error for a coupon that does not exist or has expired (seeds/000 error table).
fn coupon_error(detail: String) -> TopError {
    TopError::new(15, "Remote service error")
        .sub("isv.coupon-error", "优惠券不存在或者优惠券已经过期")
        .detail(detail)
}

/// `taobao.promotion.coupon.sns.send`: sends a shop coupon to up to 100 nicks and 999 open_uids.
///
/// Each buyer either gets a coupon (`coupon_results`) or is reported in `failure_buyers` with a
/// reason. `is_success` is true even when every buyer failed, and an empty list is left out of
/// the answer, as the platform does.
fn sns_send(state: &mut State, call: &Call<'_>) -> Result<Value, TopError> {
    let coupon_id = call
        .param("coupon_id")
        .ok_or_else(|| TopError::missing("coupon_id"))?;
    let coupon_id: i64 = coupon_id
        .parse()
        .map_err(|_| TopError::invalid("coupon_id", format!("coupon_id {coupon_id:?} 不是数字")))?;
    let nicks = split_list(call.param("buyer_nick"));
    let open_uids = split_list(call.param("open_uids"));
    if nicks.len() > MAX_NICKS {
        return Err(TopError::invalid(
            "buyer_nick",
            format!(
                "buyer_nick 最大列表长度为{MAX_NICKS}，实际为{}",
                nicks.len()
            ),
        ));
    }
    if open_uids.len() > MAX_OPEN_UIDS {
        return Err(TopError::invalid(
            "open_uids",
            format!(
                "open_uids 最大列表长度为{MAX_OPEN_UIDS}，实际为{}",
                open_uids.len()
            ),
        ));
    }
    if nicks.is_empty() && open_uids.is_empty() {
        return Err(
            TopError::new(40, "Missing required arguments:buyer_nick").sub(
                "isv.missing-parameter",
                "buyer_nick 与 open_uids 不能同时为空",
            ),
        );
    }

    let State {
        taobao,
        ledger,
        sellers,
        ..
    } = state;
    let Some(index) = taobao
        .templates
        .iter()
        .position(|t| t.seed.coupon_id == coupon_id)
    else {
        return Err(coupon_error(format!("coupon {coupon_id} does not exist")));
    };
    // "只能发给当前授权卖家店铺的微淘粉丝": another shop's coupon is, to this seller, one that does
    // not exist (the seed's only coupon error).
    let owner = taobao.templates[index].seller;
    if call.seller != Some(owner) {
        return Err(coupon_error(format!(
            "coupon {coupon_id} belongs to seller {:?}, not the session's",
            sellers.seller(owner).nick
        )));
    }
    if call.now > taobao.templates[index].ends {
        return Err(coupon_error(format!(
            "coupon {coupon_id} ended at {} (GMT+8)",
            taobao.templates[index].seed.end_time
        )));
    }

    let mut results = Vec::new();
    let mut failures = Vec::new();
    let mut issued = Vec::new();
    let recipients = nicks
        .into_iter()
        .map(|nick| ("buyer_nick", nick))
        .chain(open_uids.into_iter().map(|uid| ("open_uid", uid)));
    for (field, buyer) in recipients {
        if let Some(reason) = taobao.refusal(&taobao.templates[index], buyer) {
            failures.push(json!({ field: buyer, "reason": reason }));
            continue;
        }
        let number = taobao.issue(coupon_id, buyer);
        issued.push(Issuance {
            platform: "taobao".into(),
            coupon: coupon_id.to_string(),
            recipient: buyer.to_owned(),
            instance_id: number.to_string(),
            idempotency_id: None,
        });
        results.push(json!({ "coupon_number": number, field: buyer }));
    }
    ledger.record(issued);

    let mut answer = json!({ "is_success": true });
    if !results.is_empty() {
        answer["coupon_results"] = call.shape.list("coupon_result", results);
    }
    if !failures.is_empty() {
        answer["failure_buyers"] = call.shape.list("error_message", failures);
    }
    Ok(answer)
}

/// A uuid-shaped id for (coupon, buyer), stable across calls and simulator runs.
fn coupon_uuid(coupon_id: i64, buyer: &str) -> String {
    let hex = hex::encode(Md5::digest(format!("{coupon_id}/{buyer}").as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `taobao.qianniu.coupon.buyer.get`: every coupon of the session's seller's shop, with `status`
/// 1 when the buyer holds it and 0 when they can still get it. Amounts are in yuan, times in
/// GMT+8.
fn buyer_get(state: &mut State, call: &Call<'_>) -> Result<Value, TopError> {
    let buyer = call
        .param("buyer_nick")
        .ok_or_else(|| TopError::missing("buyer_nick"))?;
    let shop = &state.taobao;
    let coupons = shop
        .templates
        .iter()
        .filter(|template| call.seller == Some(template.seller))
        .map(|template| {
            let coupon = &template.seed;
            let id = coupon.coupon_id;
            let mut info = json!({
                "id": coupon_uuid(id, buyer),
                "status": u8::from(shop.held(id, buyer) > 0),
                "amount": coupon.amount_yuan,
                "type": 1,
                "start_fee": coupon.start_fee_yuan,
                "apply_count": shop.issued(id),
                // "使用优惠券是否有前提条件": a minimum spend.
                "has_limit": coupon.start_fee_yuan > 0,
                "title": coupon.title,
                "start_time": coupon.start_time,
                "end_time": coupon.end_time,
                "template_id": id,
                "template_code": id,
                "apply_url": format!("https://taoquan.taobao.com/coupon/unify_apply.htm?activityId={id}"),
            });
            // An unlimited coupon has no total; the platform leaves absent fields out.
            if let Some(stock) = coupon.stock {
                info["total_count"] = json!(stock);
            }
            info
        })
        .collect();
    Ok(json!({ "is_success": true, "coupons": call.shape.list("coupon_info_do", coupons) }))
}
