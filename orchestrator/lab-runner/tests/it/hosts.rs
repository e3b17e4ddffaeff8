//! Several Hyper-V hosts under the runner (scripted hosts with fake Hyper-V behind them):
//! a host failing its health check is drained before work starts, a host lost mid-run
//! errors its unit and the rest of the run goes on elsewhere, and with no healthy host the
//! run is an infrastructure error naming each host's reason.

use lab_backends::hyperv::fake::{ExecBehavior, FakeLab};
use lab_backends::hyperv::{ScriptedHost, fixture};
use lab_runner::run::RunOutcome;

use crate::support;

const HOSTS: [&str; 3] = ["hv1", "hv2", "hv3"];

fn lab_yaml() -> String {
    let mut s = String::from("name: fleet\nkind: hyperv\ninfra_retries: 0\nhosts:\n");
    for h in HOSTS {
        s.push_str(&format!(
            "  - name: {h}\n    connection: {{kind: local}}\n    capacity: 1\n    vm_dir: 'D:\\hvlab\\vms'\n"
        ));
    }
    s.push_str(
        r#"templates:
  - name: ws2022
    base_vhdx: 'D:\hvlab\base\ws2022.vhdx'
    base_vhdx_sha256: 'ABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB'
    memory: 2GiB
    boot_timeout: 20s
    guest:
      transport: powershell_direct
      credentials: {user: Administrator, password: {env: HVLAB_FLEET_UNUSED}}
"#,
    );
    s
}

const PAYLOAD: &str = r#"name: fleet-win
target: windows
build_dir: BUILD
files:
  - {source: api_test.exe, destination: 'C:\eBPF\api_test.exe'}
tools:
  - name: api_test
    program: 'C:\eBPF\api_test.exe'
    timeout: 1m
"#;

const SCENARIO: &str = r#"name: fleet
payload: fleet-win
iterations: 4
timeout: 2m
steps:
  - run: {tool: api_test}
"#;

/// Runs the scenario on three fake hosts, `setup` breaking some of them first.
async fn run_fleet(setup: impl Fn(&[FakeLab])) -> (RunOutcome, String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let build: &[(&str, &[u8])] = &[("api_test.exe", b"tests")];
    let plan = support::plan(dir.path(), build, &lab_yaml(), PAYLOAD, SCENARIO);
    let labs: Vec<FakeLab> = HOSTS
        .iter()
        .map(|_| {
            let l = FakeLab::new(|_, _| ExecBehavior::Exit {
                code: 0,
                stdout: "All tests passed".into(),
                files: vec![],
            });
            l.set_base_sha(r"D:\hvlab\base\ws2022.vhdx", &"ab".repeat(32));
            l
        })
        .collect();
    setup(&labs);
    let hosts = HOSTS
        .iter()
        .zip(&labs)
        .map(|(h, l)| ScriptedHost::new(*h, l.responder()))
        .collect();
    let hv = fixture::backend(fixture::config(&HOSTS), hosts);
    let (outcome, path) = support::run_on(dir.path(), plan, hv, None).await;
    let events = std::fs::read_to_string(path.join("events.jsonl")).unwrap();
    let summary =
        serde_json::from_str(&std::fs::read_to_string(path.join("summary.json")).unwrap()).unwrap();
    (outcome, events, summary)
}

fn drained(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["hosts_drained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["host"].as_str().unwrap().to_owned(),
                d["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_host_is_drained_and_a_lost_one_errors_only_its_unit() {
    let (outcome, events, summary) = run_fleet(|labs| {
        // hv2 holds the wrong base disk; hv3 answers the check, then dies at its first
        // checkpoint (after provisioning, mid-run).
        labs[1].set_base_sha(r"D:\hvlab\base\ws2022.vhdx", &"cd".repeat(32));
        labs[2].offline_at("vm.checkpoint");
    })
    .await;
    let st = outcome.stats;
    assert_eq!((st.passed, st.errored, st.failed), (3, 1, 0), "{events}");
    assert_eq!(outcome.exit_code, 3, "errored, nothing failed: {events}");
    let d = drained(&summary);
    assert_eq!(d.len(), 2, "{d:?}");
    assert_eq!(d[0].0, "hv2");
    assert!(d[0].1.contains("the lab expects abab"), "{d:?}");
    assert_eq!(d[1].0, "hv3");
    assert!(
        d[1].1.starts_with("lost mid-run: vm.checkpoint on hv3"),
        "{d:?}"
    );
    // The lost host's VM could not be removed: the advice names the lab.
    let left = summary["leftovers"][0]["how_to_remove"].as_str().unwrap();
    assert!(
        left.starts_with("hvlab lab gc --lab ") && left.ends_with("lab.yaml"),
        "{left}"
    );
    assert!(
        events.contains(r#""max_vms":2"#),
        "two healthy slots: {events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_healthy_host_the_run_is_an_infrastructure_error_naming_each() {
    let (outcome, events, summary) = run_fleet(|labs| {
        labs[0].go_offline();
        labs[1].set_base_sha(r"D:\hvlab\base\ws2022.vhdx", &"cd".repeat(32));
        labs[2].set_health(
            serde_json::json!({"Module": false, "FreeMemoryBytes": 1u64 << 40,
            "FreeDiskBytes": 1u64 << 42, "Bases": []}),
        );
    })
    .await;
    assert_eq!(outcome.exit_code, 3, "{events}");
    assert_eq!(outcome.stats.errored, 4);
    let errors = summary["infra_errors"][0].as_str().unwrap();
    assert!(
        errors.starts_with("no Hyper-V host passed its health check (hv1: unreachable"),
        "{errors}"
    );
    assert!(
        errors.contains("hv2: base disk") && errors.contains("hv3: the Hyper-V PowerShell module"),
        "{errors}"
    );
    assert_eq!(drained(&summary).len(), 3);
    assert!(
        !events.contains("vm_provisioning"),
        "no VM was made: {events}"
    );
}
