//! Map operations on the core's hash table, with the custom-map provider calls placed as in
//! `ebpf_maps.c`: bucket lock only around the table access, callbacks outside it.

use super::Map;
use crate::error::EbpfError;
use crate::inner::KernelInner;
use crate::modules::{
    CORE_MAP_DELETE, CORE_MAP_DESTROY, CORE_MAP_FIND, CORE_MAP_UPDATE, CORE_PROGRAM_INVOKE,
};
use crate::provider::{OP_HELPER, OP_MAP_CLEANUP, OP_UPDATE, Slot};
use crate::types::UpdateOption;
use std::sync::atomic::Ordering;

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
    k: &KernelInner,
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
pub(crate) fn find(k: &KernelInner, map: &Map, key: u32, flags: u32) -> Result<u32, EbpfError> {
    k.check()?;
    let _core = k.core_frame(CORE_MAP_FIND);
    refuse_program_access(map, flags)?;
    let stored = map.find_stored(key).ok_or(EbpfError::KeyNotFound)?;
    match &map.binding {
        None => Ok(stored as u32),
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
    k: &KernelInner,
    map: &Map,
    key: u32,
    value: u32,
    option: UpdateOption,
    flags: u32,
) -> Result<(), EbpfError> {
    k.check()?;
    let _core = k.core_frame(CORE_MAP_UPDATE);
    refuse_program_access(map, flags)?;
    let new_stored = match &map.binding {
        None => u64::from(value),
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
        let pos = bucket.iter().position(|(k2, _)| *k2 == key);
        match (option, pos) {
            (UpdateOption::NoExist, Some(_)) => Err(EbpfError::KeyAlreadyExists),
            (UpdateOption::Exist, None) => Err(EbpfError::KeyNotFound),
            (_, Some(i)) => Ok(Some(std::mem::replace(&mut bucket[i].1, new_stored))),
            (_, None) => {
                if map.count.fetch_add(1, Ordering::AcqRel) >= map.def.max_entries {
                    map.count.fetch_sub(1, Ordering::AcqRel);
                    Err(EbpfError::OutOfSpace)
                } else {
                    bucket.push((key, new_stored));
                    Ok(None)
                }
            }
        }
    };
    match outcome {
        // The table refused the value the provider prepared: undo it with UPDATE.
        Err(e) => {
            notify_delete(k, map, key, new_stored, provider_flags(flags, true))?;
            Err(e)
        }
        // Exactly one updater removed `old` from the table, so it is notified exactly once.
        Ok(Some(old)) => notify_delete(k, map, key, old, provider_flags(flags, true)),
        Ok(None) => Ok(()),
    }
}

/// Deletes a key (caller is inside an epoch).
pub(crate) fn delete(k: &KernelInner, map: &Map, key: u32, flags: u32) -> Result<(), EbpfError> {
    k.check()?;
    let _core = k.core_frame(CORE_MAP_DELETE);
    refuse_program_access(map, flags)?;
    let old = {
        let mut bucket = map.bucket(key).lock();
        let pos = bucket
            .iter()
            .position(|(k2, _)| *k2 == key)
            .ok_or(EbpfError::KeyNotFound)?;
        map.count.fetch_sub(1, Ordering::AcqRel);
        bucket.swap_remove(pos).1
    };
    notify_delete(k, map, key, old, provider_flags(flags, false))
}

/// The key after `prev` in table order (the first key if `prev` is None or absent);
/// `KeyNotFound` at the end.
pub(crate) fn next_key(k: &KernelInner, map: &Map, prev: Option<u32>) -> Result<u32, EbpfError> {
    k.check()?;
    let start = match prev {
        None => 0,
        Some(p) => {
            let b = map.bucket(p);
            let g = b.lock();
            match g.iter().position(|(k2, _)| *k2 == p) {
                Some(i) => {
                    if let Some((next, _)) = g.get(i + 1) {
                        return Ok(*next);
                    }
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
        if let Some((key, _)) = b.lock().first() {
            return Ok(*key);
        }
    }
    Err(EbpfError::KeyNotFound)
}

/// The extension's program helper reading a value (`sample_ext_helper_map_get_value`), or
/// `bpf_map_lookup_elem` for built-in maps. Caller is inside an epoch at DISPATCH.
pub(crate) fn helper_get_value(k: &KernelInner, map: &Map, key: u32) -> Result<u32, EbpfError> {
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
pub(crate) fn destroy(k: &KernelInner, map: &Map) -> Result<(), EbpfError> {
    if map.deleted.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    let result = (|| {
        k.check()?;
        let _core = k.core_frame(CORE_MAP_DESTROY);
        let _epoch = k.epoch_enter();
        for b in map.buckets.iter() {
            let entries = std::mem::take(&mut *b.lock());
            for (key, stored) in entries {
                map.count.fetch_sub(1, Ordering::AcqRel);
                notify_delete(k, map, key, stored, OP_MAP_CLEANUP)?;
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
            b.reg.rundown.release();
        }
        if let Some(obj) = map.object {
            k.free(obj)?;
        }
        Ok(())
    })();
    k.maps.live.fetch_sub(1, Ordering::AcqRel);
    result
}
