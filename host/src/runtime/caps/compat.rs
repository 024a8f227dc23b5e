//! The capabilities under their `coupon:adapter@0.1.0` names, for adapters built against 0.1.0.
//!
//! The interfaces are the same in both versions, but the component model names each with its
//! package version, and wasmtime's generated `add_to_linker` registers an interface under the
//! name of the version it was generated from: the latest implementation cannot be linked twice.
//! So each 0.1.0 import is its own trait, implemented here by converting to the latest types and
//! calling the one implementation (`caps/http.rs`, `kv.rs`, `log.rs`, `settings.rs`).

use crate::runtime::bindings::latest::coupon::adapter as new;
use crate::runtime::bindings::v0_1::coupon::adapter as old;
use crate::runtime::caps::HostState;

impl old::signed_http::Host for HostState {
    async fn send(
        &mut self,
        request: old::signed_http::Request,
    ) -> wasmtime::Result<Result<old::signed_http::Response, old::signed_http::HttpError>> {
        use new::signed_http::{HttpError as N, Method as NewMethod, Request};
        use old::signed_http::{HttpError as O, Method as OldMethod, Response};
        let request = Request {
            method: match request.method {
                OldMethod::Get => NewMethod::Get,
                OldMethod::Post => NewMethod::Post,
            },
            url: request.url,
            headers: request.headers,
            params: request.params,
            body: request.body,
        };
        let answer = new::signed_http::Host::send(self, request).await?;
        Ok(answer
            .map(|response| Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
            })
            .map_err(|error| match error {
                N::Denied(why) => O::Denied(why),
                N::Connect(why) => O::Connect(why),
                N::Timeout => O::Timeout,
                N::TooLarge => O::TooLarge,
                N::Unauthorized(why) => O::Unauthorized(why),
                N::Other(why) => O::Other(why),
            }))
    }
}

fn kv_error(error: new::kv::KvError) -> old::kv::KvError {
    use new::kv::KvError as N;
    use old::kv::KvError as O;
    match error {
        N::QuotaExceeded => O::QuotaExceeded,
        N::TooLarge => O::TooLarge,
        N::NotANumber => O::NotANumber,
        N::Other(why) => O::Other(why),
    }
}

impl old::kv::Host for HostState {
    async fn get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, old::kv::KvError>> {
        Ok(new::kv::Host::get(self, key).await?.map_err(kv_error))
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), old::kv::KvError>> {
        Ok(new::kv::Host::set(self, key, value, ttl_ms)
            .await?
            .map_err(kv_error))
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), old::kv::KvError>> {
        Ok(new::kv::Host::delete(self, key).await?.map_err(kv_error))
    }

    async fn increment(
        &mut self,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, old::kv::KvError>> {
        Ok(new::kv::Host::increment(self, key, delta)
            .await?
            .map_err(kv_error))
    }
}

impl old::log::Host for HostState {
    async fn log(&mut self, level: old::log::Level, message: String) -> wasmtime::Result<()> {
        use new::log::Level as N;
        use old::log::Level as O;
        let level = match level {
            O::Trace => N::Trace,
            O::Debug => N::Debug,
            O::Info => N::Info,
            O::Warn => N::Warn,
            O::Error => N::Error,
        };
        new::log::Host::log(self, level, message).await
    }
}

impl old::settings::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        new::settings::Host::get(self, key).await
    }
}
