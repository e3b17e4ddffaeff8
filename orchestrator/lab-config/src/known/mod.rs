//! `known-issues.yaml`: crashes already reported upstream. Each entry names a crash bucket
//! (its 16-digit id) or a glob over the crash title, the issue that tracks it, and
//! optionally the date after which the entry no longer applies (it then warns instead, so
//! a stale exemption cannot hide a crash for ever).

mod pattern;

use std::path::Path;
use std::sync::Arc;

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::Deserialize;

pub use pattern::Pattern;

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::Origin;
use crate::source::{SourceFile, read_source};
use crate::values::Sp;

/// The file's name in the repository root (its default location).
pub const KNOWN_ISSUES_FILE: &str = "known-issues.yaml";

/// A known-issues file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Known issues")]
#[schemars(rename = "KnownIssues")]
pub(crate) struct KnownIssuesWire {
    /// Crashes already tracked upstream: a run reports them as known, naming the issue.
    pub known_issues: Vec<KnownIssueWire>,
}

/// One known crash: exactly one of `bucket` and `signature`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "KnownIssue")]
pub(crate) struct KnownIssueWire {
    /// A crash bucket id: 16 lower-case hex digits, as in `buckets.json` and junit.xml.
    #[serde(default)]
    pub bucket: Option<Sp<String>>,
    /// A glob over the crash title (`*` any run of characters, `?` one; case-insensitive),
    /// e.g. `PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ext_*.sys*`.
    #[serde(default)]
    pub signature: Option<Sp<String>>,
    /// The upstream issue (an http(s) URL).
    pub issue: Sp<String>,
    /// Last day (YYYY-MM-DD, UTC) the entry applies; after it the entry warns and no
    /// longer marks crashes as known.
    #[serde(default)]
    pub expires: Option<Sp<String>>,
    /// Free text.
    #[serde(default)]
    pub note: Option<String>,
}

/// What a known issue matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KnownMatch {
    Bucket(String),
    Signature(Pattern),
}

/// One validated entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownIssue {
    pub matches: KnownMatch,
    pub issue: String,
    pub expires: Option<NaiveDate>,
    pub note: Option<String>,
    pub origin: Origin,
}

impl KnownIssue {
    /// Whether the entry no longer applies on `today`.
    pub fn expired(&self, today: NaiveDate) -> bool {
        self.expires.is_some_and(|d| today > d)
    }
}

/// A validated known-issues file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownIssues {
    pub entries: Vec<KnownIssue>,
}

impl KnownIssues {
    /// The first entry in force on `today` that matches the bucket (`id`, `title`).
    pub fn find(&self, id: &str, title: &str, today: NaiveDate) -> Option<&KnownIssue> {
        self.entries
            .iter()
            .filter(|e| !e.expired(today))
            .find(|e| match &e.matches {
                KnownMatch::Bucket(b) => b == id,
                KnownMatch::Signature(p) => p.matches(title),
            })
    }

    /// One warning per entry past its expiry date, naming where it is.
    pub fn expiry_warnings(&self, today: NaiveDate) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.expired(today))
            .map(|e| {
                format!(
                    "{}: known issue {} expired on {} and no longer marks crashes as known: \
                     renew or remove the entry",
                    e.origin,
                    e.issue,
                    e.expires.map(|d| d.to_string()).unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Reads and validates a known-issues file.
pub fn load_known_issues(path: &Path) -> Result<KnownIssues, Diagnostics> {
    parse_known_issues(&read_source(path)?)
}

/// Validates a known-issues file already read; every problem is reported with its place.
pub fn parse_known_issues(src: &SourceFile) -> Result<KnownIssues, Diagnostics> {
    let mut diags = Diagnostics::new();
    diags.add_source(&src.path, src.text.clone());
    let w: KnownIssuesWire = match crate::source::parse(src, "known-issues file") {
        Ok(w) => w,
        Err(d) => {
            for one in d {
                diags.push(one);
            }
            return Err(diags);
        }
    };
    let file: Arc<Path> = Arc::from(src.path.as_path());
    let mut entries = Vec::new();
    for (i, e) in w.known_issues.into_iter().enumerate() {
        let path = format!("known_issues[{i}]");
        let mut err = |loc, field: &str, msg: String, help: &str| {
            let mut d = Diagnostic::new(
                "known-issue",
                &file,
                Some(loc),
                format!("{path}{field}"),
                msg,
            );
            if !help.is_empty() {
                d = d.with_help(help);
            }
            diags.push(d);
        };
        let matches = match (&e.bucket, &e.signature) {
            (Some(b), None) => {
                let ok = b.len() == 16
                    && b.chars()
                        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
                if !ok {
                    err(
                        b.loc,
                        ".bucket",
                        format!("`{}` is not a crash bucket id", b.value),
                        "a bucket id is 16 lower-case hex digits, as in buckets.json",
                    );
                }
                KnownMatch::Bucket(b.value.clone())
            }
            (None, Some(s)) => {
                if s.trim().is_empty() || s.chars().all(|c| c == '*') {
                    err(
                        s.loc,
                        ".signature",
                        format!("signature pattern `{}` would match every crash", s.value),
                        "name at least the bugcheck, e.g. `PAGE_FAULT_IN_NONPAGED_AREA (0x50) in foo.sys*`",
                    );
                }
                KnownMatch::Signature(Pattern::new(&s.value))
            }
            (Some(b), Some(_)) => {
                err(
                    b.loc,
                    "",
                    "an entry has both `bucket` and `signature`".into(),
                    "keep one: an entry matches either a bucket or a signature pattern",
                );
                continue;
            }
            (None, None) => {
                err(
                    e.issue.loc,
                    "",
                    "an entry has neither `bucket` nor `signature`".into(),
                    "add `bucket: <16 hex digits>` or `signature: <pattern>`",
                );
                continue;
            }
        };
        let url = e.issue.value.trim();
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !scheme_ok || url.contains(char::is_whitespace) || url.len() <= "https://".len() {
            err(
                e.issue.loc,
                ".issue",
                format!("`{}` is not an issue link", e.issue.value),
                "give the issue's http(s) URL",
            );
        }
        let expires = match &e.expires {
            None => None,
            Some(d) => match NaiveDate::parse_from_str(d, "%Y-%m-%d") {
                Ok(date) => Some(date),
                Err(why) => {
                    err(
                        d.loc,
                        ".expires",
                        format!("`{}` is not a date: {why}", d.value),
                        "write the last day the entry applies as YYYY-MM-DD",
                    );
                    None
                }
            },
        };
        entries.push(KnownIssue {
            matches,
            issue: url.to_owned(),
            expires,
            note: e.note,
            origin: Origin {
                file: file.clone(),
                loc: e.issue.loc,
            },
        });
    }
    diags.into_result(KnownIssues { entries })
}

#[cfg(test)]
mod tests;
