//! Data-driven harness: every `tests/fixtures/invalid/*.yaml` must fail validation with
//! located diagnostics, and its full message is snapshotted.

use std::path::PathBuf;

use super::validate_one;

fn fixtures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("tests/fixtures/invalid")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn corpus_is_large_enough() {
    assert!(
        fixtures().len() >= 30,
        "the issue asks for at least 30 invalid fixtures, have {}",
        fixtures().len()
    );
}

#[test]
fn every_invalid_fixture_fails_with_a_located_message() {
    let mut failures = Vec::new();
    for path in fixtures() {
        let stem = path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".yaml")
            .to_owned();
        let diags = match validate_one(&path) {
            Ok(_) => {
                failures.push(format!("{stem}: validated without problems"));
                continue;
            }
            Err(d) => d,
        };
        for d in diags.items() {
            let loc = d.loc.unwrap_or_default();
            if loc.line == 0 || loc.column == 0 {
                failures.push(format!(
                    "{stem}: diagnostic without a location: {}",
                    d.message
                ));
            }
            if d.file != path {
                failures.push(format!(
                    "{stem}: diagnostic names another file: {}",
                    d.file.display()
                ));
            }
        }
        let text = format!("{diags}\n{}\n", diags.summary());
        insta::with_settings!({ prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("invalid__{stem}"), text);
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// docs/scenarios.md promises every problem of a file in one pass: the parser stops at the
/// first unknown key, so a second one used to go unreported until the first was fixed.
#[test]
fn two_unknown_keys_give_two_diagnostics() {
    let path = PathBuf::from("tests/fixtures/invalid/two-unknown-keys.scenario.yaml");
    let diags = validate_one(&path).expect_err("two unknown keys");
    let found: Vec<(String, u32)> = diags
        .items()
        .iter()
        .map(|d| (d.yaml_path.clone(), d.loc.unwrap_or_default().line))
        .collect();
    assert_eq!(
        found,
        [
            ("timout".to_owned(), 4),
            ("steps[0].driver_start.expct".to_owned(), 6)
        ],
        "{diags}"
    );
}
