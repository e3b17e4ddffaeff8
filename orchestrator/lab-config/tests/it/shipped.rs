//! The shipped configuration validates, and the checked-in schemas are current.

use lab_config::schema::{SchemaKind, schema_text};
use lab_config::{LabKind, Workspace, validate};

use super::repo;

#[test]
fn every_shipped_file_validates() {
    let ws = Workspace::discover(&repo()).unwrap();
    assert!(
        ws.labs.len() >= 2 && ws.payloads.len() >= 2 && ws.scenarios.len() >= 11,
        "{ws:?}"
    );
    let v = validate(&ws.request()).unwrap_or_else(|d| panic!("shipped files have problems:\n{d}"));
    assert!(v.skipped.is_empty(), "{:?}", v.skipped);
    let files: std::collections::HashSet<_> = v
        .plans
        .iter()
        .flat_map(|p| p.scenarios.iter().map(|s| s.file.clone()))
        .collect();
    assert_eq!(files.len(), ws.scenarios.len());
    let sim = v.plan_for("local-sim").unwrap();
    let hyperv = v.plan_for("hyperv-example").unwrap();
    assert_eq!(sim.lab.kind(), LabKind::Sim);
    assert_eq!(hyperv.lab.kind(), LabKind::Hyperv);
    assert!(
        hyperv
            .scenarios
            .iter()
            .all(|s| s.payload.name == "ebpf-for-windows")
    );
    // One scenario file, both labs: the headline scenarios name no payload and are checked
    // against each lab's default payload.
    for name in [
        "smoke",
        "custom-map-stress",
        "epoch-reclamation",
        "stop-extension-live-maps",
        "restart-extension-during-invocation",
    ] {
        let on = |plan: &lab_config::Plan| plan.scenarios.iter().any(|s| s.name == name);
        assert!(on(sim) && on(hyperv), "{name} must validate on both labs");
    }
    // The sim payload, or a build flavour of it that has one of upstream's old core bugs.
    assert!(sim.scenarios.iter().all(|s| s.payload.name == "sim-ebpf"
        || (s.payload.name.starts_with("sim-ebpf-bug-")
            && s.tags.iter().any(|t| t == "upstream-bug"))));
    assert!(
        v.summary().starts_with("ok: 2 labs, 8 payloads,"),
        "{}",
        v.summary()
    );
}

#[test]
fn sim_and_hyperv_templates_have_the_same_names() {
    let ws = Workspace::discover(&repo()).unwrap();
    let v = validate(&ws.request()).unwrap();
    let names = |n: &str| {
        v.labs
            .iter()
            .find(|l| l.name == n)
            .unwrap()
            .template_names()
            .join(",")
    };
    assert_eq!(names("local-sim"), names("hyperv-example"));
}

#[test]
fn one_fault_scenario_per_sim_fault_switch() {
    let ws = Workspace::discover(&repo()).unwrap();
    let v = validate(&ws.request()).unwrap();
    let sim = v.plan_for("local-sim").unwrap();
    for fault in [
        "free_without_epoch",
        "detach_without_rundown",
        "double_free_on_replace",
        "leak_on_replace",
        "stuck_reader",
        "hang_on_unload",
    ] {
        let s = sim
            .scenarios
            .iter()
            .find(|s| s.is_fault() && s.has_tag(fault))
            .unwrap_or_else(|| panic!("no fault scenario for {fault}"));
        let driver = format!("sample_ext_{fault}");
        assert!(
            s.setup.iter().chain(&s.steps).any(|st| matches!(&st.kind, lab_config::StepKind::DriverStart(op) if op.driver.service == driver)),
            "{} does not start {driver}",
            s.name
        );
    }
}

#[test]
fn checked_in_schemas_are_current() {
    for kind in SchemaKind::ALL {
        let path = repo().join("schemas").join(kind.file_name());
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == schema_text(kind),
            "{} is out of date: run `cargo run -- schema`",
            path.display()
        );
    }
}

#[test]
fn schemas_describe_every_step_kind() {
    let s: serde_json::Value = serde_json::from_str(&schema_text(SchemaKind::Scenario)).unwrap();
    let props = s["$defs"]["Step"]["properties"].as_object().unwrap();
    for kind in [
        "deploy",
        "driver_start",
        "driver_stop",
        "driver_restart",
        "driver_wait",
        "run",
        "exec",
        "parallel",
        "sequence",
        "repeat",
        "sleep",
        "checkpoint",
        "restore",
        "reboot",
        "record_metric",
        "assert_metric",
        "expect_bugcheck",
        "expect_no_bugcheck",
    ] {
        assert!(props.contains_key(kind), "Step schema lacks {kind}");
    }
    let lab: serde_json::Value = serde_json::from_str(&schema_text(SchemaKind::Lab)).unwrap();
    assert_eq!(lab["$defs"]["SimLab"]["properties"]["kind"]["const"], "sim");
}
