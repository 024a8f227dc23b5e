//! Everything the simulator remembers, behind one mutex.
//!
//! One lock for all of it keeps each call atomic (check, rate count, issue, record) without any
//! ordering rules between locks; the simulator serves tests, not throughput.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::top::sellers::Sellers;
use crate::{
    CallRecord, Fault, Issuance, SimConfig, SimStats, TopApp, TopSession, alsc, douyin, taobao,
    tmall,
};

/// The routes that hand out credentials. Chaos leaves them alone: a test of a host's sends
/// should not fail at getting a token.
pub(crate) const TOKEN_APIS: [&str; 3] = [
    douyin::CLIENT_TOKEN,
    douyin::STABLE_CLIENT_TOKEN,
    crate::top::oauth::API,
];

/// What [`State::answers`] counts a successful call under.
pub(crate) const OK: &str = "ok";

/// The state shared by the server tasks and the [`crate::Sim`] handle.
pub(crate) type Shared = Arc<Mutex<State>>;

/// Locks the state. A handler that panicked while holding the lock poisons it; the simulator
/// carries on with the state as the panic left it rather than failing every later call.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) struct State {
    /// TOP applications, by the gateway's lookup order.
    pub(crate) top_apps: Vec<TopApp>,
    /// The TOP sellers, their sessions, refresh tokens and authorization codes.
    pub(crate) sellers: Sellers,
    pub(crate) qps_per_app: Option<u32>,
    /// The Taobao shop: coupons, stock, what each buyer holds.
    pub(crate) taobao: taobao::Shop,
    /// The Tmall new-retail coupons, their instances and the `out_id`s used.
    pub(crate) tmall: tmall::Store,
    /// The local-services CRM: vouchers, what each customer holds, the `request_id`s used.
    pub(crate) alsc: alsc::Crm,
    /// The Douyin open platform: apps, tokens, activities, coupons, rate windows.
    pub(crate) douyin: douyin::Platform,
    pub(crate) clock_skew_secs: i64,
    pub(crate) ledger: Ledger,
    calls: Vec<CallRecord>,
    /// Calls per API and outcome ([`OK`] or the recorded error code), kept as calls are
    /// recorded so that counting never walks the call log.
    answers: BTreeMap<String, BTreeMap<String, usize>>,
    faults: VecDeque<Fault>,
    /// Random faults: (probability per call, the faults to draw from).
    pub(crate) chaos: Option<(f64, Vec<Fault>)>,
    /// Admitted call times per app key, for the QPS limit (a sliding one-second window).
    pub(crate) rate_windows: HashMap<String, VecDeque<Instant>>,
}

impl State {
    /// The state at start; an inconsistent seed is an error that names the field.
    pub(crate) fn new(config: SimConfig) -> Result<State, String> {
        for (index, app) in config.top_apps.iter().enumerate() {
            if config.top_apps[..index]
                .iter()
                .any(|other| other.app_key == app.app_key)
            {
                return Err(format!(
                    "top_apps: app_key {:?} is listed twice",
                    app.app_key
                ));
            }
        }
        let sellers = Sellers::new(&config.top_apps, config.top_sellers, chrono::Utc::now())?;
        Ok(State {
            taobao: taobao::Shop::new(config.taobao, &sellers)?,
            tmall: tmall::Store::new(config.tmall, &sellers)?,
            alsc: alsc::Crm::new(config.alsc, &sellers)?,
            top_apps: config.top_apps,
            sellers,
            qps_per_app: config.qps_per_app,
            douyin: douyin::Platform::new(config.douyin)?,
            clock_skew_secs: 0,
            ledger: Ledger::default(),
            calls: Vec::new(),
            answers: BTreeMap::new(),
            faults: VecDeque::new(),
            chaos: None,
            rate_windows: HashMap::new(),
        })
    }

    pub(crate) fn into_shared(self) -> Shared {
        Arc::new(Mutex::new(self))
    }

    /// The simulator's "now": the real clock moved by the configured skew.
    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + chrono::TimeDelta::seconds(self.clock_skew_secs)
    }

    /// Appends a call to the log and counts it.
    pub(crate) fn record_call(&mut self, record: CallRecord) {
        let outcome = record.error_code.as_deref().unwrap_or(OK);
        *self
            .answers
            .entry(record.api.clone())
            .or_default()
            .entry(outcome.to_owned())
            .or_default() += 1;
        self.calls.push(record);
    }

    /// Every call so far, in order.
    pub(crate) fn calls(&self) -> &[CallRecord] {
        &self.calls
    }

    pub(crate) fn inject(&mut self, fault: Fault) {
        if fault_times(&fault) > 0 {
            self.faults.push_back(fault);
        }
    }

    /// Takes the first queued fault that matches `api`, counting it down.
    pub(crate) fn take_fault(&mut self, api: &str) -> Option<Fault> {
        let Some(index) = self
            .faults
            .iter()
            .position(|fault| fault_api(fault).is_none_or(|wanted| wanted == api))
        else {
            return self.chaos_fault(api);
        };
        let fault = &mut self.faults[index];
        let times = fault_times_mut(fault);
        *times -= 1;
        if *times == 0 {
            self.faults.remove(index)
        } else {
            Some(fault.clone())
        }
    }
}

/// Error codes that say "too frequent": TOP's App Call Limited, Douyin's 尝试过于频繁 and its
/// generic 请求频率过高.
const TOO_FREQUENT: [&str; 3] = ["7", "29005012", "28003018"];

/// The admin hooks, shared by [`crate::Sim`] and the `/_sim/` routes.
impl State {
    /// Counts over the calls so far.
    pub(crate) fn stats(&self) -> SimStats {
        SimStats {
            calls: self.calls.len(),
            answers: self.answers.clone(),
            token_fetches: self.token_fetches(),
            error_counts: self.error_counts(),
            too_frequent: self.too_frequent(),
            issued: self.ledger.entries().len(),
            duplicate_issuances: self.ledger.duplicates(),
        }
    }

    /// How many calls of `api` were recorded with `outcome`.
    fn count(&self, api: &str, outcome: &str) -> usize {
        self.answers
            .get(api)
            .and_then(|outcomes| outcomes.get(outcome))
            .copied()
            .unwrap_or(0)
    }

    /// Successful answers per token endpoint, every one listed.
    pub(crate) fn token_fetches(&self) -> BTreeMap<String, usize> {
        TOKEN_APIS
            .iter()
            .map(|api| ((*api).to_owned(), self.count(api, OK)))
            .collect()
    }

    /// Failed calls per error code, over every API.
    pub(crate) fn error_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for outcomes in self.answers.values() {
            for (outcome, n) in outcomes {
                if outcome != OK {
                    *counts.entry(outcome.clone()).or_default() += n;
                }
            }
        }
        counts
    }

    /// Answers that said "too frequent", over every API.
    pub(crate) fn too_frequent(&self) -> usize {
        self.answers
            .values()
            .flat_map(|outcomes| TOO_FREQUENT.iter().filter_map(|code| outcomes.get(*code)))
            .sum()
    }

    /// Mints an authorization code of `seller` (a nick) for `app_key`, bound to `redirect_uri`
    /// or the app's registered callback.
    pub(crate) fn mint_top_code(
        &mut self,
        app_key: &str,
        seller: &str,
        redirect_uri: Option<&str>,
    ) -> Result<String, String> {
        let now = self.now();
        let app = self
            .top_apps
            .iter()
            .find(|app| app.app_key == app_key)
            .ok_or_else(|| format!("app_key {app_key:?} is not a TOP app"))?;
        let seller = self
            .sellers
            .find(seller)
            .ok_or_else(|| format!("seller {seller:?} is not a TOP seller"))?;
        Ok(self.sellers.mint_code(app, seller, redirect_uri, now))
    }

    /// Puts a session past its expiry now; `false` when it was never issued.
    pub(crate) fn expire_top_session(&mut self, session: &str) -> bool {
        let now = self.now();
        self.sellers.expire(session, now)
    }

    /// Revokes a session and its refresh token; `false` when it was never issued.
    pub(crate) fn revoke_top_session(&mut self, session: &str) -> bool {
        self.sellers.revoke(session)
    }

    /// Every TOP session ever issued, oldest first, with its state now.
    pub(crate) fn top_sessions(&self) -> Vec<TopSession> {
        self.sellers.list(self.now())
    }

    pub(crate) fn top_refresh_tokens(&self) -> Vec<String> {
        self.sellers.issued_refresh_tokens()
    }
}

impl State {
    /// With chaos on, a random matching fault with the configured probability.
    fn chaos_fault(&mut self, api: &str) -> Option<Fault> {
        let (rate, faults) = self.chaos.as_ref()?;
        if TOKEN_APIS.contains(&api) || rand::random::<f64>() >= *rate {
            return None;
        }
        let matching: Vec<&Fault> = faults
            .iter()
            .filter(|fault| fault_api(fault).is_none_or(|wanted| wanted == api))
            .collect();
        if matching.is_empty() {
            return None;
        }
        Some(matching[rand::random_range(0..matching.len())].clone())
    }
}

/// Every coupon issued, with the call that issued it.
#[derive(Default)]
pub(crate) struct Ledger {
    entries: Vec<Issuance>,
    /// For each entry, the number of the call that issued it. An alsc send issues `voucher_num`
    /// vouchers under one `request_id`; knowing they came from one call keeps them from counting
    /// as duplicates of each other.
    calls: Vec<u64>,
    next_call: u64,
}

impl Ledger {
    /// Records what one call issued (possibly nothing).
    pub(crate) fn record(&mut self, issued: impl IntoIterator<Item = Issuance>) {
        let call = self.next_call;
        self.next_call += 1;
        for issuance in issued {
            self.entries.push(issuance);
            self.calls.push(call);
        }
    }

    pub(crate) fn entries(&self) -> &[Issuance] {
        &self.entries
    }

    /// Entries whose (platform, idempotency id) a different, earlier call already issued under.
    pub(crate) fn duplicates(&self) -> usize {
        let mut first_call = HashMap::new();
        self.entries
            .iter()
            .zip(&self.calls)
            .filter_map(|(issuance, call)| {
                let key = (
                    issuance.platform.as_str(),
                    issuance.idempotency_id.as_deref()?,
                );
                Some(*first_call.entry(key).or_insert(*call) != *call)
            })
            .filter(|duplicate| *duplicate)
            .count()
    }
}

/// Admits a call into a sliding one-second window of at most `limit` admitted calls; `false`
/// when the window is full. Only admitted calls count, so a client that backs off for a second
/// gets through again.
pub(crate) fn admit(window: &mut VecDeque<Instant>, limit: u32) -> bool {
    let now = Instant::now();
    while window
        .front()
        .is_some_and(|admitted| now.duration_since(*admitted) >= Duration::from_secs(1))
    {
        window.pop_front();
    }
    if window.len() >= limit as usize {
        return false;
    }
    window.push_back(now);
    true
}

fn fault_api(fault: &Fault) -> Option<&str> {
    match fault {
        Fault::Status { api, .. }
        | Fault::Delay { api, .. }
        | Fault::TopError { api, .. }
        | Fault::Body { api, .. }
        | Fault::ResetConnection { api, .. } => api.as_deref(),
    }
}

fn fault_times(fault: &Fault) -> u32 {
    match fault {
        Fault::Status { times, .. }
        | Fault::Delay { times, .. }
        | Fault::TopError { times, .. }
        | Fault::Body { times, .. }
        | Fault::ResetConnection { times, .. } => *times,
    }
}

fn fault_times_mut(fault: &mut Fault) -> &mut u32 {
    match fault {
        Fault::Status { times, .. }
        | Fault::Delay { times, .. }
        | Fault::TopError { times, .. }
        | Fault::Body { times, .. }
        | Fault::ResetConnection { times, .. } => times,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(api: Option<&str>, times: u32) -> Fault {
        Fault::Status {
            api: api.map(str::to_owned),
            status: 502,
            times,
        }
    }

    #[test]
    fn faults_match_by_api_and_count_down() {
        let mut state = State::new(SimConfig::demo()).unwrap();
        state.inject(status(Some("a"), 2));
        state.inject(status(None, 1));
        state.inject(status(None, 0));
        assert_eq!(state.take_fault("b"), Some(status(None, 0)));
        assert_eq!(state.take_fault("b"), None);
        assert_eq!(state.take_fault("a"), Some(status(Some("a"), 1)));
        assert_eq!(state.take_fault("a"), Some(status(Some("a"), 0)));
        assert_eq!(state.take_fault("a"), None);
    }

    fn issued(platform: &str, id: Option<&str>) -> Issuance {
        Issuance {
            platform: platform.into(),
            coupon: "c".into(),
            recipient: "r".into(),
            instance_id: "i".into(),
            idempotency_id: id.map(str::to_owned),
        }
    }

    #[test]
    fn duplicates_are_repeats_of_an_id_by_a_later_call() {
        let mut ledger = Ledger::default();
        // One call issuing three under one id (alsc voucher_num 3): no duplicate.
        ledger.record(vec![issued("alsc", Some("r1")); 3]);
        ledger.record([issued("douyin", Some("r1")), issued("taobao", None)]);
        ledger.record([]);
        assert_eq!(ledger.duplicates(), 0);
        ledger.record([issued("alsc", Some("r1")), issued("taobao", None)]);
        assert_eq!(ledger.duplicates(), 1);
        assert_eq!(ledger.entries().len(), 7);
    }
}
