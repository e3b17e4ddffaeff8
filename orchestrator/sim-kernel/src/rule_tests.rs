//! Rule tests that need the kernel's internals: rundown references per map, release only
//! after propose/commit, and the double-free checks of `epoch_free` and the pool.

use crate::config::KernelConfig;
use crate::image::{DriverImage, ImageKind, Signing};
use crate::kernel::Kernel;
use crate::maps::{BPF_MAP_TYPE_SAMPLE_HASH_MAP, MapDefinition, UpdateOption};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A kernel with ebpfcore and the sample extension running (shared by the crate's unit tests).
pub(crate) fn boot() -> Kernel {
    let k = Kernel::boot(KernelConfig::default()).unwrap();
    let img = |image| DriverImage {
        image,
        signature: Signing::Test,
        faults: vec![],
    };
    k.load_driver("ebpfcore", &img(ImageKind::EbpfCore))
        .unwrap();
    k.load_driver("sample_ebpf_ext", &img(ImageKind::SampleExt))
        .unwrap();
    k
}

/// `ebpf_epoch_synchronize`, failing the test (not hanging it) if it never returns (shared by
/// the crate's unit tests).
pub(crate) fn synchronize(k: &Kernel) {
    let k = k.clone();
    crate::bounded::within("synchronize", move || k.synchronize()).unwrap();
}

#[test]
fn every_map_holds_one_rundown_reference_for_its_lifetime() {
    let k = boot();
    let reg = k.inner.nmr.get(BPF_MAP_TYPE_SAMPLE_HASH_MAP).unwrap();
    assert_eq!(reg.rundown.refs(), 0);
    let maps: Vec<_> = (0..3)
        .map(|_| {
            k.create_map(MapDefinition::new(BPF_MAP_TYPE_SAMPLE_HASH_MAP, 8))
                .unwrap()
        })
        .collect();
    assert_eq!(reg.rundown.refs(), 3);
    let extra = maps[0].clone();
    assert_eq!(
        reg.rundown.refs(),
        3,
        "handles share the map's single reference"
    );
    drop(maps);
    // The teardown is an epoch work item: done once an epoch has passed.
    synchronize(&k);
    assert_eq!(reg.rundown.refs(), 1);
    drop(extra);
    synchronize(&k);
    assert_eq!(reg.rundown.refs(), 0);
    k.shutdown();
}

/// Rule (upstream's epoch work items): a map's teardown, which releases the rundown
/// reference on its provider, runs only after every thread inside an epoch when the last
/// handle closed has left; one stuck inside holds the provider.
#[test]
fn a_map_teardown_waits_for_the_readers_inside_an_epoch() {
    let k = boot();
    let reg = k.inner.nmr.get(BPF_MAP_TYPE_SAMPLE_HASH_MAP).unwrap();
    let map = k
        .create_map(MapDefinition::new(BPF_MAP_TYPE_SAMPLE_HASH_MAP, 8))
        .unwrap();
    let reader = k.enter_epoch();
    drop(map);
    for _ in 0..3 {
        synchronize_with_reader(&k);
    }
    assert_eq!(reg.rundown.refs(), 1, "torn down under a reader");
    assert_eq!(k.live_maps(), 1);
    drop(reader);
    synchronize(&k);
    assert_eq!(
        reg.rundown.refs(),
        0,
        "the reader left: the teardown must run"
    );
    assert_eq!(k.live_maps(), 0);
    k.shutdown();
}

/// A few epoch cycles while this thread holds an epoch (synchronize would wait for it).
fn synchronize_with_reader(k: &Kernel) {
    let cycles = k.epoch_stats().cycles;
    k.inner.epoch.kick();
    crate::bounded::until("an epoch cycle", || k.epoch_stats().cycles > cycles);
}

#[test]
fn synchronize_returns_only_after_the_frees_it_waits_for() {
    let k = boot();
    let m = k
        .create_map(MapDefinition::new(BPF_MAP_TYPE_SAMPLE_HASH_MAP, 64))
        .unwrap();
    for key in 0..64 {
        m.update(key, key, UpdateOption::Any).unwrap();
    }
    synchronize(&k);
    // The timer thread is preempted between publishing the released epoch and freeing.
    k.inner.release_delay_us.store(30_000, Ordering::Relaxed);
    for key in 0..64 {
        m.update(key, key + 1, UpdateOption::Any).unwrap(); // retires the old entry
    }
    assert!(k.inner.epoch.stats().pending_items > 0);
    synchronize(&k);
    assert_eq!(
        k.inner.epoch.stats().pending_items,
        0,
        "synchronize returned while retired entries were still allocated (Verifier would \
         call them leaks)"
    );
    k.inner.release_delay_us.store(0, Ordering::Relaxed);
    k.shutdown();
}

#[test]
fn memory_is_released_only_after_every_older_reader_left_and_a_commit_ran() {
    let k = boot();
    let m = k
        .create_map(MapDefinition::new(BPF_MAP_TYPE_SAMPLE_HASH_MAP, 8))
        .unwrap();
    m.update(1, 1, UpdateOption::Any).unwrap();
    synchronize(&k);
    let inner = &k.inner;
    let reader = inner.epoch_enter();
    let cycles = inner.epoch.stats().cycles;
    m.update(1, 2, UpdateOption::Any).unwrap(); // retires the old entry
    let pending = inner.epoch.stats().pending_bytes;
    assert!(pending > 0);
    // Many timer cycles run, none may release it while the reader is inside.
    let t = Instant::now();
    while inner.epoch.stats().cycles < cycles + 5 && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(
        inner.epoch.stats().cycles >= cycles + 5,
        "the 1 ms timer kept running"
    );
    assert_eq!(inner.epoch.stats().pending_bytes, pending);
    let released_epoch = inner.epoch.stats().released;
    let exit = Instant::now();
    drop(reader);
    // The exit arms the timer; the next propose/commit releases it.
    while inner.epoch.stats().pending_bytes > 0 {
        assert!(exit.elapsed() < Duration::from_secs(1), "never released");
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(inner.epoch.stats().released > released_epoch);
    drop(m);
    k.shutdown();
}

#[test]
fn epoch_free_twice_fails_fast_with_0x139() {
    let k = boot();
    let inner = &k.inner;
    let tag = inner.pool.tag(*b"Test");
    let h = inner.epoch_allocate(tag, 32, 0).unwrap();
    inner.epoch_free(h).unwrap();
    let e = inner.epoch_free(h).unwrap_err();
    assert_eq!(e, crate::EbpfError::Halted(Some(0x139)));
    let bc = k.bugcheck().unwrap();
    assert_eq!(bc.params[0], 50, "FAST_FAIL_HEAP_METADATA_CORRUPTION");
    assert_eq!(bc.params[3], h.va());
    k.shutdown();
}

#[test]
fn freeing_freed_pool_is_bad_pool_caller() {
    let k = boot();
    let inner = &k.inner;
    let tag = inner.pool.tag(*b"Test");
    let h = inner.allocate(tag, crate::pool::OwnerId(0), 32, 0).unwrap();
    inner.free(h).unwrap();
    assert!(inner.free(h).is_err());
    let bc = k.bugcheck().unwrap();
    assert_eq!((bc.code, bc.params[0], bc.params[3]), (0xC2, 7, h.va()));
    assert_eq!(bc.params[2], u64::from(u32::from_le_bytes(*b"Test")));
    k.shutdown();
}

#[test]
fn reading_freed_pool_is_0x50_attributed_to_the_running_driver() {
    let k = boot();
    let inner = &k.inner;
    let tag = inner.pool.tag(*b"Test");
    let h = inner.allocate(tag, crate::pool::OwnerId(0), 32, 0).unwrap();
    inner.free(h).unwrap();
    let module = crate::modules::ModuleId(2);
    let _f = crate::modules::push_frame(module, "_sample_map_find_entry");
    assert!(inner.read(h).is_err());
    let bc = k.bugcheck().unwrap();
    assert_eq!((bc.code, bc.params[0], bc.params[1]), (0x50, h.va(), 0));
    assert_eq!(
        (bc.module.as_str(), bc.function.as_str()),
        ("sample_ebpf_ext.sys", "_sample_map_find_entry")
    );
    assert_eq!(bc.params[2], bc.rip);
    k.shutdown();
}
