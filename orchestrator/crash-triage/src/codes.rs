//! What bugcheck parameters mean to triage: the violation kind a signature includes. The
//! table of names and parameter meanings is win-vocab's.

pub use win_vocab::bugcheck::{name as bugcheck_name, param_meanings};

/// For codes whose first parameter names the kind of violation, that kind: a bug that
/// fails a different check is a different bug, so signatures include it.
pub fn subcode(code: u32, params: &[u64; 4]) -> Option<Subcode> {
    let p1 = params[0];
    let meaning = match code {
        0x139 => win_vocab::bugcheck::fast_fail_name(p1).map(|s| match s {
            "CORRUPT_LIST_ENTRY" => {
                "LIST_ENTRY corruption (FAST_FAIL_CORRUPT_LIST_ENTRY)".to_owned()
            }
            other => format!("FAST_FAIL_{other}"),
        }),
        0xC4 => match p1 {
            0x62 => Some("a driver unloaded without freeing its pool allocations".to_owned()),
            0xF6 => Some("a driver referenced a user-mode handle as kernel mode".to_owned()),
            _ => None,
        },
        0xC2 => match p1 {
            0x07 => Some("attempt to free pool that was already freed".to_owned()),
            _ => None,
        },
        0x133 => match p1 {
            0 => Some("a single DPC or ISR ran past its time allotment".to_owned()),
            1 => Some("the system spent too long at DISPATCH_LEVEL or above".to_owned()),
            _ => None,
        },
        0x19 | 0x1A | 0x4E | 0x9F | 0xC9 | 0xE6 | 0x13A => None,
        _ => return None,
    };
    Some(Subcode { value: p1, meaning })
}

/// The violation kind from parameter 1 of codes that carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subcode {
    pub value: u64,
    pub meaning: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_have_names() {
        assert_eq!(bugcheck_name(0x50), Some("PAGE_FAULT_IN_NONPAGED_AREA"));
        assert_eq!(bugcheck_name(0x139), Some("KERNEL_SECURITY_CHECK_FAILURE"));
        assert_eq!(bugcheck_name(0x12345), None);
    }

    #[test]
    fn fail_fast_three_is_list_entry_corruption() {
        let s = subcode(0x139, &[3, 0, 0, 0]).unwrap();
        assert_eq!(s.value, 3);
        assert!(s.meaning.unwrap().contains("LIST_ENTRY"));
        assert_eq!(subcode(0x139, &[16, 0, 0, 0]).unwrap().meaning, None);
    }

    #[test]
    fn verifier_0x62_is_a_pool_leak_at_unload() {
        let s = subcode(0xC4, &[0x62, 0, 0, 0]).unwrap();
        assert!(s.meaning.unwrap().contains("without freeing"));
        assert!(subcode(0x50, &[0x62, 0, 0, 0]).is_none());
    }
}
