//! Which files `POST /v1/campaigns` may name in `recipients_file`.
//!
//! Only files inside `[serve] campaigns_dir`, named relative to it: the path is checked as
//! text (relative, no `..`), then opened once beneath the folder, following no symbolic link
//! (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), without blocking; the opened
//! descriptor must be a regular file no larger than the cap. The campaign reads that
//! descriptor, never the path again, so nothing swapped in at the path afterwards is read; a
//! device (`/dev/zero`), a FIFO or a folder is refused without a byte read. Without
//! `campaigns_dir` no file is taken: the recipients come inline.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use axum::http::StatusCode;

use super::ApiError;

/// The longest `recipients_file` accepted, in bytes of text.
const MAX_NAME_BYTES: usize = 1024;

/// Opens `requested` inside `dir` (canonical) or says why not, as a `422
/// invalid-recipients-file` (`413 payload-too-large` for a file over `max_bytes`): its path
/// (for the campaign's id and messages) and the opened file.
pub(crate) fn resolve(
    dir: Option<&Path>,
    requested: &str,
    max_bytes: u64,
) -> Result<(PathBuf, File), ApiError> {
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
    let (file, metadata) = crate::open::open_beneath(dir, path).map_err(|error| {
        let why = match error.kind() {
            std::io::ErrorKind::NotFound => "not found in the campaigns folder".to_owned(),
            std::io::ErrorKind::InvalidInput => error.to_string(),
            other => other.to_string(),
        };
        refuse(format!("recipients_file {shown:?}: {why}"))
    })?;
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
    let named: PathBuf = path
        .components()
        .filter(|part| matches!(part, Component::Normal(_)))
        .collect();
    Ok((dir.join(named), file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(result: Result<(PathBuf, File), ApiError>) -> String {
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

        let ok = |name: &str| resolve(Some(&dir), name, 1 << 20).unwrap().0;
        assert_eq!(ok("list.txt"), dir.join("list.txt"));
        assert_eq!(ok("./sub/more.txt"), dir.join("sub/more.txt"));
        // What was opened is read, whatever the path names later.
        let (_, mut opened) = resolve(Some(&dir), "list.txt", 1 << 20).unwrap();
        std::fs::rename(root.path().join("outside.txt"), dir.join("list.txt")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut opened, &mut text).unwrap();
        assert_eq!(text, "nick:a\n");
        std::fs::write(root.path().join("outside.txt"), "nick:c\n").unwrap();
        // A FIFO is refused at once, without blocking on a writer that never comes.
        let fifo = dir.join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let error = resolve(Some(&dir), "fifo", 1 << 20).expect_err("a FIFO");
        assert!(
            error.body["message"]
                .as_str()
                .unwrap()
                .contains("a FIFO (named pipe)"),
            "{:?}",
            error.body
        );

        let refused = "422 \"invalid-recipients-file\"";
        for name in [
            "",
            "/etc/passwd",
            "../outside.txt",
            "sub/../../outside.txt",
            "sub/../list.txt",
            "escape.txt",
            // A link, even to a file inside: no link is followed.
            "alias.txt",
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
