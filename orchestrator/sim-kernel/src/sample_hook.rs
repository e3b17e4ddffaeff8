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
//!
//! Fault `rundown_init_after_attach` (upstream #2010, fixed by PR #2011): the attach
//! publishes the client (the provider-specific attach enables the inspection path) and
//! initializes its rundown only after the rest of that attach. An invocation that took the
//! rundown in between holds a reference the initialization zeroes; its release underflows
//! the count, and the link's detach waits for the rundown for ever (an unload hang), or,
//! if as many invocations are in flight at the detach as the underflow took, the count
//! reaches zero one release early and the detach frees the client under an invocation.

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

// The hook provider's routines are named in the module table, the layer below.
use crate::modules::{
    SAMPLE_HOOK_ATTACH_CLIENT as ATTACH_CLIENT, SAMPLE_HOOK_DETACH_CLIENT as DETACH_CLIENT,
    SAMPLE_HOOK_INVOKE as INVOKE,
};

/// The rest of the provider-specific attach after it enabled the inspection path: adding
/// the hook's filters at its other layers, a blocking call (upstream, `FwpmFilterAdd` per
/// layer takes milliseconds; here one millisecond), during which the hook keeps running.
const FILTER_REGISTRATION: std::time::Duration = std::time::Duration::from_millis(1);

fn register_filters() {
    std::thread::sleep(FILTER_REGISTRATION);
}

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
    rundown_init_after_attach: bool,
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
        rundown_init_after_attach: bool,
    ) -> Result<SampleHook, EbpfError> {
        let data = k.allocate(tag, owner, PROGRAM_DATA_SIZE, 0x5A)?;
        Ok(SampleHook {
            module,
            loaded: k.modules.loaded_flag(module),
            owner,
            tag,
            without_rundown,
            rundown_init_after_attach,
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
            // The provider-specific attach: invocations see the client from here on.
            self.clients.write().push(Arc::new(HookClient {
                link,
                ctx,
                rundown: rundown.clone(),
            }));
            register_filters();
            if self.rundown_init_after_attach {
                // Bug (#2010): initialized only now, under invocations that already hold it.
                rundown.initialize_again();
            }
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

#[cfg(all(test, not(loom)))]
mod tests {
    //! Rule tests of the per-client rundown. Every wait is bounded (see `bounded`).
    use super::*;
    use crate::bounded;
    use crate::config::KernelConfig;
    use crate::modules::SAMPLE_FUNCTIONS;
    use crate::program::Program;
    use std::sync::atomic::Ordering;

    fn hook(without_rundown: bool) -> (Arc<KernelInner>, Arc<SampleHook>, Arc<HookClientView>) {
        let k = Arc::new(KernelInner::new(KernelConfig::default()));
        let m = k
            .modules
            .load("sample_ebpf_ext.sys", IMAGE, SAMPLE_FUNCTIONS);
        let tag = k.pool.tag(*b"Smpl");
        let h = Arc::new(SampleHook::new(&k, m, OwnerId(1), tag, without_rundown, false).unwrap());
        let program = Arc::new(Program::default());
        program.set_info(h.info_data());
        h.attach_client(&k, Arc::new(Link { id: 7, program }))
            .unwrap();
        let c = h.clients.read()[0].clone();
        (k, h, Arc::new(HookClientView(c)))
    }

    const IMAGE: u64 = crate::image_file::SAMPLE_IMAGE_SIZE;

    /// True once rundown began (probing takes no reference that would stall the detach).
    fn closing(r: &Rundown) -> bool {
        if r.acquire() {
            r.release();
            false
        } else {
            true
        }
    }

    /// Test access to one client.
    struct HookClientView(Arc<HookClient>);

    /// Rule: detach waits for an invocation that holds the client's rundown, and frees the
    /// client context only after it left.
    #[test]
    fn detach_waits_for_the_invocation_holding_the_rundown() {
        let (k, h, c) = hook(false);
        assert!(c.0.rundown.acquire(), "an invocation enters the rundown");
        let detach = {
            let (k, h) = (k.clone(), h.clone());
            std::thread::spawn(move || h.detach_client(&k, 7))
        };
        bounded::until("the detach to start waiting", || closing(&c.0.rundown));
        assert!(
            !detach.is_finished(),
            "detach returned under a live invocation"
        );
        assert_eq!(
            k.read(c.0.ctx).map(|_| ()),
            Ok(()),
            "the context is still valid"
        );
        c.0.rundown.release();
        assert_eq!(
            bounded::join("the detach after the invocation left", detach),
            Ok(())
        );
        assert!(
            k.pool.read(c.0.ctx).is_err(),
            "detach frees the client context"
        );
        assert!(h.clients.read().is_empty());
    }

    /// Rule: a client that is detaching is skipped by invocations (counted as away), not
    /// run.
    #[test]
    fn an_invocation_skips_a_detaching_client() {
        let (k, h, c) = hook(false);
        c.0.rundown.close();
        assert_eq!(h.invoke(&k, 1), Ok(HookRun { ran: 0, away: 1 }));
        assert_eq!(
            c.0.link
                .program
                .runs
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    /// Rule: a program whose extension data is NULL fails cleanly inside the invocation.
    #[test]
    fn an_invocation_of_an_unbound_program_fails_cleanly() {
        let (k, h, c) = hook(false);
        assert_eq!(h.invoke(&k, 1), Ok(HookRun { ran: 1, away: 0 }));
        c.0.link.program.set_info(None);
        assert_eq!(h.invoke(&k, 1), Ok(HookRun { ran: 0, away: 1 }));
        assert_eq!(
            c.0.rundown.refs(),
            0,
            "a failed invocation still leaves the rundown"
        );
    }

    /// The fault: detach neither waits nor is waited for; an invocation that holds the
    /// client afterwards reads freed memory (0x50 in the extension's invoke).
    #[test]
    fn without_rundown_detach_frees_under_the_invocation() {
        let (k, h, c) = hook(true);
        assert!(
            c.0.rundown.acquire(),
            "the faulty build ignores the rundown"
        );
        assert_eq!(
            bounded::within("a detach without rundown", {
                let (k, h) = (k.clone(), h.clone());
                move || h.detach_client(&k, 7)
            }),
            Ok(())
        );
        // An invocation that picked the client up before the detach now touches it.
        h.clients.write().push(c.0.clone());
        let e = h.invoke(&k, 1).unwrap_err();
        assert!(matches!(e, EbpfError::Halted(Some(0x50))), "{e:?}");
        let bc = k.halt.bugcheck().unwrap();
        assert_eq!(bc.function, INVOKE);
    }

    /// Attaches link `id` to a hook built with `rundown_init_after_attach = late` while two
    /// threads invoke the hook, until an invocation straddles the attach and leaves the
    /// client's rundown count underflowed (or `tries` attaches did not); returns the client.
    fn attach_under_invocation(
        late: bool,
        tries: u64,
    ) -> (Arc<KernelInner>, Arc<SampleHook>, Option<Arc<HookClient>>) {
        let k = Arc::new(KernelInner::new(KernelConfig::default()));
        let m = k
            .modules
            .load("sample_ebpf_ext.sys", IMAGE, SAMPLE_FUNCTIONS);
        let tag = k.pool.tag(*b"Smpl");
        let h = Arc::new(SampleHook::new(&k, m, OwnerId(1), tag, false, late).unwrap());
        let program = Arc::new(Program::default());
        program.set_info(h.info_data());
        for id in 1..=tries {
            let stop = Arc::new(AtomicBool::new(false));
            let invokers: Vec<_> = (0..2)
                .map(|_| {
                    let (k, h, stop) = (k.clone(), h.clone(), stop.clone());
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            h.invoke(&k, 1).unwrap();
                        }
                    })
                })
                .collect();
            h.attach_client(
                &k,
                Arc::new(Link {
                    id,
                    program: program.clone(),
                }),
            )
            .unwrap();
            stop.store(true, Ordering::Relaxed);
            for t in invokers {
                bounded::join("an invoking thread", t);
            }
            let c = h
                .clients
                .read()
                .iter()
                .find(|c| c.link.id == id)
                .cloned()
                .unwrap();
            if c.rundown.refs() != 0 {
                return (k, h, Some(c));
            }
            let (k2, h2) = (k.clone(), h.clone());
            assert_eq!(
                bounded::within("a detach with no invocation", move || h2
                    .detach_client(&k2, id)),
                Ok(())
            );
        }
        (k, h, None)
    }

    /// The fault (#2010): an invocation that took the client's rundown before the late
    /// initialization underflows the count on release, and the link's detach then waits
    /// for ever in the extension's detach callback (what an NMI dump names).
    #[test]
    fn rundown_init_after_attach_underflows_and_hangs_the_detach() {
        let (k, h, c) = attach_under_invocation(true, 200);
        let c = c.expect("no invocation straddled 200 attaches");
        assert!(
            c.rundown.refs() > u64::MAX / 2,
            "underflowed: {}",
            c.rundown.refs()
        );
        let detach = {
            let (k, h, id) = (k.clone(), h.clone(), c.link.id);
            std::thread::spawn(move || h.detach_client(&k, id))
        };
        bounded::until("the detach to start waiting", || closing(&c.rundown));
        assert!(
            !detach.is_finished(),
            "a detach of an underflowed rundown returned"
        );
        let stuck = k.stuck_frame().expect("the waiting detach is marked stuck");
        assert_eq!(stuck.function, DETACH_CLIENT);
        k.hooks.cancel_all();
        assert!(bounded::join("the cancelled detach", detach).is_err());
    }

    /// Rule: with the rundown initialized before the client is published, invocations
    /// during the attach leave the count balanced.
    #[test]
    fn attaching_under_invocation_keeps_the_rundown_balanced() {
        let (_k, _h, c) = attach_under_invocation(false, 30);
        assert!(c.is_none(), "a balanced rundown count went wrong");
    }

    /// Rule: a halt ends a detach blocked on the rundown.
    #[test]
    fn a_halt_ends_a_blocked_detach() {
        let (k, h, c) = hook(false);
        assert!(c.0.rundown.acquire());
        let detach = {
            let (k, h) = (k.clone(), h.clone());
            std::thread::spawn(move || h.detach_client(&k, 7))
        };
        bounded::until("the detach to start waiting", || closing(&c.0.rundown));
        k.hooks.cancel_all();
        assert!(bounded::join("the cancelled detach", detach).is_err());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Run: `RUSTFLAGS="--cfg loom" cargo test -p sim-kernel --release --lib loom`
    use crate::nmr::Rundown;
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicBool, Ordering};

    /// The per-client invocation protocol: an invocation uses the client context only
    /// between a successful acquire and its release; detach waits for the rundown, then
    /// frees. No interleaving of two invocations and a detach reads a freed context.
    #[test]
    fn loom_detach_never_frees_under_an_invocation() {
        loom::model(|| {
            let rundown = Arc::new(Rundown::default());
            let freed = Arc::new(AtomicBool::new(false));
            let invokers: Vec<_> = (0..2)
                .map(|_| {
                    let (r, freed) = (rundown.clone(), freed.clone());
                    loom::thread::spawn(move || {
                        if r.acquire() {
                            assert!(!freed.load(Ordering::SeqCst), "read of a freed client");
                            // ... the program runs; leaving touches the client again ...
                            assert!(!freed.load(Ordering::SeqCst), "read of a freed client");
                            r.release();
                        }
                    })
                })
                .collect();
            rundown.wait_for_release().unwrap();
            freed.store(true, Ordering::SeqCst);
            assert!(
                !rundown.acquire(),
                "an invocation entered a detached client"
            );
            for t in invokers {
                t.join().unwrap();
            }
        });
    }
}
