//! The sample extension's hook side (after `sample_ext.c`): program-info provider of the
//! sample program type and hook provider of its attach type.
//!
//! Each attached link gets a hook client context (allocated in the attach callback) with a
//! rundown: an invocation holds it while it uses the client
//! (`_ebpf_ext_attach_enter_rundown` / `leave_rundown`), and the detach callback waits for
//! it before freeing the context.
//!
//! Fault `invoke_without_rundown` (upstream #254 / #2275): invocation takes no rundown and
//! detach frees the client context at once. An invocation that picked the client up before
//! the detach reads the freed context when the program returns (0x50 in the extension).

use crate::error::EbpfError;
use crate::hook::HookRun;
use crate::inner::KernelInner;
use crate::modules::ModuleId;
use crate::nmr::{Cancelled, Rundown};
use crate::pool::{OwnerId, PoolHandle, TagId};
use crate::program::{self, Link};
use parking_lot::{Mutex, RwLock};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Size of a hook client context (`sample_ebpf_extension_hook_client_t`).
const CLIENT_CONTEXT_SIZE: u32 = 96;
/// Size of the program-info provider data (`ebpf_program_data_t` and its helper tables).
const PROGRAM_DATA_SIZE: u32 = 192;

pub(crate) const INVOKE: &str = "_sample_ebpf_extension_invoke_program";
pub(crate) const ATTACH_CLIENT: &str = "_ebpf_extension_hook_provider_attach_client";
pub(crate) const DETACH_CLIENT: &str = "_ebpf_extension_hook_provider_detach_client";

/// Spin iterations of building the program context from the request (data pointers,
/// helper data), as the run IOCTL does before each invocation.
const CONTEXT_WORK: u32 = 64;

fn build_context(ctx: u32) -> u64 {
    let mut acc = u64::from(ctx);
    for i in 0..CONTEXT_WORK {
        acc = acc.rotate_left(3) ^ u64::from(i);
        std::hint::spin_loop();
    }
    std::hint::black_box(acc)
}

/// One attached link as the extension sees it.
#[derive(Debug)]
struct HookClient {
    link: Arc<Link>,
    ctx: PoolHandle,
    rundown: Arc<Rundown>,
}

/// The hook side of one loaded instance of the sample driver.
#[derive(Debug)]
pub(crate) struct SampleHook {
    module: ModuleId,
    loaded: Arc<AtomicBool>,
    owner: OwnerId,
    tag: TagId,
    without_rundown: bool,
    info_data: Mutex<Option<PoolHandle>>,
    clients: RwLock<Vec<Arc<HookClient>>>,
}

/// Takes the client's rundown for an invocation (nothing in the faulty build); releases
/// it when dropped, also when the invocation fails.
struct Entered<'a>(Option<&'a Rundown>);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.0 {
            r.release();
        }
    }
}

impl SampleHook {
    /// DriverEntry's part: allocates the program-info provider data.
    pub(crate) fn new(
        k: &KernelInner,
        module: ModuleId,
        owner: OwnerId,
        tag: TagId,
        without_rundown: bool,
    ) -> Result<SampleHook, EbpfError> {
        let data = k.allocate(tag, owner, PROGRAM_DATA_SIZE, 0x5A)?;
        Ok(SampleHook {
            module,
            loaded: k.modules.loaded_flag(module),
            owner,
            tag,
            without_rundown,
            info_data: Mutex::new(Some(data)),
            clients: RwLock::new(Vec::new()),
        })
    }

    pub(crate) fn module(&self) -> ModuleId {
        self.module
    }

    pub(crate) fn loaded(&self) -> &AtomicBool {
        &self.loaded
    }

    pub(crate) fn info_data(&self) -> Option<PoolHandle> {
        *self.info_data.lock()
    }

    /// Frees the program-info data (after deregistration synchronized the epoch).
    pub(crate) fn free_info_data(&self, k: &KernelInner) -> Result<(), EbpfError> {
        match self.info_data.lock().take() {
            Some(d) => k.free(d),
            None => Ok(()),
        }
    }

    /// The hook provider's attach-client callback.
    pub(crate) fn attach_client(&self, k: &KernelInner, link: Arc<Link>) -> Result<(), EbpfError> {
        k.call_driver(self.module, &self.loaded, ATTACH_CLIENT, || {
            let ctx = k.allocate(self.tag, self.owner, CLIENT_CONTEXT_SIZE, link.id)?;
            let rundown = Arc::new(Rundown::default());
            k.hooks.track(&rundown);
            self.clients
                .write()
                .push(Arc::new(HookClient { link, ctx, rundown }));
            Ok(())
        })
    }

    /// The hook provider's detach-client callback for link `id` (nothing if another detach
    /// already took it).
    pub(crate) fn detach_client(&self, k: &KernelInner, id: u64) -> Result<(), EbpfError> {
        let c = {
            let mut cs = self.clients.write();
            let i = cs.iter().position(|c| c.link.id == id);
            i.map(|i| cs.remove(i))
        };
        match c {
            Some(c) => self.detach(k, &c),
            None => Ok(()),
        }
    }

    /// Deregistration: every client is detached.
    pub(crate) fn detach_all_clients(&self, k: &KernelInner) -> Result<(), EbpfError> {
        let cs = std::mem::take(&mut *self.clients.write());
        cs.iter().try_for_each(|c| self.detach(k, c))
    }

    fn detach(&self, k: &KernelInner, c: &HookClient) -> Result<(), EbpfError> {
        k.call_driver(self.module, &self.loaded, DETACH_CLIENT, || {
            if !self.without_rundown {
                let _stuck = k.mark_stuck();
                c.rundown
                    .wait_for_release()
                    .map_err(|Cancelled| k.halted())?;
            }
            // Bug (without_rundown): an invocation may still be using the context.
            k.free(c.ctx)
        })
    }

    /// `sample_ebpf_extension_invoke_program` for every attached client.
    pub(crate) fn invoke(&self, k: &KernelInner, ctx: u32) -> Result<HookRun, EbpfError> {
        let _frame = crate::modules::push_frame(self.module, INVOKE);
        let clients = self.clients.read().clone();
        let mut run = HookRun::default();
        for c in &clients {
            let _entered = if self.without_rundown {
                Entered(None)
            } else if c.rundown.acquire() {
                Entered(Some(&c.rundown))
            } else {
                // The client is detaching: skip it, as upstream does.
                run.away += 1;
                continue;
            };
            // hook_client->invoke_program and ->client_binding_context.
            k.read(c.ctx)?;
            build_context(ctx);
            let r = program::instance_invoke(k, &c.link, ctx);
            // Leaving the rundown (or counting the result) touches the client again.
            k.read(c.ctx)?;
            match r {
                Ok(_) => run.ran += 1,
                Err(EbpfError::ExtensionFailedToLoad) => run.away += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(run)
    }
}
