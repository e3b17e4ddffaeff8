//! Object maps: references held and released (through the epoch), the type checks of an
//! update with a handle, lookups and teardown.

use super::*;
use crate::hook::{ObjectHandle, ProgramHandle};
use crate::kernel::Kernel;
use crate::maps::BPF_MAP_TYPE_HASH;
use crate::program::BPF_PROG_TYPE_SAMPLE;
use crate::rule_tests::{boot, synchronize};
use win_vocab::ServiceState;

mod race;

/// A few epoch cycles while this thread holds an epoch (synchronize would wait for it).
fn cycles_with_reader(k: &Kernel) {
    for _ in 0..3 {
        let cycles = k.epoch_stats().cycles;
        k.inner.epoch.kick();
        crate::bounded::until("an epoch cycle", || k.epoch_stats().cycles > cycles);
    }
}

fn def(map_type: u32, max_entries: u32) -> MapDefinition {
    MapDefinition::new(map_type, max_entries)
}

fn prog_array(k: &Kernel) -> MapHandle {
    k.create_map(def(BPF_MAP_TYPE_PROG_ARRAY, 4)).unwrap()
}

/// An outer map of `map_type` with a prog-array template, and an inner prog array holding
/// a program at index 0: (outer, template, inner, program).
fn outer_of_prog_arrays(
    k: &Kernel,
    map_type: u32,
    max_entries: u32,
) -> (MapHandle, MapHandle, MapHandle, ProgramHandle) {
    let template = prog_array(k);
    let outer = k
        .create_map_with_inner(def(map_type, max_entries), ObjectHandle::Map(&template))
        .unwrap();
    let inner = prog_array(k);
    let p = k.load_program().unwrap();
    inner
        .update_with_handle(0, ObjectHandle::Program(&p), UpdateOption::Any)
        .unwrap();
    (outer, template, inner, p)
}

/// An array of 8-entry hash maps, its template, and two maps that fit it.
fn array_of_maps(k: &Kernel) -> (MapHandle, MapHandle, [MapHandle; 2]) {
    let template = k.create_map(def(BPF_MAP_TYPE_HASH, 8)).unwrap();
    let outer = k
        .create_map_with_inner(
            def(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4),
            ObjectHandle::Map(&template),
        )
        .unwrap();
    assert_eq!(outer.inner_map_id(), template.id());
    let inner = [(); 2].map(|_| k.create_map(def(BPF_MAP_TYPE_HASH, 8)).unwrap());
    (outer, template, inner)
}

fn eq(a: Result<(), EbpfError>, e: EbpfError) {
    assert_eq!(a, Err(e));
}

#[test]
fn a_prog_array_keeps_a_program_whose_handles_closed_and_a_tail_call_runs_it() {
    let k = boot();
    let array = prog_array(&k);
    let p = k.load_program().unwrap();
    let id = p.id();
    array
        .update_with_handle(1, ObjectHandle::Program(&p), UpdateOption::Any)
        .unwrap();
    drop(p);
    synchronize(&k);
    assert_eq!(k.live_programs(), 1, "the array's reference keeps it");
    assert_eq!(array.find(1), Ok(id), "user-mode lookup returns the id");
    assert!(array.tail_call(1, 7).unwrap().is_some());
    assert_eq!(
        array.tail_call(2, 7),
        Ok(None),
        "an empty slot falls through"
    );
    array.delete(1).unwrap();
    synchronize(&k);
    assert_eq!(k.live_programs(), 0, "delete released the reference");
    assert_eq!(array.find(1), Err(EbpfError::ObjectNotFound));
    k.shutdown();
}

/// Rule: the provider's detach NULLs the data of a program only a prog array holds, so a
/// tail call after the extension left fails cleanly (a stale pointer would be a 0x50).
#[test]
fn a_held_program_is_detached_with_its_extension() {
    let k = boot();
    let array = prog_array(&k);
    let p = k.load_program().unwrap();
    array
        .update_with_handle(0, ObjectHandle::Program(&p), UpdateOption::Any)
        .unwrap();
    drop(p);
    assert_eq!(
        k.stop_driver("sample_ebpf_ext").unwrap(),
        ServiceState::Stopped
    );
    assert_eq!(array.tail_call(0, 1), Err(EbpfError::ExtensionFailedToLoad));
    assert_eq!(k.bugcheck(), None);
    k.shutdown();
}

#[test]
fn a_replaced_program_is_released_only_after_the_readers_epoch() {
    let k = boot();
    let array = prog_array(&k);
    let (old, new) = (k.load_program().unwrap(), k.load_program().unwrap());
    array
        .update_with_handle(0, ObjectHandle::Program(&old), UpdateOption::Any)
        .unwrap();
    drop(old);
    let reader = k.enter_epoch();
    array
        .update_with_handle(0, ObjectHandle::Program(&new), UpdateOption::Exist)
        .unwrap();
    cycles_with_reader(&k);
    assert_eq!(k.live_programs(), 2, "freed under a reader's epoch");
    drop(reader);
    synchronize(&k);
    assert_eq!(k.live_programs(), 1);
    assert_eq!(array.find(0), Ok(new.id()));
    k.shutdown();
}

#[test]
fn a_replaced_inner_map_is_torn_down_only_after_the_readers_epoch() {
    let k = boot();
    let (outer, _template, [a, b]) = array_of_maps(&k);
    outer
        .update_with_handle(0, ObjectHandle::Map(&a), UpdateOption::Any)
        .unwrap();
    let a_id = a.id();
    drop(a);
    synchronize(&k);
    assert_eq!(k.live_maps(), 4, "template, outer, a (held), b");
    assert_eq!(outer.find(0), Ok(a_id));
    assert_eq!(
        outer.find_helper(0),
        Ok(a_id),
        "a program reads the inner map"
    );
    let bytes = k.pool_stats().tag("eMap").bytes;
    let reader = k.enter_epoch();
    outer
        .update_with_handle(0, ObjectHandle::Map(&b), UpdateOption::Any)
        .unwrap();
    cycles_with_reader(&k);
    assert_eq!(k.live_maps(), 4, "torn down under a reader's epoch");
    drop(reader);
    synchronize(&k);
    assert_eq!(k.live_maps(), 3);
    assert!(
        k.pool_stats().tag("eMap").bytes < bytes,
        "a's map object freed"
    );
    k.shutdown();
}

#[test]
fn destroying_object_maps_releases_every_reference() {
    let k = boot();
    let array = prog_array(&k);
    for i in 0..2 {
        let p = k.load_program().unwrap();
        array
            .update_with_handle(i, ObjectHandle::Program(&p), UpdateOption::Any)
            .unwrap();
    }
    let (outer, template, inner) = array_of_maps(&k);
    let hash = k
        .create_map_with_inner(
            def(BPF_MAP_TYPE_HASH_OF_MAPS, 4),
            ObjectHandle::Map(&template),
        )
        .unwrap();
    for (i, m) in inner.iter().enumerate() {
        outer
            .update_with_handle(i as u32, ObjectHandle::Map(m), UpdateOption::Any)
            .unwrap();
        hash.update_with_handle(100 + i as u32, ObjectHandle::Map(m), UpdateOption::Any)
            .unwrap();
    }
    assert_eq!((array.len(), outer.len(), hash.len()), (2, 2, 2));
    // The template is not held: its definition was copied at create.
    drop((inner, template));
    synchronize(&k);
    assert_eq!((k.live_maps(), k.live_programs()), (5, 2), "all held");
    drop((array, outer, hash));
    // Outer teardown, then the inner maps' teardown it released, then their frees.
    synchronize(&k);
    synchronize(&k);
    assert_eq!((k.live_maps(), k.live_programs()), (0, 0));
    assert_eq!(k.pool_stats().tag("eMap").bytes, 0, "map objects leaked");
    k.shutdown();
}

#[test]
fn a_prog_array_refuses_wrong_objects_types_and_options() {
    let k = boot();
    let array = prog_array(&k);
    let p = k.load_program().unwrap();
    let map = k.create_map(def(BPF_MAP_TYPE_HASH, 8)).unwrap();
    let put = |i, v, o| array.update_with_handle(i, v, o);
    eq(
        put(0, ObjectHandle::Map(&map), UpdateOption::Any),
        EbpfError::InvalidObject,
    );
    eq(
        put(0, ObjectHandle::Unknown, UpdateOption::Any),
        EbpfError::InvalidObject,
    );
    eq(
        put(0, ObjectHandle::Program(&p), UpdateOption::NoExist),
        EbpfError::InvalidArgument,
    );
    eq(
        put(4, ObjectHandle::Program(&p), UpdateOption::Any),
        EbpfError::InvalidArgument,
    );
    put(0, ObjectHandle::Program(&p), UpdateOption::Any).unwrap();
    // The first program fixed the array's type; another type is refused.
    let other = k.load_program_of_type(BPF_PROG_TYPE_SAMPLE + 1).unwrap();
    eq(
        put(1, ObjectHandle::Program(&other), UpdateOption::Any),
        EbpfError::InvalidFd,
    );
    // An array of another type's programs takes it.
    let array2 = prog_array(&k);
    array2
        .update_with_handle(0, ObjectHandle::Program(&other), UpdateOption::Any)
        .unwrap();
    eq(
        array.update(0, 1, UpdateOption::Any),
        EbpfError::OperationNotSupported,
    );
    assert_eq!(array.find_helper(0), Err(EbpfError::InvalidArgument));
    eq(
        map.update_with_handle(0, ObjectHandle::Program(&p), UpdateOption::Any),
        EbpfError::OperationNotSupported,
    );
    assert_eq!(map.tail_call(0, 0), Err(EbpfError::InvalidArgument));
    // Erasing with the invalid handle releases the entry.
    put(0, ObjectHandle::Invalid, UpdateOption::Any).unwrap();
    assert_eq!(array.len(), 0);
    drop((p, other, array2));
    synchronize(&k);
    assert_eq!(k.live_programs(), 0, "a refused update leaked a reference");
    k.shutdown();
}

#[test]
fn a_map_in_map_needs_a_template_and_checks_values_against_it() {
    let k = boot();
    let aom = def(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4);
    let p = k.load_program().unwrap();
    let with = |inner| k.create_map_with_inner(aom, inner).map(|_| ());
    eq(k.create_map(aom).map(|_| ()), EbpfError::InvalidFd);
    eq(with(ObjectHandle::Program(&p)), EbpfError::InvalidObject);
    eq(with(ObjectHandle::Unknown), EbpfError::InvalidObject);
    let wide = MapDefinition {
        value_size: 8,
        ..aom
    };
    let (outer, _template, [fits, _]) = array_of_maps(&k);
    eq(
        k.create_map_with_inner(wide, ObjectHandle::Map(&fits))
            .map(|_| ()),
        EbpfError::InvalidArgument,
    );
    eq(
        k.create_map_with_inner(def(BPF_MAP_TYPE_HASH, 4), ObjectHandle::Map(&fits))
            .map(|_| ()),
        EbpfError::InvalidArgument,
    );
    // Type, key/value size and max entries must match the template.
    let bigger = k.create_map(def(BPF_MAP_TYPE_HASH, 16)).unwrap();
    let array = prog_array(&k);
    for bad in [&bigger, &array] {
        eq(
            outer.update_with_handle(0, ObjectHandle::Map(bad), UpdateOption::Any),
            EbpfError::InvalidObject,
        );
    }
    eq(
        outer.update_with_handle(0, ObjectHandle::Program(&p), UpdateOption::Any),
        EbpfError::InvalidObject,
    );
    outer
        .update_with_handle(0, ObjectHandle::Map(&fits), UpdateOption::Any)
        .unwrap();
    // A handle of another kernel names nothing here.
    let k2 = boot();
    let foreign = k2.create_map(def(BPF_MAP_TYPE_HASH, 8)).unwrap();
    eq(
        outer.update_with_handle(1, ObjectHandle::Map(&foreign), UpdateOption::Any),
        EbpfError::InvalidObject,
    );
    // Nor does a program of another kernel, in a prog array.
    let foreign_program = k2.load_program().unwrap();
    eq(
        array.update_with_handle(
            0,
            ObjectHandle::Program(&foreign_program),
            UpdateOption::Any,
        ),
        EbpfError::InvalidObject,
    );
    drop((foreign, foreign_program));
    k2.shutdown();
    k.shutdown();
}

#[test]
fn a_hash_of_maps_honours_the_update_options_and_walks_its_keys() {
    let k = boot();
    let template = k.create_map(def(BPF_MAP_TYPE_HASH, 8)).unwrap();
    // One entry's capacity, yet two keys fit: upstream's object hash table has no limit.
    let hash = k
        .create_map_with_inner(
            def(BPF_MAP_TYPE_HASH_OF_MAPS, 1),
            ObjectHandle::Map(&template),
        )
        .unwrap();
    let put = |key, o| hash.update_with_handle(key, ObjectHandle::Map(&template), o);
    eq(put(5, UpdateOption::Exist), EbpfError::KeyNotFound);
    put(5, UpdateOption::NoExist).unwrap();
    eq(put(5, UpdateOption::NoExist), EbpfError::KeyAlreadyExists);
    put(9, UpdateOption::Any).unwrap();
    eq(
        hash.update_with_handle(1, ObjectHandle::Invalid, UpdateOption::Any),
        EbpfError::InvalidObject,
    );
    assert_eq!(hash.next_key(None), Ok(5));
    assert_eq!(hash.next_key(Some(5)), Ok(9));
    assert_eq!(hash.next_key(Some(9)), Err(EbpfError::KeyNotFound));
    assert_eq!(
        hash.next_key(Some(7)),
        Ok(5),
        "an absent key restarts the walk"
    );
    // A program's lookups sum the inner map ids found; a map of maps is no tail-call target.
    let id = template.id();
    assert_eq!(
        hash.run_lookup_program(&[5, 7, 9], std::time::Duration::ZERO),
        Ok(id.wrapping_add(id))
    );
    assert_eq!(hash.tail_call(5, 0), Err(EbpfError::InvalidArgument));
    assert_eq!(hash.find(7), Err(EbpfError::ObjectNotFound));
    eq(hash.delete(7), EbpfError::ObjectNotFound);
    hash.delete(5).unwrap();
    assert_eq!((hash.len(), hash.find(9)), (1, Ok(template.id())));
    k.shutdown();
}

#[test]
fn an_object_array_walks_every_index_and_deletes_empty_slots() {
    let k = boot();
    let array = prog_array(&k);
    // Bounded: a walk that never ends must fail the test, not hang it.
    let keys: Vec<u32> =
        std::iter::successors(array.next_key(None).ok(), |p| array.next_key(Some(*p)).ok())
            .take(16)
            .collect();
    assert_eq!(keys, [0, 1, 2, 3]);
    assert_eq!(array.next_key(Some(u32::MAX)), Err(EbpfError::KeyNotFound));
    array.delete(2).unwrap();
    eq(array.delete(4), EbpfError::ObjectNotFound);
    k.shutdown();
}

/// Upstream quirk kept: a nested map's program type counts even when unset (all-zero
/// GUID), so an array of prog arrays that took an empty one refuses a typed one.
#[test]
fn an_array_of_prog_arrays_checks_the_inner_arrays_program_type() {
    let k = boot();
    let template = prog_array(&k);
    let outer = k
        .create_map_with_inner(
            def(BPF_MAP_TYPE_ARRAY_OF_MAPS, 2),
            ObjectHandle::Map(&template),
        )
        .unwrap();
    let (empty, typed) = (prog_array(&k), prog_array(&k));
    let p = k.load_program().unwrap();
    typed
        .update_with_handle(0, ObjectHandle::Program(&p), UpdateOption::Any)
        .unwrap();
    outer
        .update_with_handle(0, ObjectHandle::Map(&empty), UpdateOption::Any)
        .unwrap();
    eq(
        outer.update_with_handle(1, ObjectHandle::Map(&typed), UpdateOption::Any),
        EbpfError::InvalidFd,
    );
    k.shutdown();
}

/// Rule (`_ebpf_map_object_map_zero_user_reference`): once only object maps hold an object
/// map, it releases its entries, so a map of maps stored in itself is not leaked.
#[test]
fn a_map_of_maps_stored_in_itself_is_torn_down_when_its_handles_close() {
    let k = boot();
    let hash = k.create_map(def(BPF_MAP_TYPE_HASH, 8)).unwrap();
    let aom = def(BPF_MAP_TYPE_ARRAY_OF_MAPS, 2);
    let template = k
        .create_map_with_inner(aom, ObjectHandle::Map(&hash))
        .unwrap();
    let me = k
        .create_map_with_inner(aom, ObjectHandle::Map(&template))
        .unwrap();
    me.update_with_handle(0, ObjectHandle::Map(&me), UpdateOption::Any)
        .unwrap();
    assert_eq!(me.find(0), Ok(me.id()));
    let pinned = me.clone();
    k.pin_map("me", &pinned).unwrap();
    drop((me, pinned));
    synchronize(&k);
    assert_eq!(k.live_maps(), 3, "a pin is a user reference: entries kept");
    assert_eq!(k.open_pinned("me").unwrap().len(), 1);
    k.unpin_map("me").unwrap();
    drop((hash, template));
    synchronize(&k);
    synchronize(&k);
    assert_eq!(k.live_maps(), 0, "the cycle kept the map alive");
    assert_eq!(k.pool_stats().tag("eMap").bytes, 0);
    k.shutdown();
}

/// An inner prog array whose own handles closed releases its programs, though the outer
/// map still holds (and keeps alive) the array itself.
#[test]
fn a_held_prog_array_releases_its_programs_when_its_handles_close() {
    let k = boot();
    let (outer, template, inner, p) = outer_of_prog_arrays(&k, BPF_MAP_TYPE_ARRAY_OF_MAPS, 2);
    outer
        .update_with_handle(0, ObjectHandle::Map(&inner), UpdateOption::Any)
        .unwrap();
    drop((p, inner, template));
    synchronize(&k);
    assert_eq!(k.live_programs(), 0);
    assert_eq!(k.live_maps(), 2, "outer and the inner array it holds");
    outer.delete(0).unwrap();
    synchronize(&k);
    assert_eq!(k.live_maps(), 1);
    k.shutdown();
}

/// An object map's object is charged to ebpfcore at its size: 256 bytes plus an 8-byte slot
/// per entry (capped at 16 384 slots).
#[test]
fn an_object_map_is_charged_its_slot_array() {
    let k = boot();
    let bytes = |k: &Kernel| k.pool_stats().tag("eMap").bytes;
    let before = bytes(&k);
    let small = k.create_map(def(BPF_MAP_TYPE_PROG_ARRAY, 10)).unwrap();
    assert_eq!(bytes(&k) - before, 256 + 8 * 10);
    let huge = k.create_map(def(BPF_MAP_TYPE_PROG_ARRAY, 1 << 20)).unwrap();
    assert_eq!(bytes(&k) - before, 256 + 8 * 10 + 256 + 8 * (1 << 14));
    drop((small, huge));
    k.shutdown();
}

/// An object map's holder count follows every reference an outer map takes and gives back
/// (a refused update, a delete): once only the outer map holds the inner one, closing the
/// inner one's user handle makes it release its own entries.
#[test]
fn the_holder_count_follows_refused_and_deleted_references() {
    let k = boot();
    let (outer, template, inner, p) = outer_of_prog_arrays(&k, BPF_MAP_TYPE_HASH_OF_MAPS, 4);
    let put = |key, o| outer.update_with_handle(key, ObjectHandle::Map(&inner), o);
    put(1, UpdateOption::NoExist).unwrap();
    eq(put(1, UpdateOption::NoExist), EbpfError::KeyAlreadyExists);
    put(2, UpdateOption::Any).unwrap();
    outer.delete(2).unwrap();
    let id = p.id();
    drop(p);
    synchronize(&k);
    assert_eq!(
        inner.find(0),
        Ok(id),
        "a user handle still holds the inner array: its program stays"
    );
    assert_eq!(k.live_programs(), 1);
    drop((template, inner));
    synchronize(&k);
    assert_eq!(
        k.live_programs(),
        0,
        "the inner prog array released its program"
    );
    drop(outer);
    k.shutdown();
}

/// An object map refuses a zero capacity and keys or values other than 4 bytes, and an
/// inner-map template of another kernel.
#[test]
fn an_object_map_checks_its_definition_and_its_templates_kernel() {
    let k = boot();
    let bad = |key_size, value_size, max_entries| MapDefinition {
        map_type: BPF_MAP_TYPE_PROG_ARRAY,
        key_size,
        value_size,
        max_entries,
    };
    for d in [bad(4, 4, 0), bad(8, 4, 4), bad(4, 8, 4)] {
        assert_eq!(
            k.create_map(d).unwrap_err(),
            EbpfError::InvalidArgument,
            "{d:?}"
        );
    }
    let k2 = boot();
    let foreign = k2.create_map(def(BPF_MAP_TYPE_HASH, 8)).unwrap();
    let refused = k.create_map_with_inner(
        def(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4),
        ObjectHandle::Map(&foreign),
    );
    assert_eq!(refused.unwrap_err(), EbpfError::InvalidObject);
    // Any other map type takes no template: "no inner map" creates it as usual.
    let plain = k.create_map_with_inner(def(BPF_MAP_TYPE_HASH, 8), ObjectHandle::Invalid);
    assert_eq!(plain.map(|m| m.definition()), Ok(def(BPF_MAP_TYPE_HASH, 8)));
    drop(foreign);
    k2.shutdown();
    k.shutdown();
}

/// A program's lookup in a map of maps reads the inner map it found (under the caller's
/// epoch), so an inner map torn down too early is a 0x50 there, where upstream's would
/// fault; a user-mode lookup returns the id without touching the inner map. The early
/// teardown is simulated by freeing the inner map's object behind the map's back.
#[test]
fn a_programs_lookup_reads_the_inner_map_a_user_lookup_does_not() {
    let k = boot();
    let (outer, _template, [inner, _]) = array_of_maps(&k);
    outer
        .update_with_handle(0, ObjectHandle::Map(&inner), UpdateOption::Any)
        .unwrap();
    let object = inner.map.object.expect("a map object");
    k.inner.maps_ctx.free(object).unwrap();
    assert_eq!(outer.find(0), Ok(inner.id()), "user mode reads only the id");
    assert!(k.bugcheck().is_none());
    assert!(outer.find_helper(0).is_err());
    let bugcheck = k
        .bugcheck()
        .expect("the program's read of a freed inner map");
    assert_eq!(bugcheck.code, 0x50, "{bugcheck:?}");
    k.shutdown();
}
