//! Validation of wire types into the resolved model. Each function walks one file, records
//! every problem it finds in a [`Diagnostics`] (it never stops at the first), and returns
//! the resolved value only when its file had no problem.

pub(crate) mod lab;
pub(crate) mod payload;
pub(crate) mod scenario;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::diag::{Diagnostic, Diagnostics};
use crate::model::Origin;
use crate::model::invocation::InvocationContext;
use crate::values::{HumanDuration, Loc, Sp};

/// The validation context of one file.
pub(crate) struct Cx<'a> {
    pub file: Arc<Path>,
    pub diags: &'a mut Diagnostics,
    errors_before: usize,
}

impl<'a> Cx<'a> {
    pub fn new(file: &Path, diags: &'a mut Diagnostics) -> Self {
        let errors_before = diags.len();
        Self {
            file: Arc::from(file),
            diags,
            errors_before,
        }
    }

    /// True when this file produced no problem so far.
    pub fn clean(&self) -> bool {
        self.diags.len() == self.errors_before
    }

    pub fn origin(&self, loc: Loc) -> Origin {
        Origin {
            file: self.file.clone(),
            loc,
        }
    }

    /// Records a problem and returns it for `related` / `help` additions.
    pub fn error(
        &mut self,
        code: &'static str,
        loc: Loc,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        self.diags
            .push(Diagnostic::new(code, &self.file, Some(loc), path, message));
        self.diags.last_mut().expect("just pushed")
    }

    /// Checks a name's spelling: letters, digits, `_`, `-`, `.`; 1 to 64 characters.
    pub fn name(&mut self, name: &Sp<String>, path: &str, what: &str) -> bool {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !ok {
            self.error(
                "invalid-name",
                name.loc,
                path,
                format!("invalid {what} name `{}`", name.value),
            )
            .help =
                Some("names use letters, digits, `_`, `-` and `.` (1 to 64 characters)".to_owned());
        }
        ok
    }

    /// Checks that `name` was not seen before in `seen` (and records it).
    pub fn unique(
        &mut self,
        seen: &mut HashMap<String, Loc>,
        name: &Sp<String>,
        path: &str,
        what: &str,
    ) -> bool {
        if let Some(first) = seen.get(&name.value).copied() {
            let file = self.file.clone();
            self.error(
                "duplicate-name",
                name.loc,
                path,
                format!("duplicate {what} name `{}`", name.value),
            )
            .related
            .push(crate::diag::Related {
                message: "first defined here".to_owned(),
                file: file.to_path_buf(),
                loc: Some(first),
            });
            false
        } else {
            seen.insert(name.value.clone(), name.loc);
            true
        }
    }

    /// A count that must be at least 1 (and at most `max`).
    pub fn count_u32(&mut self, v: &Sp<i64>, path: &str, what: &str, max: u32) -> u32 {
        if v.value < 1 {
            self.error(
                "range",
                v.loc,
                path,
                format!("{what} must be at least 1, got {}", v.value),
            );
            1
        } else if v.value > i64::from(max) {
            self.error(
                "range",
                v.loc,
                path,
                format!("{what} must be at most {max}, got {}", v.value),
            );
            max
        } else {
            u32::try_from(v.value).unwrap_or(max)
        }
    }

    /// A `u32` that must be within `min..=max`.
    pub fn range_u32(&mut self, v: &Sp<u32>, path: &str, what: &str, min: u32, max: u32) -> u32 {
        if v.value < min || v.value > max {
            self.error(
                "range",
                v.loc,
                path,
                format!("{what} must be from {min} to {max}, got {}", v.value),
            );
        }
        v.value
    }

    /// A duration that must be positive; `default` when absent.
    pub fn positive_duration(
        &mut self,
        v: Option<&Sp<HumanDuration>>,
        path: &str,
        what: &str,
        default: Duration,
    ) -> Duration {
        match v {
            None => default,
            Some(d) if d.value.0.is_zero() => {
                self.error(
                    "range",
                    d.loc,
                    path,
                    format!("{what} must be longer than 0"),
                );
                default
            }
            Some(d) => d.value.0,
        }
    }
}

impl Diagnostics {
    pub(crate) fn last_mut(&mut self) -> Option<&mut Diagnostic> {
        self.items_mut().last_mut()
    }
}

/// Sample built-in values for rendering a command line once at validation time, so a
/// template that cannot render is a config error and not a mid-run surprise.
pub(crate) const CHECK_CONTEXT: InvocationContext<'static> = InvocationContext {
    seed: 1,
    iteration: 0,
    vm: "vm",
    scenario: "scenario",
};

/// `a`, `b` and `c` for messages.
pub(crate) fn list(names: &[&str]) -> String {
    if names.is_empty() {
        return "(none)".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// True for an absolute Windows path such as `C:\x\y.sys`.
pub(crate) fn is_windows_abs(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() >= 4
        && b[0].is_ascii_alphabetic()
        && b[1] == b':'
        && b[2] == b'\\'
        && !p.contains('/')
        && !p.contains("\\..\\")
}

/// 64 hex digits (colons allowed between byte pairs); returns the lowercase digits.
pub(crate) fn sha256_hex(s: &str) -> Option<String> {
    let digits: String = s.chars().filter(|c| *c != ':').collect();
    (digits.len() == 64 && digits.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| digits.to_ascii_lowercase())
}
