//! The one renderer of error cause chains and the one exit-code table, shared by the CLI,
//! the runner, the reporters, the guest and crash triage so that every output names the
//! same causes in the same words.

pub mod exit;

use std::error::Error;
use std::fmt;

/// A boxed error that can cross threads; what typed errors use as an opaque `#[source]`.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// `e` and each of its sources, outermost first, one message per entry. A source whose
/// text the previous message already ends with (a wrapper that printed its source inline)
/// is skipped, so no cause is shown twice.
pub fn chain(e: &dyn Error) -> Vec<String> {
    let mut out = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        let repeated = out.last().is_some_and(|prev| prev.ends_with(&text));
        if !repeated && !text.is_empty() {
            out.push(text);
        }
        src = s.source();
    }
    out
}

/// The display form of a chain: `what: because: because`.
pub fn join<S: AsRef<str>>(what: &str, causes: &[S]) -> String {
    let mut s = what.to_owned();
    for c in causes {
        s.push_str(": ");
        s.push_str(c.as_ref());
    }
    s
}

/// Displays an error with its whole chain (`what: because: because`), for the places that
/// must put an error into a single line of text.
#[derive(Debug, Clone, Copy)]
pub struct Chain<'a>(pub &'a dyn Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = chain(self.0);
        let (what, causes) = parts.split_first().expect("chain has the error itself");
        f.write_str(&join(what, causes))
    }
}

/// An error with its chain split into what failed and why, as events and reports carry it:
/// the first message, then each cause.
pub fn split(e: &dyn Error) -> (String, Vec<String>) {
    let mut parts = chain(e);
    let what = parts.remove(0);
    (what, parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("create the results root /r")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("start the run")]
    struct Top(#[source] Outer);

    #[derive(Debug, thiserror::Error)]
    #[error("read x: {0}")]
    struct Inline(#[source] std::io::Error);

    fn io() -> std::io::Error {
        std::io::Error::from_raw_os_error(20)
    }

    #[test]
    fn chain_lists_every_cause_outermost_first() {
        let e = Top(Outer(io()));
        assert_eq!(
            chain(&e),
            [
                "start the run",
                "create the results root /r",
                "Not a directory (os error 20)"
            ]
        );
        assert_eq!(
            Chain(&e).to_string(),
            "start the run: create the results root /r: Not a directory (os error 20)"
        );
        let (what, causes) = split(&e);
        assert_eq!(what, "start the run");
        assert_eq!(join(&what, &causes), Chain(&e).to_string());
    }

    #[test]
    fn a_source_already_printed_inline_is_not_repeated() {
        let e = Inline(io());
        assert_eq!(chain(&e), ["read x: Not a directory (os error 20)"]);
    }
}
