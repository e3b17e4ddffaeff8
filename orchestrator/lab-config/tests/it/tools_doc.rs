//! docs/tools.md is generated from the shipped payload manifests; it must match them.

use super::{repo, shipped};

#[test]
fn tools_reference_is_current() {
    let mut payloads = Vec::new();
    for path in shipped("driver-payloads") {
        let text = std::fs::read_to_string(&path).unwrap();
        let p = lab_config::load_payload(&path).unwrap_or_else(|d| panic!("{d}"));
        payloads.push((p, text));
    }
    let want = lab_config::tools_markdown(&payloads);
    let doc = repo().join("docs/tools.md");
    if std::env::var_os("HVLAB_UPDATE_DOCS").is_some() {
        std::fs::write(&doc, &want).unwrap();
    }
    let have = std::fs::read_to_string(&doc).unwrap_or_default();
    assert!(
        have == want,
        "docs/tools.md differs from the payload manifests: regenerate it with \
         HVLAB_UPDATE_DOCS=1 cargo test -p lab-config --test it tools_reference"
    );
    // The arguments once documented only in a YAML comment are in the reference.
    assert!(
        want.contains("| `map_lifetime` | duration | at least 10ms |"),
        "{want}"
    );
}
