//! Secrets: values that must never be printed, logged, returned to a guest or written to storage.

use std::fmt;

/// A credential (app secret, session key, access token).
///
/// It has no `Display`, its `Debug` prints `***`, and it is not `Serialize`: the only way to the
/// value is [`Secret::expose`], which the signing and auth code calls at the last moment.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value read from the environment.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for signing or for an outgoing request. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads environment variables for secrets; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the secret in environment variable `var` (named in the config as `*_env`): an error
/// names the variable, never a value.
pub(crate) fn read_secret(var: &str, env: EnvLookup<'_>) -> Result<Secret, String> {
    if var.trim().is_empty() {
        return Err("must name an environment variable".to_owned());
    }
    match env(var) {
        Some(value) if !value.trim().is_empty() => Ok(Secret::new(value)),
        Some(_) => Err(format!("environment variable {var} is empty")),
        None => Err(format!("environment variable {var} is not set")),
    }
}

/// Replaces every occurrence of any of `secrets` in `bytes` with `***`.
///
/// Used on everything that flows from the network or a guest towards a place someone can read:
/// responses handed to a guest (a platform, or an allowed host, may echo a request back), guest
/// log lines and error messages. Secrets shorter than 4 bytes are skipped: they would redact noise.
pub fn redact_bytes(bytes: &[u8], secrets: &[Secret]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for secret in secrets {
        let needle = secret.expose().as_bytes();
        if needle.len() < 4 {
            continue;
        }
        let haystack = out.as_deref().unwrap_or(bytes);
        if let Some(replaced) = replace_all(haystack, needle, b"***") {
            out = Some(replaced);
        }
    }
    out
}

/// [`redact_bytes`] for text.
pub fn redact_str(text: &str, secrets: &[Secret]) -> String {
    match redact_bytes(text.as_bytes(), secrets) {
        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        None => text.to_owned(),
    }
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    let first = find(haystack, needle, 0)?;
    let mut out = Vec::with_capacity(haystack.len());
    let mut start = 0;
    let mut at = Some(first);
    while let Some(i) = at {
        out.extend_from_slice(&haystack[start..i]);
        out.extend_from_slice(with);
        start = i + needle.len();
        at = find(haystack, needle, start);
    }
    out.extend_from_slice(&haystack[start..]);
    Some(out)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if haystack.len() < from + needle.len() {
        return None;
    }
    // Every response body is searched for every secret: memchr's substring search, not a
    // comparison at each position (which was ~8 % of a reused-instance send's CPU).
    memchr::memmem::find(&haystack[from..], needle).map(|i| i + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{:?}", Some(&secret)), "Some(***)");
    }

    #[test]
    fn redacts_every_occurrence_of_every_secret() {
        let a = Secret::new("sess-abc");
        let b = Secret::new("tok-xyz1");
        let text = "x sess-abc y tok-xyz1 z sess-abc";
        assert_eq!(
            redact_str(text, &[a.clone(), b.clone()]),
            "x *** y *** z ***"
        );
        assert_eq!(
            redact_str("nothing here", std::slice::from_ref(&a)),
            "nothing here"
        );
        assert!(redact_bytes(b"clean", &[a]).is_none());
    }
}
