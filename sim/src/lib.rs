//! # coupon-sim
//!
//! A simulator of the platforms coupon-host talks to, on loopback:
//!
//! - a TOP gateway (`/router/rest`) serving `taobao.promotion.coupon.sns.send`,
//!   `taobao.qianniu.coupon.buyer.get`, `tmall.nrt.coupon.send`,
//!   `tmall.nrt.coupon.instance.query`, `alibaba.alsc.crm.voucher.send` and
//!   `alibaba.alsc.crm.customer.voucher.list`;
//! - the Douyin open API: `POST /oauth/client_token/` and
//!   `POST /api/promotion/v1/coupon/{send_coupon_to_designated_user,get_coupon_receive_info}/`.
//!
//! The gateway checks every request the way the real one does (app key, signature with md5 /
//! hmac / hmac-sha256, timestamp window, version, session, call rate), so a signing bug in the
//! host fails a test here instead of in production; the Douyin API checks its `access-token`
//! (lifetime, the five-minute grace of a replaced token, only the latest two valid) and its
//! 100 QPS per app. Both then answer from state they keep (coupons, stock, what each user
//! holds, which idempotency ids were used), in the JSON shapes of the platforms' documentation
//! pages and `docs/PLATFORMS.md`, and record every call and every coupon issued.
//!
//! Faults can be queued per API ([`Fault`]): HTTP errors, slow answers (before or after the send
//! took effect), platform error responses, garbage bodies, dropped connections.
//!
//! Tests start it in-process; the demo runs the `coupon-sim` binary.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use coupon_sim::{Fault, Sim, SimConfig};
//!
//! let sim = Sim::start(SimConfig::demo()).await?;
//! // Point the host at `sim.top_gateway()` with app key 12345678 / secret sim-app-secret.
//! sim.inject(Fault::Status { api: None, status: 502, times: 1 });
//! // ... run the host ...
//! assert!(sim.ledger().iter().all(|issued| issued.platform == "taobao"));
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Adding a platform
//!
//! A TOP API is a `top::TopApi` entry (its name, whether it needs a session, a handler over
//! `state::State`); a platform module (`taobao`, `tmall`, `alsc`) lists its APIs in an `APIS`
//! table and `top::apis` chains the tables. Another protocol (`douyin`) has its own module with
//! its own routes in `server.rs`. Every route describes itself as a `dispatch::Endpoint` and goes
//! through `dispatch::serve`, so an injected fault is acted out the same way on every route.
//! Each platform keeps its own part of `State`; the ledger, call log, faults and clock are shared
//! by all of them.

mod admin;
mod alsc;
mod dispatch;
mod douyin;
mod server;
mod state;
mod taobao;
mod tmall;
mod top;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::state::{Shared, lock};

/// Whether the simulated TOP gateway accepts `sign` as the signature of `params` (the parameters
/// as received, `sign` itself among them or not) made with `secret` and `sign_method` (`md5`,
/// `hmac` or `hmac-sha256`; anything else is refused).
///
/// This is the gateway's own verifier, written apart from the host's signer, exposed so that a
/// property test can hold the two against each other over arbitrary parameters.
///
/// ```
/// // The published example of open.taobao.com (docId=101617).
/// let params: Vec<(String, String)> = [
///     ("method", "taobao.item.seller.get"), ("app_key", "12345678"), ("session", "test"),
///     ("timestamp", "2016-01-01 12:00:00"), ("format", "json"), ("v", "2.0"),
///     ("fields", "num_iid,title,nick,price,num"), ("num_iid", "11223344"), ("sign_method", "md5"),
/// ].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
/// assert!(coupon_sim::top_signature_valid(&params, "helloworld", "md5", "66987CB115214E59E6EC978214934FB8"));
/// assert!(!coupon_sim::top_signature_valid(&params, "helloworld", "hmac", "66987CB115214E59E6EC978214934FB8"));
/// ```
pub fn top_signature_valid(
    params: &[(String, String)],
    secret: &str,
    sign_method: &str,
    sign: &str,
) -> bool {
    let Some(method) = top::sign::SignMethod::parse(sign_method) else {
        return false;
    };
    let text = top::sign::string_to_sign(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    top::sign::matches(&top::sign::digest(method, secret, &text), sign)
}

/// What the simulated platforms know when they start: apps, coupons, buyers.
///
/// Seed files (`coupon-sim --config`) have this shape, in JSON or TOML; unknown keys are refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// TOP applications the gateway accepts.
    pub top_apps: Vec<TopApp>,
    /// The Taobao shop: its coupons and the buyers that do not exist.
    pub taobao: TaobaoSeed,
    /// Calls per second the gateway admits per app key, over a sliding one-second window
    /// (`None`: unlimited). Calls over it are answered with TOP code 7.
    #[serde(default)]
    pub qps_per_app: Option<u32>,
    /// The Tmall new-retail coupons (`tmall.nrt.*`). Absent: none.
    #[serde(default)]
    pub tmall: TmallSeed,
    /// The local-services CRM vouchers and customers (`alibaba.alsc.crm.*`). Absent: none.
    #[serde(default)]
    pub alsc: AlscSeed,
    /// The Douyin mini-apps and their coupon activities. Absent: no app, so every token request
    /// is refused.
    #[serde(default)]
    pub douyin: DouyinSeed,
}

/// A TOP application (an ISV app registered on open.taobao.com).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopApp {
    /// The AppKey (`app_key`).
    pub app_key: String,
    /// The AppSecret the gateway verifies signatures with.
    pub app_secret: String,
    /// Seller session keys (`session`) valid for this app.
    pub sessions: Vec<String>,
}

/// The Taobao shop's state at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaobaoSeed {
    /// Shop coupons (templates), addressed by `coupon_id`.
    pub coupons: Vec<TaobaoCoupon>,
    /// Nicks or open_uids that do not exist: a send to them is reported in `failure_buyers` with
    /// reason `买家不存在`. Every other nick or open_uid is a buyer.
    #[serde(default)]
    pub unknown_buyers: Vec<String>,
}

/// A Taobao shop coupon template.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaobaoCoupon {
    /// `coupon_id` (the template id).
    pub coupon_id: i64,
    /// Its title, e.g. `店铺满100减10`.
    pub title: String,
    /// Face value in yuan.
    pub amount_yuan: i64,
    /// Minimum spend in yuan (0: no threshold).
    pub start_fee_yuan: i64,
    /// How many coupons can be issued in total (`None`: unlimited). Once issued, a send fails per
    /// buyer with `优惠券已发完`.
    #[serde(default)]
    pub stock: Option<u64>,
    /// How many of this coupon one buyer may hold (`None`: unlimited). Over it, a send fails per
    /// buyer with `领取数量超过限制`.
    #[serde(default)]
    pub per_buyer_limit: Option<u32>,
    /// Valid from, `yyyy-MM-dd HH:mm:ss` in GMT+8.
    pub start_time: String,
    /// Valid until, `yyyy-MM-dd HH:mm:ss` in GMT+8. After it (by the simulator's clock) the
    /// coupon counts as expired: sends fail with code 15 `isv.coupon-error`.
    pub end_time: String,
}

/// The Tmall new-retail (nrt) coupons, sent by `tmall.nrt.coupon.send`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmallSeed {
    /// Coupons, addressed by `uuid` (the DTO's "券code").
    #[serde(default)]
    pub coupons: Vec<TmallCoupon>,
}

/// A Tmall nrt coupon. Amounts and times are in the units the API answers in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmallCoupon {
    /// The coupon code the send names (`uuid`).
    pub uuid: String,
    /// Its name (`coupon_name`), e.g. `满100减10`.
    pub name: String,
    /// Face value in fen (`discount`).
    pub discount_fen: i64,
    /// Minimum spend in fen (`start_fee`; 0: no threshold).
    pub start_fee_fen: i64,
    /// How many can be issued in total (`None`: unlimited). Once issued, a send fails with
    /// sub_code `-6`.
    #[serde(default)]
    pub stock: Option<u64>,
    /// How many one open id may hold (`None`: unlimited). Over it, a send fails with sub_code
    /// `-7`.
    #[serde(default)]
    pub per_user_limit: Option<u32>,
    /// The template id answered as `coupon_template_id`.
    pub template_id: i64,
    /// Valid from, epoch milliseconds (`start_time`).
    pub start_ms: i64,
    /// Valid until, epoch milliseconds (`end_time`). After it (by the simulator's clock) a send
    /// fails with sub_code `-3` and held coupons are listed as expired.
    pub end_ms: i64,
}

/// The local-services (饿了么/口碑) CRM: vouchers and the customers that do not exist.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlscSeed {
    /// Voucher templates, addressed by `voucher_id`.
    #[serde(default)]
    pub vouchers: Vec<AlscVoucher>,
    /// Customer ids that do not exist: a send to them fails with `CUSTOMER_NOT_EXIST`. Every
    /// other customer id is a customer.
    #[serde(default)]
    pub unknown_customers: Vec<String>,
}

/// A local-services voucher template. Amounts are yuan strings and times GMT+8 text, as the API
/// answers them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlscVoucher {
    /// The template id the send names (`voucher_id`), e.g. `3243421`.
    pub voucher_id: String,
    /// Its title, e.g. `满100减10`.
    pub title: String,
    /// Face value in yuan with two decimals, e.g. `10.00`.
    pub amount_yuan: String,
    /// Minimum spend in yuan with two decimals (`0.00`: no threshold).
    pub start_fee_yuan: String,
    /// How many can be issued in total (`None`: unlimited). A send that would go over it issues
    /// nothing and fails with `VOUCHER_STOCK_NOT_ENOUGH`.
    #[serde(default)]
    pub stock: Option<u64>,
    /// How many one customer may hold (`None`: unlimited). A send that would go over it issues
    /// nothing and fails with `EXCEED_LIMIT`.
    #[serde(default)]
    pub per_customer_limit: Option<u32>,
    /// Valid from, `yyyy-MM-dd HH:mm:ss` in GMT+8.
    pub start_time: String,
    /// Valid until, `yyyy-MM-dd HH:mm:ss` in GMT+8. After it (by the simulator's clock) a send
    /// fails with `VOUCHER_NOT_EXIST` and held vouchers are listed as `DELETED`.
    pub end_time: String,
}

/// The Douyin open platform: mini-apps, their coupon activities, the users they may not reach.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DouyinSeed {
    /// Mini-apps, each with its client key and secret.
    #[serde(default)]
    pub apps: Vec<DouyinApp>,
    /// Interface-send activities (接口发券活动), addressed by `activity_id`. Every app may send
    /// from every activity.
    #[serde(default)]
    pub activities: Vec<DouyinActivity>,
    /// Open ids that did not use the mini-app in the last 7 days: a send to them fails with
    /// `err_no` 29005004. Every other open id may receive coupons.
    #[serde(default)]
    pub inactive_users: Vec<String>,
    /// A client_token's lifetime (`expires_in`), seconds. Default 7200.
    #[serde(default = "default_token_ttl_secs")]
    pub token_ttl_secs: u64,
    /// Sends per second admitted per app, over a sliding one-second window (0: unlimited).
    /// Default 100, the documented limit. Calls over it get `err_no` 29005012.
    #[serde(default = "default_douyin_qps")]
    pub qps: u32,
}

fn default_token_ttl_secs() -> u64 {
    7200
}

fn default_douyin_qps() -> u32 {
    100
}

impl Default for DouyinSeed {
    fn default() -> DouyinSeed {
        DouyinSeed {
            apps: Vec::new(),
            activities: Vec::new(),
            inactive_users: Vec::new(),
            token_ttl_secs: default_token_ttl_secs(),
            qps: default_douyin_qps(),
        }
    }
}

/// A Douyin mini-app registered on the open platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DouyinApp {
    /// The `client_key` a token request names.
    pub client_key: String,
    /// The `client_secret` it must match.
    pub client_secret: String,
    /// The mini-app's `app_id`, which coupon calls with this app's token must name.
    pub app_id: String,
}

/// A Douyin interface-send coupon activity. Amounts are fen and times unix seconds, as the API
/// answers them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DouyinActivity {
    /// The `activity_id` a send names, e.g. `7218070000005644204`.
    pub activity_id: String,
    /// The coupon's name (`coupon_name`), e.g. `奶茶立减10元券`.
    pub coupon_name: String,
    /// Face value in fen (`discount_amount`).
    pub discount_amount_fen: i64,
    /// Minimum spend in fen (`min_pay_amount`; 0: no threshold).
    pub min_pay_amount_fen: i64,
    /// How many can be issued in total (`None`: unlimited). Once issued, a send fails with
    /// `err_no` 29005002.
    #[serde(default)]
    pub stock: Option<u64>,
    /// How many one open id may hold (`None`: unlimited). Over it, a send fails with `err_no`
    /// 29005003.
    #[serde(default)]
    pub per_user_limit: Option<u32>,
    /// Valid from, unix seconds (`valid_begin_time`).
    pub valid_begin_time: i64,
    /// Valid until, unix seconds (`valid_end_time`). After it (by the simulator's clock) the
    /// activity has ended: a send fails with `err_no` 29005001 and held coupons are listed with
    /// status 30.
    pub valid_end_time: i64,
    /// The template's merchant number, answered as `merchant_meta_no` (default empty).
    #[serde(default)]
    pub merchant_meta_no: String,
}

impl SimConfig {
    /// The demo seed, which tests, `cargo xtask demo` and `examples/sandbox.toml` rely on:
    ///
    /// | what | value |
    /// |---|---|
    /// | TOP app | app_key `12345678`, app_secret `sim-app-secret`, session `sim-session` |
    /// | coupon 48552 | `店铺满100减10`: 10 yuan off 100, stock 1 000 000, 1 per buyer |
    /// | coupon 48553 | `店铺满200减30`: 30 yuan off 200, stock 1 000, 1 per buyer |
    /// | validity | both `2026-01-01 00:00:00` to `2027-12-31 23:59:59` (GMT+8) |
    /// | unknown buyers | `不存在的买家`, `ghost-1`, `ghost-2` |
    /// | rate limit | none |
    /// | tmall coupon `nrt-demo-uuid` | `满100减10`: discount 1000 fen off 10000, template 12345, stock 1 000 000, 1 per user |
    /// | alsc voucher `3243421` | `满100减10`: `10.00` off `100.00`, stock 1 000 000, 5 per customer |
    /// | alsc unknown customers | `ghost-customer` |
    /// | douyin app | client_key `tt-demo-key`, client_secret `sim-douyin-secret`, app_id `tt-demo-app` |
    /// | douyin activity `7218070000005644204` | `奶茶立减10元券`: 1000 fen off 2000, stock 1 000 000, 1 per user, merchant_meta_no `45ed-8f3d` |
    /// | douyin inactive users | `inactive-user` |
    /// | douyin token, rate | lifetime 7200 s; 100 sends per second per app |
    /// | validity | all of them `2026-01-01 00:00:00` to `2027-12-31 23:59:59` (GMT+8) |
    pub fn demo() -> SimConfig {
        // 2026-01-01 00:00:00 and 2027-12-31 23:59:59 in GMT+8, as unix seconds.
        const BEGIN: i64 = 1_767_196_800;
        const END: i64 = 1_830_268_799;
        let coupon = |coupon_id, title: &str, amount_yuan, start_fee_yuan, stock| TaobaoCoupon {
            coupon_id,
            title: title.into(),
            amount_yuan,
            start_fee_yuan,
            stock: Some(stock),
            per_buyer_limit: Some(1),
            start_time: "2026-01-01 00:00:00".into(),
            end_time: "2027-12-31 23:59:59".into(),
        };
        SimConfig {
            top_apps: vec![TopApp {
                app_key: "12345678".into(),
                app_secret: "sim-app-secret".into(),
                sessions: vec!["sim-session".into()],
            }],
            taobao: TaobaoSeed {
                coupons: vec![
                    coupon(48552, "店铺满100减10", 10, 100, 1_000_000),
                    coupon(48553, "店铺满200减30", 30, 200, 1_000),
                ],
                unknown_buyers: vec!["不存在的买家".into(), "ghost-1".into(), "ghost-2".into()],
            },
            qps_per_app: None,
            tmall: TmallSeed {
                coupons: vec![TmallCoupon {
                    uuid: "nrt-demo-uuid".into(),
                    name: "满100减10".into(),
                    discount_fen: 1000,
                    start_fee_fen: 10000,
                    stock: Some(1_000_000),
                    per_user_limit: Some(1),
                    template_id: 12345,
                    start_ms: BEGIN * 1000,
                    end_ms: END * 1000,
                }],
            },
            alsc: AlscSeed {
                vouchers: vec![AlscVoucher {
                    voucher_id: "3243421".into(),
                    title: "满100减10".into(),
                    amount_yuan: "10.00".into(),
                    start_fee_yuan: "100.00".into(),
                    stock: Some(1_000_000),
                    per_customer_limit: Some(5),
                    start_time: "2026-01-01 00:00:00".into(),
                    end_time: "2027-12-31 23:59:59".into(),
                }],
                unknown_customers: vec!["ghost-customer".into()],
            },
            douyin: DouyinSeed {
                apps: vec![DouyinApp {
                    client_key: "tt-demo-key".into(),
                    client_secret: "sim-douyin-secret".into(),
                    app_id: "tt-demo-app".into(),
                }],
                activities: vec![DouyinActivity {
                    activity_id: "7218070000005644204".into(),
                    coupon_name: "奶茶立减10元券".into(),
                    discount_amount_fen: 1000,
                    min_pay_amount_fen: 2000,
                    stock: Some(1_000_000),
                    per_user_limit: Some(1),
                    valid_begin_time: BEGIN,
                    valid_end_time: END,
                    merchant_meta_no: "45ed-8f3d".into(),
                }],
                inactive_users: vec!["inactive-user".into()],
                token_ttl_secs: 7200,
                qps: 100,
            },
        }
    }
}

/// One coupon a simulated platform issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuance {
    /// The platform: `taobao`, `tmall-nrt`, `alsc` or `douyin`.
    pub platform: String,
    /// The coupon (template) reference as the API took it: Taobao `coupon_id` (`48552`), Tmall
    /// `uuid`, alsc `voucher_id`, Douyin `activity_id`.
    pub coupon: String,
    /// Who received it, as sent: Taobao nick or open_uid, Tmall `open_id`, alsc `customer_id`,
    /// Douyin `open_id`.
    pub recipient: String,
    /// The issued coupon's id or number: Taobao `coupon_number`, Tmall `coupon_instance_id`,
    /// alsc the voucher instance id (listed as `voucher_id` by the list API), Douyin
    /// `coupon_id`.
    pub instance_id: String,
    /// The platform idempotency id it was issued under, where the API has one: Tmall `out_id`,
    /// alsc `request_id`, Douyin `merchant_coupon_id` (`None` when the call sent none; always
    /// `None` for Taobao). An alsc send of `voucher_num` N issues N entries with the same id.
    pub idempotency_id: Option<String>,
}

/// One call as the simulator saw it, on the TOP gateway or the Douyin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallRecord {
    /// The API: the TOP `method` (empty when the request had none), or for Douyin the short
    /// name `client_token`, `send_coupon_to_designated_user` or `get_coupon_receive_info`.
    pub api: String,
    /// Whether it was answered with a success response. An alsc answer with
    /// `biz_success: false` is not one, although its TOP envelope is.
    pub ok: bool,
    /// What went wrong, if anything: the TOP `code` (`"25"`); the alsc `result_code` of a
    /// business failure (`"EXCEED_LIMIT"`); the Douyin `err_no` (`"29005012"`) or token
    /// `error_code` (`"10013"`); or for injected transport faults `http-<status>`
    /// (`"http-502"`), `bad-body` or `reset`.
    pub error_code: Option<String>,
    /// The TOP `sub_code` answered, if any (never for Douyin).
    pub sub_code: Option<String>,
    /// The `sign_method` as sent (empty when absent, and for Douyin, which does not sign).
    pub sign_method: String,
    /// The TOP `request_id` or Douyin `log_id` answered (`None` when the answer was not a
    /// platform envelope).
    pub request_id: Option<String>,
    /// Every parameter received: for TOP the query string and form body merged, for Douyin the
    /// JSON body's top-level fields (non-strings as JSON text) and the `access-token` header.
    /// Credentials (`session`, `client_secret`, `access-token`) read `***`, so that printing the
    /// log never shows one.
    pub params: std::collections::BTreeMap<String, String>,
    /// The simulator's own explanation of a rejection (which check failed, the expected
    /// signature and the string it was computed over, without the secret). Not on the wire.
    pub detail: Option<String>,
}

fn one() -> u32 {
    1
}

/// A fault to inject into upcoming calls.
///
/// `api: None` matches every API, TOP and Douyin alike; otherwise it is compared with the TOP
/// request's `method`, or with the Douyin route's short name (`client_token`,
/// `send_coupon_to_designated_user`, `get_coupon_receive_info`). `times` is how many matching
/// calls the fault applies to (default 1 in JSON; 0 injects nothing). Faults are taken in the
/// order they were queued and apply before any check, so a faulted call is not verified and has
/// no effect unless the fault says so (`Delay`).
///
/// Over HTTP (`POST /_sim/fault`) a fault is JSON tagged by `kind`:
/// `{"kind":"status","status":502}`, `{"kind":"delay","api":"taobao.promotion.coupon.sns.send",
/// "millis":3000,"apply":true}`, `{"kind":"top_error","code":7,"msg":"App Call Limited"}`,
/// `{"kind":"body","body":"{\"promotion"}`, `{"kind":"reset_connection","times":2}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer this HTTP status with an HTML error page, as the gateway's load balancer does.
    Status {
        /// Which API (`None`: any).
        #[serde(default)]
        api: Option<String>,
        /// The HTTP status, e.g. 502.
        status: u16,
        /// How many calls.
        #[serde(default = "one")]
        times: u32,
    },
    /// Wait before answering. With `apply`, the call is processed first and takes effect, then
    /// the answer is held back (a client timeout after the platform applied the send). Without,
    /// the wait comes first; a client that gives up during it closes the connection and the call
    /// never takes effect.
    Delay {
        /// Which API (`None`: any).
        #[serde(default)]
        api: Option<String>,
        /// How long to wait, in milliseconds.
        millis: u64,
        /// Process the call before waiting?
        apply: bool,
        /// How many calls.
        #[serde(default = "one")]
        times: u32,
    },
    /// Answer this TOP error response (HTTP 200, `error_response`) without processing the call.
    ///
    /// On a Douyin route it is that platform's error answer instead: `code` and `msg` become
    /// `err_no` and `err_msg` (`client_token`: `data.error_code` and `data.description`), and
    /// `sub_code` / `sub_msg` are not sent.
    TopError {
        /// Which API (`None`: any).
        #[serde(default)]
        api: Option<String>,
        /// `code`, e.g. 15 or 7.
        code: i64,
        /// `msg`, e.g. `Remote service error`.
        msg: String,
        /// `sub_code`, e.g. `isp.top-remote-connection-timeout`.
        #[serde(default)]
        sub_code: Option<String>,
        /// `sub_msg`.
        #[serde(default)]
        sub_msg: Option<String>,
        /// How many calls.
        #[serde(default = "one")]
        times: u32,
    },
    /// Answer HTTP 200 with this raw body (truncated JSON, HTML, ...) without processing the call.
    Body {
        /// Which API (`None`: any).
        #[serde(default)]
        api: Option<String>,
        /// The body, sent as is.
        body: String,
        /// How many calls.
        #[serde(default = "one")]
        times: u32,
    },
    /// Close the connection without answering (a TCP reset), without processing the call.
    ResetConnection {
        /// Which API (`None`: any).
        #[serde(default)]
        api: Option<String>,
        /// How many calls.
        #[serde(default = "one")]
        times: u32,
    },
}

/// A running simulator. Dropping it stops it too, without waiting.
pub struct Sim {
    addr: SocketAddr,
    state: Shared,
    server: server::Server,
}

impl Sim {
    /// Starts on 127.0.0.1 with a free port, on the current tokio runtime.
    pub async fn start(config: SimConfig) -> std::io::Result<Sim> {
        Sim::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr` (port 0: a free port), on the current tokio runtime. A seed that
    /// contradicts itself (a coupon listed twice, a time that does not parse) is an
    /// [`std::io::ErrorKind::InvalidInput`] error naming the field.
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<Sim> {
        let state = state::State::new(config)
            .map_err(|message| std::io::Error::new(std::io::ErrorKind::InvalidInput, message))?
            .into_shared();
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = server::Server::spawn(listener, server::router(state.clone()));
        Ok(Sim {
            addr,
            state,
            server,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the origin to allow in the host's config.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The TOP gateway URL: `base_url() + "/router/rest"`.
    pub fn top_gateway(&self) -> String {
        format!("{}/router/rest", self.base_url())
    }

    /// Every coupon issued so far, in order.
    pub fn ledger(&self) -> Vec<Issuance> {
        lock(&self.state).ledger.entries().to_vec()
    }

    /// How many issuances repeat a (platform, idempotency id) that an earlier call already
    /// issued under: coupons a platform would have issued twice because a client retried. The
    /// several vouchers of one alsc call (`voucher_num` > 1) are not duplicates of each other.
    /// Always 0 for Taobao, whose send has no idempotency id; count its duplicates in
    /// [`Sim::ledger`] by recipient instead. Ids are compared across apps, so with several apps
    /// on one platform, the same id used by two of them counts too.
    pub fn duplicate_issuances(&self) -> usize {
        lock(&self.state).ledger.duplicates()
    }

    /// Injects faults at random from now on: each call (but Douyin token fetches) draws one of
    /// `faults` (those whose `api` matches) with probability `rate`; their `times` is ignored.
    /// Queued faults ([`Sim::inject`]) come first. `rate` 0 turns chaos off.
    pub fn set_chaos(&self, rate: f64, faults: Vec<Fault>) {
        lock(&self.state).chaos = (rate > 0.0).then_some((rate, faults));
    }

    /// Every call so far (TOP and Douyin), in order, including rejected and faulted ones.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.state).calls.clone()
    }

    /// Moves the simulator's "now" by `skew_secs` (positive: the simulator is ahead). It applies
    /// to the timestamp check (±10 minutes) and to coupon expiry.
    pub fn set_clock_skew(&self, skew_secs: i64) {
        lock(&self.state).clock_skew_secs = skew_secs;
    }

    /// Queues a fault for the next matching call(s).
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).inject(fault);
    }

    /// The origin the Douyin API is served on; the same as [`Sim::base_url`] (the paths are
    /// `/oauth/client_token/` and `/api/promotion/v1/coupon/.../`), named apart so a test reads
    /// as the host's `settings.base_url` does.
    pub fn douyin_base_url(&self) -> String {
        self.base_url()
    }

    /// How many Douyin client_tokens were issued (refused token requests do not count).
    pub fn douyin_token_fetches(&self) -> usize {
        lock(&self.state).douyin.token_fetches()
    }

    /// Puts every Douyin token issued so far past its lifetime: a call with one gets `err_no`
    /// 28001008 until the client fetches a new token. Tokens fetched afterwards are unaffected.
    pub fn expire_douyin_tokens(&self) {
        let mut state = lock(&self.state);
        let now = state.now();
        state.douyin.expire_tokens(now);
    }

    /// Stops accepting connections, lets calls in flight finish (for at most two seconds), and
    /// returns when the server is down.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").field("addr", &self.addr).finish()
    }
}
