//! Map operations on the core's hash table, with the custom-map provider calls placed as in
//! `ebpf_maps.c` and `ebpf_hash_table.c`: lookups take no lock (epoch-protected, see
//! `bucket`); writers hold the bucket lock only around the table change;
//! `postprocess_map_find_element`, `preprocess_map_update_element` and the delete callback of
//! a value displaced by an update run outside it; the deprecated
//! `preprocess_map_delete_element` of a delete runs inside it before the removal (PRE_FREE
//! mode). A built-in hash map's entries are epoch allocations of ebpfcore (`eHsh`), freed
//! through the epoch when replaced or deleted; a program's lookup returns a pointer into one
//! that stays valid until the program's epoch ends.
//!
//! Order of an update, as upstream's `_ebpf_hash_table_replace_bucket`: the new value is
//! allocated (provider's preprocess, or the core's entry) and published before the provider
//! hears that the displaced value left, so a failed allocation never leaves the provider
//! told of a delete that did not happen.

use super::{Map, object};
use crate::error::EbpfError;
use crate::maps::{MapContext, UpdateOption};
use crate::modules::{
    CORE_EXTENSION_UNLOAD, CORE_MAP_DELETE, CORE_MAP_DESTROY, CORE_MAP_FIND, CORE_MAP_UPDATE,
    CORE_PROGRAM_INVOKE, NMR_WAIT_CLIENT_DEREGISTER,
};
use crate::pool::PoolHandle;
use crate::provider::{OP_HELPER, OP_MAP_CLEANUP, OP_UPDATE, Slot};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Size of a built-in hash table entry (key, value, links; cache aligned).
const HASH_ENTRY_SIZE: u32 = 64;

/// `_get_provider_flags`: the caller's helper flag, plus `UPDATE` inside an update.
fn provider_flags(flags: u32, is_update: bool) -> u32 {
    (flags & OP_HELPER) | if is_update { OP_UPDATE } else { 0 }
}

fn refuse_program_access(map: &Map, flags: u32) -> Result<(), EbpfError> {
    // Object maps (`updates_original_value`) are not accessible from programs.
    match &map.binding {
        Some(b) if b.object && flags & OP_HELPER != 0 => Err(EbpfError::OperationNotSupported),
        _ => Ok(()),
    }
}

/// Calls the provider's delete callback for a stored value that left the map.
fn notify_delete(
    k: &MapContext,
    map: &Map,
    key: u32,
    stored: u64,
    flags: u32,
) -> Result<(), EbpfError> {
    let Some(b) = &map.binding else { return Ok(()) };
    let p = &b.reg.provider;
    k.call_driver(
        b.reg.module,
        &b.reg.module_loaded,
        p.symbol(Slot::PostprocessMapDeleteElement),
        || p.postprocess_map_delete_element(k, b.map_ctx, key, stored, flags),
    )
}

/// Looks a key up (caller is inside an epoch).
pub(crate) fn find(k: &MapContext, map: &Map, key: u32, flags: u32) -> Result<u32, EbpfError> {
    if map.objects.is_some() {
        return object::find(k, map, key, flags);
    }
    k.check()?;
    let _core = k.core_frame(CORE_MAP_FIND);
    refuse_program_access(map, flags)?;
    let stored = map.find_stored(key).ok_or(EbpfError::KeyNotFound)?;
    match &map.binding {
        // Copy the value out of the entry the table points to.
        None => Ok(k.read(PoolHandle::from_raw(stored))? as u32),
        Some(b) => {
            let p = &b.reg.provider;
            k.call_driver(
                b.reg.module,
                &b.reg.module_loaded,
                p.symbol(Slot::PostprocessMapFindElement),
                || {
                    p.postprocess_map_find_element(
                        k,
                        b.map_ctx,
                        key,
                        stored,
                        provider_flags(flags, false),
                    )
                },
            )
        }
    }
}

/// Inserts or replaces (caller is inside an epoch).
pub(crate) fn update(
    k: &MapContext,
    map: &Map,
    key: u32,
    value: u32,
    option: UpdateOption,
    flags: u32,
) -> Result<(), EbpfError> {
    k.check()?;
    // Object maps take handles (`update_with_handle`), never plain values.
    if map.objects.is_some() {
        return Err(EbpfError::OperationNotSupported);
    }
    let _core = k.core_frame(CORE_MAP_UPDATE);
    refuse_program_access(map, flags)?;
    let new_stored = match &map.binding {
        None => hash_entry(k, value)?,
        Some(b) => {
            let p = &b.reg.provider;
            k.call_driver(
                b.reg.module,
                &b.reg.module_loaded,
                p.symbol(Slot::PreprocessMapUpdateElement),
                || {
                    p.preprocess_map_update_element(
                        k,
                        map,
                        key,
                        value,
                        provider_flags(flags, false),
                    )
                },
            )?
        }
    };
    let outcome = {
        let mut bucket = map.bucket(key).lock();
        match (option, bucket.position(key)) {
            (UpdateOption::NoExist, Some(_)) => Err(EbpfError::KeyAlreadyExists),
            (UpdateOption::Exist, None) => Err(EbpfError::KeyNotFound),
            (_, Some(i)) => Ok(bucket.replace(i, new_stored)),
            (_, None) => {
                if map.count.fetch_add(1, Ordering::AcqRel) >= map.def.max_entries {
                    map.count.fetch_sub(1, Ordering::AcqRel);
                    Err(EbpfError::OutOfSpace)
                } else {
                    bucket.insert(key, new_stored);
                    Ok(None)
                }
            }
        }
    };
    match (outcome, &map.binding) {
        // Never published: nobody can hold it.
        (Err(e), None) => {
            k.free(PoolHandle::from_raw(new_stored))?;
            Err(e)
        }
        // The table refused the value the provider prepared: undo it with UPDATE (the
        // flavour of issue #5054 returned the error and left it in place).
        (Err(e), Some(_)) => {
            if !map_flavour(k).0 {
                notify_delete(k, map, key, new_stored, provider_flags(flags, true))?;
            }
            Err(e)
        }
        // Exactly one updater removed `old` from the table: readers may still hold it.
        (Ok(Some(old)), None) => k.epoch_free(PoolHandle::from_raw(old)),
        // ... and only it notifies the provider, so exactly once; after the new value is
        // published and outside the lock, in PRE_FREE mode too (upstream's PRE_FREE
        // notification of a displaced value; the flavour before PR #5224 skipped it).
        (Ok(Some(old)), Some(_)) if !(pre_free(map) && map_flavour(k).1) => {
            notify_delete(k, map, key, old, provider_flags(flags, true))
        }
        (Ok(_), _) => Ok(()),
    }
}

/// A built-in hash map's entry holding `value` (`ebpf_epoch_allocate_with_tag`, charged to
/// ebpfcore).
fn hash_entry(k: &MapContext, value: u32) -> Result<u64, EbpfError> {
    let h = k.epoch_allocate(k.maps.entry_tag, HASH_ENTRY_SIZE, u64::from(value))?;
    Ok(h.raw())
}

/// Frees a stored value that left a built-in hash map (custom maps: the provider's delete
/// callback already ran).
fn retire_stored(k: &MapContext, map: &Map, stored: u64) -> Result<(), EbpfError> {
    match map.binding {
        None => k.epoch_free(PoolHandle::from_raw(stored)),
        Some(_) => Ok(()),
    }
}

/// The custom map's provider registered the deprecated pre-delete callback (PRE_FREE mode).
fn pre_free(map: &Map) -> bool {
    map.binding
        .as_ref()
        .is_some_and(|b| b.reg.provider.pre_free())
}

/// The map-side build flavour: (update failure not undone, PRE_FREE skips replaced).
fn map_flavour(k: &MapContext) -> (bool, bool) {
    (
        k.maps.update_failure_not_undone.load(Ordering::Relaxed),
        k.maps.pre_free_skips_replaced.load(Ordering::Relaxed),
    )
}

/// Deletes a key (caller is inside an epoch).
pub(crate) fn delete(k: &MapContext, map: &Map, key: u32, flags: u32) -> Result<(), EbpfError> {
    if map.objects.is_some() {
        return object::delete(k, map, key);
    }
    k.check()?;
    let _core = k.core_frame(CORE_MAP_DELETE);
    refuse_program_access(map, flags)?;
    let old = {
        let mut bucket = map.bucket(key).lock();
        let pos = bucket.position(key).ok_or(EbpfError::KeyNotFound)?;
        // PRE_FREE: the provider hears of the value under the lock, before it leaves the
        // table (and may veto the delete).
        if pre_free(map) {
            let stored = bucket.entries()[pos].1;
            notify_delete(k, map, key, stored, provider_flags(flags, false))?;
        }
        let old = bucket.remove(pos).ok_or(EbpfError::KeyNotFound)?;
        map.count.fetch_sub(1, Ordering::AcqRel);
        old
    };
    if !pre_free(map) {
        notify_delete(k, map, key, old, provider_flags(flags, false))?;
    }
    retire_stored(k, map, old)
}

/// A program that looks up `keys` with `bpf_map_lookup_elem` and reads the values through
/// the returned pointers at its end (caller is inside the invocation's epoch). Returns the
/// sum of the values found. Custom maps go through the extension's value helper.
pub(crate) fn lookup_program(
    k: &MapContext,
    map: &Map,
    keys: &[u32],
    work: Duration,
) -> Result<u32, EbpfError> {
    if map.objects.is_some() {
        return object::lookup_program(k, map, keys);
    }
    k.check()?;
    let _core = k.core_frame(CORE_PROGRAM_INVOKE);
    if map.binding.is_some() {
        return keys
            .iter()
            .try_fold(0u32, |sum, key| match helper_get_value(k, map, *key) {
                Ok(v) => Ok(sum.wrapping_add(v)),
                Err(EbpfError::KeyNotFound) => Ok(sum),
                Err(e) => Err(e),
            });
    }
    // The pointers the lookups returned; the epoch keeps them valid until the program ends.
    let pointers: Vec<u64> = keys
        .iter()
        .filter_map(|key| map.find_stored(*key))
        .collect();
    // The program's own work while it holds the pointers (parsing, computing): a real
    // program runs for microseconds, and the epoch is what keeps the values alive meanwhile.
    // Busy, not asleep: a program runs at DISPATCH and cannot block.
    let t = Instant::now();
    while t.elapsed() < work {
        std::hint::spin_loop();
    }
    pointers.into_iter().try_fold(0u32, |sum, p| {
        Ok(sum.wrapping_add(k.read(PoolHandle::from_raw(p))? as u32))
    })
}

/// The key after `prev` in table order (the first key if `prev` is None or absent);
/// `KeyNotFound` at the end.
pub(crate) fn next_key(k: &MapContext, map: &Map, prev: Option<u32>) -> Result<u32, EbpfError> {
    k.check()?;
    if map.objects.is_some() {
        return object::next_key(map, prev);
    }
    // Lock-free, as upstream's walk of the published buckets (caller inside an epoch).
    let start = match prev {
        None => 0,
        Some(p) => {
            let b = map.bucket(p);
            match b.key_after(p) {
                Some(Some(next)) => return Ok(next),
                Some(None) => {
                    let idx = map
                        .buckets
                        .iter()
                        .position(|x| std::ptr::eq(x, b))
                        .unwrap_or(0);
                    idx + 1
                }
                None => 0,
            }
        }
    };
    for b in map.buckets.iter().skip(start) {
        if let Some(key) = b.first_key() {
            return Ok(key);
        }
    }
    Err(EbpfError::KeyNotFound)
}

/// The extension's program helper reading a value (`sample_ext_helper_map_get_value`), or
/// `bpf_map_lookup_elem` for built-in maps. Caller is inside an epoch at DISPATCH.
pub(crate) fn helper_get_value(k: &MapContext, map: &Map, key: u32) -> Result<u32, EbpfError> {
    k.check()?;
    // A program calling the extension's helper: ebpfcore's invoke is the caller.
    let _core = k.core_frame(CORE_PROGRAM_INVOKE);
    match &map.binding {
        None => find(k, map, key, OP_HELPER),
        Some(b) => {
            let p = &b.reg.provider;
            k.call_driver(
                b.reg.module,
                &b.reg.module_loaded,
                p.symbol(Slot::HelperMapGetValue),
                || p.helper_map_get_value(k, map, key),
            )
        }
    }
}

/// Deletes the map object: cleanup of every entry, `postprocess_map_delete`, rundown release.
pub(crate) fn destroy(k: &MapContext, map: &Map) -> Result<(), EbpfError> {
    if map.deleted.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    let result = (|| {
        k.check()?;
        let _core = k.core_frame(CORE_MAP_DESTROY);
        let _epoch = k.epoch_enter();
        for b in map.buckets.iter() {
            let entries = b.lock().take_all();
            for (key, stored) in entries {
                map.count.fetch_sub(1, Ordering::AcqRel);
                notify_delete(k, map, key, stored, OP_MAP_CLEANUP)?;
                retire_stored(k, map, stored)?;
            }
        }
        if let Some(b) = &map.binding {
            let p = &b.reg.provider;
            k.call_driver(
                b.reg.module,
                &b.reg.module_loaded,
                p.symbol(Slot::PostprocessMapDelete),
                || p.postprocess_map_delete(k, b.map_ctx),
            )?;
            // `ebpf_extension_unload`: the map, an NMR client of its provider, deregisters
            // and waits for the deregistration (a passive-only wait: upstream #2191 when
            // this runs at DISPATCH_LEVEL). The wait ends once the rundown is released.
            let _unload = k.core_frame(CORE_EXTENSION_UNLOAD);
            k.passive_only(NMR_WAIT_CLIENT_DEREGISTER)?;
            b.reg.rundown.release();
        }
        object::release_all(k, map);
        if let Some(obj) = map.object {
            k.free(obj)?;
        }
        Ok(())
    })();
    k.maps.live.fetch_sub(1, Ordering::AcqRel);
    result
}

#[cfg(all(test, not(loom)))]
mod tests {
    use crate::config::KernelConfig;
    use crate::error::EbpfError;
    use crate::image::{DriverImage, Fault, ImageKind, Signing};
    use crate::kernel::Kernel;
    use crate::maps::{BPF_MAP_TYPE_SAMPLE_HASH_MAP, MapDefinition, UpdateOption};

    /// Rule (upstream `_ebpf_hash_table_replace_bucket`): an update allocates its new value
    /// before the displaced value's delete callback runs (PRE_FREE mode, whose callback would
    /// free the old object). With the pool exhausted the replace fails with NO_MEMORY and the
    /// provider has heard of no delete: the old object is still allocated, so reading it after
    /// an epoch has passed is fine. Told first, the provider would have epoch-freed the
    /// object the table still points to, and the read would be a 0x50.
    #[test]
    fn a_replace_that_cannot_allocate_tells_the_provider_of_no_delete() {
        let k = Kernel::boot(KernelConfig {
            pool_capacity: 4096,
            ..KernelConfig::default()
        })
        .unwrap();
        let img = |image, faults| DriverImage {
            image,
            signature: Signing::Test,
            faults,
        };
        k.load_driver("ebpfcore", &img(ImageKind::EbpfCore, vec![]))
            .unwrap();
        let legacy = vec![Fault::LegacyPreprocessDelete];
        k.load_driver("sample_ebpf_ext", &img(ImageKind::SampleExt, legacy))
            .unwrap();
        let m = k
            .create_map(MapDefinition::new(BPF_MAP_TYPE_SAMPLE_HASH_MAP, 8))
            .unwrap();
        m.update(1, 100, UpdateOption::Any).unwrap();
        let tag = k.inner.pool.tag(*b"tFil");
        let owner = k.inner.core_running().unwrap();
        let filler: Vec<_> = (0..8192)
            .map_while(|_| k.inner.allocate(tag, owner, 64, 0).ok())
            .collect();
        assert!(filler.len() < 8192, "the pool never ran out");
        assert_eq!(
            m.update(1, 200, UpdateOption::Any),
            Err(EbpfError::NoMemory)
        );
        for h in filler {
            k.inner.free(h).unwrap();
        }
        let sync = k.clone();
        crate::bounded::within("synchronize", move || sync.synchronize()).unwrap();
        assert_eq!(m.find(1), Ok(100));
        assert!(k.bugcheck().is_none(), "{:?}", k.bugcheck());
        // And the replace goes through once memory is back, telling the provider once.
        m.update(1, 200, UpdateOption::Any).unwrap();
        assert_eq!(m.find(1), Ok(200));
        drop(m);
        k.shutdown();
    }
}
