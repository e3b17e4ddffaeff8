//! `hvlab repro` end to end on the simulated lab: the hot-unload race is found within a
//! bounded budget with its bucket and rate interval; a replayed seed reproduces it; the
//! fault-free twin runs the same budget clean; Ctrl-C leaves valid results.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use quick_junit::TestCaseStatus;
use serde_json::Value;

use crate::support::{Sandbox, junit, repo_root, text};

/// Iterations both the fault scenario and its fault-free twin get.
const BUDGET: &str = "16";
const SCENARIO: &str = "scenarios/fault-hot-unload-race.yaml";

fn repro(sb: &Sandbox, args: &[&str]) -> Command {
    let mut cmd = sb.hvlab();
    cmd.arg("repro")
        .args(args)
        .arg("--results")
        .arg(sb.results());
    cmd
}

fn json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The run of the shared search (the replay test adds another run beside it).
fn search_dir(sb: &Sandbox) -> PathBuf {
    sb.run_dirs()
        .into_iter()
        .find(|d| {
            std::fs::read_to_string(d.join("repro.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["mode"] == "search")
        })
        .expect("the search run")
}

/// One search on the fault scenario, shared by the tests that read it.
fn search() -> &'static (Sandbox, Output) {
    static RUN: OnceLock<(Sandbox, Output)> = OnceLock::new();
    RUN.get_or_init(|| {
        let _timing = crate::support::timing_sensitive();
        let sb = Sandbox::new();
        let scenario = repo_root().join(SCENARIO);
        let out = repro(
            &sb,
            &[
                scenario.to_str().unwrap(),
                "--seed",
                "11",
                "--until",
                "3-failures",
                "--max-iterations",
                BUDGET,
                "--vms",
                "2",
            ],
        )
        .output()
        .unwrap();
        (sb, out)
    })
}

#[test]
fn the_hot_unload_race_is_found_with_its_bucket_rate_and_replay_command() {
    let (sb, out) = search();
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let run = search_dir(sb);
    let rec = json(&run.join("repro.json"));
    let buckets = rec["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty(), "no bucket: {}", text(out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for b in buckets {
        let title = b["title"].as_str().unwrap();
        assert!(
            title.contains("PAGE_FAULT_IN_NONPAGED_AREA")
                || title.contains("DRIVER_UNLOADED_WITHOUT_CANCELLING_PENDING_OPERATIONS"),
            "{title}"
        );
        let (rate, low, high) = (
            b["rate"]["rate"].as_f64().unwrap(),
            b["rate"]["low"].as_f64().unwrap(),
            b["rate"]["high"].as_f64().unwrap(),
        );
        assert!(
            0.0 < low && low <= rate && rate <= high && high <= 1.0,
            "{b}"
        );
        let replay = b["replay"].as_str().unwrap();
        let run_id = run.file_name().unwrap().to_str().unwrap();
        assert!(replay.contains(&format!("--replay {run_id}/")), "{replay}");
        assert!(stderr.contains(replay), "summary does not print `{replay}`");
        assert!(stderr.contains(b["id"].as_str().unwrap()));
    }
    assert!(
        stderr.contains("rate ") && stderr.contains("95% CI"),
        "{stderr}"
    );
    assert!(rec["time_to_first_failure_secs"].as_f64().unwrap() > 0.0);
    assert!(rec["iterations_per_minute"].as_f64().unwrap() > 0.0);
    // Stopped at 3 failures (the other VM's running iteration still finishes, so up to
    // 4), or (rarely) the budget ran out first.
    let stopped = rec["stopped"].as_str().unwrap();
    match rec["failed"].as_u64().unwrap() {
        3 | 4 => assert!(stopped.contains("3 failures"), "{stopped}"),
        1 | 2 => assert!(stopped.contains("iteration budget"), "{stopped}"),
        n => panic!("{n} failures: {rec}"),
    }

    // Normal run results: one testcase per iteration (every seed differs), summary.json
    // with the repro section.
    let iterations = rec["iterations"].as_array().unwrap();
    let report = junit(&run);
    let suite = &report.test_suites[0];
    assert_eq!(suite.name.as_str(), "fault-hot-unload-race@ws2022");
    assert_eq!(suite.test_cases.len(), iterations.len());
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["repro"]["buckets"], rec["buckets"]);
    assert_eq!(summary["finished"], Value::Bool(true));

    // Evidence: every failure keeps seed, timeline and bucket; the kept ones their dump.
    for it in iterations.iter().filter(|i| i["outcome"] == "failed") {
        assert!(
            it["seed"].as_u64().is_some() && it["bucket"].is_string(),
            "{it}"
        );
        assert!(it["stop_at_ms"].is_f64(), "no timeline: {it}");
        assert!(it["duration_secs"].is_f64(), "{it}");
        let dumps = run.join(it["dir"].as_str().unwrap()).join("dumps");
        let n = std::fs::read_dir(&dumps).map(|d| d.count()).unwrap_or(0);
        match it["evidence"].as_str().unwrap() {
            "full" => assert!(n > 0, "no dump in {}", dumps.display()),
            "counted" => assert_eq!(n, 0),
            other => panic!("evidence {other} for a failure"),
        }
    }
    // (Leftover VMs are checked by the replay test: it shares this sandbox and may be
    // running now.)
}

#[test]
fn a_replayed_seed_reproduces_its_failure() {
    let (sb, _) = search();
    let _timing = crate::support::timing_sensitive();
    let run = search_dir(sb);
    let rec = json(&run.join("repro.json"));
    let bucket = &rec["buckets"][0];
    let reference = bucket["replay"]
        .as_str()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap();
    let it: u32 = bucket["replay_iteration"].as_u64().unwrap() as u32;
    let seed = rec["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["iteration"] == it)
        .unwrap()["seed"]
        .as_u64()
        .unwrap();
    let out = repro(sb, &["--replay", reference, "--times", "10", "--vms", "2"])
        .output()
        .unwrap();
    let replay_dir = sb
        .run_dirs()
        .into_iter()
        .find(|d| d != &run && d.join("repro.json").is_file())
        .unwrap_or_else(|| panic!("no replay run: {}", text(&out)));
    let rep = json(&replay_dir.join("repro.json"));
    let runs = rep["iterations"].as_array().unwrap();
    assert_eq!(runs.len(), 10);
    assert!(runs.iter().all(|r| r["seed"].as_u64() == Some(seed)));
    let failed = runs.iter().filter(|r| r["outcome"] == "failed").count();
    let same = runs.iter().filter(|r| r["bucket"] == bucket["id"]).count();
    println!(
        "replay of seed {seed}: failed {failed}/10, same bucket {} {same}/10",
        bucket["title"]
    );
    // The model is concurrent: the same timing reproduces the race most of the time
    // (typically 6-9 of 10), and which of the two symptoms it shows (0x50: a helper in
    // flight reads a freed map context; 0xCE: a later callback runs unloaded code) varies.
    // The bounds leave room for that, so the test does not flake.
    assert!(failed >= 3, "replays failed {failed}/10: {}", text(&out));
    // Every failure is this race: one of its two symptoms. The bucket itself is reported,
    // not asserted: a 0x50 that lands after the driver's image is gone has no module to
    // name (the dumps carry no unloaded-driver list yet), so it files under a second
    // bucket and "same bucket" is a coin toss between three titles.
    for r in runs.iter().filter(|r| r["outcome"] == "failed") {
        let title = r["bucket_title"].as_str().unwrap_or("");
        assert!(
            title.contains("(0x50)") || title.contains("(0xce)"),
            "a replay failed with something other than the race: {r}"
        );
    }
    assert_eq!(out.status.code(), Some(1));
    // Same seed passed and failed, or failed again: one folded case with reruns.
    let report = junit(&replay_dir);
    let cases = &report.test_suites[0].test_cases;
    assert_eq!(cases.len(), 1, "same-seed runs fold into one testcase");
    let flaky = failed < 10;
    match &cases[0].status {
        TestCaseStatus::Success { flaky_runs } => {
            assert!(flaky && !flaky_runs.is_empty())
        }
        TestCaseStatus::NonSuccess { reruns, .. } => {
            assert!(!flaky && reruns.runs.len() == 9, "{reruns:?}")
        }
        other => panic!("{other:?}"),
    }
    // Both runs of this sandbox are over: nothing left behind.
    assert!(sb.leftover_vms().is_empty());
    assert!(sb.live_guests().is_empty());
}

/// The race scenario with the correct extension (its detach waits for the rundown).
fn fault_free_twin(sb: &Sandbox) -> PathBuf {
    let text = std::fs::read_to_string(repo_root().join(SCENARIO)).unwrap();
    let text = text
        .replace("sample_ext_detach_without_rundown", "sample_ebpf_ext")
        .replace("name: fault-hot-unload-race", "name: hot-unload-race-fixed")
        .replace(
            "tags: [fault, detach_without_rundown, unload, race]",
            "tags: [unload, race]",
        );
    let path = sb.dir.path().join("hot-unload-race-fixed.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_fault_free_twin_runs_the_same_budget_without_a_failure() {
    let sb = Sandbox::new();
    let twin = fault_free_twin(&sb);
    let out = repro(
        &sb,
        &[
            twin.to_str().unwrap(),
            "--seed",
            "11",
            "--until",
            "first",
            "--max-iterations",
            BUDGET,
            "--vms",
            "2",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run = sb.run_dirs().pop().unwrap();
    let rec = json(&run.join("repro.json"));
    assert_eq!(rec["completed"].as_u64(), Some(BUDGET.parse().unwrap()));
    assert_eq!(rec["failed"].as_u64(), Some(0));
    assert!(rec["buckets"].as_array().unwrap().is_empty());
    // 0 of 16: at most ~19% at 95% confidence, and the summary says so.
    let high = rec["failure_rate"]["high"].as_f64().unwrap();
    assert!(high > 0.15 && high < 0.25, "{high}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no failure: failure rate 0/16"), "{stderr}");
    assert!(
        stderr.contains("stopped at the iteration budget (16"),
        "{stderr}"
    );
    // The search measured the bursts and aimed the stops into them.
    let active = rec["learned"]["active_ms"].as_array().unwrap();
    assert!(!active.is_empty(), "{}", rec["learned"]);
    assert!(sb.leftover_vms().is_empty());
}

#[test]
fn ctrl_c_during_repro_leaves_valid_results() {
    let sb = Sandbox::new();
    let twin = fault_free_twin(&sb);
    let child = repro(
        &sb,
        &[
            twin.to_str().unwrap(),
            "--until",
            "budget",
            "--max-iterations",
            "500",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Wait until a couple of iterations are recorded, then press Ctrl-C.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = std::fs::read_dir(sb.results())
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| std::fs::read_to_string(e.path().join("repro.json")).ok())
            .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
            .any(|v| v["completed"].as_u64().unwrap_or(0) >= 2);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "no iteration finished in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let run = sb.run_dirs().pop().unwrap();
    let report = junit(&run);
    let name = format!("{:?}", report.name);
    assert!(name.contains("interrupted"), "{name}");
    let summary = json(&run.join("summary.json"));
    assert_eq!(summary["interrupted"], Value::Bool(true));
    assert_eq!(summary["exit_code"].as_i64(), Some(130));
    let rec = json(&run.join("repro.json"));
    assert_eq!(summary["repro"]["completed"], rec["completed"]);
    assert!(rec["completed"].as_u64().unwrap() >= 2);
    assert!(
        rec["iterations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["outcome"] != "running"),
        "every started iteration has an outcome"
    );
    assert!(sb.leftover_vms().is_empty());
    assert!(sb.live_guests().is_empty());
}

#[test]
fn bad_repro_arguments_get_clear_errors() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.results().join("20250101-000000-abcd")).unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&[], "name the scenario to reproduce"),
        (&["--replay", "nonsense"], "expected <run>/<iteration>"),
        (
            &["--replay", "20250101-000000-abcd/3"],
            "only `hvlab repro` writes repro.json",
        ),
        (
            &["smoke", "--times", "3"],
            "--times only applies to a replay",
        ),
        (&["smoke", "--until", "sometimes"], "got `sometimes`"),
        (
            &["no-such-scenario"],
            "no scenario named or at `no-such-scenario`",
        ),
        (
            &["smoke", "--template", "win98"],
            "template `win98` is not one the scenario `smoke` runs on",
        ),
    ];
    for (args, needle) in cases {
        let out = repro(&sb, args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(needle),
            "{args:?}: `{needle}` not in {stderr}"
        );
    }
}
