//! Object maps (`ebpf_maps.c`): `BPF_MAP_TYPE_PROG_ARRAY`, `_ARRAY_OF_MAPS` and
//! `_HASH_OF_MAPS`, whose values are references to programs or maps.
//!
//! An update takes a handle (`ebpf_map_update_entry_with_handle`), checks the object's type
//! (a program's type against the prog array's, a map against the map-in-map's inner
//! template) and stores a reference; replace and delete release the old reference, and the
//! object is freed only by an epoch work item, so a program that read the old entry inside
//! its epoch can still use it. Destroying the map releases every reference. User-mode
//! lookups return the object's id.
//!
//! An object map releases its entries once only other object maps hold it (upstream: when
//! its last *user* reference closes, `_ebpf_map_object_map_zero_user_reference`), which is
//! what breaks a cycle such as a map of maps stored in itself. The sim has one handle count
//! per map, so each object map also counts the entries of object maps that hold it.

use super::{Map, MapContext, MapDefinition, MapHandle, UpdateOption};
use crate::error::EbpfError;
use crate::irql::SpinLock;
use crate::modules::CORE_MAP_UPDATE;
use crate::program::Program;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

mod access;
#[cfg(test)]
mod tests;

pub(crate) use access::{delete, find, lookup_program, next_key, tail_call};

/// `BPF_MAP_TYPE_PROG_ARRAY`: an array of programs (what a tail call reads).
pub const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
/// `BPF_MAP_TYPE_HASH_OF_MAPS`: a hash table whose values are maps.
pub const BPF_MAP_TYPE_HASH_OF_MAPS: u32 = 6;
/// `BPF_MAP_TYPE_ARRAY_OF_MAPS`: an array whose values are maps.
pub const BPF_MAP_TYPE_ARRAY_OF_MAPS: u32 = 7;

/// True for the map types whose values are object references (`IS_NESTED_MAP`).
pub(crate) fn is_object_type(map_type: u32) -> bool {
    matches!(
        map_type,
        BPF_MAP_TYPE_PROG_ARRAY | BPF_MAP_TYPE_HASH_OF_MAPS | BPF_MAP_TYPE_ARRAY_OF_MAPS
    )
}

/// An object handle as the core receives it (the facade's `ObjectRef` with a program
/// handle resolved to its program): an object map's value, or a map-in-map's inner map
/// template.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ObjectRef<'a> {
    /// A loaded program of this kernel.
    Program(&'a Arc<Program>),
    /// A map handle (of this kernel or not: checked here).
    Map(&'a MapHandle),
    /// A handle value that names no eBPF object here: `EBPF_INVALID_OBJECT`.
    Unknown,
    /// `ebpf_handle_invalid`: on an array, an update with it erases the entry.
    Invalid,
}

/// A reference an object map holds on a stored object.
#[derive(Debug)]
enum Held {
    /// The program (it stays loaded and registered with its program-info provider while
    /// held: the registration holds it weakly).
    Program(Arc<Program>),
    /// A handle clone: the map stays alive (and counted in `live_maps`) while held.
    Map(MapHandle),
}

impl Held {
    fn id(&self) -> u32 {
        match self {
            Held::Program(p) => p.id,
            Held::Map(m) => m.map.id,
        }
    }

    /// The value's program type as `_validate_map_value_object` sees it: a program's type;
    /// a nested map's (unset reads as upstream's all-zero GUID); none for other maps.
    fn program_type(&self) -> Option<u32> {
        match self {
            Held::Program(p) => Some(p.program_type),
            Held::Map(m) => m
                .map
                .objects
                .as_ref()
                .map(|t| t.state.lock().program_type.unwrap_or(0)),
        }
    }
}

/// The object-map part of a [`Map`]: its entries under the map's lock (upstream's
/// `ebpf_core_object_map_t`).
#[derive(Debug)]
pub(crate) struct ObjectTable {
    /// Array (index keys below `max_entries`) or hash.
    array: bool,
    /// Map-in-map: the inner template's definition (`inner_template_map_definition`).
    template: Option<MapDefinition>,
    /// Map-in-map: the inner template's id (`inner_map_id`), 0 otherwise.
    pub(crate) inner_map_id: u32,
    /// Entries of object maps holding this map (handles that are not user references).
    held: AtomicUsize,
    state: SpinLock<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Set by the first value with a program type; later values must match.
    program_type: Option<u32>,
    entries: BTreeMap<u32, Held>,
}

impl MapHandle {
    /// `bpf_map_info.inner_map_id`: a map-in-map's inner template's id, else 0.
    pub fn inner_map_id(&self) -> u32 {
        self.map.objects.as_ref().map_or(0, |t| t.inner_map_id)
    }
}

/// Next kernel object id: maps and programs share one id space, as upstream's object table.
pub(crate) fn next_object_id(k: &MapContext) -> u32 {
    k.maps.next_id.fetch_add(1, Ordering::Relaxed)
}

/// Creates an object map (`_create_object_array_map`, `_create_object_hash_map`).
pub(crate) fn create(
    k: &Arc<MapContext>,
    def: MapDefinition,
    inner: ObjectRef<'_>,
) -> Result<MapHandle, EbpfError> {
    k.check()?;
    let core = k.core_running().ok_or(EbpfError::CoreNotRunning)?;
    // Values are object ids (`sizeof(ebpf_id_t)`).
    if def.max_entries == 0 || def.key_size != 4 || def.value_size != 4 {
        return Err(EbpfError::InvalidArgument);
    }
    // `_associate_inner_map`: only a map-in-map needs (and records) a template.
    let (template, inner_map_id) = if def.map_type == BPF_MAP_TYPE_PROG_ARRAY {
        (None, 0)
    } else {
        match inner {
            ObjectRef::Invalid => return Err(EbpfError::InvalidFd),
            ObjectRef::Map(m) if Arc::ptr_eq(&m.k, k) => (Some(m.map.def), m.map.id),
            _ => return Err(EbpfError::InvalidObject),
        }
    };
    // The map object with its slot array (capped: the sim keeps entries in a tree).
    let size = 256 + 8 * def.max_entries.min(1 << 14);
    let object = k.allocate(k.maps.tag, core, size, 0)?;
    let map = Arc::new(Map {
        id: next_object_id(k),
        def,
        binding: None,
        // The hash paths never reach an object map's (empty) table; one bucket keeps a
        // stray one harmless.
        buckets: Box::new([super::bucket::Bucket::default()]),
        mask: 0,
        count: AtomicU32::new(0),
        object: Some(object),
        handles: AtomicUsize::new(1),
        deleted: AtomicBool::new(false),
        objects: Some(ObjectTable {
            array: def.map_type != BPF_MAP_TYPE_HASH_OF_MAPS,
            template,
            inner_map_id,
            held: AtomicUsize::new(0),
            state: SpinLock::new(State::default()),
        }),
    });
    k.maps.live.fetch_add(1, Ordering::AcqRel);
    Ok(MapHandle { k: k.clone(), map })
}

/// `EBPF_OBJECT_REFERENCE_BY_HANDLE` with the type the map stores.
fn reference(k: &Arc<MapContext>, map: &Map, value: ObjectRef<'_>) -> Result<Held, EbpfError> {
    let programs = map.def.map_type == BPF_MAP_TYPE_PROG_ARRAY;
    match value {
        ObjectRef::Program(p) if programs => Ok(Held::Program(p.clone())),
        ObjectRef::Map(m) if !programs && Arc::ptr_eq(&m.k, k) => {
            // The handle first: a close never sees more holders than handles.
            let h = m.clone();
            if let Some(t) = &m.map.objects {
                t.held.fetch_add(1, Ordering::AcqRel);
            }
            Ok(Held::Map(h))
        }
        _ => Err(EbpfError::InvalidObject),
    }
}

/// Drops a reference that was never published (no reader can hold it).
fn unpublished(held: Held) {
    match held {
        Held::Program(p) => drop(p),
        Held::Map(h) => drop_held_map(h),
    }
}

/// Drops an object map's handle on a map: the holder count first, so the handle's close
/// sees the user references left (none ⇒ the held map releases its own entries).
fn drop_held_map(h: MapHandle) {
    if let Some(t) = &h.map.objects {
        t.held.fetch_sub(1, Ordering::AcqRel);
    }
    drop(h);
}

/// A handle of `map` closed, `remaining` left: when every one left is held by an object
/// map, no user reference remains and an object map releases its entries.
pub(crate) fn handle_closed(k: &MapContext, map: &Map, remaining: usize) {
    if let Some(t) = &map.objects
        && t.held.load(Ordering::Acquire) == remaining
    {
        release_all(k, map);
    }
}

/// `EBPF_OBJECT_RELEASE_REFERENCE` of a published entry; upstream frees the object in an
/// epoch work item. A map's handle drop schedules its own teardown that way; a program's
/// reference (and with it, its registration) goes in a work item here.
fn release(k: &MapContext, held: Held) {
    match held {
        Held::Map(h) => drop_held_map(h),
        Held::Program(p) => {
            let _epoch = k.epoch_enter();
            k.epoch_schedule_work(move || drop(p));
        }
    }
}

/// `ebpf_map_update_entry_with_handle` (caller is inside an epoch).
pub(crate) fn update_with_handle(
    k: &Arc<MapContext>,
    map: &Map,
    key: u32,
    value: ObjectRef<'_>,
    option: UpdateOption,
) -> Result<(), EbpfError> {
    k.check()?;
    let _core = k.core_frame(CORE_MAP_UPDATE);
    let Some(table) = &map.objects else {
        return Err(EbpfError::OperationNotSupported);
    };
    if table.array && (option == UpdateOption::NoExist || key >= map.def.max_entries) {
        return Err(EbpfError::InvalidArgument);
    }
    // An array's "update to erase" references nothing.
    let new = match value {
        ObjectRef::Invalid if table.array => None,
        v => Some(reference(k, map, v)?),
    };
    match store(table, map, key, new, option) {
        Ok(Some(old)) => {
            release(k, old);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err((e, new)) => {
            if let Some(h) = new {
                unpublished(h);
            }
            Err(e)
        }
    }
}

/// Under the map's lock: checks the update, swaps the entry, keeps the entry count. Returns
/// the displaced reference, or the error with the new reference for the caller to drop.
fn store(
    table: &ObjectTable,
    map: &Map,
    key: u32,
    new: Option<Held>,
    option: UpdateOption,
) -> Result<Option<Held>, (EbpfError, Option<Held>)> {
    // Read before taking this map's lock: the value may be this very map (upstream reads
    // it without the lock).
    let value_type = new.as_ref().and_then(Held::program_type);
    let mut st = table.state.lock();
    if let Err(e) = check(table, &mut st, key, new.as_ref(), value_type, option) {
        return Err((e, new));
    }
    let old = match new {
        Some(h) => st.entries.insert(key, h),
        None => st.entries.remove(&key),
    };
    let present = st.entries.contains_key(&key);
    match (old.is_some(), present) {
        (false, true) => map.count.fetch_add(1, Ordering::AcqRel),
        (true, false) => map.count.fetch_sub(1, Ordering::AcqRel),
        _ => 0,
    };
    Ok(old)
}

/// The checks of an update, in upstream's order: inner template (`_check_value_type`),
/// program type, then the hash table's option.
fn check(
    table: &ObjectTable,
    st: &mut State,
    key: u32,
    new: Option<&Held>,
    value_type: Option<u32>,
    option: UpdateOption,
) -> Result<(), EbpfError> {
    if let Some(v) = new {
        if let (Held::Map(m), Some(t)) = (v, &table.template) {
            let d = m.map.def;
            let same = d.map_type == t.map_type
                && d.key_size == t.key_size
                && d.value_size == t.value_size
                && d.max_entries == t.max_entries;
            if !same {
                return Err(EbpfError::InvalidObject);
            }
        }
        if let Some(pt) = value_type {
            match st.program_type {
                None => st.program_type = Some(pt),
                Some(cur) if cur != pt => return Err(EbpfError::InvalidFd),
                Some(_) => {}
            }
        }
    }
    let exists = st.entries.contains_key(&key);
    if !table.array {
        match (option, exists) {
            (UpdateOption::NoExist, true) => return Err(EbpfError::KeyAlreadyExists),
            (UpdateOption::Exist, false) => return Err(EbpfError::KeyNotFound),
            _ => {}
        }
    }
    Ok(())
}

/// The map's teardown (`_clean_up_object_array_map` / `_clean_up_object_hash_map`):
/// releases every reference it holds. Nothing for other maps.
pub(crate) fn release_all(k: &MapContext, map: &Map) {
    let Some(table) = &map.objects else { return };
    let entries = std::mem::take(&mut table.state.lock().entries);
    map.count.store(0, Ordering::Release);
    for (_, held) in entries {
        release(k, held);
    }
}

/// `bpf_map_create` with an inner map handle: object maps take it (a map-in-map needs it);
/// any other map refuses one, as `_create_hash_map` does.
pub(crate) fn create_with_inner(
    k: &Arc<MapContext>,
    def: MapDefinition,
    inner: ObjectRef<'_>,
) -> Result<MapHandle, EbpfError> {
    match inner {
        _ if is_object_type(def.map_type) => create(k, def, inner),
        ObjectRef::Invalid => super::create(k, def),
        _ => Err(EbpfError::InvalidArgument),
    }
}
