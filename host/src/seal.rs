//! Secrets at rest, sealed: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) with a random
//! 192-bit nonce per value, and associated data that binds each sealed value to the place it
//! belongs (plugin, account, field), so that a value copied to another row does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

/// Bytes of a nonce, stored in front of each ciphertext.
const NONCE_BYTES: usize = 24;

/// A key that seals and opens values.
pub(crate) struct SealKey {
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    /// A key of exactly 32 bytes (a master key).
    pub(crate) fn new(bytes: &[u8; 32]) -> SealKey {
        SealKey {
            cipher: XChaCha20Poly1305::new(bytes.into()),
        }
    }

    /// A key derived from a secret with HKDF-SHA256, one per `purpose`: for values only holders
    /// of that secret (every host of the same config) may read.
    pub(crate) fn derive(secret: &[u8], purpose: &str) -> SealKey {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"coupon-host seal v1"), secret)
            .expand(purpose.as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SealKey::new(&key)
    }

    /// `plaintext` sealed, bound to `aad`: nonce, then ciphertext and tag.
    pub(crate) fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message that fits in memory");
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of a value sealed with this key and `aad`; `None` when the key or the
    /// associated data differ, or the value was altered.
    pub(crate) fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }
}

/// Associated data naming where a value belongs: its parts joined by NUL.
pub(crate) fn place(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_what_it_sealed_only_with_the_same_key_and_place() {
        let key = SealKey::new(&[7; 32]);
        let here = place(&["taobao", "shop-a", "session"]);
        let sealed = key.seal(b"s3cret-session", &here);
        assert!(
            !sealed.windows(6).any(|w| w == b"s3cret"),
            "sealed in clear"
        );
        assert_eq!(
            key.open(&sealed, &here).as_deref(),
            Some(&b"s3cret-session"[..])
        );
        assert_eq!(
            key.open(&sealed, &place(&["taobao", "shop-b", "session"])),
            None
        );
        assert_eq!(SealKey::new(&[8; 32]).open(&sealed, &here), None);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&altered, &here), None);
        assert_eq!(key.open(b"short", &here), None);
        // A fresh nonce each time: sealing twice never gives the same bytes.
        assert_ne!(key.seal(b"x", &here), key.seal(b"x", &here));
    }

    #[test]
    fn derived_keys_differ_by_secret_and_purpose() {
        let here = place(&["p"]);
        let sealed = SealKey::derive(b"secret", "tokens").seal(b"t", &here);
        assert!(
            SealKey::derive(b"secret", "tokens")
                .open(&sealed, &here)
                .is_some()
        );
        assert!(
            SealKey::derive(b"secret", "other")
                .open(&sealed, &here)
                .is_none()
        );
        assert!(
            SealKey::derive(b"other", "tokens")
                .open(&sealed, &here)
                .is_none()
        );
    }
}
