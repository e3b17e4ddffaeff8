//! Every output of a failed run names the cause, not only what failed: a results root that
//! cannot be created, and a Hyper-V host whose SSH port refuses the connection.

use std::path::Path;

use crate::support::{Sandbox, text};

/// A Hyper-V lab with one host reached over SSH on `127.0.0.1:port` and the two templates
/// the shipped Windows scenarios use.
fn hyperv_lab(port: u16) -> String {
    // The two templates differ only in name.
    let templates: String = ["ws2022", "ws2022-verifier"]
        .iter()
        .map(|name| {
            format!(
                r#"  - name: {name}
    base_vhdx: 'D:\hvlab\base\ws2022.vhdx'
    generation: 2
    vcpus: 2
    memory: 4GiB
    boot_timeout: 5m
    test_signing: true
    crash_dump: kernel
    guest:
      transport: powershell_direct
      credentials:
        user: Administrator
        password: {{env: HVLAB_TEST_GUEST_PASSWORD}}
"#
            )
        })
        .collect();
    format!(
        r#"name: unreachable
kind: hyperv
hosts:
  - name: hv-loop
    address: 127.0.0.1
    connection:
      kind: ssh
      port: {port}
      credentials:
        user: hvlab
        password: {{env: HVLAB_TEST_HOST_PASSWORD}}
    capacity: 1
    vm_dir: 'D:\hvlab\vms'
templates:
{templates}"#
    )
}

/// A loopback port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Placeholder build outputs for the `ebpf-for-windows` payload (no host is ever reached,
/// so their content does not matter).
fn fake_build(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in [
        "ebpfcore.sys",
        "netebpfext.sys",
        "sample_ebpf_ext.sys",
        "EbpfApi.dll",
        "bpftool.exe",
        "export_program_info.exe",
        "export_program_info_sample.exe",
        "api_test.exe",
        "ebpf_stress_tests_km.exe",
        "sample_ext_app.exe",
        "custom_map_basic.sys",
        "test_sample_ebpf.sys",
    ] {
        std::fs::write(dir.join(f), b"MZ").unwrap();
    }
}

fn read(run_dir: &Path, name: &str) -> String {
    std::fs::read_to_string(run_dir.join(name)).unwrap()
}

#[test]
fn a_results_root_blocked_by_a_file_says_why() {
    let sb = Sandbox::new();
    let file = sb.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let sandbox = regex_escape(&sb.dir.path().display().to_string());
    for (results, cause) in [
        (file.clone(), "File exists (os error 17)"),
        (file.join("sub"), "Not a directory (os error 20)"),
    ] {
        let out = sb
            .hvlab()
            .args(["run", "smoke", "--results"])
            .arg(&results)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(cause), "{}", text(&out));
        insta::with_settings!({
            filters => vec![(sandbox.as_str(), "[SANDBOX]")],
            snapshot_suffix => cause.split(' ').next().unwrap(),
        }, {
            insta::assert_snapshot!(stderr);
        });
    }
}

#[test]
fn a_refused_hyperv_host_connection_is_named_in_every_output() {
    let sb = Sandbox::new();
    let port = closed_port();
    let lab = sb.dir.path().join("lab.yaml");
    std::fs::write(&lab, hyperv_lab(port)).unwrap();
    let build = sb.dir.path().join("build");
    fake_build(&build);
    let out = sb
        .hvlab()
        .args(["run", "windows-api-test", "--lab"])
        .arg(&lab)
        .arg("--results")
        .arg(sb.results())
        .env("EBPF_BUILD_DIR", &build)
        .env("HVLAB_TEST_HOST_PASSWORD", "not-a-secret-host")
        .env("HVLAB_TEST_GUEST_PASSWORD", "not-a-secret-guest")
        // No known_hosts of the developer's is read or written.
        .env("HOME", sb.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    let target = format!("connect to hvlab@127.0.0.1:{port}");
    let refused = "Connection refused (os error 111)";
    let terminal =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let run_dir = sb.run_dir();
    for (name, content) in [
        ("the terminal", terminal),
        ("junit.xml", read(&run_dir, "junit.xml")),
        ("summary.json", read(&run_dir, "summary.json")),
        ("events.jsonl", read(&run_dir, "events.jsonl")),
        ("hvlab.log", read(&run_dir, "hvlab.log")),
    ] {
        assert!(
            content.contains(&target) && content.contains(refused),
            "{name} does not name the cause:\n{content}"
        );
    }

    // events.jsonl carries the chain as structured causes.
    let finished = crate::support::events(&run_dir)
        .into_iter()
        .find(|e| e["event"] == "unit_finished")
        .expect("a unit_finished event");
    let outcome = &finished["outcome"];
    assert_eq!(outcome["status"], "errored", "{finished}");
    insta::with_settings!({
        filters => vec![
            (r"hvlab-\d{8}-\d{6}-[0-9a-f]{4}-", "hvlab-[RUN]-"),
            (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
            // The lab's infra_retries re-runs the unit on a fresh VM: which one is by count.
            (r"ws2022-\d+", "ws2022-[N]"),
        ],
    }, {
        insta::assert_snapshot!(format!(
            "message: {}\ncauses:\n  {}",
            outcome["message"].as_str().unwrap_or_default(),
            outcome["causes"]
                .as_array()
                .map(|c| c.iter().map(|c| c.as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>().join("\n  "))
                .unwrap_or_default()
        ));
    });
}

/// `s` as a regex that matches it literally.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}
