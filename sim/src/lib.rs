//! # coupon-sim
//!
//! A simulator of the platforms coupon-host talks to, on loopback: a TOP gateway that checks
//! app_key, signature (md5, hmac, hmac-sha256), timestamp window, version and session exactly as
//! the real one does, then answers the coupon APIs from state it keeps, with seed-shaped JSON.
//! Faults can be injected per API. Tests start it in-process ([`Sim::start`]); the demo runs the
//! `coupon-sim` binary.

mod taobao;
mod top;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

/// What the simulated platforms know: apps, coupons, buyers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimConfig {
    /// TOP applications the gateway accepts.
    pub top_apps: Vec<TopApp>,
    /// Taobao shop coupons and buyers.
    pub taobao: TaobaoSeed,
    /// Calls per second allowed per app key (`None`: unlimited). Over it, TOP code 7.
    pub qps_per_app: Option<u32>,
}

/// A TOP application.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopApp {
    /// The AppKey.
    pub app_key: String,
    /// The AppSecret the gateway verifies signatures with.
    pub app_secret: String,
    /// Valid seller session keys.
    pub sessions: Vec<String>,
}

/// The Taobao shop's state at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaobaoSeed {
    /// Shop coupons (templates).
    pub coupons: Vec<TaobaoCoupon>,
    /// Nicks or open_uids that do not exist: sends to them fail with 买家不存在.
    pub unknown_buyers: Vec<String>,
}

/// A Taobao shop coupon template.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaobaoCoupon {
    /// `coupon_id`.
    pub coupon_id: i64,
    /// Its title.
    pub title: String,
    /// Face value in yuan.
    pub amount_yuan: i64,
    /// Minimum spend in yuan.
    pub start_fee_yuan: i64,
    /// Coupons left (`None`: unlimited).
    pub stock: Option<u64>,
    /// Most coupons one buyer may hold (`None`: unlimited).
    pub per_buyer_limit: Option<u32>,
    /// Valid from, `yyyy-MM-dd HH:mm:ss` GMT+8.
    pub start_time: String,
    /// Valid until, `yyyy-MM-dd HH:mm:ss` GMT+8.
    pub end_time: String,
}

impl SimConfig {
    /// The demo seed:
    /// - TOP app `12345678`, secret `sim-app-secret`, session `sim-session`;
    /// - coupon 48552 "店铺满100减10" (10 yuan off 100, plenty of stock, 1 per buyer) and
    ///   48553 "店铺满200减30" (30 off 200, stock 1000), both valid through 2026 (GMT+8);
    /// - unknown buyers `不存在的买家` and `ghost-buyer`.
    pub fn demo() -> SimConfig {
        SimConfig {
            top_apps: vec![TopApp {
                app_key: "12345678".into(),
                app_secret: "sim-app-secret".into(),
                sessions: vec!["sim-session".into()],
            }],
            taobao: TaobaoSeed {
                coupons: vec![
                    TaobaoCoupon {
                        coupon_id: 48552,
                        title: "店铺满100减10".into(),
                        amount_yuan: 10,
                        start_fee_yuan: 100,
                        stock: None,
                        per_buyer_limit: Some(1),
                        start_time: "2026-01-01 00:00:00".into(),
                        end_time: "2027-12-31 23:59:59".into(),
                    },
                    TaobaoCoupon {
                        coupon_id: 48553,
                        title: "店铺满200减30".into(),
                        amount_yuan: 30,
                        start_fee_yuan: 200,
                        stock: Some(1000),
                        per_buyer_limit: Some(1),
                        start_time: "2026-01-01 00:00:00".into(),
                        end_time: "2027-12-31 23:59:59".into(),
                    },
                ],
                unknown_buyers: vec!["不存在的买家".into(), "ghost-buyer".into()],
            },
            qps_per_app: None,
        }
    }
}

/// One coupon the simulated platforms issued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuance {
    /// `taobao`, …
    pub platform: String,
    /// The coupon (template) reference.
    pub coupon: String,
    /// Nick, open id or customer id.
    pub recipient: String,
    /// The issued coupon's id/number.
    pub instance_id: String,
    /// The platform idempotency id it was issued under, where the API has one.
    pub idempotency_id: Option<String>,
}

/// One gateway call as the simulator saw it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallRecord {
    /// The API (`method`).
    pub api: String,
    /// Whether it was answered without an error response.
    pub ok: bool,
    /// The error code answered, if any.
    pub error_code: Option<String>,
    /// The `sign_method` the caller used.
    pub sign_method: String,
}

/// A fault to inject into upcoming calls. `api: None` matches every API; `times` counts down.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer this HTTP status with an HTML error page.
    Status {
        /// Which API.
        api: Option<String>,
        /// The status.
        status: u16,
        /// How many calls.
        times: u32,
    },
    /// Wait before answering. With `apply`, the call takes effect before the wait (a timeout
    /// after the platform applied it); without, nothing is applied until the wait is over.
    Delay {
        /// Which API.
        api: Option<String>,
        /// How long.
        millis: u64,
        /// Apply first?
        apply: bool,
        /// How many calls.
        times: u32,
    },
    /// Answer a TOP error response.
    TopError {
        /// Which API.
        api: Option<String>,
        /// `code`.
        code: i64,
        /// `msg`.
        msg: String,
        /// `sub_code`.
        sub_code: Option<String>,
        /// `sub_msg`.
        sub_msg: Option<String>,
        /// How many calls.
        times: u32,
    },
    /// Answer HTTP 200 with this raw body (truncated JSON, HTML, …).
    Body {
        /// Which API.
        api: Option<String>,
        /// The body.
        body: String,
        /// How many calls.
        times: u32,
    },
}

impl Fault {
    fn api(&self) -> Option<&str> {
        match self {
            Fault::Status { api, .. }
            | Fault::Delay { api, .. }
            | Fault::TopError { api, .. }
            | Fault::Body { api, .. } => api.as_deref(),
        }
    }

    fn times(&mut self) -> &mut u32 {
        match self {
            Fault::Status { times, .. }
            | Fault::Delay { times, .. }
            | Fault::TopError { times, .. }
            | Fault::Body { times, .. } => times,
        }
    }
}

/// Everything the simulator remembers.
pub(crate) struct State {
    pub(crate) config: SimConfig,
    pub(crate) clock_skew_secs: i64,
    pub(crate) ledger: Vec<Issuance>,
    pub(crate) calls: Vec<CallRecord>,
    pub(crate) faults: VecDeque<Fault>,
    /// Coupons issued per (coupon_id, buyer).
    pub(crate) held: HashMap<(i64, String), u32>,
    /// Coupons issued per coupon_id.
    pub(crate) issued_count: HashMap<i64, u64>,
    /// Recent call times per app key, for the QPS limit.
    pub(crate) recent_calls: HashMap<String, VecDeque<std::time::Instant>>,
    pub(crate) next_number: u64,
}

pub(crate) type Shared = Arc<Mutex<State>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panicking handler must not take the simulator down with it.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    /// The simulator's "now", moved by the configured skew.
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::Duration::seconds(self.clock_skew_secs)
    }

    /// Takes the next fault that matches `api`, counting it down.
    pub(crate) fn take_fault(&mut self, api: &str) -> Option<Fault> {
        let index = self
            .faults
            .iter()
            .position(|f| f.api().is_none_or(|a| a == api))?;
        let fault = &mut self.faults[index];
        *fault.times() = fault.times().saturating_sub(1);
        let taken = fault.clone();
        if *fault.times() == 0 {
            self.faults.remove(index);
        }
        Some(taken)
    }
}

/// A running simulator.
pub struct Sim {
    addr: SocketAddr,
    state: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sim {
    /// Starts on 127.0.0.1 with a free port, on the current tokio runtime.
    pub async fn start(config: SimConfig) -> std::io::Result<Sim> {
        Sim::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts on `addr`.
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> std::io::Result<Sim> {
        let state: Shared = Arc::new(Mutex::new(State {
            config,
            clock_skew_secs: 0,
            ledger: Vec::new(),
            calls: Vec::new(),
            faults: VecDeque::new(),
            held: HashMap::new(),
            issued_count: HashMap::new(),
            recent_calls: HashMap::new(),
            next_number: 1_000_000_001,
        }));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let router = axum::Router::new()
            .route(
                "/router/rest",
                axum::routing::get(top::handle).post(top::handle),
            )
            .route("/_sim/ledger", axum::routing::get(admin_ledger))
            .route("/_sim/calls", axum::routing::get(admin_calls))
            .route("/_sim/fault", axum::routing::post(admin_fault))
            .with_state(state.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Sim {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The TOP gateway URL.
    pub fn top_gateway(&self) -> String {
        format!("{}/router/rest", self.base_url())
    }

    /// Every coupon issued, in order.
    pub fn ledger(&self) -> Vec<Issuance> {
        lock(&self.state).ledger.clone()
    }

    /// Issuances that repeat an idempotency id already issued (a platform-side duplicate).
    pub fn duplicate_issuances(&self) -> usize {
        let state = lock(&self.state);
        let mut seen = std::collections::HashSet::new();
        state
            .ledger
            .iter()
            .filter_map(|i| i.idempotency_id.as_ref().map(|id| (&i.platform, id)))
            .filter(|key| !seen.insert(*key))
            .count()
    }

    /// Every gateway call, in order.
    pub fn calls(&self) -> Vec<CallRecord> {
        lock(&self.state).calls.clone()
    }

    /// Moves the simulator's clock (to test timestamp checks).
    pub fn set_clock_skew(&self, skew_secs: i64) {
        lock(&self.state).clock_skew_secs = skew_secs;
    }

    /// Queues a fault.
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// Stops serving.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn admin_ledger(
    axum::extract::State(state): axum::extract::State<Shared>,
) -> axum::Json<Vec<Issuance>> {
    axum::Json(lock(&state).ledger.clone())
}

async fn admin_calls(
    axum::extract::State(state): axum::extract::State<Shared>,
) -> axum::Json<Vec<CallRecord>> {
    axum::Json(lock(&state).calls.clone())
}

async fn admin_fault(
    axum::extract::State(state): axum::extract::State<Shared>,
    axum::Json(fault): axum::Json<Fault>,
) -> &'static str {
    lock(&state).faults.push_back(fault);
    "ok"
}
