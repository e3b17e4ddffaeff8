//! The sample extension (after `undocked/tests/sample/ext/drv/sample_ext.c`): provider of
//! the object map type `BPF_MAP_TYPE_SAMPLE_HASH_MAP`, entries allocated with
//! `epoch_allocate` (ebpfcore's, through the client dispatch table: charged to ebpfcore)
//! and freed with `epoch_free`, plus its fault switches.
//!
//! Each fault is a change to the driver's code, not a verdict: what goes wrong, and when,
//! follows from the model's concurrency.
//! - `free_without_epoch`: the delete callback frees the entry at once; a reader that
//!   fetched the pointer just before reads freed memory (0x50).
//! - `detach_without_rundown`: unload does not wait for the maps' rundown and frees their
//!   contexts; in-flight callbacks touch freed memory (0x50), later ones run unloaded code
//!   (0xCE). The entries still held are ebpfcore's allocations, so Driver Verifier does not
//!   charge them to the extension's unload.
//! - `double_free_on_replace`: update frees the entry it *peeked* in the map and ignores the
//!   displaced-value callback; two replacers that peek the same entry free it twice (0x139,
//!   or 0xC2 if the first free was already released).
//! - `leak_on_replace`: the displaced-value callback (flag `UPDATE`) does nothing.
//! - `stuck_reader`: the program helper, on a miss, waits for a "refill" event that only
//!   unload sets, inside its epoch: releases stop and pending bytes grow.
//! - `hang_on_unload`: `DriverUnload` waits for an event nothing sets.
//! - `legacy_preprocess_delete` (not a bug): the provider registers the deprecated
//!   `preprocess_map_delete_element`, which puts the core's table in PRE_FREE mode.
//! - `invoke_without_rundown`: the hook side invokes programs without the per-client
//!   rundown (see `sample_hook`).
//! - `rundown_init_after_attach`: the hook side initializes a client's rundown after
//!   publishing the client (see `sample_hook`).

use crate::base::KernelBase;
use crate::error::EbpfError;
use crate::hook::HookRegistration;
use crate::image::Fault;
use crate::inner::{Event, KernelInner};
use crate::maps::Map;
use crate::maps::{BPF_MAP_TYPE_SAMPLE_HASH_MAP, MapDefinition};
use crate::modules::ModuleId;
use crate::nmr::{Cancelled, Rundown};
use crate::pool::{OwnerId, PoolHandle, TagId};
use crate::provider::{MapProvider, OP_HELPER, OP_UPDATE, Registration, Slot};
use crate::sample_hook::SampleHook;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The sample extension's pool tag.
pub(crate) const SAMPLE_TAG: [u8; 4] = *b"Smpl";
/// Size of one map entry (`sample_hash_map_entry_t`, cache aligned).
const ENTRY_SIZE: u32 = 64;
/// Size of a map context (`sample_map_context_t`).
const MAP_CONTEXT_SIZE: u32 = 128;
/// Size of the provider's binding context, allocated at DriverEntry.
const PROVIDER_CONTEXT_SIZE: u32 = 256;

/// The provider object of one loaded instance of the sample driver.
#[derive(Debug)]
pub(crate) struct SampleExt {
    /// The hook side (program-info and hook provider), registered at DriverEntry.
    hook: Mutex<Option<Arc<HookRegistration>>>,
    module: ModuleId,
    owner: OwnerId,
    tag: TagId,
    faults: Vec<Fault>,
    provider_context: Mutex<Option<PoolHandle>>,
    /// Live map contexts (what a detach that skips the rundown frees).
    map_contexts: Mutex<Vec<PoolHandle>>,
    /// Set at unload; the stuck reader waits for it.
    refill: Event,
    stuck_taken: AtomicBool,
    /// Nothing sets it: the hanging unload waits for it.
    never: Event,
}

impl SampleExt {
    pub(crate) fn new(
        k: &KernelInner,
        module: ModuleId,
        owner: OwnerId,
        faults: Vec<Fault>,
    ) -> Self {
        SampleExt {
            hook: Mutex::new(None),
            module,
            owner,
            tag: k.pool.tag(SAMPLE_TAG),
            faults,
            provider_context: Mutex::new(None),
            map_contexts: Mutex::new(Vec::new()),
            refill: Event::default(),
            stuck_taken: AtomicBool::new(false),
            never: Event::default(),
        }
    }

    fn has(&self, f: Fault) -> bool {
        self.faults.contains(&f)
    }

    /// DriverEntry: allocate the provider context, register the map provider.
    pub(crate) fn driver_entry(
        self: &Arc<Self>,
        k: &KernelInner,
    ) -> Result<Arc<Registration>, (u32, String)> {
        let ctx = k
            .allocate(self.tag, self.owner, PROVIDER_CONTEXT_SIZE, 0)
            .map_err(|e| {
                (
                    0xC000_009A,
                    format!("failed to allocate the provider context: {e}"),
                )
            })?;
        *self.provider_context.lock() = Some(ctx);
        if let Err(e) = self.register_hook(k) {
            let _ = k.free(ctx);
            *self.provider_context.lock() = None;
            return Err(e);
        }
        let reg = Arc::new(Registration {
            map_type: BPF_MAP_TYPE_SAMPLE_HASH_MAP,
            provider: self.clone(),
            module: self.module,
            module_loaded: k.modules.loaded_flag(self.module),
            rundown: Rundown::default(),
        });
        if !k.nmr.register(reg.clone()) {
            let _ = k.free(ctx);
            *self.provider_context.lock() = None;
            self.unregister_hook(k);
            return Err((
                0xC000_0035,
                format!(
                    "NmrRegisterProvider: map type {BPF_MAP_TYPE_SAMPLE_HASH_MAP} already has a \
                     provider (STATUS_OBJECT_NAME_COLLISION)"
                ),
            ));
        }
        Ok(reg)
    }

    /// DriverUnload (runs on the unload thread, with this module's frame pushed).
    pub(crate) fn driver_unload(
        &self,
        k: &KernelInner,
        reg: &Arc<Registration>,
    ) -> Result<(), EbpfError> {
        if self.has(Fault::HangOnUnload) {
            // Waits for a work item that was never queued.
            k.wait_event(&self.never)?;
        }
        // Lets a stuck helper go (it was waiting for this "refill").
        self.refill.set();
        // Program-info and hook providers first, as `_sample_ebpf_ext_driver_unload`.
        if let Some(hook) = self.hook.lock().take() {
            k.hooks.deregister(k, &hook)?;
            hook.provider.free_info_data(k)?;
            k.hooks.close_device(&hook);
        }
        k.nmr.begin_deregister(reg);
        let result = if self.has(Fault::DetachWithoutRundown) {
            // Bug: the detach callback returns at once and the driver tears down the map
            // contexts it handed out, as if every map were gone.
            reg.rundown.close();
            let ctxs = std::mem::take(&mut *self.map_contexts.lock());
            ctxs.into_iter().try_for_each(|c| k.free(c))
        } else {
            let _stuck = k.mark_stuck();
            reg.rundown
                .wait_for_release()
                .map_err(|Cancelled| k.halted())
        };
        k.nmr.end_deregister(reg);
        result?;
        if let Some(ctx) = self.provider_context.lock().take() {
            k.free(ctx)?;
        }
        Ok(())
    }

    /// Registers the hook side (program-info and hook providers).
    fn register_hook(&self, k: &KernelInner) -> Result<(), (u32, String)> {
        let hook = SampleHook::new(
            k,
            self.module,
            self.owner,
            self.tag,
            self.has(Fault::InvokeWithoutRundown),
            self.has(Fault::RundownInitAfterAttach),
        )
        .map_err(|e| {
            (
                0xC000_009A,
                format!("failed to allocate the program information: {e}"),
            )
        })?;
        let reg = Arc::new(HookRegistration {
            provider: Arc::new(hook),
            device: parking_lot::RwLock::new(false),
        });
        if !k.hooks.register(k, reg.clone()) {
            let _ = reg.provider.free_info_data(k);
            return Err((
                0xC000_0035,
                "NmrRegisterProvider: the sample program type already has a provider \
                 (STATUS_OBJECT_NAME_COLLISION)"
                    .to_string(),
            ));
        }
        *self.hook.lock() = Some(reg);
        Ok(())
    }

    /// Undoes [`SampleExt::register_hook`] when a later step of DriverEntry fails.
    fn unregister_hook(&self, k: &KernelInner) {
        if let Some(hook) = self.hook.lock().take() {
            let _ = k.hooks.deregister(k, &hook);
            let _ = hook.provider.free_info_data(k);
            k.hooks.close_device(&hook);
        }
    }

    fn entry(stored: u64) -> PoolHandle {
        PoolHandle::from_raw(stored)
    }

    fn check_context(&self, k: &KernelBase, map_ctx: u64) -> Result<(), EbpfError> {
        // Every callback reads its map context first (`MAP_TYPE(context)`).
        k.read(PoolHandle::from_raw(map_ctx)).map(|_| ())
    }
}

impl MapProvider for SampleExt {
    fn provider_data(&self) -> Option<crate::provider::ProviderData> {
        Some(crate::provider::ProviderData {
            map_type: BPF_MAP_TYPE_SAMPLE_HASH_MAP,
            base_map_type: crate::maps::BPF_MAP_TYPE_HASH,
        })
    }

    fn symbol(&self, slot: Slot) -> &'static str {
        match slot {
            Slot::PreprocessMapCreate => "_sample_map_create",
            Slot::PostprocessMapDelete => "_sample_map_delete",
            Slot::PostprocessMapFindElement => "_sample_map_find_entry",
            Slot::PreprocessMapUpdateElement => "_sample_map_update_entry",
            Slot::PostprocessMapDeleteElement => "_sample_map_delete_entry",
            Slot::HelperMapGetValue => "_sample_ext_helper_map_get_value",
        }
    }

    fn updates_original_value(&self) -> bool {
        true
    }

    fn pre_free(&self) -> bool {
        self.has(Fault::LegacyPreprocessDelete)
    }

    fn preprocess_map_create(
        &self,
        k: &KernelBase,
        def: &MapDefinition,
    ) -> Result<(u32, u64), EbpfError> {
        // This is an object map: both key and value sizes must be 4 bytes.
        if def.key_size != 4 || def.value_size != 4 {
            return Err(EbpfError::InvalidArgument);
        }
        let ctx = k.epoch_allocate(self.tag, MAP_CONTEXT_SIZE, u64::from(def.max_entries))?;
        self.map_contexts.lock().push(ctx);
        // The stored value is a pointer to the entry.
        Ok((8, ctx.raw()))
    }

    fn postprocess_map_delete(&self, k: &KernelBase, map_ctx: u64) -> Result<(), EbpfError> {
        self.check_context(k, map_ctx)?;
        let ctx = PoolHandle::from_raw(map_ctx);
        self.map_contexts.lock().retain(|c| *c != ctx);
        k.epoch_free(ctx)
    }

    fn postprocess_map_find_element(
        &self,
        k: &KernelBase,
        map_ctx: u64,
        _key: u32,
        stored: u64,
        flags: u32,
    ) -> Result<u32, EbpfError> {
        if flags & OP_HELPER != 0 {
            return Err(EbpfError::OperationNotSupported);
        }
        self.check_context(k, map_ctx)?;
        // Dereference the object the stored pointer names.
        Ok(k.read(Self::entry(stored))? as u32)
    }

    fn preprocess_map_update_element(
        &self,
        k: &KernelBase,
        map: &Map,
        key: u32,
        value: u32,
        flags: u32,
    ) -> Result<u64, EbpfError> {
        if flags & OP_HELPER != 0 {
            return Err(EbpfError::OperationNotSupported);
        }
        let map_ctx = map.binding.as_ref().map_or(0, |b| b.map_ctx);
        self.check_context(k, map_ctx)?;
        if self.has(Fault::DoubleFreeOnReplace) {
            // Bug: "free the old object now, the core will just overwrite the pointer" —
            // but a concurrent replacer can peek the same object before either swaps it.
            if let Some(old) = map.find_stored(key) {
                k.epoch_free(Self::entry(old))?;
            }
        }
        let entry = k.epoch_allocate(self.tag, ENTRY_SIZE, u64::from(value))?;
        Ok(entry.raw())
    }

    fn postprocess_map_delete_element(
        &self,
        k: &KernelBase,
        map_ctx: u64,
        _key: u32,
        stored: u64,
        flags: u32,
    ) -> Result<(), EbpfError> {
        // Programs cannot delete from an object map; nothing to free.
        if flags & OP_HELPER != 0 {
            return Ok(());
        }
        self.check_context(k, map_ctx)?;
        if flags & OP_UPDATE != 0
            && (self.has(Fault::LeakOnReplace) || self.has(Fault::DoubleFreeOnReplace))
        {
            // leak_on_replace: the displaced value is dropped on the floor.
            // double_free_on_replace: "already freed in update" (not always the same one).
            return Ok(());
        }
        let entry = Self::entry(stored);
        if self.has(Fault::FreeWithoutEpoch) {
            k.free(entry)
        } else {
            k.epoch_free(entry)
        }
    }

    fn helper_map_get_value(&self, k: &KernelBase, map: &Map, key: u32) -> Result<u32, EbpfError> {
        let map_ctx = map.binding.as_ref().map_or(0, |b| b.map_ctx);
        self.check_context(k, map_ctx)?;
        // client_dispatch->find_element_function, then dereference the object.
        match map.find_stored(key) {
            Some(stored) => Ok(k.read(Self::entry(stored))? as u32),
            None => {
                if self.has(Fault::StuckReader) && !self.stuck_taken.swap(true, Ordering::AcqRel) {
                    // Bug: waits (inside the program's epoch) for a refill only unload signals.
                    k.wait_event(&self.refill)?;
                }
                Err(EbpfError::KeyNotFound)
            }
        }
    }
}
