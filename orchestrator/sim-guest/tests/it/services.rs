//! Service control through the agent: create/start/stop/query/delete with sc.exe's error
//! codes, test signing (577 until a reboot with it on), dependencies, and a stop that stays
//! STOP_PENDING while a pinned map of the extension lives.

use std::time::Duration;

use sim_guest::protocol::*;

use crate::support::*;

fn install_ebpf(c: &mut Client) {
    c.create_service("ebpfcore", EBPFCORE, StartType::Demand, &[]);
    c.create_service("sample_ebpf_ext", SAMPLE, StartType::Demand, &["ebpfcore"]);
}

fn state(c: &mut Client, name: &str) -> ServiceState {
    c.service(&Request::ServiceQuery { name: name.into() })
        .state
}

#[test]
fn test_signed_driver_needs_test_signing_and_a_reboot() {
    let disk = TestDisk::new();
    let mut guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    install_ebpf(&mut c);
    let (code, msg) = c.err(&Request::ServiceStart {
        name: "ebpfcore".into(),
    });
    assert_eq!(code, codes::ERROR_INVALID_IMAGE_HASH, "{msg}");
    assert!(msg.contains("test signing off"), "{msg}");
    assert_eq!(
        c.service(&Request::ServiceQuery {
            name: "ebpfcore".into()
        })
        .win32_exit_code,
        577
    );
    // bcdedit semantics: on in the store, not in force until the next boot.
    c.ok(&Request::SetTestSigning { on: true });
    let Response::Config(cfg) = c.ok(&Request::GetConfig) else {
        panic!()
    };
    assert!(!cfg.test_signing && cfg.test_signing_pending);
    assert_eq!(
        c.err(&Request::ServiceStart {
            name: "ebpfcore".into()
        })
        .0,
        577
    );
    let failed = c.events(0);
    assert!(
        failed
            .iter()
            .any(|e| e.event_id == 7000 && e.message.contains("ebpfcore"))
    );

    c.ok(&Request::Reboot);
    assert_eq!(
        guest.wait_exit(Some(Duration::from_secs(10))),
        Some(sim_guest::EXIT_REBOOT)
    );
    drop(guest);
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    let Response::Config(cfg) = c.ok(&Request::GetConfig) else {
        panic!()
    };
    assert!(cfg.test_signing);
    // Starting the extension starts its dependency first.
    let st = c.service(&Request::ServiceStart {
        name: "SAMPLE_EBPF_EXT".into(),
    });
    assert_eq!(st.state, ServiceState::Running);
    assert_eq!(state(&mut c, "ebpfcore"), ServiceState::Running);
    let names: Vec<_> = guest
        .kernel()
        .modules()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(
        names.contains(&"sample_ebpf_ext.sys".to_string()),
        "{names:?}"
    );
}

fn booted_with_test_signing() -> (TestDisk, sim_guest::RunningGuest) {
    let disk = TestDisk::new();
    let reg = sim_guest::registry::Registry {
        boot: sim_guest::registry::BootOptions { test_signing: true },
        ..Default::default()
    };
    sim_guest::disk::write_json(&disk.disk.registry_path(), &reg).unwrap();
    let guest = disk.boot();
    (disk, guest)
}

#[test]
fn sc_error_codes() {
    let (disk, guest) = booted_with_test_signing();
    let mut c = Client::connect(guest.addr());
    let q = |n: &str| Request::ServiceQuery { name: n.into() };
    assert_eq!(c.err(&q("nope")).0, codes::ERROR_SERVICE_DOES_NOT_EXIST);
    install_ebpf(&mut c);
    let (code, _) = c.err(&Request::ServiceCreate {
        name: "EBPFCORE".into(),
        binary_path: EBPFCORE.into(),
        start_type: StartType::Demand,
        depends_on: vec![],
    });
    assert_eq!(code, codes::ERROR_SERVICE_EXISTS);
    let (code, msg) = c.err(&Request::ServiceCreate {
        name: "bad/name".into(),
        binary_path: EBPFCORE.into(),
        start_type: StartType::Demand,
        depends_on: vec![],
    });
    assert_eq!(code, codes::ERROR_INVALID_NAME, "{msg}");
    // A cycle through an existing service is refused.
    c.create_service("a", EBPFCORE, StartType::Demand, &["b"]);
    let (code, msg) = c.err(&Request::ServiceCreate {
        name: "b".into(),
        binary_path: EBPFCORE.into(),
        start_type: StartType::Demand,
        depends_on: vec!["a".into()],
    });
    assert_eq!(code, codes::ERROR_CIRCULAR_DEPENDENCY, "{msg}");
    // A missing dependency, a missing binary, a file that is not a driver, disabled.
    c.create_service("orphan", SAMPLE, StartType::Demand, &["ghost"]);
    assert_eq!(
        c.err(&Request::ServiceStart {
            name: "orphan".into()
        })
        .0,
        codes::ERROR_SERVICE_DEPENDENCY_DELETED
    );
    c.create_service("nofile", r"C:\drivers\missing.sys", StartType::Demand, &[]);
    assert_eq!(
        c.err(&Request::ServiceStart {
            name: "nofile".into()
        })
        .0,
        codes::ERROR_FILE_NOT_FOUND
    );
    disk.put(r"C:\drivers\junk.sys", b"MZ\x90\x00");
    c.create_service("junk", r"C:\drivers\junk.sys", StartType::Demand, &[]);
    let (code, msg) = c.err(&Request::ServiceStart {
        name: "junk".into(),
    });
    assert_eq!(code, codes::ERROR_BAD_EXE_FORMAT, "{msg}");
    c.create_service("needs_junk", SAMPLE, StartType::Demand, &["junk"]);
    assert_eq!(
        c.err(&Request::ServiceStart {
            name: "needs_junk".into()
        })
        .0,
        codes::ERROR_SERVICE_DEPENDENCY_FAIL
    );
    c.create_service("off", EBPFCORE, StartType::Disabled, &[]);
    assert_eq!(
        c.err(&Request::ServiceStart { name: "off".into() }).0,
        codes::ERROR_SERVICE_DISABLED
    );
    // Running / not running.
    assert_eq!(
        c.err(&Request::ServiceStop {
            name: "ebpfcore".into()
        })
        .0,
        codes::ERROR_SERVICE_NOT_ACTIVE
    );
    c.service(&Request::ServiceStart {
        name: "sample_ebpf_ext".into(),
    });
    assert_eq!(
        c.err(&Request::ServiceStart {
            name: "ebpfcore".into()
        })
        .0,
        codes::ERROR_SERVICE_ALREADY_RUNNING
    );
    let (code, msg) = c.err(&Request::ServiceStop {
        name: "ebpfcore".into(),
    });
    assert_eq!(code, codes::ERROR_DEPENDENT_SERVICES_RUNNING);
    assert!(msg.contains("sample_ebpf_ext"), "{msg}");
    // A loaded image is in use.
    assert_eq!(
        c.err(&Request::Remove {
            path: SAMPLE.into()
        })
        .0,
        codes::ERROR_SHARING_VIOLATION
    );
    // Delete while running: marked, gone once stopped.
    c.ok(&Request::ServiceDelete {
        name: "sample_ebpf_ext".into(),
    });
    assert_eq!(
        c.err(&Request::ServiceDelete {
            name: "sample_ebpf_ext".into()
        })
        .0,
        codes::ERROR_SERVICE_MARKED_FOR_DELETE
    );
    let st = c.service(&Request::ServiceStop {
        name: "sample_ebpf_ext".into(),
    });
    assert_eq!(st.state, ServiceState::Stopped);
    assert_eq!(
        c.err(&q("sample_ebpf_ext")).0,
        codes::ERROR_SERVICE_DOES_NOT_EXIST
    );
}

#[test]
fn stop_with_a_live_pinned_map_stays_pending_until_the_map_is_deleted() {
    let (_disk, guest) = booted_with_test_signing();
    let mut c = Client::connect(guest.addr());
    install_ebpf(&mut c);
    c.service(&Request::ServiceStart {
        name: "sample_ebpf_ext".into(),
    });
    let out = c.exec(
        &[
            MAP_TOOL, "create", "--name", "m", "--type", "sample", "--pin",
        ],
        10_000,
    );
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    let out = c.exec(
        &[
            MAP_TOOL, "update", "--name", "m", "--key", "1", "--value", "2",
        ],
        10_000,
    );
    assert_eq!(out.exit_code, Some(0), "{out:?}");

    let st = c.service(&Request::ServiceStop {
        name: "sample_ebpf_ext".into(),
    });
    assert_eq!(st.state, ServiceState::StopPending);
    assert_eq!(state(&mut c, "sample_ebpf_ext"), ServiceState::StopPending);
    assert_eq!(
        c.err(&Request::ServiceStop {
            name: "sample_ebpf_ext".into()
        })
        .0,
        codes::ERROR_SERVICE_CANNOT_ACCEPT_CTRL
    );
    // Creating a map of the type while the provider is leaving fails (tool exit 1).
    let out = c.exec(
        &[MAP_TOOL, "create", "--name", "m2", "--type", "sample"],
        10_000,
    );
    assert_ne!(out.exit_code, Some(0), "{out:?}");

    let out = c.exec(&[MAP_TOOL, "delete", "--name", "m"], 10_000);
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    assert!(
        wait_until(Duration::from_secs(5), || state(&mut c, "sample_ebpf_ext")
            == ServiceState::Stopped),
        "the stop did not complete once the map was deleted"
    );
}

#[test]
fn boot_starts_system_and_auto_services_in_dependency_order() {
    let (disk, guest) = booted_with_test_signing();
    let mut c = Client::connect(guest.addr());
    // Auto-start extension, system-start core: the order comes from the dependency.
    c.create_service("sample_ebpf_ext", SAMPLE, StartType::Auto, &["ebpfcore"]);
    c.create_service("ebpfcore", EBPFCORE, StartType::Demand, &[]);
    c.create_service("broken", r"C:\drivers\missing.sys", StartType::System, &[]);
    c.ok(&Request::Reboot);
    drop(guest);
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    assert_eq!(state(&mut c, "sample_ebpf_ext"), ServiceState::Running);
    assert_eq!(state(&mut c, "ebpfcore"), ServiceState::Running);
    let events = c.events(0);
    assert!(
        events
            .iter()
            .any(|e| e.event_id == 7026 && e.message.ends_with("did not load: broken")),
        "{events:#?}"
    );
}
