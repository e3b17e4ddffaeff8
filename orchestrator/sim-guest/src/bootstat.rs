//! What survives a boot: `bootstat.json` (was the last shutdown clean, did it bugcheck) and
//! `memory.json` (the running state a checkpoint restore resumes from), and the System
//! events a boot writes from them.
//!
//! As on Windows, the crash records are written by the *next* boot: a bugcheck leaves the
//! dump and a crash record behind (Windows keeps it in the page file / dump header), and the
//! boot that follows logs event 6008 (unexpected shutdown), 41 (Kernel-Power, `BugcheckCode`
//! in decimal) and 1001 (BugCheck, with the dump path). A power-off (process killed) gives
//! 6008 and 41 with `BugcheckCode` 0. A clean shutdown or reboot gives none of these.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::eventlog::{
    LEVEL_CRITICAL, LEVEL_ERROR, LEVEL_INFORMATION, NewEvent, PROVIDER_BUGCHECK, PROVIDER_EVENTLOG,
    PROVIDER_KERNEL_POWER, PROVIDER_VOLMGR,
};
use crate::protocol::Verifier;

/// A bugcheck as recorded for the next boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrashRecord {
    pub code: u32,
    pub params: [u64; 4],
    /// Windows path of the dump written, if any.
    pub dump: Option<String>,
    /// Why a configured dump could not be written (the VM folder's disk was full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dump_error: Option<String>,
    pub time: DateTime<Utc>,
}

/// `bootstat.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootStat {
    pub boot_id: String,
    pub booted_at: DateTime<Utc>,
    /// Set by a clean shutdown or reboot; false while running.
    pub clean_shutdown: bool,
    /// Set by a bugcheck.
    #[serde(default)]
    pub bugcheck: Option<CrashRecord>,
}

/// `memory.json`: the state a standard checkpoint keeps in memory, which a restore resumes
/// (the hypervisor asks for that with `resume: true` in `vm.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedState {
    pub test_signing: bool,
    pub verifier: Verifier,
    /// Services running, in the order they were started.
    pub running_services: Vec<String>,
}

/// The events a boot logs about the previous one (none after a clean shutdown).
pub fn events_for_previous_boot(prev: &BootStat) -> Vec<NewEvent> {
    if prev.clean_shutdown {
        return Vec::new();
    }
    let mut events = Vec::new();
    let when = prev
        .bugcheck
        .as_ref()
        .map_or(prev.booted_at, |b| b.time)
        .format("%H:%M:%S on %-m/%-d/%Y");
    events.push(NewEvent {
        event_id: 6008,
        provider: PROVIDER_EVENTLOG,
        level: LEVEL_ERROR,
        message: format!("The previous system shutdown at {when} was unexpected."),
        data: BTreeMap::new(),
    });
    let (code, params) = prev
        .bugcheck
        .as_ref()
        .map_or((0, [0; 4]), |b| (b.code, b.params));
    let mut data = BTreeMap::from([
        ("BugcheckCode".to_owned(), code.to_string()),
        ("SleepInProgress".to_owned(), "0".to_owned()),
        ("PowerButtonTimestamp".to_owned(), "0".to_owned()),
    ]);
    for (i, p) in params.iter().enumerate() {
        data.insert(format!("BugcheckParameter{}", i + 1), format!("{p:#x}"));
    }
    events.push(NewEvent {
        event_id: 41,
        provider: PROVIDER_KERNEL_POWER,
        level: LEVEL_CRITICAL,
        message: "The system has rebooted without cleanly shutting down first. This error \
                  could be caused if the system stopped responding, crashed, or lost power \
                  unexpectedly."
            .to_owned(),
        data,
    });
    if let Some(why) = prev.bugcheck.as_ref().and_then(|b| b.dump_error.as_ref()) {
        // What Windows logs (volmgr 161) when it could not write the dump.
        events.push(NewEvent {
            event_id: 161,
            provider: PROVIDER_VOLMGR,
            level: LEVEL_ERROR,
            message: format!("Dump file creation failed due to error during dump creation: {why}"),
            data: BTreeMap::new(),
        });
    }
    if let Some(bc) = &prev.bugcheck {
        let bugcheck = bugcheck_text(bc.code, bc.params);
        let (saved, dump) = match &bc.dump {
            Some(path) => (format!("A dump was saved in: {path}."), path.clone()),
            None => ("A dump was not saved.".to_owned(), String::new()),
        };
        events.push(NewEvent {
            event_id: 1001,
            provider: PROVIDER_BUGCHECK,
            level: LEVEL_ERROR,
            message: format!(
                "The computer has rebooted from a bugcheck.  The bugcheck was: {bugcheck}. {saved} Report Id: {}.",
                prev.boot_id
            ),
            data: BTreeMap::from([
                ("param1".to_owned(), bugcheck),
                ("param2".to_owned(), dump),
                ("param3".to_owned(), prev.boot_id.clone()),
            ]),
        });
    }
    events
}

/// `0x00000050 (0xffffc00000000000, 0x0000000000000000, ...)`, as event 1001 writes it.
pub fn bugcheck_text(code: u32, params: [u64; 4]) -> String {
    let params = params
        .iter()
        .map(|p| format!("{p:#018x}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{code:#010x} ({params})")
}

/// Event 6005, logged at every boot.
pub fn boot_event() -> NewEvent {
    NewEvent {
        event_id: 6005,
        provider: PROVIDER_EVENTLOG,
        level: LEVEL_INFORMATION,
        message: "The Event log service was started.".to_owned(),
        data: BTreeMap::new(),
    }
}

/// Event 6006, logged by a clean shutdown or reboot.
pub fn shutdown_event() -> NewEvent {
    NewEvent {
        event_id: 6006,
        provider: PROVIDER_EVENTLOG,
        level: LEVEL_INFORMATION,
        message: "The Event log service was stopped.".to_owned(),
        data: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prev(bugcheck: Option<CrashRecord>, clean: bool) -> BootStat {
        BootStat {
            boot_id: "b1".into(),
            booted_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            clean_shutdown: clean,
            bugcheck,
        }
    }

    #[test]
    fn a_dump_that_could_not_be_written_gives_161_with_the_cause() {
        let bc = CrashRecord {
            code: 0x50,
            params: [0; 4],
            dump: None,
            dump_error: Some("No space left on device (os error 28)".into()),
            time: DateTime::from_timestamp(1_700_000_100, 0).unwrap(),
        };
        let ev = events_for_previous_boot(&prev(Some(bc), false));
        let ids: Vec<u32> = ev.iter().map(|e| e.event_id).collect();
        assert_eq!(ids, [6008, 41, 161, 1001]);
        assert!(
            ev[2]
                .message
                .ends_with("No space left on device (os error 28)")
        );
        assert!(ev[3].message.contains("A dump was not saved."));
    }

    #[test]
    fn bugcheck_gives_6008_41_with_decimal_code_and_1001() {
        let bc = CrashRecord {
            code: 0x50,
            params: [0xffff_c000_0000_0000, 0, 0xffff_f806_1000_1230, 2],
            dump: Some(r"C:\Windows\MEMORY.DMP".into()),
            dump_error: None,
            time: DateTime::from_timestamp(1_700_000_100, 0).unwrap(),
        };
        let ev = events_for_previous_boot(&prev(Some(bc), false));
        assert_eq!(
            ev.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            [6008, 41, 1001]
        );
        assert_eq!(ev[1].data["BugcheckCode"], "80");
        assert_eq!(ev[1].data["BugcheckParameter1"], "0xffffc00000000000");
        assert_eq!(ev[1].data["BugcheckParameter4"], "0x2");
        assert_eq!(
            ev[2].message,
            "The computer has rebooted from a bugcheck.  The bugcheck was: 0x00000050 \
             (0xffffc00000000000, 0x0000000000000000, 0xfffff80610001230, 0x0000000000000002). \
             A dump was saved in: C:\\Windows\\MEMORY.DMP. Report Id: b1."
        );
    }

    #[test]
    fn power_loss_gives_41_with_code_zero_and_clean_shutdown_nothing() {
        let ev = events_for_previous_boot(&prev(None, false));
        assert_eq!(
            ev.iter().map(|e| e.event_id).collect::<Vec<_>>(),
            [6008, 41]
        );
        assert_eq!(ev[1].data["BugcheckCode"], "0");
        assert!(events_for_previous_boot(&prev(None, true)).is_empty());
    }
}
