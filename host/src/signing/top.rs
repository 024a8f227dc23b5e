//! TOP (Taobao Open Platform) request signing, as the Java SDK's `TaobaoUtils.signTopRequest` does it.
//!
//! Parameters are sorted by key as Java sorts strings (by UTF-16 code unit); every pair whose key
//! and value are both non-blank (by Java's idea of whitespace) is appended as `key` + `value`; the digest is MD5(secret + s + secret), HMAC-MD5(secret, s) or
//! HMAC-SHA256(secret, s), rendered as uppercase hex. See PROTOCOLS.md §1.4.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use sha2::Sha256;

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
