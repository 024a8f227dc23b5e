//! The contract versions the host speaks, behind one enum: [`Adapter`] detects which version a
//! component exports and runs its operations in the host's own types. Adding a version is one
//! bindings module (`bindings.rs`), one arm here, one conversion (`convert.rs`) and one test
//! guest.

use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use super::bindings::{v0_1, v0_2};
use super::caps::HostState;
use super::{Answer, Op, one_line};

/// A component ready to instantiate, by the contract version it exports.
pub(crate) enum Adapter {
    V0_1(v0_1::PluginPre<HostState>),
    V0_2(v0_2::PluginPre<HostState>),
}

/// The exports of every version the host speaks, newest first.
pub(crate) const CONTRACTS: &[&str] = &[v0_2::EXPORT, v0_1::EXPORT];

impl Adapter {
    /// Finds the contract `component` exports, checks it imports only what `linker` provides,
    /// and prepares it for instantiation.
    pub(crate) fn new(
        engine: &Engine,
        linker: &Linker<HostState>,
        component: &Component,
    ) -> Result<Adapter, String> {
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        let not_an_adapter = |why: String| format!("it is not a coupon adapter: {why}");
        let pre = |component| {
            linker
                .instantiate_pre(component)
                .map_err(|e| not_an_adapter(one_line(&e)))
        };
        if exports.iter().any(|name| name == v0_2::EXPORT) {
            let pre =
                v0_2::PluginPre::new(pre(component)?).map_err(|e| not_an_adapter(one_line(&e)))?;
            return Ok(Adapter::V0_2(pre));
        }
        if exports.iter().any(|name| name == v0_1::EXPORT) {
            let pre =
                v0_1::PluginPre::new(pre(component)?).map_err(|e| not_an_adapter(one_line(&e)))?;
            return Ok(Adapter::V0_1(pre));
        }
        Err(not_an_adapter(format!(
            "it does not export {}",
            CONTRACTS.join(" or ")
        )))
    }

    /// The export of the contract version it speaks.
    pub(crate) fn contract(&self) -> &'static str {
        match self {
            Adapter::V0_1(_) => v0_1::EXPORT,
            Adapter::V0_2(_) => v0_2::EXPORT,
        }
    }

    /// Instantiates it in `store` (saying so in [`HostState::instantiated`]) and runs `op`.
    pub(crate) async fn run(
        &self,
        store: &mut Store<HostState>,
        op: Op,
    ) -> wasmtime::Result<Answer> {
        // The same calls for every version: only the generated types differ, and `convert.rs`
        // converts each version's.
        macro_rules! run {
            ($pre:expr) => {{
                let instance = $pre.instantiate_async(&mut *store).await?;
                store.data_mut().instantiated = true;
                let adapter = instance.coupon_adapter_adapter();
                Ok(match op {
                    Op::Describe => {
                        Answer::Describe(adapter.call_describe(&mut *store).await?.into())
                    }
                    Op::Send(call) => Answer::Send(
                        adapter
                            .call_send_coupon(&mut *store, &call.into())
                            .await?
                            .map(Into::into)
                            .map_err(Into::into),
                    ),
                    Op::Query(request) => Answer::Query(
                        adapter
                            .call_query_coupons(&mut *store, &(&request).into())
                            .await?
                            .map(|coupons| coupons.into_iter().map(Into::into).collect())
                            .map_err(Into::into),
                    ),
                })
            }};
        }
        match self {
            Adapter::V0_1(pre) => run!(pre),
            Adapter::V0_2(pre) => run!(pre),
        }
    }
}

/// An instance kept across calls: benchmarks only (the host runs every call on a fresh one).
#[cfg(feature = "bench")]
pub(crate) enum Kept {
    V0_1(v0_1::Plugin),
    V0_2(v0_2::Plugin),
}

#[cfg(feature = "bench")]
impl Adapter {
    /// A live instance in `store`.
    pub(crate) async fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<Kept> {
        match self {
            Adapter::V0_1(pre) => Ok(Kept::V0_1(pre.instantiate_async(store).await?)),
            Adapter::V0_2(pre) => Ok(Kept::V0_2(pre.instantiate_async(store).await?)),
        }
    }
}

#[cfg(feature = "bench")]
impl Kept {
    pub(crate) async fn send(
        &self,
        store: &mut Store<HostState>,
        call: super::SendCall,
    ) -> wasmtime::Result<Result<super::SendAnswer, crate::types::AdapterError>> {
        match self {
            Kept::V0_1(plugin) => Ok(plugin
                .coupon_adapter_adapter()
                .call_send_coupon(store, &call.into())
                .await?
                .map(Into::into)
                .map_err(Into::into)),
            Kept::V0_2(plugin) => Ok(plugin
                .coupon_adapter_adapter()
                .call_send_coupon(store, &call.into())
                .await?
                .map(Into::into)
                .map_err(Into::into)),
        }
    }

    pub(crate) async fn query(
        &self,
        store: &mut Store<HostState>,
        request: &crate::types::QueryRequest,
    ) -> wasmtime::Result<Result<Vec<crate::types::Coupon>, crate::types::AdapterError>> {
        match self {
            Kept::V0_1(plugin) => Ok(plugin
                .coupon_adapter_adapter()
                .call_query_coupons(store, &request.into())
                .await?
                .map(|coupons| coupons.into_iter().map(Into::into).collect())
                .map_err(Into::into)),
            Kept::V0_2(plugin) => Ok(plugin
                .coupon_adapter_adapter()
                .call_query_coupons(store, &request.into())
                .await?
                .map(|coupons| coupons.into_iter().map(Into::into).collect())
                .map_err(Into::into)),
        }
    }
}
