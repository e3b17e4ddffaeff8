//! Program objects and links, the core side of the hook path (`ebpf_program.c`,
//! `ebpf_link.c`).
//!
//! A program is a client of its type's program-info provider: while bound it holds the
//! provider's data; the provider's detach sets that data to NULL and then synchronizes the
//! epoch, so an invocation already inside its epoch finishes with the data it read and a
//! later one fails cleanly (`EBPF_EXTENSION_FAILED_TO_LOAD`), not with a crash.
//! A link is an NMR client of the hook NPI; the hook provider invokes it through
//! [`instance_invoke`], which enters an epoch and calls [`Program::invoke`].

use crate::base::KernelBase;
use crate::error::EbpfError;
use crate::inner::KernelInner;
use crate::modules::{self, CORE_LINK_INVOKE, CORE_PROGRAM_INVOKE};
use crate::pool::PoolHandle;
use parking_lot::RwLock;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// How much "program code" one invocation runs (spin iterations): a few hundred
/// nanoseconds, like a small filter program, so invocations overlap a detach as they do
/// under real traffic.
const PROGRAM_WORK: u32 = 64;

/// `BPF_PROG_TYPE_SAMPLE` (999): the sim's one program type, the sample extension's. A
/// program's type is what a prog array checks on update (upstream compares type GUIDs).
pub const BPF_PROG_TYPE_SAMPLE: u32 = 999;

/// A program object of the sample program type.
#[derive(Debug, Default)]
pub(crate) struct Program {
    /// Kernel object id (shared id space with maps, as upstream's object table).
    pub(crate) id: u32,
    /// `bpf_prog_type` of the program.
    pub(crate) program_type: u32,
    /// `extension_program_data`: the program-info provider's data while bound, else NULL.
    info: RwLock<Option<PoolHandle>>,
    /// Successful invocations (a program's run count, as `bpftool prog show` reports).
    pub(crate) runs: AtomicU64,
}

impl Program {
    /// An unbound program object with kernel object id `id`.
    pub(crate) fn new(id: u32, program_type: u32) -> Self {
        Program {
            id,
            program_type,
            ..Program::default()
        }
    }

    /// Binds to (Some) or detaches from (None) the program-info provider's data.
    pub(crate) fn set_info(&self, data: Option<PoolHandle>) {
        *self.info.write() = data;
    }

    pub(crate) fn is_bound(&self) -> bool {
        self.info.read().is_some()
    }

    /// `ebpf_program_invoke`; the caller is inside an epoch. Fails cleanly once the
    /// provider's data is NULL; reads it otherwise (freed data is a 0x50 here).
    pub(crate) fn invoke(&self, k: &KernelBase, ctx: u32) -> Result<u32, EbpfError> {
        let _core = k.core_frame(CORE_PROGRAM_INVOKE);
        let Some(data) = *self.info.read() else {
            return Err(EbpfError::ExtensionFailedToLoad);
        };
        // The program's helpers and context descriptor come from the provider's data.
        let base = k.read(data)?;
        let mut acc = u64::from(ctx);
        for i in 0..PROGRAM_WORK {
            acc = acc.rotate_left(5) ^ u64::from(i);
            std::hint::spin_loop();
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        Ok((acc ^ base) as u32)
    }
}

/// A link: attaches a program to the hook; an NMR client of the hook NPI that stays
/// registered while its provider restarts (NMR binds it again to the next provider).
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) id: u64,
    pub(crate) program: Arc<Program>,
}

/// `_ebpf_link_instance_invoke`: what the hook provider calls for each attached link.
pub(crate) fn instance_invoke(k: &KernelInner, link: &Link, ctx: u32) -> Result<u32, EbpfError> {
    let _core = k
        .core_module()
        .map(|m| modules::push_frame(m, CORE_LINK_INVOKE));
    // Programs of this type run at DISPATCH_LEVEL (the `required_irql` XDP's and the WFP
    // hooks' program data declare), so do the helpers they call.
    let _irql = crate::irql::raise(crate::irql::DISPATCH_LEVEL);
    let _epoch = k.epoch_enter();
    link.program.invoke(k, ctx)
}
