//! A recipients file, read as a stream: one `KIND:ID` per line (blank lines and `#` comments
//! skipped), or CSV whose header names a `recipient` column. And the pure steps from its lines
//! to batches: which lines are rejected, and how accepted recipients fill batches.
//!
//! Lines are split at `\n` only, and numbered as `wc -l` counts them (a last line without a
//! newline is one more). A line longer than [`MAX_LINE_BYTES`] is rejected whole, once: the
//! reader skips to its end and never takes a part of it for a line. Text is UTF-8 unless the
//! campaign says otherwise ([`Encoding`]), decoded strictly: a line that is not valid in the
//! encoding is rejected, naming the byte where it stops being valid. A UTF-8 byte-order mark
//! at the start of the file is taken (and says the file is UTF-8).

use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Read, Write};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::Reject;
use crate::types::{Recipient, RecipientKind};

/// The longest line of a recipients file, in bytes (its newline not counted).
pub const MAX_LINE_BYTES: usize = 4096;

/// The characters of a rejected line the report keeps.
const SHOWN_CHARS: usize = 200;

/// The UTF-8 byte-order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The text encoding of a recipients file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoding {
    /// UTF-8 (the default).
    #[default]
    Utf8,
    /// GB18030, the Chinese national standard (a superset of GBK).
    Gb18030,
    /// GBK, as Chinese spreadsheet exports often are (decoded as GB18030, its superset).
    Gbk,
}

impl Encoding {
    /// Its name, as `--encoding` and the HTTP API's `"encoding"` take it.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Gb18030 => "gb18030",
            Encoding::Gbk => "gbk",
        }
    }
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Gb18030 => "GB18030",
            Encoding::Gbk => "GBK",
        })
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "gb18030" => Ok(Encoding::Gb18030),
            "gbk" => Ok(Encoding::Gbk),
            _ => Err(format!(
                "unknown encoding {:?}: use utf-8, gb18030 or gbk",
                name.chars().take(32).collect::<String>()
            )),
        }
    }
}

/// `bytes` as text in `encoding`, or the offset of the first byte that is not valid in it.
fn decode(bytes: &[u8], encoding: Encoding) -> std::result::Result<Cow<'_, str>, usize> {
    match encoding {
        Encoding::Utf8 => std::str::from_utf8(bytes)
            .map(Cow::Borrowed)
            .map_err(|e| e.valid_up_to()),
        Encoding::Gb18030 | Encoding::Gbk => {
            use encoding_rs::DecoderResult;
            let mut decoder = encoding_rs::GB18030.new_decoder_without_bom_handling();
            let room = decoder
                .max_utf8_buffer_length_without_replacement(bytes.len())
                .unwrap_or(bytes.len() * 4);
            let mut text = String::with_capacity(room);
            match decoder.decode_to_string_without_replacement(bytes, &mut text, true) {
                (DecoderResult::InputEmpty, _) => Ok(Cow::Owned(text)),
                (DecoderResult::Malformed(bad, after), read) => {
                    Err(read - usize::from(bad) - usize::from(after))
                }
                (DecoderResult::OutputFull, read) => Err(read),
            }
        }
    }
}

/// How recipients are laid out in the file.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Layout {
    /// One `KIND:ID` per line.
    Lines,
    /// CSV with a header; the recipient is in this column.
    Csv { column: usize },
}

/// Calls `each` with every line of `reader` (its number from 1, at most [`MAX_LINE_BYTES`] of
/// its bytes without the newline, whether it was longer), in order, until it answers `false`.
/// A longer line is read to its end and handed over once; memory stays bounded by the limit.
fn each_line(
    mut reader: impl BufRead,
    mut each: impl FnMut(u64, &[u8], bool) -> bool,
) -> io::Result<()> {
    let mut number = 0u64;
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let mut any = false;
        let mut too_long = false;
        loop {
            let buffer = reader.fill_buf()?;
            if buffer.is_empty() {
                break;
            }
            any = true;
            let (end, newline) = match memchr::memchr(b'\n', buffer) {
                Some(at) => (at, true),
                None => (buffer.len(), false),
            };
            let room = MAX_LINE_BYTES - line.len();
            if end > room {
                too_long = true;
            }
            line.extend_from_slice(&buffer[..end.min(room)]);
            reader.consume(if newline { end + 1 } else { end });
            if newline {
                break;
            }
        }
        if !any {
            return Ok(());
        }
        number += 1;
        if !each(number, &line, too_long) {
            return Ok(());
        }
    }
}

/// One line of the file as the parser sees it.
enum Entry<'a> {
    /// Blank, or a `#` comment.
    Blank,
    /// Its text, trimmed.
    Text(&'a str),
    /// Not read as text: what it shows (lossily decoded, cut) and why.
    Unreadable { shown: String, reason: String },
}

/// The first characters of `text`, for the report.
fn shown(text: &str) -> String {
    text.trim().chars().take(SHOWN_CHARS).collect()
}

/// Calls `each` with every line of `reader` as an [`Entry`], until it answers `false`.
fn each_entry(
    reader: impl BufRead,
    mut encoding: Encoding,
    mut each: impl FnMut(u64, Entry<'_>) -> bool,
) -> io::Result<()> {
    each_line(reader, |number, mut bytes, too_long| {
        if number == 1
            && let Some(rest) = bytes.strip_prefix(BOM)
        {
            bytes = rest;
            encoding = Encoding::Utf8;
        }
        if too_long {
            return each(
                number,
                Entry::Unreadable {
                    shown: shown(&String::from_utf8_lossy(bytes)),
                    reason: format!("the line is longer than {MAX_LINE_BYTES} bytes"),
                },
            );
        }
        match decode(bytes, encoding) {
            Ok(text) => {
                let text = text.trim();
                each(
                    number,
                    if is_blank(text) {
                        Entry::Blank
                    } else {
                        Entry::Text(text)
                    },
                )
            }
            // A comment is skipped whatever its bytes.
            Err(_) if bytes.trim_ascii_start().starts_with(b"#") => each(number, Entry::Blank),
            Err(offset) => each(
                number,
                Entry::Unreadable {
                    shown: shown(&String::from_utf8_lossy(bytes)),
                    reason: format!("not valid {encoding} at byte offset {offset} of the line"),
                },
            ),
        }
    })
}

/// Neither a recipient nor a header: blank, or a `#` comment.
fn is_blank(text: &str) -> bool {
    text.is_empty() || text.starts_with('#')
}

/// What one reading of the whole file found.
#[derive(Debug)]
pub(crate) struct Survey {
    /// The SHA-256 of its bytes.
    pub(crate) sha256: String,
    pub(crate) layout: Layout,
    /// Recipient lines (rejected ones too; not blank lines, comments or a CSV header).
    pub(crate) total: u64,
    /// Lines not valid in the encoding, and the first of them (its number and why).
    pub(crate) undecodable: u64,
    pub(crate) first_undecodable: Option<(u64, String)>,
}

/// A reader that hashes what it reads and copies it to `copy`.
struct Tee<R, W> {
    inner: R,
    copy: W,
    hash: Sha256,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Reads the file once, to its end, copying every byte to `copy`: its SHA-256, its layout and
/// how many recipient lines it has, and how many are not valid in `encoding`.
pub(crate) fn survey(input: impl Read, copy: impl Write, encoding: Encoding) -> io::Result<Survey> {
    let mut tee = Tee {
        inner: input,
        copy,
        hash: Sha256::new(),
    };
    let mut layout = None;
    let mut total = 0u64;
    let mut undecodable = 0u64;
    let mut first_undecodable = None;
    each_entry(
        BufReader::with_capacity(1 << 16, &mut tee),
        encoding,
        |number, entry| {
            match entry {
                Entry::Blank => return true,
                Entry::Text(text) if layout.is_none() => {
                    if let Some(column) = csv_header(text) {
                        // The header is not a recipient.
                        layout = Some(Layout::Csv { column });
                        return true;
                    }
                }
                Entry::Text(_) => {}
                Entry::Unreadable { reason, .. } => {
                    if reason.starts_with("not valid") {
                        undecodable += 1;
                        first_undecodable.get_or_insert((number, reason));
                    }
                }
            }
            layout.get_or_insert(Layout::Lines);
            total += 1;
            true
        },
    )?;
    tee.copy.flush()?;
    Ok(Survey {
        sha256: hex::encode(tee.hash.finalize()),
        layout: layout.unwrap_or(Layout::Lines),
        total,
        undecodable,
        first_undecodable,
    })
}

impl Survey {
    /// Refuses a file most of whose recipient lines are not valid in `encoding`: it is in
    /// another one, and read in this one every line would be rejected (or, decoded lossily,
    /// sent under a garbled id).
    pub(crate) fn check_encoding(&self, shown: &str, encoding: Encoding) -> Result<()> {
        if self.undecodable == 0 || self.undecodable * 2 <= self.total {
            return Ok(());
        }
        let (line, reason) = self.first_undecodable.clone().unwrap_or_default();
        let other = if encoding == Encoding::Utf8 {
            "gb18030 or gbk"
        } else {
            "utf-8 or gb18030"
        };
        Err(Error::InvalidRequest(format!(
            "{shown} is not {encoding} text: {} of its {} recipient lines are not (the first, line \
             {line}: {reason}); give its encoding ({other}: `--encoding`, or \"encoding\" over HTTP)",
            self.undecodable, self.total
        )))
    }
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
    input: impl Read,
    layout: Layout,
    encoding: Encoding,
    mut emit: impl FnMut(Parsed) -> bool,
) -> io::Result<()> {
    let mut header_seen = false;
    each_entry(
        BufReader::with_capacity(1 << 16, input),
        encoding,
        |number, entry| {
            let text = match entry {
                Entry::Blank => return true,
                Entry::Unreadable { shown, reason } => {
                    return emit(Parsed::Rejected(number, shown, reason));
                }
                Entry::Text(text) => text,
            };
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
            let parsed = match field {
                None => Parsed::Rejected(
                    number,
                    shown(text),
                    "no recipient column on this line".into(),
                ),
                Some(field) => match field.parse::<Recipient>() {
                    Ok(recipient) => Parsed::Recipient(number, recipient),
                    Err(e) => Parsed::Rejected(number, shown(text), e.to_string()),
                },
            };
            emit(parsed)
        },
    )
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

    fn survey_of(bytes: &[u8], encoding: Encoding) -> Survey {
        let mut copy = Vec::new();
        let survey = survey(bytes, &mut copy, encoding).unwrap();
        assert_eq!(copy, bytes, "the copy is the file, byte for byte");
        survey
    }

    fn parsed(bytes: &[u8], encoding: Encoding) -> Vec<Parsed> {
        let layout = survey_of(bytes, encoding).layout;
        let mut out = Vec::new();
        read_lines(bytes, layout, encoding, |parsed| {
            out.push(parsed);
            true
        })
        .unwrap();
        out
    }

    fn lines_in(bytes: &[u8], encoding: Encoding) -> Vec<String> {
        parsed(bytes, encoding)
            .into_iter()
            .map(|parsed| match parsed {
                Parsed::Recipient(line, r) => format!("{line}:{r}"),
                Parsed::Rejected(line, text, _) => format!("{line}!{text}"),
            })
            .collect()
    }

    fn lines(text: &str) -> Vec<String> {
        lines_in(text.as_bytes(), Encoding::Utf8)
    }

    fn reasons(bytes: &[u8], encoding: Encoding) -> Vec<(u64, String)> {
        parsed(bytes, encoding)
            .into_iter()
            .filter_map(|parsed| match parsed {
                Parsed::Rejected(line, _, reason) => Some((line, reason)),
                Parsed::Recipient(..) => None,
            })
            .collect()
    }

    #[test]
    fn reads_lines_skipping_blanks_and_comments_and_rejecting_the_malformed() {
        let text = "# list\nnick:a\n\n  nick:b  \nbogus\nopen-id:c\n";
        let survey = survey_of(text.as_bytes(), Encoding::Utf8);
        assert_eq!(survey.total, 4);
        assert_eq!(survey.sha256.len(), 64);
        assert_eq!(
            lines(text),
            ["2:nick:a", "4:nick:b", "5!bogus", "6:open-id:c"]
        );
    }

    #[test]
    fn reads_the_recipient_column_of_a_csv_with_a_header() {
        let text = "name,Recipient\nx,nick:a\n\"y,z\",nick:b\nonly\n";
        assert_eq!(
            survey_of(text.as_bytes(), Encoding::Utf8).total,
            3,
            "the header is not a recipient"
        );
        assert_eq!(lines(text), ["2:nick:a", "3:nick:b", "4!only"]);
    }

    /// The issue's `printf 'nick:legit1\n#%s%s\nnick:legit2\n' "$(head -c 65535 /dev/zero |
    /// tr '\0' x)" nick:injected`: the long comment is one line, rejected whole.
    #[test]
    fn a_line_over_the_limit_is_rejected_whole_once_with_its_number() {
        let text = format!(
            "nick:legit1\n#{}nick:injected\nnick:legit2\n",
            "x".repeat(65_535)
        );
        let got = lines(&text);
        assert_eq!(got.len(), 3, "{:?}", &got);
        assert_eq!(got[0], "1:nick:legit1");
        assert!(got[1].starts_with("2!#xxx"), "{}", &got[1][..20]);
        assert_eq!(got[2], "3:nick:legit2");
        assert_eq!(
            reasons(text.as_bytes(), Encoding::Utf8),
            [(2, "the line is longer than 4096 bytes".to_owned())]
        );
        // At the limit exactly, a line is read; one byte more, and it is not.
        let id = "x".repeat(MAX_LINE_BYTES - "nick:".len());
        let at = format!("nick:{id}\nnick:{id}y");
        assert_eq!(
            reasons(at.as_bytes(), Encoding::Utf8)
                .into_iter()
                .map(|(line, reason)| (line, reason.contains("longer than 4096 bytes")))
                .collect::<Vec<_>>(),
            // The first is read, then refused for its id; the second is not read.
            [(1, false), (2, true)]
        );
    }

    #[test]
    fn a_line_not_valid_utf8_is_rejected_naming_the_byte() {
        let bytes = b"nick:a\nnick:b\xffc\n# \xfe comment\nnick:d\r\n";
        assert_eq!(
            reasons(bytes, Encoding::Utf8),
            [(2, "not valid UTF-8 at byte offset 6 of the line".to_owned())]
        );
        assert_eq!(lines_in(bytes, Encoding::Utf8)[2], "4:nick:d");
        let survey = survey_of(bytes, Encoding::Utf8);
        assert_eq!((survey.total, survey.undecodable), (3, 1));
        assert!(survey.check_encoding("list.txt", Encoding::Utf8).is_ok());
    }

    /// GBK bytes made by encoding_rs's encoder (the same crate decodes; the CLI test takes
    /// bytes written by hand from the GBK table).
    fn gbk(text: &str) -> Vec<u8> {
        let (bytes, _, unmappable) = encoding_rs::GBK.encode(text);
        assert!(!unmappable);
        bytes.into_owned()
    }

    #[test]
    fn a_gbk_file_is_refused_as_utf8_and_read_with_its_encoding() {
        let bytes = gbk("nick:张三\nnick:李四\nnick:王五\n");
        let survey = survey_of(&bytes, Encoding::Utf8);
        assert_eq!((survey.total, survey.undecodable), (3, 3));
        let refused = survey
            .check_encoding("list.txt", Encoding::Utf8)
            .unwrap_err()
            .to_string();
        assert!(refused.contains("list.txt is not UTF-8 text"), "{refused}");
        assert!(refused.contains("give its encoding"), "{refused}");
        for encoding in [Encoding::Gbk, Encoding::Gb18030] {
            assert_eq!(
                lines_in(&bytes, encoding),
                ["1:nick:张三", "2:nick:李四", "3:nick:王五"]
            );
            assert!(
                survey_of(&bytes, encoding)
                    .check_encoding("l", encoding)
                    .is_ok()
            );
        }
        // A byte sequence GB18030 does not have: named like a UTF-8 one.
        assert_eq!(
            reasons(b"nick:\x81\x20", Encoding::Gbk),
            [(1, "not valid GBK at byte offset 5 of the line".to_owned())]
        );
    }

    #[test]
    fn a_bom_is_taken_and_says_utf8() {
        let bytes = b"\xEF\xBB\xBFnick:\xE5\xBC\xA0\nnick:b\n";
        assert_eq!(lines_in(bytes, Encoding::Utf8), ["1:nick:张", "2:nick:b"]);
        assert_eq!(lines_in(bytes, Encoding::Gbk), ["1:nick:张", "2:nick:b"]);
        let csv = b"\xEF\xBB\xBFrecipient\nnick:a\n";
        assert_eq!(lines_in(csv, Encoding::Utf8), ["2:nick:a"]);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Lines as `wc -l` numbers them, the last one without a newline counted too.
        fn line_count(bytes: &[u8]) -> u64 {
            let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            newlines + u64::from(!bytes.is_empty() && !bytes.ends_with(b"\n"))
        }

        /// Lines from a few kinds that meet at their edges: recipients, comments, blank
        /// lines, bytes of any value, and lines over the limit.
        fn file() -> impl Strategy<Value = Vec<u8>> {
            let line = prop_oneof![
                "[a-z]{1,8}".prop_map(|id| format!("nick:{id}").into_bytes()),
                "#[ -~]{0,20}".prop_map(String::into_bytes),
                Just(Vec::new()),
                proptest::collection::vec(any::<u8>(), 0..40),
                (4000usize..9000, any::<u8>()).prop_map(|(n, b)| vec![b | 0x20; n]),
            ];
            (proptest::collection::vec(line, 0..20), any::<bool>()).prop_map(|(lines, end)| {
                let mut bytes = lines.join(&b'\n');
                if end && !bytes.is_empty() {
                    bytes.push(b'\n');
                }
                bytes
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Every line that is not blank or a comment is one row, numbered by its place in
            /// the file; none is split, none is numbered past the file's last line.
            #[test]
            fn one_row_per_line_numbered_as_wc_counts(bytes in file()) {
                for encoding in [Encoding::Utf8, Encoding::Gb18030] {
                    let rows: Vec<u64> = parsed(&bytes, encoding)
                        .iter()
                        .map(|p| match p {
                            Parsed::Recipient(line, _) | Parsed::Rejected(line, ..) => *line,
                        })
                        .collect();
                    // Independently: split at `\n`, drop what is blank or a comment.
                    let lines: Vec<&[u8]> = if bytes.is_empty() {
                        Vec::new()
                    } else {
                        bytes
                            .strip_suffix(b"\n")
                            .unwrap_or(&bytes)
                            .split(|&b| b == b'\n')
                            .collect()
                    };
                    prop_assert_eq!(lines.len() as u64, line_count(&bytes));
                    let expected: Vec<u64> = lines
                        .iter()
                        .enumerate()
                        .filter(|(i, line)| {
                            let long = line.len() > MAX_LINE_BYTES;
                            let line = if *i == 0 {
                                line.strip_prefix(BOM).unwrap_or(line)
                            } else {
                                line
                            };
                            let text = line.trim_ascii();
                            let blank = text.is_empty() || text.starts_with(b"#");
                            // A line blank but for non-ASCII spaces is blank too.
                            let spaces = !long
                                && decode(line, encoding)
                                    .map(|t| is_blank(t.trim()))
                                    .unwrap_or(false);
                            let skipped = (blank && !long) || spaces;
                            !skipped
                        })
                        .map(|(i, _)| i as u64 + 1)
                        .collect();
                    prop_assert_eq!(&rows, &expected);
                    prop_assert_eq!(survey_of(&bytes, encoding).total, rows.len() as u64);
                }
            }
        }
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
