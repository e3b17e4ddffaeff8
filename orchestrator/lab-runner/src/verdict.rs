//! Failure or error (DESIGN.md §8): which evidence makes a guest restart a failure of the
//! code under test, and how a restart without any is worded as a lab error.
//!
//! A false verdict is the worst defect a validation lab can have: a VM process that was
//! killed must never read as a driver bug. So a restart counts as a crash only with a
//! bugcheck record (event 41 with a bugcheck code) or a dump, or when the lab itself made
//! the guest crash to break a hang (NMI).

use crate::events::{Crash, CrashKind};

/// Whether `c` proves that the code under test misbehaved.
pub fn is_evidence(c: &Crash) -> bool {
    c.kind == CrashKind::Hang || c.bugcheck.is_some() || !c.dumps.is_empty()
}

/// What the crash pipeline looked at after the guest restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartSeen {
    /// Boot id before and after the restart.
    pub before: String,
    pub after: String,
    /// Event records after this record number were searched.
    pub since_record: u64,
    /// Event ids found there, in log order (41 with `BugcheckCode` 0 means power loss), or
    /// why the log could not be read: that reason stands inside the message (the evidence
    /// list goes on after it), so it is kept as text, not as a source.
    pub event_ids: Result<Vec<u32>, String>,
}

/// Why a guest restart is a lab error, not a crash: the message says what was seen and
/// what was looked for, so a reader can check the verdict.
#[derive(Debug, thiserror::Error)]
pub enum NotACrash {
    /// The guest went away and did not answer again.
    #[error(
        "the guest stopped answering and did not come back (boot id before: {before}), so \
         no bugcheck record or dump could be read (not counted as a kernel crash)"
    )]
    DidNotComeBack {
        before: String,
        // Boxed: the runner's error can itself carry a `NotACrash`.
        #[source]
        source: Box<crate::error::RunnerError>,
    },
    /// The guest restarted without a bugcheck record or dump.
    #[error("{}", restart_without_evidence(.0))]
    NoEvidence(RestartSeen),
}

/// The message for a restart without a bugcheck record or dump.
fn restart_without_evidence(seen: &RestartSeen) -> String {
    let found = match &seen.event_ids {
        Ok(ids) if ids.is_empty() => "none".to_owned(),
        Ok(ids) => {
            let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
            format!("event ids {}", ids.join(", "))
        }
        Err(e) => format!("the log could not be read: {e}"),
    };
    format!(
        "the VM restarted without a bugcheck record or dump: its process died or was powered \
         off (not a kernel crash); boot id {} -> {}; looked for System event 41/1001 with a \
         bugcheck code after record {} (found: {found}) and for MEMORY.DMP and \
         Minidump\\*.dmp (none)",
        seen.before, seen.after, seen.since_record
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::BugcheckInfo;

    fn crash(kind: CrashKind) -> Crash {
        Crash {
            kind,
            step: Some("steps[0]".into()),
            bugcheck: None,
            dumps: vec![],
            bucket: None,
            triage_error: None,
            dumps_lost: vec![],
        }
    }

    #[test]
    fn a_restart_with_nothing_left_behind_is_not_evidence() {
        assert!(!is_evidence(&crash(CrashKind::Bugcheck)));
        assert!(!is_evidence(&crash(CrashKind::ConnectionLost)));
        assert!(!is_evidence(&crash(CrashKind::HeartbeatLost)));
    }

    #[test]
    fn a_bugcheck_record_a_dump_or_a_hang_is_evidence() {
        let mut with_record = crash(CrashKind::Bugcheck);
        with_record.bugcheck = Some(BugcheckInfo {
            code: 0x50,
            name: None,
            params: [0; 4],
            module: None,
            symbol: None,
        });
        assert!(is_evidence(&with_record));
        let mut with_dump = crash(CrashKind::Bugcheck);
        with_dump.dumps.push("u/dumps/MEMORY.DMP".into());
        // A dump that triage could not read is still a dump the kernel wrote.
        with_dump.triage_error = Some("truncated".into());
        assert!(is_evidence(&with_dump));
        // The step timed out: the hang itself is the evidence, whatever the NMI left.
        assert!(is_evidence(&crash(CrashKind::Hang)));
    }

    #[test]
    fn the_message_says_what_happened_and_keeps_the_evidence() {
        let m = NotACrash::NoEvidence(RestartSeen {
            before: "b-1".into(),
            after: "b-2".into(),
            since_record: 7,
            event_ids: Ok(vec![6008, 41]),
        })
        .to_string();
        assert!(
            m.starts_with(
                "the VM restarted without a bugcheck record or dump: its process died or was \
                 powered off (not a kernel crash)"
            ),
            "{m}"
        );
        assert!(m.contains("boot id b-1 -> b-2"), "{m}");
        assert!(
            m.contains("after record 7 (found: event ids 6008, 41)"),
            "{m}"
        );
        let none = restart_without_evidence(&RestartSeen {
            before: "a".into(),
            after: "b".into(),
            since_record: 0,
            event_ids: Ok(vec![]),
        });
        assert!(none.contains("(found: none)"), "{none}");
        let unread = restart_without_evidence(&RestartSeen {
            before: "a".into(),
            after: "b".into(),
            since_record: 0,
            event_ids: Err("agent gone".into()),
        });
        assert!(
            unread.contains("(found: the log could not be read: agent gone)"),
            "{unread}"
        );
    }

    #[test]
    fn a_guest_that_never_came_back_keeps_why_as_a_cause() {
        let e = NotACrash::DidNotComeBack {
            before: "b-1".into(),
            source: Box::new(crate::error::RunnerError::Observed(
                "the guest agent did not answer".into(),
            )),
        };
        let (what, causes) = lab_error::split(&e);
        assert!(
            what.starts_with(
                "the guest stopped answering and did not come back (boot id before: b-1)"
            ),
            "{what}"
        );
        assert_eq!(causes, ["the guest agent did not answer"]);
        // Wrapped by the runner, the chain is the same: no cause is lost or repeated.
        let wrapped = crate::error::RunnerError::from(e);
        assert_eq!(lab_error::chain(&wrapped), [what, causes[0].clone()]);
    }
}
