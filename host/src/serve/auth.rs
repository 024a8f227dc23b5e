//! API keys: who may call which route.
//!
//! A client sends `Authorization: Bearer <key>`. The server keeps only each key's SHA-256
//! (`[serve.keys.NAME] sha256 = "…"`), hashes what it is given and compares the digests in
//! constant time against every configured key, so neither the answer nor its timing says how
//! much of a guess was right. A key is never logged: its name is, on the `api` span that wraps
//! the rest of the request (so a send's log lines say which client made it).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::Instrument;

use super::ApiError;
use crate::config::{ApiKeyConfig, Scope};

/// The keys a server accepts. With none, the API is open to whoever reaches it.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Arc<Vec<(String, ApiKeyConfig)>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.keys.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ApiKeys").field("names", &names).finish()
    }
}

impl ApiKeys {
    /// The keys of a `[serve.keys]` table, by name.
    pub fn new(keys: BTreeMap<String, ApiKeyConfig>) -> ApiKeys {
        ApiKeys {
            keys: Arc::new(keys.into_iter().collect()),
        }
    }

    /// Whether no key is configured (the API is open).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The configured key whose digest is the digest of `presented`. Every configured digest is
    /// compared, in constant time, whatever matched first.
    fn find(&self, presented: &[u8]) -> Option<&(String, ApiKeyConfig)> {
        let digest = Sha256::digest(presented);
        let mut found = None;
        for entry in self.keys.iter() {
            let hit: bool = entry.1.sha256.as_slice().ct_eq(digest.as_slice()).into();
            if hit && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }
}

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Access {
    /// Any valid key, whatever its scopes.
    AnyKey,
    /// A valid key with this scope.
    Scope(Scope),
}

/// The state of [`authorize`]: the keys, and what the route it guards asks for.
#[derive(Clone)]
pub(crate) struct Guard {
    pub(crate) keys: ApiKeys,
    pub(crate) access: Access,
}

/// Lets a request through when no key is configured, or when it carries a valid key with the
/// scope the route needs; otherwise answers `401` (no key, or an unknown one) or `403` (a key
/// without the scope) before anything else of the request is read. Two `Authorization`
/// headers are `400`, keys or not.
pub(crate) async fn authorize(
    State(guard): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    if request
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        // Which one would count is a guess a proxy and this server may make differently.
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "the request has more than one Authorization header: send one",
        )
        .into_response();
    }
    if guard.keys.is_empty() {
        return next.run(request).await;
    }
    let Some(presented) = bearer(request.headers()) else {
        return unauthorized("this route needs an API key: send `Authorization: Bearer <key>`");
    };
    let Some((name, key)) = guard.keys.find(presented) else {
        tracing::info!("refused a request with an unknown API key");
        return unauthorized("the API key is not valid");
    };
    if let Access::Scope(scope) = guard.access
        && !key.scopes.contains(&scope)
    {
        tracing::info!(key = %name, scope = scope.as_str(), "refused: the key lacks the scope");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "the API key {name:?} does not have the scope {:?} this route needs",
                scope.as_str()
            ),
        )
        .into_response();
    }
    let span = tracing::info_span!("api", key = %name);
    next.run(request).instrument(span).await
}

/// The key of an `Authorization: Bearer <key>` header (the scheme's case does not matter).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let key = rest.trim_ascii();
    (!key.is_empty()).then_some(key)
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"coupon-host\""),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> ApiKeys {
        let mut keys = BTreeMap::new();
        for (name, key) in [("engine", "engine-key"), ("ops", "ops-key")] {
            keys.insert(
                name.to_owned(),
                ApiKeyConfig {
                    sha256: Sha256::digest(key).into(),
                    scopes: [Scope::Send].into_iter().collect(),
                },
            );
        }
        ApiKeys::new(keys)
    }

    #[test]
    fn finds_a_key_by_its_digest_and_nothing_else() {
        let keys = keys();
        assert_eq!(
            keys.find(b"engine-key").map(|k| k.0.as_str()),
            Some("engine")
        );
        assert_eq!(keys.find(b"ops-key").map(|k| k.0.as_str()), Some("ops"));
        assert!(keys.find(b"engine-ke").is_none());
        assert!(keys.find(b"").is_none());
        // The digest itself is not the key.
        let digest = hex::encode(Sha256::digest("engine-key"));
        assert!(keys.find(digest.as_bytes()).is_none());
        assert!(!format!("{keys:?}").contains("engine-key"));
    }

    #[test]
    fn reads_only_bearer_credentials() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            bearer(&headers).map(|key| key.to_vec())
        };
        assert_eq!(with("Bearer k1"), Some(b"k1".to_vec()));
        assert_eq!(with("bearer  k1 "), Some(b"k1".to_vec()));
        assert_eq!(with("Basic azE6"), None);
        assert_eq!(with("Bearer "), None);
        assert_eq!(with("Bearer"), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
