//! `ebpf_stats`: one JSON line with pool usage per tag and the epoch counters.

use crate::kernel::Kernel;
use crate::tool_io::ToolOutput;

pub(crate) const USAGE: &str = "usage: ebpf_stats";

pub(crate) fn run(k: &Kernel, args: &[String]) -> ToolOutput {
    if let Some(a) = args.first() {
        return super::usage_error("ebpf_stats", &format!("unexpected argument {a:?}"), USAGE);
    }
    let mut pool = serde_json::Map::new();
    for t in k.pool_stats().tags {
        pool.insert(
            t.tag,
            serde_json::json!({"bytes": t.bytes, "allocs": t.allocs}),
        );
    }
    let e = k.epoch_stats();
    let line = serde_json::json!({
        "pool": pool,
        "epoch": {
            "current": e.current,
            "released": e.released,
            "retired": e.retired,
            "released_count": e.released_count,
            "pending_bytes": e.pending_bytes,
            "pending_items": e.pending_items,
        },
        "live_maps": k.live_maps(),
    });
    ToolOutput {
        exit_code: 0,
        stdout: format!("{line}\n"),
        stderr: String::new(),
    }
}
