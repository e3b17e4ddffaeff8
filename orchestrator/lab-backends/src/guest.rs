//! The `Guest` contract: what the runner can do inside one running VM.
//!
//! Windows operations (services, test signing, CrashControl, Driver Verifier, event log) are
//! part of the contract: the simulated guest implements them natively over its agent, the
//! Windows guest implements them with PowerShell over a transport.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Result;
use crate::hyperv::HyperVGuest;
use crate::model::{
    CrashControl, DirEntry, EventRecord, ExecOutput, FileInfo, ServiceSpec, ServiceState, Verifier,
};
use crate::sim::SimGuest;

/// Where Windows keeps crash dumps (the defaults of `DumpFile` / `MinidumpDir`).
pub const MEMORY_DMP: &str = r"C:\Windows\MEMORY.DMP";
pub const MINIDUMP_DIR: &str = r"C:\Windows\Minidump";

/// Operations inside one running VM. Every call has its own bounded timeout; `exec` takes
/// the step's timeout explicitly.
pub trait Guest {
    /// VM name, for messages.
    fn vm(&self) -> &str;
    /// The current boot id; it changes on every boot, which is how a crash-reboot is noticed.
    fn boot_id(&self) -> impl Future<Output = Result<String>> + Send;
    /// The boot id the guest last reported as a by-product of another call (a readiness
    /// check, a step's own script) since the previous take, and forgets it. `None`: nothing
    /// reported one since (or the backend never does): read it with [`Guest::boot_id`].
    /// Saves the runner a round trip per unit and per step.
    fn take_seen_boot_id(&self) -> Option<String> {
        None
    }
    fn exec(
        &self,
        argv: &[String],
        timeout: Duration,
    ) -> impl Future<Output = Result<ExecOutput>> + Send;
    /// Uploads a local file; the size and sha256 are verified on arrival.
    fn upload(&self, local: &Path, remote: &str) -> impl Future<Output = Result<FileInfo>> + Send;
    /// Uploads several files (a deploy). Backends that can move them as one archive
    /// override this; the default uploads them one by one.
    fn upload_many(
        &self,
        files: &[(PathBuf, String)],
    ) -> impl Future<Output = Result<Vec<FileInfo>>> + Send
    where
        Self: Sync,
    {
        async move {
            let mut out = Vec::with_capacity(files.len());
            for (local, remote) in files {
                out.push(self.upload(local, remote).await?);
            }
            Ok(out)
        }
    }
    /// Downloads a guest file; the size and sha256 are verified after transfer.
    fn download(&self, remote: &str, local: &Path)
    -> impl Future<Output = Result<FileInfo>> + Send;
    /// Size and hash of a guest file, `None` if it does not exist.
    fn stat(&self, remote: &str) -> impl Future<Output = Result<Option<FileInfo>>> + Send;
    fn list_dir(&self, remote: &str) -> impl Future<Output = Result<Vec<DirEntry>>> + Send;
    fn remove(&self, remote: &str) -> impl Future<Output = Result<()>> + Send;
    fn service_create(&self, spec: &ServiceSpec) -> impl Future<Output = Result<()>> + Send;
    /// Starts a service; returns the state right after the start request.
    fn service_start(&self, name: &str) -> impl Future<Output = Result<ServiceState>> + Send;
    /// Requests a stop; returns at once with `Stopped` or `StopPending`.
    fn service_stop(&self, name: &str) -> impl Future<Output = Result<ServiceState>> + Send;
    fn service_query(&self, name: &str) -> impl Future<Output = Result<ServiceState>> + Send;
    fn service_delete(&self, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// `bcdedit /set testsigning on|off`; effective after the next boot.
    fn set_test_signing(&self, on: bool) -> impl Future<Output = Result<()>> + Send;
    fn set_crash_control(&self, cc: &CrashControl) -> impl Future<Output = Result<()>> + Send;
    /// Driver Verifier settings; effective after the next boot.
    fn set_verifier(&self, v: &Verifier) -> impl Future<Output = Result<()>> + Send;
    /// System log records with a record number above `since_record`.
    fn events(&self, since_record: u64) -> impl Future<Output = Result<Vec<EventRecord>>> + Send;
    /// Reads a named metric (`pool_bytes:Smpl`, ...).
    fn metric(&self, name: &str) -> impl Future<Output = Result<i64>> + Send;
    /// Asks the guest to reboot; returns once the request is accepted.
    fn reboot(&self) -> impl Future<Output = Result<()>> + Send;
}

/// The closed set of guest backends.
#[derive(Debug, Clone)]
pub enum AnyGuest {
    Sim(SimGuest),
    HyperV(HyperVGuest),
}

macro_rules! dispatch {
    ($self:ident, $g:ident => $e:expr) => {
        match $self {
            AnyGuest::Sim($g) => $e,
            AnyGuest::HyperV($g) => $e,
        }
    };
}

impl Guest for AnyGuest {
    fn vm(&self) -> &str {
        dispatch!(self, g => g.vm())
    }
    async fn boot_id(&self) -> Result<String> {
        dispatch!(self, g => g.boot_id().await)
    }
    fn take_seen_boot_id(&self) -> Option<String> {
        dispatch!(self, g => g.take_seen_boot_id())
    }
    async fn exec(&self, argv: &[String], timeout: Duration) -> Result<ExecOutput> {
        dispatch!(self, g => g.exec(argv, timeout).await)
    }
    async fn upload(&self, local: &Path, remote: &str) -> Result<FileInfo> {
        dispatch!(self, g => g.upload(local, remote).await)
    }
    async fn upload_many(&self, files: &[(PathBuf, String)]) -> Result<Vec<FileInfo>> {
        dispatch!(self, g => g.upload_many(files).await)
    }
    async fn download(&self, remote: &str, local: &Path) -> Result<FileInfo> {
        dispatch!(self, g => g.download(remote, local).await)
    }
    async fn stat(&self, remote: &str) -> Result<Option<FileInfo>> {
        dispatch!(self, g => g.stat(remote).await)
    }
    async fn list_dir(&self, remote: &str) -> Result<Vec<DirEntry>> {
        dispatch!(self, g => g.list_dir(remote).await)
    }
    async fn remove(&self, remote: &str) -> Result<()> {
        dispatch!(self, g => g.remove(remote).await)
    }
    async fn service_create(&self, spec: &ServiceSpec) -> Result<()> {
        dispatch!(self, g => g.service_create(spec).await)
    }
    async fn service_start(&self, name: &str) -> Result<ServiceState> {
        dispatch!(self, g => g.service_start(name).await)
    }
    async fn service_stop(&self, name: &str) -> Result<ServiceState> {
        dispatch!(self, g => g.service_stop(name).await)
    }
    async fn service_query(&self, name: &str) -> Result<ServiceState> {
        dispatch!(self, g => g.service_query(name).await)
    }
    async fn service_delete(&self, name: &str) -> Result<()> {
        dispatch!(self, g => g.service_delete(name).await)
    }
    async fn set_test_signing(&self, on: bool) -> Result<()> {
        dispatch!(self, g => g.set_test_signing(on).await)
    }
    async fn set_crash_control(&self, cc: &CrashControl) -> Result<()> {
        dispatch!(self, g => g.set_crash_control(cc).await)
    }
    async fn set_verifier(&self, v: &Verifier) -> Result<()> {
        dispatch!(self, g => g.set_verifier(v).await)
    }
    async fn events(&self, since_record: u64) -> Result<Vec<EventRecord>> {
        dispatch!(self, g => g.events(since_record).await)
    }
    async fn metric(&self, name: &str) -> Result<i64> {
        dispatch!(self, g => g.metric(name).await)
    }
    async fn reboot(&self) -> Result<()> {
        dispatch!(self, g => g.reboot().await)
    }
}
