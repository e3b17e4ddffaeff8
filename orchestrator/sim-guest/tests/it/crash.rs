//! The crash path: a bugcheck writes the dump CrashControl asks for and ends the guest with
//! the bugcheck exit code; the next boot logs 6008, 41 (code in decimal) and 1001.

use std::time::Duration;

use sim_guest::protocol::*;
use sim_guest::registry::{BootOptions, Registry};

use crate::support::*;

fn disk_with(cc: CrashControl, drivers: &[(&str, &str, &[&str])]) -> TestDisk {
    let disk = TestDisk::new();
    let reg = Registry {
        boot: BootOptions { test_signing: true },
        crash_control: cc,
        ..Default::default()
    };
    sim_guest::disk::write_json(&disk.disk.registry_path(), &reg).unwrap();
    for (name, image, faults) in drivers {
        disk.put(
            &format!(r"C:\Windows\System32\drivers\{name}.sys"),
            &driver_manifest(image, "test", faults),
        );
    }
    disk
}

fn cc(kind: DumpKind, auto_reboot: bool) -> CrashControl {
    CrashControl {
        dump_kind: kind,
        auto_reboot,
        always_keep_memory_dump: false,
        nmi_crash_dump: true,
    }
}

fn driver(name: &str) -> String {
    format!(r"C:\Windows\System32\drivers\{name}.sys")
}

#[test]
fn hung_unload_plus_nmi_gives_0x80_kernel_dump_and_events_at_next_boot() {
    let disk = disk_with(
        cc(DumpKind::Kernel, true),
        &[(
            "sample_ext_hang_on_unload",
            "sample_ext",
            &["hang_on_unload"],
        )],
    );
    let mut guest = disk.boot();
    let first_boot = guest.boot_id().to_owned();
    let mut c = Client::connect(guest.addr());
    c.create_service("ebpfcore", EBPFCORE, StartType::Demand, &[]);
    c.create_service(
        "sample_ext_hang_on_unload",
        &driver("sample_ext_hang_on_unload"),
        StartType::Demand,
        &["ebpfcore"],
    );
    c.service(&Request::ServiceStart {
        name: "sample_ext_hang_on_unload".into(),
    });
    let st = c.service(&Request::ServiceStop {
        name: "sample_ext_hang_on_unload".into(),
    });
    assert_eq!(st.state, ServiceState::StopPending);

    guest.control().nmi();
    assert_eq!(
        guest.wait_exit(Some(Duration::from_secs(10))),
        Some(sim_guest::EXIT_BUGCHECK_REBOOT)
    );
    // The agent is gone with the kernel.
    assert!(
        std::net::TcpStream::connect(guest.addr()).is_err()
            || matches!(
                c.call(&Request::Ping),
                Response::Error {
                    code: codes::ERROR_SHUTDOWN_IN_PROGRESS,
                    ..
                }
            )
    );
    drop(guest);

    let dump = disk.host(r"C:\Windows\MEMORY.DMP");
    let t = crash_triage::triage_file(&dump).unwrap();
    assert_eq!(t.bugcheck.code, 0x80);
    let module = t.faulting_module.as_ref().map(|m| m.name.as_str());
    assert_eq!(module, Some("sample_ext_hang_on_unload.sys"), "{t:?}");
    assert!(t.modules.iter().any(|m| m.name == "ebpfcore.sys"));

    let guest = disk.boot();
    assert_ne!(guest.boot_id(), first_boot);
    let mut c = Client::connect(guest.addr());
    let events = c.events(0);
    let e41 = events.iter().find(|e| e.event_id == 41).expect("event 41");
    assert_eq!(e41.data["BugcheckCode"], "128");
    assert_eq!(e41.provider, "Microsoft-Windows-Kernel-Power");
    let e1001 = events
        .iter()
        .find(|e| e.event_id == 1001)
        .expect("event 1001");
    assert!(
        e1001.message.starts_with(
            "The computer has rebooted from a bugcheck.  The bugcheck was: 0x00000080 (0x0000000000000000,"
        ),
        "{}",
        e1001.message
    );
    assert!(
        e1001
            .message
            .contains(r"A dump was saved in: C:\Windows\MEMORY.DMP.")
    );
    assert!(events.iter().any(|e| e.event_id == 6008));
    // Records are ordered and `since` filters.
    let last = events.last().unwrap().record_id;
    assert!(c.events(last).is_empty());
    assert_eq!(
        c.events(e41.record_id).first().map(|e| e.event_id),
        Some(1001)
    );
}

#[test]
fn small_dump_without_auto_reboot_halts() {
    let disk = disk_with(cc(DumpKind::Small, false), &[]);
    let mut guest = disk.boot();
    guest.nmi();
    assert_eq!(
        guest.wait_exit(Some(Duration::from_secs(10))),
        Some(sim_guest::EXIT_BUGCHECK_HALT)
    );
    drop(guest);
    let dumps: Vec<_> = std::fs::read_dir(disk.host(r"C:\Windows\Minidump"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let name = dumps[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.len() == "MMDDYY-NNNNN-01.dmp".len() && name.ends_with("-00001-01.dmp"),
        "{name}"
    );
    assert_eq!(
        crash_triage::triage_file(&dumps[0]).unwrap().bugcheck.code,
        0x80
    );
    assert!(!disk.host(r"C:\Windows\MEMORY.DMP").exists());

    let guest = disk.boot();
    let events = Client::connect(guest.addr()).events(0);
    let e1001 = events.iter().find(|e| e.event_id == 1001).unwrap();
    assert!(
        e1001.message.contains(&format!(
            r"A dump was saved in: C:\Windows\Minidump\{name}."
        )),
        "{}",
        e1001.message
    );
}

#[test]
fn no_dump_configured_writes_none_and_says_so() {
    let disk = disk_with(cc(DumpKind::None, true), &[]);
    let mut guest = disk.boot();
    guest.nmi();
    assert_eq!(
        guest.wait_exit(Some(Duration::from_secs(10))),
        Some(sim_guest::EXIT_BUGCHECK_REBOOT)
    );
    drop(guest);
    assert!(!disk.host(r"C:\Windows\MEMORY.DMP").exists());
    let guest = disk.boot();
    let events = Client::connect(guest.addr()).events(0);
    let e1001 = events.iter().find(|e| e.event_id == 1001).unwrap();
    assert!(
        e1001.message.contains("A dump was not saved."),
        "{}",
        e1001.message
    );
}

#[test]
fn use_after_free_from_a_fault_switch_is_a_0x50_dump() {
    let disk = disk_with(
        cc(DumpKind::Automatic, true),
        &[(
            "sample_ext_detach_without_rundown",
            "sample_ext",
            &["detach_without_rundown"],
        )],
    );
    let mut guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    c.create_service("ebpfcore", EBPFCORE, StartType::Demand, &[]);
    let name = "sample_ext_detach_without_rundown";
    c.create_service(name, &driver(name), StartType::Demand, &["ebpfcore"]);
    c.service(&Request::ServiceStart { name: name.into() });
    for args in [
        &["create", "--name", "m", "--type", "sample", "--pin"][..],
        &["fill", "--name", "m", "--count", "64"][..],
    ] {
        let mut argv = vec![MAP_TOOL];
        argv.extend_from_slice(args);
        assert_eq!(c.exec(&argv, 10_000).exit_code, Some(0));
    }
    // The faulty extension does not wait for the map's rundown: the unload completes and
    // frees what the live map still points to.
    c.service(&Request::ServiceStop { name: name.into() });
    // The find runs into the freed map and bugchecks the guest: as on Windows, the tool's
    // answer never arrives and the connection ends.
    let answer = c.try_call(&Request::Exec {
        argv: vec![
            MAP_TOOL.into(),
            "find".into(),
            "--name".into(),
            "m".into(),
            "--key".into(),
            "1".into(),
        ],
        timeout_ms: 10_000,
    });
    assert!(answer.is_err(), "a crashed guest answered: {answer:?}");
    let code = guest.wait_exit(Some(Duration::from_secs(10)));
    assert_eq!(code, Some(sim_guest::EXIT_BUGCHECK_REBOOT));
    drop(guest);
    let t = crash_triage::triage_file(&disk.host(r"C:\Windows\MEMORY.DMP")).unwrap();
    assert!(
        matches!(t.bugcheck.code, 0x50 | 0xCE),
        "unexpected bugcheck {:#x}",
        t.bugcheck.code
    );
}
