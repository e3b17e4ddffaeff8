//! An executable, concurrent model of the eBPF-for-Windows custom-map runtime: the "kernel"
//! a simulated guest (`sim-guest`) runs.
//!
//! Everything is plain sync code on real threads bound to simulated CPUs, with real locks;
//! the races are real, so faults show up (or not) depending on timing, as on Windows.
//!
//! ```text
//!  Kernel (cheap Clone handle, Send + Sync)
//!   ├─ services: load_driver / stop_driver / driver_state   (DriverEntry, DriverUnload)
//!   │     ebpfcore ─ map API enabled        sample_ext ─ NMR provider of map type 15
//!   ├─ maps: hash (built in) and custom (provider callbacks, rundown ref per map)
//!   ├─ hook: programs (program-info NPI), links (hook NPI), sample_ext's hook provider
//!   │     invoke: device → per-client rundown → epoch → ebpf_program_invoke
//!   ├─ epoch: per-CPU state, 1 ms timer thread → propose/commit → pool release
//!   ├─ pool: slab with generation counters (stale access ⇒ 0x50, bad free ⇒ 0xC2/0x139)
//!   ├─ tools: map_stress, map_tool, ebpf_stats, prog_invoke (args per the sim contract)
//!   └─ halt: first bugcheck stops every kernel/tool thread; wait_bugcheck() reports it
//! ```
//!
//! API summary (see each item's docs):
//! - [`Kernel::boot`] with a [`KernelConfig`]; [`Kernel::shutdown`] ends it.
//! - [`DriverImage::parse`] reads a sim driver file; [`Kernel::load_driver`],
//!   [`Kernel::stop_driver`] (returns `Stopped` or `StopPending` at once),
//!   [`Kernel::driver_state`]. The module name of service `x` is `x.sys`.
//! - [`Kernel::run_tool`] runs `map_stress` / `map_tool` / `ebpf_stats` with a
//!   [`CancelFlag`] and returns a [`ToolOutput`].
//! - [`Kernel::metric`] (`pool_bytes:<TAG>`, `pool_allocs:<TAG>`, `epoch_pending_bytes`,
//!   `epoch_current`, `epoch_released`), [`Kernel::pool_stats`], [`Kernel::epoch_stats`].
//! - [`Kernel::wait_bugcheck`], [`Kernel::bugcheck`], [`Kernel::nmi`], [`Kernel::modules`]:
//!   a [`Bugcheck`]'s `rip` lies in its module's range.
//! - User-mode map API: [`Kernel::create_map`] → [`MapHandle`] (find / update / delete /
//!   next_key, and program-helper variants), pins via [`Kernel::pin_map`].
//! - Object maps (prog array, array/hash of maps): [`Kernel::create_map_with_inner`],
//!   [`MapHandle::update_with_handle`] with an [`ObjectHandle`], [`MapHandle::tail_call`];
//!   the map holds a reference on each stored object ([`Kernel::live_programs`]).
//! - Programs and links: [`Kernel::load_program`] → [`ProgramHandle::attach`] →
//!   [`LinkHandle`]; [`Kernel::invoke_hook`] runs the sample hook (a [`HookRun`]).
//!
//! Loom model checks of the rundown (map provider and per-client hook invocation) and epoch
//! propose/commit cores:
//! `RUSTFLAGS="--cfg loom" cargo test -p sim-kernel --release --lib loom`
//! (use a separate `CARGO_TARGET_DIR` to keep the normal build cache).

mod base;
#[cfg(test)]
mod bounded;
mod bugcheck;
mod config;
mod epoch;
mod error;
mod hook;
mod image;
mod image_file;
mod inner;
mod irql;
mod kernel;
mod maps;
mod modules;
mod nmr;
mod pool;
mod program;
mod provider;
mod sample_ext;
mod sample_hook;
mod services;
mod sync;
mod tool_io;
mod tools;

pub use base::EpochGuard;
pub use bugcheck::{
    BAD_POOL_CALLER, Bugcheck, DRIVER_IRQL_NOT_LESS_OR_EQUAL,
    DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS, DRIVER_VERIFIER_DETECTED_VIOLATION,
    IRQL_NOT_LESS_OR_EQUAL, KERNEL_SECURITY_CHECK_FAILURE, NMI_HARDWARE_FAILURE,
    PAGE_FAULT_IN_NONPAGED_AREA, bugcheck_name,
};
pub use config::KernelConfig;
pub use epoch::EpochStats;
pub use error::{EbpfError, KernelError};
pub use hook::{HookRun, LinkHandle, ObjectHandle, ProgramHandle};
pub use image::{DriverImage, Fault, ImageError, ImageKind, Signing};
pub use image_file::{TIME_DATE_STAMP, driver_file, image_exports, image_size};
pub use kernel::Kernel;
pub use maps::{
    BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_HASH_OF_MAPS,
    BPF_MAP_TYPE_PROG_ARRAY, BPF_MAP_TYPE_SAMPLE_HASH_MAP, Map, MapDefinition, MapHandle, MapInfo,
    UpdateOption,
};
pub use modules::Module;
pub use pool::{PoolStats, TagUsage};
pub use program::BPF_PROG_TYPE_SAMPLE;
pub use tool_io::{CancelFlag, ToolOutput};
pub use tools::TOOLS;
// A driver's state is the service state `sc query` reports, spelled once in win-vocab.
pub use win_vocab::ServiceState;

#[cfg(test)]
mod rule_tests;
