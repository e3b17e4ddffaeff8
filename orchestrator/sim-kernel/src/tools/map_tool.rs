//! `map_tool`: create / pin / update / fill / find / delete / list maps, like a bpftool-style
//! management tool. Pinned maps belong to the kernel and outlive the tool run.

use super::args::Args;
use crate::error::EbpfError;
use crate::kernel::Kernel;
use crate::maps::{BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_SAMPLE_HASH_MAP, MapDefinition, UpdateOption};
use crate::tool_io::{CancelFlag, ToolOutput};

pub(crate) const USAGE: &str =
    "usage: map_tool create --name N [--type sample|hash] [--max-entries N] [--pin]
       map_tool update --name N --key K --value V
       map_tool find --name N --key K
       map_tool fill --name N --count C
       map_tool delete --name N
       map_tool list";

fn type_name(t: u32) -> String {
    match t {
        BPF_MAP_TYPE_HASH => "hash".into(),
        BPF_MAP_TYPE_SAMPLE_HASH_MAP => "sample".into(),
        other => other.to_string(),
    }
}

fn failed(what: &str, e: EbpfError) -> ToolOutput {
    ToolOutput {
        exit_code: 1,
        stdout: String::new(),
        stderr: format!("map_tool: failed to {what}: {e}\n"),
    }
}

fn ok(line: serde_json::Value) -> ToolOutput {
    ToolOutput {
        exit_code: 0,
        stdout: format!("{line}\n"),
        stderr: String::new(),
    }
}

pub(crate) fn run(k: &Kernel, args: &[String], cancel: &CancelFlag) -> ToolOutput {
    let Some((cmd, rest)) = args.split_first() else {
        return super::usage_error("map_tool", "a command is required", USAGE);
    };
    let spec: (&[&str], &[&str]) = match cmd.as_str() {
        "create" => (&["name", "type", "max-entries"], &["pin"]),
        "update" => (&["name", "key", "value"], &[]),
        "find" => (&["name", "key"], &[]),
        "fill" => (&["name", "count"], &[]),
        "delete" => (&["name"], &[]),
        "list" => (&[], &[]),
        other => {
            return super::usage_error("map_tool", &format!("unknown command {other:?}"), USAGE);
        }
    };
    let a = match Args::parse(rest, spec.0, spec.1) {
        Ok(a) => a,
        Err(e) => return super::usage_error("map_tool", &format!("{cmd}: {e}"), USAGE),
    };
    match run_cmd(k, cmd, &a, cancel) {
        Ok(out) => out,
        Err(e) => super::usage_error("map_tool", &format!("{cmd}: {e}"), USAGE),
    }
}

fn run_cmd(k: &Kernel, cmd: &str, a: &Args, cancel: &CancelFlag) -> Result<ToolOutput, String> {
    Ok(match cmd {
        "create" => {
            let name = a.required("name")?;
            let map_type = match a.get("type").unwrap_or("sample") {
                "sample" => BPF_MAP_TYPE_SAMPLE_HASH_MAP,
                "hash" => BPF_MAP_TYPE_HASH,
                other => return Err(format!("--type: unknown type {other:?} (sample, hash)")),
            };
            let max = a.int("max-entries", 1024, 1, 1 << 20)? as u32;
            let h = match k.create_map(MapDefinition::new(map_type, max)) {
                Ok(h) => h,
                Err(e) => return Ok(failed(&format!("create map {name}"), e)),
            };
            let pinned = a.flag("pin");
            if pinned && let Err(e) = k.pin_map(name, &h) {
                return Ok(failed(&format!("pin map {name}"), e));
            }
            // Without --pin the map is closed (and deleted) when the tool exits.
            ok(
                serde_json::json!({"name": name, "id": h.id(), "type": type_name(map_type),
                "max_entries": max, "pinned": pinned}),
            )
        }
        "update" | "find" | "fill" | "delete" => {
            let name = a.required("name")?;
            if cmd == "delete" {
                return Ok(match k.unpin_map(name) {
                    Ok(()) => ok(serde_json::json!({"deleted": name})),
                    Err(e) => failed(&format!("delete map {name}"), e),
                });
            }
            let key = if cmd == "fill" {
                0
            } else {
                a.required("key")?;
                a.int("key", 0, 0, u64::from(u32::MAX))? as u32
            };
            // Every argument is checked before the map is touched.
            let value = if cmd == "update" {
                a.required("value")?;
                a.int("value", 0, 0, u64::from(u32::MAX))? as u32
            } else {
                0
            };
            let count = if cmd == "fill" {
                a.required("count")?;
                a.int("count", 0, 0, 1 << 24)? as u32
            } else {
                0
            };
            let h = match k.open_pinned(name) {
                Ok(h) => h,
                Err(e) => return Ok(failed(&format!("open pinned map {name}"), e)),
            };
            match cmd {
                "update" => match h.update(key, value, UpdateOption::Any) {
                    Ok(()) => ok(serde_json::json!({"name": name, "key": key, "value": value})),
                    Err(e) => failed(&format!("update key {key} of map {name}"), e),
                },
                "find" => match h.find(key) {
                    Ok(v) => ok(serde_json::json!({"name": name, "key": key, "value": v})),
                    Err(e) => failed(&format!("find key {key} in map {name}"), e),
                },
                _ => {
                    for i in 0..count {
                        if i % 1024 == 0 && cancel.is_cancelled() {
                            return Ok(ToolOutput {
                                exit_code: 130,
                                stdout: String::new(),
                                stderr: format!("map_tool: cancelled after {i} entries\n"),
                            });
                        }
                        if let Err(e) = h.update(i, i, UpdateOption::Any) {
                            return Ok(failed(&format!("fill map {name} (key {i})"), e));
                        }
                    }
                    ok(serde_json::json!({"name": name, "filled": count, "entries": h.len()}))
                }
            }
        }
        _ => {
            let maps: Vec<_> = k
                .pinned_maps()
                .into_iter()
                .map(|m| {
                    serde_json::json!({"name": m.name, "id": m.id, "type": type_name(m.map_type),
                    "max_entries": m.max_entries, "entries": m.entries})
                })
                .collect();
            ok(serde_json::Value::Array(maps))
        }
    })
}
