//! `kv`: a namespace per (plugin, account) in the host's storage, bounded by a quota.
//!
//! One adapter call may make at most [`MAX_OPS`] kv operations: storage is shared by every
//! plugin, so a flood from one guest would slow the others.

use crate::runtime::bindings::latest::coupon::adapter::kv::{self, KvError};
use crate::runtime::caps::HostState;
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
            .storage
            .kv_get(&self.scope, &key)
            .await
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
            .storage
            .kv_set(&self.scope, &key, &value, ttl_ms, &plugin.kv_quota)
            .await
            .map_err(convert))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), KvError>> {
        if let Err(e) = self.kv_op() {
            return Ok(Err(e));
        }
        Ok(self
            .plugin
            .storage
            .kv_delete(&self.scope, &key)
            .await
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
            .storage
            .kv_increment(&self.scope, &key, delta, &plugin.kv_quota)
            .await
            .map_err(convert))
    }
}
