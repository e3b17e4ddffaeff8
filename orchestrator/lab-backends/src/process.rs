//! Supervised child processes: every process a run spawns goes through here, so each one
//! runs in its own process group, is killed with its group when dropped, and can be signalled.
//!
//! Killing the whole group matters: a simulated guest runs tool threads, and a PowerShell
//! host may start grandchildren; killing only the direct child would leave them behind.

use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::error::{BackendError, Result};

/// A running child in its own process group. Dropping it kills the group.
#[derive(Debug)]
pub struct Supervised {
    what: String,
    child: Child,
    pid: u32,
}

impl Supervised {
    /// Spawns `cmd` in a new process group with stdio redirected to `log` (appended).
    pub fn spawn(what: impl Into<String>, mut cmd: Command, log: &Path) -> Result<Self> {
        let what = what.into();
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(BackendError::io("open console log", log))?;
        let err = out
            .try_clone()
            .map_err(BackendError::io("open console log", log))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .process_group(0)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| BackendError::Spawn {
            what: what.clone(),
            source,
        })?;
        let pid = child.id().ok_or_else(|| BackendError::Spawn {
            what: what.clone(),
            source: std::io::Error::other("child exited before its pid was read"),
        })?;
        Ok(Supervised { what, child, pid })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `sig` to the child only (not its group).
    pub fn signal(&self, sig: Signal) -> Result<()> {
        signal::kill(Pid::from_raw(self.pid as i32), sig).map_err(|e| BackendError::Spawn {
            what: format!("signal {} to {}", sig, self.what),
            source: std::io::Error::from(e),
        })
    }

    /// Waits for the child to exit and returns its exit code (`None` if killed by a signal).
    pub async fn wait(&mut self) -> Result<Option<i32>> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|source| BackendError::Spawn {
                what: format!("wait for {}", self.what),
                source,
            })?;
        Ok(status.code())
    }

    /// Kills the whole process group and reaps the child.
    pub async fn kill(&mut self) -> Result<()> {
        kill_group(self.pid);
        // The group kill covers the child; `kill` here reaps it and is a no-op if gone.
        let _ = self.child.kill().await;
        Ok(())
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        // kill_on_drop only kills the direct child; take the group with it.
        kill_group(self.pid);
    }
}

/// SIGKILLs process group `pgid`, ignoring "no such process".
pub fn kill_group(pgid: u32) {
    let _ = signal::killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL);
}

/// Whether a process with this pid exists (used by `lab gc` to spot orphaned VMs).
pub fn pid_alive(pid: u32) -> bool {
    // Signal 0 checks existence and permission without delivering anything.
    matches!(
        signal::kill(Pid::from_raw(pid as i32), None),
        Ok(()) | Err(nix::errno::Errno::EPERM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dropping_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let pidfile = dir.path().join("grandchild.pid");
        let mut cmd = Command::new("sh");
        // The grandchild would outlive a plain kill of `sh`.
        cmd.arg("-c")
            .arg(format!("sleep 30 & echo $! > {}; wait", pidfile.display()));
        let child = Supervised::spawn("test shell", cmd, &log).unwrap();
        let mut grandchild = None;
        for _ in 0..200 {
            if let Ok(s) = std::fs::read_to_string(&pidfile)
                && let Ok(pid) = s.trim().parse::<u32>()
            {
                grandchild = Some(pid);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let grandchild = grandchild.expect("grandchild started");
        assert!(pid_alive(grandchild));
        drop(child);
        for _ in 0..200 {
            if !pid_alive(grandchild) || is_zombie(grandchild) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("grandchild {grandchild} survived the group kill");
    }

    fn is_zombie(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.split_whitespace().nth(2) == Some("Z"))
            .unwrap_or(false)
    }
}
