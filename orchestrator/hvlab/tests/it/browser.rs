//! index.html as a user sees it: Debian's Chromium (headless) opens the page of a real
//! fault run on the sim lab, at 1280 px wide, and a small script injected into a copy of
//! the page reports what it sees (every link's target, whether the page overflows
//! horizontally, whether the failing unit's step log is displayed). A screenshot of the page
//! is kept at `target/tmp/index-1280.png` (`CARGO_TARGET_TMPDIR`).
//!
//! Skipped with a printed reason when `chromium` is not installed, unless
//! `HVLAB_REQUIRE_CHROMIUM=1` (set by .ci/run, which installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Sandbox, text};

const CHECK: &str = r#"<script>
(function () {
  var links = Array.prototype.map.call(document.querySelectorAll('a[href]'), function (a) { return a.href; });
  var logs = Array.prototype.filter.call(document.querySelectorAll('pre.steplog'), function (p) { return p.offsetHeight > 0; })
    .map(function (p) { return p.textContent; });
  var res = { links: links, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, logs: logs };
  var out = document.createElement('pre');
  out.id = 'hvlab-check';
  out.textContent = JSON.stringify(res);
  document.body.appendChild(out);
})();
</script>"#;

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    })
}

fn headless(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--window-size=1280,1000",
    ]);
    cmd
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

/// A `file://` URL back to a path (percent-decoded).
fn url_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("file://")?;
    let rest = rest.split(['#', '?']).next().unwrap_or(rest);
    let bytes = rest.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(String::from_utf8(out).ok()?))
}

#[test]
fn the_report_of_a_fault_run_reads_right_in_a_browser() {
    let Some(bin) = chromium() else {
        assert!(
            std::env::var_os("HVLAB_REQUIRE_CHROMIUM").is_none_or(|v| v != "1"),
            "HVLAB_REQUIRE_CHROMIUM=1 but chromium is not installed (apt-get install chromium)"
        );
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    let sb = Sandbox::new();
    let out = {
        let _timing = crate::support::timing_sensitive();
        // A deterministic crash (0xD1 at the first map teardown), so the page has a crash
        // folder and a dump to link.
        sb.run(&["upstream-2191-work-item-at-dispatch", "--seed", "3"])
            .output()
            .unwrap()
    };
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let run = sb.run_dir();
    let page = std::fs::read_to_string(run.join("index.html")).unwrap();
    let checked = run.join("index-check.html");
    std::fs::write(
        &checked,
        page.replace("</body>", &format!("{CHECK}</body>")),
    )
    .unwrap();
    let dom = headless(&bin)
        .arg("--dump-dom")
        .arg(file_url(&checked))
        .output()
        .unwrap();
    std::fs::remove_file(&checked).unwrap();
    let dom_text = String::from_utf8_lossy(&dom.stdout).into_owned();
    let json = dom_text
        .split("<pre id=\"hvlab-check\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("no check output from chromium: {}", text(&dom)))
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let seen: serde_json::Value = serde_json::from_str(&json).unwrap();

    let links: Vec<&str> = seen["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(links.iter().any(|l| l.contains("crashes/")), "{links:?}");
    assert!(links.iter().any(|l| l.ends_with("steps.log")), "{links:?}");
    assert!(
        links.iter().any(|l| l.ends_with("console.log")),
        "{links:?}"
    );
    assert!(links.iter().any(|l| l.ends_with("MEMORY.DMP")), "{links:?}");
    for l in &links {
        let p = url_path(l).unwrap_or_else(|| panic!("not a local link: {l}"));
        assert!(p.starts_with(&run), "link leaves the run folder: {l}");
        assert!(p.exists(), "link does not resolve: {l}");
    }
    let (scroll, inner) = (
        seen["scrollWidth"].as_u64().unwrap(),
        seen["innerWidth"].as_u64().unwrap(),
    );
    assert_eq!(inner, 1280, "{seen}");
    assert!(
        scroll <= inner,
        "the page overflows horizontally at 1280 px: {scroll} px wide"
    );
    let logs = seen["logs"].as_array().unwrap();
    assert!(
        logs.iter().any(|l| l
            .as_str()
            .unwrap()
            .contains("steps[0] run map_stress: crashed")),
        "the failing unit's step log is not displayed: {seen}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("index-1280.png");
    let _ = std::fs::remove_file(&shot);
    let s = headless(&bin)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(file_url(&run.join("index.html")))
        .output()
        .unwrap();
    assert!(shot.is_file(), "no screenshot: {}", text(&s));
    eprintln!("screenshot: {}", shot.display());
}
