//! The read and delete side of object maps: lookups (an id for user mode, the inner map for
//! a program), deletes, key walks, and the tail call that reads a prog array.

use super::{BPF_MAP_TYPE_PROG_ARRAY, Held, release};
use crate::error::EbpfError;
use crate::maps::{Map, MapContext};
use crate::modules::{CORE_MAP_DELETE, CORE_MAP_FIND, CORE_PROGRAM_INVOKE};
use crate::provider::OP_HELPER;
use std::ops::Bound;
use std::sync::atomic::Ordering;

/// `ebpf_map_find_entry` (caller is inside an epoch): user mode gets the object's id; a
/// program's lookup in a map-in-map gets the inner map (here its id, after reading the map
/// object the pointer names, which a premature free turns into a 0x50); a program may not
/// read a prog array (`EBPF_INVALID_ARGUMENT`).
pub(crate) fn find(k: &MapContext, map: &Map, key: u32, flags: u32) -> Result<u32, EbpfError> {
    k.check()?;
    let _core = k.core_frame(CORE_MAP_FIND);
    let Some(table) = &map.objects else {
        return Err(EbpfError::InvalidArgument);
    };
    let helper = flags & OP_HELPER != 0;
    if helper && map.def.map_type == BPF_MAP_TYPE_PROG_ARRAY {
        return Err(EbpfError::InvalidArgument);
    }
    // An empty slot, an index past the array, a missing key: all `EBPF_OBJECT_NOT_FOUND`.
    let inner = {
        let st = table.state.lock();
        match st.entries.get(&key) {
            None => return Err(EbpfError::ObjectNotFound),
            Some(h) if !helper => return Ok(h.id()),
            Some(Held::Map(m)) => m.map.clone(),
            Some(Held::Program(p)) => return Ok(p.id),
        }
    };
    // The lock is gone: only the caller's epoch keeps the inner map's memory valid.
    if let Some(obj) = inner.object {
        k.read(obj)?;
    }
    Ok(inner.id)
}

/// `_delete_array_map_entry_with_reference` / `_delete_map_hash_map_entry` (caller is inside
/// an epoch). Deleting an empty array slot succeeds, as upstream.
pub(crate) fn delete(k: &MapContext, map: &Map, key: u32) -> Result<(), EbpfError> {
    k.check()?;
    let _core = k.core_frame(CORE_MAP_DELETE);
    let Some(table) = &map.objects else {
        return Err(EbpfError::InvalidArgument);
    };
    if table.array && key >= map.def.max_entries {
        return Err(EbpfError::ObjectNotFound);
    }
    let old = table.state.lock().entries.remove(&key);
    match old {
        Some(old) => {
            map.count.fetch_sub(1, Ordering::AcqRel);
            release(k, old);
            Ok(())
        }
        None if table.array => Ok(()),
        None => Err(EbpfError::ObjectNotFound),
    }
}

/// `bpf_map_get_next_key`: an array walks every index below `max_entries` (empty slots
/// included, as `_next_array_map_key_and_value`); a hash walks its keys (the first key when
/// `prev` is None or absent). `KeyNotFound` at the end.
pub(crate) fn next_key(map: &Map, prev: Option<u32>) -> Result<u32, EbpfError> {
    let Some(table) = &map.objects else {
        return Err(EbpfError::InvalidArgument);
    };
    if table.array {
        return match prev {
            None => Some(0),
            Some(p) => p.checked_add(1),
        }
        .filter(|i| *i < map.def.max_entries)
        .ok_or(EbpfError::KeyNotFound);
    }
    let st = table.state.lock();
    let next = match prev {
        Some(p) if st.entries.contains_key(&p) => st
            .entries
            .range((Bound::Excluded(p), Bound::Unbounded))
            .next(),
        _ => st.entries.iter().next(),
    };
    next.map(|(key, _)| *key).ok_or(EbpfError::KeyNotFound)
}

/// A program looking `keys` up (caller is inside the invocation's epoch): the sum of the
/// inner map ids found.
pub(crate) fn lookup_program(k: &MapContext, map: &Map, keys: &[u32]) -> Result<u32, EbpfError> {
    let _core = k.core_frame(CORE_PROGRAM_INVOKE);
    keys.iter()
        .try_fold(0u32, |sum, key| match find(k, map, *key, OP_HELPER) {
            Ok(v) => Ok(sum.wrapping_add(v)),
            Err(EbpfError::ObjectNotFound) => Ok(sum),
            Err(e) => Err(e),
        })
}

/// A tail call (`ebpf_map_get_program_from_entry`, then the program runs); the caller is
/// inside the invocation's epoch at DISPATCH_LEVEL. `None`: no program at `index`, so the
/// tail call falls through. Not a prog array: `EBPF_INVALID_ARGUMENT`.
pub(crate) fn tail_call(
    k: &MapContext,
    map: &Map,
    index: u32,
    ctx: u32,
) -> Result<Option<u32>, EbpfError> {
    k.check()?;
    let _core = k.core_frame(CORE_PROGRAM_INVOKE);
    let table = match &map.objects {
        Some(t) if map.def.map_type == BPF_MAP_TYPE_PROG_ARRAY => t,
        _ => return Err(EbpfError::InvalidArgument),
    };
    let program = match table.state.lock().entries.get(&index) {
        Some(Held::Program(p)) => p.clone(),
        _ => return Ok(None),
    };
    program.invoke(k, ctx).map(Some)
}
