//! `kv`: a per-plugin namespace in the host's store, bounded by a quota.
//!
//! One adapter call may make at most [`MAX_OPS`] kv operations: every one takes the store's lock,
//! which every plugin shares, so a flood from one guest would slow the others.

use crate::caps::HostState;
use crate::runtime::bindings::latest::coupon::adapter::kv::{self, KvError};
use crate::store;

fn convert(error: store::KvError) -> KvError {
    match error {
        store::KvError::QuotaExceeded => KvError::QuotaExceeded,
        store::KvError::TooLarge => KvError::TooLarge,
        store::KvError::NotANumber => KvError::NotANumber,
        store::KvError::Other(message) => KvError::Other(message),
    }
}

/// Most kv operations one adapter call may make.
pub(crate) const MAX_OPS: u32 = 1000;

impl HostState {
    /// Counts one kv operation, refusing it past [`MAX_OPS`].
    fn kv_op(&mut self) -> Result<(), KvError> {
        self.kv_ops = self.kv_ops.saturating_add(1);
        if self.kv_ops > MAX_OPS {
            return Err(KvError::Other(format!(
                "more than {MAX_OPS} kv operations in one call"
            )));
        }
        Ok(())
    }
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, KvError>> {
        if let Err(e) = self.kv_op() {
            return Ok(Err(e));
        }
        Ok(self
            .plugin
            .store
            .kv_get(&self.plugin.name, &key)
            .map_err(convert))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), KvError>> {
        if let Err(e) = self.kv_op() {
            return Ok(Err(e));
        }
        let plugin = &self.plugin;
        Ok(plugin
            .store
            .kv_set(&plugin.name, &key, &value, ttl_ms, &plugin.kv_quota)
            .map_err(convert))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), KvError>> {
        if let Err(e) = self.kv_op() {
            return Ok(Err(e));
        }
        Ok(self
            .plugin
            .store
            .kv_delete(&self.plugin.name, &key)
            .map_err(convert))
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, KvError>> {
        if let Err(e) = self.kv_op() {
            return Ok(Err(e));
        }
        let plugin = &self.plugin;
        Ok(plugin
            .store
            .kv_increment(&plugin.name, &key, delta, &plugin.kv_quota)
            .map_err(convert))
    }
}
