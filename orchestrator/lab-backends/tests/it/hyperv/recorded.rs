//! Recorded outputs of each cmdlet hvlab uses, in the envelope the scripts print, parsed
//! into types: shapes as Microsoft documents them (`Get-VM` states, integration service
//! status, `Get-WinEvent` records with event data, `sc.exe` text), error records, a list
//! of one written as an object, and empty results.

use lab_backends::hyperv::error::PsError;
use lab_backends::hyperv::parse::{self, Heartbeat, List, VmInfo, envelope};
use lab_backends::hyperv::scripts::files::FileHash;
use lab_backends::hyperv::scripts::guest::{
    BootInfo, Compressed, Entry, Event, PageFile, Placed, PoolUsage, ProcessResult,
};
use lab_backends::{EventRecord, ServiceState, VmState};

#[test]
fn get_vm_state_names() {
    let v: VmInfo = envelope(
        "vm.state",
        r#"{"ok":true,"value":{"Name":"hvlab-r-ws2022-0","State":"Running","Notes":"hvlab-owned:{\"hvlab\":1,\"run_id\":\"r\",\"template\":\"ws2022\"}"}}"#,
    )
    .unwrap();
    assert_eq!(parse::vm_state(&v.state), Some(VmState::Running));
    for (name, want) in [
        ("Off", VmState::Off),
        ("Saved", VmState::Off),
        ("Starting", VmState::Starting),
        ("Stopping", VmState::Stopping),
        ("Saving", VmState::Stopping),
        ("Resuming", VmState::Starting),
        ("Paused", VmState::Off),
    ] {
        assert_eq!(parse::vm_state(name), Some(want), "{name}");
    }
    assert_eq!(parse::vm_state("Merging"), None);
}

#[test]
fn heartbeat_statuses() {
    let hb = |text: &str| envelope::<Heartbeat>("vm.heartbeat", text).unwrap();
    assert!(hb(r#"{"ok":true,"value":{"State":"Running","Status":"Ok","Enabled":true}}"#).alive());
    assert!(
        hb(r#"{"ok":true,"value":{"State":"Running","Status":"Degraded","Enabled":true}}"#).alive()
    );
    assert!(
        !hb(r#"{"ok":true,"value":{"State":"Running","Status":"NoContact","Enabled":true}}"#)
            .alive()
    );
    assert!(
        !hb(
            r#"{"ok":true,"value":{"State":"Running","Status":"LostCommunication","Enabled":true}}"#
        )
        .alive()
    );
    // A VM that is off has no heartbeat status at all.
    assert!(!hb(r#"{"ok":true,"value":{"State":"Off","Status":null,"Enabled":true}}"#).alive());
}

#[test]
fn lists_of_none_one_and_many() {
    let l = |t: &str| {
        envelope::<List<VmInfo>>("vm.list_owned", t)
            .unwrap()
            .0
            .len()
    };
    assert_eq!(l(r#"{"ok":true,"value":null}"#), 0);
    assert_eq!(l(r#"{"ok":true,"value":[]}"#), 0);
    assert_eq!(
        l(r#"{"ok":true,"value":{"Name":"a","State":"Off","Notes":""}}"#),
        1
    );
    assert_eq!(
        l(
            r#"{"ok":true,"value":[{"Name":"a","State":"Off","Notes":""},{"Name":"b","State":"Running","Notes":null}]}"#
        ),
        2
    );
    let addrs: List<String> = envelope(
        "vm.addresses",
        r#"{"ok":true,"value":["fe80::215:5dff:fe01:203","169.254.3.4","192.168.10.21"]}"#,
    )
    .unwrap();
    assert_eq!(
        parse::pick_address(&addrs.0).as_deref(),
        Some("192.168.10.21")
    );
    let entries: List<Entry> = envelope("guest.list_dir", r#"{"ok":true,"value":[]}"#).unwrap();
    assert!(entries.0.is_empty());
}

#[test]
fn new_vm_error_record_is_typed() {
    // New-VHD's answer when the parent disk is missing (message as the cmdlet words it).
    let text = r#"{"ok":false,"error":{"message":"Failed to get the disk information.\r\nThe system cannot find the file specified. (0x80070002)","command":"New-VHD","fqid":"ObjectNotFound,Microsoft.Vhd.PowerShell.Cmdlets.NewVhd","category":"ObjectNotFound","exception":"Microsoft.HyperV.PowerShell.VirtualizationException","hresult":-2147024894,"layer":"host"}}"#;
    let e = envelope::<serde_json::Value>("vm.create", text).unwrap_err();
    let PsError::Record { record, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(record.command.as_deref(), Some("New-VHD"));
    assert_eq!(record.win32_code(), 2);
    assert!(!e.is_transient());
    assert_eq!(
        e.to_string(),
        "vm.create: New-VHD: Failed to get the disk information.\r\nThe system cannot find the file specified. (0x80070002) [ObjectNotFound,Microsoft.Vhd.PowerShell.Cmdlets.NewVhd]"
    );
    let b = e.into_backend("vm1", false);
    assert!(
        b.to_string()
            .starts_with("vm.create on vm1: New-VHD: Failed"),
        "{b}"
    );
}

#[test]
fn ps_direct_boot_errors_are_transient_guest_errors_are_not() {
    let boot = r#"{"ok":false,"error":{"message":"The credential is invalid.","command":"Invoke-Command","fqid":"PSSessionOpenFailed","category":"OpenError","exception":"System.Management.Automation.Remoting.PSDirectException","hresult":-2146233087,"layer":"host"}}"#;
    let e = envelope::<BootInfo>("guest.boot_id", boot).unwrap_err();
    assert!(e.is_transient());
    assert!(e.into_backend("vm1", true).is_transient());
    let guest = r#"{"ok":false,"error":{"message":"Access is denied.","command":"Get-CimInstance","fqid":"HRESULT 0x80070005,Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand","category":"PermissionDenied","exception":"Microsoft.Management.Infrastructure.CimException","hresult":-2147024891,"layer":"guest"}}"#;
    let e = envelope::<BootInfo>("guest.boot_id", guest).unwrap_err();
    assert!(!e.is_transient());
    assert_eq!(e.into_backend("vm1", true).guest_code(), Some(5));
}

#[test]
fn garbage_and_stray_lines() {
    let e = envelope::<BootInfo>("guest.boot_id", "WARNING: something\n<html>").unwrap_err();
    assert!(matches!(e, PsError::Json { .. }), "{e}");
    // A native tool's stray line before the envelope is ignored.
    let b: BootInfo = envelope(
        "guest.boot_id",
        "stray\r\n{\"ok\":true,\"value\":{\"LastBootUpTime\":\"2025-03-04T05:06:07.5000000Z\"}}\r\n",
    )
    .unwrap();
    assert_eq!(b.last_boot_up_time, "2025-03-04T05:06:07.5000000Z");
}

#[test]
fn get_winevent_bugcheck_records() {
    // Kernel-Power 41 after a bugcheck 0x50 (80 decimal), and WER 1001 (unnamed data).
    let text = r#"{"ok":true,"value":[{"RecordId":5120,"Id":41,"ProviderName":"Microsoft-Windows-Kernel-Power","TimeCreated":"2025-03-04T05:06:07.0000000Z","Message":"The system has rebooted without cleanly shutting down first.","Data":{"BugcheckCode":"80","BugcheckParameter1":"0xffffd001234a0000","BugcheckParameter2":"0x0","BugcheckParameter3":"0xfffff8036ad1b2c3","BugcheckParameter4":"0x2","SleepInProgress":"0","PowerButtonTimestamp":"0"}},{"RecordId":5121,"Id":1001,"ProviderName":"Microsoft-Windows-WER-SystemErrorReporting","TimeCreated":"2025-03-04T05:06:09.0000000Z","Message":null,"Data":{"param1":"0x00000050 (0xffffd001234a0000, 0x0000000000000000, 0xfffff8036ad1b2c3, 0x0000000000000002)","param2":"C:\\Windows\\MEMORY.DMP","param3":"a1b2c3"}}]}"#;
    let list: List<Event> = envelope("guest.events", text).unwrap();
    assert_eq!(list.0.len(), 2);
    let rec = EventRecord::from(list.0[0].clone());
    assert_eq!(rec.record_id, 5120);
    assert_eq!(rec.time_created.to_rfc3339(), "2025-03-04T05:06:07+00:00");
    let bc = rec.bugcheck().unwrap();
    assert_eq!(bc.code, 0x50);
    assert_eq!(bc.params[0], 0xffff_d001_234a_0000);
    assert_eq!(
        list.0[1].data.as_ref().unwrap()["param2"].as_deref(),
        Some(r"C:\Windows\MEMORY.DMP")
    );
    // No records: the script turns Get-WinEvent's NoMatchingEventsFound into an empty list.
    let none: List<Event> = envelope("guest.events", r#"{"ok":true,"value":[]}"#).unwrap();
    assert!(none.0.is_empty());
}

#[test]
fn sc_exe_output() {
    let query = "\r\nSERVICE_NAME: sample_ebpf_ext\r\n        TYPE               : 1  KERNEL_DRIVER\r\n        STATE              : 3  STOP_PENDING\r\n                                (STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)\r\n        WIN32_EXIT_CODE    : 0  (0x0)\r\n        SERVICE_EXIT_CODE  : 0  (0x0)\r\n        CHECKPOINT         : 0x0\r\n        WAIT_HINT          : 0x0\r\n";
    assert_eq!(parse::sc_state(query), Some(ServiceState::StopPending));
    assert_eq!(
        parse::sc_state(&query.replace("3  STOP_PENDING", "4  RUNNING")),
        Some(ServiceState::Running)
    );
    assert_eq!(
        parse::sc_state(&query.replace("3  STOP_PENDING", "1  STOPPED")),
        Some(ServiceState::Stopped)
    );
    assert_eq!(parse::sc_state("[SC] OpenService FAILED 1060:"), None);
    let fail = "[SC] StartService FAILED 577:\r\n\r\nWindows cannot verify the digital signature for this file. A recent hardware or software change might have installed a file that is signed incorrectly or damaged, or that might be malicious software from an unknown source.\r\n\r\n";
    let (code, msg) = parse::sc_failure(fail).unwrap();
    assert_eq!(code, 577);
    assert!(msg.starts_with("Windows cannot verify the digital signature"));
    assert_eq!(
        parse::sc_failure(
            "[SC] CreateService FAILED 1073:\r\n\r\nThe specified service already exists.\r\n"
        ),
        Some((1073, "The specified service already exists.".into()))
    );
}

#[test]
fn other_results() {
    let p: ProcessResult = envelope(
        "guest.exec",
        r#"{"ok":true,"value":{"ExitCode":-1,"Stdout":"partial","Stderr":"","TimedOut":true}}"#,
    )
    .unwrap();
    assert!(p.timed_out);
    let h: FileHash = envelope(
        "guest.stat",
        r#"{"ok":true,"value":{"Exists":false,"Length":0,"Hash":""}}"#,
    )
    .unwrap();
    assert!(!h.exists);
    let pf: PageFile = envelope(
        "guest.set_crash_control",
        r#"{"ok":true,"value":{"RamMb":4096,"PageFileMb":1024,"AutomaticPageFile":false}}"#,
    )
    .unwrap();
    assert!(lab_backends::hyperv::page_file_check(lab_backends::DumpKind::Kernel, &pf).is_ok());
    let e =
        lab_backends::hyperv::page_file_check(lab_backends::DumpKind::Complete, &pf).unwrap_err();
    assert_eq!(
        e.to_string(),
        "a complete dump needs a page file of at least RAM + 1 MB (4097 MB); the guest has 1024 MB"
    );
    let u: PoolUsage = envelope(
        "guest.pool_tag",
        r#"{"ok":true,"value":{"Bytes":4096,"Allocs":3}}"#,
    )
    .unwrap();
    assert_eq!((u.bytes, u.allocs), (4096, 3));
    let c: Compressed = envelope(
        "guest.compress",
        r#"{"ok":true,"value":{"Length":8192,"Hash":"ab","Compressed":512}}"#,
    )
    .unwrap();
    assert_eq!(c.compressed, 512);
    let placed: List<Placed> = envelope(
        "guest.extract",
        r#"{"ok":true,"value":{"Path":"C:\\eBPF\\a.exe","Length":3,"Hash":"ab"}}"#,
    )
    .unwrap();
    assert_eq!(placed.0.len(), 1);
}
