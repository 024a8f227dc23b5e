//! The local-services CRM (本地生活) behind the TOP gateway: `alibaba.alsc.crm.voucher.send`
//! (seeds/003) and `alibaba.alsc.crm.customer.voucher.list` (PROTOCOLS.md §3), in the shapes
//! `docs/PLATFORMS.md` fixes.
//!
//! The send works with or without a session (seed 003 calls it without one); the list needs one
//! (PROTOCOLS.md §3, "获取顾客优惠券列表": session). Vouchers belong to sellers: a send with a
//! session may only send its seller's vouchers, and the list shows only its seller's. Business
//! failures are not TOP errors: the answer is a success envelope whose `result` says
//! `biz_success: false` with a `result_code`. The send is idempotent by its `request_id` and
//! issues `voucher_num` vouchers at once, all or none.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::state::State;
use crate::taobao::parse_gmt8;
use crate::top::sellers::{SellerId, Sellers};
use crate::top::{Call, TopApi, TopError};
use crate::{AlscSeed, AlscVoucher, Issuance};

const VOUCHER_SEND: &str = "alibaba.alsc.crm.voucher.send";
const VOUCHER_LIST: &str = "alibaba.alsc.crm.customer.voucher.list";

/// The send's JSON parameter.
const SEND_REQ: &str = "param_voucher_send_open_req";
/// The list's JSON parameter.
const LIST_REQ: &str = "customer_voucher_full_open_req";

/// The most vouchers one send may ask for. The platform publishes no limit; without one, a
/// `voucher_num` of a billion against an unlimited voucher would make the simulator allocate
/// for minutes.
const MAX_VOUCHER_NUM: i64 = 1000;
/// The largest page the list serves.
const MAX_PAGE_SIZE: i64 = 100;
/// The page size when none is asked for (PROTOCOLS.md §3: "page_size (default 20)").
const DEFAULT_PAGE_SIZE: i64 = 20;

/// The alsc APIs the gateway serves. Seed 003 calls the send without a session; the list is
/// tagged as needing one, and the real gateway answers it 26 without.
pub(crate) const APIS: &[TopApi] = &[
    TopApi {
        name: VOUCHER_SEND,
        needs_session: false,
        handle: voucher_send,
    },
    TopApi {
        name: VOUCHER_LIST,
        needs_session: true,
        handle: voucher_list,
    },
];

/// A voucher template with its validity and owner resolved.
struct Template {
    seed: AlscVoucher,
    ends: DateTime<Utc>,
    seller: SellerId,
}

/// One voucher issued to a customer.
struct Held {
    /// The instance id, listed as `voucher_id`.
    id: String,
    /// Index into [`Crm::templates`].
    template: usize,
    customer_id: String,
    created: DateTime<Utc>,
}

/// What a `request_id` was first used for, and the answer it got.
struct Sent {
    customer_id: String,
    voucher_id: String,
    voucher_num: i64,
    answer: Value,
}

/// The CRM's state: templates, what each customer holds, which `request_id`s were used.
pub(crate) struct Crm {
    templates: Vec<Template>,
    unknown_customers: HashSet<String>,
    /// Vouchers issued per template index.
    issued: HashMap<usize, u64>,
    /// Every voucher issued, oldest first.
    held: Vec<Held>,
    /// Indexes into `held` per customer, so a list reads one customer's vouchers only.
    by_customer: HashMap<String, Vec<usize>>,
    /// Vouchers held per (template index, customer id).
    held_count: HashMap<(usize, String), u64>,
    /// Successful sends per (app key, the session's seller if any, request_id).
    sent: HashMap<(String, Option<SellerId>, String), Sent>,
    next_instance: u64,
}

/// Whether `text` is a yuan amount as the API writes them: digits, optionally `.` and one or
/// two more.
fn is_yuan(text: &str) -> bool {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "00"));
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && (1..=2).contains(&fraction.len())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

impl Crm {
    /// Builds the CRM from its seed; a seed error names the voucher and the field.
    pub(crate) fn new(seed: AlscSeed, sellers: &Sellers) -> Result<Crm, String> {
        let mut templates: Vec<Template> = Vec::new();
        for voucher in seed.vouchers {
            let id = voucher.voucher_id.clone();
            if templates.iter().any(|t| t.seed.voucher_id == id) {
                return Err(format!("alsc.vouchers: voucher_id {id:?} is listed twice"));
            }
            for (field, value) in [
                ("amount_yuan", &voucher.amount_yuan),
                ("start_fee_yuan", &voucher.start_fee_yuan),
            ] {
                if !is_yuan(value) {
                    return Err(format!(
                        "alsc.vouchers[{id}].{field}: {value:?} is not a yuan amount like 10.00"
                    ));
                }
            }
            let bad_time = |field: &str, value: &str| {
                format!("alsc.vouchers[{id}].{field}: {value:?} is not yyyy-MM-dd HH:mm:ss (GMT+8)")
            };
            parse_gmt8(&voucher.start_time)
                .ok_or_else(|| bad_time("start_time", &voucher.start_time))?;
            let ends = parse_gmt8(&voucher.end_time)
                .ok_or_else(|| bad_time("end_time", &voucher.end_time))?;
            let seller =
                sellers.owner(voucher.seller.as_deref(), &format!("alsc.vouchers[{id}]"))?;
            templates.push(Template {
                seed: voucher,
                ends,
                seller,
            });
        }
        Ok(Crm {
            templates,
            unknown_customers: seed.unknown_customers.into_iter().collect(),
            issued: HashMap::new(),
            held: Vec::new(),
            by_customer: HashMap::new(),
            held_count: HashMap::new(),
            sent: HashMap::new(),
            next_instance: 80_000_000_001,
        })
    }

    fn held_by(&self, template: usize, customer_id: &str) -> u64 {
        self.held_count
            .get(&(template, customer_id.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// A business failure: a success envelope with `biz_success: false`, recorded as a failed call.
fn failure(call: &Call<'_>, code: &str, desc: &str, detail: String) -> Value {
    call.report_failure(code, detail);
    json!({ "result": {
        "result": false,
        "biz_success": false,
        "result_code": code,
        "result_desc": desc,
        "result_view": desc,
    } })
}

fn param_error(call: &Call<'_>, why: String) -> Value {
    failure(call, "PARAM_ERROR", &format!("参数错误: {why}"), why)
}

/// The JSON object in parameter `name`. Both request objects are optional on the seed page, so
/// an absent one is an empty object (whose required fields are then missing: `PARAM_ERROR`);
/// one that is not a JSON object cannot be bound at all: TOP code 41.
fn request_object(call: &Call<'_>, name: &str) -> Result<Map<String, Value>, TopError> {
    let Some(text) = call.param(name) else {
        return Ok(Map::new());
    };
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(TopError::invalid(name, format!("{name} 不是 JSON 对象"))
            .detail(format!("{name}={text:?}"))),
    }
}

/// A required string field: present, a string, not blank.
fn required_string(object: &Map<String, Value>, field: &str) -> Result<String, String> {
    match object.get(field) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        Some(Value::String(_)) | Some(Value::Null) | None => Err(format!("{field} 不能为空")),
        Some(other) => Err(format!("{field} 应为字符串，实际为 {other}")),
    }
}

/// An optional integer field within `range`, `default` when absent.
fn integer(
    object: &Map<String, Value>,
    field: &str,
    default: Option<i64>,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, String> {
    let value = match object.get(field) {
        None | Some(Value::Null) => {
            return default.ok_or_else(|| format!("{field} 不能为空"));
        }
        Some(value) => value,
    };
    match value.as_i64() {
        Some(number) if range.contains(&number) => Ok(number),
        _ => Err(format!(
            "{field} 应为 {} 到 {} 的整数，实际为 {value}",
            range.start(),
            range.end()
        )),
    }
}

/// What a send asks for, checked.
struct SendReq {
    customer_id: String,
    voucher_id: String,
    voucher_num: i64,
    request_id: Option<String>,
}

fn parse_send(object: &Map<String, Value>) -> Result<SendReq, String> {
    let request_id = match object.get("request_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => return Err(format!("request_id 应为字符串，实际为 {other}")),
    };
    Ok(SendReq {
        customer_id: required_string(object, "customer_id")?,
        voucher_id: required_string(object, "voucher_id")?,
        voucher_num: integer(object, "voucher_num", None, 1..=MAX_VOUCHER_NUM)?,
        request_id,
    })
}

/// `alibaba.alsc.crm.voucher.send`: issues `voucher_num` vouchers of `voucher_id` to
/// `customer_id`, all or none.
///
/// Checks, first failure wins: the parameter is JSON (41); its fields (`PARAM_ERROR`); a known
/// `request_id` (the first answer again, or `PARAM_ERROR` when it was used for another customer,
/// voucher or number); the voucher exists, is the session's seller's (when a session was sent)
/// and has not ended (`VOUCHER_NOT_EXIST`); the customer exists (`CUSTOMER_NOT_EXIST`); stock
/// for all N (`VOUCHER_STOCK_NOT_ENOUGH`); the customer's limit for all N (`EXCEED_LIMIT`).
/// Only a successful send uses up its `request_id`; ids are scoped to the app key and the
/// session's seller (or to sends without a session).
fn voucher_send(state: &mut State, call: &Call<'_>) -> Result<Value, TopError> {
    let object = request_object(call, SEND_REQ)?;
    let req = match parse_send(&object) {
        Ok(req) => req,
        Err(why) => return Ok(param_error(call, why)),
    };
    let State {
        alsc,
        ledger,
        sellers,
        ..
    } = state;
    let key = req
        .request_id
        .as_ref()
        .map(|id| (call.app_key.to_owned(), call.seller, id.clone()));
    if let Some(sent) = key.as_ref().and_then(|key| alsc.sent.get(key)) {
        if sent.customer_id == req.customer_id
            && sent.voucher_id == req.voucher_id
            && sent.voucher_num == req.voucher_num
        {
            return Ok(sent.answer.clone());
        }
        let why = format!(
            "request_id {:?} 已用于向 {} 发放 {} 张 {}",
            req.request_id.unwrap_or_default(),
            sent.customer_id,
            sent.voucher_num,
            sent.voucher_id
        );
        return Ok(param_error(call, why));
    }
    let Some(index) = alsc
        .templates
        .iter()
        .position(|t| t.seed.voucher_id == req.voucher_id)
    else {
        let detail = format!("voucher {:?} does not exist", req.voucher_id);
        return Ok(failure(call, "VOUCHER_NOT_EXIST", "券模板不存在", detail));
    };
    let template = &alsc.templates[index];
    if let Some(seller) = call.seller
        && template.seller != seller
    {
        let detail = format!(
            "voucher {:?} belongs to seller {:?}, not the session's",
            req.voucher_id,
            sellers.seller(template.seller).nick
        );
        return Ok(failure(call, "VOUCHER_NOT_EXIST", "券模板不存在", detail));
    }
    if call.now > template.ends {
        let detail = format!(
            "voucher {:?} ended at {} (GMT+8)",
            req.voucher_id, template.seed.end_time
        );
        return Ok(failure(call, "VOUCHER_NOT_EXIST", "券模板不存在", detail));
    }
    if alsc.unknown_customers.contains(&req.customer_id) {
        let detail = format!("customer {:?} is in unknown_customers", req.customer_id);
        return Ok(failure(call, "CUSTOMER_NOT_EXIST", "顾客不存在", detail));
    }
    // voucher_num is 1..=MAX_VOUCHER_NUM, so this cannot fail.
    let num = u64::try_from(req.voucher_num).unwrap_or(u64::MAX);
    let issued = alsc.issued.get(&index).copied().unwrap_or(0);
    if let Some(stock) = template.seed.stock
        && issued.saturating_add(num) > stock
    {
        let detail = format!(
            "voucher {:?}: {num} asked, {} left",
            req.voucher_id,
            stock.saturating_sub(issued)
        );
        return Ok(failure(
            call,
            "VOUCHER_STOCK_NOT_ENOUGH",
            "券库存不足",
            detail,
        ));
    }
    let held = alsc.held_by(index, &req.customer_id);
    if let Some(limit) = template.seed.per_customer_limit
        && held.saturating_add(num) > u64::from(limit)
    {
        let detail = format!(
            "customer {:?} holds {held} of {:?}, limit {limit}, {num} asked",
            req.customer_id, req.voucher_id
        );
        return Ok(failure(call, "EXCEED_LIMIT", "超过领取上限", detail));
    }

    let mut issuances = Vec::new();
    for _ in 0..num {
        let id = alsc.next_instance.to_string();
        alsc.next_instance += 1;
        alsc.by_customer
            .entry(req.customer_id.clone())
            .or_default()
            .push(alsc.held.len());
        alsc.held.push(Held {
            id: id.clone(),
            template: index,
            customer_id: req.customer_id.clone(),
            created: call.now,
        });
        issuances.push(Issuance {
            platform: "alsc".into(),
            coupon: req.voucher_id.clone(),
            recipient: req.customer_id.clone(),
            instance_id: id,
            idempotency_id: req.request_id.clone(),
        });
    }
    *alsc.issued.entry(index).or_default() += num;
    *alsc
        .held_count
        .entry((index, req.customer_id.clone()))
        .or_default() += num;
    ledger.record(issuances);
    let answer = json!({ "result": {
        "result": true,
        "biz_success": true,
        "result_code": "SUCCESS",
        "result_desc": "发券成功",
        "result_view": "发券成功",
    } });
    if let Some(key) = key {
        alsc.sent.insert(
            key,
            Sent {
                customer_id: req.customer_id,
                voucher_id: req.voucher_id,
                voucher_num: req.voucher_num,
                answer: answer.clone(),
            },
        );
    }
    Ok(answer)
}

/// `yyyy-MM-dd HH:mm:ss` in GMT+8, as the API writes times.
fn gmt8_text(time: DateTime<Utc>) -> String {
    let gmt8 = chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    time.with_timezone(&gmt8)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `alibaba.alsc.crm.customer.voucher.list`: the vouchers `customer_id` holds of the session's
/// seller, oldest first, a page at a time. `status` is `NORMAL`, or `DELETED` once the template has ended (nothing is
/// ever used, so never `ISUSED`); `voucher_status_list` narrows by it.
fn voucher_list(state: &mut State, call: &Call<'_>) -> Result<Value, TopError> {
    let object = request_object(call, LIST_REQ)?;
    let parsed = (|| {
        let customer_id = required_string(&object, "customer_id")?;
        let page_no = integer(&object, "page_no", Some(1), 1..=i64::from(u32::MAX))?;
        let page_size = integer(
            &object,
            "page_size",
            Some(DEFAULT_PAGE_SIZE),
            1..=MAX_PAGE_SIZE,
        )?;
        let statuses = match object.get("voucher_status_list") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|item| match item.as_str() {
                        Some(status @ ("NORMAL" | "DELETED" | "ISUSED")) => Ok(status.to_owned()),
                        _ => Err(format!(
                            "voucher_status_list 只能包含 NORMAL、DELETED、ISUSED，实际有 {item}"
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(other) => return Err(format!("voucher_status_list 应为数组，实际为 {other}")),
        };
        Ok((customer_id, page_no, page_size, statuses))
    })();
    let (customer_id, page_no, page_size, statuses) = match parsed {
        Ok(parsed) => parsed,
        Err(why) => return Ok(param_error(call, why)),
    };
    let alsc = &state.alsc;
    if alsc.unknown_customers.contains(&customer_id) {
        let detail = format!("customer {customer_id:?} is in unknown_customers");
        return Ok(failure(call, "CUSTOMER_NOT_EXIST", "顾客不存在", detail));
    }
    let held = alsc
        .by_customer
        .get(&customer_id)
        .map_or(&[][..], Vec::as_slice);
    let vouchers: Vec<Value> = held
        .iter()
        .map(|&index| &alsc.held[index])
        .filter(|held| call.seller == Some(alsc.templates[held.template].seller))
        .map(|held| {
            let template = &alsc.templates[held.template];
            let status = if call.now > template.ends {
                "DELETED"
            } else {
                "NORMAL"
            };
            (held, template, status)
        })
        .filter(|(_, _, status)| {
            statuses
                .as_ref()
                .is_none_or(|wanted| wanted.iter().any(|w| w == status))
        })
        .map(|(held, template, status)| {
            let seed = &template.seed;
            json!({
                "voucher_id": held.id,
                "voucher_template_id": seed.voucher_id,
                "title": seed.title,
                "amount": seed.amount_yuan,
                "start_fee": seed.start_fee_yuan,
                "status": status,
                "start_time": seed.start_time,
                "end_time": seed.end_time,
                "gmt_created": gmt8_text(held.created),
                "customer_id": held.customer_id,
            })
        })
        .collect();
    let total = vouchers.len();
    // Both are at least 1 and page_no fits a u32, so none of this overflows.
    let size = usize::try_from(page_size).unwrap_or(usize::MAX);
    let skip = usize::try_from(page_no - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(size);
    let page: Vec<Value> = vouchers.into_iter().skip(skip).take(size).collect();
    Ok(json!({ "result": {
        "biz_success": true,
        "result_code": "SUCCESS",
        "result_desc": "",
        "current_page": page_no,
        "page_size": page_size,
        "total_size": total,
        "total_page": total.div_ceil(size),
        "has_next_page": skip.saturating_add(size) < total,
        "result_list": call.shape.list("voucher_open_info", page),
    } }))
}
