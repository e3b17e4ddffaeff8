//! Several hosts behind scripted PowerShell hosts: the health check drains a host that
//! fails it (with the reason) and VMs go to the healthy ones within their capacity; a host
//! lost mid-run is drained; leases in the Notes tell live runs' VMs from dead ones.

use lab_backends::Hypervisor;
use lab_backends::hyperv::fake::{ExecBehavior, FakeLab};
use lab_backends::hyperv::lease::{self, Lease};
use lab_backends::hyperv::parse::VmTag;
use lab_backends::hyperv::{HealthNeeds, HostConfig, HyperV, ScriptedHost, fixture};

use super::support::{config, spec};

fn lab() -> FakeLab {
    FakeLab::new(|_, _| ExecBehavior::Exit {
        code: 0,
        stdout: String::new(),
        files: vec![],
    })
}

/// One backend over `n` fake hosts `hv1..`, each of capacity `cap`.
fn fleet(n: usize, cap: u32) -> (HyperV, Vec<FakeLab>) {
    let mut cfg = config();
    cfg.hosts = (1..=n)
        .map(|i| HostConfig {
            name: format!("hv{i}"),
            capacity: cap,
            vm_dir: r"D:\hvlab\vms".into(),
            switch: Some("hvlab-internal".into()),
        })
        .collect();
    let labs: Vec<FakeLab> = (0..n).map(|_| lab()).collect();
    let hosts = labs
        .iter()
        .enumerate()
        .map(|(i, l)| ScriptedHost::new(format!("hv{}", i + 1), l.responder()))
        .collect();
    (fixture::backend(cfg, hosts), labs)
}

fn needs(sha: Option<&str>) -> HealthNeeds {
    HealthNeeds {
        vm_memory_bytes: 4 << 30,
        bases: vec![(r"D:\hvlab\base\ws2022.vhdx".into(), sha.map(str::to_owned))],
    }
}

#[tokio::test]
async fn failing_hosts_are_drained_with_their_reason_and_vms_go_to_healthy_ones() {
    let (hv, labs) = fleet(4, 1);
    labs[1].set_health(serde_json::json!({"Module": true, "FreeMemoryBytes": 1u64 << 30,
        "FreeDiskBytes": 1u64 << 42, "Bases": [{"Path": r"D:\hvlab\base\ws2022.vhdx", "Exists": true}],
        "SwitchExists": true}));
    labs[2].go_offline();
    let sha = "ab".repeat(32);
    for (i, l) in labs.iter().enumerate() {
        // hv4's base disk is not the one the lab expects.
        let got = if i == 3 { "cd".repeat(32) } else { sha.clone() };
        l.set_base_sha(r"D:\hvlab\base\ws2022.vhdx", &got);
    }
    let reports = hv.check_hosts(&needs(Some(&sha))).await;
    let problems: Vec<_> = reports.iter().map(|r| r.problem.clone()).collect();
    assert_eq!(problems[0], None);
    assert!(
        problems[1]
            .as_deref()
            .unwrap()
            .contains("1.0 GiB of memory free"),
        "{problems:?}"
    );
    assert!(
        problems[2]
            .as_deref()
            .unwrap()
            .starts_with("unreachable: host.health on hv3"),
        "{problems:?}"
    );
    assert!(
        problems[3]
            .as_deref()
            .unwrap()
            .contains("the lab expects abab"),
        "{problems:?}"
    );
    let drained: Vec<String> = hv.drained().into_iter().map(|(h, _)| h).collect();
    assert_eq!(drained, ["hv2", "hv3", "hv4"]);
    assert!(hv.has_room());
    hv.create(&spec("a")).await.unwrap();
    assert_eq!(labs[0].vms(), ["a"], "the only healthy host took the VM");
    assert!(!hv.has_room(), "its capacity is honoured");
    let e = hv.create(&spec("b")).await.unwrap_err();
    assert!(e.to_string().contains("at its capacity"), "{e}");
    assert!(labs[1].vms().is_empty() && labs[3].vms().is_empty());
}

#[tokio::test]
async fn with_every_host_drained_creation_names_each_reason() {
    let (hv, labs) = fleet(2, 1);
    labs[0].go_offline();
    labs[1].set_health(serde_json::json!({"Module": false, "FreeMemoryBytes": 1u64 << 40,
        "FreeDiskBytes": 1u64 << 42, "Bases": [{"Path": r"D:\hvlab\base\ws2022.vhdx", "Exists": true}]}));
    let reports = hv.check_hosts(&needs(None)).await;
    assert!(reports.iter().all(|r| r.problem.is_some()));
    assert!(!hv.has_room());
    let e = hv.create(&spec("a")).await.unwrap_err().to_string();
    assert!(
        e.contains("no host of the lab can take a VM: hv1 failed its health check: unreachable"),
        "{e}"
    );
    assert!(
        e.contains("hv2 failed its health check: the Hyper-V PowerShell module is not installed"),
        "{e}"
    );
}

#[tokio::test]
async fn a_host_lost_mid_run_is_drained_and_new_vms_go_elsewhere() {
    let (hv, labs) = fleet(2, 1);
    assert!(
        hv.check_hosts(&needs(None))
            .await
            .iter()
            .all(|r| r.problem.is_none())
    );
    hv.create(&spec("a")).await.unwrap();
    assert_eq!(labs[0].vms(), ["a"]);
    labs[0].go_offline();
    hv.state("a").await.unwrap_err();
    let drained = hv.drained();
    assert_eq!(drained.len(), 1, "{drained:?}");
    assert_eq!(drained[0].0, "hv1");
    assert!(
        drained[0].1.starts_with("lost mid-run: vm.state on hv1"),
        "{drained:?}"
    );
    hv.create(&spec("b")).await.unwrap();
    assert_eq!(labs[1].vms(), ["b"]);
}

#[tokio::test]
async fn a_script_error_is_not_a_lost_host() {
    let (hv, _labs) = fleet(1, 1);
    // The host answers: "no such VM" is the VM's problem, not the host's.
    hv.state("nope").await.unwrap_err();
    assert!(hv.drained().is_empty());
}

fn tagged(run: &str, lease: Option<Lease>) -> String {
    VmTag {
        hvlab: 1,
        run_id: run.into(),
        template: "ws2022".into(),
        lease,
    }
    .notes()
}

#[tokio::test]
async fn leases_tell_live_runs_from_dead_ones_across_machines() {
    let (hv, labs) = fleet(2, 2);
    let now = lease::now_unix();
    let other = |expires| Lease {
        owner_host: "ci-runner-elsewhere".into(),
        owner_pid: 1,
        expires_unix: expires,
    };
    labs[0].add_vm("build-agent", "build agent VM, do not touch");
    labs[0].add_vm("hvlab-live", &tagged("r-live", Some(other(now + 600))));
    labs[1].add_vm("hvlab-expired", &tagged("r-dead", Some(other(now - 1))));
    labs[1].add_vm("hvlab-old", &tagged("r-old", None));
    hv.create(&spec("hvlab-mine")).await.unwrap();

    let listed = hv.list_owned_by_host().await;
    let mut all: Vec<_> = listed.into_iter().flat_map(|l| l.unwrap()).collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let seen: Vec<(&str, Option<bool>, Option<&str>)> = all
        .iter()
        .map(|v| (v.name.as_str(), v.owner_alive, v.host.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            ("hvlab-expired", Some(false), Some("hv2")),
            ("hvlab-live", Some(true), Some("hv1")),
            ("hvlab-mine", Some(true), Some("hv1")),
            ("hvlab-old", Some(false), Some("hv2")),
        ],
        "the untagged VM is not listed; only live leases hold"
    );
    assert!(
        all[1]
            .owner
            .as_deref()
            .unwrap()
            .starts_with("ci-runner-elsewhere pid 1, lease until")
    );
    assert!(all[0].age.is_some());
    // The host script refuses a VM hvlab did not tag, whatever the caller asks.
    let e = hv.remove_owned(0, "build-agent").await.unwrap_err();
    assert!(
        e.to_string().contains("not tagged as created by hvlab"),
        "{e}"
    );
    hv.remove_owned(1, "hvlab-expired").await.unwrap();
    assert_eq!(labs[1].vms(), ["hvlab-old"]);
    assert!(labs[0].vms().contains(&"build-agent".to_owned()));
}

#[tokio::test]
async fn a_live_run_renews_its_leases() {
    let (hv, labs) = fleet(1, 1);
    hv.create(&spec("a")).await.unwrap();
    let lease_of = || {
        VmTag::from_notes(&labs[0].notes("a").unwrap())
            .unwrap()
            .lease
            .unwrap()
    };
    let first = lease_of();
    assert_eq!(first.owner_pid, std::process::id());
    assert_eq!(first.owner_host, lease::this_host());
    assert!(first.expires_unix > lease::now_unix() + 60);
    // Renewal rewrites the Notes with a fresh lease (never shorter than the first).
    labs[0].add_vm(
        "a",
        &tagged(
            "20250101-000000-abcd",
            Some(Lease {
                expires_unix: 5,
                ..first.clone()
            }),
        ),
    );
    hv.renew_leases().await;
    assert!(lease_of().expires_unix >= first.expires_unix);
}
