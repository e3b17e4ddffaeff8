//! The sim tools through `run_tool`: contract arguments, JSON output, usage errors, pins,
//! cancellation.

use crate::support::*;
use sim_kernel::*;
use std::time::{Duration, Instant};

fn run(k: &Kernel, tool: &str, a: &str) -> ToolOutput {
    k.run_tool(tool, &args(a), &CancelFlag::new()).unwrap()
}

#[test]
fn map_stress_prints_one_json_line_of_counters() {
    let (k, _) = boot();
    let out = run(
        &k,
        "map_stress",
        "--threads 2 --duration 100ms --keys 16 --mix find:50,update:30,delete:20 --map-type hash --maps 2 --seed 3 --helpers",
    );
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    for key in [
        "ops",
        "finds",
        "hits",
        "updates",
        "deletes",
        "errors",
        "create_failures",
        "maps_created",
    ] {
        assert!(v[key].is_u64(), "missing {key}: {v}");
    }
    assert_eq!(v["maps_created"], 2);
    assert_eq!(v["errors"], 0);
    k.shutdown();
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    let (k, _) = boot();
    let cases = [
        (
            "map_stress",
            "--threads 0",
            "--threads: 0 is out of range 1..=256",
        ),
        (
            "map_stress",
            "--duration soon",
            "--duration: \"soon\" is not a duration",
        ),
        (
            "map_stress",
            "--mix find:1,jump:2",
            "unknown operation \"jump\"",
        ),
        ("map_stress", "--frobnicate", "unknown option --frobnicate"),
        ("map_tool", "", "a command is required"),
        ("map_tool", "explode", "unknown command \"explode\""),
        ("map_tool", "create", "create: --name is required"),
        (
            "map_tool",
            "update --name m --key 1",
            "update: --value is required",
        ),
        (
            "map_tool",
            "create --name m --type array",
            "--type: unknown type \"array\"",
        ),
        (
            "ebpf_stats",
            "--verbose",
            "unexpected argument \"--verbose\"",
        ),
    ];
    for (tool, a, want) in cases {
        let out = run(&k, tool, a);
        assert_eq!(out.exit_code, 2, "{tool} {a}: {out:?}");
        assert!(
            out.stderr.contains(want),
            "{tool} {a}: {:?} should contain {want:?}",
            out.stderr
        );
        assert!(
            out.stderr.contains("usage:"),
            "{tool} {a}: no usage in {:?}",
            out.stderr
        );
    }
    assert!(matches!(
        k.run_tool("bpftool", &[], &CancelFlag::new()),
        Err(KernelError::UnknownTool(_))
    ));
    k.shutdown();
}

#[test]
fn map_tool_pins_outlive_the_tool_and_hold_the_extension() {
    let (k, svc) = boot();
    assert_eq!(
        run(
            &k,
            "map_tool",
            "create --name m1 --type sample --max-entries 64 --pin"
        )
        .exit_code,
        0
    );
    assert_eq!(
        run(&k, "map_tool", "update --name m1 --key 5 --value 50").exit_code,
        0
    );
    let out = run(&k, "map_tool", "find --name m1 --key 5");
    assert!(out.stdout.contains("\"value\":50"), "{out:?}");
    assert_eq!(
        run(&k, "map_tool", "fill --name m1 --count 20").exit_code,
        0
    );
    let list: serde_json::Value =
        serde_json::from_str(run(&k, "map_tool", "list").stdout.trim()).unwrap();
    assert_eq!(list[0]["name"], "m1");
    assert_eq!(list[0]["entries"], 20);
    assert_eq!(list[0]["type"], "sample");
    // Unpinned create: gone when the tool ends.
    assert_eq!(
        run(&k, "map_tool", "create --name tmp --type hash").exit_code,
        0
    );
    // Its teardown is an epoch work item.
    k.synchronize().unwrap();
    assert_eq!(k.live_maps(), 1);
    assert_eq!(k.stop_driver(&svc).unwrap(), ServiceState::StopPending);
    let out = run(&k, "map_tool", "delete --name m1");
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(wait_state(
        &k,
        &svc,
        ServiceState::Stopped,
        Duration::from_secs(2)
    ));
    let out = run(&k, "map_tool", "update --name m1 --key 1 --value 1");
    assert_eq!(out.exit_code, 1);
    assert!(
        out.stderr.contains("failed to open pinned map m1"),
        "{out:?}"
    );
    k.shutdown();
}

#[test]
fn ebpf_stats_reports_pool_tags_and_epoch_counters() {
    let (k, _) = boot();
    run(&k, "map_tool", "create --name m --pin");
    run(&k, "map_tool", "fill --name m --count 10");
    let v: serde_json::Value =
        serde_json::from_str(run(&k, "ebpf_stats", "").stdout.trim()).unwrap();
    assert!(v["pool"]["Smpl"]["bytes"].as_i64().unwrap() >= 10 * 64);
    for key in [
        "current",
        "released",
        "retired",
        "released_count",
        "pending_bytes",
    ] {
        assert!(v["epoch"][key].is_number(), "missing {key}: {v}");
    }
    k.shutdown();
}

#[test]
fn a_cancelled_stress_run_stops_promptly() {
    let (k, _) = boot();
    let cancel = CancelFlag::new();
    let c2 = cancel.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        c2.cancel();
    });
    let start = Instant::now();
    let out = k
        .run_tool("map_stress", &args("--threads 4 --duration 60s"), &cancel)
        .unwrap();
    t.join().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(out.exit_code, 130);
    k.shutdown();
}

#[test]
fn usage_texts_are_stable() {
    let (k, _) = boot();
    let text: String = ["map_stress --threads", "map_tool", "ebpf_stats x"]
        .iter()
        .map(|line| {
            let (tool, a) = line.split_once(' ').unwrap_or((line, ""));
            let out = run(&k, tool, a);
            format!("$ {line}\nexit {}\n{}", out.exit_code, out.stderr)
        })
        .collect();
    insta::assert_snapshot!(text);
    k.shutdown();
}
