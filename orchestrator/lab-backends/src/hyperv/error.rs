//! Typed PowerShell failures: an error record from a cmdlet (with its message, command and
//! fully qualified error id), a transport or process failure, a timeout, or output that is
//! not the expected JSON; and how each maps onto [`BackendError`].

use std::time::Duration;

use serde::Deserialize;

use crate::error::BackendError;

/// A PowerShell `ErrorRecord` as the script envelope reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PsErrorRecord {
    /// `Exception.Message`: the cmdlet's own words.
    pub message: String,
    /// The command that failed (`New-VHD`, `Invoke-Command`), when known.
    pub command: Option<String>,
    /// `FullyQualifiedErrorId`, e.g. `InvalidParameter,Microsoft.HyperV.PowerShell.Commands.NewVM`.
    pub fqid: String,
    /// `CategoryInfo.Category` (`ObjectNotFound`, `InvalidArgument`, ...).
    pub category: String,
    /// Exception type name.
    pub exception: String,
    /// `Exception.HResult`.
    pub hresult: i64,
    /// `host` or `guest`: where the script was running when it failed.
    pub layer: String,
}

impl std::fmt::Display for PsErrorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.command {
            Some(c) if !c.is_empty() => write!(f, "{c}: {}", self.message.trim()),
            _ => f.write_str(self.message.trim()),
        }?;
        if !self.fqid.is_empty() {
            write!(f, " [{}]", self.fqid)?;
        }
        Ok(())
    }
}

impl PsErrorRecord {
    /// Failures PowerShell Direct and WinRM produce while a guest boots or reboots: the
    /// VM's PowerShell Direct endpoint is not up yet, the guest's logon service rejects
    /// credentials before it has started, or the session broke under a reboot.
    pub fn is_transient(&self) -> bool {
        if self.layer != "host" {
            return false;
        }
        let hay = format!("{} {} {}", self.fqid, self.exception, self.message).to_lowercase();
        [
            "psdirectexception",
            "psremotingtransportexception",
            "the credential is invalid",
            "a remote session might have ended",
            "the virtual machine is not in a valid state",
            "pipelinestoppedexception",
            "the background process reported an error",
            "powershell direct session",
            "remotedataobject",
        ]
        .iter()
        .any(|needle| hay.contains(needle))
    }

    /// A Windows error code the record carries (the low word of a Win32 HRESULT), for
    /// callers that branch on codes such as 1073 (service exists).
    pub fn win32_code(&self) -> u32 {
        let h = self.hresult as u32;
        if h >> 16 == 0x8007 { h & 0xFFFF } else { 0 }
    }
}

/// Why a PowerShell script did not give a result.
#[derive(Debug, thiserror::Error)]
pub enum PsError {
    /// The script ran and a command in it failed.
    #[error("{op}: {record}")]
    Record {
        op: &'static str,
        record: Box<PsErrorRecord>,
    },
    /// The script could not be delivered or its output not collected.
    #[error("{op} on {target}")]
    Transport {
        op: &'static str,
        target: String,
        #[source]
        source: Box<lab_transport::TransportError>,
    },
    /// The local `powershell.exe` could not be started or supervised.
    #[error("{op}: start {program}")]
    Spawn {
        op: &'static str,
        program: String,
        #[source]
        source: std::io::Error,
    },
    /// The script ran past its timeout and was stopped.
    #[error("{op}: timed out after {after:?}")]
    Timeout { op: &'static str, after: Duration },
    /// PowerShell itself failed before the envelope was written (syntax, host crash).
    #[error("{op}: powershell exited with code {code} without a result: {stderr}")]
    NoResult {
        op: &'static str,
        code: i32,
        stderr: String,
    },
    /// The output is not the JSON the operation expects.
    #[error("{op}: parse its json output ({snippet:?})")]
    Json {
        op: &'static str,
        snippet: String,
        #[source]
        source: serde_json::Error,
    },
    /// A file did not arrive intact between this machine, the host and the guest.
    #[error("{op}: {detail}")]
    Transfer { op: &'static str, detail: String },
    /// A test double was asked something it has no answer for.
    #[error("{op}: the scripted host has no answer: {detail}")]
    Unscripted { op: &'static str, detail: String },
}

impl PsError {
    /// Worth retrying while a guest boots: transport hiccups, PowerShell Direct's
    /// well-known boot-time errors, and timeouts.
    pub fn is_transient(&self) -> bool {
        match self {
            PsError::Record { record, .. } => record.is_transient(),
            PsError::Transport { source, .. } => source.is_transient(),
            PsError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// The error as the backend contract reports it, for an operation on `vm`.
    pub fn into_backend(self, vm: &str, guest_op: bool) -> BackendError {
        let operation = self.op().to_owned();
        match self {
            e if e.is_transient() && !matches!(e, PsError::Timeout { .. }) => e.into_connection(vm),
            PsError::Timeout { after, .. } => BackendError::Timeout {
                vm: vm.to_owned(),
                operation,
                timeout: after,
            },
            PsError::Record { record, .. } if guest_op => BackendError::Guest {
                vm: vm.to_owned(),
                operation,
                code: record.win32_code(),
                message: record.to_string(),
            },
            PsError::Record { record, .. } => BackendError::VmState {
                vm: vm.to_owned(),
                operation,
                message: record.to_string(),
            },
            e @ (PsError::Json { .. }
            | PsError::NoResult { .. }
            | PsError::Unscripted { .. }
            | PsError::Transfer { .. }) => BackendError::Protocol {
                vm: vm.to_owned(),
                message: e.to_string(),
            },
            e @ PsError::Transport { .. } => e.into_connection(vm),
            PsError::Spawn {
                program, source, ..
            } => BackendError::Spawn {
                what: program,
                source,
            },
        }
    }

    /// A connection failure on `vm` that keeps the transport's error as its cause.
    fn into_connection(self, vm: &str) -> BackendError {
        match self {
            PsError::Transport {
                op, target, source, ..
            } => BackendError::Connection {
                vm: vm.to_owned(),
                message: format!("{op} on {target}"),
                source: Some(source),
            },
            e => BackendError::Connection {
                vm: vm.to_owned(),
                message: e.to_string(),
                source: None,
            },
        }
    }

    pub fn op(&self) -> &'static str {
        match self {
            PsError::Record { op, .. }
            | PsError::Transport { op, .. }
            | PsError::Spawn { op, .. }
            | PsError::Timeout { op, .. }
            | PsError::NoResult { op, .. }
            | PsError::Json { op, .. }
            | PsError::Transfer { op, .. }
            | PsError::Unscripted { op, .. } => op,
        }
    }
}
