//! Power transitions: clean reboot and shutdown, pulling the plug, resuming a checkpoint,
//! and boot failures.

use std::time::Duration;

use sim_guest::protocol::*;
use sim_guest::{BootOptions, RunningGuest};

use crate::support::*;

fn ids(events: &[EventRecord]) -> Vec<u32> {
    events.iter().map(|e| e.event_id).collect()
}

#[test]
fn reboot_and_shutdown_are_clean_and_a_power_off_is_not() {
    let disk = TestDisk::new();
    let mut guest = disk.boot();
    let first = guest.boot_id().to_owned();
    let mut c = Client::connect(guest.addr());
    assert_eq!(ids(&c.events(0)), [6005]);
    assert_eq!(c.ok(&Request::Reboot), Response::Ok);
    assert_eq!(
        guest.wait_exit(Some(Duration::from_secs(5))),
        Some(sim_guest::EXIT_REBOOT)
    );
    assert!(!disk.root().join("agent.json").exists());
    drop(guest);

    let mut guest = disk.boot();
    assert_ne!(guest.boot_id(), first);
    let info = disk.disk.agent_info().unwrap();
    assert_eq!(info.boot_id, guest.boot_id());
    assert_eq!(info.port, guest.addr().port());
    let mut c = Client::connect(guest.addr());
    assert_eq!(ids(&c.events(0)), [6005, 6006, 6005]);
    c.ok(&Request::Shutdown);
    assert_eq!(
        guest.wait_exit(Some(Duration::from_secs(5))),
        Some(sim_guest::EXIT_POWER_OFF)
    );
    drop(guest);

    let guest = disk.boot();
    assert_eq!(ids(&Client::connect(guest.addr()).events(3)), [6006, 6005]);
    guest.power_off();

    let guest = disk.boot();
    let events = Client::connect(guest.addr()).events(5);
    assert_eq!(ids(&events), [6008, 41, 6005]);
    assert_eq!(events[1].data["BugcheckCode"], "0");
}

#[test]
fn requests_after_shutdown_was_requested_are_refused() {
    let disk = TestDisk::new();
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    guest.request_shutdown();
    let (code, _) = c.err(&Request::Ping);
    assert_eq!(code, codes::ERROR_SHUTDOWN_IN_PROGRESS);
}

#[test]
fn resume_restores_running_services_without_boot_events() {
    let disk = TestDisk::new();
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    start_core(&disk, &mut c);
    let before = c.events(0).len();
    // A checkpoint is a copy of the disk of the running guest; restoring it starts a guest
    // with `resume: true`.
    let checkpoint = tempfile::tempdir().unwrap();
    copy_tree(disk.root(), checkpoint.path());
    guest.power_off();
    let mut vm = sim_guest::disk::Disk::open(checkpoint.path())
        .unwrap()
        .vm_config()
        .unwrap();
    vm.resume = true;
    sim_guest::disk::write_json(&checkpoint.path().join("vm.json"), &vm).unwrap();
    let resumed = RunningGuest::boot(
        checkpoint.path(),
        &BootOptions {
            skip_boot_delay: true,
        },
    )
    .unwrap();
    let mut c = Client::connect(resumed.addr());
    let st = c.service(&Request::ServiceQuery {
        name: "ebpfcore".into(),
    });
    assert_eq!(st.state, ServiceState::Running);
    assert_eq!(c.events(0).len(), before, "a resume is not a boot");
}

#[test]
fn boot_fails_cleanly_on_a_bad_disk() {
    let missing = RunningGuest::boot(
        std::path::Path::new("/nonexistent/disk"),
        &BootOptions::default(),
    )
    .unwrap_err();
    assert_eq!(missing.exit_code(), sim_guest::EXIT_USAGE);
    let disk = TestDisk::new();
    std::fs::write(
        disk.root().join("vm.json"),
        r#"{"name":"x","cpus":0,"memory_mb":1}"#,
    )
    .unwrap();
    let err = RunningGuest::boot(disk.root(), &BootOptions::default()).unwrap_err();
    assert_eq!(err.exit_code(), sim_guest::EXIT_USAGE);
    let chain = format!("{}: {}", err, std::error::Error::source(&err).unwrap());
    assert!(
        chain.ends_with("vm.json: `cpus` must be between 1 and 256"),
        "{chain}"
    );
    std::fs::write(disk.root().join("registry.json"), "{").unwrap();
    std::fs::write(
        disk.root().join("vm.json"),
        r#"{"name":"x","cpus":1,"memory_mb":1}"#,
    )
    .unwrap();
    let err = RunningGuest::boot(disk.root(), &BootOptions::default()).unwrap_err();
    let chain = format!("{}: {}", err, std::error::Error::source(&err).unwrap());
    assert!(chain.contains("registry.json"), "{chain}");
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}
