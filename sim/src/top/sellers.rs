//! The TOP side's sellers and what they authorized (ACCOUNTS.md): sessions (access tokens),
//! refresh tokens and authorization codes, each for one (app key, seller) pair.
//!
//! Every lookup a call makes is a hash lookup, so a gateway call costs the same however many
//! sessions were ever issued.

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;

use crate::seed::{DEFAULT_SELLER, DEFAULT_SELLER_ID, TopApp, TopSeller};
use crate::{SessionState, TopSession};

/// A seller, by its index in [`Sellers`].
pub(crate) type SellerId = usize;

/// How long an authorization code can be exchanged: 30 minutes, once (a TOP OAuth guide that
/// quotes the official page; PLATFORMS.md).
const CODE_TTL_SECS: i64 = 30 * 60;

/// The longest lifetime a seed may give anything (about 68 years), so that adding it to a time
/// cannot overflow.
pub(crate) const MAX_TTL_SECS: u64 = i32::MAX as u64;

/// A TOP seller.
pub(crate) struct Seller {
    pub(crate) nick: String,
    pub(crate) user_id: u64,
}

/// An access token.
struct Session {
    app_key: String,
    seller: SellerId,
    /// `None`: does not expire by the clock (seed sessions).
    expires_at: Option<DateTime<Utc>>,
    /// Replaced by a refresh, or revoked by the merchant ([`Sellers::revoke`]).
    revoked: bool,
    /// The refresh token issued with it, while that is unused.
    refresh_token: Option<String>,
}

/// A refresh token, usable once.
struct Refresh {
    app_key: String,
    seller: SellerId,
    /// The session it was issued with, which a refresh replaces.
    session: String,
    expires_at: DateTime<Utc>,
}

/// An authorization code, usable once.
struct Code {
    app_key: String,
    seller: SellerId,
    redirect_uri: String,
    expires_at: DateTime<Utc>,
}

/// A refused code or refresh exchange, in OAuth 2.0's terms (RFC 6749 §5.2), as the token
/// endpoint answers it: `error`, `error_description`, and why (for the call record only).
#[derive(Debug)]
pub(crate) struct GrantError {
    pub(crate) error: &'static str,
    pub(crate) description: &'static str,
    pub(crate) detail: String,
}

/// A session and refresh token just issued.
pub(crate) struct Issued {
    pub(crate) session: String,
    pub(crate) refresh_token: String,
    pub(crate) seller: SellerId,
}

/// Every seller and every authorization.
pub(crate) struct Sellers {
    sellers: Vec<Seller>,
    by_nick: HashMap<String, SellerId>,
    sessions: HashMap<String, Session>,
    /// Session values in the order they were made, for [`Sellers::list`].
    order: Vec<String>,
    refresh_tokens: HashMap<String, Refresh>,
    /// Every refresh token ever issued, used or not, for [`Sellers::issued_refresh_tokens`].
    issued_refresh_tokens: Vec<String>,
    codes: HashMap<String, Code>,
}

/// A random token: `prefix`, 32 hex digits, then the seller's user id, like TOP's session keys
/// (which end in the user id).
fn token(prefix: &str, user_id: u64) -> String {
    format!(
        "{prefix}{}{user_id}",
        hex::encode(rand::rng().random::<[u8; 16]>())
    )
}

fn after(now: DateTime<Utc>, secs: u64) -> DateTime<Utc> {
    // Seeds are checked against MAX_TTL_SECS, so this neither truncates nor overflows.
    now + TimeDelta::seconds(i64::try_from(secs).unwrap_or(i64::MAX))
}

impl Sellers {
    /// The default seller, the seed's sellers and their sessions (the apps' `sessions` belong
    /// to the default seller). A seed error names the field.
    pub(crate) fn new(
        apps: &[TopApp],
        seed: Vec<TopSeller>,
        now: DateTime<Utc>,
    ) -> Result<Sellers, String> {
        let mut sellers = Sellers {
            sellers: Vec::new(),
            by_nick: HashMap::new(),
            sessions: HashMap::new(),
            order: Vec::new(),
            refresh_tokens: HashMap::new(),
            issued_refresh_tokens: Vec::new(),
            codes: HashMap::new(),
        };
        for app in apps {
            for (field, ttl) in [
                ("session_ttl_secs", app.session_ttl_secs),
                ("refresh_ttl_secs", app.refresh_ttl_secs),
            ] {
                if ttl > MAX_TTL_SECS {
                    return Err(format!(
                        "top_apps[{}].{field}: {ttl} is more than {MAX_TTL_SECS}",
                        app.app_key
                    ));
                }
            }
        }
        if !seed.iter().any(|seller| seller.nick == DEFAULT_SELLER) {
            sellers.add_seller(DEFAULT_SELLER.to_owned(), DEFAULT_SELLER_ID)?;
        }
        for seller in &seed {
            sellers.add_seller(seller.nick.clone(), seller.user_id)?;
        }
        let default = sellers.by_nick[DEFAULT_SELLER];
        for app in apps {
            for session in &app.sessions {
                sellers.add_seed_session(&app.app_key, session, default, None)?;
            }
        }
        for seller in seed {
            let id = sellers.by_nick[&seller.nick];
            for session in seller.sessions {
                if !apps.iter().any(|app| app.app_key == session.app_key) {
                    return Err(format!(
                        "top_sellers[{}].sessions: app_key {:?} is not in top_apps",
                        seller.nick, session.app_key
                    ));
                }
                let expires_at = match session.ttl_secs {
                    Some(ttl) if ttl > MAX_TTL_SECS => {
                        return Err(format!(
                            "top_sellers[{}].sessions.ttl_secs: {ttl} is more than {MAX_TTL_SECS}",
                            seller.nick
                        ));
                    }
                    Some(ttl) => Some(after(now, ttl)),
                    None => None,
                };
                sellers.add_seed_session(&session.app_key, &session.session, id, expires_at)?;
            }
        }
        Ok(sellers)
    }

    fn add_seller(&mut self, nick: String, user_id: u64) -> Result<(), String> {
        if self.by_nick.contains_key(&nick) {
            return Err(format!("top_sellers: nick {nick:?} is listed twice"));
        }
        if self.sellers.iter().any(|seller| seller.user_id == user_id) {
            return Err(format!("top_sellers: user_id {user_id} is listed twice"));
        }
        self.by_nick.insert(nick.clone(), self.sellers.len());
        self.sellers.push(Seller { nick, user_id });
        Ok(())
    }

    fn add_seed_session(
        &mut self,
        app_key: &str,
        session: &str,
        seller: SellerId,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(), String> {
        if session.trim().is_empty() {
            return Err(format!("a session of app {app_key:?} is blank"));
        }
        if self.sessions.contains_key(session) {
            // The value is a credential, even in a seed: name where it is, not what it is.
            return Err(format!(
                "a session of app {app_key:?} is listed twice (sessions are unique across apps and sellers)"
            ));
        }
        self.insert_session(session.to_owned(), app_key, seller, expires_at, None);
        Ok(())
    }

    fn insert_session(
        &mut self,
        value: String,
        app_key: &str,
        seller: SellerId,
        expires_at: Option<DateTime<Utc>>,
        refresh_token: Option<String>,
    ) {
        self.order.push(value.clone());
        self.sessions.insert(
            value,
            Session {
                app_key: app_key.to_owned(),
                seller,
                expires_at,
                revoked: false,
                refresh_token,
            },
        );
    }

    /// The seller with this nick.
    pub(crate) fn find(&self, nick: &str) -> Option<SellerId> {
        self.by_nick.get(nick).copied()
    }

    /// The seller that owns a seeded coupon whose `seller` is `owner` (`None`: the default
    /// seller); `field` names the coupon in the error.
    pub(crate) fn owner(&self, owner: Option<&str>, field: &str) -> Result<SellerId, String> {
        let nick = owner.unwrap_or(DEFAULT_SELLER);
        self.find(nick).ok_or_else(|| {
            format!("{field}.seller: {nick:?} is not a seller (list it in top_sellers)")
        })
    }

    pub(crate) fn seller(&self, id: SellerId) -> &Seller {
        &self.sellers[id]
    }

    /// The seller a session of `app_key` belongs to, if it is valid now; otherwise why not (for
    /// the call record; the caller answers code 27 whatever the reason).
    pub(crate) fn check(
        &self,
        session: &str,
        app_key: &str,
        now: DateTime<Utc>,
    ) -> Result<SellerId, String> {
        let Some(found) = self.sessions.get(session) else {
            return Err("the session was never issued".to_owned());
        };
        if found.app_key != app_key {
            return Err(format!(
                "the session belongs to app {:?}, not {app_key:?}",
                found.app_key
            ));
        }
        if found.revoked {
            return Err("the session was revoked or replaced by a refresh".to_owned());
        }
        if let Some(expires_at) = found.expires_at
            && now >= expires_at
        {
            return Err(format!("the session expired at {expires_at} (now {now})"));
        }
        Ok(found.seller)
    }

    /// Mints an authorization code for `seller` on `app`, bound to `redirect_uri` (default:
    /// the app's registered callback), as the authorize page would after the seller agreed.
    pub(crate) fn mint_code(
        &mut self,
        app: &TopApp,
        seller: SellerId,
        redirect_uri: Option<&str>,
        now: DateTime<Utc>,
    ) -> String {
        let code = hex::encode(rand::rng().random::<[u8; 16]>());
        self.codes.insert(
            code.clone(),
            Code {
                app_key: app.app_key.clone(),
                seller,
                redirect_uri: redirect_uri.unwrap_or(&app.redirect_uri).to_owned(),
                expires_at: now + TimeDelta::seconds(CODE_TTL_SECS),
            },
        );
        code
    }

    /// Exchanges a code for a new session of its seller. The code is used up only by a
    /// successful exchange.
    pub(crate) fn exchange_code(
        &mut self,
        app: &TopApp,
        code: &str,
        redirect_uri: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Issued, GrantError> {
        let expired = |detail: String| GrantError {
            error: "invalid_grant",
            description: "authorize code expire",
            detail,
        };
        let Some(found) = self.codes.get(code) else {
            return Err(expired("the code was never issued, or was used".into()));
        };
        if found.app_key != app.app_key {
            return Err(expired(format!(
                "the code was issued for app {:?}",
                found.app_key
            )));
        }
        if now >= found.expires_at {
            return Err(expired(format!("the code expired at {}", found.expires_at)));
        }
        if redirect_uri != Some(found.redirect_uri.as_str()) {
            return Err(GrantError {
                error: "invalid_client",
                description: "redirect_uri is invalidate",
                detail: format!(
                    "redirect_uri {redirect_uri:?} is not the code's {:?}",
                    found.redirect_uri
                ),
            });
        }
        let seller = found.seller;
        self.codes.remove(code);
        Ok(self.issue(app, seller, now))
    }

    /// Exchanges a refresh token for a new session and refresh token of the same seller. The
    /// old session is revoked at once and the refresh token is used up (PLATFORMS.md says why).
    pub(crate) fn refresh(
        &mut self,
        app: &TopApp,
        refresh_token: &str,
        now: DateTime<Utc>,
    ) -> Result<Issued, GrantError> {
        let refused = |detail: String| GrantError {
            error: "invalid_grant",
            description: "refresh_token is invalid or expired",
            detail,
        };
        let Some(found) = self.refresh_tokens.get(refresh_token) else {
            return Err(refused(
                "the refresh token was never issued, was used, or its session was revoked".into(),
            ));
        };
        if found.app_key != app.app_key {
            return Err(refused(format!(
                "the refresh token was issued for app {:?}",
                found.app_key
            )));
        }
        if app.refresh_ttl_secs == 0 {
            return Err(refused(format!(
                "app {:?} cannot refresh (refresh_ttl_secs 0, re_expires_in 0)",
                app.app_key
            )));
        }
        if now >= found.expires_at {
            return Err(refused(format!(
                "the refresh token expired at {}",
                found.expires_at
            )));
        }
        let seller = found.seller;
        let old = found.session.clone();
        self.refresh_tokens.remove(refresh_token);
        if let Some(session) = self.sessions.get_mut(&old) {
            session.revoked = true;
            session.refresh_token = None;
        }
        Ok(self.issue(app, seller, now))
    }

    /// Every refresh token ever issued, oldest first: credentials of the simulator's own making,
    /// for tests that look for them where they must not be.
    pub(crate) fn issued_refresh_tokens(&self) -> Vec<String> {
        self.issued_refresh_tokens.clone()
    }

    /// Issues a session and a refresh token of `seller` for `app`, with the app's lifetimes.
    fn issue(&mut self, app: &TopApp, seller: SellerId, now: DateTime<Utc>) -> Issued {
        let user_id = self.sellers[seller].user_id;
        let session = token("61", user_id);
        let refresh_token = token("62", user_id);
        self.issued_refresh_tokens.push(refresh_token.clone());
        self.refresh_tokens.insert(
            refresh_token.clone(),
            Refresh {
                app_key: app.app_key.clone(),
                seller,
                session: session.clone(),
                expires_at: after(now, app.refresh_ttl_secs),
            },
        );
        self.insert_session(
            session.clone(),
            &app.app_key,
            seller,
            Some(after(now, app.session_ttl_secs)),
            Some(refresh_token.clone()),
        );
        Issued {
            session,
            refresh_token,
            seller,
        }
    }

    /// Puts a session past its expiry now. Its refresh token stays usable. `false` when the
    /// session was never issued.
    pub(crate) fn expire(&mut self, session: &str, now: DateTime<Utc>) -> bool {
        let Some(found) = self.sessions.get_mut(session) else {
            return false;
        };
        found.expires_at = Some(found.expires_at.map_or(now, |at| at.min(now)));
        true
    }

    /// Revokes a session and its refresh token, as a merchant cancelling the authorization
    /// does. `false` when the session was never issued.
    pub(crate) fn revoke(&mut self, session: &str) -> bool {
        let Some(found) = self.sessions.get_mut(session) else {
            return false;
        };
        found.revoked = true;
        if let Some(refresh_token) = found.refresh_token.take() {
            self.refresh_tokens.remove(&refresh_token);
        }
        true
    }

    /// Every session ever issued, oldest first.
    pub(crate) fn list(&self, now: DateTime<Utc>) -> Vec<TopSession> {
        self.order
            .iter()
            .filter_map(|value| {
                let session = self.sessions.get(value)?;
                let seller = &self.sellers[session.seller];
                let state = if session.revoked {
                    SessionState::Revoked
                } else if session.expires_at.is_some_and(|at| now >= at) {
                    SessionState::Expired
                } else {
                    SessionState::Active
                };
                let refresh_expires_at = session
                    .refresh_token
                    .as_ref()
                    .and_then(|token| self.refresh_tokens.get(token))
                    .map(|refresh| refresh.expires_at.timestamp());
                Some(TopSession {
                    session: value.clone(),
                    app_key: session.app_key.clone(),
                    seller: seller.nick.clone(),
                    seller_id: seller.user_id,
                    expires_at: session.expires_at.map(|at| at.timestamp()),
                    refresh_expires_at,
                    state,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimConfig;

    fn sellers() -> (Sellers, TopApp, DateTime<Utc>) {
        let config = SimConfig::demo();
        let now = Utc::now();
        let sellers = Sellers::new(&config.top_apps, config.top_sellers, now).unwrap();
        (sellers, config.top_apps[0].clone(), now)
    }

    #[test]
    fn the_demo_sessions_belong_to_their_sellers() {
        let (sellers, app, now) = sellers();
        let default = sellers.check("sim-session", &app.app_key, now).unwrap();
        assert_eq!(sellers.seller(default).nick, DEFAULT_SELLER);
        let second = sellers.check("sim-session-2", &app.app_key, now).unwrap();
        assert_eq!(sellers.seller(second).nick, "sim-seller-2");
        assert!(sellers.check("sim-session", "87654321", now).is_err());
        assert!(sellers.check("nope", &app.app_key, now).is_err());
    }

    #[test]
    fn a_code_is_single_use_and_bound_to_its_redirect_uri() {
        let (mut sellers, app, now) = sellers();
        let second = sellers.find("sim-seller-2").unwrap();
        let code = sellers.mint_code(&app, second, Some("https://example.com/cb"), now);
        let error = sellers
            .exchange_code(&app, &code, Some("https://example.com/other"), now)
            .err()
            .unwrap();
        assert_eq!(error.error, "invalid_client");
        // A refused exchange leaves the code usable.
        let issued = sellers
            .exchange_code(&app, &code, Some("https://example.com/cb"), now)
            .unwrap();
        assert_eq!(issued.seller, second);
        assert_eq!(
            sellers.check(&issued.session, &app.app_key, now),
            Ok(second)
        );
        let error = sellers
            .exchange_code(&app, &code, Some("https://example.com/cb"), now)
            .err()
            .unwrap();
        assert_eq!(error.error, "invalid_grant");
        // Codes expire after 30 minutes.
        let code = sellers.mint_code(&app, second, None, now);
        let later = now + TimeDelta::seconds(CODE_TTL_SECS);
        let error = sellers
            .exchange_code(&app, &code, Some(&app.redirect_uri), later)
            .err()
            .unwrap();
        assert_eq!(error.description, "authorize code expire");
    }
}
