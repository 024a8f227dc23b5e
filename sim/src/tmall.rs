//! Tmall new retail behind the TOP gateway: `tmall.nrt.coupon.send` (seeds/001) and
//! `tmall.nrt.coupon.instance.query` (PROTOCOLS.md §3), in the shapes `docs/PLATFORMS.md` fixes.
//!
//! The send takes one recipient per call, in a JSON parameter (`nrt_coupon_send_dto`), and is
//! idempotent by its `out_id`. Business errors are code 15 with the seed's negative numbers as
//! `sub_code`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::state::State;
use crate::top::sellers::{SellerId, Sellers};
use crate::top::{Call, TopApi, TopError};
use crate::{Issuance, TmallCoupon, TmallSeed};

const SEND: &str = "tmall.nrt.coupon.send";
const INSTANCE_QUERY: &str = "tmall.nrt.coupon.instance.query";

/// The send's JSON parameter.
const DTO: &str = "nrt_coupon_send_dto";

/// `coupon_type` values the seed documents: 247 品类券, 276 门店券, 357 门店通用券.
const COUPON_TYPES: [i64; 3] = [247, 276, 357];

/// The Tmall nrt APIs the gateway serves. Both need the seller's session.
pub(crate) const APIS: &[TopApi] = &[
    TopApi {
        name: SEND,
        needs_session: true,
        handle: send,
    },
    TopApi {
        name: INSTANCE_QUERY,
        needs_session: true,
        handle: instance_query,
    },
];

/// One coupon instance issued.
struct Instance {
    id: i64,
    /// Index into [`Store::coupons`]. Whose it is, is where [`Store::by_open_id`] files it.
    coupon: usize,
    /// The `biz_code` and `coupon_type` it was sent under, which the query filters by.
    biz_code: String,
    coupon_type: i64,
}

/// What an `out_id` was first used for, and the model it was answered.
struct Sent {
    open_id: String,
    uuid: String,
    model: Value,
}

/// The Tmall coupons: templates, what was issued, which `out_id`s were used.
pub(crate) struct Store {
    coupons: Vec<TmallCoupon>,
    /// The seller of each coupon, by index.
    owners: Vec<SellerId>,
    /// Instances issued per coupon index.
    issued: HashMap<usize, u64>,
    /// Instances held per (coupon index, open id).
    held: HashMap<(usize, String), u32>,
    instances: Vec<Instance>,
    /// Indexes into `instances` per open id, so a query reads one user's instances only.
    by_open_id: HashMap<String, Vec<usize>>,
    /// Successful sends per (app key, seller, out_id).
    sent: HashMap<(String, SellerId, String), Sent>,
    next_instance: i64,
}

impl Store {
    /// Builds the store from its seed; a seed error names the coupon and the field.
    pub(crate) fn new(seed: TmallSeed, sellers: &Sellers) -> Result<Store, String> {
        let mut owners = Vec::new();
        for (index, coupon) in seed.coupons.iter().enumerate() {
            let uuid = &coupon.uuid;
            if seed.coupons[..index].iter().any(|c| c.uuid == *uuid) {
                return Err(format!("tmall.coupons: uuid {uuid:?} is listed twice"));
            }
            if coupon.end_ms < coupon.start_ms {
                return Err(format!(
                    "tmall.coupons[{uuid}].end_ms: {} is before start_ms {}",
                    coupon.end_ms, coupon.start_ms
                ));
            }
            owners
                .push(sellers.owner(coupon.seller.as_deref(), &format!("tmall.coupons[{uuid}]"))?);
        }
        Ok(Store {
            coupons: seed.coupons,
            owners,
            issued: HashMap::new(),
            held: HashMap::new(),
            instances: Vec::new(),
            by_open_id: HashMap::new(),
            sent: HashMap::new(),
            next_instance: 67_890_000_001,
        })
    }

    fn held(&self, coupon: usize, open_id: &str) -> u32 {
        self.held
            .get(&(coupon, open_id.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// A business error: code 15 with the seed's error number as `sub_code` and its text as
/// `sub_msg` (PLATFORMS.md).
fn nrt_error(sub_code: &str, detail: String) -> TopError {
    let sub_msg = match sub_code {
        "-7" => "领取太多了,不要贪心~",
        "-6" => "优惠券已领完,下次早点喔~",
        "-3" => "优惠券无效,请联系客服~",
        "-11" => "业务异常",
        _ => "系统异常",
    };
    TopError::new(15, "Remote service error")
        .sub(sub_code, sub_msg)
        .detail(detail)
}

/// The send DTO, checked.
struct Dto {
    biz_code: String,
    open_id: String,
    out_id: String,
    uuid: String,
    coupon_type: i64,
}

/// A required string field of the DTO: present, a string, not blank.
fn required_string(object: &Map<String, Value>, field: &str) -> Result<String, TopError> {
    match object.get(field) {
        Some(Value::String(text)) if !text.trim().is_empty() => Ok(text.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            Err(TopError::invalid(DTO, format!("{DTO}.{field} 不能为空")))
        }
        Some(other) => Err(TopError::invalid(
            DTO,
            format!("{DTO}.{field} 应为字符串，实际为 {other}"),
        )),
    }
}

/// Parses `nrt_coupon_send_dto`. Unknown fields are ignored, as the platform's JSON binding
/// ignores them; `extra` is optional and must be a string when present.
fn parse_dto(call: &Call<'_>) -> Result<Dto, TopError> {
    let text = call.param(DTO).ok_or_else(|| TopError::missing(DTO))?;
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        _ => {
            return Err(TopError::invalid(DTO, format!("{DTO} 不是 JSON 对象"))
                .detail(format!("{DTO}={text:?}")));
        }
    };
    // In the seed's field order, so the first missing field is the one reported.
    let biz_code = required_string(&object, "biz_code")?;
    let open_id = required_string(&object, "open_id")?;
    if let Some(extra) = object.get("extra").filter(|v| !v.is_null())
        && !extra.is_string()
    {
        return Err(TopError::invalid(
            DTO,
            format!("{DTO}.extra 应为字符串，实际为 {extra}"),
        ));
    }
    // Required, though which channel a coupon went out on changes nothing here.
    required_string(&object, "channel")?;
    let out_id = required_string(&object, "out_id")?;
    let uuid = required_string(&object, "uuid")?;
    let coupon_type = match object.get("coupon_type") {
        None | Some(Value::Null) => {
            return Err(TopError::invalid(
                DTO,
                format!("{DTO}.coupon_type 不能为空"),
            ));
        }
        Some(value) => value.as_i64().ok_or_else(|| {
            TopError::invalid(DTO, format!("{DTO}.coupon_type 应为数字，实际为 {value}"))
        })?,
    };
    if !COUPON_TYPES.contains(&coupon_type) {
        return Err(TopError::invalid(
            DTO,
            format!("{DTO}.coupon_type {coupon_type} 不是 247、276 或 357"),
        ));
    }
    Ok(Dto {
        biz_code,
        open_id,
        out_id,
        uuid,
        coupon_type,
    })
}

/// `tmall.nrt.coupon.send`: issues one coupon instance to one open id.
///
/// Checks, first failure wins: the DTO (40/41); a known `out_id` (the first answer again, or
/// `-11` when it was used for another recipient or coupon); the coupon exists, is the session's
/// seller's and has not ended (`-3`); stock (`-6`); the per-user limit (`-7`). Only a
/// successful send uses up its `out_id`, so a send that failed can be retried under the same
/// id. `out_id`s are scoped to the app key and the seller.
fn send(state: &mut State, call: &Call<'_>) -> Result<Value, TopError> {
    let dto = parse_dto(call)?;
    let State {
        tmall,
        ledger,
        sellers,
        ..
    } = state;
    // The API needs a session, so the gateway has resolved its seller.
    let Some(seller) = call.seller else {
        return Err(TopError::new(26, "Missing session"));
    };
    let key = (call.app_key.to_owned(), seller, dto.out_id.clone());
    if let Some(sent) = tmall.sent.get(&key) {
        if sent.open_id == dto.open_id && sent.uuid == dto.uuid {
            return Ok(json!({ "model": sent.model }));
        }
        return Err(nrt_error(
            "-11",
            format!(
                "out_id {:?} was used for uuid {:?} to {:?}",
                dto.out_id, sent.uuid, sent.open_id
            ),
        ));
    }
    let Some(index) = tmall.coupons.iter().position(|c| c.uuid == dto.uuid) else {
        return Err(nrt_error(
            "-3",
            format!("uuid {:?} does not exist", dto.uuid),
        ));
    };
    if tmall.owners[index] != seller {
        return Err(nrt_error(
            "-3",
            format!(
                "uuid {:?} belongs to seller {:?}, not the session's",
                dto.uuid,
                sellers.seller(tmall.owners[index]).nick
            ),
        ));
    }
    let coupon = &tmall.coupons[index];
    let now_ms = call.now.timestamp_millis();
    if now_ms > coupon.end_ms {
        return Err(nrt_error(
            "-3",
            format!("uuid {:?} ended at {} ms", dto.uuid, coupon.end_ms),
        ));
    }
    let issued = tmall.issued.get(&index).copied().unwrap_or(0);
    if coupon.stock.is_some_and(|stock| issued >= stock) {
        return Err(nrt_error(
            "-6",
            format!("uuid {:?}: all {issued} issued", dto.uuid),
        ));
    }
    let held = tmall.held(index, &dto.open_id);
    if coupon.per_user_limit.is_some_and(|limit| held >= limit) {
        return Err(nrt_error(
            "-7",
            format!(
                "{:?} already holds {held} of uuid {:?}",
                dto.open_id, dto.uuid
            ),
        ));
    }

    let id = tmall.next_instance;
    tmall.next_instance += 1;
    *tmall.issued.entry(index).or_default() += 1;
    *tmall.held.entry((index, dto.open_id.clone())).or_default() += 1;
    let model = json!({
        "discount": coupon.discount_fen,
        "start_fee": coupon.start_fee_fen,
        "coupon_name": coupon.name,
        "coupon_template_id": coupon.template_id,
        "coupon_instance_id": id,
        "start_time": coupon.start_ms,
        "end_time": coupon.end_ms,
    });
    ledger.record([Issuance {
        platform: "tmall-nrt".into(),
        coupon: dto.uuid.clone(),
        recipient: dto.open_id.clone(),
        instance_id: id.to_string(),
        idempotency_id: Some(dto.out_id),
    }]);
    tmall
        .by_open_id
        .entry(dto.open_id.clone())
        .or_default()
        .push(tmall.instances.len());
    tmall.instances.push(Instance {
        id,
        coupon: index,
        biz_code: dto.biz_code,
        coupon_type: dto.coupon_type,
    });
    tmall.sent.insert(
        key,
        Sent {
            open_id: dto.open_id,
            uuid: dto.uuid,
            model: model.clone(),
        },
    );
    Ok(json!({ "model": model }))
}

/// A comma-joined list of numbers (`coupon_types`, `instance_ids`); `None` when absent.
fn number_list(call: &Call<'_>, name: &str) -> Result<Option<Vec<i64>>, TopError> {
    let Some(text) = call.param(name) else {
        return Ok(None);
    };
    text.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| {
            item.trim()
                .parse()
                .map_err(|_| TopError::invalid(name, format!("{name} 中的 {item:?} 不是数字")))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// `tmall.nrt.coupon.instance.query`: the instances `user_id` holds of the session's seller's
/// coupons, oldest first, narrowed by `biz_code`, `coupon_types` and `instance_ids` when given. Each model is a JSON object
/// rendered as a string; `models` is a plain array of strings with or without `simplify`.
fn instance_query(state: &mut State, call: &Call<'_>) -> Result<Value, TopError> {
    let user_id = call
        .param("user_id")
        .ok_or_else(|| TopError::missing("user_id"))?;
    let biz_code = call.param("biz_code");
    let coupon_types = number_list(call, "coupon_types")?;
    let instance_ids = number_list(call, "instance_ids")?;
    let now_ms = call.now.timestamp_millis();
    let tmall = &state.tmall;
    let held = tmall.by_open_id.get(user_id).map_or(&[][..], Vec::as_slice);
    let models: Vec<Value> = held
        .iter()
        .map(|&index| &tmall.instances[index])
        .filter(|i| call.seller == Some(tmall.owners[i.coupon]))
        .filter(|i| biz_code.is_none_or(|code| i.biz_code == code))
        .filter(|i| {
            coupon_types
                .as_ref()
                .is_none_or(|types| types.contains(&i.coupon_type))
        })
        .filter(|i| instance_ids.as_ref().is_none_or(|ids| ids.contains(&i.id)))
        .map(|instance| {
            let coupon = &tmall.coupons[instance.coupon];
            // 1 held, 3 expired (PLATFORMS.md); nothing is ever used in the simulator.
            let status = if now_ms > coupon.end_ms { 3 } else { 1 };
            let model = json!({
                "coupon_instance_id": instance.id,
                "coupon_template_id": coupon.template_id,
                "coupon_name": coupon.name,
                "uuid": coupon.uuid,
                "discount": coupon.discount_fen,
                "start_fee": coupon.start_fee_fen,
                "status": status,
                "start_time": coupon.start_ms,
                "end_time": coupon.end_ms,
            });
            Value::String(model.to_string())
        })
        .collect();
    Ok(json!({ "result": { "code": "0", "message": "success", "models": models } }))
}
