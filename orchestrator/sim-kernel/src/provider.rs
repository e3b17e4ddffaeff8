//! The custom-map provider interface (`ebpf_base_map_provider_dispatch_table_t` of
//! `include/ebpf_extension.h`), as the core calls it.
//!
//! Stored values are 64-bit: an object map's provider stores a "pointer" (a pool handle)
//! where the user's 4-byte value was. Every callback runs inside an epoch, with the
//! provider's module on the thread's frame stack.

use crate::base::KernelBase;
use crate::error::EbpfError;
use crate::maps::Map;
use crate::maps::MapDefinition;
use std::fmt::Debug;

/// A map provider's NMR registration (NMR itself never names the map-provider NPI).
pub(crate) type Registration = crate::nmr::Registration<dyn MapProvider>;

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

/// `ebpf_map_provider_data_t` as the core reads it at attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProviderData {
    pub(crate) map_type: u32,
    pub(crate) base_map_type: u32,
}

/// Why the core refused to bind a map to a provider (`_ebpf_custom_map_client_attach_provider`
/// fails the attach; map creation then fails with `EBPF_EXTENSION_FAILED_TO_LOAD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttachRefusal {
    /// No provider data.
    NoProviderData,
    /// The data names another map type than the registration.
    WrongMapType,
    /// Only `BPF_MAP_TYPE_HASH` is accepted as base type.
    BaseTypeNotHash,
    /// A required dispatch-table callback is missing.
    MissingCallback(Slot),
}

/// The core's checks of a provider before a map binds to it.
pub(crate) fn check_attach(p: &dyn MapProvider, map_type: u32) -> Result<(), AttachRefusal> {
    let data = p.provider_data().ok_or(AttachRefusal::NoProviderData)?;
    if data.map_type != map_type {
        return Err(AttachRefusal::WrongMapType);
    }
    if data.base_map_type != crate::maps::BPF_MAP_TYPE_HASH {
        return Err(AttachRefusal::BaseTypeNotHash);
    }
    // preprocess_associate_program_type is required too; the model has no programs here.
    for slot in [Slot::PreprocessMapCreate, Slot::PostprocessMapDelete] {
        if !p.implements(slot) {
            return Err(AttachRefusal::MissingCallback(slot));
        }
    }
    Ok(())
}

/// A custom map provider (one registration per map type).
pub(crate) trait MapProvider: Send + Sync + Debug {
    /// The provider data the registration carries (None: registered without it).
    fn provider_data(&self) -> Option<ProviderData>;
    /// Whether the dispatch table fills `slot` (every slot, unless a test provider says not).
    fn implements(&self, _slot: Slot) -> bool {
        true
    }
    /// The provider's own symbol for a dispatch-table slot (e.g. `PostprocessMapFindElement`
    /// ⇒ `_sample_map_find_entry`), for bugcheck attribution.
    fn symbol(&self, slot: Slot) -> &'static str;
    /// `base_properties.updates_original_value`: an object map.
    fn updates_original_value(&self) -> bool;
    /// The provider registered the deprecated `preprocess_map_delete_element` instead of
    /// `postprocess_map_delete_element`: the core's table then runs in PRE_FREE mode, calling
    /// it for a delete under the bucket lock before the entry leaves the table (otherwise
    /// after, outside); a value displaced by an update is reported after the new one is
    /// published, outside the lock, in both modes (`_ebpf_hash_table_replace_bucket`).
    fn pre_free(&self) -> bool {
        false
    }
    /// Validates the definition; returns (actual value size, map context).
    fn preprocess_map_create(
        &self,
        k: &KernelBase,
        def: &MapDefinition,
    ) -> Result<(u32, u64), EbpfError>;
    /// The map is gone: free the map context.
    fn postprocess_map_delete(&self, k: &KernelBase, map_ctx: u64) -> Result<(), EbpfError>;
    /// Turns a stored value into the value returned to the caller.
    fn postprocess_map_find_element(
        &self,
        k: &KernelBase,
        map_ctx: u64,
        key: u32,
        stored: u64,
        flags: u32,
    ) -> Result<u32, EbpfError>;
    /// Turns the caller's value into the value to store (may allocate).
    fn preprocess_map_update_element(
        &self,
        k: &KernelBase,
        map: &Map,
        key: u32,
        value: u32,
        flags: u32,
    ) -> Result<u64, EbpfError>;
    /// A stored value left the map (delete, displaced by update, undo, cleanup).
    fn postprocess_map_delete_element(
        &self,
        k: &KernelBase,
        map_ctx: u64,
        key: u32,
        stored: u64,
        flags: u32,
    ) -> Result<(), EbpfError>;
    /// The extension's own program helper reading a map value
    /// (`sample_ext_helper_map_get_value`): find through the core, then dereference.
    fn helper_map_get_value(&self, k: &KernelBase, map: &Map, key: u32) -> Result<u32, EbpfError>;
}

#[cfg(test)]
mod tests {
    //! Rule tests of the core's attach checks (provider data, HASH base type, required
    //! callbacks): a provider that fails one never gets a map bound to it.
    use super::*;

    /// A provider whose attach-time properties are set by the test; its callbacks are never
    /// reached (the attach is refused first) and fail if they are.
    #[derive(Debug)]
    struct Odd {
        data: Option<ProviderData>,
        missing: Option<Slot>,
    }

    impl MapProvider for Odd {
        fn provider_data(&self) -> Option<ProviderData> {
            self.data
        }
        fn implements(&self, slot: Slot) -> bool {
            self.missing != Some(slot)
        }
        fn symbol(&self, _: Slot) -> &'static str {
            "odd"
        }
        fn updates_original_value(&self) -> bool {
            false
        }
        fn preprocess_map_create(
            &self,
            _: &KernelBase,
            _: &MapDefinition,
        ) -> Result<(u32, u64), EbpfError> {
            Err(EbpfError::InvalidArgument)
        }
        fn postprocess_map_delete(&self, _: &KernelBase, _: u64) -> Result<(), EbpfError> {
            Err(EbpfError::InvalidArgument)
        }
        fn postprocess_map_find_element(
            &self,
            _: &KernelBase,
            _: u64,
            _: u32,
            _: u64,
            _: u32,
        ) -> Result<u32, EbpfError> {
            Err(EbpfError::InvalidArgument)
        }
        fn preprocess_map_update_element(
            &self,
            _: &KernelBase,
            _: &Map,
            _: u32,
            _: u32,
            _: u32,
        ) -> Result<u64, EbpfError> {
            Err(EbpfError::InvalidArgument)
        }
        fn postprocess_map_delete_element(
            &self,
            _: &KernelBase,
            _: u64,
            _: u32,
            _: u64,
            _: u32,
        ) -> Result<(), EbpfError> {
            Err(EbpfError::InvalidArgument)
        }
        fn helper_map_get_value(&self, _: &KernelBase, _: &Map, _: u32) -> Result<u32, EbpfError> {
            Err(EbpfError::InvalidArgument)
        }
    }

    const HASH: u32 = crate::maps::BPF_MAP_TYPE_HASH;

    fn odd(data: Option<(u32, u32)>, missing: Option<Slot>) -> Odd {
        Odd {
            data: data.map(|(map_type, base_map_type)| ProviderData {
                map_type,
                base_map_type,
            }),
            missing,
        }
    }

    #[test]
    fn attach_accepts_a_hash_based_provider_with_its_required_callbacks() {
        assert_eq!(check_attach(&odd(Some((15, HASH)), None), 15), Ok(()));
        // Optional callbacks may be missing.
        let no_find = odd(Some((15, HASH)), Some(Slot::PostprocessMapFindElement));
        assert_eq!(check_attach(&no_find, 15), Ok(()));
    }

    #[test]
    fn attach_refuses_bad_provider_data_base_types_and_missing_callbacks() {
        let cases = [
            (odd(None, None), AttachRefusal::NoProviderData),
            (odd(Some((16, HASH)), None), AttachRefusal::WrongMapType),
            (odd(Some((15, 2)), None), AttachRefusal::BaseTypeNotHash),
            (
                odd(Some((15, HASH)), Some(Slot::PreprocessMapCreate)),
                AttachRefusal::MissingCallback(Slot::PreprocessMapCreate),
            ),
            (
                odd(Some((15, HASH)), Some(Slot::PostprocessMapDelete)),
                AttachRefusal::MissingCallback(Slot::PostprocessMapDelete),
            ),
        ];
        for (p, want) in cases {
            assert_eq!(check_attach(&p, 15), Err(want), "{p:?}");
        }
    }

    /// End to end: map creation against a refused provider fails with
    /// `EBPF_EXTENSION_FAILED_TO_LOAD` and leaves no rundown reference behind.
    #[test]
    fn a_refused_attach_fails_map_creation_and_keeps_no_reference() {
        use crate::kernel::Kernel;
        use crate::nmr::Rundown;
        use crate::provider::Registration;
        use std::sync::Arc;
        let k = Kernel::boot(crate::config::KernelConfig::default()).unwrap();
        let core = crate::image::DriverImage {
            image: crate::image::ImageKind::EbpfCore,
            signature: crate::image::Signing::Test,
            faults: vec![],
        };
        k.load_driver("ebpfcore", &core).unwrap();
        let reg = Arc::new(Registration {
            map_type: 15,
            provider: Arc::new(odd(Some((15, 2)), None)),
            module: crate::modules::ModuleId(0),
            module_loaded: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            rundown: Rundown::default(),
        });
        assert!(k.inner.nmr.register(reg.clone()));
        let err = k
            .create_map(MapDefinition::new(15, 8))
            .expect_err("a provider with a non-HASH base type must be refused");
        assert_eq!(err, EbpfError::ExtensionFailedToLoad);
        assert_eq!(reg.rundown.refs(), 0);
        k.shutdown();
    }
}
