//! A recipients file, read as a stream: one `KIND:ID` per line (blank lines and `#` comments
//! skipped), or CSV whose header names a `recipient` column. And the pure steps from its lines
//! to batches: which lines are rejected, and how accepted recipients fill batches.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::Reject;
use crate::types::{Recipient, RecipientKind};

/// The longest line read from a recipients file.
const MAX_LINE_BYTES: usize = 4096;

/// How recipients are laid out in the file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Layout {
    /// One `KIND:ID` per line.
    Lines,
    /// CSV with a header; the recipient is in this column.
    Csv { column: usize },
}

/// Calls `each` with every line of the file (its number from 1, its raw bytes, its text
/// trimmed), in order, until it answers `false`. A line over 64 KiB is cut into pieces.
fn each_line(path: &Path, mut each: impl FnMut(u64, &[u8], &str) -> bool) -> Result<()> {
    let unreadable =
        |e: std::io::Error| Error::InvalidRequest(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut number = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = reader
            .by_ref()
            .take(MAX_LINE_BYTES as u64 * 16)
            .read_until(b'\n', &mut line)
            .map_err(unreadable)?;
        if read == 0 {
            return Ok(());
        }
        number += 1;
        let text = String::from_utf8_lossy(&line);
        if !each(number, &line, text.trim()) {
            return Ok(());
        }
    }
}

/// Neither a recipient nor a header: blank, or a `#` comment.
fn is_blank(text: &str) -> bool {
    text.is_empty() || text.starts_with('#')
}

/// Reads the file once: its SHA-256, its layout and how many recipient lines it has.
pub(crate) fn survey(path: &Path) -> Result<(String, Layout, u64)> {
    let mut hash = Sha256::new();
    let mut layout = None;
    let mut total = 0u64;
    each_line(path, |_, raw, text| {
        hash.update(raw);
        if is_blank(text) {
            return true;
        }
        if layout.is_none() {
            if let Some(column) = csv_header(text) {
                // The header is not a recipient.
                layout = Some(Layout::Csv { column });
                return true;
            }
            layout = Some(Layout::Lines);
        }
        total += 1;
        true
    })?;
    Ok((
        hex::encode(hash.finalize()),
        layout.unwrap_or(Layout::Lines),
        total,
    ))
}

/// A CSV header naming a `recipient` column: that column's index.
fn csv_header(first: &str) -> Option<usize> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(first.as_bytes());
    let record = reader.records().next()?.ok()?;
    record
        .iter()
        .position(|field| field.trim().eq_ignore_ascii_case("recipient"))
}

/// One parsed line.
pub(crate) enum Parsed {
    Recipient(u64, Recipient),
    Rejected(u64, String, String),
}

/// Streams the file's recipient lines in order.
pub(crate) fn read_lines(
    path: &Path,
    layout: Layout,
    mut emit: impl FnMut(Parsed) -> bool,
) -> Result<()> {
    let mut header_seen = false;
    each_line(path, |number, line, text| {
        if is_blank(text) {
            return true;
        }
        let field = match layout {
            Layout::Lines => Some(text.to_owned()),
            Layout::Csv { .. } if !header_seen => {
                header_seen = true;
                return true;
            }
            Layout::Csv { column } => csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(text.as_bytes())
                .records()
                .next()
                .and_then(|r| r.ok())
                .and_then(|record| record.get(column).map(|f| f.trim().to_owned())),
        };
        let shown: String = text.chars().take(200).collect();
        let parsed = match field {
            None => Parsed::Rejected(number, shown, "no recipient column on this line".into()),
            Some(_) if line.len() > MAX_LINE_BYTES => {
                Parsed::Rejected(number, shown, "line too long".into())
            }
            Some(field) => match field.parse::<Recipient>() {
                Ok(recipient) => Parsed::Recipient(number, recipient),
                Err(e) => Parsed::Rejected(number, shown, e.to_string()),
            },
        };
        emit(parsed)
    })
}

/// What becomes of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// A recipient the plugin takes, to accept (unless an earlier line listed it).
    Candidate(u64, Recipient),
    /// Not sent.
    Rejected(Reject),
}

/// Classifies a parsed line for a plugin taking `kinds` on `platform`.
pub(crate) fn classify(parsed: Parsed, kinds: &[RecipientKind], platform: &str) -> Line {
    match parsed {
        Parsed::Recipient(line, recipient) if !kinds.contains(&recipient.kind()) => {
            let reason = format!(
                "{platform} takes {} recipients, not {}",
                kinds
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                recipient.kind().as_str()
            );
            Line::Rejected(Reject {
                line,
                text: recipient.to_string(),
                state: "rejected",
                reason,
            })
        }
        Parsed::Recipient(line, recipient) => Line::Candidate(line, recipient),
        Parsed::Rejected(line, text, reason) => Line::Rejected(Reject {
            line,
            text,
            state: "rejected",
            reason,
        }),
    }
}

/// Fills batches of `size` from accepted recipients, in order: batch `n` holds the `n`-th group
/// of `size` accepted recipients, so the same file always makes the same batches.
#[derive(Debug)]
pub(crate) struct Batcher {
    size: u64,
    /// Recipients accepted so far.
    accepted: u64,
}

impl Batcher {
    pub(crate) fn new(size: u64) -> Batcher {
        Batcher {
            size: size.max(1),
            accepted: 0,
        }
    }

    /// Recipients accepted so far (what the ledger numbers the next one from).
    pub(crate) fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Counts `n` more accepted recipients; returns the batches they completed.
    pub(crate) fn accept(&mut self, n: u64) -> std::ops::Range<u64> {
        let full_before = self.accepted / self.size;
        self.accepted += n;
        full_before..self.accepted / self.size
    }

    /// At the end of the file: the last, partial batch, if any.
    pub(crate) fn finish(&self) -> Option<u64> {
        (!self.accepted.is_multiple_of(self.size)).then_some(self.accepted / self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.txt");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn lines(path: &Path) -> Vec<String> {
        let (_, layout, _) = survey(path).unwrap();
        let mut out = Vec::new();
        read_lines(path, layout, |parsed| {
            out.push(match parsed {
                Parsed::Recipient(line, r) => format!("{line}:{r}"),
                Parsed::Rejected(line, text, _) => format!("{line}!{text}"),
            });
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn reads_lines_skipping_blanks_and_comments_and_rejecting_the_malformed() {
        let (_dir, path) = write("# list\nnick:a\n\n  nick:b  \nbogus\nopen-id:c\n");
        let (sha, _, total) = survey(&path).unwrap();
        assert_eq!(total, 4);
        assert_eq!(sha.len(), 64);
        assert_eq!(
            lines(&path),
            ["2:nick:a", "4:nick:b", "5!bogus", "6:open-id:c"]
        );
    }

    #[test]
    fn reads_the_recipient_column_of_a_csv_with_a_header() {
        let (_dir, path) = write("name,Recipient\nx,nick:a\n\"y,z\",nick:b\nonly\n");
        let (_, _, total) = survey(&path).unwrap();
        assert_eq!(total, 3, "the header is not a recipient");
        assert_eq!(lines(&path), ["2:nick:a", "3:nick:b", "4!only"]);
    }

    #[test]
    fn a_kind_the_plugin_does_not_take_is_rejected_with_the_reason() {
        let kinds = [RecipientKind::OpenId];
        let line = classify(
            Parsed::Recipient(3, Recipient::Nick("a".into())),
            &kinds,
            "douyin",
        );
        assert_eq!(
            line,
            Line::Rejected(Reject {
                line: 3,
                text: "nick:a".into(),
                state: "rejected",
                reason: "douyin takes open-id recipients, not nick".into(),
            })
        );
        let ok = classify(
            Parsed::Recipient(4, Recipient::OpenId("o".into())),
            &kinds,
            "douyin",
        );
        assert_eq!(ok, Line::Candidate(4, Recipient::OpenId("o".into())));
    }

    #[test]
    fn batches_fill_in_order_and_the_last_may_be_partial() {
        let mut batcher = Batcher::new(3);
        assert_eq!(batcher.accept(2), 0..0);
        assert_eq!(batcher.accept(2), 0..1);
        assert_eq!(batcher.accept(5), 1..3);
        assert_eq!(batcher.accepted(), 9);
        assert_eq!(batcher.finish(), None);
        assert_eq!(batcher.accept(1), 3..3);
        assert_eq!(batcher.finish(), Some(3));
    }
}
