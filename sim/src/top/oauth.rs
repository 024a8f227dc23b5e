//! TOP's OAuth 2.0 token endpoint, `POST /token` (`https://oauth.taobao.com/token` on the real
//! platform; ACCOUNTS.md, docs/PLATFORMS.md "TOP OAuth").
//!
//! A form (in the body or the query string) with `client_id` (the app key), `client_secret`
//! (the app secret) and either `grant_type=authorization_code`, `code`, `redirect_uri`, or
//! `grant_type=refresh_token`, `refresh_token`. A success is HTTP 200 with the token JSON; a
//! refusal is HTTP 400 with `{"error":…,"error_description":…}`:
//!
//! | check, first failure wins | error | error_description |
//! |---|---|---|
//! | `client_id`, `client_secret` or `grant_type` missing | `invalid_request` | `<name> is missing` |
//! | `client_id` not an app | `invalid_client` | `client_id is invalidate` |
//! | `client_secret` not the app's | `invalid_client` | `client_secret is invalidate` |
//! | `grant_type` neither of the two | `unsupported_grant_type` | `grant_type is invalidate` |
//! | `code` / `refresh_token` missing | `invalid_request` | `<name> is missing` |
//! | code unknown, used, of another app, or older than 30 minutes | `invalid_grant` | `authorize code expire` |
//! | `redirect_uri` not the one the code was minted for | `invalid_client` | `redirect_uri is invalidate` |
//! | refresh token unknown, used, revoked, expired, of another app, or the app cannot refresh | `invalid_grant` | `refresh_token is invalid or expired` |

use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::sellers::GrantError;
use super::{MAX_BODY_BYTES, Params, merge_params, non_blank};
use crate::CallRecord;
use crate::dispatch::{self, Endpoint, InjectedError, Outcome};
use crate::server::ResetHandle;
use crate::state::{Shared, State, lock};

/// The name the endpoint's calls are recorded, counted and faulted under.
pub(crate) const API: &str = "oauth_token";

/// Form fields that are credentials: the call record shows them as `***`.
const SECRET_FIELDS: [&str; 3] = ["client_secret", "code", "refresh_token"];

const JSON_CONTENT_TYPE: &str = "application/json;charset=UTF-8";

/// A refused token request.
struct Refusal {
    error: String,
    description: String,
    detail: Option<String>,
}

impl Refusal {
    fn new(error: &str, description: impl Into<String>) -> Refusal {
        Refusal {
            error: error.to_owned(),
            description: description.into(),
            detail: None,
        }
    }

    fn missing(name: &str) -> Refusal {
        Refusal::new("invalid_request", format!("{name} is missing"))
    }

    fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
}

impl From<GrantError> for Refusal {
    fn from(error: GrantError) -> Refusal {
        Refusal {
            error: error.error.to_owned(),
            description: error.description.to_owned(),
            detail: Some(error.detail),
        }
    }
}

/// Checks the request and exchanges the code or refresh token. The answer, and the nick of the
/// seller it authorizes.
fn token_answer(state: &mut State, params: &Params) -> Result<(Value, String), Refusal> {
    let client_id = non_blank(params, "client_id").ok_or_else(|| Refusal::missing("client_id"))?;
    let client_secret =
        non_blank(params, "client_secret").ok_or_else(|| Refusal::missing("client_secret"))?;
    let grant_type =
        non_blank(params, "grant_type").ok_or_else(|| Refusal::missing("grant_type"))?;
    let now = state.now();
    let State {
        top_apps, sellers, ..
    } = state;
    let Some(app) = top_apps.iter().find(|app| app.app_key == client_id) else {
        let mut refusal = Refusal::new("invalid_client", "client_id is invalidate");
        refusal.detail = Some(format!("app key {client_id:?} is not a TOP app"));
        return Err(refusal);
    };
    if app.app_secret != client_secret {
        let mut refusal = Refusal::new("invalid_client", "client_secret is invalidate");
        refusal.detail = Some(format!("client_secret is not app {client_id:?}'s"));
        return Err(refusal);
    }
    let issued = match grant_type {
        "authorization_code" => {
            let code = non_blank(params, "code").ok_or_else(|| Refusal::missing("code"))?;
            let redirect_uri = non_blank(params, "redirect_uri");
            sellers.exchange_code(app, code, redirect_uri, now)?
        }
        "refresh_token" => {
            let refresh_token = non_blank(params, "refresh_token")
                .ok_or_else(|| Refusal::missing("refresh_token"))?;
            sellers.refresh(app, refresh_token, now)?
        }
        other => {
            let mut refusal = Refusal::new("unsupported_grant_type", "grant_type is invalidate");
            refusal.detail = Some(format!("grant_type {other:?}"));
            return Err(refusal);
        }
    };
    let seller = sellers.seller(issued.seller);
    let expires_in = app.session_ttl_secs;
    let answer = json!({
        "access_token": issued.session,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": issued.refresh_token,
        "re_expires_in": app.refresh_ttl_secs,
        "r1_expires_in": expires_in,
        "r2_expires_in": expires_in,
        "w1_expires_in": expires_in,
        "w2_expires_in": expires_in,
        "taobao_user_id": seller.user_id.to_string(),
        "taobao_user_nick": seller.nick,
        // The seller authorized with its main account; a sub-account would be named here.
        "sub_taobao_user_id": "",
        "sub_taobao_user_nick": "",
    });
    Ok((answer, seller.nick.clone()))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, JSON_CONTENT_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// A token request as the fault dispatcher sees it.
struct TokenCall {
    params: Params,
}

impl Endpoint for TokenCall {
    fn api(&self) -> &str {
        API
    }

    fn answer(&self, shared: &Shared) -> Response {
        let mut state = lock(shared);
        match token_answer(&mut state, &self.params) {
            Ok((answer, seller)) => {
                let outcome = Outcome {
                    ok: true,
                    seller: Some(seller),
                    ..Outcome::default()
                };
                self.record(&mut state, outcome);
                json_response(StatusCode::OK, &answer)
            }
            Err(refusal) => {
                let mut outcome = Outcome::failed(refusal.error.clone());
                outcome.detail = refusal.detail.clone();
                self.record(&mut state, outcome);
                json_response(StatusCode::BAD_REQUEST, &refusal.body())
            }
        }
    }

    fn record(&self, state: &mut State, outcome: Outcome) {
        let mut logged = self.params.clone();
        for field in SECRET_FIELDS {
            if let Some(value) = logged.get_mut(field) {
                "***".clone_into(value);
            }
        }
        state.record_call(CallRecord {
            api: API.to_owned(),
            ok: outcome.ok,
            error_code: outcome.error_code,
            sub_code: None,
            sign_method: String::new(),
            request_id: None,
            params: logged,
            detail: outcome.detail,
            seller: outcome.seller,
        });
    }

    /// An OAuth error: `error` is the injected `sub_code` (or the code as text), and
    /// `error_description` its `msg`.
    fn injected_error(&self, state: &mut State, error: InjectedError) -> Response {
        let refusal = Refusal {
            error: error.sub_code.unwrap_or_else(|| error.code.to_string()),
            description: error.msg,
            detail: Some("injected".into()),
        };
        let mut outcome = Outcome::failed(refusal.error.clone());
        outcome.detail = refusal.detail.clone();
        self.record(state, outcome);
        json_response(StatusCode::BAD_REQUEST, &refusal.body())
    }

    fn content_type(&self) -> &'static str {
        JSON_CONTENT_TYPE
    }
}

/// `POST /token`.
pub(crate) async fn token(AxumState(shared): AxumState<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, format!("coupon-sim: {error}")).into_response();
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let params = merge_params(parts.uri.query(), content_type, &body);
    let reset = parts.extensions.get::<ResetHandle>();
    dispatch::serve(&shared, &TokenCall { params }, reset).await
}
