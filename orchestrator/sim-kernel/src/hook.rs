//! The hook side's registrations (NMR for the program-info NPI and the hook NPI) and the
//! user-mode program API: load a program, attach links, invoke the hook.
//!
//! NMR binds clients and providers in both orders: a program or link created while its
//! provider is registered binds at once; a provider that registers later (an extension
//! restart) binds every client still registered. Deregistration unbinds each client
//! through the provider's detach callback, which may wait (the per-client rundown).
//!
//! Invocations come through the extension's device (`IOCTL_SAMPLE_EBPF_EXT_CTL_RUN`): the
//! I/O manager keeps the image mapped while a request is inside the driver (the device
//! gate below), but nothing in the kernel keeps the *driver's own* per-client state alive:
//! that is what the extension's per-client rundown is for.

use crate::base::HaltWake;
use crate::error::EbpfError;
use crate::inner::KernelInner;
use crate::kernel::Kernel;
use crate::maps::{MapContext, MapHandle, ObjectRef};
use crate::nmr::Rundown;
use crate::program::{Link, Program};
use crate::sample_hook::SampleHook;
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

// The extension's device routine that runs the hook; named in the module table below us.
use crate::modules::SAMPLE_DEVICE_CONTROL as DEVICE_CONTROL;

/// A registered extension instance: provider of both NPIs, reached through its device.
#[derive(Debug)]
pub(crate) struct HookRegistration {
    pub(crate) provider: Arc<SampleHook>,
    /// Requests inside the driver hold it shared (the I/O manager's reference on the
    /// device); closing the device takes it exclusively and marks it closed.
    pub(crate) device: RwLock<bool>,
}

/// The hook side's NMR state.
#[derive(Debug, Default)]
pub(crate) struct Hooks {
    provider: RwLock<Option<Arc<HookRegistration>>>,
    programs: Mutex<Vec<Weak<Program>>>,
    links: Mutex<Vec<Arc<Link>>>,
    /// Every client rundown a detach may wait on (cancelled on halt so no unload thread
    /// stays blocked).
    waits: Mutex<Vec<Weak<Rundown>>>,
    closing: Mutex<Vec<Arc<HookRegistration>>>,
    ids: AtomicU64,
}

/// What one run of the hook did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookRun {
    /// Programs that ran.
    pub ran: u32,
    /// Links that could not run because the extension is going away (client detaching, or
    /// the program's extension data already NULL): clean failures, not errors.
    pub away: u32,
}

impl Hooks {
    /// Registers both providers of an extension instance and binds every client.
    pub(crate) fn register(&self, k: &KernelInner, reg: Arc<HookRegistration>) -> bool {
        let mut p = self.provider.write();
        if p.is_some() {
            return false;
        }
        let data = reg.provider.info_data();
        self.programs.lock().retain(|w| match w.upgrade() {
            Some(prog) => {
                prog.set_info(data);
                true
            }
            None => false,
        });
        for link in self.links.lock().iter() {
            // A client the provider refuses stays registered, unbound.
            let _ = reg.provider.attach_client(k, link.clone());
        }
        *p = Some(reg);
        true
    }

    /// The extension's unload: program-info provider first (NULL the data, synchronize the
    /// epoch), then the hook provider (detach every client, each detach waiting for its
    /// rundown), as `_sample_ebpf_ext_driver_unload` does.
    pub(crate) fn deregister(
        &self,
        k: &KernelInner,
        reg: &Arc<HookRegistration>,
    ) -> Result<(), EbpfError> {
        {
            let mut p = self.provider.write();
            if p.as_ref().is_some_and(|r| Arc::ptr_eq(r, reg)) {
                *p = None;
            }
            self.closing.lock().push(reg.clone());
        }
        let programs: Vec<Arc<Program>> = self
            .programs
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for prog in &programs {
            prog.set_info(None);
        }
        // Invocations that read the data before it went NULL finish inside their epoch.
        // Upstream synchronizes in each program client's detach, so with no program there
        // is no synchronize (and nothing here arms the epoch timer: issue #1109 needs that).
        if !programs.is_empty() {
            k.synchronize()?;
        }
        reg.provider.detach_all_clients(k)
    }

    /// Waits for requests still inside the driver (they finish on their own: the hook
    /// path never blocks), then forgets the registration.
    pub(crate) fn close_device(&self, reg: &Arc<HookRegistration>) {
        *reg.device.write() = true;
        self.closing.lock().retain(|c| !Arc::ptr_eq(c, reg));
    }

    /// Remembers a rundown a detach may wait on, for [`Hooks::cancel_all`].
    pub(crate) fn track(&self, r: &Arc<Rundown>) {
        let mut w = self.waits.lock();
        w.retain(|x| x.strong_count() > 0);
        w.push(Arc::downgrade(r));
    }

    /// Ends every wait of the hook side (the kernel stopped).
    pub(crate) fn cancel_all(&self) {
        for r in self.waits.lock().iter().filter_map(Weak::upgrade) {
            r.cancel();
        }
    }

    /// A link's id: distinct per link, which is all the hook provider's client list needs.
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// The hook side's detach waits end when the kernel halts.
impl HaltWake for Hooks {
    fn wake_on_halt(&self) {
        self.cancel_all();
    }
}

/// What user mode passes where upstream takes an object handle (an fd): an object map's
/// value ([`MapHandle::update_with_handle`]) or a map-in-map's inner map template
/// ([`Kernel::create_map_with_inner`]).
#[derive(Debug, Clone, Copy)]
pub enum ObjectHandle<'a> {
    /// A handle to a loaded program.
    Program(&'a ProgramHandle),
    /// A handle to a map.
    Map(&'a MapHandle),
    /// A handle value that names no eBPF object (closed, or another kernel's): referencing
    /// it fails with `EBPF_INVALID_OBJECT`.
    Unknown,
    /// `ebpf_handle_invalid`: on an array, an update with it erases the entry.
    Invalid,
}

impl<'a> ObjectHandle<'a> {
    /// The object the handle names in kernel `k` (a program handle of another kernel names
    /// nothing there).
    pub(crate) fn resolve(self, k: &MapContext) -> ObjectRef<'a> {
        match self {
            ObjectHandle::Program(p) if std::ptr::eq(&*p.k.inner.maps_ctx, k) => {
                ObjectRef::Program(&p.program)
            }
            ObjectHandle::Program(_) | ObjectHandle::Unknown => ObjectRef::Unknown,
            ObjectHandle::Map(m) => ObjectRef::Map(m),
            ObjectHandle::Invalid => ObjectRef::Invalid,
        }
    }
}

/// A loaded program (`bpf_object__load`); unloaded when dropped.
#[derive(Debug)]
pub struct ProgramHandle {
    k: Kernel,
    program: Arc<Program>,
}

/// An attached link (`bpf_program__attach`); detached when dropped.
#[derive(Debug)]
pub struct LinkHandle {
    k: Kernel,
    link: Arc<Link>,
    detached: AtomicBool,
}

impl Kernel {
    /// Loads a program of the sample program type; fails with `EXTENSION_FAILED_TO_LOAD`
    /// while no extension provides its program info.
    pub fn load_program(&self) -> Result<ProgramHandle, EbpfError> {
        self.load_program_of_type(crate::program::BPF_PROG_TYPE_SAMPLE)
    }

    /// [`Kernel::load_program`] with the program's `bpf_prog_type` given: the sim has one
    /// program type, so another one exists only to exercise a prog array's type check.
    pub(crate) fn load_program_of_type(
        &self,
        program_type: u32,
    ) -> Result<ProgramHandle, EbpfError> {
        let k = &self.inner;
        k.check()?;
        if k.core_running().is_none() {
            return Err(EbpfError::CoreNotRunning);
        }
        let p = k.hooks.provider.read();
        let Some(reg) = p.as_ref() else {
            return Err(EbpfError::ExtensionFailedToLoad);
        };
        let id = crate::maps::next_object_id(&k.maps_ctx);
        let program = Arc::new(Program::new(id, program_type));
        program.set_info(reg.provider.info_data());
        let mut programs = k.hooks.programs.lock();
        // Programs whose last reference (a prog array's) went away are pruned here.
        programs.retain(|w| w.strong_count() > 0);
        programs.push(Arc::downgrade(&program));
        Ok(ProgramHandle {
            k: self.clone(),
            program,
        })
    }

    /// Loaded programs: held by a handle, a link or a prog array.
    pub fn live_programs(&self) -> usize {
        self.inner
            .hooks
            .programs
            .lock()
            .iter()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Runs the hook once (the extension's `IOCTL_SAMPLE_EBPF_EXT_CTL_RUN`): every attached
    /// link's program, each under the extension's per-client rundown. Fails with
    /// `EXTENSION_FAILED_TO_LOAD` when the extension's device is gone.
    pub fn invoke_hook(&self, ctx: u32) -> Result<HookRun, EbpfError> {
        let k = &self.inner;
        k.check()?;
        // An unloading extension's device stays open until its unload deletes it: requests
        // keep walking its hook clients while they detach, as upstream's run IOCTL does.
        let reg = k
            .hooks
            .provider
            .read()
            .clone()
            .or_else(|| k.hooks.closing.lock().last().cloned())
            .ok_or(EbpfError::ExtensionFailedToLoad)?;
        let open = reg.device.read();
        if *open {
            return Err(EbpfError::ExtensionFailedToLoad);
        }
        let p = &reg.provider;
        k.call_driver(p.module(), p.loaded(), DEVICE_CONTROL, || p.invoke(k, ctx))
    }
}

impl ProgramHandle {
    /// Attaches the program to the sample hook; fails with `EXTENSION_FAILED_TO_LOAD` while
    /// no hook provider is registered. The link survives extension restarts.
    pub fn attach(&self) -> Result<LinkHandle, EbpfError> {
        let k = &self.k.inner;
        k.check()?;
        let p = k.hooks.provider.read();
        let Some(reg) = p.as_ref() else {
            return Err(EbpfError::ExtensionFailedToLoad);
        };
        let link = Arc::new(Link {
            id: k.hooks.next_id(),
            program: self.program.clone(),
        });
        reg.provider.attach_client(k, link.clone())?;
        k.hooks.links.lock().push(link.clone());
        Ok(LinkHandle {
            k: self.k.clone(),
            link,
            detached: AtomicBool::new(false),
        })
    }

    /// Kernel object id (what a prog array lookup returns).
    pub fn id(&self) -> u32 {
        self.program.id
    }

    /// The program's `bpf_prog_type`.
    pub fn program_type(&self) -> u32 {
        self.program.program_type
    }

    /// How often the program ran.
    pub fn runs(&self) -> u64 {
        self.program.runs.load(Ordering::Relaxed)
    }

    /// True while the program holds its program-info provider's data.
    pub fn is_bound(&self) -> bool {
        self.program.is_bound()
    }
}

impl Drop for ProgramHandle {
    fn drop(&mut self) {
        // A program something else still references stays loaded and registered (its info
        // follows extension restarts): a link (upstream's link holds a program reference)
        // or a prog array. Their release lets it go: the list holds it weakly.
        let me = &self.program;
        if Arc::strong_count(me) > 1 {
            return;
        }
        self.k
            .inner
            .hooks
            .programs
            .lock()
            .retain(|w| !std::ptr::eq(w.as_ptr(), Arc::as_ptr(me)));
    }
}

impl LinkHandle {
    /// Detaches the link (`bpf_link_detach`): unregisters the NMR client; the provider's
    /// detach waits for invocations of it in flight.
    pub fn detach(&self) -> Result<(), EbpfError> {
        if self.detached.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let k = &self.k.inner;
        k.hooks.links.lock().retain(|l| !Arc::ptr_eq(l, &self.link));
        let reg = k.hooks.provider.read().clone();
        match reg {
            Some(reg) => reg.provider.detach_client(k, self.link.id),
            None => Ok(()),
        }
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        // A detach that fails only does so because the kernel stopped.
        let _ = self.detach();
    }
}

#[cfg(test)]
mod tests {
    use crate::rule_tests::boot;
    use crate::{BPF_PROG_TYPE_SAMPLE, DriverImage, HookRun, ImageKind, Signing};

    /// Detaching one link detaches that link, not another: each link is its own client.
    #[test]
    fn detaching_one_link_leaves_the_others_attached() {
        let k = boot();
        let (a, b) = (k.load_program().unwrap(), k.load_program().unwrap());
        assert_eq!(a.program_type(), BPF_PROG_TYPE_SAMPLE);
        assert_ne!(a.id(), b.id());
        let (la, lb) = (a.attach().unwrap(), b.attach().unwrap());
        lb.detach().unwrap();
        assert_eq!(k.invoke_hook(0), Ok(HookRun { ran: 1, away: 0 }));
        assert_eq!(
            (a.runs(), b.runs()),
            (1, 0),
            "b's link detached, a's still runs"
        );
        drop((la, lb, a, b));
        k.shutdown();
    }

    /// Closing one program's handle unregisters that program only: another stays a client
    /// of the program-info provider and follows an extension restart.
    #[test]
    fn closing_one_program_leaves_the_others_registered() {
        let k = boot();
        let (a, b) = (k.load_program().unwrap(), k.load_program().unwrap());
        drop(a);
        assert_eq!(k.live_programs(), 1);
        assert_eq!(
            k.stop_driver("sample_ebpf_ext").unwrap(),
            crate::ServiceState::Stopped
        );
        assert!(!b.is_bound(), "the extension's unload NULLs b's data");
        let image = DriverImage {
            image: ImageKind::SampleExt,
            signature: Signing::Test,
            faults: vec![],
        };
        k.load_driver("sample_ebpf_ext", &image).unwrap();
        assert!(b.is_bound(), "b is bound to the restarted extension");
        drop(b);
        k.shutdown();
    }

    /// A program released by its last holder (here its link, after its handle closed)
    /// leaves the program-info clients by the next load: loading and closing programs for
    /// a whole run does not grow the list the extension walks on every restart.
    #[test]
    fn released_programs_leave_the_client_list() {
        let k = boot();
        let p = k.load_program().unwrap();
        let link = p.attach().unwrap();
        drop(p);
        drop(link);
        assert_eq!(k.live_programs(), 0);
        let q = k.load_program().unwrap();
        assert_eq!(k.inner.hooks.programs.lock().len(), 1, "only q is a client");
        drop(q);
        assert!(k.inner.hooks.programs.lock().is_empty());
        k.shutdown();
    }
}
