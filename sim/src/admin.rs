//! Admin endpoints under `/_sim/`, for users of the `coupon-sim` binary (in-process users call
//! [`crate::Sim`] instead).
//!
//! - `GET /_sim/ledger`: the issuances, JSON array of [`Issuance`].
//! - `GET /_sim/calls`: the gateway calls, JSON array of [`CallRecord`].
//! - `POST /_sim/fault`: queue a [`crate::Fault`] given as JSON.
//! - `POST /_sim/clock_skew`: `{"skew_secs": 660}` moves the simulator's clock.
//! - `POST /_sim/douyin/expire_tokens`: every Douyin token issued so far is past its lifetime.
//! - `GET /_sim/stats`: [`SimStats`], counts of answers, token fetches, error codes.
//! - `GET /_sim/top/sessions`: every TOP session, JSON array of [`TopSession`].
//! - `POST /_sim/top/code`: `{"app_key":…,"seller":…,"redirect_uri":…}` (`redirect_uri`
//!   optional) mints an authorization code, answered `{"code":…}`; 404 naming an unknown app or
//!   seller.
//! - `POST /_sim/top/expire_session`, `POST /_sim/top/revoke_session`: `{"session":…}`; 404
//!   when no such session was issued.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::state::{Shared, lock};
use crate::{CallRecord, Fault, Issuance, SimStats, TopSession};

pub(crate) async fn ledger(State(state): State<Shared>) -> Json<Vec<Issuance>> {
    Json(lock(&state).ledger.entries().to_vec())
}

pub(crate) async fn calls(State(state): State<Shared>) -> Json<Vec<CallRecord>> {
    Json(lock(&state).calls().to_vec())
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

pub(crate) async fn stats(State(state): State<Shared>) -> Json<SimStats> {
    Json(lock(&state).stats())
}

pub(crate) async fn top_sessions(State(state): State<Shared>) -> Json<Vec<TopSession>> {
    Json(lock(&state).top_sessions())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MintCode {
    app_key: String,
    seller: String,
    #[serde(default)]
    redirect_uri: Option<String>,
}

pub(crate) async fn top_code(State(state): State<Shared>, Json(mint): Json<MintCode>) -> Response {
    let minted =
        lock(&state).mint_top_code(&mint.app_key, &mint.seller, mint.redirect_uri.as_deref());
    match minted {
        Ok(code) => Json(json!({ "code": code })).into_response(),
        Err(why) => (StatusCode::NOT_FOUND, why).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionRef {
    session: String,
}

fn found(known: bool) -> Response {
    if known {
        "ok".into_response()
    } else {
        (StatusCode::NOT_FOUND, "no such session was issued").into_response()
    }
}

pub(crate) async fn expire_top_session(
    State(state): State<Shared>,
    Json(session): Json<SessionRef>,
) -> Response {
    found(lock(&state).expire_top_session(&session.session))
}

pub(crate) async fn revoke_top_session(
    State(state): State<Shared>,
    Json(session): Json<SessionRef>,
) -> Response {
    found(lock(&state).revoke_top_session(&session.session))
}
