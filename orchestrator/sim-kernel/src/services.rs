//! Kernel services: driver load (signature check, image mapping, `DriverEntry`) and stop
//! (`DriverUnload` on its own thread, which may pend), Driver Verifier's leak check at
//! unload, and the ebpfcore / sample_ext drivers' entry and unload routines.

use crate::bugcheck;
use crate::error::{EbpfError, KernelError};
use crate::image::{DriverImage, Fault, ImageKind, Signing};
use crate::inner::{HALT_POLL, KernelInner};
use crate::modules::{self, Frame, ModuleId};
use crate::pool::OwnerId;
use crate::provider::Registration;
use crate::sample_ext::SampleExt;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use win_vocab::ServiceState;

/// How long `stop_driver` waits for a quick unload before reporting STOP_PENDING.
const STOP_GRACE: Duration = Duration::from_millis(100);

#[derive(Debug)]
enum Instance {
    Core,
    Sample {
        ext: Arc<SampleExt>,
        reg: Arc<Registration>,
    },
}

#[derive(Debug)]
struct Service {
    state: ServiceState,
    kind: ImageKind,
    owner: OwnerId,
    module: Option<ModuleId>,
    instance: Option<Arc<Instance>>,
}

/// The service table.
#[derive(Debug, Default)]
pub(crate) struct Services {
    table: Mutex<HashMap<String, Service>>,
    changed: Condvar,
    owners: Mutex<Vec<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Services {
    fn owner_for(&self, service: &str) -> OwnerId {
        let mut o = self.owners.lock();
        let i = o.iter().position(|s| s == service).unwrap_or_else(|| {
            o.push(service.to_string());
            o.len() - 1
        });
        // Owner 0 is the kernel itself.
        OwnerId((i + 1).min(crate::pool::MAX_OWNERS - 1) as u16)
    }

    pub(crate) fn state(&self, service: &str) -> ServiceState {
        self.table
            .lock()
            .get(&key(service))
            .map_or(ServiceState::Stopped, |s| s.state)
    }

    fn set_state(&self, service: &str, state: ServiceState) {
        if let Some(s) = self.table.lock().get_mut(&key(service)) {
            s.state = state;
        }
        self.changed.notify_all();
    }

    /// Joins finished and (after a halt) remaining unload threads.
    pub(crate) fn join_threads(&self) {
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            let _ = t.join();
        }
    }
}

fn key(service: &str) -> String {
    service.to_ascii_lowercase()
}

fn unload_symbol(kind: ImageKind) -> &'static str {
    match kind {
        ImageKind::EbpfCore => "_ebpf_driver_unload",
        ImageKind::SampleExt => "_sample_ebpf_ext_driver_unload",
    }
}

/// Starts a service: signature check, map the image, run `DriverEntry`.
pub(crate) fn load(
    k: &Arc<KernelInner>,
    service: &str,
    image: &DriverImage,
) -> Result<(), KernelError> {
    if k.halt.stopped() {
        return Err(KernelError::Halted(k.halt.code()));
    }
    let allowed = match image.signature {
        Signing::Production => true,
        Signing::Test => k.config.test_signing,
        Signing::Unsigned => false,
    };
    if !allowed {
        return Err(KernelError::InvalidImageHash {
            service: service.to_string(),
            signature: image.signature.to_string(),
            test_signing: k.config.test_signing,
        });
    }
    let svc = &k.services;
    let mut table = svc.table.lock();
    if let Some(s) = table.get(&key(service))
        && matches!(s.state, ServiceState::Running | ServiceState::StopPending)
    {
        return Err(KernelError::AlreadyRunning(service.to_string()));
    }
    let owner = svc.owner_for(&key(service));
    let size = crate::image_file::image_size(image.image);
    let functions = match image.image {
        ImageKind::EbpfCore => modules::CORE_FUNCTIONS,
        ImageKind::SampleExt => modules::SAMPLE_FUNCTIONS,
    };
    let module = k.modules.load(&format!("{service}.sys"), size, functions);
    let entry = {
        let _frame = modules::push_frame(module, "DriverEntry");
        match image.image {
            ImageKind::EbpfCore => {
                let mut core = k.core_image.write();
                if core.is_some() {
                    Err((
                        0xC000_0035,
                        "the eBPF device already exists (another ebpfcore is loaded)".to_string(),
                    ))
                } else {
                    *core = Some((module, owner));
                    k.mirror_core_image(*core);
                    // The build flavour: which of upstream's old core bugs this image has.
                    k.epoch
                        .core
                        .set_per_cpu_stamp(image.has_fault(Fault::PerCpuEpochStamp));
                    k.maps.set_flavour(image);
                    k.work_items_at_dispatch.store(
                        image.has_fault(Fault::WorkItemsAtDispatch),
                        Ordering::Relaxed,
                    );
                    Ok(Instance::Core)
                }
            }
            ImageKind::SampleExt => {
                let ext = Arc::new(SampleExt::new(k, module, owner, image.faults.clone()));
                ext.driver_entry(k).map(|reg| Instance::Sample { ext, reg })
            }
        }
    };
    match entry {
        Ok(inst) => {
            table.insert(
                key(service),
                Service {
                    state: ServiceState::Running,
                    kind: image.image,
                    owner,
                    module: Some(module),
                    instance: Some(Arc::new(inst)),
                },
            );
            svc.changed.notify_all();
            Ok(())
        }
        Err((status, reason)) => {
            k.modules.unload(module);
            Err(KernelError::DriverEntryFailed {
                service: service.to_string(),
                status,
                reason,
            })
        }
    }
}

/// Stops a service: begins `DriverUnload` on its own thread and returns the state after a
/// short grace (`Stopped`, or `StopPending` while the unload waits).
pub(crate) fn stop(k: &Arc<KernelInner>, service: &str) -> Result<ServiceState, KernelError> {
    if k.halt.stopped() {
        return Err(KernelError::Halted(k.halt.code()));
    }
    let svc = &k.services;
    let (inst, module, owner, kind) = {
        let mut table = svc.table.lock();
        let dependents: Vec<String> = table
            .iter()
            .filter(|(_, s)| {
                s.kind == ImageKind::SampleExt
                    && matches!(s.state, ServiceState::Running | ServiceState::StopPending)
            })
            .map(|(n, _)| n.clone())
            .collect();
        let Some(s) = table.get_mut(&key(service)) else {
            return Err(KernelError::NotActive(service.to_string()));
        };
        match s.state {
            ServiceState::StopPending => return Ok(ServiceState::StopPending),
            ServiceState::Running => {}
            // StartPending is never set here: DriverEntry runs inside `load`.
            ServiceState::Stopped | ServiceState::StartPending => {
                return Err(KernelError::NotActive(service.to_string()));
            }
        }
        if s.kind == ImageKind::EbpfCore && !dependents.is_empty() {
            let mut d = dependents;
            d.sort();
            return Err(KernelError::DependentServicesRunning {
                service: service.to_string(),
                dependents: d.join(", "),
            });
        }
        s.state = ServiceState::StopPending;
        let (Some(inst), Some(module)) = (s.instance.take(), s.module) else {
            return Err(KernelError::NotActive(service.to_string()));
        };
        (inst, module, s.owner, s.kind)
    };
    let name = service.to_string();
    let kk = k.clone();
    let t = std::thread::Builder::new()
        .name(format!("unload:{service}"))
        .spawn(move || unload_thread(&kk, &name, &inst, module, owner, kind))
        .map_err(|e| KernelError::InvalidConfig(format!("spawn the unload thread: {e}")))?;
    svc.threads.lock().push(t);
    let deadline = Instant::now() + STOP_GRACE;
    let mut table = svc.table.lock();
    loop {
        let state = table
            .get(&key(service))
            .map_or(ServiceState::Stopped, |s| s.state);
        if state != ServiceState::StopPending {
            return Ok(state);
        }
        if svc.changed.wait_until(&mut table, deadline).timed_out() {
            return Ok(ServiceState::StopPending);
        }
    }
}

fn unload_thread(
    k: &Arc<KernelInner>,
    service: &str,
    inst: &Instance,
    module: ModuleId,
    owner: OwnerId,
    kind: ImageKind,
) {
    crate::epoch::bind_cpu(0);
    let function = unload_symbol(kind);
    let result = {
        let _frame = modules::push_frame(module, function);
        match inst {
            Instance::Core => unload_core(k),
            Instance::Sample { ext, reg } => ext.driver_unload(k, reg),
        }
    };
    if result.is_err() || k.halt.stopped() {
        return;
    }
    if verified(k, service) && verifier_leak_check(k, service, module, owner, function).is_err() {
        return;
    }
    k.modules.unload(module);
    k.services.set_state(service, ServiceState::Stopped);
}

/// ebpfcore's unload: close the device (no new maps), drop the pins, wait for every map to
/// be deleted.
fn unload_core(k: &Arc<KernelInner>) -> Result<(), EbpfError> {
    {
        let mut core = k.core_image.write();
        *core = None;
        k.mirror_core_image(None);
    }
    crate::maps::unpin_all(k);
    let _stuck = k.mark_stuck();
    while k.maps.live.load(Ordering::Acquire) > 0 {
        k.check()?;
        std::thread::sleep(HALT_POLL / 5);
    }
    Ok(())
}

fn verified(k: &KernelInner, service: &str) -> bool {
    k.config.verifier_drivers.iter().any(|d| {
        let d = d.trim();
        let d = d
            .strip_suffix(".sys")
            .or_else(|| d.strip_suffix(".SYS"))
            .unwrap_or(d);
        d.eq_ignore_ascii_case(service)
    })
}

/// Driver Verifier at unload: every allocation the driver made must be freed (after its
/// epoch frees drain), else 0xC4 / 0x62.
fn verifier_leak_check(
    k: &KernelInner,
    service: &str,
    module: ModuleId,
    owner: OwnerId,
    function: &'static str,
) -> Result<(), EbpfError> {
    k.synchronize()?;
    let (bytes, allocs) = k.pool.owner_usage(owner);
    if allocs > 0 {
        let m = k.modules.get(module);
        return Err(k.raise(
            bugcheck::DRIVER_VERIFIER_DETECTED_VIOLATION,
            [
                bugcheck::VERIFIER_POOL_LEAK_AT_UNLOAD,
                m.base + 0x3000,
                bytes as u64,
                allocs as u64,
            ],
            Some(Frame { module, function }),
            function,
            format!(
                "{service}.sys unloaded with {allocs} pool allocations ({bytes} bytes) not freed"
            ),
        ));
    }
    Ok(())
}
