//! Plain public value types of the kernel API: configuration, statistics,
//! tool I/O and cancellation, map definitions.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How to boot a simulated kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelConfig {
    /// Number of simulated CPUs (1..=64). Threads are bound to one of them.
    pub cpus: u32,
    /// Service names under Driver Verifier (`verifier /driver x.sys` ⇒ `x`; a trailing
    /// `.sys` is accepted and ignored). A pool leak at their unload is bugcheck 0xC4/0x62.
    pub verifier_drivers: Vec<String>,
    /// `bcdedit /set testsigning on`: test-signed images may load.
    pub test_signing: bool,
    /// Capacity of the pool slab in allocations (allocation fails past it).
    pub pool_capacity: u32,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            cpus: 2,
            verifier_drivers: Vec::new(),
            test_signing: true,
            pool_capacity: 1 << 22,
        }
    }
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

/// Counters of epoch-based reclamation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EpochStats {
    /// The published (current) epoch.
    pub current: i64,
    /// The newest epoch whose frees have been released.
    pub released: i64,
    /// Items ever handed to `epoch_free`.
    pub retired: u64,
    /// Items ever released back to the pool.
    pub released_count: u64,
    /// Bytes waiting on free lists.
    pub pending_bytes: i64,
    /// Items waiting on free lists.
    pub pending_items: i64,
    /// Propose/commit cycles run.
    pub cycles: u64,
}

/// What a tool run printed and returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolOutput {
    /// 0 success, 1 failure, 2 usage error, 130 cancelled.
    pub exit_code: i32,
    /// Standard output (map_stress / ebpf_stats: one JSON line).
    pub stdout: String,
    /// Standard error (usage text, error messages).
    pub stderr: String,
}

/// Cancels a tool run (the guest cancels on a step timeout). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag {
    flag: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl CancelFlag {
    /// A flag that is only cancelled explicitly.
    pub fn new() -> Self {
        CancelFlag::default()
    }

    /// A flag that also counts as cancelled once `deadline` passes.
    pub fn with_deadline(deadline: Instant) -> Self {
        CancelFlag {
            flag: Arc::default(),
            deadline: Some(deadline),
        }
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
    }

    /// True once cancelled or past the deadline.
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// `BPF_MAP_TYPE_HASH`.
pub const BPF_MAP_TYPE_HASH: u32 = 1;
/// `BPF_MAP_TYPE_SAMPLE_HASH_MAP`: the sample extension's custom (object) map type.
pub const BPF_MAP_TYPE_SAMPLE_HASH_MAP: u32 = 15;

/// Parameters of a map to create. Keys and values are 4 bytes (`u32`), as in the sample
/// extension; other sizes are refused with `EBPF_INVALID_ARGUMENT` by the sample provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapDefinition {
    /// `ebpf_map_type_t` value: 1 (hash, built in) or a custom type such as 15.
    pub map_type: u32,
    /// Key size in bytes (4).
    pub key_size: u32,
    /// Value size in bytes (4).
    pub value_size: u32,
    /// Capacity.
    pub max_entries: u32,
}

impl MapDefinition {
    /// A 4-byte key/value map of `map_type` with `max_entries` entries.
    pub fn new(map_type: u32, max_entries: u32) -> Self {
        MapDefinition {
            map_type,
            key_size: 4,
            value_size: 4,
            max_entries,
        }
    }
}

/// `bpf_map_update_elem` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateOption {
    /// `BPF_ANY`: insert or replace.
    #[default]
    Any,
    /// `BPF_NOEXIST`: insert only.
    NoExist,
    /// `BPF_EXIST`: replace only.
    Exist,
}

/// A pinned map as `map_tool list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInfo {
    /// Pin name.
    pub name: String,
    /// Kernel object id.
    pub id: u32,
    /// `ebpf_map_type_t`.
    pub map_type: u32,
    /// Capacity.
    pub max_entries: u32,
    /// Current entry count.
    pub entries: u32,
}
