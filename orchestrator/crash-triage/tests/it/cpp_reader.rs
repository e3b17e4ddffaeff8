//! Every dump kind the sim writes opens in the C++ kdmp-parser (PyPI `kdmp-parser`), a reader
//! we did not write, and it sees what our triage sees: bugcheck, parameters, RIP and the
//! loaded-module list, the unloaded-driver list and the return addresses on the faulting
//! thread's stack (the Python binding has no unloaded list or unwinder: the script follows
//! the debugger data block and scans the stack through the parser's own memory reads).
//! Small (DumpType 4) dumps are outside that parser's scope.
//!
//! Needs `python3 -m pip install kdmp-parser` (`.ci/run` installs it). Without it the test
//! says why it was skipped, except where `CI` or `HVLAB_REQUIRE_KDMP` is set: there it fails.

use std::process::Command;

use crash_triage::{DumpKind, PageEncoding, triage_file, write_dump};

use crate::common;

fn reader_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import kdmp_parser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let required =
            std::env::var_os("CI").is_some() || std::env::var_os("HVLAB_REQUIRE_KDMP").is_some();
        assert!(
            !required,
            "the C++ kdmp-parser is required here: python3 -m pip install kdmp-parser"
        );
        eprintln!(
            "skipped: python3 cannot import kdmp_parser (python3 -m pip install kdmp-parser)"
        );
    }
    ok
}

#[test]
fn every_full_and_kernel_dump_opens_in_the_cpp_kdmp_parser() {
    if !reader_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for kind in [DumpKind::Complete, DumpKind::Kernel] {
        for encoding in [PageEncoding::Bitmap, PageEncoding::Runs, PageEncoding::Rdmp] {
            for (what, mut spec) in [
                ("page-fault", common::page_fault(kind)),
                (
                    "unloaded-race",
                    common::unloaded_race(kind, 0x50, 0x1_00F0, "ebpf_program_invoke"),
                ),
            ] {
                spec.encoding = encoding;
                let path = dir.path().join(format!("{what}-{kind:?}-{encoding:?}.dmp"));
                write_dump(&path, &spec).unwrap();
                paths.push(path);
            }
        }
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/kdmp_cpp.py");
    let out = Command::new("python3")
        .arg(script)
        .args(&paths)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The C++ parser prints its own notes to stdout (e.g. a failed translation where the
    // stack scan reaches an unmapped page): results are the JSON lines.
    let seen: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(seen.len(), paths.len());
    for (path, cpp) in paths.iter().zip(&seen) {
        let name = path.file_name().unwrap().to_string_lossy();
        assert!(
            cpp.get("error").is_none(),
            "{name}: the C++ parser refused it: {cpp}"
        );
        let ours = triage_file(path).unwrap();
        assert_eq!(cpp["code"], u64::from(ours.bugcheck.code), "{name}");
        let params: Vec<u64> = serde_json::from_value(cpp["params"].clone()).unwrap();
        assert_eq!(params, ours.bugcheck.params, "{name}");
        assert_eq!(cpp["rip"], ours.rip, "{name}");
        let cpp_modules: Vec<(String, u64)> = cpp["modules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["base"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut cpp_modules = cpp_modules;
        // Load order (the list) vs address order (our triage): compare as sets.
        cpp_modules.sort_by_key(|m| m.1);
        let mut our_modules: Vec<(String, u64)> = ours
            .modules
            .iter()
            .map(|m| (m.name.clone(), m.base))
            .collect();
        our_modules.sort_by_key(|m| m.1);
        assert_eq!(cpp_modules, our_modules, "{name}: module lists differ");
        let cpp_unloaded: Vec<(String, u64, u64)> = cpp["unloaded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_owned(),
                    m["base"].as_u64().unwrap(),
                    m["size"].as_u64().unwrap(),
                )
            })
            .collect();
        let our_unloaded: Vec<(String, u64, u64)> = ours
            .unloaded_modules
            .iter()
            .map(|m| (m.name.clone(), m.base, m.size))
            .collect();
        assert_eq!(cpp_unloaded, our_unloaded, "{name}: unloaded lists differ");
        let cpp_stack: Vec<u64> = serde_json::from_value(cpp["stack"].clone()).unwrap();
        let our_stack: Vec<u64> = ours.stack.iter().skip(1).map(|f| f.address).collect();
        assert_eq!(cpp_stack, our_stack, "{name}: stacks differ");
        if name.starts_with("unloaded-race") {
            assert_eq!(cpp_unloaded.len(), 1, "{name}");
            assert_eq!(cpp_stack.len(), 2, "{name}");
            assert!(ours.faulting_module.as_ref().unwrap().unloaded, "{name}");
            continue;
        }
        let fm = ours.faulting_module.as_ref().unwrap();
        let blamed = cpp["modules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == fm.name.as_str())
            .unwrap();
        let (base, size) = (
            blamed["base"].as_u64().unwrap(),
            blamed["size"].as_u64().unwrap(),
        );
        assert!(
            (base..base + size).contains(&ours.rip),
            "{name}: RIP outside the blamed module as the C++ parser sees it"
        );
    }
}
