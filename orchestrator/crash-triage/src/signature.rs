//! Crash signatures: a title from the bugcheck, its subcode, the blamed module and symbol,
//! normalised the way syzkaller normalises crash titles (no addresses, offsets or run-
//! specific numbers), and a short stable id that names the bucket.
//!
//! Blame follows `!analyze`'s FAILURE_BUCKET_ID: the first frame of the faulting thread
//! (RIP, then the return addresses on its stack) that is not in a *common* image — the
//! kernel, the HAL and the eBPF core, which every driver's crash passes through — names
//! the module (its function is shown by triage, not bucketed: see below). A frame in a
//! driver from `MmUnloadedDrivers` is `<driver> (unloaded)`. With `!analyze` output the
//! debugger's IMAGE_NAME / SYMBOL_NAME win instead, so a bug triaged with and without a
//! debugger may get two buckets; within one lab setup the choice is stable.
//!
//! One mechanism, one bucket: a 0x50 (page fault) whose blamed frame is in an unloaded
//! driver is the same bug as a 0xCE (code of an unloaded driver ran) — a driver unloaded
//! while its code or data was still in use — and Windows itself raises 0xCE for faults on
//! an unloaded driver's addresses. Both are bucketed as 0xCE. See docs/triage.md.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::analyze::Analyze;
use crate::triage::{StackFrame, Triage};

/// `DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS`.
const UNLOADED_DRIVER_CODE: u32 = 0xCE;
/// Codes that are symptoms of an unloaded driver when the blamed frame is in one.
const UNLOADED_SYMPTOMS: [u32; 2] = [0x50, UNLOADED_DRIVER_CODE];

/// The identity of a crash for bucketing.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Signature {
    /// e.g. `PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys!sample_find_element`.
    pub title: String,
    /// 16 lower-case hex digits of SHA-256 over the title: stable across runs and
    /// machines, safe in file names.
    pub id: String,
    /// The bucket's code: the dump's, except a 0x50 in an unloaded driver counts as 0xCE.
    pub bugcheck_code: u32,
    pub subcode: Option<u64>,
    /// e.g. `sample_ebpf_ext.sys` or `sample_ext.sys (unloaded)`.
    pub module: Option<String>,
    pub symbol: Option<String>,
    /// The function the blamed frame lies in (`_sample_map_update_entry`), from the dump's
    /// image exports or a symbol path: shown with the crash and counted per bucket, but not
    /// part of the title or id (one bug faults in several callbacks; docs/triage.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
}

/// Whether frames in this image are skipped when blaming, as `!analyze` skips them.
pub fn is_common_module(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("ntoskrnl") || n.starts_with("ntkrnl") || n == "hal.dll" || n == "ebpfcore.sys"
}

/// The frame a crash is blamed on: the first one in a module that is not common, else the
/// first in any module.
pub fn blamed_frame(stack: &[StackFrame]) -> Option<&StackFrame> {
    let in_module = || stack.iter().filter(|f| f.module.is_some());
    in_module()
        .find(|f| f.module.as_deref().is_some_and(|m| !is_common_module(m)))
        .or_else(|| in_module().next())
}

/// The signature of a triaged crash, refined by `!analyze` fields when available.
pub fn signature(triage: &Triage, analyze: Option<&Analyze>) -> Signature {
    let bugcheck = &triage.bugcheck;
    let from_debugger = analyze.and_then(|a| {
        let image = a.image_name.as_deref().filter(|s| !s.is_empty())?;
        let symbol = a.symbol_name.as_deref().and_then(symbol_function);
        Some((image.to_owned(), symbol, a.blames_unloaded()))
    });
    let function = blamed_frame(&triage.stack).and_then(|f| f.function.clone());
    let from_stack = || {
        blamed_frame(&triage.stack).map(|f| {
            (
                f.module.clone().unwrap_or_default(),
                // The function is shown by triage but kept out of the bucket: one bug's
                // crash site varies between callbacks (a freed entry read by a find or by a
                // helper), and a bucket per callback would split it (docs/triage.md).
                None::<String>,
                f.unloaded,
            )
        })
    };
    let from_rip = || {
        triage
            .faulting_module
            .as_ref()
            .map(|m| (m.name.clone(), None, m.unloaded))
    };
    let (module, symbol, unloaded) = match from_debugger.or_else(from_stack).or_else(from_rip) {
        Some((m, s, u)) => (Some(m), s, u),
        None => (None, None, false),
    };
    let module = module
        .map(|m| normalize_name(&m))
        .filter(|m| !m.is_empty())
        .map(|m| {
            if unloaded {
                format!("{m} (unloaded)")
            } else {
                m
            }
        });
    let symbol = symbol.map(|s| normalize_name(&s)).filter(|s| !s.is_empty());

    let grouped = unloaded && UNLOADED_SYMPTOMS.contains(&bugcheck.code);
    let (code, name, subcode) = if grouped {
        let name = crate::codes::bugcheck_name(UNLOADED_DRIVER_CODE).map(str::to_owned);
        (UNLOADED_DRIVER_CODE, name, None)
    } else {
        (bugcheck.code, bugcheck.name.clone(), bugcheck.subcode)
    };
    let mut title = match &name {
        Some(name) => name.clone(),
        None => format!("BUGCHECK_{code:X}"),
    };
    match subcode {
        Some(sub) => title.push_str(&format!(" ({code:#x}/{sub:#x})")),
        None => title.push_str(&format!(" ({code:#x})")),
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
        bugcheck_code: code,
        subcode,
        module,
        symbol,
        function,
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
    // `x!unloaded` is WinDbg's name for a frame in an unloaded driver: no function either.
    (!f.is_empty() && f != "unknown_function" && f != "unloaded").then(|| f.to_owned())
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
#[path = "signature_tests.rs"]
mod tests;
