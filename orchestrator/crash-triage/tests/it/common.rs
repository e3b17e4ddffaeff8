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
