use std::path::Path;

use chrono::NaiveDate;

use super::{KnownMatch, parse_known_issues};
use crate::source::source_from_bytes;

fn parse(text: &str) -> Result<super::KnownIssues, String> {
    let src = source_from_bytes(Path::new("known-issues.yaml"), text.as_bytes().to_vec())
        .map_err(|d| d.message.clone())?;
    parse_known_issues(&src).map_err(|d| d.to_string())
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

const GOOD: &str = "\
known_issues:
  - bucket: 0123456789abcdef
    issue: https://github.com/microsoft/ebpf-for-windows/issues/1
  - signature: 'PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ext_*'
    issue: https://github.com/microsoft/ebpf-for-windows/issues/2
    expires: 2026-06-30
    note: use-after-free in the sample extension
";

#[test]
fn a_good_file_matches_by_bucket_and_by_signature_until_it_expires() {
    let k = parse(GOOD).unwrap();
    assert_eq!(k.entries.len(), 2);
    assert_eq!(
        k.entries[0].matches,
        KnownMatch::Bucket("0123456789abcdef".into())
    );
    assert_eq!(k.entries[1].origin.to_string(), "known-issues.yaml:5:12");
    let before = day("2026-06-30");
    let hit = k.find(
        "ffffffffffffffff",
        "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ext_x.sys",
        before,
    );
    assert!(hit.unwrap().issue.ends_with("/2"));
    assert!(
        k.find("0123456789abcdef", "other", before)
            .unwrap()
            .issue
            .ends_with("/1")
    );
    assert!(k.find("ffffffffffffffff", "other", before).is_none());
    assert!(k.expiry_warnings(before).is_empty());
    let after = day("2026-07-01");
    assert!(
        k.find(
            "ffffffffffffffff",
            "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ext_x.sys",
            after
        )
        .is_none()
    );
    insta::assert_snapshot!(k.expiry_warnings(after).join("\n"), @"known-issues.yaml:5:12: known issue https://github.com/microsoft/ebpf-for-windows/issues/2 expired on 2026-06-30 and no longer marks crashes as known: renew or remove the entry");
}

#[test]
fn bad_entries_are_config_errors_with_their_place() {
    let bad = "\
known_issues:
  - bucket: 0x50
    issue: https://example.invalid/1
  - signature: '*'
    issue: not a link
    expires: 30/06/2026
  - bucket: 0123456789abcdef
    signature: 'X*'
    issue: https://example.invalid/3
  - issue: https://example.invalid/4
";
    insta::assert_snapshot!(parse(bad).unwrap_err());
}

#[test]
fn unknown_keys_and_wrong_types_are_strict_yaml_errors() {
    insta::assert_snapshot!(
        parse("known_issues:\n  - bukket: 0123456789abcdef\n    issue: https://x.invalid/1\n")
            .unwrap_err()
    );
    insta::assert_snapshot!(parse("known_issues: 3\n").unwrap_err());
}

#[test]
fn the_documented_example_parses() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/known-issues.md"),
    )
    .unwrap();
    let yaml = doc
        .split("```yaml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a yaml block in docs/known-issues.md");
    let k = parse(yaml).unwrap();
    assert_eq!(k.entries.len(), 2);
}
