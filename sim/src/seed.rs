//! The seed: what the simulated platforms know when they start (`coupon-sim --config` files
//! have the shape of [`SimConfig`]), and the demo seed the tests and the demo rely on.

use serde::{Deserialize, Serialize};

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
    /// TOP sellers (shops) besides the default one, [`DEFAULT_SELLER`], each with the sessions
    /// it holds at start. Absent: only the default seller. An entry with the default seller's
    /// nick sets its user id and adds sessions to it.
    #[serde(default)]
    pub top_sellers: Vec<TopSeller>,
}

/// The nick of the TOP seller that owns every coupon and voucher whose `seller` is `None`, and
/// every session in [`TopApp::sessions`].
pub const DEFAULT_SELLER: &str = "sim-seller";

/// The default seller's `taobao_user_id`, unless [`SimConfig::top_sellers`] lists it with
/// another.
pub const DEFAULT_SELLER_ID: u64 = 2_200_000_000_001;

/// A TOP seller (a shop that authorizes apps): its coupons name it by nick.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopSeller {
    /// The seller's nick (`taobao_user_nick`), which coupons name as their `seller`.
    pub nick: String,
    /// The seller's `taobao_user_id`.
    pub user_id: u64,
    /// Sessions the seller holds at start, one per app it authorized (or several).
    #[serde(default)]
    pub sessions: Vec<TopSellerSession>,
}

/// A session (access token) a seller holds at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopSellerSession {
    /// The app it authorizes; a call of another app with it is code 27.
    pub app_key: String,
    /// The `session` value.
    pub session: String,
    /// Seconds from the simulator's start until it expires by the simulator's clock (`None`:
    /// never by the clock).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// A TOP application (an ISV app registered on open.taobao.com).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopApp {
    /// The AppKey (`app_key`).
    pub app_key: String,
    /// The AppSecret the gateway verifies signatures with.
    pub app_secret: String,
    /// Session keys (`session`) valid for this app, all of the default seller
    /// ([`DEFAULT_SELLER`]). They do not expire by the clock; [`crate::Sim::expire_top_session`]
    /// ends one.
    pub sessions: Vec<String>,
    /// `expires_in` of a session the OAuth endpoint (`/token`) issues for this app, in seconds;
    /// `r1_`, `r2_`, `w1_` and `w2_expires_in` are the same. Default 86 400 (24 hours, what
    /// ACCOUNTS.md gives an unreviewed app).
    #[serde(default = "default_session_ttl_secs")]
    pub session_ttl_secs: u64,
    /// `re_expires_in` of the refresh token issued with such a session, in seconds. 0: the app
    /// is of a kind that cannot refresh, and every refresh is refused. Default 2 592 000 (30
    /// days).
    #[serde(default = "default_refresh_ttl_secs")]
    pub refresh_ttl_secs: u64,
    /// The callback registered for the app. An authorization code minted without a
    /// `redirect_uri` is bound to it, and the code exchange must send the same. Default
    /// `urn:ietf:wg:oauth:2.0:oob`, TOP's value for apps without a web server.
    #[serde(default = "default_redirect_uri")]
    pub redirect_uri: String,
}

impl TopApp {
    /// An app with no seed sessions and the default lifetimes and callback.
    pub fn new(app_key: impl Into<String>, app_secret: impl Into<String>) -> TopApp {
        TopApp {
            app_key: app_key.into(),
            app_secret: app_secret.into(),
            sessions: Vec::new(),
            session_ttl_secs: default_session_ttl_secs(),
            refresh_ttl_secs: default_refresh_ttl_secs(),
            redirect_uri: default_redirect_uri(),
        }
    }
}

fn default_session_ttl_secs() -> u64 {
    86_400
}

fn default_refresh_ttl_secs() -> u64 {
    2_592_000
}

fn default_redirect_uri() -> String {
    "urn:ietf:wg:oauth:2.0:oob".to_owned()
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
    /// The nick of the seller whose shop it is (`None`: [`DEFAULT_SELLER`]). A session of
    /// another seller sending it gets code 15 `isv.coupon-error`, as for a coupon that does not
    /// exist, and does not see it in `taobao.qianniu.coupon.buyer.get`.
    #[serde(default)]
    pub seller: Option<String>,
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
    /// The nick of the seller it belongs to (`None`: [`DEFAULT_SELLER`]). A session of another
    /// seller sending it gets sub_code `-3`, as for a coupon that does not exist, and does not
    /// see its instances in `tmall.nrt.coupon.instance.query`.
    #[serde(default)]
    pub seller: Option<String>,
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
    /// The nick of the seller (brand) it belongs to (`None`: [`DEFAULT_SELLER`]). A send with
    /// another seller's session gets `VOUCHER_NOT_EXIST`; a send without a session may send any
    /// voucher. The list shows a session's seller only its own vouchers.
    #[serde(default)]
    pub seller: Option<String>,
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
    /// | TOP app | app_key `12345678`, app_secret `sim-app-secret`, session `sim-session` (of the default seller `sim-seller`); OAuth sessions last 24 h, refresh tokens 30 days; callback `urn:ietf:wg:oauth:2.0:oob` |
    /// | coupon 48552 | `店铺满100减10`: 10 yuan off 100, stock 1 000 000, 1 per buyer |
    /// | coupon 48553 | `店铺满200减30`: 30 yuan off 200, stock 1 000, 1 per buyer |
    /// | validity | both `2026-01-01 00:00:00` to `2027-12-31 23:59:59` (GMT+8) |
    /// | unknown buyers | `不存在的买家`, `ghost-1`, `ghost-2` |
    /// | rate limit | none |
    /// | tmall coupon `nrt-demo-uuid` | `满100减10`: discount 1000 fen off 10000, template 12345, stock 1 000 000, 1 per user |
    /// | alsc voucher `3243421` | `满100减10`: `10.00` off `100.00`, stock 1 000 000, 5 per customer |
    /// | alsc unknown customers | `ghost-customer` |
    /// | a second seller | `sim-seller-2` (user id 2200000000002), session `sim-session-2` for app `12345678` |
    /// | its coupons | Taobao 48560 `二店满50减5` (5 yuan off 50, stock 1 000 000, 1 per buyer); tmall `nrt-demo-uuid-2` (`满50减5`, 500 fen off 5000, template 12346); alsc voucher `3243422` (`满50减5`, `5.00` off `50.00`, 5 per customer) |
    /// | douyin app | client_key `tt-demo-key`, client_secret `sim-douyin-secret`, app_id `tt-demo-app` |
    /// | douyin activity `7218070000005644204` | `奶茶立减10元券`: 1000 fen off 2000, stock 1 000 000, 1 per user, merchant_meta_no `45ed-8f3d` |
    /// | douyin inactive users | `inactive-user` |
    /// | douyin token, rate | lifetime 7200 s; 100 sends per second per app |
    /// | validity | all of them `2026-01-01 00:00:00` to `2027-12-31 23:59:59` (GMT+8) |
    ///
    /// Everything the default seller owns is what the demo seed had before there were several
    /// sellers, so a host that only knows `sim-session` sees the same shop as before.
    pub fn demo() -> SimConfig {
        // 2026-01-01 00:00:00 and 2027-12-31 23:59:59 in GMT+8, as unix seconds.
        const BEGIN: i64 = 1_767_196_800;
        const END: i64 = 1_830_268_799;
        const SECOND_SELLER: &str = "sim-seller-2";
        let seller = |owner: Option<&str>| owner.map(str::to_owned);
        let coupon =
            |coupon_id, title: &str, amount_yuan, start_fee_yuan, stock, owner| TaobaoCoupon {
                coupon_id,
                title: title.into(),
                amount_yuan,
                start_fee_yuan,
                stock: Some(stock),
                per_buyer_limit: Some(1),
                start_time: "2026-01-01 00:00:00".into(),
                end_time: "2027-12-31 23:59:59".into(),
                seller: seller(owner),
            };
        let nrt =
            |uuid: &str, name: &str, discount_fen, start_fee_fen, template_id, owner| TmallCoupon {
                uuid: uuid.into(),
                name: name.into(),
                discount_fen,
                start_fee_fen,
                stock: Some(1_000_000),
                per_user_limit: Some(1),
                template_id,
                start_ms: BEGIN * 1000,
                end_ms: END * 1000,
                seller: seller(owner),
            };
        let voucher =
            |voucher_id: &str, title: &str, amount: &str, start_fee: &str, owner| AlscVoucher {
                voucher_id: voucher_id.into(),
                title: title.into(),
                amount_yuan: amount.into(),
                start_fee_yuan: start_fee.into(),
                stock: Some(1_000_000),
                per_customer_limit: Some(5),
                start_time: "2026-01-01 00:00:00".into(),
                end_time: "2027-12-31 23:59:59".into(),
                seller: seller(owner),
            };
        SimConfig {
            top_apps: vec![TopApp {
                sessions: vec!["sim-session".into()],
                ..TopApp::new("12345678", "sim-app-secret")
            }],
            taobao: TaobaoSeed {
                coupons: vec![
                    coupon(48552, "店铺满100减10", 10, 100, 1_000_000, None),
                    coupon(48553, "店铺满200减30", 30, 200, 1_000, None),
                    coupon(48560, "二店满50减5", 5, 50, 1_000_000, Some(SECOND_SELLER)),
                ],
                unknown_buyers: vec!["不存在的买家".into(), "ghost-1".into(), "ghost-2".into()],
            },
            qps_per_app: None,
            tmall: TmallSeed {
                coupons: vec![
                    nrt("nrt-demo-uuid", "满100减10", 1000, 10000, 12345, None),
                    nrt(
                        "nrt-demo-uuid-2",
                        "满50减5",
                        500,
                        5000,
                        12346,
                        Some(SECOND_SELLER),
                    ),
                ],
            },
            alsc: AlscSeed {
                vouchers: vec![
                    voucher("3243421", "满100减10", "10.00", "100.00", None),
                    voucher("3243422", "满50减5", "5.00", "50.00", Some(SECOND_SELLER)),
                ],
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
            top_sellers: vec![TopSeller {
                nick: SECOND_SELLER.into(),
                user_id: 2_200_000_000_002,
                sessions: vec![TopSellerSession {
                    app_key: "12345678".into(),
                    session: "sim-session-2".into(),
                    ttl_secs: None,
                }],
            }],
        }
    }
}
