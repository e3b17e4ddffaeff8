//! How to boot a simulated kernel: the one configuration value `Kernel::boot` takes.

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
