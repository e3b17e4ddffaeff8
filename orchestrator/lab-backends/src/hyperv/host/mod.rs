//! Where host scripts run: a `PowerShellHost` is a local `powershell.exe` (hvlab on the
//! Hyper-V host), a remote host over WinRM or SSH (lab-transport), or a scripted test double
//! that answers recorded outputs. Each runs a [`Script`] with a timeout and moves files
//! between this machine and the host.

mod local;
mod remote;
pub mod scripted;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

pub use local::LocalPowerShell;
pub use remote::RemotePowerShell;
pub use scripted::ScriptedHost;

use super::error::PsError;
use super::parse;
use super::script::Script;
use serde::de::DeserializeOwned;

/// Runs scripts and moves files on one Hyper-V host.
pub trait PowerShellHost: Send + Sync {
    /// `local`, `winrm://host:5986`, ..., for messages.
    fn target(&self) -> &str;
    /// Runs a script; returns what it printed (the envelope line).
    fn run(
        &self,
        script: &Script,
        timeout: Duration,
    ) -> impl Future<Output = Result<String, PsError>> + Send;
    /// Copies a local file to `host_path` on the host (creating its folder).
    fn put_file(
        &self,
        local: &Path,
        host_path: &str,
    ) -> impl Future<Output = Result<(), PsError>> + Send;
    /// Copies `host_path` from the host to a local file.
    fn get_file(
        &self,
        host_path: &str,
        local: &Path,
    ) -> impl Future<Output = Result<(), PsError>> + Send;
}

/// The closed set of PowerShell hosts.
#[derive(Debug)]
pub enum AnyPsHost {
    Local(LocalPowerShell),
    Remote(RemotePowerShell),
    Scripted(ScriptedHost),
}

impl PowerShellHost for AnyPsHost {
    fn target(&self) -> &str {
        match self {
            AnyPsHost::Local(h) => h.target(),
            AnyPsHost::Remote(h) => h.target(),
            AnyPsHost::Scripted(h) => h.target(),
        }
    }
    async fn run(&self, script: &Script, timeout: Duration) -> Result<String, PsError> {
        tracing::debug!(host = self.target(), op = script.op, "powershell");
        match self {
            AnyPsHost::Local(h) => h.run(script, timeout).await,
            AnyPsHost::Remote(h) => h.run(script, timeout).await,
            AnyPsHost::Scripted(h) => h.run(script, timeout).await,
        }
    }
    async fn put_file(&self, local: &Path, host_path: &str) -> Result<(), PsError> {
        match self {
            AnyPsHost::Local(h) => h.put_file(local, host_path).await,
            AnyPsHost::Remote(h) => h.put_file(local, host_path).await,
            AnyPsHost::Scripted(h) => h.put_file(local, host_path).await,
        }
    }
    async fn get_file(&self, host_path: &str, local: &Path) -> Result<(), PsError> {
        match self {
            AnyPsHost::Local(h) => h.get_file(host_path, local).await,
            AnyPsHost::Remote(h) => h.get_file(host_path, local).await,
            AnyPsHost::Scripted(h) => h.get_file(host_path, local).await,
        }
    }
}

/// Runs a script and parses its envelope into `T`.
pub async fn call<T: DeserializeOwned, H: PowerShellHost + ?Sized>(
    host: &H,
    script: &Script,
    timeout: Duration,
) -> Result<T, PsError> {
    let out = host.run(script, timeout).await?;
    parse::envelope(script.op, &out)
}

/// [`call`], with the boot id a script made with `Script::with_boot_id` reported.
pub async fn call_boot<T: DeserializeOwned, H: PowerShellHost + ?Sized>(
    host: &H,
    script: &Script,
    timeout: Duration,
) -> Result<(T, Option<String>), PsError> {
    let out = host.run(script, timeout).await?;
    parse::envelope_boot(script.op, &out)
}
