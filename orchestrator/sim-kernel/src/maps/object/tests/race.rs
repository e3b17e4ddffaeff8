//! Object maps under concurrent replace: readers that found an entry inside their epoch
//! keep using it while writers replace and release it.

use super::*;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

/// Rule: a program reading an inner map (`find_helper` reads the map object the entry
/// names, after the map's lock is gone) never meets a freed one while writers replace the
/// entry and close the replaced map's last handle; a teardown not deferred past the
/// reader's epoch is a 0x50 here.
#[test]
fn readers_of_a_map_of_maps_survive_concurrent_replaces() {
    let k = boot();
    let (outer, _template, [first, _]) = array_of_maps(&k);
    outer
        .update_with_handle(0, ObjectHandle::Map(&first), UpdateOption::Any)
        .unwrap();
    drop(first);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (outer, stop) = (outer.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    outer.find_helper(0)?;
                    reads += 1;
                }
                Ok::<_, EbpfError>(reads)
            })
        })
        .collect();
    let t = Instant::now();
    let mut replaced = 0;
    while t.elapsed() < Duration::from_millis(150) {
        let next = k.create_map(def(BPF_MAP_TYPE_HASH, 8)).unwrap();
        outer
            .update_with_handle(0, ObjectHandle::Map(&next), UpdateOption::Any)
            .unwrap();
        replaced += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let reads = crate::bounded::join("a reader", r).expect("a reader failed");
        assert!(reads > 0);
    }
    assert_eq!(k.bugcheck(), None);
    synchronize(&k);
    synchronize(&k);
    assert!(replaced > 10, "only {replaced} replaces ran");
    assert_eq!(k.live_maps(), 3, "outer, template and the map held at last");
    k.shutdown();
}
