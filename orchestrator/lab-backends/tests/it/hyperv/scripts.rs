//! Snapshots of every generated script for representative inputs: what a host or guest
//! receives, byte for byte (`cargo insta review` after a deliberate change).

use lab_backends::hyperv::script::{PsDirect, PsValue};
use lab_backends::hyperv::scripts::{files, guest as gs, host as hs};

fn snap(name: &str, text: String) {
    assert_no_prompt(name, &text);
    insta::assert_snapshot!(name, text);
}

/// Cmdlets that may ask for confirmation (ConfirmImpact High or a documented prompt) must be
/// told not to: nobody answers a prompt on a remote host, and the script would hang.
fn assert_no_prompt(name: &str, text: &str) {
    for line in text.lines() {
        for cmdlet in [
            "Remove-VMSnapshot",
            "Restore-VMSnapshot",
            "Remove-VM ",
            "Stop-VM ",
            "Remove-Item ",
            "Debug-VM ",
        ] {
            if let Some(at) = line.find(cmdlet) {
                let call = &line[at..];
                let call = call.split(['|', ';', '}']).next().unwrap_or(call);
                assert!(
                    call.contains("-Confirm:$false") || call.contains("-Force"),
                    "{name}: `{}` may prompt for confirmation",
                    call.trim()
                );
            }
        }
    }
}

fn new_vm() -> hs::NewVm {
    hs::NewVm {
        name: "hvlab-20250101-000000-abcd-ws2022-0".into(),
        vm_root: r"D:\hvlab\vms".into(),
        base_vhdx: r"D:\hvlab\base\ws2022-testsigning.vhdx".into(),
        generation: 2,
        memory_bytes: 4 * 1024 * 1024 * 1024,
        vcpus: 4,
        secure_boot: false,
        checkpoint_type: "Standard",
        switch: Some("hvlab-internal".into()),
        notes: r#"hvlab-owned:{"hvlab":1,"run_id":"20250101-000000-abcd","template":"ws2022"}"#
            .into(),
    }
}

const VM: &str = "hvlab-20250101-000000-abcd-ws2022-0";

#[test]
fn host_scripts() {
    snap("vm_create", hs::create(&new_vm()).render());
    snap("vm_start", hs::start(VM).render());
    snap("vm_stop_graceful", hs::stop(VM, false).render());
    snap("vm_stop_turn_off", hs::stop(VM, true).render());
    snap("vm_state", hs::state(VM).render());
    snap("vm_heartbeat", hs::heartbeat(VM).render());
    snap("vm_addresses", hs::addresses(VM).render());
    snap("vm_checkpoint", hs::checkpoint(VM, "deployed").render());
    snap("vm_restore", hs::restore(VM, "deployed").render());
    snap("vm_remove", hs::remove(VM, r"D:\hvlab\vms").render());
    snap("vm_nmi", hs::inject_nmi(VM).render());
    snap("vm_list_owned", hs::list_owned().render());
    snap(
        "vm_set_notes",
        hs::set_notes(VM, r#"hvlab-owned:{"hvlab":1,"run_id":"r"}"#).render(),
    );
    snap("host_ping", hs::ping().render());
    snap(
        "host_health",
        hs::health(
            r"D:\hvlab\vms",
            Some("hvlab-internal"),
            vec![r"D:\hvlab\base\ws2022.vhdx".into()],
            vec![r"D:\hvlab\base\ws2022.vhdx".into()],
        )
        .render(),
    );
    snap(
        "vm_copy_to_guest",
        hs::copy_to_guest(
            VM,
            r"D:\hvlab\vms\.hvlab-staging\deploy.tar.gz",
            r"C:\Windows\Temp\hvlab\deploy.tar.gz",
        )
        .render(),
    );
    snap(
        "vm_copy_from_guest",
        hs::copy_from_guest(
            VM,
            "Administrator",
            PsValue::Unread("env:HVLAB_GUEST_PASSWORD".into()),
            r"C:\Windows\Temp\hvlab\MEMORY.DMP.gz",
            r"D:\hvlab\vms\.hvlab-staging\MEMORY.DMP.gz",
        )
        .render(),
    );
}

#[test]
fn file_scripts() {
    snap("file_hash", files::hash(r"D:\x\a.bin").render());
    snap(
        "file_make_parent",
        files::make_parent(r"D:\x\a.bin").render(),
    );
    snap(
        "file_put_chunk",
        files::put_chunk(r"D:\x\a.bin", 262144, "AAEC").render(),
    );
    snap(
        "file_get_chunk",
        files::get_chunk(r"D:\x\a.bin", 0, 262144).render(),
    );
    snap("file_remove", files::remove(r"D:\x\a.bin").render());
}

fn direct() -> PsDirect {
    PsDirect {
        vm: VM.into(),
        user: "Administrator".into(),
        password: PsValue::Unread("env:HVLAB_GUEST_PASSWORD".into()),
    }
}

#[test]
fn guest_scripts() {
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    snap("guest_boot_id", gs::boot_id().render());
    // Through PowerShell Direct: the one wrapper every guest script gets.
    snap(
        "guest_boot_id_ps_direct",
        gs::boot_id().through(direct()).render(),
    );
    // Every other guest script reports the boot id beside its result (the runner's reboot
    // check after a step reads it from there).
    snap(
        "guest_remove_reports_boot_ps_direct",
        gs::remove(r"C:\Windows\Temp\hvlab\x.gz")
            .with_boot_id()
            .through(direct())
            .render(),
    );
    snap(
        "guest_exec",
        gs::process(
            "guest.exec",
            r"C:\eBPF\api_test.exe",
            &args(&[
                "custom_maps*",
                "-r",
                "junit",
                "-o",
                r"C:\eBPF\results\api test.xml",
            ]),
            1_800_000,
        )
        .render(),
    );
    snap(
        "guest_sc_create",
        gs::process(
            "guest.service_create",
            "sc.exe",
            &args(&[
                "create",
                "sample_ebpf_ext",
                "type=",
                "kernel",
                "start=",
                "demand",
                "binPath=",
                r"C:\Windows\System32\drivers\sample_ebpf_ext.sys",
                "depend=",
                "ebpfcore",
            ]),
            120_000,
        )
        .render(),
    );
    snap(
        "guest_bcdedit",
        gs::process(
            "guest.set_test_signing",
            "bcdedit.exe",
            &args(&["/set", "{current}", "testsigning", "on"]),
            120_000,
        )
        .render(),
    );
    snap("guest_stat", gs::stat(r"C:\Windows\MEMORY.DMP").render());
    snap(
        "guest_list_dir",
        gs::list_dir(r"C:\Windows\Minidump").render(),
    );
    snap(
        "guest_remove",
        gs::remove(r"C:\Windows\MEMORY.DMP").render(),
    );
    snap(
        "guest_crash_control",
        gs::set_crash_control(2, true, true, true).render(),
    );
    snap("guest_events", gs::events(1234).render());
    snap("guest_pool_tag", gs::pool_tag("Smpl").render());
    snap(
        "guest_extract",
        gs::extract(
            r"C:\Windows\Temp\hvlab\deploy.tar.gz",
            r"C:\Windows\Temp\hvlab\extract",
            &args(&["f0", "f1"]),
            &args(&[
                r"C:\Windows\System32\drivers\ebpfcore.sys",
                r"C:\eBPF\api_test.exe",
            ]),
        )
        .render(),
    );
    snap(
        "guest_compress",
        gs::compress(
            r"C:\Windows\MEMORY.DMP",
            r"C:\Windows\Temp\hvlab\MEMORY.DMP.gz",
        )
        .render(),
    );
}

/// The ids the bodies match on are the documented integration-service ids.
#[test]
fn integration_service_ids_are_used() {
    assert!(
        hs::create(&new_vm())
            .render()
            .contains(hs::GUEST_SERVICE_INTERFACE_ID)
    );
    assert!(hs::heartbeat(VM).render().contains(hs::HEARTBEAT_ID));
}
