//! Host round trips of a Hyper-V run, per unit and per step: the runner drives the Hyper-V
//! backend against the scripted host (`hyperv::fake`), every script and file copy the host
//! receives is stamped, and each is attributed to the phase whose events bracket it
//! (events are stamped when the worker sends them, before it calls the backend).
//!
//! `cargo bench -p lab-runner --bench roundtrips` prints one table; a round trip costs
//! 0.1-1 s on a real host (PowerShell Direct opens a session per script), so these counts,
//! not the fake's timings, are what matters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use lab_backends::AnyHypervisor;
use lab_backends::hyperv::fake::{ExecBehavior, FakeLab};
use lab_backends::hyperv::{ScriptedHost, fixture};
use lab_config::{ValidateRequest, validate};
use lab_runner::events::{Envelope, Event};
use lab_runner::report::{Fanout, ReportError, Reporter};
use lab_runner::results::RunDir;
use lab_runner::run::{RunSettings, run};
use lab_runner::signals::SignalSource;

const ITERATIONS: u32 = 3;

const LAB: &str = r#"name: bench-hyperv
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
        password: {env: HVLAB_BENCH_UNUSED_PASSWORD}
"#;

const PAYLOAD: &str = r#"name: bench-win
target: windows
build_dir: BUILD
files:
  - {source: sample_ebpf_ext.sys, destination: 'C:\Windows\System32\drivers\sample_ebpf_ext.sys'}
  - {source: api_test.exe, destination: 'C:\eBPF\api_test.exe'}
drivers:
  - service: sample_ebpf_ext
    binary: 'C:\Windows\System32\drivers\sample_ebpf_ext.sys'
    start: demand
    signature: test
tools:
  - name: api_test
    program: 'C:\eBPF\api_test.exe'
    command: ['-r', 'junit', '-o', '{junit}']
    result:
      exit_codes: [0]
      junit: 'C:\eBPF\results\api_test.xml'
    timeout: 1m
"#;

const SCENARIO: &str = r#"name: bench
payload: bench-win
timeout: 2m
step_timeout: 30s
iterations: ITERATIONS
setup:
  - driver_start: {driver: sample_ebpf_ext}
steps:
  - run: {tool: api_test}
  - exec: {command: ['C:\Windows\System32\cmd.exe', '/c', 'ver']}
  - driver_stop: {driver: sample_ebpf_ext}
  - driver_start: {driver: sample_ebpf_ext}
"#;

const CATCH2_JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites><testsuite name="api_test.exe" tests="1" failures="0" errors="0">
<testcase classname="api_test.exe.global" name="t" time="0.1"/></testsuite></testsuites>
"#;

/// Keeps every event with its stamp.
struct Capture(Arc<Mutex<Vec<Envelope>>>);

impl Reporter for Capture {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        self.0.lock().expect("capture lock").push(ev.clone());
        Ok(())
    }
}

/// Where a round trip belongs: the phase open when it was sent.
fn phase_of(at: DateTime<Utc>, marks: &[(DateTime<Utc>, String)]) -> String {
    marks
        .iter()
        .rev()
        .find(|(t, _)| *t <= at)
        .map_or_else(|| "provision".to_owned(), |(_, p)| p.clone())
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let build = dir.path().join("build");
    std::fs::create_dir_all(&build).expect("build dir");
    std::fs::write(build.join("sample_ebpf_ext.sys"), b"driver").expect("write");
    std::fs::write(build.join("api_test.exe"), b"tests").expect("write");
    let (lab, payload, scenario) = (
        dir.path().join("lab.yaml"),
        dir.path().join("payload.yaml"),
        dir.path().join("scenario.yaml"),
    );
    std::fs::write(&lab, LAB).expect("write");
    let build_yaml = format!("'{}'", build.display());
    std::fs::write(&payload, PAYLOAD.replace("BUILD", &build_yaml)).expect("write");
    let scenario_yaml = SCENARIO.replace("ITERATIONS", &ITERATIONS.to_string());
    std::fs::write(&scenario, scenario_yaml).expect("write");
    let validated = validate(&ValidateRequest {
        labs: vec![lab.clone()],
        payloads: vec![payload],
        scenarios: vec![scenario],
        lab: Some(lab),
        default_lab: None,
        explicit_scenarios: true,
        payload: None,
    })
    .unwrap_or_else(|d| panic!("{d}"));
    let plan = validated.plans.into_iter().next().expect("one plan");

    let fake = FakeLab::new(|_program, _args| ExecBehavior::Exit {
        code: 0,
        stdout: "All tests passed".into(),
        files: vec![(
            r"C:\eBPF\results\api_test.xml".into(),
            CATCH2_JUNIT.as_bytes().to_vec(),
        )],
    });
    let host = ScriptedHost::new("hv1", fake.responder());
    let log = host.log();
    let hv = fixture::backend(fixture::config(&["hv1"]), vec![host]);
    let run_dir = RunDir::create(&dir.path().join("results"), Utc::now()).expect("run dir");
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut reporters = Fanout::new();
    reporters.push("capture", Capture(events.clone()));
    let (signals, _press) = SignalSource::channel();
    let settings = RunSettings {
        plan,
        hypervisor: AnyHypervisor::HyperV(hv),
        iterations: None,
        seed: 7,
        max_vms: Some(1),
        only: None,
        keep_dumps: Default::default(),
        policy: Default::default(),
        known: Default::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = rt
        .block_on(run(settings, run_dir, reporters, signals))
        .expect("run");
    assert_eq!(outcome.exit_code, 0, "the bench scenario passes");

    // Phase marks from the events, in order.
    let mut marks: Vec<(DateTime<Utc>, String)> = Vec::new();
    let mut unit_no = 0;
    for e in events.lock().expect("events").iter() {
        let phase = match &e.event {
            Event::VmDeployed { .. } => "unit fixed: restore + readiness".to_owned(),
            Event::UnitStarted { .. } => {
                unit_no += 1;
                "unit fixed: boot id + event mark".to_owned()
            }
            Event::StepStarted { path, label, .. } => format!("step {path} ({label})"),
            Event::StepFinished { .. } => "unit fixed: after-step checks + collection".into(),
            Event::UnitFinished { .. } => "unit fixed: restore + readiness".to_owned(),
            Event::VmRemoved { .. } | Event::RunFinished { .. } => "teardown".to_owned(),
            _ => continue,
        };
        marks.push((e.at, phase));
    }
    assert_eq!(unit_no, ITERATIONS as usize);
    let mut counts: BTreeMap<String, (usize, BTreeMap<&'static str, usize>)> = BTreeMap::new();
    for r in log.lock().expect("log").iter() {
        // The VM's removal follows the last unit before `VmRemoved` is sent.
        let phase = if r.op == "vm.remove" {
            "teardown".to_owned()
        } else {
            phase_of(r.at, &marks)
        };
        let entry = counts.entry(phase).or_default();
        entry.0 += 1;
        *entry.1.entry(r.op).or_default() += 1;
    }
    // The first unit deploys instead of restoring; the last restore slot is empty.
    let restores = (ITERATIONS - 1) as usize;
    println!("host round trips, {ITERATIONS} units of one scenario on one VM (scripted host)");
    println!(
        "{:<52} {:>7} {:>9}  operations",
        "phase", "total", "per unit"
    );
    for (phase, (n, ops)) in &counts {
        let per = match phase.as_str() {
            "provision" | "teardown" => "-".to_owned(),
            p if p.contains("restore") => format!("{:.1}", *n as f64 / restores as f64),
            _ => format!("{:.1}", *n as f64 / f64::from(ITERATIONS)),
        };
        let ops: Vec<String> = ops.iter().map(|(o, c)| format!("{o}x{c}")).collect();
        println!("{phase:<52} {n:>7} {per:>9}  {}", ops.join(" "));
    }
    let fixed: usize = counts
        .iter()
        .filter(|(p, _)| p.starts_with("unit fixed"))
        .map(|(_, (n, _))| n)
        .sum();
    let steps: usize = counts
        .iter()
        .filter(|(p, _)| p.starts_with("step "))
        .map(|(_, (n, _))| n)
        .sum();
    println!(
        "unit fixed cost: {:.1} round trips per unit; steps: {:.1} per step ({} step runs)",
        fixed as f64 / f64::from(ITERATIONS),
        steps as f64 / (5.0 * f64::from(ITERATIONS)),
        5 * ITERATIONS
    );
}
