//! What a map is asked to be (type, sizes, capacity, update flags) and how `map_tool list`
//! shows a pinned one.

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
