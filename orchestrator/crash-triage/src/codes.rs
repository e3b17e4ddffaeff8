//! Bugcheck names and what their parameters mean, for the codes driver testing meets.

/// `(code, name, what the four parameters are)`.
const TABLE: &[(u32, &str, [&str; 4])] = &[
    (
        0x0A,
        "IRQL_NOT_LESS_OR_EQUAL",
        [
            "memory referenced",
            "IRQL",
            "operation (0 read, 1 write, 8 execute)",
            "address that referenced memory",
        ],
    ),
    (0x19, "BAD_POOL_HEADER", ["type of violation", "", "", ""]),
    (0x1A, "MEMORY_MANAGEMENT", ["type of violation", "", "", ""]),
    (
        0x1E,
        "KMODE_EXCEPTION_NOT_HANDLED",
        [
            "exception code",
            "address of the exception",
            "exception parameter 0",
            "exception parameter 1",
        ],
    ),
    (
        0x3B,
        "SYSTEM_SERVICE_EXCEPTION",
        [
            "exception code",
            "address of the instruction",
            "address of the context record",
            "",
        ],
    ),
    (0x4E, "PFN_LIST_CORRUPT", ["type of violation", "", "", ""]),
    (
        0x50,
        "PAGE_FAULT_IN_NONPAGED_AREA",
        [
            "memory referenced",
            "operation (0 read, 2 write, 10 execute)",
            "address that referenced memory",
            "type of page fault",
        ],
    ),
    (
        0x7E,
        "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED",
        [
            "exception code",
            "address of the exception",
            "exception record address",
            "context record address",
        ],
    ),
    (
        0x7F,
        "UNEXPECTED_KERNEL_MODE_TRAP",
        ["trap number", "", "", ""],
    ),
    (0x80, "NMI_HARDWARE_FAILURE", ["", "", "", ""]),
    (
        0x9F,
        "DRIVER_POWER_STATE_FAILURE",
        ["type of violation", "", "", ""],
    ),
    (
        0xBE,
        "ATTEMPTED_WRITE_TO_READONLY_MEMORY",
        ["virtual address of the write", "PTE contents", "", ""],
    ),
    (
        0xC1,
        "SPECIAL_POOL_DETECTED_MEMORY_CORRUPTION",
        [
            "address the driver tried to free",
            "",
            "",
            "type of corruption",
        ],
    ),
    (0xC2, "BAD_POOL_CALLER", ["type of violation", "", "", ""]),
    (
        0xC4,
        "DRIVER_VERIFIER_DETECTED_VIOLATION",
        ["type of violation", "", "", ""],
    ),
    (
        0xC5,
        "DRIVER_CORRUPTED_EXPOOL",
        [
            "memory referenced",
            "IRQL",
            "operation (0 read, 1 write)",
            "address that referenced memory",
        ],
    ),
    (
        0xC7,
        "TIMER_OR_DPC_INVALID",
        ["type of object", "object address", "", ""],
    ),
    (
        0xC9,
        "DRIVER_VERIFIER_IOMANAGER_VIOLATION",
        ["type of violation", "", "", ""],
    ),
    (
        0xCB,
        "DRIVER_LEFT_LOCKED_PAGES_IN_PROCESS",
        [
            "calling address",
            "caller of the caller",
            "MDL address",
            "number of locked pages",
        ],
    ),
    (
        0xCE,
        "DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS",
        [
            "memory referenced",
            "operation (0 read, 1 write)",
            "address that referenced memory",
            "",
        ],
    ),
    (
        0xD1,
        "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
        [
            "memory referenced",
            "IRQL",
            "operation (0 read, 1 write, 8 execute)",
            "address that referenced memory",
        ],
    ),
    (
        0xD5,
        "DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL",
        [
            "memory referenced",
            "operation (0 read, 1 write)",
            "address that referenced memory",
            "",
        ],
    ),
    (
        0xD6,
        "DRIVER_PAGE_FAULT_BEYOND_END_OF_ALLOCATION",
        [
            "memory referenced",
            "operation (0 read, 1 write)",
            "address that referenced memory",
            "",
        ],
    ),
    (0xE2, "MANUALLY_INITIATED_CRASH", ["", "", "", ""]),
    (
        0xE6,
        "DRIVER_VERIFIER_DMA_VIOLATION",
        ["type of violation", "", "", ""],
    ),
    (
        0xEF,
        "CRITICAL_PROCESS_DIED",
        ["process object", "", "", ""],
    ),
    (
        0xF7,
        "DRIVER_OVERRAN_STACK_BUFFER",
        [
            "actual security check cookie",
            "expected cookie",
            "complement of the expected cookie",
            "",
        ],
    ),
    (
        0xFC,
        "ATTEMPTED_EXECUTE_OF_NOEXECUTE_MEMORY",
        ["virtual address of the attempt", "PTE contents", "", ""],
    ),
    (
        0x101,
        "CLOCK_WATCHDOG_TIMEOUT",
        [
            "clock interrupt time-out interval (ticks)",
            "",
            "PRCB address of the hung processor",
            "index of the hung processor",
        ],
    ),
    (
        0x124,
        "WHEA_UNCORRECTABLE_ERROR",
        ["error source type", "WHEA_ERROR_RECORD address", "", ""],
    ),
    (
        0x133,
        "DPC_WATCHDOG_VIOLATION",
        [
            "0: one DPC ran too long, 1: cumulative DPC time too long",
            "",
            "",
            "",
        ],
    ),
    (
        0x139,
        "KERNEL_SECURITY_CHECK_FAILURE",
        [
            "type of corruption (fail-fast code)",
            "trap frame address",
            "exception record address",
            "",
        ],
    ),
    (
        0x13A,
        "KERNEL_MODE_HEAP_CORRUPTION",
        ["type of corruption", "", "", ""],
    ),
    (0x1D5, "DRIVER_PNP_WATCHDOG", ["", "", "", ""]),
    (0xDEAD_DEAD, "MANUALLY_INITIATED_CRASH1", ["", "", "", ""]),
];

/// `FAST_FAIL_*` codes (winnt.h), parameter 1 of 0x139.
const FAST_FAIL: &[&str] = &[
    "LEGACY_GS_VIOLATION",
    "VTGUARD_CHECK_FAILURE",
    "STACK_COOKIE_CHECK_FAILURE",
    "CORRUPT_LIST_ENTRY",
    "INCORRECT_STACK",
    "INVALID_ARG",
    "GS_COOKIE_INIT",
    "FATAL_APP_EXIT",
    "RANGE_CHECK_FAILURE",
    "UNSAFE_REGISTRY_ACCESS",
    "GUARD_ICALL_CHECK_FAILURE",
    "GUARD_WRITE_CHECK_FAILURE",
    "INVALID_FIBER_SWITCH",
    "INVALID_SET_OF_CONTEXT",
    "INVALID_REFERENCE_COUNT",
    "",
    "",
    "",
    "INVALID_JUMP_BUFFER",
    "MRDATA_MODIFIED",
    "CERTIFICATION_FAILURE",
    "INVALID_EXCEPTION_CHAIN",
    "CRYPTO_LIBRARY",
    "INVALID_CALL_IN_DLL_CALLOUT",
    "INVALID_IMAGE_BASE",
    "DLOAD_PROTECTION_FAILURE",
    "UNSAFE_EXTENSION_CALL",
    "DEPRECATED_SERVICE_INVOKED",
    "INVALID_BUFFER_ACCESS",
    "INVALID_BALANCED_TREE",
    "INVALID_NEXT_THREAD",
];

/// The name of a bugcheck code, when the table knows it.
pub fn bugcheck_name(code: u32) -> Option<&'static str> {
    TABLE.iter().find(|e| e.0 == code).map(|e| e.1)
}

/// What each parameter of `code` means (empty strings where unknown or unused).
pub fn param_meanings(code: u32) -> [&'static str; 4] {
    TABLE.iter().find(|e| e.0 == code).map_or([""; 4], |e| e.2)
}

/// For codes whose first parameter names the kind of violation, that kind: a bug that
/// fails a different check is a different bug, so signatures include it.
pub fn subcode(code: u32, params: &[u64; 4]) -> Option<Subcode> {
    let p1 = params[0];
    let meaning = match code {
        0x139 => usize::try_from(p1)
            .ok()
            .and_then(|i| FAST_FAIL.get(i))
            .filter(|s| !s.is_empty())
            .map(|s| match *s {
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
