//! One bucket of the core's hash table (after `ebpf_hash_table.c`): lookups read the
//! published snapshot without the bucket lock; writers take the bucket's spin lock, build a
//! new snapshot (copy on write) and publish it in one store.
//!
//! Readers must be inside an epoch (every caller in `ops` is: the API entry points and a
//! program invocation enter one). The snapshot itself is Rust memory that arc-swap keeps
//! alive while a reader walks it; what it points to, the stored values (a built-in map's
//! `eHsh` entry, a provider's object), is pool memory a writer hands to `epoch_free` once it
//! has unpublished it. Only the reader's epoch keeps that alive, so a value found here is
//! valid until the caller's epoch ends, never longer. The snapshot is not pool memory, so a
//! lookup makes no pool call at all.

use crate::irql::{SpinGuard, SpinLock};
use arc_swap::ArcSwapOption;
use std::sync::Arc;

/// Entries a snapshot keeps inline (one allocation per snapshot, one pointer for a reader
/// to follow): the table has at least as many buckets as entries, so most hold one or two.
const INLINE: usize = 4;

/// A snapshot's (key, stored value) pairs; immutable once published.
#[derive(Debug, Clone)]
enum Entries {
    Inline(usize, [(u32, u64); INLINE]),
    Heap(Vec<(u32, u64)>),
}

impl Entries {
    fn as_slice(&self) -> &[(u32, u64)] {
        match self {
            Entries::Inline(n, a) => &a[..*n],
            Entries::Heap(v) => v,
        }
    }

    fn as_mut_slice(&mut self) -> &mut [(u32, u64)] {
        match self {
            Entries::Inline(n, a) => &mut a[..*n],
            Entries::Heap(v) => v,
        }
    }

    fn push(&mut self, e: (u32, u64)) {
        match self {
            Entries::Inline(n, a) if *n < INLINE => {
                a[*n] = e;
                *n += 1;
            }
            Entries::Inline(n, a) => {
                let mut v = a[..*n].to_vec();
                v.push(e);
                *self = Entries::Heap(v);
            }
            Entries::Heap(v) => v.push(e),
        }
    }

    /// Removes entry `i` (the last takes its place); None if there is none.
    fn swap_remove(&mut self, i: usize) -> Option<(u32, u64)> {
        match self {
            Entries::Inline(n, a) if i < *n => {
                let e = a[i];
                a[i] = a[*n - 1];
                *n -= 1;
                Some(e)
            }
            Entries::Inline(..) => None,
            Entries::Heap(v) => (i < v.len()).then(|| v.swap_remove(i)),
        }
    }
}

const EMPTY: Entries = Entries::Inline(0, [(0, 0); INLINE]);

/// A published bucket.
type Snapshot = Arc<Entries>;

/// A hash bucket: the published snapshot (None while empty) and the writers' lock.
#[derive(Debug)]
pub(crate) struct Bucket {
    published: ArcSwapOption<Entries>,
    /// Serialises writers and holds their copy of the current snapshot (so a writer need not
    /// load it through arc-swap). A spin lock: its holder, and a PRE_FREE delete callback
    /// under it, runs at DISPATCH_LEVEL.
    lock: SpinLock<Option<Snapshot>>,
}

impl Default for Bucket {
    fn default() -> Self {
        Bucket {
            published: ArcSwapOption::empty(),
            lock: SpinLock::new(None),
        }
    }
}

impl Bucket {
    /// The stored value of `key`, read without the lock (caller inside an epoch).
    #[inline]
    pub(crate) fn find(&self, key: u32) -> Option<u64> {
        let snap = self.published.load();
        snap.as_deref()?
            .as_slice()
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
    }

    /// The first key of the published snapshot.
    pub(crate) fn first_key(&self) -> Option<u32> {
        let snap = self.published.load();
        snap.as_deref()?.as_slice().first().map(|(k, _)| *k)
    }

    /// Where `prev` is in the published snapshot: None if absent, else the key after it in
    /// this bucket (None at the bucket's end).
    pub(crate) fn key_after(&self, prev: u32) -> Option<Option<u32>> {
        let snap = self.published.load();
        let entries = snap.as_deref()?.as_slice();
        let i = entries.iter().position(|(k, _)| *k == prev)?;
        Some(entries.get(i + 1).map(|(k, _)| *k))
    }

    /// Takes the writers' lock (raising to DISPATCH_LEVEL).
    pub(crate) fn lock(&self) -> BucketWriter<'_> {
        BucketWriter {
            bucket: self,
            current: self.lock.lock(),
        }
    }
}

/// The holder of a bucket's lock. Each change publishes a new snapshot; readers that loaded
/// the old one keep reading it, so they see the old value or the new one, never a mix.
#[derive(Debug)]
pub(crate) struct BucketWriter<'a> {
    bucket: &'a Bucket,
    /// The lock's data: under the lock no other writer can publish, so this is the
    /// published snapshot.
    current: SpinGuard<'a, Option<Snapshot>>,
}

impl BucketWriter<'_> {
    /// The current entries.
    pub(crate) fn entries(&self) -> &[(u32, u64)] {
        self.current.as_deref().map_or(&[], Entries::as_slice)
    }

    /// The index of `key`, if present.
    pub(crate) fn position(&self, key: u32) -> Option<usize> {
        self.entries().iter().position(|(k, _)| *k == key)
    }

    fn copy(&self) -> Entries {
        self.current.as_deref().cloned().unwrap_or(EMPTY)
    }

    /// Publishes a copy whose entry `i` holds `stored`; returns the displaced value.
    /// `None` if there is no entry `i`.
    pub(crate) fn replace(&mut self, i: usize, stored: u64) -> Option<u64> {
        let mut next = self.copy();
        let old = std::mem::replace(&mut next.as_mut_slice().get_mut(i)?.1, stored);
        self.publish(next);
        Some(old)
    }

    /// Publishes a copy with (`key`, `stored`) added.
    pub(crate) fn insert(&mut self, key: u32, stored: u64) {
        let mut next = self.copy();
        next.push((key, stored));
        self.publish(next);
    }

    /// Publishes a copy without entry `i`; returns its stored value (None if absent).
    pub(crate) fn remove(&mut self, i: usize) -> Option<u64> {
        let mut next = self.copy();
        let (_, old) = next.swap_remove(i)?;
        self.publish(next);
        Some(old)
    }

    /// Publishes the empty bucket; returns every entry it held (map teardown).
    pub(crate) fn take_all(&mut self) -> Vec<(u32, u64)> {
        let all = self.entries().to_vec();
        self.publish(EMPTY);
        all
    }

    fn publish(&mut self, next: Entries) {
        let next = (!next.as_slice().is_empty()).then(|| Arc::new(next));
        self.bucket.published.store(next.clone());
        *self.current = next;
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::base::KernelBase;
    use crate::config::KernelConfig;
    use crate::irql;
    use crate::pool::PoolHandle;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A snapshot keeps up to four entries inline (one allocation for a reader to follow)
    /// and spills to the heap at the fifth; removal takes exactly the entry asked for.
    #[test]
    fn entries_stay_inline_up_to_four_and_remove_exactly_one() {
        let mut e = EMPTY;
        for k in 0..INLINE as u32 {
            e.push((k, u64::from(k) + 10));
        }
        assert!(matches!(e, Entries::Inline(4, _)), "{e:?}");
        assert_eq!(e.swap_remove(INLINE), None, "no entry past the end");
        assert_eq!(e.swap_remove(1), Some((1, 11)));
        assert_eq!(e.as_slice(), &[(0, 10), (3, 13), (2, 12)]);
        e.push((7, 17));
        e.push((8, 18));
        assert!(matches!(e, Entries::Heap(ref v) if v.len() == 5), "{e:?}");
        assert_eq!(e.swap_remove(5), None);
        assert_eq!(e.swap_remove(0), Some((0, 10)));
        assert_eq!(e.as_slice().len(), 4);
    }

    /// Rule: a writer holds the lock at DISPATCH_LEVEL; a reader takes no lock and stays at
    /// its own level.
    #[test]
    fn writers_run_at_dispatch_readers_take_no_lock() {
        let b = Bucket::default();
        {
            let mut w = b.lock();
            assert_eq!(irql::current(), irql::DISPATCH_LEVEL);
            w.insert(1, 10);
            // A reader (another CPU) sees the published insert while the writer holds the
            // lock: it does not wait for it.
            let seen = std::thread::scope(|s| s.spawn(|| b.find(1)).join().unwrap());
            assert_eq!(seen, Some(10));
        }
        assert_eq!(irql::current(), irql::PASSIVE_LEVEL);
        assert_eq!(b.find(1), Some(10));
        assert_eq!(b.find(2), None);
    }

    /// Rule: replace, insert and remove each publish the whole new bucket; the writer's view
    /// and the readers' agree after each step.
    #[test]
    fn each_change_publishes_a_new_snapshot() {
        let b = Bucket::default();
        let mut w = b.lock();
        w.insert(1, 10);
        w.insert(2, 20);
        assert_eq!(w.replace(0, 11), Some(10));
        assert_eq!(w.replace(5, 0), None);
        assert_eq!((b.find(1), b.find(2)), (Some(11), Some(20)));
        assert_eq!(w.remove(0), Some(11));
        assert_eq!(w.remove(3), None);
        assert_eq!((b.find(1), b.find(2)), (None, Some(20)));
        assert_eq!(b.key_after(2), Some(None));
        assert_eq!(b.key_after(1), None);
        assert_eq!(w.take_all(), vec![(2, 20)]);
        assert_eq!(b.first_key(), None);
        assert!(w.entries().is_empty());
    }

    /// Rule: a bucket holding more keys than fit inline keeps every one of them findable
    /// through inserts and removals.
    #[test]
    fn a_crowded_bucket_keeps_every_key() {
        let b = Bucket::default();
        let mut w = b.lock();
        for key in 0..(INLINE as u32 + 3) {
            w.insert(key, u64::from(key) + 100);
        }
        for key in 0..(INLINE as u32 + 3) {
            assert_eq!(b.find(key), Some(u64::from(key) + 100), "key {key}");
        }
        let i = w.position(1).unwrap();
        assert_eq!(w.remove(i), Some(101));
        let i = w.position(5).unwrap();
        assert_eq!(w.replace(i, 7), Some(105));
        assert_eq!(
            (b.find(1), b.find(5), b.find(6)),
            (None, Some(7), Some(106))
        );
        assert_eq!(w.entries().len(), INLINE + 2);
    }

    /// Rule: concurrent readers see the old value or the new one, never a torn or a removed
    /// one. Two keys share the bucket; a writer replaces one and removes and re-inserts the
    /// other, always with values whose halves match.
    #[test]
    fn concurrent_readers_see_old_or_new_never_torn_or_removed() {
        let b = Bucket::default();
        let pair = |n: u32| (u64::from(n) << 32) | u64::from(n);
        {
            let mut w = b.lock();
            w.insert(7, pair(0));
            w.insert(8, pair(0));
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut last = 0u32;
                        let mut reads = 0u64;
                        while !done.load(Ordering::Acquire) || reads < 1000 {
                            let v = b.find(7).expect("key 7 is never removed");
                            let (hi, lo) = ((v >> 32) as u32, v as u32);
                            assert_eq!(hi, lo, "torn value {v:#x}");
                            assert!(lo >= last, "went back from {last} to {lo}");
                            last = lo;
                            reads += 1;
                        }
                    })
                })
                .collect();
            // Readers stop when the writer is done, also when it panics (else they would
            // spin for ever and hang the suite instead of failing it).
            struct Done<'a>(&'a AtomicBool);
            impl Drop for Done<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::Release);
                }
            }
            let _done = Done(&done);
            for n in 1..20_000u32 {
                let mut w = b.lock();
                let i = w.position(7).unwrap();
                w.replace(i, pair(n));
                let j = w.position(8).unwrap();
                w.remove(j);
                w.insert(8, pair(n));
            }
            drop(_done);
            for r in readers {
                r.join().unwrap();
            }
        });
        assert_eq!(b.find(7), Some(pair(19_999)));
    }

    /// Rule: a value replaced while a reader is inside an epoch stays readable until the
    /// reader leaves; after that the epoch releases it. The writer retires the displaced
    /// value through `epoch_free`, as `ops::update` does.
    #[test]
    fn a_replaced_value_stays_readable_until_the_reader_leaves() {
        // No timer thread: the test's own cycles are the only propose/commit passes.
        let base = &KernelBase::new(KernelConfig::default());
        let tag = base.pool.tag(*b"tBkt");
        let owner = crate::pool::OwnerId(0);
        let old = base.allocate(tag, owner, 64, 41).unwrap();
        let new = base.allocate(tag, owner, 64, 42).unwrap();
        let b = &Bucket::default();
        b.lock().insert(3, old.raw());

        let (found_tx, found_rx) = std::sync::mpsc::channel();
        let (leave_tx, leave_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let reader = s.spawn(move || {
                crate::epoch::bind_cpu(1);
                let _epoch = base.epoch_enter();
                let stored = b.find(3).unwrap();
                found_tx.send(()).unwrap();
                // Bounded: if the test thread fails first, the reader must not hang the scope.
                leave_rx
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .expect("the test thread never let the reader leave");
                // Replaced and retired meanwhile: still readable inside the epoch.
                base.read(PoolHandle::from_raw(stored)).unwrap()
            });
            found_rx.recv().unwrap();
            {
                crate::epoch::bind_cpu(0);
                let _epoch = base.epoch_enter();
                let mut w = b.lock();
                let displaced = w.replace(0, new.raw()).unwrap();
                drop(w);
                base.epoch_free(PoolHandle::from_raw(displaced)).unwrap();
            }
            // Several propose/commit cycles pass; the reader still holds its epoch.
            for _ in 0..3 {
                let (_, released) = base.epoch.core.cycle();
                assert!(released.is_empty(), "released under a reader");
            }
            assert_eq!(b.find(3), Some(new.raw()));
            leave_tx.send(()).unwrap();
            assert_eq!(reader.join().unwrap(), 41);
        });
        // The reader left: the next cycle releases the displaced value.
        let (_, released) = base.epoch.core.cycle();
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].handle, old);
    }
}
