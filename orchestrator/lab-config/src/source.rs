//! Reading one YAML file safely: size limit before reading, UTF-8 and indentation checks with
//! exact positions, then strict deserialization under a budget (alias bombs, deep nesting,
//! multiple documents), turning any failure into a located [`Diagnostic`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::diag::{Diagnostic, Diagnostics};
use crate::values::Loc;
use crate::yaml_path::{Prefer, blank_entry, path_at};

/// Config files larger than this are refused before they are read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Deepest nesting of YAML collections accepted (also bounds recursion in validation).
pub const MAX_DEPTH: usize = 48;

/// The text of one configuration file and the name it is reported under.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path as given (relative paths stay relative so messages stay short).
    pub path: PathBuf,
    /// The whole text (UTF-8, BOM removed).
    pub text: Arc<str>,
}

fn file_diag(path: &Path, loc: Option<Loc>, message: impl Into<String>) -> Diagnostic {
    Diagnostic::new("file", path, loc, "", message)
}

/// What a path is when it is not a regular file (`a directory`, `a named pipe (FIFO)`).
fn non_regular_kind(ft: std::fs::FileType) -> Option<&'static str> {
    if ft.is_file() {
        return None;
    }
    if ft.is_dir() {
        return Some("a directory");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return Some("a named pipe (FIFO)");
        }
        if ft.is_char_device() {
            return Some("a character device");
        }
        if ft.is_block_device() {
            return Some("a block device");
        }
        if ft.is_socket() {
            return Some("a socket");
        }
    }
    Some("not a regular file")
}

fn one_diag(d: Diagnostic) -> Diagnostics {
    let mut ds = Diagnostics::new();
    ds.push(d);
    ds
}

fn too_large(path: &Path, size: &str) -> Diagnostic {
    file_diag(
        path,
        Some(Loc::at(1, 1)),
        format!(
            "file is too large ({size}): configuration files are limited to {} MiB",
            MAX_FILE_BYTES / (1024 * 1024)
        ),
    )
    .with_help("is this really a lab, payload or scenario file?")
}

/// Checks that `path` is a regular file of at most [`MAX_FILE_BYTES`] before anything opens
/// it: opening a FIFO blocks until a writer comes, and a device never ends. Returns its size.
pub fn check_regular_file(path: &Path) -> Result<u64, Diagnostics> {
    let meta = std::fs::metadata(path)
        .map_err(|e| one_diag(file_diag(path, None, format!("cannot open file: {e}"))))?;
    if let Some(what) = non_regular_kind(meta.file_type()) {
        return Err(one_diag(
            file_diag(
                path,
                None,
                format!("{what}, not a regular file: expected a YAML file"),
            )
            .with_help("pass the path of a lab, payload or scenario file"),
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        let len = meta.len();
        // Just over the limit, `4.0 MiB` would read like the limit itself: give the bytes.
        let size = if len < MAX_FILE_BYTES + MAX_FILE_BYTES / 100 {
            format!("{len} bytes")
        } else {
            crate::cap::human_bytes(usize::try_from(len).unwrap_or(usize::MAX))
        };
        return Err(one_diag(too_large(path, &size)));
    }
    Ok(meta.len())
}

/// Reads `path` with the file-type, size, encoding and indentation checks. At most
/// [`MAX_FILE_BYTES`] + 1 bytes are ever read, whatever the file claims or becomes.
pub fn read_source(path: &Path) -> Result<SourceFile, Diagnostics> {
    let len = check_regular_file(path)?;
    let file = std::fs::File::open(path)
        .map_err(|e| one_diag(file_diag(path, None, format!("cannot open file: {e}"))))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // `take` guards against a file that grows between the size check and the read.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| one_diag(file_diag(path, None, format!("cannot read file: {e}"))))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        let size = format!("more than {} MiB", MAX_FILE_BYTES / (1024 * 1024));
        return Err(one_diag(too_large(path, &size)));
    }
    source_from_bytes(path, bytes).map_err(|d| one_diag(*d))
}

/// Checks already-read bytes (used by `read_source` and by the fuzz tests).
pub fn source_from_bytes(path: &Path, mut bytes: Vec<u8>) -> Result<SourceFile, Box<Diagnostic>> {
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let bytes = e.as_bytes();
            let at = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&bytes[..at]);
            let line = prefix.matches('\n').count() + 1;
            let column = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            return Err(Box::new(file_diag(
                path,
                Some(Loc::at(to_u32(line), to_u32(column))),
                format!("file is not valid UTF-8: invalid byte 0x{:02X} at line {line}, column {column}", bytes[at]),
            )
            .with_help("save the file as UTF-8")));
        }
    };
    if let Some((line, column)) = tab_in_indentation(&text) {
        return Err(Box::new(Diagnostic::new(
            "tab",
            path,
            Some(Loc::at(line, column)),
            "",
            format!("tab character in indentation at line {line}, column {column}: YAML indents with spaces only"),
        )
        .with_help("replace the tab with spaces")));
    }
    Ok(SourceFile {
        path: path.to_path_buf(),
        text: Arc::from(text),
    })
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The first tab inside a line's leading whitespace (1-based line and column).
fn tab_in_indentation(text: &str) -> Option<(u32, u32)> {
    for (i, line) in text.lines().enumerate() {
        for (j, c) in line.chars().enumerate() {
            match c {
                '\t' => return Some((to_u32(i + 1), to_u32(j + 1))),
                ' ' | '-' => continue,
                _ => break,
            }
        }
    }
    None
}

/// Where a second YAML document starts (1-based line and column), if the text has one.
///
/// YAML forbids `---` and `...` at the start of a line inside any scalar, so a line scan
/// finds every document boundary. This runs before deserialization so that a second
/// document is reported as such even when the first one has errors of its own.
fn second_document(text: &str) -> Option<(u32, u32)> {
    let marker = |line: &str, m: &str| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    };
    let is_content = |t: &str| {
        let t = t.trim();
        !t.is_empty() && !t.starts_with('#')
    };
    let (mut content, mut ended) = (false, false);
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if marker(line, "---") {
            if content || ended {
                return Some((to_u32(i + 1), 1));
            }
            content = is_content(&line[3..]);
        } else if marker(line, "...") {
            ended = content;
        } else if !content && !ended && line.starts_with('%') {
            // A directive (`%YAML 1.2`) before the first document.
        } else if is_content(line) {
            if ended {
                return Some((to_u32(i + 1), 1));
            }
            content = true;
        }
    }
    None
}

/// True when the text holds nothing but whitespace, comments and document markers.
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

fn options() -> serde_saphyr::Options {
    let mut alias_limits = serde_saphyr::options::AliasLimits::default();
    alias_limits.max_total_replayed_events = 100_000;
    alias_limits.max_replay_stack_depth = 16;
    alias_limits.max_alias_expansions_per_anchor = 1_000;
    serde_saphyr::options! {
        with_snippet: false,
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_documents: 1,
            max_nodes: 200_000,
        },
        alias_limits: alias_limits,
    }
}

/// Most unknown keys reported for one file (each costs a re-parse).
const MAX_UNKNOWN_KEYS: usize = 50;

/// Deserializes the whole file as `T` (one document, strict). `what` names the kind of file
/// for messages ("lab file", "payload manifest", "scenario").
///
/// The parser stops at its first error; an unknown key is then blanked out and the text
/// parsed again, so a file with several misspelt keys gets every one reported in one pass
/// (docs/scenarios.md promises every problem at once). Blanking keeps line and column of
/// everything else.
pub(crate) fn parse<T: DeserializeOwned + Send>(
    src: &SourceFile,
    what: &str,
) -> Result<T, Vec<Diagnostic>> {
    let mut found: Vec<Diagnostic> = Vec::new();
    let mut text = src.text.clone();
    loop {
        let attempt = SourceFile {
            path: src.path.clone(),
            text: text.clone(),
        };
        match parse_once::<T>(&attempt, what) {
            Ok(v) if found.is_empty() => return Ok(v),
            Ok(_) => return Err(found),
            Err(d) => {
                let next = (d.message.starts_with("unknown field")
                    && found.len() < MAX_UNKNOWN_KEYS)
                    .then(|| d.loc.and_then(|l| blank_entry(&text, l.line, l.column)))
                    .flatten();
                // A required key that is missing once a misspelt one is blanked is that
                // same typo (`stepz:`), not a second problem.
                if found.is_empty() || !d.message.starts_with("missing field") {
                    found.push(*d);
                }
                match next {
                    Some(t) => text = t.into(),
                    None => return Err(found),
                }
            }
        }
    }
}

fn parse_once<T: DeserializeOwned + Send>(
    src: &SourceFile,
    what: &str,
) -> Result<T, Box<Diagnostic>> {
    if is_blank(&src.text) {
        return Err(Box::new(
            Diagnostic::new(
                "empty",
                &src.path,
                Some(Loc::at(1, 1)),
                "",
                format!("file is empty: expected a {what}"),
            )
            .with_help("see docs/scenarios.md for the file formats"),
        ));
    }
    if let Some((line, column)) = second_document(&src.text) {
        return Err(Box::new(
            Diagnostic::new(
                "multiple-documents",
                &src.path,
                Some(Loc::at(line, column)),
                "",
                MULTIPLE_DOCUMENTS,
            )
            .with_help(format!(
                "the second document starts at line {line}: split the file there"
            )),
        ));
    }
    let run = || {
        serde_saphyr::from_str_with_options::<T>(&src.text, options())
            .map_err(|e| Box::new(parse_diag(src, &e)))
    };
    // serde's derived deserializers recurse once per YAML level; in debug builds a step
    // level costs tens of KiB of stack, so MAX_DEPTH levels would overflow a 2 MiB test
    // thread. Parse on a thread whose stack is sized for the depth limit (reserved, not
    // committed, memory).
    let spawned = std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("yaml-parse".into())
            .stack_size(PARSE_STACK)
            .spawn_scoped(scope, run)
            .ok()?;
        Some(handle.join().unwrap_or_else(|_| {
            Err(Box::new(Diagnostic::new(
                "internal",
                &src.path,
                Some(Loc::at(1, 1)),
                "",
                format!("the YAML parser failed on this {what}"),
            )))
        }))
    });
    spawned.unwrap_or_else(run)
}

const MULTIPLE_DOCUMENTS: &str = "file contains more than one YAML document (`---`): put each lab, payload or scenario in its own file";

/// Stack of the parsing thread: ample for [`MAX_DEPTH`] nested steps in a debug build.
const PARSE_STACK: usize = 64 * 1024 * 1024;

/// Turns a serde-saphyr error into a diagnostic with the YAML path of its position.
fn parse_diag(src: &SourceFile, e: &serde_saphyr::Error) -> Diagnostic {
    let loc = e
        .location()
        .map(|l| Loc::from_saphyr(&l))
        .filter(|l| l.line > 0);
    let raw = e.without_snippet().to_string();
    let message = limit_message(e).unwrap_or_else(|| clean_message(&raw, loc));
    let prefer = if message.starts_with("missing field") {
        Prefer::Outer
    } else {
        Prefer::Inner
    };
    let yaml_path = loc
        .map(|l| path_at(&src.text, l.line, l.column, prefer))
        .unwrap_or_default();
    let mut d = Diagnostic::new("parse", &src.path, loc, yaml_path, message.clone());
    if message.contains("more than one YAML document") {
        d.code = "multiple-documents";
        d.yaml_path.clear();
    } else if limit_message(e).is_some() {
        d.code = "limits";
    }
    d
}

/// A plain-words message for the parser's safety limits (alias bombs, deep nesting, size).
fn limit_message(e: &serde_saphyr::Error) -> Option<String> {
    use serde_saphyr::Error as E;
    use serde_saphyr::budget::BudgetBreach as B;
    let bomb = "this looks like an alias bomb (\"billion laughs\"); write the values out instead";
    Some(match e.without_snippet() {
        E::Budget { breach, .. } => match breach {
            B::Depth { .. } => format!("nesting is deeper than {MAX_DEPTH} levels"),
            B::Documents { .. } => MULTIPLE_DOCUMENTS.to_owned(),
            B::Aliases { aliases } => format!("too many aliases (`*name`, {aliases}): {bomb}"),
            B::AliasAnchorRatio { aliases, anchors } => {
                format!(
                    "too many aliases per anchor ({aliases} aliases, {anchors} anchors): {bomb}"
                )
            }
            B::Anchors { anchors } => format!("too many anchors (`&name`, {anchors})"),
            B::Nodes { .. } | B::Events { .. } | B::ScalarBytes { .. } => {
                "document is too large or too complex for a configuration file".to_owned()
            }
            other => format!("document exceeds a parser limit ({other:?})"),
        },
        E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. }
        | E::AliasReplayCounterOverflow { .. } => {
            format!("aliases expand to too much data: {bomb}")
        }
        other => {
            // Alias errors may arrive wrapped with their locations; match on the text.
            let text = other.to_string();
            if text.starts_with("recursion limit exceeded") {
                format!("nesting is deeper than {MAX_DEPTH} levels")
            } else if text.starts_with("alias replay") || text.starts_with("alias expansion") {
                format!("aliases expand to too much data: {bomb}")
            } else {
                return None;
            }
        }
    })
}

/// Drops serde-saphyr's " at line X, column Y" suffix (the location is shown separately) and
/// rewrites messages that would otherwise name Rust types or APIs.
fn clean_message(raw: &str, loc: Option<Loc>) -> String {
    let mut msg = raw.to_owned();
    if let Some(l) = loc {
        let suffix = format!(" at line {}, column {}", l.line, l.column);
        if let Some(stripped) = msg.strip_suffix(&suffix) {
            msg = stripped.to_owned();
        }
    }
    match msg.as_str() {
        "expected sequence start" => {
            return "expected a list (`- item` lines or `[a, b]`)".to_owned();
        }
        "expected mapping start" => {
            return "expected a mapping (`key: value` lines or `{key: value}`)".to_owned();
        }
        "expected string scalar" => return "expected a text value".to_owned(),
        _ => {}
    }
    if msg.starts_with("multiple YAML documents detected") {
        return MULTIPLE_DOCUMENTS.to_owned();
    }
    for (ty, range) in [
        ("u8", "0 to 255"),
        ("u16", "0 to 65535"),
        ("u32", "0 to 4294967295"),
        ("u64", "0 to 18446744073709551615"),
        ("usize", "0 to 18446744073709551615"),
    ] {
        if msg == format!("invalid {ty}") {
            return format!("invalid number: expected a whole number from {range}");
        }
    }
    if msg == "invalid i64" {
        return "invalid number: expected a whole number".to_owned();
    }
    if msg.starts_with("duplicate mapping key") {
        // "duplicate mapping key: name, set DuplicateKeyPolicy in Options if acceptable"
        let key = msg
            .trim_start_matches("duplicate mapping key:")
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        return format!("duplicate key `{key}`: each key may appear once in a mapping");
    }
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((name, expected)) = rest.split_once("`, expected one of ")
    {
        let list: Vec<String> = expected.split(", ").map(|s| format!("`{s}`")).collect();
        return format!(
            "unknown field `{name}`, expected one of {}",
            list.join(", ")
        );
    }
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some((name, _)) = rest.split_once("`, expected one of")
    {
        return format!("unknown field `{name}`: this mapping takes no fields");
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `")
        && let Some((name, expected)) = rest.split_once("`, expected one of ")
    {
        let list: Vec<String> = expected.split(", ").map(|s| format!("`{s}`")).collect();
        return format!(
            "unknown value `{name}`, expected one of {}",
            list.join(", ")
        );
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabs_are_found_in_indentation_only() {
        assert_eq!(tab_in_indentation("a: 1\n\tb: 2\n"), Some((2, 1)));
        assert_eq!(tab_in_indentation("a: \"x\ty\"\n"), None);
        assert_eq!(tab_in_indentation("- \tb\n"), Some((1, 3)));
    }

    #[test]
    fn a_second_document_is_found_wherever_it_starts() {
        assert_eq!(second_document("a: 1\n"), None);
        assert_eq!(second_document("---\na: 1\n...\n"), None);
        assert_eq!(second_document("# c\n---\n# c\na: 1\n"), None);
        assert_eq!(second_document("%YAML 1.2\n---\na: 1\n"), None);
        assert_eq!(second_document("a: |\n  ---\n  x\n"), None);
        assert_eq!(second_document("a: 1\n---\nb: 2\n"), Some((2, 1)));
        assert_eq!(second_document("---\na: 1\n--- # two\n"), Some((3, 1)));
        assert_eq!(second_document("a: 1\n...\n# c\nb: 2\n"), Some((4, 1)));
        assert_eq!(second_document("--- a\n--- b\n"), Some((2, 1)));
        assert_eq!(second_document("a: 1\r\n---\r\nb: 2\r\n"), Some((2, 1)));
        assert_eq!(second_document("a: ---x\n---x: 1\n"), None);
    }

    #[test]
    fn non_utf8_names_line_and_column() {
        let d = source_from_bytes(Path::new("x.yaml"), b"a: 1\nbb: \xff\n".to_vec()).unwrap_err();
        assert_eq!(d.loc, Some(Loc::at(2, 5)));
        assert!(d.message.contains("0xFF"), "{}", d.message);
    }
}
