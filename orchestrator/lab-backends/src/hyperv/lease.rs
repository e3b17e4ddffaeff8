//! Leases in a VM's Notes: who owns an hvlab VM (machine and process of the orchestrator)
//! and until when. A run renews the leases of its VMs while it lives, so `hvlab lab gc` on
//! any machine can tell a live run's VMs from a dead run's without reaching its owner.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How long a lease lasts without renewal. A run renews every [`RENEW_EVERY`], so a lease
/// only runs out when its orchestrator is gone (or cut off from the host) this long.
pub const LEASE_TERM: Duration = Duration::from_secs(15 * 60);

/// How often a live run renews its leases: several renewals fit in one term, so one failed
/// renewal (a host busy for a minute) does not let a live run's lease lapse.
pub const RENEW_EVERY: Duration = Duration::from_secs(3 * 60);

/// The owner of a VM and the end of its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Host name of the machine the orchestrator runs on.
    pub owner_host: String,
    pub owner_pid: u32,
    /// Seconds since the Unix epoch (UTC).
    pub expires_unix: u64,
}

impl Lease {
    /// A lease for this process, running `term` from now.
    pub fn mine(term: Duration) -> Lease {
        Lease {
            owner_host: this_host(),
            owner_pid: std::process::id(),
            expires_unix: now_unix() + term.as_secs(),
        }
    }

    /// Whether the owner still holds the VM at `now` (Unix seconds). On the owner's own
    /// machine a dead process releases it at once; elsewhere only the lease's end does.
    pub fn held(&self, now: u64, here: &str, pid_alive: impl Fn(u32) -> bool) -> bool {
        if self.expires_unix <= now {
            return false;
        }
        if self.owner_host.eq_ignore_ascii_case(here) {
            return pid_alive(self.owner_pid);
        }
        true
    }

    /// `ci-7 pid 4242, lease until 2026-01-01T00:00:00Z`.
    pub fn describe(&self) -> String {
        let until = chrono::DateTime::from_timestamp(self.expires_unix as i64, 0)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| self.expires_unix.to_string());
        format!(
            "{} pid {}, lease until {until}",
            self.owner_host, self.owner_pid
        )
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// This machine's host name, as leases record it.
pub fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(host: &str, expires: u64) -> Lease {
        Lease {
            owner_host: host.into(),
            owner_pid: 7,
            expires_unix: expires,
        }
    }

    #[test]
    fn another_machines_lease_holds_until_it_expires() {
        let alive = |_| panic!("another machine's pid is not checked here");
        assert!(lease("ci-7", 1000).held(999, "laptop", alive));
        assert!(!lease("ci-7", 1000).held(1000, "laptop", alive));
    }

    #[test]
    fn on_the_owners_machine_a_dead_process_releases_at_once() {
        assert!(!lease("ci-7", 1000).held(10, "CI-7", |_| false));
        assert!(lease("ci-7", 1000).held(10, "ci-7", |pid| pid == 7));
        // An expired lease is released even if the pid was reused.
        assert!(!lease("ci-7", 1000).held(2000, "ci-7", |_| true));
    }

    #[test]
    fn describe_names_owner_and_end() {
        assert_eq!(
            lease("ci-7", 1_767_225_600).describe(),
            "ci-7 pid 7, lease until 2026-01-01T00:00:00Z"
        );
    }
}
