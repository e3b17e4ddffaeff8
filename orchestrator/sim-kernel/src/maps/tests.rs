//! Unit tests of the maps layer: creation checks and charges, entries back to the pool,
//! pins at shutdown, bucket spread.
use super::*;
use crate::maps::BPF_MAP_TYPE_HASH;

/// Creation: the core itself refuses a zero capacity or a key other than 4 bytes; a
/// value size the provider refuses is the provider's `EBPF_INVALID_ARGUMENT`, not a load
/// failure; the map object (256 bytes + 16 per bucket) is charged to ebpfcore.
#[test]
fn creation_checks_its_definition_and_charges_the_map_object() {
    let k = crate::rule_tests::boot();
    let def = |map_type, key_size, value_size, max_entries| MapDefinition {
        map_type,
        key_size,
        value_size,
        max_entries,
    };
    for bad in [
        def(BPF_MAP_TYPE_HASH, 4, 4, 0),
        def(BPF_MAP_TYPE_HASH, 8, 4, 8),
    ] {
        assert_eq!(k.create_map(bad).unwrap_err(), EbpfError::InvalidArgument);
    }
    let refused = def(BPF_MAP_TYPE_SAMPLE_HASH_MAP, 4, 8, 8);
    assert_eq!(
        k.create_map(refused).unwrap_err(),
        EbpfError::InvalidArgument,
        "the provider's own refusal"
    );
    assert_eq!(k.pool_stats().tag("eMap").bytes, 0);
    // 100 entries: 128 buckets.
    let m = k
        .create_map(MapDefinition::new(BPF_MAP_TYPE_HASH, 100))
        .unwrap();
    assert_eq!(k.pool_stats().tag("eMap").bytes, 256 + 128 * 16);
    assert!(m.is_empty());
    m.update(1, 1, UpdateOption::Any).unwrap();
    assert!(!m.is_empty());
    // A program's lookups: the values found, summed; an absent key adds nothing.
    m.update(2, 40, UpdateOption::Any).unwrap();
    let sum = m.run_lookup_program(&[1, 2, 9], Duration::ZERO);
    assert_eq!(sum, Ok(41));
    drop(m);
    k.shutdown();
}

/// A built-in hash map's entries are ebpfcore's epoch allocations (`eHsh`): a delete
/// and the map's teardown hand them back through the epoch.
#[test]
fn deleted_and_torn_down_entries_go_back_to_the_pool() {
    let k = crate::rule_tests::boot();
    let entries = |k: &crate::Kernel| k.pool_stats().tag("eHsh");
    let m = k
        .create_map(MapDefinition::new(BPF_MAP_TYPE_HASH, 8))
        .unwrap();
    for key in [1, 2, 3] {
        m.update(key, key, UpdateOption::Any).unwrap();
    }
    assert_eq!(entries(&k).allocs, 3);
    m.delete(2).unwrap();
    crate::rule_tests::synchronize(&k);
    assert_eq!(entries(&k).allocs, 2, "the deleted entry is freed");
    drop(m);
    crate::rule_tests::synchronize(&k);
    assert_eq!(entries(&k).allocs, 0, "the teardown frees the rest");
    k.shutdown();
}

/// A shutdown drops the pins (they hold the maps, and through them the kernel's map
/// context, alive).
#[test]
fn shutdown_drops_the_pins() {
    let k = crate::rule_tests::boot();
    let m = k
        .create_map(MapDefinition::new(BPF_MAP_TYPE_HASH, 8))
        .unwrap();
    k.pin_map("pinned", &m).unwrap();
    drop(m);
    assert_eq!(k.pinned_maps().len(), 1);
    k.shutdown();
    assert!(k.pinned_maps().is_empty());
}

/// Rule (hash-bucket locks, no per-key serialisation): keys spread over the buckets, so
/// updaters of different keys mostly take different locks.
#[test]
fn keys_spread_over_the_bucket_locks() {
    let nb = 64;
    let map = Map {
        id: 1,
        def: MapDefinition::new(BPF_MAP_TYPE_HASH, 64),
        binding: None,
        buckets: (0..nb).map(|_| Bucket::default()).collect(),
        mask: nb - 1,
        count: AtomicU32::new(0),
        object: None,
        handles: AtomicUsize::new(1),
        deleted: AtomicBool::new(false),
        objects: None,
    };
    let used: std::collections::HashSet<*const Bucket> = (0..64u32)
        .map(|k| std::ptr::from_ref(map.bucket(k)))
        .collect();
    assert!(
        used.len() >= nb / 4,
        "64 keys share {} of {nb} bucket locks",
        used.len()
    );
}

/// `bpf_map_get_next_key` walks every key exactly once, then says there is no next one,
/// across buckets and within a crowded one.
#[test]
fn next_key_walks_every_key_once() {
    let k = crate::rule_tests::boot();
    // 40 keys over 64 buckets: some share one.
    let m = k
        .create_map(MapDefinition::new(BPF_MAP_TYPE_HASH, 40))
        .unwrap();
    let keys: Vec<u32> = (0..40).map(|i| i * 7 + 3).collect();
    for key in &keys {
        m.update(*key, 1, UpdateOption::Any).unwrap();
    }
    let mut seen = Vec::new();
    let mut prev = None;
    while let Ok(key) = m.next_key(prev) {
        assert!(seen.len() < keys.len(), "the walk repeats: {seen:?}");
        seen.push(key);
        prev = Some(key);
    }
    assert_eq!(m.next_key(prev), Err(EbpfError::KeyNotFound));
    seen.sort_unstable();
    assert_eq!(seen, keys);
    drop(m);
    k.shutdown();
}
