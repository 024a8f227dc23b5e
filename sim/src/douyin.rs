//! The Douyin open platform (PROTOCOLS.md §2, seeds/004), in the shapes `docs/PLATFORMS.md`
//! fixes: `POST /oauth/client_token/`, `POST /oauth/stable_client_token/` and the mini-app
//! coupon APIs
//! `POST /api/promotion/v1/coupon/send_coupon_to_designated_user/` and
//! `POST /api/promotion/v1/coupon/get_coupon_receive_info/`.
//!
//! Requests are JSON (`content-type: application/json`); nothing is signed. Every answer is
//! HTTP 200 JSON with the `log_id` also in the `X-Tt-Logid` header.
//!
//! ## client_token
//!
//! `{"grant_type":"client_credential","client_key":…,"client_secret":…}` gets
//! `{"data":{"access_token":"clt.…","description":"","error_code":0,"expires_in":TTL},
//! "message":"success"}`, or `{"data":{"captcha":"","desc_url":"","description":…,
//! "error_code":N},"message":"error"}` with N = 10002 (not a JSON object, `grant_type` not
//! `client_credential`, a field missing), 10003 (client_key unknown), 10013 (secret wrong).
//!
//! A token lives `token_ttl_secs` by the simulator's clock. A new token for an app leaves the
//! app's previous one valid for five more minutes at most, and the one before that not at all:
//! only the latest two are ever valid.
//!
//! ## stable_client_token
//!
//! The same request and answers. While the app's stable token is valid, every request answers
//! that same token, with `expires_in` the seconds it has left; once it has expired, the next
//! request makes a new one. Stable tokens and client_tokens do not replace each other, and both
//! are good for the coupon APIs.
//!
//! ## Coupon APIs
//!
//! The checks, first failure wins (`{"err_no":N,"err_msg":…,"log_id":…}`):
//!
//! | check | err_no | err_msg |
//! |---|---|---|
//! | `access-token` header missing, or not a token ever issued | 28001003 | access_token无效 |
//! | token past its lifetime or grace, or older than the app's latest two | 28001008 | access_token过期,请刷新或重新授权 |
//! | send only: over `qps` sends admitted this second for the token's app | 29005012 | 尝试过于频繁 |
//! | body not a JSON object (or not sent as JSON), a field missing or mistyped, `app_id` not the token's app | 28001007 | 参数不合法 |
//!
//! Then the send's own: a known `merchant_coupon_id` (the first `coupon_info` again, or 28001007
//! when it was used for another activity or user); 29005001 activity unknown or ended; 29005004
//! user inactive; 29005002 stock exhausted; 29005003 user limit reached.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use serde_json::{Map, Value, json};

use crate::dispatch::{self, Endpoint, InjectedError, Outcome};
use crate::server::ResetHandle;
use crate::state::{Shared, State, admit, lock};
use crate::top::MAX_BODY_BYTES;
use crate::{CallRecord, DouyinActivity, DouyinApp, DouyinSeed, Issuance};

/// How long a replaced token stays valid (PROTOCOLS.md §2.1: a 5-minute grace period).
const GRACE_SECS: i64 = 5 * 60;
/// How many of an app's tokens can be valid at once: the latest two.
const LIVE_TOKENS: usize = 2;
/// The longest token lifetime a seed may ask for (about 68 years), so that adding it to a time
/// cannot overflow.
const MAX_TOKEN_TTL_SECS: u64 = i32::MAX as u64;
/// `coupon_status` of a coupon the user holds (待使用), used (PLATFORMS.md convention), expired.
const STATUS_HELD: i64 = 10;
const STATUS_USED: i64 = 20;
const STATUS_EXPIRED: i64 = 30;
/// `discount_type` of every coupon, as in seed 004's example (a fixed-amount 满减 coupon).
const DISCOUNT_TYPE: i64 = 2;

/// The short name `/oauth/client_token/` is faulted, recorded and counted under.
pub(crate) const CLIENT_TOKEN: &str = "client_token";
/// The short name of `/oauth/stable_client_token/`.
pub(crate) const STABLE_CLIENT_TOKEN: &str = "stable_client_token";

/// A route of the Douyin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    ClientToken,
    StableClientToken,
    SendCoupon,
    ReceiveInfo,
}

impl Api {
    /// The short name that faults match and calls are recorded under.
    fn name(self) -> &'static str {
        match self {
            Api::ClientToken => CLIENT_TOKEN,
            Api::StableClientToken => STABLE_CLIENT_TOKEN,
            Api::SendCoupon => "send_coupon_to_designated_user",
            Api::ReceiveInfo => "get_coupon_receive_info",
        }
    }
}

/// An issued token.
struct Token {
    /// Index into [`Platform::apps`].
    app: usize,
    /// Valid while the simulator's clock is before this.
    valid_until: DateTime<Utc>,
}

/// A coupon a user received. Whose it is, is where [`Platform::by_user`] files it.
struct Coupon {
    id: String,
    activity: usize,
    /// `receive_time`, unix seconds.
    received: i64,
}

/// What a `merchant_coupon_id` was first used for, and the `coupon_info` it was answered.
struct Sent {
    activity_id: String,
    open_id: String,
    coupon_info: Value,
}

/// The Douyin platform's state: apps and their tokens, activities, coupons, rate windows.
pub(crate) struct Platform {
    apps: Vec<DouyinApp>,
    activities: Vec<DouyinActivity>,
    inactive_users: HashSet<String>,
    token_ttl_secs: u64,
    qps: u32,
    /// Every token ever issued. Ones no longer valid are kept, so that a late caller is told
    /// "expired" (28001008) rather than "invalid" (28001003).
    tokens: HashMap<String, Token>,
    /// Per app, its latest tokens, newest last, at most [`LIVE_TOKENS`].
    latest: HashMap<usize, VecDeque<String>>,
    /// Per app, its stable token (`/oauth/stable_client_token/`), valid or not.
    stable: HashMap<usize, String>,
    /// Coupons issued per activity.
    issued: HashMap<usize, u64>,
    /// Coupons held per (app, activity, open id): open ids are per mini-app.
    held: HashMap<(usize, usize, String), u32>,
    coupons: Vec<Coupon>,
    /// Indexes into `coupons` per (app, open id), so a query reads one user's coupons only.
    by_user: HashMap<(usize, String), Vec<usize>>,
    /// Successful sends per (app, merchant_coupon_id).
    sent: HashMap<(usize, String), Sent>,
    /// Admitted sends per app, for the QPS limit.
    rate_windows: HashMap<usize, VecDeque<Instant>>,
    next_coupon: u64,
}

impl Platform {
    /// Builds the platform from its seed; a seed error names the field.
    pub(crate) fn new(seed: DouyinSeed) -> Result<Platform, String> {
        for (index, app) in seed.apps.iter().enumerate() {
            for other in &seed.apps[..index] {
                if other.client_key == app.client_key {
                    return Err(format!(
                        "douyin.apps: client_key {:?} is listed twice",
                        app.client_key
                    ));
                }
                if other.app_id == app.app_id {
                    return Err(format!(
                        "douyin.apps: app_id {:?} is listed twice",
                        app.app_id
                    ));
                }
            }
        }
        for (index, activity) in seed.activities.iter().enumerate() {
            let id = &activity.activity_id;
            if seed.activities[..index]
                .iter()
                .any(|other| other.activity_id == *id)
            {
                return Err(format!(
                    "douyin.activities: activity_id {id:?} is listed twice"
                ));
            }
            if activity.valid_end_time < activity.valid_begin_time {
                return Err(format!(
                    "douyin.activities[{id}].valid_end_time: {} is before valid_begin_time {}",
                    activity.valid_end_time, activity.valid_begin_time
                ));
            }
        }
        if seed.token_ttl_secs > MAX_TOKEN_TTL_SECS {
            return Err(format!(
                "douyin.token_ttl_secs: {} is more than {MAX_TOKEN_TTL_SECS}",
                seed.token_ttl_secs
            ));
        }
        Ok(Platform {
            apps: seed.apps,
            activities: seed.activities,
            inactive_users: seed.inactive_users.into_iter().collect(),
            token_ttl_secs: seed.token_ttl_secs,
            qps: seed.qps,
            tokens: HashMap::new(),
            latest: HashMap::new(),
            stable: HashMap::new(),
            issued: HashMap::new(),
            held: HashMap::new(),
            coupons: Vec::new(),
            by_user: HashMap::new(),
            sent: HashMap::new(),
            rate_windows: HashMap::new(),
            next_coupon: 7_092_400_000_000_000_001,
        })
    }

    /// Ends every token issued so far at `now`.
    pub(crate) fn expire_tokens(&mut self, now: DateTime<Utc>) {
        for token in self.tokens.values_mut() {
            token.valid_until = token.valid_until.min(now);
        }
    }

    /// A new token value.
    fn new_token() -> String {
        format!("clt.{}", hex::encode(rand::rng().random::<[u8; 20]>()))
    }

    /// The lifetime of a new token. The seed check keeps it within i32 seconds.
    fn ttl(&self) -> TimeDelta {
        TimeDelta::seconds(i64::try_from(self.token_ttl_secs).unwrap_or(i64::MAX))
    }

    /// Issues a token for `app`: the previous one gets its grace, the one before is dropped.
    fn issue_token(&mut self, app: usize, now: DateTime<Utc>) -> String {
        let value = Platform::new_token();
        let latest = self.latest.entry(app).or_default();
        if let Some(token) = latest.back().and_then(|v| self.tokens.get_mut(v)) {
            token.valid_until = token.valid_until.min(now + TimeDelta::seconds(GRACE_SECS));
        }
        latest.push_back(value.clone());
        while latest.len() > LIVE_TOKENS {
            let dropped = latest.pop_front();
            if let Some(token) = dropped.and_then(|v| self.tokens.get_mut(&v)) {
                token.valid_until = token.valid_until.min(now);
            }
        }
        let valid_until = now + self.ttl();
        self.tokens
            .insert(value.clone(), Token { app, valid_until });
        value
    }

    /// The app's stable token and the seconds it has left: the current one while it is valid,
    /// otherwise a new one. It does not touch the app's client_tokens.
    fn stable_token(&mut self, app: usize, now: DateTime<Utc>) -> (String, i64) {
        if let Some(value) = self.stable.get(&app)
            && let Some(token) = self.tokens.get(value)
            && now < token.valid_until
        {
            return (value.clone(), (token.valid_until - now).num_seconds());
        }
        let value = Platform::new_token();
        let ttl = self.ttl();
        let valid_until = now + ttl;
        self.tokens
            .insert(value.clone(), Token { app, valid_until });
        self.stable.insert(app, value.clone());
        (value, ttl.num_seconds())
    }

    /// The app a valid token belongs to.
    fn check_token(&self, token: Option<&str>, now: DateTime<Utc>) -> Result<usize, Refusal> {
        let Some(value) = token else {
            return Err(refuse(28001003, "no access-token header"));
        };
        let Some(token) = self.tokens.get(value) else {
            return Err(refuse(28001003, "the access-token was never issued"));
        };
        if now >= token.valid_until {
            return Err(refuse(
                28001008,
                format!(
                    "the access-token was valid until {} (now {now})",
                    token.valid_until
                ),
            ));
        }
        Ok(token.app)
    }

    /// Checks that the body's `app_id` is the token's app.
    fn check_app_id(&self, app: usize, app_id: &str) -> Result<(), Refusal> {
        let expected = &self.apps[app].app_id;
        if app_id == expected {
            Ok(())
        } else {
            Err(refuse(
                28001007,
                format!("app_id {app_id:?} is not the token's app {expected:?}"),
            ))
        }
    }

    fn coupon_info(&self, coupon: &Coupon, now: DateTime<Utc>) -> Value {
        let activity = &self.activities[coupon.activity];
        let status = if now.timestamp() > activity.valid_end_time {
            STATUS_EXPIRED
        } else {
            STATUS_HELD
        };
        json!({
            "coupon_id": coupon.id,
            "coupon_name": activity.coupon_name,
            "coupon_status": status,
            "discount_type": DISCOUNT_TYPE,
            "discount_amount": activity.discount_amount_fen,
            "min_pay_amount": activity.min_pay_amount_fen,
            "merchant_meta_no": activity.merchant_meta_no,
            "valid_begin_time": activity.valid_begin_time,
            "valid_end_time": activity.valid_end_time,
            "receive_time": coupon.received,
        })
    }
}

/// A refused call: the platform's code and message, and why (for the call record only).
struct Refusal {
    code: i64,
    message: String,
    detail: String,
}

/// A refusal with the platform's wording for `code`.
fn refuse(code: i64, detail: impl Into<String>) -> Refusal {
    let message = match code {
        10002 => "参数错误",
        10003 => "配置无效",
        10013 => "client_key或client_secret错误",
        28001003 => "access_token无效",
        28001007 => "参数不合法",
        28001008 => "access_token过期,请刷新或重新授权",
        29005001 => "活动不存在或已结束",
        29005002 => "券库存不足",
        29005003 => "用户领券数量已达上限",
        29005004 => "用户7天内未使用过小程序,不可发券",
        29005012 => "尝试过于频繁",
        _ => "系统内部错误,请重试",
    };
    Refusal {
        code,
        message: message.to_owned(),
        detail: detail.into(),
    }
}

/// What a request brought, read once before any fault or check.
struct Incoming {
    api: Api,
    /// The `access-token` header.
    token: Option<String>,
    /// The body as a JSON object, or why it is not one.
    body: Result<Map<String, Value>, String>,
    /// What the call record shows: the body's top-level fields and the token, credentials
    /// masked.
    params: BTreeMap<String, String>,
}

impl Incoming {
    fn new(api: Api, headers: &HeaderMap, body: &[u8]) -> Incoming {
        let token = headers
            .get("access-token")
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned);
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        let body = if !is_json {
            Err("the content-type is not application/json".to_owned())
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(object)) => Ok(object),
                // The value is not shown: it could be a misplaced credential.
                Ok(_) => Err("the body is JSON but not an object".to_owned()),
                Err(e) => Err(format!("the body is not JSON: {e}")),
            }
        };
        let mut params = BTreeMap::new();
        if let Ok(object) = &body {
            for (name, value) in object {
                let shown = match value {
                    _ if name == "client_secret" => "***".to_owned(),
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                params.insert(name.clone(), shown);
            }
        }
        if token.is_some() {
            params.insert("access-token".into(), "***".into());
        }
        Incoming {
            api,
            token,
            body,
            params,
        }
    }

    /// The JSON body of a coupon API; 28001007 when there is none.
    fn object(&self) -> Result<&Map<String, Value>, Refusal> {
        self.body
            .as_ref()
            .map_err(|why| refuse(28001007, why.clone()))
    }
}

/// A string field: `None` when absent, null or empty; `code` when present but not a string.
fn optional_string(
    object: &Map<String, Value>,
    field: &str,
    code: i64,
) -> Result<Option<String>, Refusal> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(refuse(code, format!("{field} is not a string: {other}"))),
    }
}

/// A string field that must be there; `code` when it is not.
fn required_string(object: &Map<String, Value>, field: &str, code: i64) -> Result<String, Refusal> {
    optional_string(object, field, code)?
        .ok_or_else(|| refuse(code, format!("{field} is missing or empty")))
}

/// The app a token request authenticates as: `POST /oauth/client_token/` and
/// `/oauth/stable_client_token/` take the same body and refuse it the same way.
fn token_client(state: &State, incoming: &Incoming) -> Result<usize, Refusal> {
    let object = incoming
        .body
        .as_ref()
        .map_err(|why| refuse(10002, why.clone()))?;
    let grant_type = required_string(object, "grant_type", 10002)?;
    if grant_type != "client_credential" {
        return Err(refuse(
            10002,
            format!("grant_type {grant_type:?} is not client_credential"),
        ));
    }
    let client_key = required_string(object, "client_key", 10002)?;
    let client_secret = required_string(object, "client_secret", 10002)?;
    let douyin = &state.douyin;
    let Some(app) = douyin
        .apps
        .iter()
        .position(|app| app.client_key == client_key)
    else {
        return Err(refuse(
            10003,
            format!("client_key {client_key:?} is unknown"),
        ));
    };
    if douyin.apps[app].client_secret != client_secret {
        return Err(refuse(
            10013,
            format!("client_secret is not {client_key:?}'s"),
        ));
    }
    Ok(app)
}

/// `POST /oauth/client_token/`.
fn client_token_answer(state: &mut State, incoming: &Incoming) -> Result<Value, Refusal> {
    let app = token_client(state, incoming)?;
    let now = state.now();
    let token = state.douyin.issue_token(app, now);
    Ok(json!({
        "access_token": token,
        "description": "",
        "error_code": 0,
        "expires_in": state.douyin.token_ttl_secs,
    }))
}

/// `POST /oauth/stable_client_token/`.
fn stable_client_token_answer(state: &mut State, incoming: &Incoming) -> Result<Value, Refusal> {
    let app = token_client(state, incoming)?;
    let now = state.now();
    let (token, expires_in) = state.douyin.stable_token(app, now);
    Ok(json!({
        "access_token": token,
        "description": "",
        "error_code": 0,
        "expires_in": expires_in,
    }))
}

/// `send_coupon_to_designated_user`: issues one coupon of `activity_id` to `open_id`. Only a
/// successful send uses up its `merchant_coupon_id`, so a send that failed can be retried
/// under the same id.
fn send_coupon_answer(state: &mut State, incoming: &Incoming) -> Result<Value, Refusal> {
    let now = state.now();
    let State { douyin, ledger, .. } = state;
    let app = douyin.check_token(incoming.token.as_deref(), now)?;
    if douyin.qps > 0 && !admit(douyin.rate_windows.entry(app).or_default(), douyin.qps) {
        return Err(refuse(
            29005012,
            format!(
                "app {:?} already sent {} times this second",
                douyin.apps[app].app_id, douyin.qps
            ),
        ));
    }
    let object = incoming.object()?;
    let activity_id = required_string(object, "activity_id", 28001007)?;
    let app_id = required_string(object, "app_id", 28001007)?;
    let open_id = required_string(object, "open_id", 28001007)?;
    let merchant_coupon_id = optional_string(object, "merchant_coupon_id", 28001007)?;
    douyin.check_app_id(app, &app_id)?;

    let key = merchant_coupon_id.as_ref().map(|id| (app, id.clone()));
    if let Some(sent) = key.as_ref().and_then(|key| douyin.sent.get(key)) {
        if sent.activity_id == activity_id && sent.open_id == open_id {
            return Ok(json!({ "coupon_info": sent.coupon_info }));
        }
        return Err(refuse(
            28001007,
            format!(
                "merchant_coupon_id {:?} was used for activity {:?} to {:?}",
                merchant_coupon_id.unwrap_or_default(),
                sent.activity_id,
                sent.open_id
            ),
        ));
    }
    let Some(index) = douyin
        .activities
        .iter()
        .position(|a| a.activity_id == activity_id)
    else {
        return Err(refuse(
            29005001,
            format!("activity {activity_id:?} does not exist"),
        ));
    };
    let activity = &douyin.activities[index];
    if now.timestamp() > activity.valid_end_time {
        return Err(refuse(
            29005001,
            format!(
                "activity {activity_id:?} ended at {}",
                activity.valid_end_time
            ),
        ));
    }
    if douyin.inactive_users.contains(&open_id) {
        return Err(refuse(
            29005004,
            format!("{open_id:?} is in inactive_users"),
        ));
    }
    let issued = douyin.issued.get(&index).copied().unwrap_or(0);
    if activity.stock.is_some_and(|stock| issued >= stock) {
        return Err(refuse(
            29005002,
            format!("activity {activity_id:?}: all {issued} issued"),
        ));
    }
    let held_key = (app, index, open_id.clone());
    let held = douyin.held.get(&held_key).copied().unwrap_or(0);
    if activity.per_user_limit.is_some_and(|limit| held >= limit) {
        return Err(refuse(
            29005003,
            format!("{open_id:?} already holds {held} of activity {activity_id:?}"),
        ));
    }

    let coupon = Coupon {
        id: douyin.next_coupon.to_string(),
        activity: index,
        received: now.timestamp(),
    };
    douyin.next_coupon += 1;
    *douyin.issued.entry(index).or_default() += 1;
    *douyin.held.entry(held_key).or_default() += 1;
    let coupon_info = douyin.coupon_info(&coupon, now);
    ledger.record([Issuance {
        platform: "douyin".into(),
        coupon: activity_id.clone(),
        recipient: open_id.clone(),
        instance_id: coupon.id.clone(),
        idempotency_id: merchant_coupon_id,
    }]);
    douyin
        .by_user
        .entry((app, open_id.clone()))
        .or_default()
        .push(douyin.coupons.len());
    douyin.coupons.push(coupon);
    if let Some(key) = key {
        douyin.sent.insert(
            key,
            Sent {
                activity_id,
                open_id,
                coupon_info: coupon_info.clone(),
            },
        );
    }
    Ok(json!({ "coupon_info": coupon_info }))
}

/// `get_coupon_receive_info`: the coupons `open_id` received from the token's app, oldest
/// first, narrowed to `coupon_id` and/or `coupon_status` (one of them required). Nothing is
/// ever used in the simulator, so status 20 lists nothing.
fn receive_info_answer(state: &mut State, incoming: &Incoming) -> Result<Value, Refusal> {
    let now = state.now();
    let douyin = &state.douyin;
    let app = douyin.check_token(incoming.token.as_deref(), now)?;
    let object = incoming.object()?;
    let app_id = required_string(object, "app_id", 28001007)?;
    let open_id = required_string(object, "open_id", 28001007)?;
    let coupon_id = optional_string(object, "coupon_id", 28001007)?;
    let status = match object.get("coupon_status") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_i64() {
            Some(status @ (STATUS_HELD | STATUS_USED | STATUS_EXPIRED)) => Some(status),
            _ => {
                return Err(refuse(
                    28001007,
                    format!("coupon_status {value} is not 10, 20 or 30"),
                ));
            }
        },
    };
    if coupon_id.is_none() && status.is_none() {
        return Err(refuse(
            28001007,
            "coupon_status is required when coupon_id is empty",
        ));
    }
    douyin.check_app_id(app, &app_id)?;
    let held = douyin
        .by_user
        .get(&(app, open_id))
        .map_or(&[][..], Vec::as_slice);
    let list: Vec<Value> = held
        .iter()
        .map(|&index| &douyin.coupons[index])
        .filter(|c| coupon_id.as_ref().is_none_or(|id| c.id == *id))
        .map(|c| douyin.coupon_info(c, now))
        .filter(|info| status.is_none_or(|s| info["coupon_status"] == s))
        .map(|mut info| {
            // Fields the list has beyond `coupon_info` (PROTOCOLS.md §2.3). No coupon here came
            // through a streamer (达人) or was consumed.
            info["receive_desc"] = json!("开发者接口发券");
            info["consume_desc"] = json!("");
            info["consume_path"] = json!("");
            info["talent_open_id"] = json!("");
            info["talent_account"] = json!("");
            info
        })
        .collect();
    Ok(json!({ "coupon_receive_list": list }))
}

/// A log id like the platform's (`20230602141441E708D3A77C64701C88EB`): the GMT+8 time to the
/// second, then 20 uppercase hex digits.
fn log_id(now: DateTime<Utc>) -> String {
    let gmt8 = chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    format!(
        "{}{}",
        now.with_timezone(&gmt8).format("%Y%m%d%H%M%S"),
        hex::encode_upper(rand::rng().random::<[u8; 10]>())
    )
}

/// The answer body for a success.
fn success_body(api: Api, data: Value, log_id: &str) -> Value {
    match api {
        Api::ClientToken | Api::StableClientToken => {
            json!({ "data": data, "message": "success" })
        }
        Api::SendCoupon | Api::ReceiveInfo => {
            json!({ "err_no": 0, "err_msg": "", "log_id": log_id, "data": data })
        }
    }
}

/// The answer body for a refusal. Seed 004's error example has no `data`.
fn error_body(api: Api, refusal: &Refusal, log_id: &str) -> Value {
    match api {
        Api::ClientToken | Api::StableClientToken => json!({
            "data": {
                "captcha": "",
                "desc_url": "",
                "description": refusal.message,
                "error_code": refusal.code,
            },
            "message": "error",
        }),
        Api::SendCoupon | Api::ReceiveInfo => json!({
            "err_no": refusal.code,
            "err_msg": refusal.message,
            "log_id": log_id,
        }),
    }
}

/// The platform's `content-type`.
const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

fn json_response(body: &Value, log_id: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, JSON_CONTENT_TYPE),
            (header::HeaderName::from_static("x-tt-logid"), log_id),
        ],
        body.to_string(),
    )
        .into_response()
}

fn record(state: &mut State, incoming: &Incoming, outcome: Outcome) {
    state.record_call(CallRecord {
        api: incoming.api.name().to_owned(),
        ok: outcome.error_code.is_none(),
        error_code: outcome.error_code,
        sub_code: None,
        sign_method: String::new(),
        request_id: outcome.request_id,
        params: incoming.params.clone(),
        detail: outcome.detail,
        seller: None,
    });
}

/// The outcome of a call answered with `log_id`: a success, or a failure with `code`.
fn outcome(code: Option<i64>, log_id: &str, detail: Option<String>) -> Outcome {
    Outcome {
        ok: code.is_none(),
        error_code: code.map(|code| code.to_string()),
        sub_code: None,
        request_id: Some(log_id.to_owned()),
        detail,
        seller: None,
    }
}

impl Endpoint for Incoming {
    fn api(&self) -> &str {
        self.api.name()
    }

    /// Answers one call and records it, under one lock so the call is atomic.
    fn answer(&self, shared: &Shared) -> Response {
        let mut state = lock(shared);
        let log_id = log_id(state.now());
        let result = match self.api {
            Api::ClientToken => client_token_answer(&mut state, self),
            Api::StableClientToken => stable_client_token_answer(&mut state, self),
            Api::SendCoupon => send_coupon_answer(&mut state, self),
            Api::ReceiveInfo => receive_info_answer(&mut state, self),
        };
        let body = match result {
            Ok(data) => {
                record(&mut state, self, outcome(None, &log_id, None));
                success_body(self.api, data, &log_id)
            }
            Err(refusal) => {
                let detail = Some(refusal.detail.clone());
                record(
                    &mut state,
                    self,
                    outcome(Some(refusal.code), &log_id, detail),
                );
                error_body(self.api, &refusal, &log_id)
            }
        };
        json_response(&body, &log_id)
    }

    fn record(&self, state: &mut State, outcome: Outcome) {
        record(state, self, outcome);
    }

    /// Douyin has no sub codes: the code and message become the platform's own.
    fn injected_error(&self, state: &mut State, error: InjectedError) -> Response {
        let log_id = log_id(state.now());
        let refusal = Refusal {
            code: error.code,
            message: error.msg,
            detail: "injected".into(),
        };
        let detail = Some(refusal.detail.clone());
        record(state, self, outcome(Some(refusal.code), &log_id, detail));
        json_response(&error_body(self.api, &refusal, &log_id), &log_id)
    }

    fn content_type(&self) -> &'static str {
        JSON_CONTENT_TYPE
    }
}

/// Reads the request, applies an injected fault if one matches, else answers it.
async fn serve(shared: Shared, request: Request, api: Api) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("coupon-sim: {error}")).into_response();
        }
    };
    let incoming = Incoming::new(api, &parts.headers, &body);
    let reset = parts.extensions.get::<ResetHandle>();
    dispatch::serve(&shared, &incoming, reset).await
}

/// `POST /oauth/client_token/`.
pub(crate) async fn client_token(
    AxumState(shared): AxumState<Shared>,
    request: Request,
) -> Response {
    serve(shared, request, Api::ClientToken).await
}

/// `POST /oauth/stable_client_token/`.
pub(crate) async fn stable_client_token(
    AxumState(shared): AxumState<Shared>,
    request: Request,
) -> Response {
    serve(shared, request, Api::StableClientToken).await
}

/// `POST /api/promotion/v1/coupon/send_coupon_to_designated_user/`.
pub(crate) async fn send_coupon(
    AxumState(shared): AxumState<Shared>,
    request: Request,
) -> Response {
    serve(shared, request, Api::SendCoupon).await
}

/// `POST /api/promotion/v1/coupon/get_coupon_receive_info/`.
pub(crate) async fn coupon_receive_info(
    AxumState(shared): AxumState<Shared>,
    request: Request,
) -> Response {
    serve(shared, request, Api::ReceiveInfo).await
}
