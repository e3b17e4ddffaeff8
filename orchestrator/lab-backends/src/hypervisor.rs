//! The `Hypervisor` contract: VM lifecycle on one lab host.

use std::future::Future;
use std::time::Duration;

use crate::error::Result;
use crate::guest::AnyGuest;
use crate::hyperv::HyperV;
use crate::model::{ConsoleSegment, OwnedVm, StopMode, VmSpec, VmState};
use crate::sim::SimHypervisor;

/// The checkpoint the runner takes after deploying the payload and restores before each unit.
pub const DEPLOYED_CHECKPOINT: &str = "deployed";

/// VM lifecycle operations on one host.
pub trait Hypervisor {
    /// Short backend name for messages (`sim`, `hyperv`).
    fn kind(&self) -> &'static str;
    /// Creates (but does not start) a VM from its template: a clone / differencing disk.
    fn create(&self, spec: &VmSpec) -> impl Future<Output = Result<()>> + Send;
    fn start(&self, vm: &str) -> impl Future<Output = Result<()>> + Send;
    fn stop(&self, vm: &str, mode: StopMode) -> impl Future<Output = Result<()>> + Send;
    /// Waits until the guest answers a command after boot; returns its boot id.
    fn wait_ready(
        &self,
        vm: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<String>> + Send;
    fn checkpoint(&self, vm: &str, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Restores a checkpoint; the VM is running and ready when this returns.
    fn restore(&self, vm: &str, name: &str) -> impl Future<Output = Result<()>> + Send;
    /// Removes the VM with its disks and checkpoints.
    fn delete(&self, vm: &str) -> impl Future<Output = Result<()>> + Send;
    fn state(&self, vm: &str) -> impl Future<Output = Result<VmState>> + Send;
    /// Integration-services heartbeat: `true` while the guest OS is alive.
    fn heartbeat(&self, vm: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Injects an NMI so a hung guest bugchecks (0x80) and writes a dump.
    fn inject_nmi(&self, vm: &str) -> impl Future<Output = Result<()>> + Send;
    /// VMs this tool created on this host, across runs.
    fn list_owned(&self) -> impl Future<Output = Result<Vec<OwnedVm>>> + Send;
    /// A handle to operate inside the VM.
    fn guest(&self, vm: &str) -> Result<AnyGuest>;
    /// Bytes written to the VM's serial console so far (a mark to read from later), or
    /// `None` where the backend keeps no console log.
    fn console_len(&self, vm: &str) -> impl Future<Output = Result<Option<u64>>> + Send;
    /// The VM's serial console from byte `from` on, at most `max` bytes of it, or `None`
    /// where the backend keeps no console log.
    fn console_since(
        &self,
        vm: &str,
        from: u64,
        max: usize,
    ) -> impl Future<Output = Result<Option<ConsoleSegment>>> + Send;
}

/// The closed set of hypervisor backends.
#[derive(Debug, Clone)]
pub enum AnyHypervisor {
    Sim(SimHypervisor),
    HyperV(HyperV),
}

macro_rules! dispatch {
    ($self:ident, $h:ident => $e:expr) => {
        match $self {
            AnyHypervisor::Sim($h) => $e,
            AnyHypervisor::HyperV($h) => $e,
        }
    };
}

impl Hypervisor for AnyHypervisor {
    fn kind(&self) -> &'static str {
        dispatch!(self, h => h.kind())
    }
    async fn create(&self, spec: &VmSpec) -> Result<()> {
        dispatch!(self, h => h.create(spec).await)
    }
    async fn start(&self, vm: &str) -> Result<()> {
        dispatch!(self, h => h.start(vm).await)
    }
    async fn stop(&self, vm: &str, mode: StopMode) -> Result<()> {
        dispatch!(self, h => h.stop(vm, mode).await)
    }
    async fn wait_ready(&self, vm: &str, timeout: Duration) -> Result<String> {
        dispatch!(self, h => h.wait_ready(vm, timeout).await)
    }
    async fn checkpoint(&self, vm: &str, name: &str) -> Result<()> {
        dispatch!(self, h => h.checkpoint(vm, name).await)
    }
    async fn restore(&self, vm: &str, name: &str) -> Result<()> {
        dispatch!(self, h => h.restore(vm, name).await)
    }
    async fn delete(&self, vm: &str) -> Result<()> {
        dispatch!(self, h => h.delete(vm).await)
    }
    async fn state(&self, vm: &str) -> Result<VmState> {
        dispatch!(self, h => h.state(vm).await)
    }
    async fn heartbeat(&self, vm: &str) -> Result<bool> {
        dispatch!(self, h => h.heartbeat(vm).await)
    }
    async fn inject_nmi(&self, vm: &str) -> Result<()> {
        dispatch!(self, h => h.inject_nmi(vm).await)
    }
    async fn list_owned(&self) -> Result<Vec<OwnedVm>> {
        dispatch!(self, h => h.list_owned().await)
    }
    fn guest(&self, vm: &str) -> Result<AnyGuest> {
        dispatch!(self, h => h.guest(vm))
    }
    async fn console_len(&self, vm: &str) -> Result<Option<u64>> {
        dispatch!(self, h => h.console_len(vm).await)
    }
    async fn console_since(
        &self,
        vm: &str,
        from: u64,
        max: usize,
    ) -> Result<Option<ConsoleSegment>> {
        dispatch!(self, h => h.console_since(vm, from, max).await)
    }
}
