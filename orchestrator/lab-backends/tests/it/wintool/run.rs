//! The compiled Windows tools running under mono against the stand-in EbpfApi: counters,
//! threads, the JSON line, error kinds and exit codes.

use std::path::Path;

use serde_json::Value;

use super::{built, text};

const HELPERS: &[&str] = &[
    "--helpers",
    "--program-name",
    "test_map_read_helper_value",
    "--program-map",
    "sample_hash_map",
    "--program-config",
    "config_map:0=2",
];

/// The tool's one JSON line.
fn counters(stdout: &[u8]) -> Value {
    let s = String::from_utf8_lossy(stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout: {s}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("counter {k} in {v}"))
}

fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("stub report")).unwrap()
}

/// Four threads on two maps with helper calls: every counter adds up, the stand-in saw all
/// four workers, and every map and handle is closed at the end.
#[test]
fn map_stress_runs_threads_through_maps_and_helpers() {
    let Some(b) = built() else { return };
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("custom_map_basic.sys");
    std::fs::write(&program, b"stand-in program file").unwrap();
    let rep = dir.path().join("report.json");
    let mut args = vec![
        "--seed",
        "7",
        "--threads",
        "4",
        "--duration",
        "400",
        "--keys",
        "64",
        "--maps",
        "2",
        "--program",
    ];
    let p = program.to_str().unwrap();
    args.push(p);
    args.extend_from_slice(HELPERS);
    let o = b.run("map_stress", &args, &[("EBPF_STUB_REPORT", &rep)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = counters(&o.stdout);
    assert!(n(&c, "ops") > 0, "{c}");
    assert_eq!(
        n(&c, "finds") + n(&c, "updates") + n(&c, "deletes"),
        n(&c, "ops"),
        "{c}"
    );
    assert!(n(&c, "hits") <= n(&c, "finds"), "{c}");
    assert!(n(&c, "helper_calls") > 0 && n(&c, "key_missing") > 0, "{c}");
    assert_eq!(n(&c, "maps_created"), 2, "{c}");
    for zero in [
        "errors",
        "other_errors",
        "provider_away",
        "create_failures",
        "stuck_threads",
    ] {
        assert_eq!(n(&c, zero), 0, "{zero} in {c}");
    }
    let r = report(&rep);
    assert!(n(&r, "threads") >= 4, "the stand-in saw the workers: {r}");
    // Every update and delete the tool counted reached EbpfApi (plus the one
    // --program-config write), and helper reads were test runs.
    assert_eq!(n(&r, "update"), n(&c, "updates") + 1, "{r} vs {c}");
    assert_eq!(n(&r, "delete"), n(&c, "deletes"), "{r} vs {c}");
    assert!(n(&r, "test_run") > 0, "{r}");
    assert_eq!(n(&r, "live_maps"), 0, "every map closed: {r}");
    assert_eq!(n(&r, "open_fds"), 0, "every handle closed: {r}");
}

/// With the provider away, creating a map of its type returns -EINVAL: counted as
/// provider_away and create_failures, not as an error, and the tool still exits 0 (the
/// restart scenario relies on this).
#[test]
fn provider_away_is_counted_not_an_error() {
    let Some(b) = built() else { return };
    let dir = tempfile::tempdir().unwrap();
    let away = dir.path().join("away");
    std::fs::write(&away, b"").unwrap();
    let o = b.run(
        "map_stress",
        &[
            "--threads",
            "2",
            "--duration",
            "150",
            "--map-lifetime",
            "20",
        ],
        &[("EBPF_STUB_PROVIDER_AWAY_FILE", &away)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = counters(&o.stdout);
    assert!(n(&c, "provider_away") > 0, "{c}");
    assert_eq!(n(&c, "provider_away"), n(&c, "create_failures"), "{c}");
    assert_eq!(n(&c, "maps_created"), 0, "{c}");
    assert_eq!(n(&c, "errors"), 0, "{c}");
    // A built-in type needs no provider.
    let o = b.run(
        "map_stress",
        &["--threads", "2", "--duration", "100", "--map-type", "hash"],
        &[("EBPF_STUB_PROVIDER_AWAY_FILE", &away)],
    );
    let c = counters(&o.stdout);
    assert_eq!(
        (
            o.status.code(),
            n(&c, "maps_created"),
            n(&c, "provider_away")
        ),
        (Some(0), 1, 0),
        "{c}"
    );
}

/// Any other failure is an error: counted in other_errors and errors, named on stderr,
/// exit code 1.
#[test]
fn other_failures_are_errors_with_exit_1() {
    let Some(b) = built() else { return };
    let every = Path::new("25");
    let o = b.run(
        "map_stress",
        &["--threads", "2", "--duration", "150", "--mix", "update:100"],
        &[("EBPF_STUB_FAIL_UPDATE_EVERY", every)],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let c = counters(&o.stdout);
    assert!(n(&c, "other_errors") > 0, "{c}");
    assert_eq!(n(&c, "errors"), n(&c, "other_errors"), "{c}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("map_stress: failed to update a key: EOTHER"),
        "{err}"
    );
}

/// A caller that is not elevated gets -EPERM: the tool stops at once and says so.
#[test]
fn not_elevated_is_named() {
    let Some(b) = built() else { return };
    let o = b.run(
        "map_stress",
        &["--duration", "5000"],
        &[("EBPF_STUB_NOT_ELEVATED", Path::new("1"))],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let c = counters(&o.stdout);
    assert_eq!((n(&c, "errors"), n(&c, "ops")), (1, 0), "{c}");
    assert!(n(&c, "elapsed_ms") < 4000, "stopped at once: {c}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("EPERM (run elevated)"));
}

/// Bad arguments: exit 2, the problem and the usage on stderr, nothing on stdout.
#[test]
fn usage_errors_exit_2() {
    let Some(b) = built() else { return };
    for (tool, args, says) in [
        (
            "map_stress",
            &["--threads", "0"][..],
            "--threads must be from 1 to 256, got 0",
        ),
        (
            "map_stress",
            &["--mix", "find:0"][..],
            "--mix: weights add up to 0",
        ),
        (
            "map_stress",
            &["--helpers"][..],
            "--helpers needs --program",
        ),
        (
            "map_stress",
            &["--bogus", "1"][..],
            "unknown option --bogus",
        ),
        ("map_tool", &["create"][..], "create needs --name"),
    ] {
        let o = b.run(tool, args, &[]);
        assert_eq!(o.status.code(), Some(2), "{tool} {args:?}: {}", text(&o));
        assert!(o.stdout.is_empty(), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(says),
            "{}",
            text(&o)
        );
    }
}

/// map_tool creates a map of the sample type and pins it; a pin that does not exist is a
/// failure (exit 1) naming the path; ebpf_stats prints object counts.
#[test]
fn map_tool_and_ebpf_stats_answer_in_json() {
    let Some(b) = built() else { return };
    let o = b.run(
        "map_tool",
        &[
            "create",
            "--name",
            "live_a",
            "--type",
            "sample",
            "--max-entries",
            "128",
            "--pin",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = counters(&o.stdout);
    assert_eq!(
        (c["name"].as_str(), n(&c, "type"), c["pinned"].as_str()),
        (Some("live_a"), 15, Some("/hvlab/live_a"))
    );
    let o = b.run("map_tool", &["delete", "--name", "nowhere"], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("failed to unpin map /hvlab/nowhere: ENOENT")
    );
    let o = b.run("ebpf_stats", &[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = counters(&o.stdout);
    assert_eq!((n(&c, "maps"), n(&c, "programs")), (0, 0), "{c}");
}
