//! # coupon-sim
//!
//! A simulator of the platforms coupon-host talks to, on loopback:
//!
//! - a TOP gateway (`/router/rest`) serving `taobao.promotion.coupon.sns.send`,
//!   `taobao.qianniu.coupon.buyer.get`, `tmall.nrt.coupon.send`,
//!   `tmall.nrt.coupon.instance.query`, `alibaba.alsc.crm.voucher.send` and
//!   `alibaba.alsc.crm.customer.voucher.list`;
//! - TOP's OAuth token endpoint (`POST /token`): an authorization code or a refresh token for
//!   a seller's session;
//! - the Douyin open API: `POST /oauth/client_token/`, `POST /oauth/stable_client_token/` and
//!   `POST /api/promotion/v1/coupon/{send_coupon_to_designated_user,get_coupon_receive_info}/`.
//!
//! The gateway checks every request the way the real one does (app key, signature with md5 /
//! hmac / hmac-sha256, timestamp window, version, session, call rate), so a signing bug in the
//! host fails a test here instead of in production. The TOP side has several sellers, each
//! with its own sessions (which expire, and can be expired or revoked by a test) and its own
//! coupons: a session sends and sees only its seller's. The Douyin API checks its `access-token`
//! (lifetime, the five-minute grace of a replaced token, only the latest two valid) and its
//! 100 QPS per app. Both then answer from state they keep (coupons, stock, what each user
//! holds, which idempotency ids were used), in the JSON shapes of the platforms' documentation
//! pages and `docs/PLATFORMS.md`, and record every call and every coupon issued.
//!
//! Faults can be queued per API ([`Fault`]): HTTP errors, slow answers (before or after the send
//! took effect), platform error responses, garbage bodies, dropped connections. Counts of
//! answers per API and error code, token fetches and "too frequent" answers are kept as calls
//! come ([`Sim::stats`]).
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
mod seed;
mod server;
mod state;
mod taobao;
mod tmall;
mod top;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use crate::seed::{
    AlscSeed, AlscVoucher, DEFAULT_SELLER, DEFAULT_SELLER_ID, DouyinActivity, DouyinApp,
    DouyinSeed, SimConfig, TaobaoCoupon, TaobaoSeed, TmallCoupon, TmallSeed, TopApp, TopSeller,
    TopSellerSession,
};
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
    /// The nick of the TOP seller the call acted for: the seller of its `session` once that was
    /// found valid, or of the code or refresh token a `/token` call exchanged (`None` before
    /// that point, without a session, and for Douyin).
    #[serde(default)]
    pub seller: Option<String>,
}

fn one() -> u32 {
    1
}

/// A TOP session (access token) as the simulator knows it: [`Sim::top_sessions`],
/// `GET /_sim/top/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopSession {
    /// The `session` value, so that a test can expire or revoke it. It is a credential of the
    /// simulator's own making; do not print it where a real one could be.
    pub session: String,
    /// The app it authorizes.
    pub app_key: String,
    /// The nick of the seller it acts for.
    pub seller: String,
    /// That seller's `taobao_user_id`.
    pub seller_id: u64,
    /// When it expires, unix seconds by the simulator's clock (`None`: not by the clock, as
    /// seed sessions).
    pub expires_at: Option<i64>,
    /// When the refresh token issued with it expires, unix seconds (`None`: it has none, it was
    /// used, or the session was revoked).
    pub refresh_expires_at: Option<i64>,
    /// Whether a call with it would be accepted now.
    pub state: SessionState,
}

/// Whether a TOP session is good now. Anything but `Active` is answered code 27.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// Accepted.
    Active,
    /// Past its expiry ([`Sim::expire_top_session`], or its lifetime ran out).
    Expired,
    /// Replaced by a refresh, or revoked ([`Sim::revoke_top_session`]).
    Revoked,
}

/// Counts over every call so far: [`Sim::stats`], `GET /_sim/stats`. Kept as calls are
/// recorded, so asking is cheap (but for `duplicate_issuances`, which reads the ledger).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Calls recorded, faulted and refused ones included.
    pub calls: usize,
    /// Calls per API (as [`CallRecord::api`]) and outcome: `ok`, or the recorded
    /// [`CallRecord::error_code`].
    pub answers: std::collections::BTreeMap<String, std::collections::BTreeMap<String, usize>>,
    /// Successful answers per token endpoint: `client_token`, `stable_client_token` (Douyin)
    /// and `oauth_token` (TOP's `/token`, both grants). Every endpoint is listed, 0 included.
    pub token_fetches: std::collections::BTreeMap<String, usize>,
    /// Failed calls per error code, over every API.
    pub error_counts: std::collections::BTreeMap<String, usize>,
    /// Answers that said "too frequent": TOP code 7, Douyin 29005012 and 28003018, whether the
    /// simulator's rate limit or an injected fault produced them.
    pub too_frequent: usize,
    /// Coupons issued ([`Sim::ledger`]'s length).
    pub issued: usize,
    /// [`Sim::duplicate_issuances`].
    pub duplicate_issuances: usize,
}

/// A fault to inject into upcoming calls.
///
/// `api: None` matches every API, TOP and Douyin alike; otherwise it is compared with the TOP
/// request's `method`, with `oauth_token` for TOP's `/token`, or with the Douyin route's short
/// name (`client_token`, `stable_client_token`, `send_coupon_to_designated_user`,
/// `get_coupon_receive_info`). `times` is how many matching
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
        lock(&self.state).calls().to_vec()
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

    /// How many Douyin token requests were answered with a token, on `/oauth/client_token/`
    /// and `/oauth/stable_client_token/` together (refused and faulted ones do not count).
    pub fn douyin_token_fetches(&self) -> usize {
        let fetches = self.token_fetches();
        ["client_token", "stable_client_token"]
            .iter()
            .filter_map(|api| fetches.get(*api))
            .sum()
    }

    /// Counts over every call so far.
    pub fn stats(&self) -> SimStats {
        lock(&self.state).stats()
    }

    /// Successful answers per token endpoint: `client_token`, `stable_client_token` and
    /// `oauth_token`, each listed (0 included). A stable token answered again counts again.
    pub fn token_fetches(&self) -> std::collections::BTreeMap<String, usize> {
        lock(&self.state).token_fetches()
    }

    /// Failed calls per error code, over every API: TOP `code` (`"7"`), Douyin `err_no`
    /// (`"29005012"`), OAuth `error` (`"invalid_grant"`), alsc `result_code`, or a fault's
    /// `http-502` / `bad-body` / `reset`.
    pub fn error_counts(&self) -> std::collections::BTreeMap<String, usize> {
        lock(&self.state).error_counts()
    }

    /// How many answers said "too frequent" (TOP code 7, Douyin 29005012 or 28003018).
    pub fn too_frequent(&self) -> usize {
        lock(&self.state).too_frequent()
    }

    /// TOP's OAuth token endpoint, `base_url() + "/token"` (`https://oauth.taobao.com/token`
    /// on the real platform).
    pub fn top_oauth_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    /// Mints an authorization code for `seller` (a nick) on app `app_key`, as TOP's authorize
    /// page does once the seller agrees. It is bound to `redirect_uri` (`None`: the app's
    /// [`TopApp::redirect_uri`]), valid for 30 minutes and exchangeable once at
    /// [`Sim::top_oauth_url`] for a session of that seller. An unknown app or seller is an error
    /// naming it.
    pub fn mint_top_code(
        &self,
        app_key: &str,
        seller: &str,
        redirect_uri: Option<&str>,
    ) -> Result<String, String> {
        lock(&self.state).mint_top_code(app_key, seller, redirect_uri)
    }

    /// Every TOP session ever issued (seeded, by a code, by a refresh), oldest first.
    pub fn top_sessions(&self) -> Vec<TopSession> {
        lock(&self.state).top_sessions()
    }

    /// Every TOP refresh token issued so far (by a code or a refresh), used or not: credentials
    /// of the simulator's own making, for tests that look for them where they must not be.
    pub fn top_refresh_tokens(&self) -> Vec<String> {
        lock(&self.state).top_refresh_tokens()
    }

    /// Puts a TOP session past its expiry now: calls with it get code 27 `invalid-sessionkey`.
    /// Its refresh token, if any, still works. `false` when no such session was ever issued.
    pub fn expire_top_session(&self, session: &str) -> bool {
        lock(&self.state).expire_top_session(session)
    }

    /// Revokes a TOP session and its refresh token, as a merchant cancelling the authorization
    /// does: calls get code 27 and a refresh is refused. `false` when no such session was ever
    /// issued.
    pub fn revoke_top_session(&self, session: &str) -> bool {
        lock(&self.state).revoke_top_session(session)
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
