//! Every dump kind the sim writes opens in the C++ kdmp-parser (PyPI `kdmp-parser`), a reader
//! we did not write, and it sees what our triage sees: bugcheck, parameters, RIP and the
//! loaded-module list. Small (DumpType 4) dumps are outside that parser's scope.
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
            let mut spec = common::page_fault(kind);
            spec.encoding = encoding;
            let path = dir.path().join(format!("{kind:?}-{encoding:?}.dmp"));
            write_dump(&path, &spec).unwrap();
            paths.push(path);
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
    let seen: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
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
