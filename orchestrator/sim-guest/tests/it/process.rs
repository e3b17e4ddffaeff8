//! The guest as a real process (this test binary re-executed): agent.json handshake,
//! SIGUSR1 as an NMI (bugcheck 0x80 with a dump, exit 11), SIGTERM as a clean power-off.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use crate::support::*;

const CHILD_ENV: &str = "SIM_GUEST_TEST_CHILD_DISK";

/// Not a test of its own: the body of the child process the tests below start.
#[test]
fn child_guest_process() {
    if let Ok(disk) = std::env::var(CHILD_ENV) {
        std::process::exit(sim_guest::run_process(Path::new(&disk)));
    }
}

fn spawn(disk: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "process::child_guest_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, disk)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn wait_agent(disk: &TestDisk, child: &Child) -> sim_guest::disk::AgentInfo {
    let mut info = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            info = disk.disk.agent_info().ok().filter(|i| i.pid == child.id());
            info.is_some()
        }),
        "the guest did not write agent.json"
    );
    info.unwrap()
}

fn wait_exit(child: &mut Child) -> Option<i32> {
    let mut code = None;
    wait_until(Duration::from_secs(10), || {
        code = child.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    });
    code.flatten()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn sigusr1_is_an_nmi_and_sigterm_a_clean_shutdown() {
    let disk = TestDisk::new();
    let mut child = spawn(disk.root());
    let info = wait_agent(&disk, &child);
    let mut c = Client::connect(([127, 0, 0, 1], info.port).into());
    assert_eq!(c.boot_id(), info.boot_id);
    signal(&child, "-USR1");
    assert_eq!(wait_exit(&mut child), Some(sim_guest::EXIT_BUGCHECK_REBOOT));
    let t = crash_triage::triage_file(&disk.host(r"C:\Windows\MEMORY.DMP")).unwrap();
    assert_eq!(t.bugcheck.code, 0x80);

    // The hypervisor restarts it (AutoReboot): a new boot that reports the crash.
    let mut child = spawn(disk.root());
    let info2 = wait_agent(&disk, &child);
    assert_ne!(info2.boot_id, info.boot_id);
    let mut c = Client::connect(([127, 0, 0, 1], info2.port).into());
    let events = c.events(0);
    assert!(
        events
            .iter()
            .any(|e| e.event_id == 41 && e.data["BugcheckCode"] == "128")
    );
    signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child), Some(sim_guest::EXIT_POWER_OFF));
    let stat: sim_guest::BootStat =
        sim_guest::disk::read_json(&disk.root().join("bootstat.json")).unwrap();
    assert!(stat.clean_shutdown);
}

#[test]
fn a_missing_disk_exits_with_the_usage_code() {
    let mut child = spawn(Path::new("/nonexistent/sim-guest-disk"));
    assert_eq!(wait_exit(&mut child), Some(sim_guest::EXIT_USAGE));
}
