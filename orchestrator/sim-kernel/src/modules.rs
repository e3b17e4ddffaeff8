//! Loaded-module table with fake kernel-VA image ranges, and the per-thread stack of driver
//! frames that tells a bugcheck which `module!function` was running.

use parking_lot::RwLock;
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

/// A kernel image loaded in the simulated kernel, with a deterministic fake address range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Image name, e.g. `ebpfcore.sys`.
    pub name: String,
    /// Image base (kernel VA, like `0xFFFFF806_1000_0000`).
    pub base: u64,
    /// Image size in bytes.
    pub size: u64,
}

impl Module {
    /// True if `addr` lies in this image.
    pub fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.base + self.size
    }
}

/// Index of a module in the table (never reused: a reloaded driver gets a new entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ModuleId(pub(crate) u32);

/// The kernel image, always loaded first.
pub(crate) const KERNEL_MODULE: ModuleId = ModuleId(0);
/// Name of the kernel image.
pub(crate) const KERNEL_IMAGE: &str = "ntoskrnl.exe";
const KERNEL_BASE: u64 = 0xFFFF_F806_0000_0000;
const KERNEL_SIZE: u64 = 0x0104_6000;
/// Drivers are placed one per 1 MiB slot above this base, in load order.
const DRIVER_BASE: u64 = 0xFFFF_F806_1000_0000;
const DRIVER_SLOT: u64 = 0x0010_0000;

#[derive(Debug)]
struct Entry {
    module: Module,
    loaded: Arc<AtomicBool>,
    /// The functions the model attributes code to in this image (its "exports").
    functions: &'static [&'static str],
    unloaded_at: parking_lot::Mutex<Option<SystemTime>>,
}

/// The kernel functions the model attributes bugchecks and call chains to.
pub(crate) const NT_FUNCTIONS: &[&str] = &[
    "KeBugCheckEx",
    "MmAccessFault",
    "ExFreePoolWithTag",
    "KiProcessNMI",
    "KeWaitForSingleObject",
    "ebpf_epoch_free",
    "IopLoadDriver",
    "IopUnloadDriver",
    "NtDeviceIoControlFile",
    // NMR lives in NETIO.SYS; the model has one kernel image for every system routine.
    NMR_WAIT_CLIENT_DEREGISTER,
];
/// The passive-only NMR routine `ebpf_extension_unload` waits in (upstream #2191).
pub(crate) const NMR_WAIT_CLIENT_DEREGISTER: &str = "NmrWaitForClientDeregisterComplete";
/// Caller-side (core) functions of the map path; see `maps::ops`.
pub(crate) const CORE_MAP_FIND: &str = "ebpf_map_find_entry";
pub(crate) const CORE_MAP_UPDATE: &str = "ebpf_map_update_entry";
pub(crate) const CORE_MAP_DELETE: &str = "ebpf_map_delete_entry";
pub(crate) const CORE_MAP_CREATE: &str = "ebpf_map_create";
pub(crate) const CORE_MAP_DESTROY: &str = "_ebpf_map_delete";
pub(crate) const CORE_PROGRAM_INVOKE: &str = "ebpf_program_invoke";
/// ebpfcore's NMR client teardown (`ebpf_extension_unload`), the caller of #2191.
pub(crate) const CORE_EXTENSION_UNLOAD: &str = "ebpf_extension_unload";
/// ebpfcore's link invoke routine (the hook provider's `invoke_program` dispatch entry).
pub(crate) const CORE_LINK_INVOKE: &str = "_ebpf_link_instance_invoke";
/// The sample extension's device routine that runs the hook (`IOCTL_SAMPLE_EBPF_EXT_CTL_RUN`).
pub(crate) const SAMPLE_DEVICE_CONTROL: &str = "_sample_ebpf_ext_driver_io_device_control";
/// The sample hook provider's routines (see `sample_hook`).
pub(crate) const SAMPLE_HOOK_INVOKE: &str = "_sample_ebpf_extension_invoke_program";
pub(crate) const SAMPLE_HOOK_ATTACH_CLIENT: &str = "_ebpf_extension_hook_provider_attach_client";
pub(crate) const SAMPLE_HOOK_DETACH_CLIENT: &str = "_ebpf_extension_hook_provider_detach_client";
/// ebpfcore's functions.
pub(crate) const CORE_FUNCTIONS: &[&str] = &[
    "DriverEntry",
    "_ebpf_driver_unload",
    "_ebpf_epoch_release_free_list",
    CORE_MAP_FIND,
    CORE_MAP_UPDATE,
    CORE_MAP_DELETE,
    CORE_MAP_CREATE,
    CORE_MAP_DESTROY,
    CORE_PROGRAM_INVOKE,
    CORE_LINK_INVOKE,
    CORE_EXTENSION_UNLOAD,
];
/// The sample extension's functions (its provider callbacks, entry and unload).
pub(crate) const SAMPLE_FUNCTIONS: &[&str] = &[
    "DriverEntry",
    "_sample_ebpf_ext_driver_unload",
    "_sample_map_create",
    "_sample_map_delete",
    "_sample_map_find_entry",
    "_sample_map_update_entry",
    "_sample_map_delete_entry",
    "_sample_ext_helper_map_get_value",
    SAMPLE_DEVICE_CONTROL,
    SAMPLE_HOOK_INVOKE,
    SAMPLE_HOOK_ATTACH_CLIENT,
    SAMPLE_HOOK_DETACH_CLIENT,
];

/// Offset of the call instruction's successor inside a calling function: where a return
/// address on the stack points.
const CALL_SITE: u64 = 0x3b;

/// All modules ever loaded in this boot (unloaded ones are kept: their range still names
/// them in a 0xCE bugcheck).
#[derive(Debug)]
pub(crate) struct ModuleTable {
    entries: RwLock<Vec<Entry>>,
}

impl Default for ModuleTable {
    fn default() -> Self {
        let kernel = Entry {
            module: Module {
                name: KERNEL_IMAGE.into(),
                base: KERNEL_BASE,
                size: KERNEL_SIZE,
            },
            loaded: Arc::new(AtomicBool::new(true)),
            functions: NT_FUNCTIONS,
            unloaded_at: parking_lot::Mutex::new(None),
        };
        ModuleTable {
            entries: RwLock::new(vec![kernel]),
        }
    }
}

impl ModuleTable {
    /// Maps a new image of `size` bytes in the next free slot.
    pub(crate) fn load(
        &self,
        name: &str,
        size: u64,
        functions: &'static [&'static str],
    ) -> ModuleId {
        let mut e = self.entries.write();
        let slot = (e.len() - 1) as u64;
        e.push(Entry {
            module: Module {
                name: name.to_string(),
                base: DRIVER_BASE + slot * DRIVER_SLOT,
                size,
            },
            loaded: Arc::new(AtomicBool::new(true)),
            functions,
            unloaded_at: parking_lot::Mutex::new(None),
        });
        ModuleId((e.len() - 1) as u32)
    }

    pub(crate) fn unload(&self, id: ModuleId) {
        if let Some(e) = self.entries.read().get(id.0 as usize) {
            *e.unloaded_at.lock() = Some(SystemTime::now());
            e.loaded.store(false, Ordering::Release);
        }
    }

    /// The module's loaded flag, cached by callers on hot paths (no table lock per call).
    pub(crate) fn loaded_flag(&self, id: ModuleId) -> Arc<AtomicBool> {
        let e = self.entries.read();
        e.get(id.0 as usize)
            .map_or_else(|| Arc::new(AtomicBool::new(false)), |e| e.loaded.clone())
    }

    pub(crate) fn get(&self, id: ModuleId) -> Module {
        let e = self.entries.read();
        e.get(id.0 as usize).unwrap_or(&e[0]).module.clone()
    }

    pub(crate) fn loaded(&self) -> Vec<Module> {
        self.entries
            .read()
            .iter()
            .filter(|e| e.loaded.load(Ordering::Acquire))
            .map(|e| e.module.clone())
            .collect()
    }

    pub(crate) fn unloaded(&self) -> Vec<Module> {
        self.unloaded_with_time().into_iter().map(|u| u.0).collect()
    }

    /// Unloaded modules with the time of their unload, in unload order.
    pub(crate) fn unloaded_with_time(&self) -> Vec<(Module, SystemTime)> {
        let mut out: Vec<_> = self
            .entries
            .read()
            .iter()
            .filter(|e| !e.loaded.load(Ordering::Acquire))
            .map(|e| {
                let at = e.unloaded_at.lock().unwrap_or(SystemTime::UNIX_EPOCH);
                (e.module.clone(), at)
            })
            .collect();
        out.sort_by_key(|u| u.1);
        out
    }

    /// The functions of the image at `base` with their addresses.
    pub(crate) fn exports(&self, base: u64) -> Vec<(&'static str, u64)> {
        let e = self.entries.read();
        e.iter()
            .filter(|e| e.module.base == base)
            .flat_map(|e| {
                e.functions
                    .iter()
                    .map(|f| (*f, function_address(&e.module, f)))
            })
            .collect()
    }

    /// Return addresses for a chain of callers (outermost first in `callers`), innermost
    /// first as they sit on the stack above RSP.
    pub(crate) fn return_addresses(&self, callers: &[Frame]) -> Vec<u64> {
        callers
            .iter()
            .rev()
            .map(|f| self.rip(f.module, f.function) + CALL_SITE)
            .collect()
    }

    /// A stable instruction address for `function` inside the module's image.
    pub(crate) fn rip(&self, id: ModuleId, function: &str) -> u64 {
        let m = self.get(id);
        function_address(&m, function)
    }
}

/// Deterministic address of a function in an image: FNV-1a of its name, placed in the
/// image's text range and 16-byte aligned.
pub(crate) fn function_address(m: &Module, function: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in function.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let text = m.size.saturating_sub(0x2000).max(0x10);
    m.base + 0x1000 + ((h % text) & !0xF)
}

/// One driver function on the current thread's simulated stack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) module: ModuleId,
    pub(crate) function: &'static str,
}

thread_local! {
    static FRAMES: RefCell<Vec<Frame>> = const { RefCell::new(Vec::new()) };
}

/// Pops the frame it pushed when dropped.
#[derive(Debug)]
pub(crate) struct FrameGuard(());

impl Drop for FrameGuard {
    fn drop(&mut self) {
        FRAMES.with(|f| {
            f.borrow_mut().pop();
        });
    }
}

/// Marks `module!function` as running on this thread until the guard drops.
#[inline]
pub(crate) fn push_frame(module: ModuleId, function: &'static str) -> FrameGuard {
    FRAMES.with(|f| f.borrow_mut().push(Frame { module, function }));
    FrameGuard(())
}

/// Every frame on this thread, outermost first.
pub(crate) fn current_frames() -> Vec<Frame> {
    FRAMES.with(|f| f.borrow().clone())
}

/// The innermost driver frame of this thread, if any driver code is running.
pub(crate) fn current_frame() -> Option<Frame> {
    FRAMES.with(|f| f.borrow().last().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rip_lies_inside_the_module_and_is_stable() {
        let t = ModuleTable::default();
        let a = t.load("ebpfcore.sys", 0x8_0000, CORE_FUNCTIONS);
        let b = t.load("sample_ebpf_ext.sys", 0x2_0000, SAMPLE_FUNCTIONS);
        let mb = t.get(b);
        assert_eq!(mb.base, 0xFFFF_F806_1010_0000);
        let rip = t.rip(b, "_sample_map_find_entry");
        assert!(mb.contains(rip));
        assert_eq!(rip, t.rip(b, "_sample_map_find_entry"));
        assert!(t.get(a).contains(t.rip(a, "ebpf_epoch_free")));
        t.unload(b);
        assert_eq!(t.loaded().len(), 2);
        assert_eq!(t.unloaded()[0].name, "sample_ebpf_ext.sys");
    }

    #[test]
    fn exports_and_return_addresses_point_into_the_calling_functions() {
        let t = ModuleTable::default();
        let core = t.load("ebpfcore.sys", 0x8_0000, CORE_FUNCTIONS);
        let ext = t.load("sample_ebpf_ext.sys", 0x2_4000, SAMPLE_FUNCTIONS);
        let exports = t.exports(t.get(ext).base);
        assert_eq!(exports.len(), SAMPLE_FUNCTIONS.len());
        assert!(exports.iter().all(|(f, a)| *a == t.rip(ext, f)));
        let chain = [
            Frame {
                module: KERNEL_MODULE,
                function: "NtDeviceIoControlFile",
            },
            Frame {
                module: core,
                function: CORE_MAP_FIND,
            },
        ];
        assert_eq!(
            t.return_addresses(&chain),
            [
                t.rip(core, CORE_MAP_FIND) + CALL_SITE,
                t.rip(KERNEL_MODULE, "NtDeviceIoControlFile") + CALL_SITE,
            ]
        );
        t.unload(ext);
        let gone = t.unloaded_with_time();
        assert_eq!(gone.len(), 1);
        assert!(gone[0].1 > SystemTime::UNIX_EPOCH);
    }

    #[test]
    fn frames_nest_and_pop() {
        assert!(current_frame().is_none());
        let _a = push_frame(ModuleId(1), "outer");
        {
            let _b = push_frame(ModuleId(2), "inner");
            assert_eq!(current_frame().unwrap().function, "inner");
        }
        assert_eq!(current_frame().unwrap().function, "outer");
    }
}
