//! Configuration diagnostics: every problem found in one validation pass, each with file,
//! line, column and YAML path (and, for a broken reference, the other file), rendered in a
//! compiler-like text form with the offending source line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::values::Loc;

/// One problem in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Short stable kind, e.g. `parse`, `unknown-reference`, `duplicate-name`.
    pub code: &'static str,
    /// What is wrong, in one sentence.
    pub message: String,
    /// The file the problem is in.
    pub file: PathBuf,
    /// Where in the file; `None` only when nothing better than "the file" is known.
    pub loc: Option<Loc>,
    /// YAML path of the offending node, e.g. `steps[2].driver_stop.driver` (`""` = root).
    pub yaml_path: String,
    /// Other places that explain the problem (for a broken reference: the file that lacks
    /// the name, or the first definition of a duplicate).
    pub related: Vec<Related>,
    /// How to fix it, when there is something useful to say.
    pub help: Option<String>,
}

/// A secondary location attached to a [`Diagnostic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    /// What this location shows.
    pub message: String,
    /// The file.
    pub file: PathBuf,
    /// Where in it.
    pub loc: Option<Loc>,
}

impl Diagnostic {
    /// A diagnostic at `loc` in `file`.
    pub fn new(
        code: &'static str,
        file: &Path,
        loc: Option<Loc>,
        yaml_path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            file: file.to_path_buf(),
            loc,
            yaml_path: yaml_path.into(),
            related: Vec::new(),
            help: None,
        }
    }

    /// Adds a related location.
    #[must_use]
    pub fn with_related(
        mut self,
        file: &Path,
        loc: Option<Loc>,
        message: impl Into<String>,
    ) -> Self {
        self.related.push(Related {
            message: message.into(),
            file: file.to_path_buf(),
            loc,
        });
        self
    }

    /// Adds a help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    fn location_text(&self) -> String {
        let mut s = self.file.display().to_string();
        if let Some(loc) = self.loc {
            s.push_str(&format!(":{}:{}", loc.line, loc.column));
        }
        s
    }
}

/// All problems found, plus the sources needed to show them. This is the error type of
/// loading and validation; `Display` renders every diagnostic.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
    sources: BTreeMap<PathBuf, Arc<str>>,
}

impl Diagnostics {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a problem.
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    /// Remembers a file's text so the rendering can show the offending line.
    pub fn add_source(&mut self, file: &Path, text: Arc<str>) {
        self.sources.entry(file.to_path_buf()).or_insert(text);
    }

    /// Moves all problems and sources of `other` into `self`.
    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
        for (k, v) in other.sources {
            self.sources.entry(k).or_insert(v);
        }
    }

    /// The problems, in the order found.
    pub fn items(&self) -> &[Diagnostic] {
        &self.items
    }

    pub(crate) fn items_mut(&mut self) -> &mut Vec<Diagnostic> {
        &mut self.items
    }

    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Number of distinct files with at least one problem.
    pub fn file_count(&self) -> usize {
        let mut files: Vec<&Path> = self.items.iter().map(|d| d.file.as_path()).collect();
        files.sort();
        files.dedup();
        files.len()
    }

    /// `Ok(value)` when there are no problems, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    fn source_line(&self, file: &Path, line: u32) -> Option<&str> {
        let text = self.sources.get(file)?;
        text.lines()
            .nth(usize::try_from(line).ok()?.checked_sub(1)?)
    }

    fn render_one(&self, d: &Diagnostic, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error[{}]: {}", d.code, d.message)?;
        let at = if d.yaml_path.is_empty() {
            String::new()
        } else {
            format!(" at `{}`", short_path(&d.yaml_path))
        };
        writeln!(f, "  --> {}{at}", d.location_text())?;
        if let Some(loc) = d.loc
            && let Some(line) = self.source_line(&d.file, loc.line)
        {
            // Long lines (a 50 MB one-liner) are cut so the report stays readable.
            let shown: String = line.chars().take(SHOWN).collect();
            let ellipsis = if line.chars().count() > SHOWN {
                " ..."
            } else {
                ""
            };
            let num = loc.line.to_string();
            let pad = " ".repeat(num.len());
            writeln!(f, "{pad} |")?;
            writeln!(f, "{num} | {}{ellipsis}", shown.replace('\t', " "))?;
            let col = usize::try_from(loc.column).unwrap_or(1).max(1);
            if col <= SHOWN {
                // Never underline past the part of the line that is shown.
                let width = caret_width(d, line, col).min(SHOWN + 1 - col);
                writeln!(f, "{pad} | {}{}", " ".repeat(col - 1), "^".repeat(width))?;
            }
        }
        for r in &d.related {
            let mut at = r.file.display().to_string();
            if let Some(loc) = r.loc {
                at.push_str(&format!(":{}:{}", loc.line, loc.column));
            }
            writeln!(f, "  = note: {at}: {}", r.message)?;
        }
        if let Some(help) = &d.help {
            writeln!(f, "  = help: {help}")?;
        }
        Ok(())
    }

    /// The one-line summary printed after the diagnostics.
    pub fn summary(&self) -> String {
        let n = self.len();
        let files = self.file_count();
        format!(
            "{n} problem{} in {files} file{}",
            if n == 1 { "" } else { "s" },
            if files == 1 { "" } else { "s" }
        )
    }
}

/// A YAML path cut in the middle when it is very long (deeply nested input).
fn short_path(p: &str) -> String {
    const MAX: usize = 100;
    if p.chars().count() <= MAX {
        return p.to_owned();
    }
    let head: String = p.chars().take(40).collect();
    let tail: Vec<char> = p.chars().rev().take(50).collect();
    format!("{head}...{}", tail.into_iter().rev().collect::<String>())
}

/// Characters of a source line shown in a snippet.
const SHOWN: usize = 120;

/// Width of the caret under a node: its scalar text when known, else one character.
fn caret_width(d: &Diagnostic, line: &str, col: usize) -> usize {
    let rest: String = line.chars().skip(col - 1).collect();
    let len = d.loc.map_or(0, |l| l.len);
    let max = rest.chars().count().max(1);
    if len > 0 {
        rest.char_indices()
            .take_while(|(i, _)| *i < len)
            .count()
            .clamp(1, max)
    } else {
        // A key or bare word: underline it up to the next separator.
        rest.chars()
            .take_while(|c| !matches!(c, ':' | ' ' | ',' | '}' | ']'))
            .count()
            .clamp(1, max)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            self.render_one(d, f)?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_snippet_and_notes() {
        let mut ds = Diagnostics::new();
        let file = Path::new("scenarios/a.yaml");
        ds.add_source(file, Arc::from("name: a\npayload: nope\n"));
        ds.push(
            Diagnostic::new(
                "unknown-reference",
                file,
                Some(Loc {
                    line: 2,
                    column: 10,
                    offset: Some(17),
                    len: 4,
                }),
                "payload",
                "unknown payload `nope`",
            )
            .with_related(
                Path::new("driver-payloads"),
                None,
                "payloads found: sim-ebpf",
            )
            .with_help("use one of the names above"),
        );
        let text = ds.to_string();
        assert_eq!(
            text,
            "error[unknown-reference]: unknown payload `nope`\n  --> scenarios/a.yaml:2:10 at `payload`\n  |\n2 | payload: nope\n  |          ^^^^\n  = note: driver-payloads: payloads found: sim-ebpf\n  = help: use one of the names above\n"
        );
        assert_eq!(ds.summary(), "1 problem in 1 file");
    }
}
