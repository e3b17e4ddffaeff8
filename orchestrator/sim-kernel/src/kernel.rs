//! The public `Kernel` handle: boot, services, maps, tools, metrics, bugchecks, shutdown.

use crate::bugcheck::{self, Bugcheck};
use crate::error::{EbpfError, KernelError};
use crate::image::DriverImage;
use crate::inner::KernelInner;
use crate::maps::{self, MapHandle};
use crate::modules::{Frame, KERNEL_MODULE, Module};
use crate::pool;
use win_vocab::ServiceState;

use crate::config::KernelConfig;

use crate::epoch::EpochStats;

use crate::hook::ObjectHandle;
use crate::maps::{MapDefinition, MapInfo, UpdateOption};

use crate::pool::{PoolStats, TagUsage};

use crate::tool_io::{CancelFlag, ToolOutput};
use std::sync::Arc;
use std::time::Duration;

/// A booted simulated kernel. Cheap to clone; all clones are the same kernel.
///
/// Threads calling into it are bound to simulated CPUs round robin on first use (or
/// explicitly with [`Kernel::bind_current_thread`]). Call [`Kernel::shutdown`] when done:
/// the kernel's own threads run until then (or until a bugcheck).
#[derive(Debug, Clone)]
pub struct Kernel {
    pub(crate) inner: Arc<KernelInner>,
}

impl Kernel {
    /// Boots: per-CPU epoch state, the pool, and the 1 ms epoch timer thread. No driver is
    /// loaded (load `ebpfcore` first; the map API needs it).
    pub fn boot(config: KernelConfig) -> Result<Kernel, KernelError> {
        if config.cpus == 0 || config.cpus > 64 {
            return Err(KernelError::InvalidConfig(format!(
                "cpus must be between 1 and 64, got {}",
                config.cpus
            )));
        }
        let inner = Arc::new(KernelInner::new(config));
        let t = {
            let base = inner.base.clone();
            std::thread::Builder::new()
                .name("epoch-timer".into())
                .spawn(move || base.timer_loop())
                .map_err(|e| KernelError::InvalidConfig(format!("spawn the epoch timer: {e}")))?
        };
        *inner.timer.lock() = Some(t);
        Ok(Kernel { inner })
    }

    /// The configuration it booted with.
    pub fn config(&self) -> &KernelConfig {
        &self.inner.config
    }

    /// Binds the calling thread to simulated CPU `cpu % cpus`.
    pub fn bind_current_thread(&self, cpu: u32) {
        crate::epoch::bind_cpu(cpu);
    }

    // ----- services -----

    /// Starts service `service` from `image` (`DriverEntry`). The module is `<service>.sys`.
    /// Test-signed images need test signing, unsigned ones never load (error 577).
    pub fn load_driver(&self, service: &str, image: &DriverImage) -> Result<(), KernelError> {
        crate::services::load(&self.inner, service, image)
    }

    /// Begins `DriverUnload` and returns at once (after a grace of at most 100 ms):
    /// `Stopped` if the unload finished, `StopPending` while it waits (e.g. for the rundown
    /// of live maps); it then completes on its own thread.
    pub fn stop_driver(&self, service: &str) -> Result<ServiceState, KernelError> {
        crate::services::stop(&self.inner, service)
    }

    /// The service's state (`Stopped` for a service never started, as `sc query` says).
    pub fn driver_state(&self, service: &str) -> ServiceState {
        self.inner.services.state(service)
    }

    // ----- user-mode map API -----

    /// `bpf_map_create`: a hash map (type 1), a prog array (3), or a custom map (no provider
    /// for the type ⇒ `ExtensionFailedToLoad`). A map-in-map needs an inner map
    /// ([`Kernel::create_map_with_inner`]; here `InvalidFd`). Needs ebpfcore running.
    pub fn create_map(&self, def: MapDefinition) -> Result<MapHandle, EbpfError> {
        maps::create(&self.inner.maps_ctx, def)
    }

    /// `bpf_map_create` with `inner_map_fd`: a map-in-map (`BPF_MAP_TYPE_ARRAY_OF_MAPS`,
    /// `_HASH_OF_MAPS`) takes its inner template from `inner` (`ObjectHandle::Invalid` ⇒
    /// `InvalidFd`; not a map ⇒ `InvalidObject`); a prog array ignores it; other maps refuse
    /// anything but `Invalid` (`InvalidArgument`). [`Kernel::create_map`] passes `Invalid`.
    pub fn create_map_with_inner(
        &self,
        def: MapDefinition,
        inner: ObjectHandle<'_>,
    ) -> Result<MapHandle, EbpfError> {
        let k = &self.inner.maps_ctx;
        maps::create_with_inner(k, def, inner.resolve(k))
    }

    /// Pins a map under `name`: it then outlives every other handle until unpinned.
    pub fn pin_map(&self, name: &str, map: &MapHandle) -> Result<(), EbpfError> {
        maps::pin(&self.inner, name, map)
    }

    /// Opens a pinned map.
    pub fn open_pinned(&self, name: &str) -> Result<MapHandle, EbpfError> {
        maps::open_pinned(&self.inner, name)
    }

    /// Removes a pin (the map is deleted once no handle holds it).
    pub fn unpin_map(&self, name: &str) -> Result<(), EbpfError> {
        maps::unpin(&self.inner, name)
    }

    /// Pinned maps.
    pub fn pinned_maps(&self) -> Vec<MapInfo> {
        maps::list(&self.inner)
    }

    /// Live map objects (pinned or held by a handle).
    pub fn live_maps(&self) -> usize {
        self.inner
            .maps
            .live
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// `ebpf_epoch_enter` on the calling thread's CPU: memory retired while the guard lives
    /// is not released until it drops (what a program invocation holds).
    pub fn enter_epoch(&self) -> crate::base::EpochGuard<'_> {
        self.inner.epoch_enter()
    }

    /// `ebpf_epoch_synchronize`: waits until everything retired so far is released.
    pub fn synchronize(&self) -> Result<(), EbpfError> {
        self.inner.synchronize()
    }

    // ----- tools -----

    /// Runs a sim tool (`map_stress`, `map_tool`, `ebpf_stats`) with contract arguments.
    /// Bad arguments give exit code 2 and usage on stderr. Cancelling makes it stop promptly
    /// (exit code 130). Err only for an unknown tool or a stopped kernel.
    pub fn run_tool(
        &self,
        name: &str,
        args: &[String],
        cancel: &CancelFlag,
    ) -> Result<ToolOutput, KernelError> {
        if self.inner.halt.stopped() {
            return Err(KernelError::Halted(self.inner.halt.code()));
        }
        crate::tools::run(self, name, args, cancel)
    }

    // ----- metrics -----

    /// A metric by contract name: `pool_bytes:<TAG>`, `pool_allocs:<TAG>`,
    /// `epoch_pending_bytes`, `epoch_current`, `epoch_released` (also `epoch_retired`,
    /// `epoch_released_count`, `live_maps`). None for an unknown name.
    pub fn metric(&self, name: &str) -> Option<i64> {
        if let Some(tag) = name.strip_prefix("pool_bytes:") {
            return pool::parse_tag(tag).map(|_| self.pool_stats().tag(tag).bytes);
        }
        if let Some(tag) = name.strip_prefix("pool_allocs:") {
            return pool::parse_tag(tag).map(|_| self.pool_stats().tag(tag).allocs);
        }
        let e = self.epoch_stats();
        Some(match name {
            "epoch_pending_bytes" => e.pending_bytes,
            "epoch_current" => e.current,
            "epoch_released" => e.released,
            "epoch_retired" => e.retired as i64,
            "epoch_released_count" => e.released_count as i64,
            "live_maps" => self.live_maps() as i64,
            _ => return None,
        })
    }

    /// Outstanding pool usage per tag.
    pub fn pool_stats(&self) -> PoolStats {
        let mut tags: Vec<TagUsage> = self
            .inner
            .pool
            .tag_usage()
            .into_iter()
            .map(|(t, bytes, allocs)| TagUsage {
                tag: pool::tag_text(t),
                bytes,
                allocs,
            })
            .collect();
        tags.sort_by(|a, b| a.tag.cmp(&b.tag));
        PoolStats { tags }
    }

    /// Epoch counters.
    pub fn epoch_stats(&self) -> EpochStats {
        self.inner.epoch.stats()
    }

    // ----- bugchecks -----

    /// Blocks until a bugcheck (or shutdown, or the timeout); returns the bugcheck if any.
    pub fn wait_bugcheck(&self, timeout: Duration) -> Option<Bugcheck> {
        self.inner.halt.wait_bugcheck(timeout)
    }

    /// The bugcheck that stopped the kernel, if any.
    pub fn bugcheck(&self) -> Option<Bugcheck> {
        self.inner.halt.bugcheck()
    }

    /// True once the kernel stopped (bugcheck or shutdown).
    pub fn is_halted(&self) -> bool {
        self.inner.halt.stopped()
    }

    /// Injects an NMI: bugcheck 0x80 attributed to the driver code that is stuck (e.g. a
    /// hanging `DriverUnload` or a blocked helper), else to the kernel. Returns the bugcheck
    /// in effect (an earlier one wins).
    pub fn nmi(&self) -> Option<Bugcheck> {
        let frame = self.inner.stuck_frame().or(Some(Frame {
            module: KERNEL_MODULE,
            function: "KiProcessNMI",
        }));
        self.inner.raise(
            bugcheck::NMI_HARDWARE_FAILURE,
            [0, 0, 0, 0],
            frame,
            "KiProcessNMI",
            "NMI injected from the host".to_string(),
        );
        self.inner.halt.bugcheck()
    }

    /// Loaded modules with their image ranges (kernel first, then drivers in load order).
    pub fn modules(&self) -> Vec<Module> {
        self.inner.modules.loaded()
    }

    /// Modules unloaded in this boot (a 0xCE bugcheck names one of these).
    pub fn unloaded_modules(&self) -> Vec<Module> {
        self.inner.modules.unloaded()
    }

    /// Modules unloaded in this boot with the time of each unload, oldest first (what
    /// `MmUnloadedDrivers` records).
    pub fn unloaded_drivers(&self) -> Vec<(Module, std::time::SystemTime)> {
        self.inner.modules.unloaded_with_time()
    }

    /// The functions of a module's image with their addresses (what its export directory
    /// lists in a dump).
    pub fn exports(&self, module: &Module) -> Vec<(&'static str, u64)> {
        self.inner.modules.exports(module.base)
    }

    /// Graceful stop: every kernel and tool thread stops, blocked waits end, pins are
    /// dropped. Idempotent; API calls afterwards return `Halted(None)`.
    pub fn shutdown(&self) {
        let k = &self.inner;
        k.halt.shutdown();
        k.on_halt();
        k.stop_timer();
        k.services.join_threads();
        maps::unpin_all(k);
    }
}

/// Map operations through a handle, as user-mode API calls (inside an epoch at PASSIVE on
/// the thread's CPU) or as program helper calls (`*_helper`: inside an epoch at DISPATCH,
/// with `EBPF_MAP_OPERATION_HELPER`).
impl MapHandle {
    /// `bpf_map_lookup_elem`.
    pub fn find(&self, key: u32) -> Result<u32, EbpfError> {
        let _e = self.k.epoch_enter();
        maps::find(&self.k, &self.map, key, 0)
    }

    /// `bpf_map_update_elem`.
    pub fn update(&self, key: u32, value: u32, option: UpdateOption) -> Result<(), EbpfError> {
        let _e = self.k.epoch_enter();
        maps::update(&self.k, &self.map, key, value, option, 0)
    }

    /// `bpf_map_delete_elem`.
    pub fn delete(&self, key: u32) -> Result<(), EbpfError> {
        let _e = self.k.epoch_enter();
        maps::delete(&self.k, &self.map, key, 0)
    }

    /// `bpf_map_update_elem` on an object map, whose value is a handle
    /// (`ebpf_map_update_entry_with_handle`): a program for a prog array (its type must match
    /// the array's, else `InvalidFd`), a map matching the inner template for a map-in-map
    /// (else `InvalidObject`); a wrong or unknown object is `InvalidObject`. The map holds a
    /// reference on the object until the entry is replaced or deleted or the map destroyed;
    /// the object is freed only after readers' epochs end. Other maps:
    /// `OperationNotSupported`. Lookups ([`MapHandle::find`]) return the object's id.
    pub fn update_with_handle(
        &self,
        key: u32,
        value: ObjectHandle<'_>,
        option: UpdateOption,
    ) -> Result<(), EbpfError> {
        let _e = self.k.epoch_enter();
        maps::update_with_handle(&self.k, &self.map, key, value.resolve(&self.k), option)
    }

    /// A program invocation tail-calling through this prog array at `index`: runs the
    /// program stored there inside one epoch at DISPATCH_LEVEL and returns its result, or
    /// `None` when the slot is empty (the tail call falls through). Not a prog array:
    /// `InvalidArgument`.
    pub fn tail_call(&self, index: u32, ctx: u32) -> Result<Option<u32>, EbpfError> {
        let _irql = crate::irql::raise(crate::irql::DISPATCH_LEVEL);
        let _e = self.k.epoch_enter();
        maps::tail_call(&self.k, &self.map, index, ctx)
    }

    /// `bpf_map_get_next_key` (`None` for the first key); `KeyNotFound` at the end.
    pub fn next_key(&self, prev: Option<u32>) -> Result<u32, EbpfError> {
        let _e = self.k.epoch_enter();
        maps::next_key(&self.k, &self.map, prev)
    }

    /// Program helper `bpf_map_lookup_elem` (object maps refuse it).
    pub fn find_helper(&self, key: u32) -> Result<u32, EbpfError> {
        let _e = self.k.epoch_enter();
        maps::find(&self.k, &self.map, key, crate::provider::OP_HELPER)
    }

    /// Program helper `bpf_map_update_elem` (object maps refuse it).
    pub fn update_helper(
        &self,
        key: u32,
        value: u32,
        option: UpdateOption,
    ) -> Result<(), EbpfError> {
        let _e = self.k.epoch_enter();
        maps::update(
            &self.k,
            &self.map,
            key,
            value,
            option,
            crate::provider::OP_HELPER,
        )
    }

    /// Program helper `bpf_map_delete_elem` (object maps refuse it).
    pub fn delete_helper(&self, key: u32) -> Result<(), EbpfError> {
        let _e = self.k.epoch_enter();
        maps::delete(&self.k, &self.map, key, crate::provider::OP_HELPER)
    }

    /// A program invocation calling the extension's value helper
    /// (`sample_ext_helper_map_get_value`; `bpf_map_lookup_elem` for hash maps).
    pub fn get_value_helper(&self, key: u32) -> Result<u32, EbpfError> {
        let _e = self.k.epoch_enter();
        maps::helper_get_value(&self.k, &self.map, key)
    }
}
