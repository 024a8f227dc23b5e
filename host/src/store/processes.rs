//! Processes: every host on the storage keeps a heartbeat row (who it is, where it runs, which
//! campaigns it works, when it last beat), so the others can tell a live process from a dead
//! one in seconds instead of waiting out its leases.
//!
//! A process whose heartbeat is older than a few intervals, or whose pid is gone from the host
//! it ran on, is *reaped* by whichever process notices first: it is marked ended and every lease
//! it held (pending sends, campaign batches) is given back at once, to be taken over and resumed
//! from the journal. A reap is conditional on the beat the reaper saw, so a process that beat
//! again in between (slow, not dead) is left alone.

use async_trait::async_trait;

use crate::error::Result;

/// What works every running campaign (`coupon-host worker`, `serve`), in [`Process::works`].
pub(crate) const WORKS_EVERY_CAMPAIGN: &str = "*";

/// One process's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    /// Its holder id in leases (`host:pid:random`).
    pub(crate) holder: String,
    /// The host it runs on.
    pub(crate) host: String,
    /// Its pid there.
    pub(crate) pid: u32,
    /// The campaigns it works: [`WORKS_EVERY_CAMPAIGN`], or their ids, one per line.
    pub(crate) works: String,
    /// Its last beat (unix ms).
    pub(crate) beat_ms: i64,
}

impl Process {
    /// Whether it works campaign `id`.
    pub(crate) fn works_on(&self, id: &str) -> bool {
        self.works == WORKS_EVERY_CAMPAIGN || self.works.lines().any(|w| w == id)
    }
}

/// What a reap gave back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Reaped {
    /// Campaign batches it had leased, queued again.
    pub(crate) batches: u64,
    /// Pending sends it held, free to be taken over.
    pub(crate) sends: u64,
}

/// The processes' heartbeats.
#[async_trait]
pub(crate) trait Processes: Send + Sync {
    /// Records that `process` is alive as of `process.beat_ms` (its row made, or updated with
    /// what it works now). Rows of processes ended more than a day ago are dropped.
    async fn process_beat(&self, process: &Process) -> Result<()>;

    /// The processes not known to have ended, with their last beat.
    async fn processes(&self) -> Result<Vec<Process>>;

    /// Marks `holder` ended, if it has not beat since `beat_ms` (`None`: whatever its last beat,
    /// as a process does for itself on its way out), and gives back every lease it holds:
    /// its leased batches are queued again and its pending sends' leases expire at once.
    /// `None` when it beat since, or had ended already.
    async fn process_reap(&self, holder: &str, beat_ms: Option<i64>) -> Result<Option<Reaped>>;
}
