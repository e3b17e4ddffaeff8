//! Shared helpers: boot a kernel with ebpfcore and a sample extension variant loaded.

use sim_kernel::{DriverImage, Fault, ImageKind, Kernel, KernelConfig, ServiceState, Signing};
use std::time::{Duration, Instant};

pub fn image(kind: ImageKind, faults: &[Fault]) -> DriverImage {
    DriverImage {
        image: kind,
        signature: Signing::Test,
        faults: faults.to_vec(),
    }
}

/// Service name of the sample variant with `faults`, as the sim payload names it.
pub fn sample_service(faults: &[Fault]) -> String {
    match faults.first() {
        None => "sample_ebpf_ext".to_string(),
        Some(f) => format!("sample_ext_{}", f.name()),
    }
}

/// Boots 2 CPUs with ebpfcore and the sample extension (with `faults`) running.
pub fn boot_with(faults: &[Fault], verifier: bool) -> (Kernel, String) {
    let svc = sample_service(faults);
    let cfg = KernelConfig {
        cpus: 2,
        verifier_drivers: if verifier {
            vec![format!("{svc}.sys")]
        } else {
            vec![]
        },
        test_signing: true,
        ..KernelConfig::default()
    };
    let k = Kernel::boot(cfg).unwrap();
    k.load_driver("ebpfcore", &image(ImageKind::EbpfCore, &[]))
        .unwrap();
    k.load_driver(&svc, &image(ImageKind::SampleExt, faults))
        .unwrap();
    (k, svc)
}

pub fn boot() -> (Kernel, String) {
    boot_with(&[], false)
}

/// Polls `f` until true or `timeout`.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    f()
}

pub fn wait_state(k: &Kernel, svc: &str, want: ServiceState, timeout: Duration) -> bool {
    eventually(timeout, || k.driver_state(svc) == want)
}

pub fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}
