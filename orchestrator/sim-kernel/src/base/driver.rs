//! Calls into driver code: the caller frames a bugcheck's stack shows, the 0xCE check
//! that the image is still loaded, and the IRQL check of passive-only routines.

use std::sync::atomic::{AtomicBool, Ordering};

use super::KernelBase;
use crate::bugcheck;
use crate::error::EbpfError;
use crate::irql;
use crate::modules::{self, Frame, KERNEL_MODULE, ModuleId};

impl KernelBase {
    /// Marks core code `function` of ebpfcore as running (a caller frame for the stack of a
    /// bugcheck in the driver code it calls); nothing when ebpfcore is not loaded.
    pub(crate) fn core_frame(&self, function: &'static str) -> Option<modules::FrameGuard> {
        self.core_module().map(|m| modules::push_frame(m, function))
    }

    /// Runs driver code `module!function`; calling into an unloaded image is bugcheck 0xCE.
    #[inline]
    pub(crate) fn call_driver<R>(
        &self,
        module: ModuleId,
        loaded: &AtomicBool,
        function: &'static str,
        f: impl FnOnce() -> Result<R, EbpfError>,
    ) -> Result<R, EbpfError> {
        self.check()?;
        if !loaded.load(Ordering::Acquire) {
            let frame = Frame { module, function };
            let addr = self.modules.rip(module, function);
            return Err(self.raise(
                bugcheck::DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS,
                [addr, 0x10, 0, 0],
                Some(frame),
                function,
                format!(
                    "call into {}!{function} after the driver unloaded",
                    self.modules.get(module).name
                ),
            ));
        }
        let _frame = modules::push_frame(module, function);
        f()
    }

    /// Entry of a passive-only system routine `callee` (paged code, a wait, paged pool):
    /// called above PASSIVE_LEVEL it is an IRQL bugcheck blaming the caller (the thread's
    /// innermost frame): 0xD1 when that is a driver, 0xA when it is the kernel.
    pub(crate) fn passive_only(&self, callee: &'static str) -> Result<(), EbpfError> {
        self.check()?;
        let level = irql::current();
        if level == irql::PASSIVE_LEVEL {
            return Ok(());
        }
        let caller = modules::current_frame();
        let code = match caller {
            Some(f) if f.module != KERNEL_MODULE => bugcheck::DRIVER_IRQL_NOT_LESS_OR_EQUAL,
            _ => bugcheck::IRQL_NOT_LESS_OR_EQUAL,
        };
        let who = caller.map_or_else(
            || "the kernel".to_string(),
            |f| format!("{}!{}", self.modules.get(f.module).name, f.function),
        );
        // Parameter 1: the pageable code referenced; 3: execute; 4 (set by `raise`): RIP.
        let target = self.modules.rip(KERNEL_MODULE, callee);
        Err(self.raise(
            code,
            [target, u64::from(level), 8, 0],
            None,
            callee,
            format!("{who} called passive-only {callee} at IRQL {level}"),
        ))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Rules of the IRQL check.
    use super::*;
    use crate::config::KernelConfig;
    use crate::modules::{CORE_FUNCTIONS, NMR_WAIT_CLIENT_DEREGISTER};

    fn base() -> (KernelBase, ModuleId) {
        let k = KernelBase::new(KernelConfig::default());
        let m = k.modules.load("ebpfcore.sys", 0x8_0000, CORE_FUNCTIONS);
        (k, m)
    }

    /// Rule: at PASSIVE_LEVEL a passive-only routine runs.
    #[test]
    fn passive_only_at_passive_runs() {
        let (k, m) = base();
        let _f = modules::push_frame(m, "ebpf_extension_unload");
        assert_eq!(k.passive_only(NMR_WAIT_CLIENT_DEREGISTER), Ok(()));
        assert!(k.halt.bugcheck().is_none());
    }

    /// Rule: at DISPATCH_LEVEL, called by a driver, it is 0xD1 blaming the driver's caller.
    #[test]
    fn passive_only_at_dispatch_from_a_driver_is_0xd1() {
        let (k, m) = base();
        let _f = modules::push_frame(m, "ebpf_extension_unload");
        let _irql = irql::raise(irql::DISPATCH_LEVEL);
        assert!(k.passive_only(NMR_WAIT_CLIENT_DEREGISTER).is_err());
        let bc = k.halt.bugcheck().expect("bugcheck");
        assert_eq!(bc.code, bugcheck::DRIVER_IRQL_NOT_LESS_OR_EQUAL);
        assert_eq!(
            (bc.module.as_str(), bc.function.as_str()),
            ("ebpfcore.sys", "ebpf_extension_unload")
        );
        assert_eq!(bc.params[1], u64::from(irql::DISPATCH_LEVEL));
        assert_eq!(bc.params[2], 8, "execute");
        assert_eq!(bc.params[3], bc.rip);
        assert_eq!(
            bc.params[0],
            k.modules.rip(KERNEL_MODULE, NMR_WAIT_CLIENT_DEREGISTER)
        );
    }

    /// Rule: from the kernel's own code (no driver frame) it is 0xA.
    #[test]
    fn passive_only_at_dispatch_from_the_kernel_is_0xa() {
        let (k, _) = base();
        let _irql = irql::raise(irql::DISPATCH_LEVEL);
        assert!(k.passive_only(NMR_WAIT_CLIENT_DEREGISTER).is_err());
        let bc = k.halt.bugcheck().expect("bugcheck");
        assert_eq!(bc.code, bugcheck::IRQL_NOT_LESS_OR_EQUAL);
        assert_eq!(bc.module, modules::KERNEL_IMAGE);
    }

    /// Rule: once the raise is undone the same call runs again.
    #[test]
    fn lowering_back_to_passive_makes_the_call_legal() {
        let (k, m) = base();
        let _f = modules::push_frame(m, "ebpf_extension_unload");
        drop(irql::raise(irql::DISPATCH_LEVEL));
        assert_eq!(k.passive_only(NMR_WAIT_CLIENT_DEREGISTER), Ok(()));
    }
}
