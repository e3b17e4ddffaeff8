//! Calls into driver code: the caller frames a bugcheck's stack shows, and the 0xCE check
//! that the image is still loaded.

use std::sync::atomic::{AtomicBool, Ordering};

use super::KernelBase;
use crate::bugcheck;
use crate::error::EbpfError;
use crate::modules::{self, Frame, ModuleId};

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
}
