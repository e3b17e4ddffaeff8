//! One scenario file, both labs: the headline scenarios name no payload, so the sim lab runs
//! them with `sim-ebpf` and the Hyper-V example lab plans them with `ebpf-for-windows`, which
//! deploys hvlab's Windows tools. (Running them on the sim lab is covered in run.rs.)

use crate::support::{Sandbox, text};

/// The dry run on the Hyper-V example lab copies the Windows tool and its C# into the guest.
#[test]
fn custom_map_stress_plans_the_windows_tool_on_the_hyperv_example_lab() {
    let sb = Sandbox::new();
    let out = sb
        .hvlab()
        .args(["run", "custom-map-stress", "--dry-run", "--lab"])
        .arg(crate::support::repo_root().join("vm-configs/hyperv-example.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        plan.contains("payload `ebpf-for-windows`"),
        "the lab's default payload: {plan}"
    );
    for deployed in [
        r"driver-payloads/windows-tools/map_stress.cmd' -> 'C:\hvlab\bin\map_stress.cmd'",
        r"driver-payloads/windows-tools/hvlab_tools.ps1' -> 'C:\hvlab\bin\hvlab_tools.ps1'",
        r"driver-payloads/windows-tools/MapStress.cs' -> 'C:\hvlab\bin\MapStress.cs'",
        r"custom_map_basic.sys' -> 'C:\eBPF\custom_map_basic.sys'",
    ] {
        assert!(plan.contains(deployed), "missing {deployed:?} in the plan");
    }
    // ...and the scenario's step invokes it, with the arguments a real provider needs.
    for invoked in [
        r"'Program' = 'C:\hvlab\bin\map_stress.cmd'",
        "--map-type sample --key-size 4 --value-size 4",
    ] {
        assert!(plan.contains(invoked), "missing {invoked:?} in the plan");
    }
}

/// `--payload` replaces the lab's default; one that does not fit the lab is a config error
/// (exit 2) naming the payload and the lab, not "no scenario named ...".
#[test]
fn a_payload_that_does_not_fit_the_lab_is_a_config_error() {
    let sb = Sandbox::new();
    let out = sb
        .hvlab()
        .args([
            "run",
            "smoke",
            "--dry-run",
            "--payload",
            "sim-ebpf",
            "--lab",
        ])
        .arg(crate::support::repo_root().join("vm-configs/hyperv-example.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "payload `sim-ebpf` (named by `--payload`) does not run on lab `hyperv-example`"
        ),
        "{err}"
    );
    let out = sb
        .hvlab()
        .args(["run", "smoke", "--dry-run", "--payload", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown payload `nope` (named by `--payload`)")
    );
}

/// The hook-side restart scenario plans upstream's sample-hook path on the Hyper-V lab:
/// prog_invoke (C#) with test_sample_ebpf.sys, beside the restarts of sample_ebpf_ext.
#[test]
fn restart_hook_extension_plans_prog_invoke_on_the_hyperv_example_lab() {
    let sb = Sandbox::new();
    let out = sb
        .hvlab()
        .args([
            "run",
            "restart-hook-extension-during-invocation",
            "--dry-run",
            "--lab",
        ])
        .arg(crate::support::repo_root().join("vm-configs/hyperv-example.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    for want in [
        r"driver-payloads/windows-tools/ProgInvoke.cs' -> 'C:\hvlab\bin\ProgInvoke.cs'",
        r"test_sample_ebpf.sys' -> 'C:\eBPF\test_sample_ebpf.sys'",
        r"'Program' = 'C:\hvlab\bin\prog_invoke.cmd'",
        "--links 2 --rate 0 --program C:\\eBPF\\test_sample_ebpf.sys --program-name test_program_entry",
    ] {
        assert!(plan.contains(want), "missing {want:?} in the plan");
    }
}
