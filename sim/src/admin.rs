//! Admin endpoints under `/_sim/`, for users of the `coupon-sim` binary (in-process users call
//! [`crate::Sim`] instead).
//!
//! - `GET /_sim/ledger`: the issuances, JSON array of [`Issuance`].
//! - `GET /_sim/calls`: the gateway calls, JSON array of [`CallRecord`].
//! - `POST /_sim/fault`: queue a [`crate::Fault`] given as JSON.
//! - `POST /_sim/clock_skew`: `{"skew_secs": 660}` moves the simulator's clock.
//! - `POST /_sim/douyin/expire_tokens`: every Douyin token issued so far is past its lifetime.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use crate::state::{Shared, lock};
use crate::{CallRecord, Fault, Issuance};

pub(crate) async fn ledger(State(state): State<Shared>) -> Json<Vec<Issuance>> {
    Json(lock(&state).ledger.entries().to_vec())
}

pub(crate) async fn calls(State(state): State<Shared>) -> Json<Vec<CallRecord>> {
    Json(lock(&state).calls.clone())
}

pub(crate) async fn fault(State(state): State<Shared>, Json(fault): Json<Fault>) -> &'static str {
    lock(&state).inject(fault);
    "ok"
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClockSkew {
    skew_secs: i64,
}

pub(crate) async fn clock_skew(
    State(state): State<Shared>,
    Json(skew): Json<ClockSkew>,
) -> &'static str {
    lock(&state).clock_skew_secs = skew.skew_secs;
    "ok"
}

pub(crate) async fn expire_douyin_tokens(State(state): State<Shared>) -> &'static str {
    let mut state = lock(&state);
    let now = state.now();
    state.douyin.expire_tokens(now);
    "ok"
}
