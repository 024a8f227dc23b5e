//! Platform idempotency ids derived from the request's idempotency key (docs/PLATFORMS.md).

use sha2::{Digest, Sha256};

/// How many hex characters of the digest an id keeps.
const ID_CHARS: usize = 32;

/// The platform idempotency id of one recipient of a send: the first 32 hex characters of
/// `sha256(idempotency_key + "\n" + recipient)`.
///
/// It is the same on every retry of the same send and differs between recipients, so a platform
/// that deduplicates by it (Tmall `out_id`, ALSC `request_id`) issues each recipient's coupon at
/// most once however often the send is repeated.
///
/// ```
/// let id = top_common::recipient_idempotency_id("campaign-7:batch-1", "open-1");
/// assert_eq!(id.len(), 32);
/// assert_eq!(id, top_common::recipient_idempotency_id("campaign-7:batch-1", "open-1"));
/// assert_ne!(id, top_common::recipient_idempotency_id("campaign-7:batch-1", "open-2"));
/// ```
pub fn recipient_idempotency_id(idempotency_key: &str, recipient: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(idempotency_key.as_bytes());
    hasher.update(b"\n");
    hasher.update(recipient.as_bytes());
    let digest = hasher.finalize();
    let mut id = String::with_capacity(ID_CHARS);
    for byte in digest.iter().take(ID_CHARS / 2) {
        id.push(hex_digit(byte >> 4));
        id.push(hex_digit(byte & 0x0f));
    }
    id
}

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(nibble & 0x0f)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_the_documented_digest() {
        // printf 'k\nopen' | sha256sum
        assert_eq!(
            recipient_idempotency_id("k", "open"),
            "529f37eeb17cb2e6758be7434dc49348"
        );
        // printf 'campaign-7:batch-1\nopen-1' | sha256sum
        assert_eq!(
            recipient_idempotency_id("campaign-7:batch-1", "open-1"),
            "331d3a527a4593403ba2f0b4c6d5cc64"
        );
        assert_eq!(
            recipient_idempotency_id("", ""),
            // sha256("\n")
            "01ba4719c80b6fe911b091a7c05124b6"
        );
    }

    #[test]
    fn is_stable_and_distinct() {
        let a = recipient_idempotency_id("campaign-7:batch-1", "张三");
        assert_eq!(a, recipient_idempotency_id("campaign-7:batch-1", "张三"));
        assert_ne!(a, recipient_idempotency_id("campaign-7:batch-1", "李四"));
        assert_ne!(a, recipient_idempotency_id("campaign-8:batch-1", "张三"));
        // The separator keeps (key, recipient) pairs apart.
        assert_ne!(
            recipient_idempotency_id("ab", "c"),
            recipient_idempotency_id("a", "bc")
        );
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
