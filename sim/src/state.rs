//! Everything the simulator remembers, behind one mutex.
//!
//! One lock for all of it keeps each call atomic (check, rate count, issue, record) without any
//! ordering rules between locks; the simulator serves tests, not throughput.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::{CallRecord, Fault, Issuance, SimConfig, TopApp, taobao};

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
    pub(crate) clock_skew_secs: i64,
    pub(crate) ledger: Vec<Issuance>,
    pub(crate) calls: Vec<CallRecord>,
    faults: VecDeque<Fault>,
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
            clock_skew_secs: 0,
            ledger: Vec::new(),
            calls: Vec::new(),
            faults: VecDeque::new(),
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
        let index = self
            .faults
            .iter()
            .position(|fault| fault_api(fault).is_none_or(|wanted| wanted == api))?;
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
}
