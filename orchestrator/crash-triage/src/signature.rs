//! Crash signatures: a title from the bugcheck, its subcode, the blamed module and symbol,
//! normalised the way syzkaller normalises crash titles (no addresses, offsets or run-
//! specific numbers), and a short stable id that names the bucket.
//!
//! Blame: with `!analyze` output the debugger's IMAGE_NAME / SYMBOL_NAME win (it skips
//! `nt!KeBugCheckEx` frames and knows symbols); without it, the module RIP lies in. So a
//! bug triaged with and without a debugger may get two buckets; within one lab setup the
//! choice is stable.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::analyze::Analyze;
use crate::triage::Triage;

/// The identity of a crash for bucketing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature {
    /// e.g. `PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys!sample_find_element`.
    pub title: String,
    /// 16 lower-case hex digits of SHA-256 over the title: stable across runs and
    /// machines, safe in file names.
    pub id: String,
    pub bugcheck_code: u32,
    pub subcode: Option<u64>,
    pub module: Option<String>,
    pub symbol: Option<String>,
}

/// The signature of a triaged crash, refined by `!analyze` fields when available.
pub fn signature(triage: &Triage, analyze: Option<&Analyze>) -> Signature {
    let bugcheck = &triage.bugcheck;
    let from_debugger = analyze.and_then(|a| {
        let image = a.image_name.as_deref().filter(|s| !s.is_empty())?;
        let symbol = a.symbol_name.as_deref().and_then(symbol_function);
        Some((image.to_owned(), symbol))
    });
    let (module, symbol) = match from_debugger {
        Some((image, symbol)) => (Some(image), symbol),
        None => (
            triage.faulting_module.as_ref().map(|m| m.name.clone()),
            None,
        ),
    };
    let module = module.map(|m| normalize_name(&m)).filter(|m| !m.is_empty());
    let symbol = symbol.map(|s| normalize_name(&s)).filter(|s| !s.is_empty());

    let mut title = match &bugcheck.name {
        Some(name) => name.clone(),
        None => format!("BUGCHECK_{:X}", bugcheck.code),
    };
    match bugcheck.subcode {
        Some(sub) => title.push_str(&format!(" ({:#x}/{sub:#x})", bugcheck.code)),
        None => title.push_str(&format!(" ({:#x})", bugcheck.code)),
    }
    if let Some(m) = &module {
        title.push_str(" in ");
        title.push_str(m);
        if let Some(s) = &symbol {
            title.push('!');
            title.push_str(s);
        }
    }
    Signature {
        id: signature_id(&title),
        title,
        bugcheck_code: bugcheck.code,
        subcode: bugcheck.subcode,
        module,
        symbol,
    }
}

/// The id for a title: the first 16 hex digits of its SHA-256.
pub fn signature_id(title: &str) -> String {
    let digest = Sha256::digest(title.as_bytes());
    hex::encode(&digest[..8])
}

/// `sample_ebpf_ext!sample_find_element+0x1a3` -> `sample_find_element`.
/// `module+0x3f10` (no symbols) and `module!unknown_function` name no function: `None`.
fn symbol_function(symbol: &str) -> Option<String> {
    let (_, f) = symbol.rsplit_once('!')?;
    let f = strip_offset(f.trim());
    (!f.is_empty() && f != "unknown_function").then(|| f.to_owned())
}

/// Drop a trailing `+0x1a3`, `+1a3` or `+0x1a3/0x2b0` offset.
fn strip_offset(s: &str) -> &str {
    match s.rsplit_once('+') {
        Some((head, tail))
            if !tail.is_empty()
                && tail
                    .trim_start_matches("0x")
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == '/' || c == 'x') =>
        {
            head
        }
        _ => s,
    }
}

/// Normalise a module or symbol name so two runs of one bug agree:
/// offsets (`+0x1a3`) dropped, addresses (`0xfffff8...`, `fffff807`4a000000`, 8+ hex digits)
/// become `ADDR`, and runs of 3+ decimal digits (temp-name counters like `tmp4711.sys`,
/// `syz-executor123`) are removed.
pub fn normalize_name(s: &str) -> String {
    let s = strip_offset(s.trim());
    let mut out = String::with_capacity(s.len());
    let bytes: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        // A hex token: optional 0x, then hex digits and backticks.
        let start = i;
        let prefixed = bytes[i] == '0' && bytes.get(i + 1).is_some_and(|c| *c == 'x' || *c == 'X');
        let mut j = if prefixed { i + 2 } else { i };
        let mut hex = 0;
        let mut has_digit = false;
        while j < bytes.len() && (bytes[j].is_ascii_hexdigit() || bytes[j] == '`') {
            if bytes[j].is_ascii_digit() {
                has_digit = true;
            }
            if bytes[j] != '`' {
                hex += 1;
            }
            j += 1;
        }
        let at_word_start = start == 0 || !bytes[start - 1].is_ascii_alphanumeric();
        let at_word_end = j == bytes.len() || !bytes[j].is_ascii_alphanumeric();
        if at_word_start && at_word_end && has_digit && ((prefixed && hex >= 5) || hex >= 8) {
            out.push_str("ADDR");
            i = j;
            continue;
        }
        if bytes[i].is_ascii_digit() {
            let mut k = i;
            while k < bytes.len() && bytes[k].is_ascii_digit() {
                k += 1;
            }
            if k - i >= 3 {
                i = k;
                continue;
            }
            out.extend(&bytes[i..k]);
            i = k;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_addresses_are_normalised() {
        assert_eq!(
            normalize_name("sample_find_element+0x1a3"),
            "sample_find_element"
        );
        assert_eq!(
            normalize_name("sample_find_element+1a3"),
            "sample_find_element"
        );
        assert_eq!(normalize_name("f+0x1a3/0x2b0"), "f");
        assert_eq!(normalize_name("pool_0xffffb00a1c2e3000"), "pool_ADDR");
        assert_eq!(normalize_name("at 0xffffb00a1c2e3000"), "at ADDR");
        assert_eq!(normalize_name("at fffff807`4a001a3c"), "at ADDR");
        assert_eq!(normalize_name("tmp4711.sys"), "tmp.sys");
        assert_eq!(normalize_name("ext2.sys"), "ext2.sys");
        assert_eq!(normalize_name("sample_ebpf_ext.sys"), "sample_ebpf_ext.sys");
    }

    #[test]
    fn symbol_function_drops_module_and_offset() {
        assert_eq!(
            symbol_function("sample_ebpf_ext!sample_find_element+3c").as_deref(),
            Some("sample_find_element")
        );
        assert_eq!(
            symbol_function("nt!KeBugCheckEx").as_deref(),
            Some("KeBugCheckEx")
        );
    }

    #[test]
    fn ids_are_short_hex() {
        let id = signature_id("PAGE_FAULT_IN_NONPAGED_AREA (0x50) in x.sys");
        assert_eq!(id.len(), 16);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
    }
}
