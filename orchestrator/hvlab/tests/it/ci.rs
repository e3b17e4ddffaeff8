//! CI-grade runs end to end: `hvlab list`, selection errors (exit 2), `--fail-fast`, the
//! replay command of a failed unit, `--shard` with `--timings` and `hvlab results merge`,
//! and `hvlab results prune` next to a run in progress.

use std::path::Path;

use crate::support::{Sandbox, junit, text};

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn list_shows_scenarios_units_tags_and_tools() {
    let sb = Sandbox::new();
    let out = sb.hvlab().arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    insta::assert_snapshot!("list", String::from_utf8_lossy(&out.stdout));
    let out = sb
        .hvlab()
        .args([
            "list",
            "--format",
            "json",
            "-E",
            "tag(unload) and not template(*verifier)",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = doc["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "fault-hot-unload-race",
            "restart-extension-during-invocation",
            "restart-hook-extension-during-invocation",
            "stop-extension-live-maps",
            "upstream-2010-rundown-underflow-unload-hang-clean",
            "upstream-2010-rundown-underflow-unload-hang",
            "upstream-254-invoke-during-unload-clean",
            "upstream-254-invoke-during-unload"
        ]
    );
    assert_eq!(doc["units"], 8, "one template each");
    // The selection also uses the #2010 payload; map_tool is sim-ebpf's.
    let sim_ebpf = doc["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sim-ebpf")
        .unwrap_or_else(|| panic!("no sim-ebpf payload in {doc:#}"));
    let map_tool = &sim_ebpf["tools"][1];
    assert_eq!(map_tool["name"], "map_tool");
    assert_eq!(map_tool["arguments"][0]["required"], true);
}

#[test]
fn selection_mistakes_are_usage_errors_that_say_where_and_what_exists() {
    let sb = Sandbox::new();
    let cases: &[&[&str]] = &[
        &["run", "-E", "tag(stress) andd template(ws2022)"],
        &["run", "-E", "tagg(stress)"],
        &["run", "--tag", "nosuchtag"],
        &["list", "-E", "tag(nosuchtag) or tag(smoke)"],
        &["run", "--template", "ws2019"],
        &["run", "--shard", "3/2"],
        &["run", "-E", "scenario(nothing-*)"],
    ];
    let mut all = String::new();
    for args in cases {
        let out = sb.hvlab().args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(out.stdout.is_empty(), "{}", text(&out));
        all.push_str(&format!(
            "$ hvlab {}\n{}\n",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    insta::assert_snapshot!("selection_errors", all);
    assert!(sb.leftover_vms().is_empty());
}

#[test]
fn fail_fast_stops_scheduling_and_the_replay_command_replays_the_seed() {
    let _timing = crate::support::timing_sensitive();
    let sb = Sandbox::new();
    // One VM: the fault scenario (first in file order) fails before smoke may start.
    let filter = "scenario(fault-leak-on-replace) or scenario(smoke)";
    let out = sb
        .run(&[
            "-E",
            filter,
            "--template",
            "ws2022",
            "--vms",
            "1",
            "--fail-fast",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let dir = sb.run_dir();
    let s = summary(&dir);
    assert_eq!(
        (&s["stats"]["failed"], &s["stats"]["cancelled"]),
        (&serde_json::json!(1), &serde_json::json!(1)),
        "{s:#}"
    );
    let failed = &s["units"][0];
    let replay = failed["replay"].as_str().unwrap().to_owned();
    let seed = failed["seed"].as_u64().unwrap();
    assert_eq!(
        replay,
        format!("hvlab run fault-leak-on-replace --template ws2022 --replay-seed {seed}")
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("replay: {replay}")), "{stderr}");

    // The printed command, as written, runs the same unit with the same seed.
    let sb2 = Sandbox::new();
    let args: Vec<&str> = replay.split_whitespace().skip(2).collect();
    let out = sb2.run(&args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let s2 = summary(&sb2.run_dir());
    assert_eq!(s2["units"].as_array().unwrap().len(), 1, "{s2:#}");
    assert_eq!(s2["units"][0]["unit"], failed["unit"]);
    assert_eq!(s2["units"][0]["seed"], seed);
}

#[test]
fn shards_balanced_by_timings_merge_into_one_run() {
    let _timing = crate::support::timing_sensitive();
    let sb = Sandbox::new();
    let filter = "scenario(fault-leak-on-replace) or scenario(smoke)";
    // Timings from an earlier run: two units of equal weight, one per shard.
    let timings = sb.dir.path().join("timings.json");
    let unit = |s: &str| serde_json::json!({"scenario": s, "template": "ws2022", "iteration": 1});
    std::fs::write(
        &timings,
        serde_json::json!({"units": [
            {"unit": unit("smoke"), "duration_secs": 3.0},
            {"unit": unit("fault-leak-on-replace"), "duration_secs": 3.0},
        ]})
        .to_string(),
    )
    .unwrap();
    let mut shard_dirs = Vec::new();
    for k in ["1/2", "2/2"] {
        let results = sb.dir.path().join(format!("shard-{}", &k[..1]));
        let out = sb
            .hvlab()
            .args(["run", "-E", filter, "--template", "ws2022", "--seed", "5"])
            .args(["--shard", k, "--timings"])
            .arg(&timings)
            .arg("--results")
            .arg(&results)
            .output()
            .unwrap();
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{k}: {}",
            text(&out)
        );
        let dir = std::fs::read_dir(&results)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        assert_eq!(summary(&dir)["stats"]["units"], 1, "{k}");
        shard_dirs.push(dir);
    }
    let merged = sb.dir.path().join("merged");
    let out = sb
        .hvlab()
        .args(["results", "merge"])
        .args(&shard_dirs)
        .arg("--out")
        .arg(&merged)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the merged verdict: {}",
        text(&out)
    );
    let s = summary(&merged);
    assert_eq!(
        (
            &s["stats"]["units"],
            &s["stats"]["passed"],
            &s["stats"]["failed"]
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(1),
            &serde_json::json!(1)
        ),
        "{s:#}"
    );
    assert_eq!(s["finished"], true);
    assert_eq!(s["exit_code"], 1);
    let report = junit(&merged);
    assert_eq!(report.tests, 2);
    assert_eq!(report.failures, 1);
    assert!(merged.join("index.html").is_file());
    assert!(merged.join("smoke/ws2022/iter-1").is_dir());
    assert!(merged.join("fault-leak-on-replace/ws2022/iter-1").is_dir());
    // Durations in events are seconds.
    let ev = crate::support::events(&merged);
    let finished = ev.iter().find(|e| e["event"] == "run_finished").unwrap();
    assert!(finished["elapsed"].is_f64(), "{finished}");
    // Merging the same shard twice, or into a folder in use, is a usage error.
    let out = sb
        .hvlab()
        .args(["results", "merge"])
        .args([&shard_dirs[0], &shard_dirs[0]])
        .arg("--out")
        .arg(sb.dir.path().join("again"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is in both"),
        "{}",
        text(&out)
    );
}

#[test]
fn prune_keeps_the_newest_and_never_a_run_in_progress() {
    let sb = Sandbox::new();
    let root = sb.results();
    let ids = [
        "20261101-000000-aaaa",
        "20261102-000000-bbbb",
        "20261103-000000-cccc",
        "20261104-000000-dddd",
    ];
    for id in ids {
        std::fs::create_dir_all(root.join(id).join("smoke")).unwrap();
    }
    // The oldest is "in progress": its marker names this (live) test process.
    std::fs::write(
        root.join(ids[0]).join(".hvlab-running"),
        serde_json::json!({"pid": std::process::id(), "start": null}).to_string(),
    )
    .unwrap();
    // A killed run's marker: a pid that is gone.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    std::fs::write(
        root.join(ids[1]).join(".hvlab-running"),
        serde_json::json!({"pid": dead, "start": null}).to_string(),
    )
    .unwrap();
    let prune = |extra: &[&str]| {
        sb.hvlab()
            .args(["results", "prune", "--results"])
            .arg(&root)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = prune(&["--keep", "1", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out2 = prune(&["--keep", "1"]);
    assert_eq!(out2.status.code(), Some(0), "{}", text(&out2));
    let both = format!(
        "{}---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out2.stdout)
    );
    insta::with_settings!({filters => vec![(r"in /\S+", "in [RESULTS]")]}, {
        insta::assert_snapshot!("prune", both);
    });
    let left: Vec<bool> = ids.iter().map(|id| root.join(id).is_dir()).collect();
    assert_eq!(left, [true, false, false, true]);
}
