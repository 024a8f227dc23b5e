//! `kv`: a per-plugin namespace in the host's store, bounded by a quota.

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

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, KvError>> {
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
        let plugin = &self.plugin;
        Ok(plugin
            .store
            .kv_set(&plugin.name, &key, &value, ttl_ms, &plugin.kv_quota)
            .map_err(convert))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), KvError>> {
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
        let plugin = &self.plugin;
        Ok(plugin
            .store
            .kv_increment(&plugin.name, &key, delta, &plugin.kv_quota)
            .map_err(convert))
    }
}
