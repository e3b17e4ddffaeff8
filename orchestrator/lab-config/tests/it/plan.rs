//! What the runner gets: resolved references, defaults, install order, rendered argv, matrix.

use std::time::Duration;

use win_vocab::ServiceState;

use lab_config::{
    InvocationContext, MetricCondition, RepeatMode, SleepSpec, StepKind, Workspace, load_payload,
    validate,
};

use super::repo;

fn sim_plan() -> lab_config::Plan {
    let ws = Workspace::discover(&repo()).unwrap();
    validate(&ws.request())
        .unwrap()
        .plan_for("local-sim")
        .unwrap()
        .clone()
}

#[test]
fn drivers_install_in_dependency_order() {
    let p = load_payload(&repo().join("driver-payloads/sim-ebpf.yaml")).unwrap();
    let order: Vec<&str> = p
        .drivers_in_install_order()
        .map(|d| d.service.as_str())
        .collect();
    assert_eq!(order[0], "ebpfcore");
    assert_eq!(order.len(), 10);
    let started: Vec<&str> = p
        .drivers
        .iter()
        .filter(|d| d.started_by_deploy())
        .map(|d| d.service.as_str())
        .collect();
    assert_eq!(started, ["ebpfcore"]);
    assert_eq!(
        p.metric("smpl_pool_bytes")
            .unwrap()
            .source
            .sim_key()
            .as_deref(),
        Some("pool_bytes:Smpl")
    );
    assert_eq!(
        p.metric("epoch_pending_bytes")
            .unwrap()
            .source
            .sim_key()
            .as_deref(),
        Some("epoch_pending_bytes")
    );
    assert!(p.build_dir().unwrap().join("ebpfcore.sys").is_file());
}

#[test]
fn restart_scenario_resolves_to_parallel_run_and_repeat() {
    let plan = sim_plan();
    let s = plan
        .scenarios
        .iter()
        .find(|s| s.name == "restart-extension-during-invocation")
        .unwrap();
    assert_eq!(s.vms, ["ws2022", "ws2022-verifier"]);
    let StepKind::Parallel(branches) = &s.steps[0].kind else {
        panic!("{:?}", s.steps[0])
    };
    let StepKind::Run(run) = &branches[0].kind else {
        panic!()
    };
    let ctx = InvocationContext {
        seed: 42,
        iteration: 0,
        vm: "ws2022",
        scenario: &s.name,
    };
    let argv = run.argv(&s.payload, &ctx).unwrap();
    assert_eq!(
        argv,
        [
            r"C:\hvlab\bin\map_stress.exe",
            "--seed",
            "42",
            "--threads",
            "4",
            "--duration",
            "4s",
            "--keys",
            "32",
            "--mix",
            "find:50,update:30,delete:20",
            "--map-type",
            "sample",
            "--maps",
            "2",
            "--map-lifetime",
            "200ms",
            "--helpers"
        ]
    );
    assert_eq!(
        run.timeout,
        Duration::from_secs(120),
        "the tool's own timeout applies"
    );
    let StepKind::Repeat { mode, steps } = &branches[1].kind else {
        panic!()
    };
    assert_eq!(*mode, RepeatMode::Count(4));
    assert_eq!(
        steps[0].kind_sleep(),
        Some(SleepSpec::Random {
            min: Duration::from_millis(200),
            max: Duration::from_millis(500)
        })
    );
    let StepKind::DriverRestart(op) = &steps[1].kind else {
        panic!()
    };
    assert_eq!(
        (op.driver.service.as_str(), op.expect, op.timeout),
        (
            "sample_ebpf_ext",
            ServiceState::Running,
            Duration::from_secs(5)
        )
    );
    assert_eq!(
        branches[1].display_name(),
        "restart the extension repeatedly"
    );
    assert_eq!(
        steps[1].display_name(),
        "driver_restart sample_ebpf_ext (expect running)"
    );
}

trait SleepOf {
    fn kind_sleep(&self) -> Option<SleepSpec>;
}
impl SleepOf for lab_config::Step {
    fn kind_sleep(&self) -> Option<SleepSpec> {
        match self.kind {
            StepKind::Sleep(s) => Some(s),
            _ => None,
        }
    }
}

#[test]
fn defaults_are_applied() {
    let plan = sim_plan();
    let smoke = plan.scenarios.iter().find(|s| s.name == "smoke").unwrap();
    assert_eq!(smoke.iterations, 1);
    assert_eq!(smoke.step_timeout, Duration::from_secs(15));
    let StepKind::DriverStart(op) = &smoke.steps[0].kind else {
        panic!()
    };
    assert_eq!(
        (op.expect, op.timeout),
        (ServiceState::Running, Duration::from_secs(15))
    );
    let StepKind::Run(run) = &smoke.steps[1].kind else {
        panic!()
    };
    assert_eq!(run.exit_codes, [0]);
    assert_eq!(run.counters.len(), 2);
    assert!(
        run.counters
            .iter()
            .find(|c| c.name == "errors")
            .unwrap()
            .accepts(0)
    );
    assert!(
        !run.counters
            .iter()
            .find(|c| c.name == "errors")
            .unwrap()
            .accepts(1)
    );
}

#[test]
fn baseline_assertions_resolve() {
    let plan = sim_plan();
    let s = plan
        .scenarios
        .iter()
        .find(|s| s.name == "epoch-reclamation")
        .unwrap();
    let StepKind::AssertMetric(a) = &s.steps[1].kind else {
        panic!()
    };
    assert_eq!(
        a.condition,
        MetricCondition::Baseline {
            name: "before".into(),
            tolerance: 0
        }
    );
    assert_eq!(a.within, Some(Duration::from_secs(5)));
    assert!(a.condition.holds(100, Some(100)));
    assert!(!a.condition.holds(101, Some(100)));
    assert!(!a.condition.holds(100, None));
}

#[test]
fn matrix_and_fault_selection() {
    let plan = sim_plan();
    let cells = plan.matrix();
    let expected: usize = plan
        .scenarios
        .iter()
        .map(|s| s.vms.len() * s.iterations as usize)
        .sum();
    assert_eq!(cells.len(), expected);
    // One per fault switch, plus the hot-unload race that repro mode hunts, plus one per
    // modelled upstream bug (docs/upstream-bugs.md).
    assert_eq!(plan.with_tag("fault").count(), 14);
    assert_eq!(plan.with_tag("upstream-bug").count(), 7);
    assert_eq!(plan.with_tag("upstream-bug-clean").count(), 7);
    assert!(
        plan.scenarios
            .iter()
            .filter(|s| !s.is_fault())
            .all(|s| s.timeout <= Duration::from_secs(60))
    );
}

#[test]
fn windows_payload_renders_upstream_style_flags() {
    let p = load_payload(&repo().join("driver-payloads/ebpf-for-windows.yaml")).unwrap();
    let tool = p.tool("ebpf_stress_tests_km").unwrap();
    let mut args = std::collections::BTreeMap::new();
    args.insert("threads".into(), lab_config::ArgValue::Int(8));
    args.insert("restart_extension".into(), lab_config::ArgValue::Bool(true));
    args.insert(
        "restart_delay".into(),
        lab_config::ArgValue::Duration(Duration::from_millis(500)),
    );
    let ctx = InvocationContext {
        seed: 1,
        iteration: 0,
        vm: "ws2022",
        scenario: "s",
    };
    assert_eq!(
        tool.render(&args, &ctx).unwrap(),
        [
            r"C:\eBPF\ebpf_stress_tests_km.exe",
            "-r",
            "junit",
            "-o",
            r"C:\eBPF\results\ebpf_stress_tests_km.xml",
            "-tt=8",
            "-td=5",
            "-er=true",
            "-erd=500",
            "-vo=false"
        ]
    );
    let unset = p.build_dir_with(&|_| None).unwrap_err();
    assert_eq!(unset.var, "EBPF_BUILD_DIR");
    assert_eq!(
        p.build_dir_with(&|v| (v == "EBPF_BUILD_DIR").then(|| "/b/x64/Debug".into()))
            .unwrap(),
        std::path::PathBuf::from("/b/x64/Debug")
    );
}

#[test]
fn cross_file_duplicates_name_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    let text = "name: twin\npayload: sim-ebpf\nsteps:\n  - sleep: 1s\n";
    std::fs::write(&a, text).unwrap();
    std::fs::write(&b, text).unwrap();
    let req = lab_config::ValidateRequest {
        labs: vec![repo().join("vm-configs/local-sim.yaml")],
        payloads: vec![repo().join("driver-payloads/sim-ebpf.yaml")],
        scenarios: vec![a.clone(), b.clone()],
        default_lab: Some(repo().join("vm-configs/local-sim.yaml")),
        ..Default::default()
    };
    let d = validate(&req).unwrap_err();
    assert_eq!(d.len(), 1, "{d}");
    assert_eq!(d.items()[0].file, b);
    assert_eq!(d.items()[0].related[0].file, a);
    assert_eq!(d.items()[0].message, "duplicate scenario name `twin`");
}

/// A lab that names no default payload runs a scenario that pins none with the only payload
/// that fits the lab; once a second one fits, the choice is the user's and the error says so.
#[test]
fn a_lab_without_a_default_payload_uses_the_only_one_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let lab = dir.path().join("lab.yaml");
    std::fs::write(
        &lab,
        "name: bare\nkind: sim\ntemplates:\n  - name: ws2022\n",
    )
    .unwrap();
    let scenario = dir.path().join("s.yaml");
    std::fs::write(&scenario, "name: s\nsteps:\n  - sleep: 1s\n").unwrap();
    let shipped = repo().join("driver-payloads/sim-ebpf.yaml");
    let request = |payloads: Vec<std::path::PathBuf>| lab_config::ValidateRequest {
        labs: vec![lab.clone()],
        payloads,
        scenarios: vec![scenario.clone()],
        lab: Some(lab.clone()),
        explicit_scenarios: true,
        ..Default::default()
    };
    let one = validate(&request(vec![shipped.clone()])).unwrap();
    assert_eq!(one.plans[0].scenarios[0].payload.name, "sim-ebpf");

    let twin = dir.path().join("twin.yaml");
    let text = std::fs::read_to_string(&shipped).unwrap();
    let build = repo().join("driver-payloads/sim-build");
    let text = text.replace("name: sim-ebpf", "name: sim-twin").replace(
        "build_dir: sim-build",
        &format!("build_dir: '{}'", build.display()),
    );
    std::fs::write(&twin, text).unwrap();
    let two = validate(&request(vec![shipped, twin])).unwrap_err();
    let msg = two.to_string();
    assert!(
        msg.contains("scenario `s` pins no payload and lab `bare` names no default `payload`"),
        "{msg}"
    );
}
