//! This process's heartbeat in the storage, and the reaping of dead processes' work.
//!
//! Every host beats every [`BEAT_EVERY`] (`store/processes.rs`), saying which campaigns it
//! works. On each beat it also looks at the others: one whose last beat is older than
//! [`DEAD_AFTER`], or that ran on this machine under a pid that is gone, is dead; its leases on
//! sends and campaign batches are given back at once (and that is logged, once, by whichever
//! process reaped it), so the batches it held are claimed again within a worker's poll instead
//! of after `lease_ms`. A host restarted on the same machine so takes its predecessor's work
//! over as it starts.
//!
//! A campaign's status says `running` only while a live process works it ([`Heartbeat::works`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::error::Result;
use crate::store::processes::WORKS_EVERY_CAMPAIGN;
use crate::store::{Process, Storage, now_ms};

/// How often a process beats.
pub(crate) const BEAT_EVERY: Duration = Duration::from_secs(1);

/// A process that has not beat for this long is dead (several beats missed: a process busy
/// for a moment, or a storage slow for a moment, is not).
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(8);

/// This process's heartbeat.
pub(crate) struct Heartbeat {
    storage: Storage,
    holder: String,
    host: String,
    pid: u32,
    /// What it works: campaign ids, or [`WORKS_EVERY_CAMPAIGN`], each with how many runs.
    works: Mutex<BTreeMap<String, usize>>,
    /// Beats at once (what it works changed).
    wake: tokio::sync::Notify,
    ended: std::sync::atomic::AtomicBool,
}

/// Says a campaign is worked here while it lives.
pub(crate) struct Working {
    heartbeat: Arc<Heartbeat>,
    what: String,
}

impl Drop for Working {
    fn drop(&mut self) {
        let mut works = self.heartbeat.lock_works();
        if let Some(n) = works.get_mut(&self.what) {
            *n -= 1;
            if *n == 0 {
                works.remove(&self.what);
            }
        }
        drop(works);
        self.heartbeat.wake.notify_one();
    }
}

impl Heartbeat {
    /// Beats once (and reaps the dead, this machine's first), then keeps beating until the
    /// heartbeat is dropped or [`Heartbeat::end`]ed.
    pub(crate) async fn start(storage: Storage, holder: &str) -> Result<Arc<Heartbeat>> {
        // `host:pid:random`, as `host.rs` makes it.
        let mut parts = holder.rsplitn(3, ':');
        let _random = parts.next();
        let pid = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let host = parts.next().unwrap_or_default().to_owned();
        let heartbeat = Arc::new(Heartbeat {
            storage,
            holder: holder.to_owned(),
            host,
            pid,
            works: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            ended: Default::default(),
        });
        heartbeat.beat().await?;
        heartbeat.reap().await;
        let weak = Arc::downgrade(&heartbeat);
        tokio::spawn(beat_until_dropped(weak));
        Ok(heartbeat)
    }

    /// Marks `what` (a campaign id, or [`WORKS_EVERY_CAMPAIGN`]) worked here until the guard
    /// is dropped, and beats at once to say so.
    pub(crate) fn works(self: &Arc<Self>, what: &str) -> Working {
        *self.lock_works().entry(what.to_owned()).or_default() += 1;
        self.wake.notify_one();
        Working {
            heartbeat: self.clone(),
            what: what.to_owned(),
        }
    }

    /// Works every running campaign ([`Heartbeat::works`]).
    pub(crate) fn works_every_campaign(self: &Arc<Self>) -> Working {
        self.works(WORKS_EVERY_CAMPAIGN)
    }

    /// Whether a live process (this one included) works campaign `id`.
    pub(crate) async fn is_worked(&self, id: &str) -> Result<bool> {
        let here = {
            let works = self.lock_works();
            works.contains_key(id) || works.contains_key(WORKS_EVERY_CAMPAIGN)
        };
        if here {
            return Ok(true);
        }
        let alive_since = now_ms() - DEAD_AFTER.as_millis() as i64;
        Ok(self
            .storage
            .processes()
            .await?
            .iter()
            .any(|p| p.beat_ms >= alive_since && p.works_on(id)))
    }

    /// Stops beating and marks this process ended, giving back whatever it still holds (for a
    /// process on its way out: the others need not wait to see it dead).
    pub(crate) async fn end(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
        if let Err(error) = self.storage.process_reap(&self.holder, None).await {
            tracing::warn!(error = %crate::error::full_message(&error), "cannot record this process's end");
        }
    }

    fn lock_works(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, usize>> {
        self.works.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn beat(&self) -> Result<()> {
        let works = self
            .lock_works()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n");
        let works = if works.lines().any(|w| w == WORKS_EVERY_CAMPAIGN) {
            WORKS_EVERY_CAMPAIGN.to_owned()
        } else {
            works
        };
        self.storage
            .process_beat(&Process {
                holder: self.holder.clone(),
                host: self.host.clone(),
                pid: self.pid,
                works,
                beat_ms: now_ms(),
            })
            .await
    }

    /// Reaps every other process that is dead: silent for [`DEAD_AFTER`], or gone from this
    /// machine.
    async fn reap(&self) {
        let processes = match self.storage.processes().await {
            Ok(processes) => processes,
            Err(error) => {
                tracing::warn!(error = %crate::error::full_message(&error), "cannot read the processes' heartbeats");
                return;
            }
        };
        let now = now_ms();
        for process in processes {
            if process.holder == self.holder {
                continue;
            }
            let silent_ms = now - process.beat_ms;
            let why = if self.gone_from_this_machine(&process) {
                format!("its pid {} is gone from this machine", process.pid)
            } else if silent_ms > DEAD_AFTER.as_millis() as i64 {
                format!("no heartbeat for {silent_ms} ms")
            } else {
                continue;
            };
            match self
                .storage
                .process_reap(&process.holder, Some(process.beat_ms))
                .await
            {
                Ok(Some(reaped)) if reaped.batches + reaped.sends > 0 => tracing::warn!(
                    process = %process.holder,
                    batches = reaped.batches,
                    sends = reaped.sends,
                    "took over a dead process's work ({why}): its leases are given back"
                ),
                // It held nothing (a command that ended without saying so).
                Ok(Some(_)) => {
                    tracing::debug!(process = %process.holder, "a process ended ({why})");
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(process = %process.holder, error = %crate::error::full_message(&error), "cannot reap a dead process");
                }
            }
        }
    }

    /// A process of this machine whose pid no longer runs (where `/proc` tells).
    fn gone_from_this_machine(&self, process: &Process) -> bool {
        process.host == self.host
            && process.pid != self.pid
            && process.pid != 0
            && std::path::Path::new("/proc/self").exists()
            && !std::path::Path::new(&format!("/proc/{}", process.pid)).exists()
    }
}

/// Beats every [`BEAT_EVERY`] (or at once when woken) and reaps the dead, until the heartbeat
/// is gone or ended.
async fn beat_until_dropped(heartbeat: Weak<Heartbeat>) {
    loop {
        {
            let Some(heartbeat) = heartbeat.upgrade() else {
                return;
            };
            let woken = heartbeat.wake.notified();
            let _ = tokio::time::timeout(BEAT_EVERY, woken).await;
            if heartbeat.ended.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            if let Err(error) = heartbeat.beat().await {
                tracing::warn!(error = %crate::error::full_message(&error), "cannot record the heartbeat");
            }
            heartbeat.reap().await;
        }
    }
}
