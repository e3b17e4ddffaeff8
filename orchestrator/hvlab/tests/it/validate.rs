//! `hvlab validate` and `hvlab schema` as a user runs them: exit codes, the one-line
//! summary, and that every invalid fixture exits 2 with a located message and no panic.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `hvlab` run from the repository root, so messages show repository-relative paths.
fn hvlab() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hvlab"));
    cmd.current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("HVLAB_ROOT");
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_accepts_everything_shipped_with_a_one_line_summary() {
    let out = hvlab().arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("ok: 2 labs, 8 payloads, "), "{stdout}");
}

#[test]
fn validate_finds_the_root_from_a_subfolder() {
    let out = hvlab()
        .current_dir(repo().join("scenarios"))
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
}

#[test]
fn every_invalid_fixture_exits_2_with_a_located_message() {
    let dir = "orchestrator/lab-config/tests/fixtures/invalid";
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 30);
    for path in fixtures {
        let name = path.file_name().unwrap().to_str().unwrap();
        let rel = format!("{dir}/{name}");
        let first = std::fs::read(&path).map(|b| text(&b)).unwrap_or_default();
        let mut cmd = hvlab();
        cmd.arg("validate").arg(&rel);
        if let Some(lab) = first
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# validate with: --lab "))
        {
            cmd.arg("--lab").arg(lab.trim());
        }
        let out = cmd.output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: stderr:\n{stderr}");
        assert!(
            stderr.contains(&format!("--> {rel}:")),
            "{name}: no file:line:col in\n{stderr}"
        );
        assert!(
            stderr.lines().last().unwrap_or("").starts_with("error: "),
            "{name}: no summary line in\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{name}: stdout should be empty on failure"
        );
    }
}

#[test]
fn a_generated_50_megabyte_file_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("huge.scenario.yaml");
    std::fs::File::create(&p)
        .unwrap()
        .set_len(50 * 1024 * 1024)
        .unwrap();
    let out = hvlab().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("file is too large (50.0 MiB)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_missing_path_is_a_usage_error() {
    let out = hvlab()
        .args(["validate", "scenarios/nope.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "error: `scenarios/nope.yaml` does not exist\n"
    );
}

#[test]
fn an_unknown_option_is_a_usage_error() {
    let out = hvlab().args(["validate", "--frobnicate"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn with_a_hyperv_lab_sim_scenarios_are_skipped_not_failed() {
    let out = hvlab()
        .args(["validate", "--lab", "vm-configs/hyperv-example.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("skipped: payload target does not fit the lab"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn naming_a_mismatched_scenario_explicitly_is_an_error() {
    let out = hvlab()
        .args([
            "validate",
            "--lab",
            "vm-configs/local-sim.yaml",
            "scenarios/windows-api-test.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("error[target-mismatch]"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn help_documents_the_exit_codes() {
    for args in [
        &["--help"][..],
        &["validate", "--help"],
        &["schema", "--help"],
    ] {
        let out = hvlab().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = text(&out.stdout);
        for line in [
            "0    all passed",
            "2    usage or configuration error",
            "3    infrastructure error",
            "130  interrupted",
        ] {
            assert!(help.contains(line), "{args:?} help lacks {line:?}:\n{help}");
        }
    }
}

#[test]
fn checked_in_schemas_are_current() {
    let out = hvlab().args(["schema", "--check"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn schema_writes_then_check_detects_a_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    let out = hvlab().args(["schema", "--out", out_dir]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    for f in [
        "lab.schema.json",
        "payload.schema.json",
        "scenario.schema.json",
    ] {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(f)).unwrap()).unwrap();
        assert!(v.get("$defs").is_some(), "{f}");
    }
    assert_eq!(
        hvlab()
            .args(["schema", "--check", "--out", out_dir])
            .output()
            .unwrap()
            .status
            .code(),
        Some(0)
    );
    std::fs::write(dir.path().join("lab.schema.json"), "{}").unwrap();
    let out = hvlab()
        .args(["schema", "--check", "--out", out_dir])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("lab.schema.json"),
        "{}",
        text(&out.stderr)
    );
}

/// `hvlab validate ARGS...` with a bounded wait: a reader that blocks (a FIFO) must not hang
/// the test, it must fail it.
fn validate_within(args: &[&std::ffi::OsStr], limit: std::time::Duration) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hvlab"))
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("HVLAB_ROOT")
        .arg("validate")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "hvlab validate {args:?} still running after {limit:?}; stderr:\n{}",
                text(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    let st = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success(), "mkfifo {}", path.display());
}

/// The message with the temp dir replaced, for snapshots.
fn redacted(out: &std::process::Output, dir: &Path) -> String {
    text(&out.stderr).replace(dir.to_str().unwrap(), "[TMP]")
}

#[test]
fn a_fifo_is_refused_at_once_without_opening_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.scenario.yaml");
    mkfifo(&fifo);
    // Nobody ever writes to the FIFO: opening it for reading would block forever.
    let out = validate_within(&[fifo.as_os_str()], std::time::Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    insta::assert_snapshot!(redacted(&out, dir.path()), @r"
    error[file]: a named pipe (FIFO), not a regular file: expected a YAML file
      --> [TMP]/pipe.scenario.yaml
      = help: pass the path of a lab, payload or scenario file

    error: 1 problem in 1 file
    ");
}

#[test]
fn a_fifo_in_a_config_folder_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scenarios")).unwrap();
    let fifo = dir.path().join("scenarios/pipe.yaml");
    mkfifo(&fifo);
    let out = validate_within(&[fifo.as_os_str()], std::time::Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("a named pipe (FIFO), not a regular file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dev_zero_is_refused_without_reading_it() {
    let out = validate_within(
        &[std::ffi::OsStr::new("/dev/zero")],
        std::time::Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(text(&out.stderr), @r"
    error[file]: a character device, not a regular file: expected a YAML file
      --> /dev/zero
      = help: pass the path of a lab, payload or scenario file

    error: 1 problem in 1 file
    ");
}

#[test]
fn a_directory_where_a_config_file_belongs_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    for d in ["vm-configs", "driver-payloads", "scenarios/smoke.yaml"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let out = hvlab()
        .arg("--root")
        .arg(dir.path())
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        redacted(&out, dir.path())
            .contains("error[file]: a directory, not a regular file: expected a YAML file\n  --> [TMP]/scenarios/smoke.yaml"),
        "{}",
        text(&out.stderr)
    );
    // The same for a lab named on the command line.
    let out = hvlab()
        .args(["run", "--dry-run", "--lab"])
        .arg(dir.path().join("scenarios"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("a directory, not a regular file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_file_one_byte_over_the_limit_names_its_size_and_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("big.scenario.yaml");
    let mut body = b"name: big\n# ".to_vec();
    body.resize(4 * 1024 * 1024 + 1, b'x');
    std::fs::write(&p, body).unwrap();
    let out = hvlab().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(redacted(&out, dir.path()), @r"
    error[file]: file is too large (4194305 bytes): configuration files are limited to 4 MiB
      --> [TMP]/big.scenario.yaml:1:1
      = help: is this really a lab, payload or scenario file?

    error: 1 problem in 1 file
    ");
}

#[test]
fn a_second_document_is_an_error_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("two.scenario.yaml");
    std::fs::write(
        &p,
        "name: one\npayload: sim-ebpf\nsteps:\n  - sleep: 1s\n---\nname: two\n",
    )
    .unwrap();
    let out = hvlab().arg("validate").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    insta::assert_snapshot!(redacted(&out, dir.path()), @r"
    error[multiple-documents]: file contains more than one YAML document (`---`): put each lab, payload or scenario in its own file
      --> [TMP]/two.scenario.yaml:5:1
      |
    5 | ---
      | ^^^
      = help: the second document starts at line 5: split the file there

    error: 1 problem in 1 file
    ");
}
