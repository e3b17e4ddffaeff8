//! Exec through the agent: sim tools need their deployed tool file; builtins; timeouts.

use std::time::{Duration, Instant};

use sim_guest::protocol::*;

use crate::support::*;

#[test]
fn tools_run_only_when_their_file_was_deployed() {
    let disk = TestDisk::new();
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    let out = c.exec(&[EBPF_STATS], 10_000);
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    let stats: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert!(stats.is_object(), "{stats}");

    std::fs::remove_file(disk.host(EBPF_STATS)).unwrap();
    let (code, msg) = c.err(&Request::Exec {
        argv: vec![EBPF_STATS.into()],
        timeout_ms: 1000,
    });
    assert_eq!(code, codes::ERROR_FILE_NOT_FOUND, "{msg}");
    assert!(msg.contains(r"C:\ebpf\ebpf_stats.exe"), "{msg}");

    // Not a full path: not found either (no PATH search).
    assert_eq!(
        c.err(&Request::Exec {
            argv: vec!["map_tool.exe".into()],
            timeout_ms: 1000
        })
        .0,
        codes::ERROR_FILE_NOT_FOUND
    );
    // A file that is not a tool.
    disk.put(r"C:\ebpf\fake.exe", b"MZ");
    assert_eq!(
        c.err(&Request::Exec {
            argv: vec![r"C:\ebpf\fake.exe".into()],
            timeout_ms: 1000
        })
        .0,
        codes::ERROR_BAD_EXE_FORMAT
    );
    // Bad arguments are the tool's business: exit code 2 and usage.
    let out = c.exec(&[MAP_TOOL, "frobnicate"], 10_000);
    assert_eq!(out.exit_code, Some(2), "{out:?}");
    assert!(out.stderr.contains("usage"), "{out:?}");
}

#[test]
fn builtins_answer_like_cmd() {
    let disk = TestDisk::new();
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    assert_eq!(c.exec(&["cmd", "/c", "exit", "7"], 1000).exit_code, Some(7));
    assert_eq!(
        c.exec(&["cmd.exe", "/c", "echo", "hi"], 1000).stdout,
        "hi\r\n"
    );
    assert_eq!(c.exec(&["hostname"], 1000).stdout, "SIMVM1\r\n");
    let (code, _) = c.err(&Request::Exec {
        argv: vec![],
        timeout_ms: 1000,
    });
    assert_eq!(code, codes::ERROR_INVALID_PARAMETER);
    let (code, msg) = c.err(&Request::Exec {
        argv: vec!["hostname".into()],
        timeout_ms: 0,
    });
    assert_eq!(code, codes::ERROR_INVALID_PARAMETER, "{msg}");
}

#[test]
fn a_tool_past_its_timeout_is_cancelled() {
    let disk = TestDisk::new();
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    start_core(&disk, &mut c);
    let start = Instant::now();
    let out = c.exec(
        &[
            MAP_STRESS,
            "--threads",
            "1",
            "--duration",
            "30s",
            "--keys",
            "16",
            "--map-type",
            "hash",
        ],
        300,
    );
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, None);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    // The guest still works.
    assert_eq!(c.exec(&["cmd", "/c", "exit", "0"], 1000).exit_code, Some(0));
}
