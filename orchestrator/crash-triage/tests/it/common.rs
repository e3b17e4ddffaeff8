//! Shared fixtures: a realistic module list and specs for the faults the scenarios meet.

use crash_triage::{DumpKind, DumpSpec, Module};

pub const NT_BASE: u64 = 0xFFFF_F807_4A00_0000;
pub const EBPFCORE_BASE: u64 = 0xFFFF_F807_5010_0000;
pub const SAMPLE_EXT_BASE: u64 = 0xFFFF_F807_5020_0000;
pub const NETEBPFEXT_BASE: u64 = 0xFFFF_F807_5030_0000;

pub fn modules() -> Vec<Module> {
    vec![
        Module::new("ntoskrnl.exe", NT_BASE, 0x0104_6000),
        Module::new("hal.dll", 0xFFFF_F807_4900_0000, 0x0009_6000),
        Module::new("ebpfcore.sys", EBPFCORE_BASE, 0x0008_2000),
        Module::new("sample_ebpf_ext.sys", SAMPLE_EXT_BASE, 0x0001_2000),
        Module::new("netebpfext.sys", NETEBPFEXT_BASE, 0x0003_4000),
    ]
}

/// A use-after-free read in the sample extension's find callback.
pub fn page_fault(kind: DumpKind) -> DumpSpec {
    let rip = SAMPLE_EXT_BASE + 0x1A3C;
    DumpSpec::new(
        kind,
        0x50,
        [0xFFFF_B00A_1C2E_3000, 0, rip, 2],
        rip,
        modules(),
    )
}

/// A spec for `code` with RIP at `offset` into `module_base`.
pub fn fault(kind: DumpKind, code: u32, params: [u64; 4], rip: u64) -> DumpSpec {
    DumpSpec::new(kind, code, params, rip, modules())
}

/// Where the hot-unload race's driver was loaded before it went away.
pub const UNLOADED_BASE: u64 = 0xFFFF_F807_5040_0000;
pub const UNLOADED_DRIVER: &str = "sample_ext_detach_without_rundown.sys";

/// The hot-unload race as the sim writes it: `code` (0x50 or 0xCE) at `driver_offset` in
/// an unloaded driver, called from ebpfcore's `caller`, called from the kernel; ebpfcore
/// and the kernel carry their export directories.
pub fn unloaded_race(kind: DumpKind, code: u32, driver_offset: u64, caller: &str) -> DumpSpec {
    use crash_triage::{Export, UnloadedModule};
    let export = |name: &str, rva: u32| Export {
        name: name.to_owned(),
        rva,
    };
    let mut modules = modules();
    modules[0].exports = vec![
        export("KeBugCheckEx", 0x4_1000),
        export("IopLoadDriver", 0x8_2000),
    ];
    modules[2].exports = vec![
        export("ebpf_map_find_entry", 0x1_1000),
        export("ebpf_map_update_entry", 0x1_2000),
        export("ebpf_program_invoke", 0x2_0000),
    ];
    let caller_rva = modules[2]
        .exports
        .iter()
        .find(|e| e.name == caller)
        .map_or(0x3_0000, |e| e.rva);
    let rip = UNLOADED_BASE + driver_offset;
    let mut spec = DumpSpec::new(kind, code, [rip, 0x10, rip, 0], rip, modules);
    spec.unloaded = vec![UnloadedModule {
        name: UNLOADED_DRIVER.to_owned(),
        base: UNLOADED_BASE,
        size: 0x2_4000,
        time: spec.system_time - chrono::Duration::milliseconds(3),
    }];
    spec.stack = vec![
        EBPFCORE_BASE + u64::from(caller_rva) + 0x3b,
        NT_BASE + 0x8_2000 + 0x3b,
    ];
    spec
}
