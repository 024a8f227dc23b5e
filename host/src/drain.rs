//! Graceful shutdown of the library: count the calls in flight, refuse new ones once closed,
//! and let the closer wait until the count is zero.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;

use crate::error::{Error, Result};

/// Admits calls until closed; [`CallGate::close_and_wait`] returns when the last admitted call
/// has ended (finished, failed or been dropped).
#[derive(Default)]
pub(crate) struct CallGate {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// One admitted call; leaving is dropping it.
pub(crate) struct Call<'a>(&'a CallGate);

/// [`Call`] for a task that outlives the borrow (a campaign's batch).
pub(crate) struct OwnedCall(std::sync::Arc<CallGate>);

impl CallGate {
    /// Admits a call, or says the host is shutting down.
    pub(crate) fn enter(&self) -> Result<Call<'_>> {
        // Count first, then look: a closer that stored `closed` before our load sees our count
        // (both SeqCst), so no call slips past a shutdown that already waited for zero.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let call = Call(self);
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::ShuttingDown);
        }
        Ok(call)
    }

    /// [`CallGate::enter`], owning a share of the gate.
    pub(crate) fn enter_owned(self: &std::sync::Arc<Self>) -> Result<OwnedCall> {
        self.enter().map(|call| {
            // The count stays up: the owned call takes over the borrowed one's departure.
            std::mem::forget(call);
            OwnedCall(self.clone())
        })
    }

    fn leave(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Refuses new calls from now on, then waits for the admitted ones. Idempotent.
    pub(crate) async fn close_and_wait(&self) {
        self.closed.store(true, Ordering::SeqCst);
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            // Register before looking at the count so a notification between the two is kept.
            idle.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl Drop for OwnedCall {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn close_waits_for_admitted_calls_and_refuses_new_ones() {
        let gate = std::sync::Arc::new(CallGate::default());
        let call = gate.enter().unwrap();
        let closer = tokio::spawn({
            let gate = gate.clone();
            async move { gate.close_and_wait().await }
        });
        // The closer cannot finish while `call` lives; yield until it has at least closed.
        while !gate.is_closed() {
            tokio::task::yield_now().await;
        }
        assert!(matches!(gate.enter(), Err(Error::ShuttingDown)));
        assert!(!closer.is_finished());
        drop(call);
        closer.await.unwrap();
        // A refused call left no count behind.
        gate.close_and_wait().await;
    }
}
