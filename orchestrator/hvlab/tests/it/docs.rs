//! The shell commands in the README and docs/ run as written: a `\` line continuation
//! followed by a comment ends the command there, so the variables set above it never reach
//! the program (docs/hyperv.md's real-host command once skipped its suite that way).

use crate::support::repo_root;

#[test]
fn no_shell_block_comments_after_a_line_continuation() {
    let root = repo_root();
    let mut files = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let mut in_sh = false;
        for (n, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("```") {
                in_sh = !in_sh && matches!(t, "```sh" | "```bash" | "```shell" | "```console");
                continue;
            }
            if in_sh
                && let Some(at) = line.find(" \\ ")
                && line[at + 3..].trim_start().starts_with('#')
            {
                bad.push(format!("{}:{}: {line}", f.display(), n + 1));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "comment after a line continuation:\n{}",
        bad.join("\n")
    );
}
