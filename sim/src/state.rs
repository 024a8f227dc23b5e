//! Everything the simulator remembers, behind one mutex.
//!
//! One lock for all of it keeps each call atomic (check, rate count, issue, record) without any
//! ordering rules between locks; the simulator serves tests, not throughput.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{CallRecord, Fault, Issuance, SimConfig, TopApp, alsc, douyin, taobao, tmall};

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
    pub(crate) calls: Vec<CallRecord>,
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
        Ok(State {
            top_apps: config.top_apps,
            qps_per_app: config.qps_per_app,
            taobao: taobao::Shop::new(config.taobao)?,
            tmall: tmall::Store::new(config.tmall)?,
            alsc: alsc::Crm::new(config.alsc)?,
            douyin: douyin::Platform::new(config.douyin)?,
            clock_skew_secs: 0,
            ledger: Ledger::default(),
            calls: Vec::new(),
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

impl State {
    /// With chaos on, a random matching fault with the configured probability.
    fn chaos_fault(&mut self, api: &str) -> Option<Fault> {
        let (rate, faults) = self.chaos.as_ref()?;
        if api == "client_token" || rand::random::<f64>() >= *rate {
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
