//! The backend against a fake Hyper-V host behind the scripted PowerShell host: provision,
//! readiness with boot-time refusals and an exhausted budget, deploy as one archive,
//! STOP_PENDING read back, a crash seen by its boot id, a dump downloaded, gc and removal.

use std::time::Duration;

use lab_backends::hyperv::fake::{ExecBehavior, FakeLab};
use lab_backends::hyperv::host::scripted::Reply;
use lab_backends::{
    BackendError, Guest, Hypervisor, ServiceSpec, ServiceState, StartType, StopMode, VmState,
};

use super::support::{backend, ops, spec};

fn fake() -> FakeLab {
    FakeLab::new(|program, args| {
        if program.ends_with("crash.exe") {
            return ExecBehavior::Bugcheck(0x50);
        }
        ExecBehavior::Exit {
            code: 0,
            stdout: format!("{program} {}", args.join(" ")),
            files: vec![],
        }
    })
}

const VM: &str = "hvlab-r-ws2022-0";

#[tokio::test]
async fn provision_configure_and_remove() {
    let lab = fake();
    let (hv, log, _) = backend(lab.responder());
    hv.create(&spec(VM)).await.unwrap();
    assert_eq!(hv.state(VM).await.unwrap(), VmState::Off);
    hv.start(VM).await.unwrap();
    let boot1 = hv.wait_ready(VM, Duration::from_secs(2)).await.unwrap();
    let g = hv.guest(VM).unwrap();
    g.set_test_signing(true).await.unwrap();
    g.set_crash_control(&Default::default()).await.unwrap();
    g.set_verifier(&spec(VM).guest.verifier).await.unwrap();
    g.reboot().await.unwrap();
    let boot2 = hv.wait_ready(VM, Duration::from_secs(2)).await.unwrap();
    assert_ne!(boot1, boot2, "a reboot changes the boot id");
    let owned = hv.list_owned().await.unwrap();
    assert_eq!(owned.len(), 1);
    assert_eq!(owned[0].run_id, "20250101-000000-abcd");
    assert_eq!(owned[0].template, "ws2022");
    hv.stop(VM, StopMode::TurnOff).await.unwrap();
    hv.delete(VM).await.unwrap();
    assert!(lab.vms().is_empty());
    assert_eq!(
        ops(&log)[..4],
        ["vm.create", "vm.state", "vm.start", "vm.heartbeat"]
    );
}

#[tokio::test]
async fn capacity_is_respected_and_duplicates_refused() {
    let lab = fake();
    let (hv, _, _) = backend(lab.responder());
    hv.create(&spec("a")).await.unwrap();
    let e = hv.create(&spec("a")).await.unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    // A VM the host has but this session does not know is refused by the host script.
    let (hv2, _, _) = backend(lab.responder());
    let e = hv2.create(&spec("a")).await.unwrap_err();
    assert!(e.to_string().contains("already exists on"), "{e}");
    hv.create(&spec("b")).await.unwrap();
    let e = hv.create(&spec("c")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "create on c: every host of the lab is at its capacity"
    );
}

#[tokio::test]
async fn readiness_retries_boot_refusals_then_answers() {
    let lab = fake();
    lab.refuse_after_boot(3);
    let (hv, log, _) = backend(lab.responder());
    hv.create(&spec(VM)).await.unwrap();
    hv.start(VM).await.unwrap();
    hv.wait_ready(VM, Duration::from_secs(2)).await.unwrap();
    let boot_calls = ops(&log).iter().filter(|o| **o == "guest.boot_id").count();
    assert_eq!(boot_calls, 4, "three refusals, then the answer");
}

#[tokio::test]
async fn readiness_budget_reports_the_last_error() {
    let (hv, _, _) = backend(|s, _| match s.op {
        "vm.create" => Reply::ok(),
        "vm.heartbeat" => Reply::Value(
            serde_json::json!({"State": "Running", "Status": "NoContact", "Enabled": true}),
        ),
        _ => Reply::ok(),
    });
    hv.create(&spec(VM)).await.unwrap();
    let e = hv
        .wait_ready(VM, Duration::from_millis(30))
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "wait for ready on hvlab-r-ws2022-0: the guest did not answer within 30ms (last error: reach the guest agent of hvlab-r-ws2022-0: the heartbeat is NoContact (VM Running))"
    );
}

#[tokio::test]
async fn readiness_fails_at_once_for_a_vm_that_is_off() {
    let lab = fake();
    let (hv, _, _) = backend(lab.responder());
    hv.create(&spec(VM)).await.unwrap();
    let e = hv
        .wait_ready(VM, Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(e, BackendError::VmState { .. }), "{e}");
    assert!(e.to_string().contains("the VM is off"));
}

#[tokio::test]
async fn deploy_is_one_archive_and_services_report_stop_pending() {
    let lab = fake();
    lab.stop_hangs("sample_ebpf_ext");
    let (hv, log, host_files) = backend(lab.responder());
    hv.create(&spec(VM)).await.unwrap();
    hv.start(VM).await.unwrap();
    hv.wait_ready(VM, Duration::from_secs(2)).await.unwrap();
    let g = hv.guest(VM).unwrap();
    g.set_test_signing(true).await.unwrap();
    g.reboot().await.unwrap();
    hv.wait_ready(VM, Duration::from_secs(2)).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (
        dir.path().join("ebpfcore.sys"),
        dir.path().join("api test.exe"),
    );
    std::fs::write(&a, b"core driver").unwrap();
    std::fs::write(&b, vec![0x5a; 300_000]).unwrap();
    let files = vec![
        (a, r"C:\Windows\System32\drivers\ebpfcore.sys".to_string()),
        (b, r"C:\eBPF\api test.exe".to_string()),
    ];
    let before = ops(&log).len();
    let infos = g.upload_many(&files).await.unwrap();
    let deploy_ops: Vec<_> = ops(&log)[before..].to_vec();
    assert_eq!(
        deploy_ops,
        [
            "file.put",
            "vm.copy_to_guest",
            "file.remove",
            "guest.extract"
        ],
        "one archive, one copy, one extraction"
    );
    assert_eq!(infos[1].size, 300_000);
    assert_eq!(
        lab.guest_file(VM, r"C:\eBPF\api test.exe").unwrap().len(),
        300_000
    );
    assert!(
        host_files.lock().unwrap().is_empty(),
        "host staging cleaned up"
    );
    let st = g
        .stat(r"C:\Windows\System32\drivers\ebpfcore.sys")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.sha256, infos[0].sha256);

    let svc = |name: &str, start| ServiceSpec {
        name: name.into(),
        binary_path: format!(r"C:\Windows\System32\drivers\{name}.sys"),
        start_type: start,
        depends_on: vec![],
    };
    g.service_create(&svc("sample_ebpf_ext", StartType::Demand))
        .await
        .unwrap();
    let e = g
        .service_create(&svc("sample_ebpf_ext", StartType::Demand))
        .await
        .unwrap_err();
    assert_eq!(e.guest_code(), Some(1073));
    assert_eq!(
        g.service_start("sample_ebpf_ext").await.unwrap(),
        ServiceState::Running
    );
    let e = g.service_start("sample_ebpf_ext").await.unwrap_err();
    assert_eq!(e.guest_code(), Some(1056));
    assert_eq!(
        g.service_stop("sample_ebpf_ext").await.unwrap(),
        ServiceState::StopPending
    );
    assert_eq!(
        g.service_query("sample_ebpf_ext").await.unwrap(),
        ServiceState::StopPending
    );
    let e = g.service_query("nope").await.unwrap_err();
    assert_eq!(e.guest_code(), Some(1060));
}

#[tokio::test]
async fn unsigned_driver_start_fails_with_577_until_test_signing_after_reboot() {
    let lab = fake();
    let (hv, _, _) = backend(lab.responder());
    hv.create(&spec(VM)).await.unwrap();
    hv.start(VM).await.unwrap();
    hv.wait_ready(VM, Duration::from_secs(2)).await.unwrap();
    let g = hv.guest(VM).unwrap();
    let svc = ServiceSpec {
        name: "x".into(),
        binary_path: r"C:\x.sys".into(),
        start_type: StartType::Demand,
        depends_on: vec![],
    };
    g.service_create(&svc).await.unwrap();
    g.set_test_signing(true).await.unwrap();
    let e = g.service_start("x").await.unwrap_err();
    assert_eq!(e.guest_code(), Some(577));
    assert!(e.to_string().contains("digital signature"), "{e}");
}

#[tokio::test]
async fn crash_changes_boot_id_and_leaves_events_and_a_dump() {
    let lab = fake();
    lab.set_dump(b"PAGEDU64 a fake kernel dump".repeat(100));
    let (hv, _, _) = backend(lab.responder());
    hv.create(&spec(VM)).await.unwrap();
    hv.start(VM).await.unwrap();
    let before = hv.wait_ready(VM, Duration::from_secs(2)).await.unwrap();
    let g = hv.guest(VM).unwrap();
    let out = g
        .exec(
            &[r"C:\eBPF\api_test.exe".into(), "custom maps*".into()],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, r"C:\eBPF\api_test.exe custom maps*");
    let e = g
        .exec(&[r"C:\eBPF\crash.exe".into()], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "the session died with the guest: {e}");
    let after = hv.wait_ready(VM, Duration::from_secs(2)).await.unwrap();
    assert_ne!(before, after);
    let events = g.events(0).await.unwrap();
    let bc = events.iter().find_map(|e| e.bugcheck()).unwrap();
    assert_eq!(bc.code, 0x50);
    assert!(
        g.events(events.last().unwrap().record_id)
            .await
            .unwrap()
            .is_empty()
    );

    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("MEMORY.DMP");
    let info = g.download(r"C:\Windows\MEMORY.DMP", &local).await.unwrap();
    assert_eq!(
        std::fs::read(&local).unwrap(),
        b"PAGEDU64 a fake kernel dump".repeat(100)
    );
    assert_eq!(info.size, 2700);
    let e = g
        .download(r"C:\Windows\nope.dmp", &dir.path().join("n"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    let listing = g.list_dir(r"C:\Windows").await.unwrap();
    assert!(listing.iter().any(|e| e.name == "memory.dmp"));
    assert!(g.list_dir(r"C:\Windows\Minidump").await.unwrap().is_empty());
}

#[tokio::test]
async fn nmi_bugchecks_a_hung_guest_with_0x80() {
    let lab = fake();
    let (hv, _, _) = backend(lab.responder());
    hv.create(&spec(VM)).await.unwrap();
    hv.start(VM).await.unwrap();
    let before = hv.wait_ready(VM, Duration::from_secs(2)).await.unwrap();
    hv.inject_nmi(VM).await.unwrap();
    let g = hv.guest(VM).unwrap();
    assert_ne!(g.boot_id().await.unwrap(), before);
    let bc = g
        .events(0)
        .await
        .unwrap()
        .iter()
        .find_map(|e| e.bugcheck())
        .unwrap();
    assert_eq!(bc.code, 0x80);
}

#[tokio::test]
async fn checkpoint_restore_brings_back_the_deployed_guest_without_a_boot() {
    let lab = fake();
    let (hv, _, _) = backend(lab.responder());
    hv.create(&spec(VM)).await.unwrap();
    hv.start(VM).await.unwrap();
    let boot = hv.wait_ready(VM, Duration::from_secs(2)).await.unwrap();
    hv.checkpoint(VM, "deployed").await.unwrap();
    let g = hv.guest(VM).unwrap();
    g.exec(&[r"C:\eBPF\crash.exe".into()], Duration::from_secs(5))
        .await
        .unwrap_err();
    hv.restore(VM, "deployed").await.unwrap();
    assert_eq!(
        g.boot_id().await.unwrap(),
        boot,
        "memory came back with the checkpoint"
    );
    let e = hv.restore(VM, "nope").await.unwrap_err();
    assert!(e.to_string().contains("no checkpoint"), "{e}");
}

#[tokio::test]
async fn unknown_metrics_are_an_honest_unsupported() {
    let lab = fake();
    let (hv, _, _) = backend(lab.responder());
    hv.create(&spec(VM)).await.unwrap();
    hv.start(VM).await.unwrap();
    let g = hv.guest(VM).unwrap();
    assert_eq!(g.metric("pool_bytes:Smpl").await.unwrap(), 0);
    let e = g.metric("epoch_pending_bytes").await.unwrap_err();
    assert!(matches!(e, BackendError::Unsupported { .. }), "{e}");
}
