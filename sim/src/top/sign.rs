//! The gateway's own check of a TOP signature, written apart from the host's signer on purpose:
//! a bug in one is caught by the other.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// The expected signature for `params` (everything received except `sign`), or `None` when the
/// sign method is not one TOP knows.
pub fn expected(params: &BTreeMap<String, String>, secret: &str, method: &str) -> Option<String> {
    // Keys sort in byte order (BTreeMap<String>), which is Java's order for the ASCII names TOP
    // uses. Pairs with a blank key or value are neither signed nor meaningful.
    let mut text = String::new();
    for (key, value) in params {
        if key == "sign" || key.trim().is_empty() || value.trim().is_empty() {
            continue;
        }
        text.push_str(key);
        text.push_str(value);
    }
    let digest = match method {
        "md5" => Md5::digest(format!("{secret}{text}{secret}").as_bytes()).to_vec(),
        "hmac" => {
            let mut mac = <Hmac<Md5> as Mac>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "hmac-sha256" => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).ok()?;
            mac.update(text.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => return None,
    };
    Some(hex::encode_upper(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_the_published_md5_example() {
        let params: BTreeMap<String, String> = [
            ("method", "taobao.item.seller.get"),
            ("app_key", "12345678"),
            ("session", "test"),
            ("timestamp", "2016-01-01 12:00:00"),
            ("format", "json"),
            ("v", "2.0"),
            ("sign_method", "md5"),
            ("fields", "num_iid,title,nick,price,num"),
            ("num_iid", "11223344"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            expected(&params, "helloworld", "md5").as_deref(),
            Some("66987CB115214E59E6EC978214934FB8")
        );
        assert_eq!(expected(&params, "helloworld", "sha1"), None);
    }
}
