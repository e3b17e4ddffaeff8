//! Log redaction: a set of known secret values and writer wrappers (including a tracing
//! `MakeWriter`) that replace them with `***` in everything written.
//!
//! Secrets are registered when they are resolved ([`crate::SecretRef::resolve`]), so the CLI
//! only has to wrap its log writers once at start-up:
//!
//! ```no_run
//! use lab_transport::redact::{Redactor, RedactingMakeWriter};
//! let file = std::fs::File::create("hvlab.log").unwrap();
//! let writer = RedactingMakeWriter::new(std::sync::Mutex::new(file), Redactor::global().clone());
//! tracing_subscriber::fmt().with_writer(writer).init();
//! ```

use std::io::{self, Write};
use std::sync::{Arc, OnceLock};

use parking_lot::RwLock;
use tracing_subscriber::fmt::MakeWriter;

/// Masks the globally registered secrets in text that goes into an error message (command
/// lines, remote stderr, output snippets), which callers may write into results.
pub fn scrub(text: &str) -> String {
    Redactor::global().redact(text)
}

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// A shared, growing set of secret values to mask. Cloning shares the set.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<Vec<u8>>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.read().len())
            .finish()
    }
}

impl Redactor {
    /// An empty, independent redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide redactor every resolved secret is registered with.
    pub fn global() -> &'static Redactor {
        static GLOBAL: OnceLock<Redactor> = OnceLock::new();
        GLOBAL.get_or_init(Redactor::new)
    }

    /// Adds a value to mask. Empty values are ignored. Each line of a multi-line value is
    /// also added, because loggers may split or re-indent lines, and so are its base64
    /// spellings (UTF-8 and UTF-16LE, at each alignment): a secret inside an encoded
    /// PowerShell command or an HTTP Basic header is masked too.
    pub fn add(&self, secret: &str) {
        let utf16: Vec<u8> = secret.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let encoded: Vec<String> = base64_cores(secret.as_bytes())
            .into_iter()
            .chain(base64_cores(&utf16))
            .collect();
        self.add_plain(secret);
        for e in encoded {
            self.add_plain(&e);
        }
    }

    fn add_plain(&self, secret: &str) {
        let mut set = self.secrets.write();
        let mut push = |v: &str| {
            if !v.is_empty() && !set.iter().any(|s| s == v.as_bytes()) {
                set.push(v.as_bytes().to_vec());
            }
        };
        push(secret);
        if secret.contains('\n') {
            secret.lines().map(str::trim).for_each(&mut push);
        }
        // Longest first, so a secret that contains another is masked whole.
        set.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Masks every known secret in `text`.
    pub fn redact(&self, text: &str) -> String {
        String::from_utf8(self.redact_bytes(text.as_bytes()))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Masks every known secret in `bytes`.
    pub fn redact_bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let set = self.secrets.read();
        let mut out = bytes.to_vec();
        for secret in set.iter() {
            if out.len() >= secret.len() && contains(&out, secret) {
                out = replace_all(&out, secret, MASK.as_bytes());
            }
        }
        out
    }

    /// Wraps a writer so that each flush (and the drop) writes redacted bytes.
    pub fn wrap<W: Write>(&self, inner: W) -> RedactingWriter<W> {
        RedactingWriter {
            inner,
            buf: Vec::new(),
            redactor: self.clone(),
        }
    }
}

/// The parts of `base64(bytes)` that do not depend on neighbouring bytes, for each of the
/// three positions `bytes` can take relative to base64's 3-byte groups. Parts shorter than
/// 8 characters are left out: they would mask unrelated text.
fn base64_cores(bytes: &[u8]) -> Vec<String> {
    use base64::Engine;
    let mut out = Vec::new();
    for lead in 0..3usize {
        let mut padded = vec![0u8; lead];
        padded.extend_from_slice(bytes);
        let full_groups = padded.len() / 3;
        let text = base64::engine::general_purpose::STANDARD.encode(&padded[..full_groups * 3]);
        // Characters that mix in the leading filler bytes: 0, 2 or 3.
        let skip = [0, 2, 3][lead];
        if text.len() >= skip + 8 {
            out.push(text[skip..].to_owned());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn replace_all(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// A writer that buffers until flushed or dropped, then writes the redacted buffer. A
/// secret split across two `write` calls is still masked, as long as both land before the
/// flush (tracing's fmt layer writes one event per writer and drops it after).
pub struct RedactingWriter<W: Write> {
    inner: W,
    buf: Vec<u8>,
    redactor: Redactor,
}

impl<W: Write> std::fmt::Debug for RedactingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedactingWriter")
            .field("buffered", &self.buf.len())
            .finish()
    }
}

impl<W: Write> RedactingWriter<W> {
    fn drain(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let clean = self.redactor.redact_bytes(&self.buf);
            self.buf.clear();
            self.inner.write_all(&clean)?;
        }
        Ok(())
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.drain()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; a lost log line is better than a panic.
        let _ = self.drain();
        let _ = self.inner.flush();
    }
}

/// Wraps any tracing `MakeWriter` (a file, stderr, a non-blocking appender) so that every
/// event it writes has the known secrets masked.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
    redactor: Redactor,
}

impl<M> RedactingMakeWriter<M> {
    pub fn new(inner: M, redactor: Redactor) -> Self {
        Self { inner, redactor }
    }
}

impl<'a, M> MakeWriter<'a> for RedactingMakeWriter<M>
where
    M: MakeWriter<'a>,
{
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        self.redactor.wrap(self.inner.make_writer())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        self.redactor.wrap(self.inner.make_writer_for(meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let r = Redactor::new();
        r.add("abc");
        r.add("abcdef");
        assert_eq!(r.redact("x abcdef y abc z"), "x *** y *** z");
        assert_eq!(r.redact("nothing here"), "nothing here");
    }

    #[test]
    fn secret_split_across_writes_is_masked() {
        let r = Redactor::new();
        r.add("s3cr3t");
        let mut out = Vec::new();
        {
            let mut w = r.wrap(&mut out);
            w.write_all(b"pass=s3").unwrap();
            w.write_all(b"cr3t\n").unwrap();
        }
        assert_eq!(out, b"pass=***\n");
    }

    #[test]
    fn base64_spellings_are_masked_at_every_alignment() {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let r = Redactor::new();
        r.add("Corr3ct-Horse-Battery");
        for prefix in ["", "u", "us", "user:"] {
            let basic = b64(format!("{prefix}Corr3ct-Horse-Battery").as_bytes());
            let masked = r.redact(&basic);
            assert!(masked.contains(MASK), "{prefix:?}: {masked}");
            let utf16: Vec<u8> = format!("{prefix}Write 'Corr3ct-Horse-Battery'")
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect();
            let masked = r.redact(&b64(&utf16));
            assert!(masked.contains(MASK), "{prefix:?}: {masked}");
        }
        // Short secrets get no base64 variants (they would mask random text).
        let r = Redactor::new();
        r.add("abc");
        assert_eq!(r.redact("YWJj"), "YWJj");
    }

    #[test]
    fn multi_line_secret_lines_are_masked_alone() {
        let r = Redactor::new();
        r.add("line-one-secret\n  line-two-secret\n");
        assert_eq!(r.redact("a line-two-secret b"), "a *** b");
    }
}
