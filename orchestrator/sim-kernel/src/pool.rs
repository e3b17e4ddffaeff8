//! Pool memory: tagged allocations in a slab whose slots carry generation counters, so a
//! read, write or free through a stale handle is detected deterministically.
//!
//! A slot's generation is odd while allocated and even while free; a handle remembers the
//! generation it was given. Reads check the generation before *and* after copying the data
//! (seqlock style), so any access that overlaps a free is caught, not only later ones.

use crate::sync::{CacheLine, wrap};
use parking_lot::{Mutex, RwLock};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

/// Slots per slab segment.
const SEGMENT: u32 = 4096;
/// Distinct pool tags one boot can track.
pub(crate) const MAX_TAGS: usize = 64;
/// Distinct allocation owners (drivers) one boot can track.
pub(crate) const MAX_OWNERS: usize = 64;
/// Fake kernel VA of slot 0 (nonpaged pool region).
const POOL_VA_BASE: u64 = 0xFFFF_B000_0000_0000;

/// A reference to one pool allocation; stale once the allocation is freed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PoolHandle {
    index: u32,
    generation: u32,
}

impl PoolHandle {
    /// The slot index (for [`Pool::recycle`]).
    pub(crate) fn index(self) -> u32 {
        self.index
    }

    /// Packs the handle into a stored map value (a "pointer").
    pub(crate) fn raw(self) -> u64 {
        (u64::from(self.index) << 32) | u64::from(self.generation)
    }

    pub(crate) fn from_raw(v: u64) -> PoolHandle {
        PoolHandle {
            index: (v >> 32) as u32,
            generation: v as u32,
        }
    }

    /// The fake kernel address of the allocation (bugcheck parameters).
    pub(crate) fn va(self) -> u64 {
        POOL_VA_BASE + u64::from(self.index) * 0x40
    }
}

/// Index of a registered pool tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TagId(u16);

/// Which driver an allocation is charged to (Driver Verifier's pool tracking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct OwnerId(pub(crate) u16);

/// What a stale or invalid pool access was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolFault {
    /// Read (`write == false`) or write through a handle whose allocation was freed.
    StaleAccess { va: u64, write: bool },
    /// Free of an allocation that is not allocated (double free or stale handle).
    BadFree { va: u64, tag: [u8; 4] },
    /// `epoch_free` of an allocation already on an epoch free list.
    DoubleRetire { va: u64 },
}

#[derive(Debug, Default)]
struct Slot {
    generation: AtomicU32,
    /// Tag index (low 16 bits) and owner (high 16 bits).
    tag_owner: AtomicU32,
    size: AtomicU32,
    data: AtomicU64,
    /// Epoch stamped by `epoch_free`, 0 while not retired.
    freed_epoch: AtomicI64,
}

/// One CPU's share of a tag's or owner's usage, on its own cache line so CPUs do not
/// bounce a shared counter on every allocation.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Counters {
    bytes: AtomicI64,
    allocs: AtomicI64,
}

/// Accounting owed by a batch of frees ([`Pool::invalidate_owing`]), per (shard, tag,
/// owner): bytes and allocations. The epoch timer releases thousands of items a pass;
/// charging each to the per-shard counters one at a time bounced those cache lines with the
/// CPU allocating on the same shard, once per item.
#[derive(Debug, Default)]
pub(crate) struct Owed(Vec<((usize, usize, usize), i64, i64)>);

impl Owed {
    fn add(&mut self, key: (usize, usize, usize), bytes: i64) {
        match self.0.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, b, a)) => {
                *b += bytes;
                *a += 1;
            }
            None => self.0.push((key, bytes, 1)),
        }
    }
}

/// The slab and its per-tag / per-owner accounting.
#[derive(Debug)]
pub(crate) struct Pool {
    segments: Box<[OnceLock<Box<[Slot]>>]>,
    capacity: u32,
    fresh: AtomicU32,
    /// Free slot indices, sharded per CPU so allocation does not serialise the machine.
    free: Box<[CacheLine<Mutex<Vec<u32>>>]>,
    tags: RwLock<Vec<[u8; 4]>>,
    /// `[tag][shard]` and `[owner][shard]`; readers sum the shards.
    tag_counters: Box<[Counters]>,
    owner_counters: Box<[Counters]>,
    shards: usize,
}

impl Pool {
    pub(crate) fn new(capacity: u32, shards: u32) -> Pool {
        let capacity = capacity.max(SEGMENT);
        let nseg = capacity.div_ceil(SEGMENT) as usize;
        Pool {
            segments: (0..nseg).map(|_| OnceLock::new()).collect(),
            capacity: nseg as u32 * SEGMENT,
            fresh: AtomicU32::new(0),
            free: (0..shards.max(1))
                .map(|_| CacheLine(Mutex::new(Vec::new())))
                .collect(),
            tags: RwLock::new(Vec::new()),
            tag_counters: (0..MAX_TAGS * shards.max(1) as usize)
                .map(|_| Counters::default())
                .collect(),
            owner_counters: (0..MAX_OWNERS * shards.max(1) as usize)
                .map(|_| Counters::default())
                .collect(),
            shards: shards.max(1) as usize,
        }
    }

    /// Registers (or finds) a four-character tag.
    pub(crate) fn tag(&self, tag: [u8; 4]) -> TagId {
        if let Some(i) = self.tags.read().iter().position(|t| *t == tag) {
            return TagId(i as u16);
        }
        let mut w = self.tags.write();
        if let Some(i) = w.iter().position(|t| *t == tag) {
            return TagId(i as u16);
        }
        // Past MAX_TAGS every further tag shares the last counter (never hit by this model).
        let i = w.len().min(MAX_TAGS - 1);
        if w.len() < MAX_TAGS {
            w.push(tag);
        }
        TagId(i as u16)
    }

    fn slot(&self, index: u32) -> Option<&Slot> {
        let seg = self.segments.get((index / SEGMENT) as usize)?.get()?;
        seg.get((index % SEGMENT) as usize)
    }

    fn slot_or_init(&self, index: u32) -> &Slot {
        let seg = self.segments[(index / SEGMENT) as usize]
            .get_or_init(|| (0..SEGMENT).map(|_| Slot::default()).collect());
        &seg[(index % SEGMENT) as usize]
    }

    fn take_index(&self, shard: usize) -> Option<u32> {
        let n = self.free.len();
        if let Some(i) = self.free[wrap(shard, n)].lock().pop() {
            return Some(i);
        }
        let i = self.fresh.fetch_add(1, Ordering::Relaxed);
        if i < self.capacity {
            return Some(i);
        }
        self.fresh.store(self.capacity, Ordering::Relaxed);
        // Fresh slots are exhausted: take from other CPUs' shards before failing.
        (1..n).find_map(|k| self.free[(shard + k) % n].lock().pop())
    }

    /// Allocates `size` bytes charged to `tag` and `owner`, holding `data`.
    pub(crate) fn alloc(
        &self,
        tag: TagId,
        owner: OwnerId,
        size: u32,
        data: u64,
        shard: usize,
    ) -> Option<PoolHandle> {
        let index = self.take_index(shard)?;
        let slot = self.slot_or_init(index);
        let g = slot.generation.load(Ordering::Acquire);
        debug_assert!(g.is_multiple_of(2), "free list held an allocated slot");
        slot.tag_owner.store(
            u32::from(tag.0) | (u32::from(owner.0) << 16),
            Ordering::Relaxed,
        );
        slot.size.store(size, Ordering::Relaxed);
        slot.data.store(data, Ordering::Relaxed);
        slot.freed_epoch.store(0, Ordering::Relaxed);
        let generation = g.wrapping_add(1);
        slot.generation.store(generation, Ordering::Release);
        self.account(shard, tag.0 as usize, owner.0 as usize, i64::from(size), 1);
        Some(PoolHandle { index, generation })
    }

    fn account(&self, shard: usize, tag: usize, owner: usize, bytes: i64, allocs: i64) {
        let shard = wrap(shard, self.shards);
        // A TagId is below MAX_TAGS by construction (`Pool::tag` shares the last counter);
        // owners come from the module table unbounded, so they are clamped here.
        let t = &self.tag_counters[tag * self.shards + shard];
        t.bytes.fetch_add(bytes, Ordering::Relaxed);
        t.allocs.fetch_add(allocs, Ordering::Relaxed);
        let o = &self.owner_counters[owner.min(MAX_OWNERS - 1) * self.shards + shard];
        o.bytes.fetch_add(bytes, Ordering::Relaxed);
        o.allocs.fetch_add(allocs, Ordering::Relaxed);
    }

    /// Reads the allocation's data; a stale handle (or a free racing the read) is a fault.
    #[inline]
    pub(crate) fn read(&self, h: PoolHandle) -> Result<u64, PoolFault> {
        let fault = PoolFault::StaleAccess {
            va: h.va(),
            write: false,
        };
        let slot = self.slot(h.index).ok_or(fault)?;
        if slot.generation.load(Ordering::Acquire) != h.generation {
            return Err(fault);
        }
        let v = slot.data.load(Ordering::Acquire);
        if slot.generation.load(Ordering::Acquire) != h.generation {
            return Err(fault);
        }
        Ok(v)
    }

    /// Writes the allocation's data; a stale handle is a fault.
    #[cfg(test)]
    pub(crate) fn write(&self, h: PoolHandle, v: u64) -> Result<(), PoolFault> {
        let fault = PoolFault::StaleAccess {
            va: h.va(),
            write: true,
        };
        let slot = self.slot(h.index).ok_or(fault)?;
        if slot.generation.load(Ordering::Acquire) != h.generation {
            return Err(fault);
        }
        slot.data.store(v, Ordering::Release);
        if slot.generation.load(Ordering::Acquire) != h.generation {
            return Err(fault);
        }
        Ok(())
    }

    /// Frees an allocation; freeing twice (or a stale handle) is a fault.
    pub(crate) fn free(&self, h: PoolHandle, shard: usize) -> Result<u32, PoolFault> {
        let size = self.invalidate(h, shard)?;
        let n = self.free.len();
        self.free[wrap(shard, n)].lock().push(h.index);
        Ok(size)
    }

    /// Returns freed slots (see [`Pool::invalidate`]) to a shard's free list in one lock.
    pub(crate) fn recycle(&self, shard: usize, indices: &mut Vec<u32>) {
        let n = self.free.len();
        self.free[wrap(shard, n)].lock().append(indices);
    }

    /// The checked half of a free: ends the allocation (its handles go stale) and its
    /// accounting, without returning the slot; the caller passes `h.index` to `recycle`.
    pub(crate) fn invalidate(&self, h: PoolHandle, shard: usize) -> Result<u32, PoolFault> {
        let mut owed = Owed::default();
        let size = self.invalidate_owing(h, shard, &mut owed)?;
        self.settle(&mut owed);
        Ok(size)
    }

    /// [`Pool::invalidate`] whose accounting is added to `owed`, to be applied with
    /// [`Pool::settle`] once for a whole batch.
    pub(crate) fn invalidate_owing(
        &self,
        h: PoolHandle,
        shard: usize,
        owed: &mut Owed,
    ) -> Result<u32, PoolFault> {
        let Some(slot) = self.slot(h.index) else {
            return Err(PoolFault::BadFree {
                va: h.va(),
                tag: *b"????",
            });
        };
        let to = slot.tag_owner.load(Ordering::Relaxed);
        let size = slot.size.load(Ordering::Relaxed);
        if slot
            .generation
            .compare_exchange(
                h.generation,
                h.generation.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            let tag = self
                .tags
                .read()
                .get((to & 0xFFFF) as usize)
                .copied()
                .unwrap_or(*b"????");
            return Err(PoolFault::BadFree { va: h.va(), tag });
        }
        owed.add(
            (
                wrap(shard, self.shards),
                (to & 0xFFFF) as usize,
                (to >> 16) as usize,
            ),
            i64::from(size),
        );
        Ok(size)
    }

    /// Applies (and clears) the accounting of a batch of frees.
    pub(crate) fn settle(&self, owed: &mut Owed) {
        for ((shard, tag, owner), bytes, allocs) in owed.0.drain(..) {
            self.account(shard, tag, owner, -bytes, -allocs);
        }
    }

    /// Stamps the allocation as retired in `epoch` (the `freed_epoch` header of
    /// `ebpf_epoch_free`); a second stamp is the epoch double-free fail-fast.
    pub(crate) fn stamp_freed(&self, h: PoolHandle, epoch: i64) -> Result<u32, PoolFault> {
        let stale = PoolFault::BadFree {
            va: h.va(),
            tag: *b"????",
        };
        let slot = self.slot(h.index).ok_or(stale)?;
        if slot.generation.load(Ordering::Acquire) != h.generation {
            let to = slot.tag_owner.load(Ordering::Relaxed);
            let tag = self
                .tags
                .read()
                .get((to & 0xFFFF) as usize)
                .copied()
                .unwrap_or(*b"????");
            return Err(PoolFault::BadFree { va: h.va(), tag });
        }
        if slot
            .freed_epoch
            .compare_exchange(0, epoch, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(PoolFault::DoubleRetire { va: h.va() });
        }
        Ok(slot.size.load(Ordering::Relaxed))
    }

    /// Outstanding (bytes, allocations) per registered tag.
    pub(crate) fn tag_usage(&self) -> Vec<([u8; 4], i64, i64)> {
        let tags = self.tags.read();
        tags.iter()
            .enumerate()
            .map(|(i, t)| {
                let (b, a) = Self::sum(&self.tag_counters[i * self.shards..(i + 1) * self.shards]);
                (*t, b, a)
            })
            .collect()
    }

    fn sum(cs: &[Counters]) -> (i64, i64) {
        cs.iter().fold((0, 0), |(b, a), c| {
            (
                b + c.bytes.load(Ordering::Relaxed),
                a + c.allocs.load(Ordering::Relaxed),
            )
        })
    }

    /// Outstanding (bytes, allocations) charged to one owner.
    pub(crate) fn owner_usage(&self, owner: OwnerId) -> (i64, i64) {
        let o = (owner.0 as usize).min(MAX_OWNERS - 1);
        Self::sum(&self.owner_counters[o * self.shards..(o + 1) * self.shards])
    }
}

/// Renders a tag as text (non-printable bytes as `?`).
pub(crate) fn tag_text(tag: [u8; 4]) -> String {
    tag.iter()
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                *b as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Parses a four-character tag name.
pub(crate) fn parse_tag(s: &str) -> Option<[u8; 4]> {
    let b = s.as_bytes();
    (b.len() == 4 && b.iter().all(|c| c.is_ascii_graphic() || *c == b' '))
        .then(|| [b[0], b[1], b[2], b[3]])
}

/// Outstanding pool usage of one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagUsage {
    /// Four-character pool tag, e.g. `Smpl`.
    pub tag: String,
    /// Outstanding bytes.
    pub bytes: i64,
    /// Outstanding allocations.
    pub allocs: i64,
}

/// Pool usage per tag (tags ever used in this boot, sorted by tag).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolStats {
    /// One entry per tag.
    pub tags: Vec<TagUsage>,
}

impl PoolStats {
    /// Usage of one tag (zero if never used).
    pub fn tag(&self, tag: &str) -> TagUsage {
        self.tags
            .iter()
            .find(|t| t.tag == tag)
            .cloned()
            .unwrap_or(TagUsage {
                tag: tag.to_string(),
                bytes: 0,
                allocs: 0,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Pool {
        Pool::new(1 << 14, 2)
    }

    #[test]
    fn accounting_follows_alloc_and_free() {
        let p = pool();
        let t = p.tag(*b"Smpl");
        let a = p.alloc(t, OwnerId(3), 16, 7, 0).unwrap();
        let b = p.alloc(t, OwnerId(3), 32, 8, 1).unwrap();
        assert_eq!(p.tag_usage(), vec![(*b"Smpl", 48, 2)]);
        assert_eq!(p.owner_usage(OwnerId(3)), (48, 2));
        assert_eq!(p.read(a), Ok(7));
        p.free(a, 0).unwrap();
        p.free(b, 0).unwrap();
        assert_eq!(p.tag_usage(), vec![(*b"Smpl", 0, 0)]);
    }

    /// A release pass settles a batch's accounting once: every item of the batch, with its
    /// own size, leaves the counters, also when several share one tag, owner and CPU.
    #[test]
    fn a_settled_batch_takes_every_item_off_the_counters() {
        let p = pool();
        let (t, u) = (p.tag(*b"Smpl"), p.tag(*b"eHsh"));
        let hs: Vec<_> = [(t, 16), (u, 8), (t, 32), (t, 64)]
            .into_iter()
            .map(|(tag, size)| p.alloc(tag, OwnerId(3), size, 0, 1).unwrap())
            .collect();
        let before = vec![(*b"Smpl", 112, 3), (*b"eHsh", 8, 1)];
        assert_eq!(p.tag_usage(), before);
        let mut owed = Owed::default();
        for h in &hs {
            p.invalidate_owing(*h, 1, &mut owed).unwrap();
        }
        assert_eq!(p.tag_usage(), before, "owed, not yet settled");
        p.settle(&mut owed);
        assert_eq!(p.tag_usage(), vec![(*b"Smpl", 0, 0), (*b"eHsh", 0, 0)]);
        assert_eq!(p.owner_usage(OwnerId(3)), (0, 0));
    }

    #[test]
    fn stale_handle_is_detected_even_after_reuse() {
        let p = pool();
        let t = p.tag(*b"Smpl");
        let a = p.alloc(t, OwnerId(0), 16, 1, 0).unwrap();
        p.free(a, 0).unwrap();
        assert!(matches!(
            p.read(a),
            Err(PoolFault::StaleAccess { write: false, .. })
        ));
        let b = p.alloc(t, OwnerId(0), 16, 2, 0).unwrap();
        assert_eq!(a.index, b.index, "the slot is reused");
        assert!(matches!(p.read(a), Err(PoolFault::StaleAccess { .. })));
        assert!(matches!(
            p.write(a, 5),
            Err(PoolFault::StaleAccess { write: true, .. })
        ));
        assert_eq!(p.read(b), Ok(2));
    }

    #[test]
    fn double_free_and_double_epoch_stamp_are_detected() {
        let p = pool();
        let t = p.tag(*b"Smpl");
        let a = p.alloc(t, OwnerId(0), 16, 1, 0).unwrap();
        p.stamp_freed(a, 4).unwrap();
        assert!(matches!(
            p.stamp_freed(a, 5),
            Err(PoolFault::DoubleRetire { .. })
        ));
        p.free(a, 0).unwrap();
        assert!(matches!(p.free(a, 0), Err(PoolFault::BadFree { tag, .. }) if &tag == b"Smpl"));
    }

    #[test]
    fn allocation_fails_at_capacity() {
        let p = Pool::new(SEGMENT, 1);
        let t = p.tag(*b"Tst ");
        let hs: Vec<_> = (0..SEGMENT)
            .map(|_| p.alloc(t, OwnerId(0), 8, 0, 0).unwrap())
            .collect();
        assert!(p.alloc(t, OwnerId(0), 8, 0, 0).is_none());
        p.free(hs[0], 0).unwrap();
        assert!(p.alloc(t, OwnerId(0), 8, 0, 0).is_some());
    }

    /// Rule: Driver Verifier charges every allocation to its tag and to its driver, on
    /// whichever CPU it is allocated and freed; the counts return to zero when all is freed.
    #[test]
    fn usage_is_kept_per_tag_and_per_owner_across_cpus() {
        let p = pool();
        let (smpl, emap) = (p.tag(*b"Smpl"), p.tag(*b"eMap"));
        let a = p.alloc(smpl, OwnerId(3), 16, 0, 1).unwrap();
        let b = p.alloc(emap, OwnerId(5), 64, 0, 0).unwrap();
        let c = p.alloc(emap, OwnerId(3), 8, 0, 1).unwrap();
        assert_eq!(p.tag_usage(), vec![(*b"Smpl", 16, 1), (*b"eMap", 72, 2)]);
        assert_eq!(p.owner_usage(OwnerId(3)), (24, 2));
        assert_eq!(p.owner_usage(OwnerId(5)), (64, 1));
        assert_eq!(p.owner_usage(OwnerId(4)), (0, 0));
        p.free(a, 0).unwrap();
        assert_eq!(
            p.invalidate(b, 1),
            Ok(64),
            "a free reports the size it freed"
        );
        p.free(c, 0).unwrap();
        assert_eq!(p.tag_usage(), vec![(*b"Smpl", 0, 0), (*b"eMap", 0, 0)]);
        assert_eq!(p.owner_usage(OwnerId(3)), (0, 0));
        assert_eq!(p.owner_usage(OwnerId(5)), (0, 0));
    }

    /// Rule: past the tracked number of tags and owners, the rest share the last counter
    /// (accounted, never lost or out of range).
    #[test]
    fn tags_and_owners_beyond_the_limit_share_the_last_counter() {
        let p = pool();
        let ids: Vec<_> = (0..=MAX_TAGS as u8)
            .map(|i| p.tag([b'T', b'g', b'0' + i / 10, b'0' + i % 10]))
            .collect();
        assert_eq!(ids[0], TagId(0));
        assert_eq!(ids[MAX_TAGS - 1], TagId(MAX_TAGS as u16 - 1));
        assert_eq!(
            ids[MAX_TAGS],
            TagId(MAX_TAGS as u16 - 1),
            "the extra tag shares"
        );
        assert_eq!(p.tag(*b"Tg00"), TagId(0), "a known tag is found again");
        assert_eq!(p.tag_usage().len(), MAX_TAGS);
        let far = OwnerId(MAX_OWNERS as u16 + 36);
        let h = p.alloc(ids[MAX_TAGS], far, 40, 0, 0).unwrap();
        assert_eq!(p.owner_usage(far), (40, 1));
        assert_eq!(p.owner_usage(OwnerId(MAX_OWNERS as u16 - 1)), (40, 1));
        assert_eq!(p.tag_usage()[MAX_TAGS - 1].1, 40);
        p.free(h, 1).unwrap();
        assert_eq!(p.owner_usage(far), (0, 0));
    }

    /// Rule: a freed slot goes back to the freeing CPU's shard and is reused from there;
    /// the epoch timer's batched recycle does the same.
    #[test]
    fn freed_slots_are_reused_from_the_freeing_cpus_shard() {
        let p = pool();
        let t = p.tag(*b"Smpl");
        let a = p.alloc(t, OwnerId(0), 16, 0, 0).unwrap();
        p.free(a, 1).unwrap();
        let fresh = p.alloc(t, OwnerId(0), 16, 0, 0).unwrap();
        assert_ne!(
            fresh.index(),
            a.index(),
            "CPU 0's shard is empty: a fresh slot"
        );
        let b = p.alloc(t, OwnerId(0), 16, 0, 1).unwrap();
        assert_eq!(b.index(), a.index(), "CPU 1 reuses the slot freed there");
        assert_eq!(p.invalidate(b, 1), Ok(16));
        assert!(matches!(p.read(b), Err(PoolFault::StaleAccess { .. })));
        let mut batch = vec![b.index()];
        p.recycle(1, &mut batch);
        assert!(batch.is_empty());
        assert_eq!(p.alloc(t, OwnerId(0), 16, 0, 1).unwrap().index(), b.index());
    }

    /// Rule: when fresh slots run out, a CPU takes a slot another CPU freed before the
    /// allocation fails.
    #[test]
    fn an_exhausted_pool_takes_slots_from_other_cpus() {
        let p = Pool::new(SEGMENT, 3);
        let t = p.tag(*b"Tst ");
        let hs: Vec<_> = (0..SEGMENT)
            .map(|_| p.alloc(t, OwnerId(0), 8, 0, 0).unwrap())
            .collect();
        p.free(hs[7], 2).unwrap();
        let h = p.alloc(t, OwnerId(0), 8, 0, 0).expect("CPU 2's free slot");
        assert_eq!(h.index(), hs[7].index());
        assert!(p.alloc(t, OwnerId(0), 8, 0, 1).is_none());
    }

    /// Rule: a bad free names the block's pool tag (BAD_POOL_CALLER parameter 3), also for
    /// a block of a later tag and owner, and for an `epoch_free` of a freed block.
    #[test]
    fn bad_frees_name_the_blocks_tag() {
        let p = pool();
        p.tag(*b"Frst");
        let t = p.tag(*b"Scnd");
        let a = p.alloc(t, OwnerId(2), 16, 0, 0).unwrap();
        p.free(a, 0).unwrap();
        let bad = PoolFault::BadFree {
            va: a.va(),
            tag: *b"Scnd",
        };
        assert_eq!(p.free(a, 0), Err(bad));
        assert_eq!(p.stamp_freed(a, 3), Err(bad));
        assert_eq!(
            p.owner_usage(OwnerId(2)),
            (0, 0),
            "a bad free changes no count"
        );
    }

    /// Rule: pool blocks have kernel addresses in the nonpaged pool range, one slot apart.
    #[test]
    fn addresses_are_nonpaged_pool_one_slot_apart() {
        let p = pool();
        let t = p.tag(*b"Smpl");
        let a = p.alloc(t, OwnerId(0), 16, 0, 0).unwrap();
        let b = p.alloc(t, OwnerId(0), 16, 0, 0).unwrap();
        assert_eq!(a.va(), POOL_VA_BASE + u64::from(a.index()) * 0x40);
        assert_eq!(b.va() - a.va(), 0x40 * u64::from(b.index() - a.index()));
        let far = PoolHandle::from_raw((5 << 32) | 1);
        assert_eq!(far.va(), 0xFFFF_B000_0000_0140);
    }

    #[test]
    fn handles_round_trip_through_raw() {
        let h = PoolHandle {
            index: 77,
            generation: 9,
        };
        assert_eq!(PoolHandle::from_raw(h.raw()), h);
        assert_eq!(h.raw(), (77 << 32) | 9, "index high, generation low");
        assert_eq!(h.index(), 77);
        assert_eq!(parse_tag("Smpl"), Some(*b"Smpl"));
        assert_eq!(
            parse_tag("Tst "),
            Some(*b"Tst "),
            "a space is a tag character"
        );
        assert_eq!(parse_tag("toolong"), None);
        assert_eq!(parse_tag("abc"), None);
        assert_eq!(parse_tag("a\tbc"), None);
        assert_eq!(tag_text(*b"eMap"), "eMap");
        assert_eq!(tag_text(*b"Ab \x01"), "Ab ?");
    }
}
