//! Bugchecks: the one table of codes Windows driver testing meets (name, what the four
//! parameters mean), and the record of one stop (code and parameters) that the event log,
//! a dump header and the simulated kernel all carry.

use serde::{Deserialize, Serialize};

/// `IRQL_NOT_LESS_OR_EQUAL`: kernel code touched pageable memory (or waited) above
/// PASSIVE/APC level.
pub const IRQL_NOT_LESS_OR_EQUAL: u32 = 0x0A;
/// `PAGE_FAULT_IN_NONPAGED_AREA`: a read or write through a stale pool handle.
pub const PAGE_FAULT_IN_NONPAGED_AREA: u32 = 0x50;
/// `NMI_HARDWARE_FAILURE`: an NMI was injected (used to dump a hung guest).
pub const NMI_HARDWARE_FAILURE: u32 = 0x80;
/// `BAD_POOL_CALLER`: a pool free of memory that is not allocated.
pub const BAD_POOL_CALLER: u32 = 0xC2;
/// `DRIVER_VERIFIER_DETECTED_VIOLATION`.
pub const DRIVER_VERIFIER_DETECTED_VIOLATION: u32 = 0xC4;
/// `DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS`: code of an unloaded driver ran.
pub const DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS: u32 = 0xCE;
/// `DRIVER_IRQL_NOT_LESS_OR_EQUAL`: as `IRQL_NOT_LESS_OR_EQUAL`, from a driver's code.
pub const DRIVER_IRQL_NOT_LESS_OR_EQUAL: u32 = 0xD1;
/// `KERNEL_SECURITY_CHECK_FAILURE`: a `__fastfail`, e.g. the epoch double-free check.
pub const KERNEL_SECURITY_CHECK_FAILURE: u32 = 0x139;

/// A bugcheck: the code and the four parameters, as event 41, a dump header and
/// `KeBugCheckEx` carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bugcheck {
    pub code: u32,
    pub params: [u64; 4],
}

impl Bugcheck {
    /// The symbolic name of the code, when the table knows it.
    pub fn name(&self) -> Option<&'static str> {
        name(self.code)
    }
}

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
pub fn name(code: u32) -> Option<&'static str> {
    TABLE.iter().find(|e| e.0 == code).map(|e| e.1)
}

/// What each parameter of `code` means (empty strings where unknown or unused).
pub fn param_meanings(code: u32) -> [&'static str; 4] {
    TABLE.iter().find(|e| e.0 == code).map_or([""; 4], |e| e.2)
}

/// The `FAST_FAIL_*` name (without the prefix) of a `__fastfail` code, parameter 1 of 0x139.
pub fn fast_fail_name(code: u64) -> Option<&'static str> {
    usize::try_from(code)
        .ok()
        .and_then(|i| FAST_FAIL.get(i))
        .copied()
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes_have_names() {
        assert_eq!(name(0x50), Some("PAGE_FAULT_IN_NONPAGED_AREA"));
        assert_eq!(
            name(KERNEL_SECURITY_CHECK_FAILURE),
            Some("KERNEL_SECURITY_CHECK_FAILURE")
        );
        assert_eq!(name(0x12345), None);
        assert_eq!(param_meanings(0x12345), [""; 4]);
    }

    #[test]
    fn fast_fail_three_is_corrupt_list_entry() {
        assert_eq!(fast_fail_name(3), Some("CORRUPT_LIST_ENTRY"));
        assert_eq!(fast_fail_name(16), None);
        assert_eq!(fast_fail_name(u64::MAX), None);
    }
}
