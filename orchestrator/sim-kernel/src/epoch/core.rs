//! The propose/commit core of epoch-based reclamation (after `ebpf_epoch.c`), generic over
//! the retired item so loom can model-check it without the pool.
//!
//! Per CPU: the epochs of threads inside an epoch and a free list of retired items stamped
//! with their freed epoch. One published epoch. A computation (the 1 ms timer's DPC or
//! `synchronize`) *proposes*: it advances the published epoch, then visits every CPU, making
//! the new epoch that CPU's current one and lowering the proposal to the oldest epoch still
//! active there; it then *commits* `released = proposal - 1` on every CPU, releasing the
//! items freed at or before it.
//!
//! Enter and retire read the published epoch under their CPU's lock, as upstream does since
//! PR #4924 (enter reads the published epoch; retirement stamps `max(published, local)`,
//! which is the published one here because a CPU's epoch never runs ahead of it). Before
//! that PR upstream stamped with the CPU's own `current_epoch`, which the proposal updates
//! CPU by CPU (one DPC hop each); a reader entering on an already-visited CPU (epoch N+1)
//! could still see an item a not-yet-visited CPU retired with epoch N, and the commit (N)
//! released it under the reader (issue #4920). The `per_cpu_epoch_stamp` flavour of
//! ebpfcore brings that stamping back ([`EpochCore::set_per_cpu_stamp`]); the loom model
//! checks the rule below for the correct build and that it fails for the flavour.
//!
//! Rule: an item is released only after every thread that entered before it was retired has
//! exited.
//!
//! `synchronize` (upstream `ebpf_epoch_synchronize`) queues a [`SyncPoint`] on the free list
//! like any retired item and waits for it to be signalled. A computation hands its released
//! items and reached sync points out together as a [`Release`]; the caller frees the items
//! first and only then calls [`Release::complete`]. So "synchronize returned" always means
//! "everything retired before it is freed", not merely "the released epoch moved past it":
//! publishing the epoch before the frees ran once made Verifier's unload check count
//! retired-but-not-yet-freed entries as leaks whenever the timer thread was preempted between
//! the two (the loom model `loom_synchronize_returns_after_the_frees` pins the order).

use crate::sync::{AtomicI64, CacheLine, Condvar, Mutex, Ordering, lock};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// How long the proposal takes to reach the next CPU. Upstream passes it from CPU to CPU in
/// per-CPU DPCs, so CPUs adopt a new epoch one after the other, not at once; the model
/// yields for this long between CPUs (not under loom, which explores every interleaving).
#[cfg(not(loom))]
const DPC_HOP: std::time::Duration = std::time::Duration::from_micros(50);

/// `ebpf_epoch_synchronize`'s free-list entry: signalled once the release pass that reached
/// it has freed every item released with it.
#[derive(Debug, Default)]
pub(crate) struct SyncPoint {
    reached: Mutex<bool>,
    cv: Condvar,
}

impl SyncPoint {
    fn signal(&self) {
        *lock(&self.reached) = true;
        self.cv.notify_all();
    }

    /// Blocks until signalled (the loom model; the kernel waits with [`SyncPoint::wait_for`]).
    #[cfg(loom)]
    pub(crate) fn wait(&self) {
        let mut g = lock(&self.reached);
        while !*g {
            g = crate::sync::wait(&self.cv, g);
        }
    }

    /// Waits at most `max`; true once signalled (the caller re-checks for a halt between).
    pub(crate) fn wait_for(&self, max: std::time::Duration) -> bool {
        let g = lock(&self.reached);
        if *g {
            return true;
        }
        let (g, _) = match self.cv.wait_timeout(g, max) {
            Ok(r) => r,
            Err(p) => p.into_inner(),
        };
        *g
    }
}

/// An epoch work item (`ebpf_epoch_schedule_work_item`): code that runs once every thread
/// that was inside an epoch when it was scheduled has left (a map's teardown).
pub(crate) struct WorkItem(Box<dyn FnOnce() + Send>);

impl WorkItem {
    pub(crate) fn new(f: impl FnOnce() + Send + 'static) -> Self {
        WorkItem(Box::new(f))
    }

    pub(crate) fn run(self) {
        (self.0)();
    }
}

impl std::fmt::Debug for WorkItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkItem")
    }
}

/// What a free list holds.
#[derive(Debug)]
enum Entry<T> {
    Item(T),
    Sync(Arc<SyncPoint>),
    Work(WorkItem),
}

/// What one computation released: the items to free, then the sync points to signal.
#[derive(Debug)]
#[must_use = "the sync points must be signalled with `complete` after the items are freed"]
pub(crate) struct Release<T> {
    /// Items whose epoch passed, in per-CPU stamp order.
    pub(crate) items: Vec<T>,
    /// Work items whose epoch passed: the caller runs them after freeing the items and
    /// before [`Release::complete`], so a synchronize also waits for them.
    pub(crate) work: Vec<WorkItem>,
    syncs: Vec<Arc<SyncPoint>>,
}

impl<T> Release<T> {
    /// Signals the sync points this pass reached. Call only after every item is freed.
    pub(crate) fn complete(self) {
        for s in self.syncs {
            s.signal();
        }
    }
}

#[derive(Debug)]
struct CpuEpoch<T> {
    /// Epochs of threads currently inside an epoch on this CPU (a multiset).
    active: Vec<i64>,
    /// Retired items and sync points, in stamp order.
    free_list: VecDeque<(i64, Entry<T>)>,
    current: i64,
    released: i64,
}

/// Per-CPU epoch state and the published epoch.
#[derive(Debug)]
pub(crate) struct EpochCore<T> {
    published: AtomicI64,
    released: AtomicI64,
    cpus: Vec<CacheLine<Mutex<CpuEpoch<T>>>>,
    /// Serialises computations (upstream: `epoch_computation_in_progress`).
    computing: Mutex<()>,
    /// The `per_cpu_epoch_stamp` flavour (issue #4920): stamp with the CPU's own epoch.
    per_cpu_stamp: AtomicBool,
}

impl<T> EpochCore<T> {
    pub(crate) fn new(cpus: usize) -> Self {
        EpochCore {
            published: AtomicI64::new(1),
            released: AtomicI64::new(0),
            cpus: (0..cpus.max(1))
                .map(|_| {
                    CacheLine(Mutex::new(CpuEpoch {
                        active: Vec::new(),
                        free_list: VecDeque::new(),
                        current: 1,
                        released: 0,
                    }))
                })
                .collect(),
            computing: Mutex::new(()),
            per_cpu_stamp: AtomicBool::new(false),
        }
    }

    /// Selects the stamping of ebpfcore's build: false (correct, since PR #4924) stamps with
    /// the published epoch, true (before it) with the CPU's own epoch.
    pub(crate) fn set_per_cpu_stamp(&self, on: bool) {
        self.per_cpu_stamp
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The epoch enter and retire stamp on a CPU whose state is `c`.
    #[inline]
    fn stamp(&self, c: &CpuEpoch<T>) -> i64 {
        if self
            .per_cpu_stamp
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            c.current
        } else {
            self.published.load(Ordering::SeqCst)
        }
    }

    /// Enters an epoch on `cpu`; returns the epoch to pass to [`EpochCore::exit`].
    #[inline]
    pub(crate) fn enter(&self, cpu: usize) -> i64 {
        let mut c = lock(&self.cpus[cpu]);
        let e = self.stamp(&c);
        c.active.push(e);
        e
    }

    /// Leaves the epoch entered with `epoch`; returns true if this CPU has retired items
    /// waiting (the caller arms the timer).
    #[inline]
    pub(crate) fn exit(&self, cpu: usize, epoch: i64) -> bool {
        let mut c = lock(&self.cpus[cpu]);
        if let Some(i) = c.active.iter().rposition(|e| *e == epoch) {
            c.active.swap_remove(i);
        }
        !c.free_list.is_empty()
    }

    /// Queues the item `stamp` makes (given the published epoch) on `cpu`'s free list;
    /// `stamp` may refuse (None). Returns the epoch.
    pub(crate) fn retire_with(&self, cpu: usize, stamp: impl FnOnce(i64) -> Option<T>) -> i64 {
        let mut c = lock(&self.cpus[cpu]);
        let e = self.stamp(&c);
        if let Some(item) = stamp(e) {
            c.free_list.push_back((e, Entry::Item(item)));
        }
        e
    }

    /// Queues `point` on `cpu`'s free list behind everything retired so far (the first half
    /// of `synchronize`; the caller arms the timer and waits on it).
    pub(crate) fn queue_sync(&self, cpu: usize, point: Arc<SyncPoint>) {
        let mut c = lock(&self.cpus[cpu]);
        let e = self.stamp(&c);
        c.free_list.push_back((e, Entry::Sync(point)));
    }

    /// Queues a work item on `cpu`'s free list, stamped like a retired item; it is handed
    /// out once released. Does not arm the timer: the caller's epoch exit does
    /// ([`EpochCore::exit`] reports the non-empty free list).
    pub(crate) fn queue_work(&self, cpu: usize, work: WorkItem) {
        let mut c = lock(&self.cpus[cpu]);
        let e = self.stamp(&c);
        c.free_list.push_back((e, Entry::Work(work)));
    }

    /// Runs one propose/commit cycle; returns what it released.
    pub(crate) fn compute(&self) -> Release<T> {
        let _one_at_a_time = lock(&self.computing);
        // Propose: CPU 0 declares the new epoch, every CPU lowers the proposal.
        let new_epoch = self.published.fetch_add(1, Ordering::SeqCst) + 1;
        let mut proposed = new_epoch;
        for (i, cpu) in self.cpus.iter().enumerate() {
            if i > 0 {
                Self::hop();
            }
            let mut c = lock(cpu);
            c.current = new_epoch;
            if let Some(min) = c.active.iter().min() {
                proposed = proposed.min(*min);
            }
        }
        // Commit: released = proposed - 1, then each CPU drains what is old enough.
        let released = proposed - 1;
        let mut out = Release {
            items: Vec::new(),
            work: Vec::new(),
            syncs: Vec::new(),
        };
        for cpu in &self.cpus {
            let mut c = lock(cpu);
            c.released = c.released.max(released);
            while c.free_list.front().is_some_and(|(e, _)| *e <= released) {
                match c.free_list.pop_front() {
                    Some((_, Entry::Item(item))) => out.items.push(item),
                    Some((_, Entry::Sync(s))) => out.syncs.push(s),
                    Some((_, Entry::Work(w))) => out.work.push(w),
                    None => {}
                }
            }
        }
        self.released.fetch_max(released, Ordering::SeqCst);
        out
    }

    /// The proposal's hand-off to the next CPU's DPC.
    #[inline]
    fn hop() {
        #[cfg(not(loom))]
        std::thread::sleep(DPC_HOP);
    }

    pub(crate) fn published(&self) -> i64 {
        self.published.load(Ordering::SeqCst)
    }

    pub(crate) fn released(&self) -> i64 {
        self.released.load(Ordering::SeqCst)
    }

    /// One cycle whose items count as freed at once (tests).
    #[cfg(test)]
    pub(crate) fn cycle(&self) -> (i64, Vec<T>) {
        let mut r = self.compute();
        let items = std::mem::take(&mut r.items);
        for w in std::mem::take(&mut r.work) {
            w.run();
        }
        r.complete();
        (self.released(), items)
    }

    /// True if any CPU has retired items waiting.
    pub(crate) fn has_pending(&self) -> bool {
        self.cpus.iter().any(|c| !lock(c).free_list.is_empty())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn release_waits_for_older_readers() {
        let core = EpochCore::<u32>::new(2);
        let reader = core.enter(1);
        core.retire_with(0, |_| Some(7));
        // The reader entered before the retire: nothing may be released while it is inside.
        let (_, out) = core.cycle();
        assert!(out.is_empty());
        let (_, out) = core.cycle();
        assert!(out.is_empty());
        assert!(core.exit(1, reader) || core.has_pending());
        let (released, out) = core.cycle();
        assert_eq!(out, vec![7]);
        assert!(released >= 1);
    }

    #[test]
    fn readers_entering_after_the_retire_do_not_block_it() {
        let core = EpochCore::<u32>::new(2);
        let early = core.enter(0);
        let stamped = core.retire_with(0, |_| Some(1));
        assert!(core.cycle().1.is_empty(), "the early reader pins it");
        let late = core.enter(1);
        assert!(late > stamped);
        core.exit(0, early);
        let (_, out) = core.cycle();
        assert_eq!(
            out,
            vec![1],
            "only the late reader is inside: it cannot hold the item"
        );
        core.exit(1, late);
    }

    #[test]
    fn a_sync_point_is_released_with_the_items_before_it_and_signalled_after_them() {
        let core = EpochCore::<u32>::new(2);
        let reader = core.enter(1);
        core.retire_with(0, |_| Some(1));
        core.retire_with(1, |_| Some(2));
        let point = Arc::new(SyncPoint::default());
        core.queue_sync(0, point.clone());
        let r = core.compute();
        assert!(
            r.items.is_empty() && r.syncs.is_empty(),
            "the reader pins both"
        );
        r.complete();
        assert!(!point.wait_for(std::time::Duration::ZERO));
        core.exit(1, reader);
        let r = core.compute();
        assert_eq!(
            r.items,
            vec![1, 2],
            "items of every CPU go with the sync point"
        );
        assert_eq!(r.syncs.len(), 1);
        assert!(
            !point.wait_for(std::time::Duration::ZERO),
            "not signalled before the frees"
        );
        r.complete();
        assert!(point.wait_for(std::time::Duration::ZERO));
        assert!(!core.has_pending());
    }

    #[test]
    fn a_sync_point_queued_later_does_not_hold_back_earlier_items() {
        let core = EpochCore::<u32>::new(1);
        core.retire_with(0, |_| Some(1));
        let (_, out) = core.cycle();
        assert_eq!(out, vec![1]);
        let late = core.enter(0);
        let point = Arc::new(SyncPoint::default());
        core.queue_sync(0, point.clone());
        assert!(core.has_pending(), "a sync point keeps the timer armed");
        let r = core.compute();
        assert!(
            r.syncs.is_empty(),
            "a reader inside when synchronize began pins it"
        );
        r.complete();
        core.exit(0, late);
        core.cycle();
        assert!(point.wait_for(std::time::Duration::ZERO));
    }

    /// Rule (`ebpf_epoch_exit`): leaving an epoch arms the flush timer exactly when the
    /// CPU's free list holds retired items; otherwise nothing would ever release them.
    #[test]
    fn exit_reports_whether_its_cpu_has_retired_items_waiting() {
        let core = EpochCore::<u32>::new(2);
        let e = core.enter(0);
        assert!(!core.exit(0, e), "nothing retired: no timer");
        let e = core.enter(0);
        core.retire_with(0, |_| Some(1));
        assert!(core.exit(0, e), "an item waits on this CPU: arm the timer");
        let e = core.enter(1);
        assert!(!core.exit(1, e), "the other CPU's free list is empty");
    }

    /// Rule: leaving an epoch ends only that thread's epoch; an older reader on the same CPU
    /// still holds back what was retired while it was inside.
    #[test]
    fn exit_ends_only_its_own_epoch() {
        let core = EpochCore::<u32>::new(1);
        let old = core.enter(0);
        core.retire_with(0, |_| Some(7));
        assert!(core.cycle().1.is_empty());
        let young = core.enter(0);
        assert!(young > old);
        core.exit(0, young);
        assert!(core.cycle().1.is_empty(), "the old reader is still inside");
        core.exit(0, old);
        assert_eq!(core.cycle().1, vec![7]);
    }

    /// Rule: retired items (and sync points) keep the timer armed until released; nothing
    /// pending means the timer may stop.
    #[test]
    fn pending_tracks_the_free_lists() {
        let core = EpochCore::<u32>::new(2);
        assert!(!core.has_pending(), "a fresh core has nothing pending");
        core.retire_with(1, |_| Some(1));
        assert!(core.has_pending(), "an item on CPU 1 is pending");
        core.retire_with(0, |_| None);
        assert_eq!(core.cycle().1, vec![1]);
        assert!(!core.has_pending(), "a refused retire queues nothing");
    }

    /// Rule: enter and retire stamp the published epoch; every computation advances it by
    /// one and, with no reader inside, commits `released = published - 1`.
    #[test]
    fn each_computation_advances_the_published_epoch_by_one() {
        let core = EpochCore::<u32>::new(2);
        assert_eq!((core.published(), core.released()), (1, 0));
        let e = core.enter(1);
        assert_eq!(e, core.published());
        assert_eq!(core.retire_with(0, |e| Some(e as u32)), 1);
        let (released, out) = core.cycle();
        assert_eq!(
            (core.published(), released),
            (2, 0),
            "the reader pins epoch 1"
        );
        assert!(out.is_empty());
        core.exit(1, e);
        let (released, out) = core.cycle();
        assert_eq!((core.published(), released), (3, 2));
        assert_eq!(
            out,
            vec![1],
            "the item carries the epoch it was stamped with"
        );
        assert_eq!(core.retire_with(1, |_| Some(9)), 3);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Run: `RUSTFLAGS="--cfg loom" cargo test -p sim-kernel --release --lib loom`
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicBool;

    /// A reader that sees the item linked must never see it released before it exits.
    ///
    /// The link is a mutex-protected flag, as the map's bucket is: the argument relies on
    /// the bucket lock ordering the unlink against the reader's lookup (and on coherence of
    /// the published epoch), not on a SeqCst total order, which loom models as AcqRel.
    #[test]
    fn loom_epoch_never_releases_under_a_reader() {
        // Both placements: the proposal visits CPU 0 first, so a reader on the CPU visited
        // first and a retire on the CPU visited last is the shape of the per-CPU stamp window.
        for (reader_cpu, writer_cpu) in [(1, 0), (0, 1)] {
            model(reader_cpu, writer_cpu, false);
        }
    }

    /// The `per_cpu_epoch_stamp` flavour (upstream before PR #4924) breaks the rule: loom
    /// finds the issue #4920 schedule (reader on the CPU the proposal visits first, retire
    /// on the one it visits last). A model that could not tell the two builds apart would
    /// also pass a scenario that cannot catch the bug.
    #[test]
    fn loom_per_cpu_stamping_releases_under_a_reader() {
        let caught = std::panic::catch_unwind(|| model(0, 1, true));
        assert!(
            caught.is_err(),
            "loom found no use-after-free with per-CPU stamps"
        );
    }

    fn model(reader_cpu: usize, writer_cpu: usize, per_cpu: bool) {
        // Bounded preemptions keep the run short; the violating schedules of this shape
        // need at most two (enter/lookup vs unlink/retire vs propose).
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(move || {
            let core = Arc::new(EpochCore::<u8>::new(2));
            core.set_per_cpu_stamp(per_cpu);
            let linked = Arc::new(Mutex::new(true));
            let released = Arc::new(AtomicBool::new(false));

            let r = {
                let (core, linked, released) = (core.clone(), linked.clone(), released.clone());
                loom::thread::spawn(move || {
                    let e = core.enter(reader_cpu);
                    if *lock(&linked) {
                        // The reader holds a reference: it must still be alive.
                        assert!(!released.load(Ordering::SeqCst), "released under a reader");
                    }
                    core.exit(reader_cpu, e);
                })
            };
            let w = {
                let (core, linked) = (core.clone(), linked.clone());
                loom::thread::spawn(move || {
                    *lock(&linked) = false;
                    core.retire_with(writer_cpu, |_| Some(1u8));
                })
            };
            // The timer DPC: two cycles, releasing whatever commit allows.
            for _ in 0..2 {
                let (_, out) = core.cycle();
                if !out.is_empty() {
                    released.store(true, Ordering::SeqCst);
                }
            }
            r.join().unwrap();
            w.join().unwrap();
            // Once everyone has left, a cycle releases the item.
            let (_, out) = core.cycle();
            if !out.is_empty() {
                released.store(true, Ordering::SeqCst);
            }
            assert!(released.load(Ordering::SeqCst), "item never released");
        });
    }

    /// An epoch work item (a map's teardown) never runs while a reader that could still
    /// reach the map is inside an epoch, and runs once every reader has left.
    #[test]
    fn loom_work_item_waits_for_readers() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let core = Arc::new(EpochCore::<u8>::new(2));
            // The map is reachable (a handle table entry) until the last close.
            let open = Arc::new(Mutex::new(true));
            let torn_down = Arc::new(AtomicBool::new(false));
            let reader = {
                let (core, open, torn_down) = (core.clone(), open.clone(), torn_down.clone());
                loom::thread::spawn(move || {
                    let e = core.enter(0);
                    if *lock(&open) {
                        assert!(
                            !torn_down.load(Ordering::SeqCst),
                            "torn down under a reader"
                        );
                    }
                    core.exit(0, e);
                })
            };
            let closer = {
                let (core, open, torn_down) = (core.clone(), open.clone(), torn_down.clone());
                loom::thread::spawn(move || {
                    *lock(&open) = false;
                    core.queue_work(
                        1,
                        WorkItem::new(move || torn_down.store(true, Ordering::SeqCst)),
                    );
                })
            };
            // The timer DPC: `cycle` runs the work items a pass releases.
            for _ in 0..2 {
                core.cycle();
            }
            reader.join().unwrap();
            closer.join().unwrap();
            core.cycle();
            assert!(torn_down.load(Ordering::SeqCst), "the work item never ran");
        });
    }

    /// `synchronize` returns only after everything retired before it is freed, whatever the
    /// timer thread's interleaving: the old rule (wait until the released epoch passes the
    /// target) returned between the commit and the frees.
    #[test]
    fn loom_synchronize_returns_after_the_frees() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let core = Arc::new(EpochCore::<u8>::new(2));
            let freed = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicBool::new(false));
            let unloader = {
                let (core, freed, done) = (core.clone(), freed.clone(), done.clone());
                loom::thread::spawn(move || {
                    core.retire_with(1, |_| Some(7u8));
                    // The free list holds a std Arc; the point's own lock is loom's.
                    let point = std::sync::Arc::new(SyncPoint::default());
                    core.queue_sync(0, point.clone());
                    point.wait();
                    // Verifier's unload check: nothing retired before may still be allocated.
                    assert!(
                        freed.load(Ordering::SeqCst),
                        "synchronize returned before the free"
                    );
                    done.store(true, Ordering::SeqCst);
                })
            };
            // The timer DPC: cycles until the unloader is through.
            while !done.load(Ordering::SeqCst) {
                let r = core.compute();
                for _ in r.items.iter() {
                    freed.store(true, Ordering::SeqCst);
                }
                r.complete();
                loom::thread::yield_now();
            }
            unloader.join().unwrap();
        });
    }
}
