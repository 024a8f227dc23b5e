//! The TOP scheme (Taobao, Tmall, Alibaba local services): every request gets the system
//! parameters (`app_key`, `session`, `timestamp`, `v`, `sign_method`) and a signature, as the
//! Java SDK's `TaobaoUtils.signTopRequest` makes it (PROTOCOLS.md §1.4).
//!
//! Parameter assembly ([`assemble`]) and signing ([`sign`]) are pure functions: no IO, no clock;
//! the caller passes the timestamp. Parameters are sorted by key as Java sorts strings (by UTF-16
//! code unit); every pair whose key and value are both non-blank (by Java's idea of whitespace)
//! is appended as `key` + `value`; the digest is MD5(secret + s + secret), HMAC-MD5(secret, s) or
//! HMAC-SHA256(secret, s), rendered as uppercase hex.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, FixedOffset, Utc};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    Account, AuthContext, AuthError, Grant, GrantRequest, KeyError, Outgoing, Parsed, Scheme,
    SchemeInput, SchemeKind,
};
use crate::secret::{Secret, read_secret};
use crate::transport::{HttpRequest, HttpResponse, Method, Transport};

/// TOP's OAuth token endpoint, when `auth.oauth_token_url` does not say another.
pub const OAUTH_TOKEN_URL: &str = "https://oauth.taobao.com/token";

/// The callback of an app without a web server, when `auth.redirect_uri` does not say another.
pub const OOB_REDIRECT: &str = "urn:ietf:wg:oauth:2.0:oob";

/// TOP's answers that mean the session is missing or no longer good: 26 Missing Session, 27
/// Invalid Session (expired, revoked, of another app) (PROTOCOLS.md §2, ACCOUNTS.md).
const SESSION_REFUSED: [i64; 2] = [26, 27];

/// The registry entry for `scheme = "top"`.
pub(crate) const KIND: SchemeKind = SchemeKind { name: "top", parse };

/// System parameters the host adds; a guest that sets one is refused.
pub(crate) const RESERVED: &[&str] = &[
    "app_key",
    "session",
    "timestamp",
    "v",
    "sign_method",
    "sign",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    app_key: String,
    app_secret_env: String,
    session_env: Option<String>,
    #[serde(default)]
    sign_method: SignMethod,
    oauth_token_url: Option<String>,
    redirect_uri: Option<String>,
}

fn parse(table: toml::Table, input: &SchemeInput<'_>) -> Result<Parsed, KeyError> {
    let raw: Raw = super::fields(table)?;
    if raw.app_key.trim().is_empty() {
        return Err(KeyError::at("app_key", "must not be empty"));
    }
    let app_secret = read_secret(&raw.app_secret_env, input.env)
        .map_err(|why| KeyError::at("app_secret_env", why))?;
    let session = match raw.session_env {
        Some(var) => {
            Some(read_secret(&var, input.env).map_err(|why| KeyError::at("session_env", why))?)
        }
        None => None,
    };
    let oauth_token_url = raw.oauth_token_url.as_deref().unwrap_or(OAUTH_TOKEN_URL);
    let oauth_token_url = url::Url::parse(oauth_token_url)
        .ok()
        .filter(|u| u.scheme() == "http" || u.scheme() == "https")
        .ok_or_else(|| {
            KeyError::at(
                "oauth_token_url",
                format!("{oauth_token_url:?} is not an http(s) URL"),
            )
        })?;
    Ok(Parsed {
        scheme: Arc::new(Top {
            app_key: raw.app_key,
            app_secret,
            sign_method: raw.sign_method,
            oauth_token_url,
            redirect_uri: raw.redirect_uri.unwrap_or_else(|| OOB_REDIRECT.to_owned()),
        }),
        default_account: Account {
            session,
            ..super::default_account()
        },
    })
}

/// TOP app credentials; the seller's session comes with each call's account.
pub(crate) struct Top {
    /// The AppKey (not secret).
    pub(crate) app_key: String,
    /// The AppSecret.
    pub(crate) app_secret: Secret,
    pub(crate) sign_method: SignMethod,
    /// Where authorization codes and refresh tokens are exchanged.
    pub(crate) oauth_token_url: url::Url,
    /// The app's registered callback, sent with a code.
    pub(crate) redirect_uri: String,
}

#[async_trait]
impl Scheme for Top {
    fn name(&self) -> &'static str {
        "top"
    }

    fn credential(&self, _account: &Account) -> String {
        // TOP counts call limits per app key, across the sellers it is authorised by.
        self.app_key.clone()
    }

    fn secrets(&self, account: &Account) -> Vec<Secret> {
        let mut secrets = vec![self.app_secret.clone()];
        secrets.extend(account.session.clone());
        secrets
    }

    fn check(&self, request: &Outgoing) -> Result<(), String> {
        if request.url.query().is_some() {
            // The gateway reads the query string too (and prefers it): parameters there would
            // go out unsigned, or shadow the host's own.
            return Err("TOP parameters go in params, not in the URL's query string".to_owned());
        }
        if request.body.is_some() {
            return Err("TOP requests carry params, not a body".to_owned());
        }
        for (name, _) in &request.params {
            if RESERVED.contains(&name.as_str()) {
                return Err(format!("parameter {name:?} is set by the host"));
            }
        }
        Ok(())
    }

    async fn authorize(
        &self,
        request: &mut Outgoing,
        ctx: &AuthContext<'_>,
        _stale: Option<&Secret>,
    ) -> Result<Option<Secret>, AuthError> {
        let params = assemble(
            &request.params,
            &self.app_key,
            ctx.account.session.as_ref().map(Secret::expose),
            self.sign_method,
            ctx.now,
        );
        let sign = sign(&params, self.app_secret.expose(), self.sign_method);
        request.params = params.into_iter().collect();
        request.params.push(("sign".to_owned(), sign));
        Ok(None)
    }

    fn refused(&self, response: &HttpResponse) -> Option<String> {
        session_refused(&response.body)
            .map(|code| format!("TOP code {code}: the session is missing or no longer valid"))
    }

    async fn grant(
        &self,
        request: GrantRequest<'_>,
        transport: &dyn Transport,
        http_timeout: std::time::Duration,
    ) -> Result<Grant, AuthError> {
        let mut form = vec![
            ("client_id".to_owned(), self.app_key.clone()),
            (
                "client_secret".to_owned(),
                self.app_secret.expose().to_owned(),
            ),
        ];
        match request {
            GrantRequest::Code(code) => form.extend([
                ("grant_type".to_owned(), "authorization_code".to_owned()),
                ("code".to_owned(), code.to_owned()),
                ("redirect_uri".to_owned(), self.redirect_uri.clone()),
            ]),
            GrantRequest::Refresh(token) => form.extend([
                ("grant_type".to_owned(), "refresh_token".to_owned()),
                ("refresh_token".to_owned(), token.expose().to_owned()),
            ]),
        }
        let response = transport
            .send(HttpRequest {
                method: Method::Post,
                url: self.oauth_token_url.clone(),
                headers: vec![(
                    "content-type".to_owned(),
                    "application/x-www-form-urlencoded;charset=utf-8".to_owned(),
                )],
                query: Vec::new(),
                body: Some(crate::transport::form_encode(&form)),
                timeout: http_timeout,
                max_response_bytes: 64 * 1024,
            })
            .await
            .map_err(|e| AuthError::Other(format!("the TOP OAuth endpoint: {e:?}")))?;
        parse_grant(&response, crate::store::now_ms())
    }

    fn account_fields(&self) -> &'static [&'static str] {
        &["session"]
    }
}

/// The code of a TOP answer that is the error envelope of a session refused (26 or 27). Only an
/// answer that starts as an error envelope is parsed, so a success costs nothing.
pub(crate) fn session_refused(body: &[u8]) -> Option<i64> {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if !body[start..].starts_with(b"{\"error_response\"") {
        return None;
    }
    let value = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let code = &value["error_response"]["code"];
    let code = code
        .as_i64()
        .or_else(|| code.as_str().and_then(|c| c.parse().ok()))?;
    SESSION_REFUSED.contains(&code).then_some(code)
}

/// A grant from the OAuth endpoint's answer (ACCOUNTS.md: `access_token`, `expires_in`,
/// `refresh_token`, `re_expires_in`, `taobao_user_nick`; an error is
/// `{"error","error_description"}`). `now_ms` dates the expiries.
pub(crate) fn parse_grant(response: &HttpResponse, now_ms: i64) -> Result<Grant, AuthError> {
    let answer: serde_json::Value = serde_json::from_slice(&response.body).map_err(|_| {
        AuthError::Other(format!(
            "the TOP OAuth endpoint answered HTTP {} that is not JSON",
            response.status
        ))
    })?;
    if let Some(error) = answer["error"].as_str() {
        let description = answer["error_description"].as_str().unwrap_or("");
        let message = format!("the TOP OAuth endpoint refused: {error}: {description}");
        // A bad code, a used or expired refresh token, a wrong client: the merchant or the
        // operator must act, a retry will not help.
        return Err(AuthError::Unauthorized(message));
    }
    let session = answer["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AuthError::Other("the TOP OAuth answer has no access_token".to_owned()))?;
    let seconds = |field: &str| {
        let value = &answer[field];
        value
            .as_i64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
    };
    let at = |secs: i64| now_ms + secs * 1000;
    let refresh_in = seconds("re_expires_in").unwrap_or(0);
    let refresh_token = answer["refresh_token"]
        .as_str()
        .filter(|t| !t.is_empty() && refresh_in > 0)
        .map(Secret::new);
    Ok(Grant {
        session: Secret::new(session),
        expires_at_ms: seconds("expires_in").filter(|s| *s > 0).map(at),
        refresh_expires_at_ms: refresh_token.as_ref().map(|_| at(refresh_in)),
        refresh_token,
        seller: answer["taobao_user_nick"]
            .as_str()
            .map(|nick| crate::text::bounded(nick.to_owned(), 128)),
    })
}

/// The parameters as sent, before the signature: the guest's (blank pairs dropped, as TOP neither
/// signs nor sends them) and the system parameters.
pub fn assemble(
    guest: &[(String, String)],
    app_key: &str,
    session: Option<&str>,
    sign_method: SignMethod,
    now: DateTime<Utc>,
) -> BTreeMap<String, String> {
    let mut params: BTreeMap<String, String> = guest
        .iter()
        .filter(|(name, value)| !is_blank(name) && !is_blank(value))
        .cloned()
        .collect();
    params.insert("app_key".into(), app_key.to_owned());
    params.insert("timestamp".into(), timestamp(now));
    params.insert("v".into(), "2.0".into());
    params.insert("sign_method".into(), sign_method.as_str().into());
    if let Some(session) = session {
        params.insert("session".into(), session.to_owned());
    }
    params
}

/// The three TOP signature methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignMethod {
    /// `md5`: MD5(secret + params + secret).
    Md5,
    /// `hmac`: HMAC-MD5 keyed by the secret.
    Hmac,
    /// `hmac-sha256`: HMAC-SHA256 keyed by the secret (the current Java SDK's default).
    #[default]
    HmacSha256,
}

impl SignMethod {
    /// The value of the `sign_method` system parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            SignMethod::Md5 => "md5",
            SignMethod::Hmac => "hmac",
            SignMethod::HmacSha256 => "hmac-sha256",
        }
    }
}

/// Whether TOP treats a key or value as empty: Java's `StringUtils.isEmpty` counts null, `""` and
/// strings of `Character.isWhitespace` only. Such pairs are neither signed nor sent.
///
/// Java's whitespace is not Rust's: the no-break spaces (U+00A0, U+2007, U+202F) and U+0085 are
/// not whitespace to Java, and the separators U+001C..U+001F are. Using Rust's would sign a pair
/// the gateway skips, or drop one it signs.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(|c| {
        matches!(
            c,
            '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{1C}'..='\u{1F}' | ' ' | '\u{1680}'
                | '\u{2000}'..='\u{2006}' | '\u{2008}'..='\u{200A}' | '\u{2028}' | '\u{2029}'
                | '\u{205F}' | '\u{3000}'
        )
    })
}

/// The signature over `params` (`sign` itself and blank pairs are skipped).
pub fn sign(params: &BTreeMap<String, String>, secret: &str, method: SignMethod) -> String {
    let mut pairs: Vec<(&String, &String)> = params
        .iter()
        .filter(|(key, value)| *key != "sign" && !is_blank(key) && !is_blank(value))
        .collect();
    // Java's `Arrays.sort` on the names compares UTF-16 code units; the map's byte order differs
    // from it only for characters above U+FFFF against U+E000..U+FFFF.
    pairs.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    let mut text = String::with_capacity(256);
    if method == SignMethod::Md5 {
        text.push_str(secret);
    }
    for (key, value) in pairs {
        text.push_str(key);
        text.push_str(value);
    }
    match method {
        SignMethod::Md5 => {
            text.push_str(secret);
            hex::encode_upper(Md5::digest(text.as_bytes()))
        }
        SignMethod::Hmac => {
            let mut mac = <Hmac<Md5> as Mac>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(text.as_bytes());
            hex::encode_upper(mac.finalize().into_bytes())
        }
        SignMethod::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes keys of any length");
            mac.update(text.as_bytes());
            hex::encode_upper(mac.finalize().into_bytes())
        }
    }
}

/// The `timestamp` system parameter: `yyyy-MM-dd HH:mm:ss` in GMT+8, whatever the host's zone.
pub fn timestamp(now: DateTime<Utc>) -> String {
    let gmt8 = FixedOffset::east_opt(8 * 3600).expect("+8h is a valid offset");
    now.with_timezone(&gmt8)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn published_example() -> BTreeMap<String, String> {
        params(&[
            ("method", "taobao.item.seller.get"),
            ("app_key", "12345678"),
            ("session", "test"),
            ("timestamp", "2016-01-01 12:00:00"),
            ("format", "json"),
            ("v", "2.0"),
            ("sign_method", "md5"),
            ("fields", "num_iid,title,nick,price,num"),
            ("num_iid", "11223344"),
        ])
    }

    #[test]
    fn reproduces_the_published_top_md5_example() {
        assert_eq!(
            sign(&published_example(), "helloworld", SignMethod::Md5),
            "66987CB115214E59E6EC978214934FB8"
        );
    }

    #[test]
    fn legacy_v1_vectors_do_not_match_the_v2_md5_signer() {
        // PROTOCOLS.md §5.2: MD5(secret + kv) without the trailing secret is the pre-2.0 protocol.
        let ascii = params(&[("nick", "winwindg"), ("fields", "nick,sex")]);
        assert_eq!(
            sign(&ascii, "carver", SignMethod::Md5),
            "8EE2A00D8949D5A22579DA12A64D4B71"
        );
        let chinese = params(&[("nick", "风胜"), ("fields", "nick,sex")]);
        assert_eq!(
            sign(&chinese, "carver", SignMethod::Md5),
            "97FD5ADF393A60E036005E8367D9C0A0"
        );
    }

    #[test]
    fn hmac_methods_key_by_the_secret_only() {
        // Computed independently: HMAC(key="helloworld", msg=the sorted concatenation).
        let text = "app_key12345678fieldsnum_iid,title,nick,price,numformatjsonmethodtaobao.item.seller.getnum_iid11223344sessiontestsign_methodmd5timestamp2016-01-01 12:00:00v2.0";
        let mut md5 = <Hmac<Md5> as Mac>::new_from_slice(b"helloworld").unwrap();
        md5.update(text.as_bytes());
        assert_eq!(
            sign(&published_example(), "helloworld", SignMethod::Hmac),
            hex::encode_upper(md5.finalize().into_bytes())
        );
        let sha = sign(&published_example(), "helloworld", SignMethod::HmacSha256);
        assert_eq!(sha.len(), 64);
        assert!(
            sha.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }

    #[test]
    fn blank_values_and_the_sign_itself_are_not_signed() {
        let mut with_blanks = published_example();
        with_blanks.insert("empty".into(), "".into());
        with_blanks.insert("spaces".into(), "  ".into());
        with_blanks.insert("sign".into(), "WHATEVER".into());
        assert_eq!(
            sign(&with_blanks, "helloworld", SignMethod::Md5),
            "66987CB115214E59E6EC978214934FB8"
        );
    }

    #[test]
    fn timestamp_is_gmt8_whatever_the_host_zone() {
        let utc = DateTime::parse_from_rfc3339("2016-01-01T04:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(utc), "2016-01-01 12:00:00");
    }
}

/// The host's signer against the simulator's independent verifier (the simulated gateway's own
/// code), over arbitrary parameters.
#[cfg(test)]
mod against_the_gateway {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use proptest::sample::select;

    use super::{SignMethod, sign};

    /// Modest case counts keep the suite fast; no regression files are written into the tree
    /// (a failure prints its minimal input, which belongs in a named unit test).
    fn cases(cases: u32) -> ProptestConfig {
        ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// Parameter names: TOP's usual ones, anything printable, blanks by Java's or Rust's idea of
    /// whitespace (they differ), and characters on both sides of the UTF-16 surrogate range (UTF-16
    /// and UTF-8 order them differently).
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_]{1,10}",
            "\\PC{0,4}",
            "[ \t\n\u{0b}\u{0c}\u{1c}\u{1f}\u{85}\u{a0}\u{2007}\u{202f}\u{3000}]{0,3}",
            "[a-z]{0,2}[\u{e000}-\u{ffff}\u{10000}-\u{10ffff}]{1,2}",
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![name(), "\\PC{0,24}", "[张三李四,]{0,6}", any::<String>()]
    }

    proptest! {
        #![proptest_config(cases(256))]

        /// Whatever the parameters, the gateway accepts what the host signs, and only with its secret.
        #[test]
        fn the_top_signer_agrees_with_the_simulated_gateway(
            params in prop::collection::btree_map(name(), value(), 0..10),
            secret in "\\PC{0,16}",
            other_secret in "\\PC{0,16}",
            method in select(&[SignMethod::Md5, SignMethod::Hmac, SignMethod::HmacSha256][..]),
        ) {
            let signature = sign(&params, &secret, method);
            let received: Vec<(String, String)> = params.clone().into_iter().collect();
            prop_assert!(
                coupon_sim::top_signature_valid(&received, &secret, method.as_str(), &signature),
                "{method:?} over {params:?}"
            );
            if other_secret != secret {
                prop_assert!(!coupon_sim::top_signature_valid(
                    &received,
                    &other_secret,
                    method.as_str(),
                    &signature
                ));
            }
        }
    }

    /// Found by the property above: Java counts U+001C..U+001F as whitespace and Rust does not, so
    /// a value of U+001F was signed by the host and skipped by the gateway.
    #[test]
    fn a_separator_character_is_blank_as_java_sees_it() {
        let params = BTreeMap::from([
            ("method".to_owned(), "m".to_owned()),
            ("x".to_owned(), "\u{1f}".to_owned()),
        ]);
        let received: Vec<_> = params.clone().into_iter().collect();
        let signature = sign(&params, "s", SignMethod::Md5);
        assert!(coupon_sim::top_signature_valid(
            &received, "s", "md5", &signature
        ));
    }

    /// Found by the property above: names are ordered as Java orders strings, by UTF-16 code units.
    #[test]
    fn names_sort_by_utf16_code_units() {
        let params = BTreeMap::from([
            ("k\u{ff5e}".to_owned(), "2".to_owned()),
            ("k\u{1f600}".to_owned(), "1".to_owned()),
        ]);
        let received: Vec<_> = params.clone().into_iter().collect();
        let signature = sign(&params, "s", SignMethod::Hmac);
        assert!(coupon_sim::top_signature_valid(
            &received, "s", "hmac", &signature
        ));
    }
}
