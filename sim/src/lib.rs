//! # coupon-sim
//!
//! A simulator of the platforms coupon-host talks to, on loopback. Today it is a TOP gateway
//! (`/router/rest`) serving `taobao.promotion.coupon.sns.send` and
//! `taobao.qianniu.coupon.buyer.get`. The gateway checks every request the way the real one does
//! (app key, signature with md5 / hmac / hmac-sha256, timestamp window, version, session, call
//! rate), so a signing bug in the host fails a test here instead of in production. It then
//! answers from state it keeps (coupons, stock, what each buyer holds), in the JSON shapes of the
//! platform's documentation pages, and records every call and every coupon it issued.
//!
//! Faults can be queued per API ([`Fault`]): HTTP errors, slow answers (before or after the send
//! took effect), TOP error responses, garbage bodies, dropped connections.
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
//! `state::State`); a platform module lists its APIs in an `APIS` table and `top::apis` chains
//! the tables. Another protocol (Douyin) gets its own module with its own routes in `server.rs`, and
//! its own part of `State`. The ledger, call log, faults and clock are shared by all of them.

mod admin;
mod server;
mod state;
mod taobao;
mod top;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::state::{Shared, lock};

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
    pub fn demo() -> SimConfig {
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
        }
    }
}

/// One coupon a simulated platform issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuance {
    /// The platform: `taobao` (later `tmall-nrt`, `alsc`, `douyin`).
    pub platform: String,
    /// The coupon (template) reference as the API took it, e.g. `48552`.
    pub coupon: String,
    /// Who received it: the nick or open_uid as sent (later: open id, customer id).
    pub recipient: String,
    /// The issued coupon's id or number (Taobao: `coupon_number`).
    pub instance_id: String,
    /// The platform idempotency id it was issued under, where the API has one (Taobao: `None`).
    pub idempotency_id: Option<String>,
}

/// One gateway call as the simulator saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallRecord {
    /// The API (`method`), empty when the request had none.
    pub api: String,
    /// Whether it was answered with a success response.
    pub ok: bool,
    /// What went wrong, if anything: the TOP `code` (`"25"`), or for injected transport faults
    /// `http-<status>` (`"http-502"`), `bad-body` or `reset`.
    pub error_code: Option<String>,
    /// The TOP `sub_code` answered, if any.
    pub sub_code: Option<String>,
    /// The `sign_method` as sent (empty when absent).
    pub sign_method: String,
    /// The `request_id` answered (`None` when the answer was not a TOP envelope).
    pub request_id: Option<String>,
    /// Every parameter received (query string and form body merged), except that the value of
    /// `session` is replaced by `***` so that printing the log never shows a credential.
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
/// `api: None` matches every API; otherwise it is compared with the request's `method`. `times`
/// is how many matching calls the fault applies to (default 1 in JSON; 0 injects nothing).
/// Faults are taken in the order they were queued and apply before any check, so a faulted call
/// is not verified and has no effect unless the fault says so (`Delay`).
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
        lock(&self.state).ledger.clone()
    }

    /// How many issuances repeat a (platform, idempotency id) already issued: coupons a platform
    /// would have issued twice because a client retried. Always 0 for Taobao, whose send has no
    /// idempotency id; count its duplicates in [`Sim::ledger`] by recipient instead.
    pub fn duplicate_issuances(&self) -> usize {
        let state = lock(&self.state);
        let mut seen = std::collections::HashSet::new();
        state
            .ledger
            .iter()
            .filter_map(|i| Some((i.platform.as_str(), i.idempotency_id.as_deref()?)))
            .filter(|key| !seen.insert(*key))
            .count()
    }

    /// Every gateway call so far, in order, including rejected and faulted ones.
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
