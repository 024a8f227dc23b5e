//! Account management over HTTP, under the `accounts` scope: what `coupon-host accounts` does
//! on the command line, for an operator's tooling.
//!
//! - `GET /v1/plugins/{name}/accounts`: `{"accounts":[…]}`, as `accounts list --json`.
//! - `GET /v1/plugins/{name}/accounts/{account}`: one, as `accounts show --json`.
//! - `PUT /v1/plugins/{name}/accounts/{account}`: keeps the account (replacing one of that name
//!   whole), as `accounts add`; answers the account.
//! - `DELETE /v1/plugins/{name}/accounts/{account}`: forgets it (`204`).
//! - `POST /v1/plugins/{name}/accounts/{account}/authorize`: exchanges an OAuth code for its
//!   session, as `accounts authorize`; answers the account.
//!
//! Secrets come only in request bodies and never leave the host: no answer carries one (the
//! account says only whether it holds a session), and no error message quotes one — a secret
//! field of the wrong type is refused without its value, unlike serde's own messages. The
//! bodies are not `Debug`, so nothing can log them by accident.
//!
//! Statuses: an unknown plugin or account is `404` (`unknown-plugin`, `unknown-account`); a body
//! of the wrong shape `422 invalid-body`; an account the host refuses (a bad name, `default`, a
//! credential the plugin's scheme does not take, no master key) `422 invalid-request`. An OAuth
//! exchange the platform refuses — a used, expired or unknown code, or a scheme without OAuth —
//! is `422 authorization-refused`: the fault is in what the request carries, and sending it
//! again will not help. An OAuth endpoint that cannot be reached or answers nonsense is `502
//! adapter` (class `transient`), as on every other route.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::{ApiError, AppState, bad_path, parse, present_whole, read_body};
use crate::error::Error;
use crate::store::DEFAULT_ACCOUNT;
use crate::types::{AccountInfo, AccountSpec, ErrorClass};

/// `PUT /v1/plugins/{name}/accounts/{account}`: the account's credentials and settings. Not
/// `Debug`: it holds secrets.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    #[serde(default, deserialize_with = "session")]
    session: Option<String>,
    #[serde(default, deserialize_with = "client_key")]
    client_key: Option<String>,
    #[serde(default, deserialize_with = "client_secret")]
    client_secret: Option<String>,
    #[serde(default, deserialize_with = "settings")]
    settings: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "present_whole")]
    qps: Option<u32>,
}

/// `POST …/{account}/authorize`: the authorization code. Not `Debug`: the code is a credential
/// until it is used.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeBody {
    #[serde(deserialize_with = "code")]
    code: String,
}

fn session<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    secret(deserializer, "session").map(Some)
}

fn client_secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    secret(deserializer, "client_secret").map(Some)
}

fn code<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    secret(deserializer, "code")
}

/// A secret field: a string with a character other than white space. Anything else is refused
/// by its JSON type alone, never by its value, so the message cannot quote the secret (serde's
/// own message for `"session": 12345` would).
fn secret<'de, D: Deserializer<'de>>(deserializer: D, field: &str) -> Result<String, D::Error> {
    use serde::de::Error as _;
    match Value::deserialize(deserializer)? {
        Value::String(text) if !text.trim().is_empty() => Ok(text),
        Value::String(_) => Err(D::Error::custom(format!("{field} is blank"))),
        other => Err(D::Error::custom(format!(
            "{field} must be a string, not {}",
            json_type(&other)
        ))),
    }
}

/// Not a secret, but text when present: a blank client key is refused.
fn client_key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error as _;
    let text = String::deserialize(deserializer)?;
    if text.trim().is_empty() {
        return Err(D::Error::custom("client_key is blank"));
    }
    Ok(Some(text))
}

/// Settings, as `--setting KEY=VALUE` takes them: a key is never empty.
fn settings<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    use serde::de::Error as _;
    let settings = BTreeMap::<String, String>::deserialize(deserializer)?;
    if settings.contains_key("") {
        return Err(D::Error::custom("a setting's name is empty"));
    }
    Ok(settings)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn unknown_account(plugin: &str, account: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown-account",
        format!(
            "plugin {plugin:?} has no account {:?}",
            crate::text::prefix(account, 64)
        ),
    )
}

/// `GET /v1/plugins/{name}/accounts`.
pub(super) async fn list(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    let Path(plugin) = name.map_err(bad_path)?;
    state.known(&plugin)?;
    let accounts = state.host.account_list(&plugin).await?;
    Ok(Json(json!({ "accounts": accounts })))
}

/// The account named, from the plugin's list; `404 unknown-account` when there is none.
async fn find(state: &AppState, plugin: &str, account: &str) -> Result<AccountInfo, ApiError> {
    state
        .host
        .account_list(plugin)
        .await?
        .into_iter()
        .find(|info| info.name == account)
        .ok_or_else(|| unknown_account(plugin, account))
}

/// The plugin and account an account route names, the plugin loaded.
fn target(
    state: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(String, String), ApiError> {
    let Path((plugin, account)) = path.map_err(bad_path)?;
    state.known(&plugin)?;
    Ok((plugin, account))
}

/// [`target`], and the request's body.
async fn target_and_body<T: DeserializeOwned>(
    state: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<(String, String, T), ApiError> {
    let (plugin, account) = target(state, path)?;
    let body = parse(read_body(request, state).await?)?;
    Ok((plugin, account, body))
}

/// `GET /v1/plugins/{name}/accounts/{account}`.
pub(super) async fn show(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<AccountInfo>, ApiError> {
    let (plugin, account) = target(&state, path)?;
    Ok(Json(find(&state, &plugin, &account).await?))
}

/// `PUT /v1/plugins/{name}/accounts/{account}`.
pub(super) async fn put(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Json<AccountInfo>, ApiError> {
    let (plugin, account, body): (_, _, AccountBody) =
        target_and_body(&state, path, request).await?;
    let mut spec = AccountSpec::new(account);
    if let Some(session) = body.session {
        spec = spec.session(session);
    }
    match (body.client_key, body.client_secret) {
        (Some(key), Some(secret)) => spec = spec.client(key, secret),
        (None, None) => {}
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                "give client_key and client_secret together",
            ));
        }
    }
    spec.settings = body.settings;
    spec.qps = body.qps;
    Ok(Json(state.host.account_add(&plugin, spec).await?))
}

/// `DELETE /v1/plugins/{name}/accounts/{account}`: `204`. Only a kept account can be
/// forgotten; `default` (the config's) is refused by the host with its reason.
pub(super) async fn remove(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let (plugin, account) = target(&state, path)?;
    if account != DEFAULT_ACCOUNT {
        // The host calls an unknown account an invalid request; over HTTP it is a `404`.
        find(&state, &plugin, &account).await?;
    }
    state.host.account_remove(&plugin, &account).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/plugins/{name}/accounts/{account}/authorize`.
pub(super) async fn authorize(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Json<AccountInfo>, ApiError> {
    let (plugin, account, body): (_, _, AuthorizeBody) =
        target_and_body(&state, path, request).await?;
    let result = state
        .host
        .account_authorize(&plugin, &account, &body.code)
        .await;
    // The platform refused what the request carries (the code), or the plugin has no OAuth: the
    // client's to fix, not a failure of the platform behind the host (which stays `502`).
    let refused = matches!(
        &result,
        Err(Error::Adapter { error, .. }) if error.class == ErrorClass::Unauthorized
    );
    result.map(Json).map_err(|error| {
        let mut api = ApiError::from(error);
        if refused {
            api.status = StatusCode::UNPROCESSABLE_ENTITY;
            api = api.with("kind", "authorization-refused");
        }
        api
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    /// The status and message a body is refused with.
    fn refused<T: serde::de::DeserializeOwned>(body: &str) -> (u16, String) {
        match parse::<T>(Bytes::from(body.to_owned())) {
            Ok(_) => panic!("{body} was taken"),
            Err(error) => (
                error.status.as_u16(),
                error.body["message"].as_str().unwrap().to_owned(),
            ),
        }
    }

    #[test]
    fn a_secret_of_the_wrong_shape_is_refused_without_its_value() {
        for (body, field) in [
            (r#"{"session": 8675309}"#, "session"),
            (r#"{"session": true}"#, "session"),
            (r#"{"session": null}"#, "session"),
            (r#"{"session": "   "}"#, "session"),
            (
                r#"{"client_key": "k", "client_secret": 8675309}"#,
                "client_secret",
            ),
            (
                r#"{"client_key": "k", "client_secret": ["8675309"]}"#,
                "client_secret",
            ),
        ] {
            let (status, message) = refused::<AccountBody>(body);
            assert_eq!(status, 422, "{body}");
            assert!(message.contains(field), "{body}: {message}");
            assert!(!message.contains("8675309"), "{body}: {message}");
        }
        let (status, message) = refused::<AuthorizeBody>(r#"{"code": 8675309}"#);
        assert_eq!(status, 422);
        assert!(
            message.contains("code") && !message.contains("8675309"),
            "{message}"
        );
        let (_, message) = refused::<AuthorizeBody>("{}");
        assert!(message.contains("missing field `code`"), "{message}");
    }

    #[test]
    fn an_account_body_takes_what_the_document_declares() {
        let body: AccountBody = parse(Bytes::from_static(
            br#"{"session": "s", "client_key": "k", "client_secret": "c",
                 "settings": {"app_id": "a"}, "qps": 2.0}"#,
        ))
        .unwrap();
        assert_eq!(body.session.as_deref(), Some("s"));
        assert_eq!(body.qps, Some(2));
        assert_eq!(body.settings["app_id"], "a");
        let body: AccountBody = parse(Bytes::from_static(b"{}")).unwrap();
        assert!(body.session.is_none() && body.client_key.is_none() && body.qps.is_none());
        for wrong in [
            r#"{"client_key": " "}"#,
            r#"{"settings": {"": "x"}}"#,
            r#"{"settings": {"a": 1}}"#,
            r#"{"qps": -1}"#,
            r#"{"qps": 4294967296}"#,
            r#"{"sessions": "s"}"#,
        ] {
            assert_eq!(refused::<AccountBody>(wrong).0, 422, "{wrong}");
        }
    }
}
