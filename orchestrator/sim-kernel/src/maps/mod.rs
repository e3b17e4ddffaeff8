//! Maps: the core's hash table (lock-free lookups, bucket locks for writers) for built-in hash
//! maps and custom maps, the
//! custom-map paths of `ebpf_maps.c` (provider callbacks, undo rule, object-map refusals),
//! map handles with last-close deletion, and pins.

mod bucket;
mod def;
mod object;
mod ops;

pub use def::{
    BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_SAMPLE_HASH_MAP, MapDefinition, MapInfo, UpdateOption,
};
pub use object::{BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS, BPF_MAP_TYPE_PROG_ARRAY};
pub(crate) use object::{
    ObjectRef, create_with_inner, next_object_id, tail_call, update_with_handle,
};

use crate::base::KernelBase;
use crate::error::EbpfError;
use crate::image::{DriverImage, Fault};
use crate::nmr::Nmr;
use crate::pool::{Pool, PoolHandle, TagId};
use crate::provider::Slot;
use crate::provider::{MapProvider, Registration};
use bucket::Bucket;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

/// Pool tag of the core's map objects.
pub(crate) const MAP_TAG: [u8; 4] = *b"eMap";
/// Pool tag of the built-in hash table's entries.
pub(crate) const ENTRY_TAG: [u8; 4] = *b"eHsh";

/// The binding of a custom map to its provider.
#[derive(Debug)]
pub(crate) struct Binding {
    pub(crate) reg: Arc<Registration>,
    pub(crate) map_ctx: u64,
    pub(crate) object: bool,
}

/// One map instance.
#[derive(Debug)]
pub struct Map {
    pub(crate) id: u32,
    pub(crate) def: MapDefinition,
    pub(crate) binding: Option<Binding>,
    buckets: Box<[Bucket]>,
    mask: usize,
    count: AtomicU32,
    /// The core's allocation for the map object (charged to ebpfcore).
    object: Option<PoolHandle>,
    handles: AtomicUsize,
    deleted: AtomicBool,
    /// Object maps (prog array, map-in-map): their entries (`object.rs`).
    objects: Option<object::ObjectTable>,
}

impl Map {
    #[inline]
    fn bucket(&self, key: u32) -> &Bucket {
        let h = (u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
        &self.buckets[h & self.mask]
    }

    /// Entry count.
    pub(crate) fn len(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }

    /// `find_element_function` of the client dispatch: the stored value, or not found.
    /// Lock-free; the caller must be inside an epoch, which keeps the value it returns (a
    /// pool allocation) valid until the caller leaves it (see [`bucket`]).
    #[inline]
    pub(crate) fn find_stored(&self, key: u32) -> Option<u64> {
        self.bucket(key).find(key)
    }
}

/// The maps layer's context: the lower context, NMR (the providers) and the map registry.
/// Map code and map handles hold only this, never the drivers' state above it.
#[derive(Debug)]
pub(crate) struct MapContext {
    pub(crate) base: Arc<KernelBase>,
    pub(crate) nmr: Arc<Nmr<dyn MapProvider>>,
    pub(crate) maps: MapRegistry,
}

impl MapContext {
    pub(crate) fn new(base: Arc<KernelBase>, nmr: Arc<Nmr<dyn MapProvider>>) -> Self {
        MapContext {
            maps: MapRegistry::new(&base.pool),
            base,
            nmr,
        }
    }
}

/// Map code calls the lower primitives (`k.allocate`, `k.call_driver`) through its context.
impl Deref for MapContext {
    type Target = KernelBase;

    fn deref(&self) -> &KernelBase {
        &self.base
    }
}

/// Live maps and pins.
#[derive(Debug)]
pub(crate) struct MapRegistry {
    next_id: AtomicU32,
    pub(crate) live: AtomicUsize,
    pins: Mutex<BTreeMap<String, MapHandle>>,
    pub(crate) tag: TagId,
    /// Pool tag of the built-in hash table's entries (epoch-allocated, charged to ebpfcore).
    pub(crate) entry_tag: TagId,
    /// ebpfcore flavour `update_failure_not_undone` (issue #5054).
    pub(crate) update_failure_not_undone: AtomicBool,
    /// ebpfcore flavour `pre_free_skips_replaced` (PR #5224).
    pub(crate) pre_free_skips_replaced: AtomicBool,
    /// ebpfcore flavour `close_without_epoch` (issue #1109).
    pub(crate) close_without_epoch: AtomicBool,
}

impl MapRegistry {
    pub(crate) fn new(pool: &Pool) -> Self {
        MapRegistry {
            next_id: AtomicU32::new(1),
            live: AtomicUsize::new(0),
            pins: Mutex::new(BTreeMap::new()),
            tag: pool.tag(MAP_TAG),
            entry_tag: pool.tag(ENTRY_TAG),
            update_failure_not_undone: AtomicBool::new(false),
            pre_free_skips_replaced: AtomicBool::new(false),
            close_without_epoch: AtomicBool::new(false),
        }
    }

    /// Takes the map-side build flavour of a loaded ebpfcore image.
    pub(crate) fn set_flavour(&self, image: &DriverImage) {
        self.update_failure_not_undone.store(
            image.has_fault(Fault::UpdateFailureNotUndone),
            Ordering::Relaxed,
        );
        self.pre_free_skips_replaced.store(
            image.has_fault(Fault::PreFreeSkipsReplaced),
            Ordering::Relaxed,
        );
        self.close_without_epoch
            .store(image.has_fault(Fault::CloseWithoutEpoch), Ordering::Relaxed);
    }
}

/// An open handle to a map (user-mode fd / kernel reference). Clones share the map; when
/// the last handle (pins included) is dropped the map is deleted: every entry gets the
/// provider's delete callback with `MAP_CLEANUP`, then `postprocess_map_delete`, then the
/// rundown reference on the provider is released.
#[derive(Debug)]
pub struct MapHandle {
    pub(crate) k: Arc<MapContext>,
    pub(crate) map: Arc<Map>,
}

impl Clone for MapHandle {
    fn clone(&self) -> Self {
        self.map.handles.fetch_add(1, Ordering::AcqRel);
        MapHandle {
            k: self.k.clone(),
            map: self.map.clone(),
        }
    }
}

impl Drop for MapHandle {
    fn drop(&mut self) {
        let before = self.map.handles.fetch_sub(1, Ordering::AcqRel);
        // Object maps release their entries once no user reference is left.
        object::handle_closed(&self.k, &self.map, before - 1);
        if before == 1 {
            // As upstream, the teardown (entry cleanup, postprocess_map_delete, rundown
            // release) is an epoch work item: a reader that found the map inside an epoch may
            // still use it. So a reader stuck in an epoch keeps the provider's rundown, and
            // the extension's stop pends, after every handle is closed. The work item holds
            // the kernel weakly: one left queued at shutdown must not keep it alive.
            let k = Arc::downgrade(&self.k);
            let map = self.map.clone();
            let work = move || {
                if let Some(k) = k.upgrade() {
                    // A failure here is a bugcheck already recorded (or a stopped kernel).
                    let _ = ops::destroy(&k, &map);
                }
            };
            if self.k.maps.close_without_epoch.load(Ordering::Relaxed) {
                // The flavour of issue #1109: the close path neither enters nor leaves an
                // epoch, so nothing arms the timer for the work item it queues; it runs
                // only if some other thread's epoch exit on this CPU flushes the list.
                self.k.epoch_schedule_work(work);
            } else {
                let _epoch = self.k.epoch_enter();
                self.k.epoch_schedule_work(work);
            }
        }
    }
}

impl MapHandle {
    /// Kernel object id.
    pub fn id(&self) -> u32 {
        self.map.id
    }

    /// The definition it was created with.
    pub fn definition(&self) -> MapDefinition {
        self.map.def
    }

    /// Current entry count.
    pub fn len(&self) -> u32 {
        self.map.len()
    }

    /// True if the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// A program invocation that looks up `keys` and reads the values through the pointers
    /// the lookups returned at its end (inside one epoch, as `_ebpf_link_instance_invoke`
    /// runs a program); returns the sum of the values found. `work` is the program's own
    /// computation between its lookups and its reads (built-in hash maps).
    pub fn run_lookup_program(&self, keys: &[u32], work: Duration) -> Result<u32, EbpfError> {
        // A program and its helpers run at DISPATCH_LEVEL.
        let _irql = crate::irql::raise(crate::irql::DISPATCH_LEVEL);
        let _e = self.k.epoch_enter();
        ops::lookup_program(&self.k, &self.map, keys, work)
    }
}

/// Creates a map (user-mode `bpf_map_create`).
pub(crate) fn create(k: &Arc<MapContext>, def: MapDefinition) -> Result<MapHandle, EbpfError> {
    if object::is_object_type(def.map_type) {
        return object::create(k, def, ObjectRef::Invalid);
    }
    k.check()?;
    let core = k.core_running().ok_or(EbpfError::CoreNotRunning)?;
    if def.max_entries == 0 || def.key_size != 4 {
        return Err(EbpfError::InvalidArgument);
    }
    let _epoch = k.epoch_enter();
    let binding = if def.map_type == BPF_MAP_TYPE_HASH {
        if def.value_size != 4 {
            return Err(EbpfError::InvalidArgument);
        }
        None
    } else {
        // Custom path: bind to the provider (rundown reference) or fail to load.
        let reg = k
            .nmr
            .attach(def.map_type)
            .ok_or(EbpfError::ExtensionFailedToLoad)?;
        if crate::provider::check_attach(&*reg.provider, def.map_type).is_err() {
            reg.rundown.release();
            return Err(EbpfError::ExtensionFailedToLoad);
        }
        let p = reg.provider.clone();
        let created = k.call_driver(
            reg.module,
            &reg.module_loaded,
            p.symbol(Slot::PreprocessMapCreate),
            || p.preprocess_map_create(k, &def),
        );
        match created {
            Ok((_actual, map_ctx)) => {
                let object = p.updates_original_value();
                Some(Binding {
                    reg,
                    map_ctx,
                    object,
                })
            }
            Err(e) => {
                reg.rundown.release();
                return Err(match e {
                    EbpfError::Halted(_) => e,
                    EbpfError::InvalidArgument => e,
                    _ => EbpfError::ExtensionFailedToLoad,
                });
            }
        }
    };
    let nb = (def.max_entries as usize)
        .next_power_of_two()
        .clamp(16, 1 << 14);
    let buckets: Box<[Bucket]> = (0..nb).map(|_| Bucket::default()).collect();
    let obj_size = 256 + (nb as u32) * 16;
    let object = match k.allocate(k.maps.tag, core, obj_size, 0) {
        Ok(h) => Some(h),
        Err(e) => {
            if let Some(b) = &binding {
                let p = b.reg.provider.clone();
                let _ = k.call_driver(
                    b.reg.module,
                    &b.reg.module_loaded,
                    p.symbol(Slot::PostprocessMapDelete),
                    || p.postprocess_map_delete(k, b.map_ctx),
                );
                b.reg.rundown.release();
            }
            return Err(e);
        }
    };
    let map = Arc::new(Map {
        id: k.maps.next_id.fetch_add(1, Ordering::Relaxed),
        def,
        binding,
        buckets,
        mask: nb - 1,
        count: AtomicU32::new(0),
        object,
        handles: AtomicUsize::new(1),
        deleted: AtomicBool::new(false),
        objects: None,
    });
    k.maps.live.fetch_add(1, Ordering::AcqRel);
    Ok(MapHandle { k: k.clone(), map })
}

/// Pins a handle under `name` (the pin keeps the map alive in the kernel).
pub(crate) fn pin(k: &MapContext, name: &str, h: &MapHandle) -> Result<(), EbpfError> {
    k.check()?;
    let mut pins = k.maps.pins.lock();
    if pins.contains_key(name) {
        return Err(EbpfError::ObjectAlreadyExists);
    }
    pins.insert(name.to_string(), h.clone());
    Ok(())
}

/// Opens a pinned map by name.
pub(crate) fn open_pinned(k: &MapContext, name: &str) -> Result<MapHandle, EbpfError> {
    k.check()?;
    k.maps
        .pins
        .lock()
        .get(name)
        .cloned()
        .ok_or(EbpfError::ObjectNotFound)
}

/// Removes a pin; the map is deleted when no other handle holds it.
pub(crate) fn unpin(k: &MapContext, name: &str) -> Result<(), EbpfError> {
    k.check()?;
    let h = k
        .maps
        .pins
        .lock()
        .remove(name)
        .ok_or(EbpfError::ObjectNotFound)?;
    drop(h);
    Ok(())
}

/// Drops every pin (ebpfcore unload, shutdown).
pub(crate) fn unpin_all(k: &MapContext) {
    let pins = std::mem::take(&mut *k.maps.pins.lock());
    drop(pins);
}

/// Pinned maps, sorted by name.
pub(crate) fn list(k: &MapContext) -> Vec<MapInfo> {
    k.maps
        .pins
        .lock()
        .iter()
        .map(|(name, h)| MapInfo {
            name: name.clone(),
            id: h.map.id,
            map_type: h.map.def.map_type,
            max_entries: h.map.def.max_entries,
            entries: h.map.len(),
        })
        .collect()
}

pub(crate) use ops::{delete, find, helper_get_value, next_key, update};

#[cfg(test)]
mod tests;
