//! The custom-map provider interface (`ebpf_base_map_provider_dispatch_table_t` of
//! `include/ebpf_extension.h`), as the core calls it.
//!
//! Stored values are 64-bit: an object map's provider stores a "pointer" (a pool handle)
//! where the user's 4-byte value was. Every callback runs inside an epoch, with the
//! provider's module on the thread's frame stack.

use crate::error::EbpfError;
use crate::inner::KernelInner;
use crate::maps::Map;
use crate::types::MapDefinition;
use std::fmt::Debug;

/// `EBPF_MAP_OPERATION_HELPER`: the call comes from a program (helper function).
pub(crate) const OP_HELPER: u32 = 0x01;
/// `EBPF_MAP_OPERATION_UPDATE`: the delete notification is part of an update (displaced
/// value, or undo of a failed update).
pub(crate) const OP_UPDATE: u32 = 0x02;
/// `EBPF_MAP_OPERATION_MAP_CLEANUP`: the map is being deleted.
pub(crate) const OP_MAP_CLEANUP: u32 = 0x04;

/// A slot of the provider dispatch table (names a callback for attribution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    PreprocessMapCreate,
    PostprocessMapDelete,
    PostprocessMapFindElement,
    PreprocessMapUpdateElement,
    PostprocessMapDeleteElement,
    HelperMapGetValue,
}

/// A custom map provider (one registration per map type).
pub(crate) trait MapProvider: Send + Sync + Debug {
    /// The provider's own symbol for a dispatch-table slot (e.g. `PostprocessMapFindElement`
    /// ⇒ `_sample_map_find_entry`), for bugcheck attribution.
    fn symbol(&self, slot: Slot) -> &'static str;
    /// `base_properties.updates_original_value`: an object map.
    fn updates_original_value(&self) -> bool;
    /// The provider registered the deprecated `preprocess_map_delete_element` instead of
    /// `postprocess_map_delete_element`: the core's table then runs in PRE_FREE mode, calling
    /// it under the bucket lock before the entry leaves the table (otherwise after, outside).
    fn pre_free(&self) -> bool {
        false
    }
    /// Validates the definition; returns (actual value size, map context).
    fn preprocess_map_create(
        &self,
        k: &KernelInner,
        def: &MapDefinition,
    ) -> Result<(u32, u64), EbpfError>;
    /// The map is gone: free the map context.
    fn postprocess_map_delete(&self, k: &KernelInner, map_ctx: u64) -> Result<(), EbpfError>;
    /// Turns a stored value into the value returned to the caller.
    fn postprocess_map_find_element(
        &self,
        k: &KernelInner,
        map_ctx: u64,
        key: u32,
        stored: u64,
        flags: u32,
    ) -> Result<u32, EbpfError>;
    /// Turns the caller's value into the value to store (may allocate).
    fn preprocess_map_update_element(
        &self,
        k: &KernelInner,
        map: &Map,
        key: u32,
        value: u32,
        flags: u32,
    ) -> Result<u64, EbpfError>;
    /// A stored value left the map (delete, displaced by update, undo, cleanup).
    fn postprocess_map_delete_element(
        &self,
        k: &KernelInner,
        map_ctx: u64,
        key: u32,
        stored: u64,
        flags: u32,
    ) -> Result<(), EbpfError>;
    /// The extension's own program helper reading a map value
    /// (`sample_ext_helper_map_get_value`): find through the core, then dereference.
    fn helper_map_get_value(&self, k: &KernelInner, map: &Map, key: u32) -> Result<u32, EbpfError>;
}
