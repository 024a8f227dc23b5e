//! The gateway's check of a TOP signature (PROTOCOLS.md §1.4).
//!
//! Written apart from the host's signer on purpose and sharing no code with it: if both were one
//! implementation, a bug in it would sign and verify alike and no test would notice.
//!
//! The reference is the Java SDK's `TaobaoUtils.signTopRequest`, which the gateway mirrors:
//! sort the parameter names as Java sorts strings, skip every pair whose name or value is empty or
//! whitespace by Java's `Character.isWhitespace`, concatenate `name` + `value`, then
//! `MD5(secret + text + secret)`, `HmacMD5(key = secret, text)` or `HmacSHA256(key = secret, text)`,
//! rendered as uppercase hex.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// A `sign_method` the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignMethod {
    Md5,
    Hmac,
    HmacSha256,
}

impl SignMethod {
    /// Parses the wire name. Only the three documented spellings are accepted.
    pub(crate) fn parse(name: &str) -> Option<SignMethod> {
        match name {
            "md5" => Some(SignMethod::Md5),
            "hmac" => Some(SignMethod::Hmac),
            "hmac-sha256" => Some(SignMethod::HmacSha256),
            _ => None,
        }
    }
}

/// Java's `Character.isWhitespace`, which TOP's `StringUtils.isEmpty` uses to decide that a value
/// is blank. It differs from Rust's `char::is_whitespace`: the no-break spaces (U+00A0, U+2007,
/// U+202F) and U+0085 are not whitespace to Java, and the separators U+001C..U+001F are.
fn is_java_whitespace(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | '\u{1C}'..='\u{1F}' | ' ' | '\u{1680}'
            | '\u{2000}'..='\u{2006}' | '\u{2008}'..='\u{200A}' | '\u{2028}' | '\u{2029}'
            | '\u{205F}' | '\u{3000}'
    )
}

/// Whether a name or value counts as empty (TOP's `StringUtils.isEmpty`).
pub(crate) fn is_blank(text: &str) -> bool {
    text.chars().all(is_java_whitespace)
}

/// The text that is digested: the received parameters except `sign`, blank pairs left out,
/// sorted by name, as `name1value1name2value2...`. It holds no secret, so it is safe to log.
pub(crate) fn string_to_sign<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(&str, &str)> = params
        .into_iter()
        .filter(|(name, value)| *name != "sign" && !is_blank(name) && !is_blank(value))
        .collect();
    // `Arrays.sort(String[])` compares UTF-16 code units. For the ASCII names TOP uses this is
    // byte order; it differs from Rust's `str` order only above U+FFFF.
    pairs.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    pairs
        .iter()
        .flat_map(|(name, value)| [*name, *value])
        .collect()
}

/// The signature of `text` (from [`string_to_sign`]) with `secret`, as uppercase hex.
pub(crate) fn digest(method: SignMethod, secret: &str, text: &str) -> String {
    let bytes = match method {
        SignMethod::Md5 => {
            let mut md5 = Md5::new();
            md5.update(secret.as_bytes());
            md5.update(text.as_bytes());
            md5.update(secret.as_bytes());
            md5.finalize().to_vec()
        }
        SignMethod::Hmac => {
            let mut mac = <Hmac<Md5> as Mac>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        SignMethod::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
                .expect("HMAC takes a key of any length");
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
    };
    hex::encode_upper(bytes)
}

/// Whether `received` is the signature of `text`. The SDKs all send uppercase hex; the case of
/// the hex digits is not compared, because hex is a rendering and the gateway's acceptance of
/// lowercase is not documented either way (PROTOCOLS.md leaves it open). Any other difference
/// (a missing or extra parameter, another order, another secret, the legacy v1 algorithm without
/// the trailing secret) fails.
pub(crate) fn matches(expected: &str, received: &str) -> bool {
    expected.eq_ignore_ascii_case(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parameters of the published example (open.taobao.com docId=101617), without
    /// `sign_method`, which each test adds.
    const PUBLISHED: &[(&str, &str)] = &[
        ("method", "taobao.item.seller.get"),
        ("app_key", "12345678"),
        ("session", "test"),
        ("timestamp", "2016-01-01 12:00:00"),
        ("format", "json"),
        ("v", "2.0"),
        ("fields", "num_iid,title,nick,price,num"),
        ("num_iid", "11223344"),
    ];

    fn sign(extra: &[(&str, &str)], secret: &str, method: SignMethod) -> String {
        let text = string_to_sign(PUBLISHED.iter().chain(extra).copied());
        digest(method, secret, &text)
    }

    #[test]
    fn verifies_the_published_md5_example() {
        let text = string_to_sign(PUBLISHED.iter().chain(&[("sign_method", "md5")]).copied());
        assert_eq!(
            text,
            "app_key12345678fieldsnum_iid,title,nick,price,numformatjsonmethodtaobao.item.seller.get\
             num_iid11223344sessiontestsign_methodmd5timestamp2016-01-01 12:00:00v2.0"
        );
        assert_eq!(
            digest(SignMethod::Md5, "helloworld", &text),
            "66987CB115214E59E6EC978214934FB8"
        );
    }

    // The hmac vectors were computed over the published parameters with Python's `hmac` and
    // Node's `crypto`, which agree.
    #[test]
    fn verifies_hmac_md5() {
        assert_eq!(
            sign(&[("sign_method", "hmac")], "helloworld", SignMethod::Hmac),
            "D56D7858309C31B6251083A874D48273"
        );
    }

    #[test]
    fn verifies_hmac_sha256() {
        assert_eq!(
            sign(
                &[("sign_method", "hmac-sha256")],
                "helloworld",
                SignMethod::HmacSha256
            ),
            "04DB15AD0774D5CFCE2C837DE43E3FCEA9011ED74F3038FB6AB5F3C4CEA119E8"
        );
    }

    #[test]
    fn the_received_sign_and_blank_pairs_are_not_signed() {
        let plain = sign(&[("sign_method", "md5")], "helloworld", SignMethod::Md5);
        let noisy = sign(
            &[
                ("sign_method", "md5"),
                ("sign", "ANYTHING"),
                ("partner_id", ""),
                ("simplify", " \t"),
                ("", "orphan value"),
            ],
            "helloworld",
            SignMethod::Md5,
        );
        assert_eq!(plain, noisy);
        // A no-break space is not blank to Java, so the pair is signed.
        let nbsp = sign(
            &[("sign_method", "md5"), ("partner_id", "\u{a0}")],
            "helloworld",
            SignMethod::Md5,
        );
        assert_ne!(plain, nbsp);
    }

    #[test]
    fn chinese_values_are_signed_as_utf8() {
        // Computed with Python and Node over the same parameters.
        let text = string_to_sign([
            ("method", "taobao.promotion.coupon.sns.send"),
            ("app_key", "12345678"),
            ("session", "sim-session"),
            ("timestamp", "2026-03-01 10:00:00"),
            ("format", "json"),
            ("v", "2.0"),
            ("sign_method", "md5"),
            ("coupon_id", "48552"),
            ("buyer_nick", "张三,李四"),
        ]);
        assert_eq!(
            digest(SignMethod::Md5, "sim-app-secret", &text),
            "0DE2242B64408F3AC7CDA975B7810A48"
        );
    }

    #[test]
    fn legacy_v1_signatures_do_not_verify() {
        // PROTOCOLS.md §5.2: MD5(secret + kv) without the trailing secret.
        let text = string_to_sign([("nick", "winwindg"), ("fields", "nick,sex")]);
        let v2 = digest(SignMethod::Md5, "carver", &text);
        assert_eq!(v2, "8EE2A00D8949D5A22579DA12A64D4B71");
        assert!(!matches(&v2, "E780A69E04E438846FAF25AD28047415"));
    }

    #[test]
    fn hex_case_is_not_compared_but_digits_are() {
        assert!(matches(
            "66987CB115214E59E6EC978214934FB8",
            "66987cb115214e59e6ec978214934fb8"
        ));
        assert!(!matches(
            "66987CB115214E59E6EC978214934FB8",
            "66987CB115214E59E6EC978214934FB9"
        ));
        assert!(!matches("66987CB115214E59E6EC978214934FB8", ""));
    }

    #[test]
    fn only_documented_sign_methods_parse() {
        assert_eq!(SignMethod::parse("md5"), Some(SignMethod::Md5));
        assert_eq!(SignMethod::parse("hmac"), Some(SignMethod::Hmac));
        assert_eq!(
            SignMethod::parse("hmac-sha256"),
            Some(SignMethod::HmacSha256)
        );
        for other in ["MD5", "sha1", "hmac_sha256", ""] {
            assert_eq!(SignMethod::parse(other), None, "{other}");
        }
    }

    #[test]
    fn names_sort_as_java_sorts_them() {
        // '_' (0x5F) sorts before lowercase letters.
        assert_eq!(string_to_sign([("ab", "1"), ("a_b", "2")]), "a_b2ab1");
        // U+1F600 is a surrogate pair (0xD83D 0xDE00) in UTF-16, so it sorts before U+FF5E there,
        // although its UTF-8 bytes (F0 ..) sort after U+FF5E's (EF ..).
        assert_eq!(
            string_to_sign([("k\u{FF5E}", "2"), ("k\u{1F600}", "1")]),
            "k\u{1F600}1k\u{FF5E}2"
        );
    }
}
