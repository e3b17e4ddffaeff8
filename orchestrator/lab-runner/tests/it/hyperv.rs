//! The runner driving the Hyper-V backend end to end against the scripted PowerShell host
//! (a fake Hyper-V host with a Windows guest behind it): provision and configure, deploy as
//! one archive, a driver stop that stays STOP_PENDING, a tool that bugchecks the guest
//! (noticed by the boot id), the event-41 bugcheck and the dump collected and triaged.

use lab_backends::hyperv::fake::{ExecBehavior, FakeLab};
use lab_backends::hyperv::{ScriptedHost, fixture};

use crate::support;

const LAB: &str = r#"name: fake-hyperv
kind: hyperv
hosts:
  - name: hv1
    connection: {kind: local}
    capacity: 1
    vm_dir: 'D:\hvlab\vms'
templates:
  - name: ws2022
    base_vhdx: 'D:\hvlab\base\ws2022.vhdx'
    generation: 2
    vcpus: 2
    memory: 4GiB
    secure_boot: false
    checkpoint_type: standard
    boot_timeout: 20s
    test_signing: true
    crash_dump: kernel
    auto_reboot: true
    guest:
      transport: powershell_direct
      credentials:
        user: Administrator
        password: {env: HVLAB_E2E_UNUSED_PASSWORD}
"#;

const PAYLOAD: &str = r#"name: fake-win
target: windows
build_dir: BUILD
files:
  - {source: sample_ebpf_ext.sys, destination: 'C:\Windows\System32\drivers\sample_ebpf_ext.sys'}
  - {source: api_test.exe, destination: 'C:\eBPF\api_test.exe'}
  - {source: crasher.exe, destination: 'C:\eBPF\crasher.exe'}
drivers:
  - service: sample_ebpf_ext
    binary: 'C:\Windows\System32\drivers\sample_ebpf_ext.sys'
    start: demand
    signature: test
tools:
  - name: api_test
    program: 'C:\eBPF\api_test.exe'
    command: ['custom_maps*', '-r', 'junit', '-o', '{junit}']
    result:
      exit_codes: [0]
      junit: 'C:\eBPF\results\api_test.xml'
    timeout: 1m
  - name: crasher
    program: 'C:\eBPF\crasher.exe'
    timeout: 1m
"#;

const SCENARIO: &str = r#"name: hyperv-e2e
payload: fake-win
timeout: 2m
step_timeout: 30s
setup:
  - driver_start: {driver: sample_ebpf_ext}
steps:
  - run: {tool: api_test}
  - driver_stop: {driver: sample_ebpf_ext, expect: stop_pending, timeout: 1s}
  - run: {tool: crasher}
  - expect_bugcheck: {code: 0x50}
"#;

const CATCH2_JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="api_test.exe" errors="0" failures="0" tests="1" hostname="tbd" time="0.5" timestamp="2025-01-01T00:00:00Z">
    <testcase classname="api_test.exe.global" name="custom_maps_program_load-native" time="0.5" status="run"/>
  </testsuite>
</testsuites>
"#;

/// The payload's build outputs (their content does not matter to the fake guest).
const BUILD: &[(&str, &[u8])] = &[
    ("sample_ebpf_ext.sys", b"driver image"),
    ("api_test.exe", b"catch2 tests"),
    ("crasher.exe", b"notmyfault"),
];

/// A Windows guest where the crasher bugchecks (0x50) and every other program passes,
/// leaving the Catch2 JUnit file behind.
fn windows_guest() -> FakeLab {
    FakeLab::new(|program, _args| {
        if program.ends_with("crasher.exe") {
            return ExecBehavior::Bugcheck(0x50);
        }
        ExecBehavior::Exit {
            code: 0,
            stdout: "All tests passed".into(),
            files: vec![(
                r"C:\eBPF\results\api_test.xml".into(),
                CATCH2_JUNIT.as_bytes().to_vec(),
            )],
        }
    })
}

/// A kernel dump of a 0x50 in sample_ebpf_ext.sys, as Windows would write it.
fn dump() -> Vec<u8> {
    use crash_triage::{DumpKind, DumpSpec, Module};
    let modules = vec![
        Module::new("ntoskrnl.exe", 0xFFFF_F800_0000_0000, 0x0100_0000),
        Module::new("sample_ebpf_ext.sys", 0xFFFF_F800_2000_0000, 0x0002_0000),
    ];
    let spec = DumpSpec::new(
        DumpKind::Kernel,
        0x50,
        [0xFFFF_D001_234A_0000, 0, 0xFFFF_F800_2000_1234, 2],
        0xFFFF_F800_2000_1234,
        modules,
    );
    crash_triage::dump_bytes(&spec).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_drives_hyperv_backend_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let plan = support::plan(dir.path(), BUILD, LAB, PAYLOAD, SCENARIO);

    let fake = windows_guest();
    fake.refuse_after_boot(2);
    fake.stop_hangs("sample_ebpf_ext");
    fake.set_dump(dump());
    let host = ScriptedHost::new("hv1", fake.responder());
    let log = host.log();
    let hv = fixture::backend(fixture::config(&["hv1"]), vec![host]);

    let (outcome, run_path) = support::run_on(dir.path(), plan, hv, Some(1)).await;
    let events = std::fs::read_to_string(run_path.join("events.jsonl")).unwrap();
    if std::env::var_os("HVLAB_E2E_SHOW").is_some() {
        eprintln!("{events}");
    }
    assert_eq!(
        outcome.exit_code, 0,
        "the crash was expected; events:\n{events}"
    );

    let ops: Vec<&str> = log.lock().unwrap().iter().map(|r| r.op).collect();
    // Deploy: one archive copied and extracted, not a copy per file.
    assert_eq!(
        ops.iter().filter(|o| **o == "guest.extract").count(),
        1,
        "{ops:?}"
    );
    assert_eq!(ops.iter().filter(|o| **o == "vm.copy_to_guest").count(), 1);
    assert!(ops.contains(&"vm.checkpoint") && ops.contains(&"vm.remove"));
    assert!(fake.vms().is_empty(), "the run removed its VM");
    // STOP_PENDING was read back and judged.
    assert!(events.contains("stop_pending"), "{events}");
    // The crash: noticed by the boot id, event 41 decoded, dump downloaded and triaged.
    assert!(events.contains("\"crash_detected\""), "{events}");
    assert!(
        events.contains("PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys"),
        "triage bucketed the dump by the faulting driver: {events}"
    );
    let dumps: Vec<_> = walk(&run_path)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "MEMORY.DMP"))
        .collect();
    assert_eq!(dumps.len(), 1, "one dump collected");
    assert_eq!(std::fs::read(&dumps[0]).unwrap(), dump());
    let junit = std::fs::read_to_string(run_path.join("junit.xml")).unwrap();
    assert!(
        junit.contains("custom_maps_program_load-native"),
        "guest JUnit merged: {junit}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The lab's `debugger:` on a Hyper-V lab, as the scripted host runs it.
const DEBUGGER: &str = r#"debugger:
  path: 'C:\Debuggers\x64\kd.exe'
  symbol_path: 'srv*C:\symbols*https://msdl.microsoft.com/download/symbols'
"#;

/// A recorded `!analyze -v` of a 0x50 in sample_ebpf_ext.sys (crash-triage's fixture).
const ANALYZE: &str =
    include_str!("../../../crash-triage/tests/it/fixtures/analyze/page_fault_sample_ext.txt");

/// Runs the end-to-end scenario on a fake host whose debugger is `debugger` (`None`: not
/// installed), with `debugger:` in the lab file.
async fn run_with_debugger(
    debugger: Option<&str>,
) -> (
    i32,
    String,
    Vec<lab_backends::hyperv::host::scripted::ReceivedScript>,
    FakeLab,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let pdb: &[(&str, &[u8])] = &[("sample_ebpf_ext.pdb", b"driver symbols")];
    let build = [BUILD, pdb].concat();
    let lab = format!("{LAB}{DEBUGGER}");
    let plan = support::plan(dir.path(), &build, &lab, PAYLOAD, SCENARIO);
    let fake = windows_guest();
    fake.stop_hangs("sample_ebpf_ext");
    fake.set_dump(dump());
    if let Some(out) = debugger {
        fake.set_debugger_output(out);
    }
    let host = ScriptedHost::new("hv1", fake.responder());
    let (log, files) = (host.log(), host.files());
    let hv = fixture::backend(fixture::config(&["hv1"]), vec![host]);
    let (outcome, run_path) = support::run_on(dir.path(), plan, hv, Some(1)).await;
    let events = std::fs::read_to_string(run_path.join("events.jsonl")).unwrap();
    // Every file the run put on the host (dump copies, symbol folders) is gone again.
    let left: Vec<String> = files.lock().unwrap().keys().cloned().collect();
    assert!(left.is_empty(), "files left on the host: {left:?}");
    let log = log.lock().unwrap().clone();
    (outcome.exit_code, events, log, fake, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_debugger_analysis_refines_the_bucket() {
    let (code, events, log, _fake, _dir) = run_with_debugger(Some(ANALYZE)).await;
    assert_eq!(code, 0, "the crash was expected; events:\n{events}");
    let script = log
        .iter()
        .find(|r| r.op == "host.debugger_analyze")
        .unwrap_or_else(|| panic!("no debugger script ran: {events}"));
    // The dump and the driver files were copied into one analysis folder in staging first.
    let puts: Vec<&str> = log
        .iter()
        .filter(|r| r.op == "file.put")
        .filter_map(|r| r.copy.as_ref().map(|(_, h)| h.as_str()))
        .filter(|h| h.contains("-analyze\\"))
        .collect();
    assert_eq!(puts.len(), 3, "dump, .sys and .pdb: {puts:?}");
    assert!(
        puts[0].starts_with(r"D:\hvlab\vms\.hvlab-staging\")
            && puts[0].ends_with(r"\dump\MEMORY.DMP")
    );
    assert!(
        puts[1].ends_with(r"\symbols\sample_ebpf_ext.sys"),
        "{puts:?}"
    );
    assert!(
        puts[2].ends_with(r"\symbols\sample_ebpf_ext.pdb"),
        "{puts:?}"
    );
    // kd -z <host copy> -y <driver folder>;<lab symbol path> -c "!analyze -v; q".
    let symbols = puts[1].trim_end_matches(r"\sample_ebpf_ext.sys");
    let args = format!(
        "-z {} -y {symbols};srv*C:\\symbols*https://msdl.microsoft.com/download/symbols -c \"!analyze -v; q\"",
        puts[0]
    );
    assert!(script.text.contains(&args), "{args}\n{}", script.text);
    assert!(
        !script.text.contains("Password"),
        "no secret in the debugger script"
    );
    // The debugger's SYMBOL_NAME names the function: merged into the bucket as on the sim lab.
    assert!(
        events.contains(
            "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys!sample_find_element"
        ),
        "{events}"
    );
    assert!(!events.contains("gave no analysis"), "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_host_debugger_warns_and_keeps_the_crash() {
    for debugger in [None, Some("kd: cannot open the dump\n")] {
        let (code, events, log, _fake, _dir) = run_with_debugger(debugger).await;
        assert!(log.iter().any(|r| r.op == "host.debugger_analyze"));
        // Same exit code as without a debugger: the expected crash passes.
        assert_eq!(code, 0, "{debugger:?}: {events}");
        assert!(events.contains("\"crash_detected\""), "{events}");
        assert!(
            events.contains("PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ebpf_ext.sys\""),
            "hvlab's own bucket kept: {events}"
        );
        let why = match debugger {
            None => r"no debugger at 'C:\\Debuggers\\x64\\kd.exe' on this host",
            Some(_) => "its output holds no !analyze result (exit code 0)",
        };
        assert!(events.contains("gave no analysis"), "{events}");
        assert!(events.contains(why), "{why}: {events}");
    }
}
