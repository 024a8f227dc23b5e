//! Which files `POST /v1/campaigns` may name in `recipients_file`.
//!
//! Only files inside `[serve] campaigns_dir`, named relative to it: the path is checked as
//! text (relative, no `..`), then canonicalised (so a symlink cannot lead out of the folder),
//! then its metadata must say a regular file no larger than the cap. All of this happens before
//! the file is opened, so a device (`/dev/zero`), a FIFO or a folder is refused without a
//! byte read and without the open blocking. Without `campaigns_dir` no file is taken: the
//! recipients come inline.

use std::path::{Component, Path, PathBuf};

use axum::http::StatusCode;

use super::ApiError;

/// The longest `recipients_file` accepted, in bytes of text.
const MAX_NAME_BYTES: usize = 1024;

/// Resolves `requested` inside `dir` (canonical) or says why not, as a `422
/// invalid-recipients-file` (`413 payload-too-large` for a file over `max_bytes`).
pub(crate) fn resolve(
    dir: Option<&Path>,
    requested: &str,
    max_bytes: u64,
) -> Result<PathBuf, ApiError> {
    let refuse = |message: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-recipients-file",
            message,
        )
    };
    let Some(dir) = dir else {
        return Err(refuse(
            "this server takes no recipients_file ([serve] campaigns_dir is not set): \
             send the recipients inline"
                .to_owned(),
        ));
    };
    let shown: String = requested.chars().take(120).collect();
    if requested.is_empty()
        || requested.len() > MAX_NAME_BYTES
        || requested.chars().any(char::is_control)
    {
        return Err(refuse(format!(
            "recipients_file {shown:?}: give a file name of 1 to {MAX_NAME_BYTES} bytes without control characters"
        )));
    }
    let path = Path::new(requested);
    let plain = path
        .components()
        .all(|part| matches!(part, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(refuse(format!(
            "recipients_file {shown:?}: name a file inside the campaigns folder, relative to it, without `..`"
        )));
    }
    let canonical = std::fs::canonicalize(dir.join(path)).map_err(|error| {
        refuse(format!(
            "recipients_file {shown:?}: not found in the campaigns folder ({})",
            error.kind()
        ))
    })?;
    if !canonical.starts_with(dir) {
        return Err(refuse(format!(
            "recipients_file {shown:?} leads outside the campaigns folder (a symbolic link?)"
        )));
    }
    let metadata = std::fs::metadata(&canonical)
        .map_err(|error| refuse(format!("recipients_file {shown:?}: {}", error.kind())))?;
    if !metadata.is_file() {
        return Err(refuse(format!(
            "recipients_file {shown:?} is not a regular file"
        )));
    }
    if metadata.len() > max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            format!(
                "recipients_file {shown:?} has {} bytes; this server takes at most {max_bytes} ([serve] max_campaign_file_mib)",
                metadata.len()
            ),
        ));
    }
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(result: Result<PathBuf, ApiError>) -> String {
        let error = result.expect_err("refused");
        format!("{} {}", error.status.as_u16(), error.body["kind"])
    }

    #[test]
    fn only_regular_files_inside_the_folder_under_the_cap() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("campaigns");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let dir = std::fs::canonicalize(&dir).unwrap();
        std::fs::write(dir.join("list.txt"), "nick:a\n").unwrap();
        std::fs::write(dir.join("sub/more.txt"), "nick:b\n").unwrap();
        std::fs::write(root.path().join("outside.txt"), "nick:c\n").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside.txt"), dir.join("escape.txt"))
            .unwrap();
        std::os::unix::fs::symlink(dir.join("list.txt"), dir.join("alias.txt")).unwrap();

        let ok = |name: &str| resolve(Some(&dir), name, 1 << 20).unwrap();
        assert_eq!(ok("list.txt"), dir.join("list.txt"));
        assert_eq!(ok("./sub/more.txt"), dir.join("sub/more.txt"));
        assert_eq!(ok("alias.txt"), dir.join("list.txt"));

        let refused = "422 \"invalid-recipients-file\"";
        for name in [
            "",
            "/etc/passwd",
            "../outside.txt",
            "sub/../../outside.txt",
            "sub/../list.txt",
            "escape.txt",
            "sub",
            "missing.txt",
            "list.txt\0",
            "/dev/zero",
        ] {
            assert_eq!(
                kind(resolve(Some(&dir), name, 1 << 20)),
                refused,
                "{name:?}"
            );
        }
        assert_eq!(kind(resolve(None, "list.txt", 1 << 20)), refused);
        assert_eq!(
            kind(resolve(Some(&dir), "list.txt", 3)),
            "413 \"payload-too-large\""
        );
    }
}
