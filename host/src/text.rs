//! Small helpers for text and files that several modules share.

use std::path::Path;

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
pub(crate) fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max` bytes (on a char boundary), with `…` added when cut. Guest
/// strings are bounded this way before they reach logs and JSON: an adapter could return
/// megabytes.
pub(crate) fn bounded(mut text: String, max: usize) -> String {
    if text.len() > max {
        let end = prefix(&text, max).len();
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Writes `bytes` to `file` so that a reader sees the old content or the whole new one, never
/// a part: to a temporary file beside it, then renamed over it. Creates the folder.
pub(crate) fn write_atomically(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A name of its own per write: two writers of the same file at once (two requests posting
    // the same campaign list) must not write, and rename, the same partial file.
    let tmp = file.with_extension(format!(
        "tmp{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_on_char_boundaries_and_marks_the_cut() {
        assert_eq!(prefix("张三", 4), "张");
        assert_eq!(prefix("abc", 10), "abc");
        assert_eq!(bounded("张三李四".to_owned(), 7), "张三…");
        assert_eq!(bounded("short".to_owned(), 7), "short");
    }

    #[test]
    fn writes_whole_files_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sub/f.txt");
        write_atomically(&file, b"one").unwrap();
        write_atomically(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
            1
        );
    }
}
