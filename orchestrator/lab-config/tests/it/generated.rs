//! Hostile inputs generated at test time (too big or too silly to commit): a 50 MB file, a
//! "billion laughs" alias bomb, nesting far past the depth limit, a very long line.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

/// Runs `f` and checks it finished quickly (no hang, no quadratic blow-up).
fn quick<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{what} took {:?}",
        start.elapsed()
    );
    out
}

fn only_message(path: &Path) -> String {
    let diags = quick(&path.display().to_string(), || {
        lab_config::load_scenario(path)
    })
    .unwrap_err();
    assert_eq!(diags.len(), 1, "{diags}");
    let d = &diags.items()[0];
    let loc = d.loc.expect("located");
    format!(
        "{}:{}: [{}] {} (at `{}`)",
        loc.line, loc.column, d.code, d.message, d.yaml_path
    )
}

#[test]
fn fifty_megabyte_file_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.scenario.yaml");
    let f = std::fs::File::create(&p).unwrap();
    // Sparse: 50 MB on paper, nothing on disk.
    f.set_len(50 * 1024 * 1024).unwrap();
    insta::assert_snapshot!(only_message(&p), @"1:1: [file] file is too large (50.0 MiB): configuration files are limited to 4 MiB (at ``)");
}

#[test]
fn alias_bomb_is_stopped_by_the_budget() {
    // Type-correct, so only the budget can stop it: step s9 is 10^9 sleeps.
    let mut y = String::from("name: bomb\npayload: sim-ebpf\nsteps:\n  - &s0 {sleep: 1ms}\n");
    for i in 1..10 {
        let prev = format!("*s{}", i - 1);
        y.push_str(&format!(
            "  - &s{i} {{parallel: [{}]}}\n",
            vec![prev; 10].join(", ")
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bomb.scenario.yaml", y.as_bytes());
    let msg = only_message(&p);
    assert!(msg.contains("[limits]") || msg.contains("[parse]"), "{msg}");
    insta::assert_snapshot!(msg);
}

#[test]
fn nesting_past_the_limit_is_an_error_not_a_stack_overflow() {
    let depth = 10_000;
    let y = format!(
        "name: deep\npayload: sim-ebpf\nsteps: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "deep.scenario.yaml", y.as_bytes());
    insta::assert_snapshot!(only_message(&p));
}

#[test]
fn a_very_long_line_is_shown_cut() {
    let y = format!(
        "name: long\npayload: sim-ebpf\nsteps: {}\n",
        "x".repeat(1_000_000)
    );
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "long.scenario.yaml", y.as_bytes());
    let diags = lab_config::load_scenario(&p).unwrap_err();
    let text = diags.to_string();
    assert!(text.len() < 2_000, "rendered {} bytes", text.len());
    assert!(text.contains(" ..."), "{text}");
}
