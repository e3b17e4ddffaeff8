//! Known issues in a run: the dispatcher marks each crash whose bucket `known-issues.yaml`
//! names (so every reporter shows the issue), counts the failures that are only known
//! crashes, and the `--known-issues` policy decides whether those fail the run.

use std::sync::Arc;

use chrono::NaiveDate;
use lab_config::KnownIssues;

use crate::events::{Bucket, Crash, Event, RunStats, UnitOutcome};

/// What a known crash does to the exit code (`--known-issues fail|warn`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KnownPolicy {
    /// A known crash still fails the run (exit 1); it is only marked as known.
    #[default]
    Fail,
    /// A run whose only failures are known crashes exits 0.
    Warn,
}

/// A `--known-issues` value that is not a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected `fail` or `warn`, got `{0}`")]
pub struct BadKnownPolicy(pub String);

impl std::str::FromStr for KnownPolicy {
    type Err = BadKnownPolicy;
    fn from_str(s: &str) -> Result<Self, BadKnownPolicy> {
        match s {
            "fail" => Ok(KnownPolicy::Fail),
            "warn" => Ok(KnownPolicy::Warn),
            other => Err(BadKnownPolicy(other.to_owned())),
        }
    }
}

/// The known issues a run matches crashes against.
#[derive(Debug, Clone)]
pub struct KnownSettings {
    pub issues: Option<Arc<KnownIssues>>,
    pub policy: KnownPolicy,
    /// The day entries' expiry dates are compared with (UTC).
    pub today: NaiveDate,
}

impl Default for KnownSettings {
    fn default() -> Self {
        KnownSettings {
            issues: None,
            policy: KnownPolicy::default(),
            today: chrono::Utc::now().date_naive(),
        }
    }
}

impl KnownSettings {
    /// One warning per expired entry, with its place in the file.
    pub fn expiry_warnings(&self) -> Vec<String> {
        self.issues
            .as_ref()
            .map(|k| k.expiry_warnings(self.today))
            .unwrap_or_default()
    }

    /// Sets `known_issue` on the bucket of a crash the file names.
    pub fn mark_bucket(&self, b: &mut Bucket) {
        if let Some(k) = &self.issues {
            b.known_issue = k.find(&b.id, &b.title, self.today).map(|e| e.issue.clone());
        }
    }

    /// Marks the crash an event carries, if any.
    pub fn mark(&self, event: &mut Event) {
        let crash = match event {
            Event::CrashDetected { crash, .. } => Some(crash),
            Event::UnitFinished {
                outcome:
                    UnitOutcome::Failed {
                        crash: Some(crash), ..
                    },
                ..
            } => Some(crash),
            _ => None,
        };
        if let Some(b) = crash.and_then(|c| c.bucket.as_mut()) {
            self.mark_bucket(b);
        }
    }

    /// Whether the run's failures count for the exit code: under `warn`, failures that are
    /// all known crashes do not.
    pub fn counts_as_failed(&self, stats: &RunStats) -> bool {
        match self.policy {
            KnownPolicy::Fail => stats.failed > 0,
            KnownPolicy::Warn => stats.failed > stats.known,
        }
    }
}

/// Whether a failed unit's crash is a known issue.
pub fn is_known(crash: Option<&Crash>) -> bool {
    crash
        .and_then(|c| c.bucket.as_ref())
        .is_some_and(|b| b.known_issue.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(yaml: &str) -> Arc<KnownIssues> {
        let src =
            lab_config::source_from_bytes(std::path::Path::new("k.yaml"), yaml.into()).unwrap();
        Arc::new(lab_config::parse_known_issues(&src).unwrap())
    }

    #[test]
    fn warn_forgives_only_runs_whose_failures_are_all_known() {
        let mut k = KnownSettings {
            issues: None,
            policy: KnownPolicy::Warn,
            today: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        };
        let stats = |failed, known| RunStats {
            failed,
            known,
            ..RunStats::default()
        };
        assert!(!k.counts_as_failed(&stats(2, 2)));
        assert!(k.counts_as_failed(&stats(2, 1)));
        assert!(!k.counts_as_failed(&stats(0, 0)));
        k.policy = KnownPolicy::Fail;
        assert!(k.counts_as_failed(&stats(2, 2)));
        assert_eq!("warn".parse(), Ok(KnownPolicy::Warn));
        assert!("maybe".parse::<KnownPolicy>().is_err());
    }

    #[test]
    fn a_bucket_is_marked_by_id_or_title() {
        let k = KnownSettings {
            issues: Some(issues(
                "known_issues:\n  - signature: 'PAGE_FAULT* in sample_ext_*'\n    issue: https://x.invalid/7\n",
            )),
            policy: KnownPolicy::Fail,
            today: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        };
        let mut b = Bucket {
            id: "0123456789abcdef".into(),
            title: "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ext_a.sys".into(),
            new: true,
            known_issue: None,
        };
        k.mark_bucket(&mut b);
        assert_eq!(b.known_issue.as_deref(), Some("https://x.invalid/7"));
        b.title = "IRQL_NOT_LESS_OR_EQUAL (0xa) in ebpfcore.sys".into();
        k.mark_bucket(&mut b);
        assert_eq!(b.known_issue, None);
    }
}
