//! The dry-run listing: which unit runs where, every host operation grouped by unit and
//! step, counts per kind; hostile lab values stay inside comments and literals (the whole
//! listing parses as PowerShell with no injected command), and no local temp path shows.

use std::path::PathBuf;
use std::time::Duration;

use lab_backends::hyperv::dry_run::{
    self, DeployPlan, GuestAction, PlannedStep, PlannedUnit, render,
};
use lab_backends::{ServiceSpec, StartType};

use super::ps_parse::{parse, problems, walk};
use super::support::{config, spec};

/// A small scenario: start the driver, run a tool, stop the driver, sleep; two iterations.
fn units(template: &str) -> Vec<PlannedUnit> {
    let step = |path: &str, label: &str, actions| PlannedStep {
        path: path.into(),
        label: label.into(),
        actions,
        top_level: true,
    };
    (1..=2)
        .map(|i| PlannedUnit {
            id: format!("smoke@{template}#{i}"),
            template: template.into(),
            steps: vec![
                step(
                    "setup[0]",
                    "driver_start sample_ebpf_ext (expect running)",
                    vec![GuestAction::ServiceStart("sample_ebpf_ext".into())],
                ),
                step(
                    "steps[0]",
                    "run api_test",
                    vec![GuestAction::Exec {
                        argv: vec![r"C:\eBPF\api_test.exe".into(), "-r".into(), "junit".into()],
                        timeout: Duration::from_secs(60),
                    }],
                ),
                step(
                    "steps[1]",
                    "driver_stop sample_ebpf_ext (expect stopped)",
                    vec![GuestAction::ServiceStop("sample_ebpf_ext".into())],
                ),
                step(
                    "steps[2]",
                    "sleep 1s",
                    vec![GuestAction::Note("sleeps here; nothing is sent".into())],
                ),
            ],
        })
        .collect()
}

fn deploy(local_dir: &str, dest: &str) -> DeployPlan {
    DeployPlan {
        files: vec![(
            PathBuf::from(format!("{local_dir}/sample_ebpf_ext.sys")),
            dest.to_owned(),
        )],
        services: vec![ServiceSpec {
            name: "sample_ebpf_ext".into(),
            binary_path: dest.to_owned(),
            start_type: StartType::Demand,
            depends_on: vec![],
        }],
    }
}

async fn listing(cfg: lab_backends::hyperv::HyperVConfig, vm: &str, deploy: &DeployPlan) -> String {
    let template = cfg.templates[0].name.clone();
    let mut s = spec(vm);
    s.template = template.clone();
    let ops = dry_run::plan(cfg, &[s], deploy, &units(&template))
        .await
        .expect("plan");
    render(&ops)
}

#[tokio::test]
async fn the_listing_shows_units_steps_and_counts() {
    let text = listing(
        config(),
        "hvlab-dry-run-ws2022-0",
        &deploy("/build", r"C:\Windows\System32\drivers\sample_ebpf_ext.sys"),
    )
    .await;
    assert!(!text.contains("/tmp"), "no temp path: {text}");
    assert!(text.contains("#   'smoke@ws2022#2' on host 'hv1', VM 'hvlab-dry-run-ws2022-0'"));
    assert!(text.contains("# ==== step 'steps[0] run api_test'"));
    // The second unit restores the checkpoint; the first runs on the fresh deploy.
    assert!(
        text.contains("#   vm.restore                      1\n"),
        "{text}"
    );
    // The staging file name carries hvlab's process id; the lease its pid and expiry.
    insta::with_settings!({filters => vec![
        (r"\\\d+-hvlab-", r"\[PID]-hvlab-"),
        (r#""lease":\{[^}]*\}"#, r#""lease":[LEASE]"#),
        // Transfer names carry a process-wide counter: its value depends on which tests of
        // this binary ran first.
        (r"(hvlab-dry-run-[A-Za-z0-9]+)-\d+-\d+-", "$1-[N]-"),
    ]}, {
        insta::assert_snapshot!("dry_run_small_scenario", text);
    });
}

#[tokio::test]
async fn hostile_lab_values_stay_in_comments_and_literals() {
    let evil = "x\n Invoke-Pwned; # '\r\u{2028}\"$(Invoke-Pwned)`";
    let mut cfg = config();
    cfg.hosts[0].name = format!("hv{evil}");
    cfg.hosts[0].vm_dir = format!(r"D:\vms{evil}");
    cfg.templates[0].name = format!("ws{evil}");
    cfg.templates[0].base_vhdx = format!(r"D:\base{evil}.vhdx");
    let text = listing(
        cfg,
        &format!("hvlab-vm{evil}"),
        &deploy(&format!("/build{evil}"), &format!(r"C:\drivers{evil}.sys")),
    )
    .await;
    let (tree, parsed) = parse(&text);
    assert_eq!(problems(tree.root_node(), &parsed), vec![], "{text}");
    let mut commands = Vec::new();
    walk(tree.root_node(), &mut |n| {
        if n.kind() == "command_name" {
            commands.push(parsed[n.byte_range()].to_owned());
        }
    });
    assert!(
        !commands.iter().any(|c| c.contains("Invoke-Pwned")),
        "an injected command runs: {commands:?}\n{text}"
    );
    assert!(commands.iter().any(|c| c == "New-VM"), "{commands:?}");
}
