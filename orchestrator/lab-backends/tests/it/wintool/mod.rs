//! hvlab's Windows guest tools (driver-payloads/windows-tools/) checked with real compilers
//! and a real run: the C# compiles with mono's `mcs -langversion:5` (the language level of
//! Windows PowerShell 5.1's `Add-Type`), the PowerShell parses with the tree-sitter grammar,
//! and the compiled tools run under mono against `libEbpfApi.so`, a C stand-in for
//! EbpfApi.dll built here with `cc` (ebpfapi_stub.c), so threads, counters, the JSON line
//! and error classification are exercised for real.
//!
//! Without mcs, mono or cc the mono tests print why and pass, unless HVLAB_REQUIRE_MONO=1
//! (CI sets it), like HVLAB_REQUIRE_SSHD for the SSH tests.

mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tools_dir() -> PathBuf {
    repo().join("driver-payloads/windows-tools")
}

/// The C# sources hvlab_tools.ps1 compiles, in its order.
fn sources() -> Vec<PathBuf> {
    [
        "HvlabEbpf.cs",
        "MapStress.cs",
        "MapTool.cs",
        "ProgInvoke.cs",
    ]
    .iter()
    .map(|f| tools_dir().join(f))
    .collect()
}

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The tools compiled by mcs and the stand-in library, built once per test binary.
pub struct Built {
    dir: PathBuf,
}

impl Built {
    /// Runs `tool args` under mono with the stand-in EbpfApi and `env` set.
    pub fn run(&self, tool: &str, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut c = Command::new("mono");
        c.arg(self.dir.join("hvlab-tools.exe"))
            .arg(tool)
            .args(args)
            .env("LD_LIBRARY_PATH", &self.dir)
            .env_remove("EBPF_STUB_PROVIDER_AWAY_FILE")
            .env_remove("EBPF_STUB_NOT_ELEVATED")
            .env_remove("EBPF_STUB_FAIL_UPDATE_EVERY")
            .env_remove("EBPF_STUB_REPORT");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("start mono")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `Some` when mcs, mono and cc are here; otherwise prints why and returns `None` (or
/// panics under HVLAB_REQUIRE_MONO=1).
pub fn built() -> Option<&'static Built> {
    static BUILT: OnceLock<Option<Built>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let missing: Vec<&str> = ["mcs", "mono", "cc"]
                .into_iter()
                .filter(|p| !found(p))
                .collect();
            if !missing.is_empty() {
                let why = format!(
                    "skipped: {} not installed (apt-get install mono-mcs mono-runtime gcc)",
                    missing.join(", ")
                );
                assert!(
                    std::env::var("HVLAB_REQUIRE_MONO").as_deref() != Ok("1"),
                    "HVLAB_REQUIRE_MONO=1 but {why}"
                );
                eprintln!("wintool tests {why}");
                return None;
            }
            // Kept for the whole test binary (tests share the build); removed by the OS's
            // temp cleanup, not by a test that could race another.
            let dir = tempfile::Builder::new()
                .prefix("hvlab-wintool-")
                .tempdir()
                .expect("temp dir")
                .keep();
            let mcs = Command::new("mcs")
                .args(["-langversion:5", "-warnaserror", "-target:exe"])
                .arg("-main:Hvlab.Cli")
                .arg(format!("-out:{}", dir.join("hvlab-tools.exe").display()))
                .args(sources())
                .output()
                .expect("run mcs");
            assert!(mcs.status.success(), "mcs failed:\n{}", text(&mcs));
            let cc = Command::new("cc")
                .args(["-shared", "-fPIC", "-O1", "-Wall", "-Wextra", "-Werror"])
                .arg("-o")
                .arg(dir.join("libEbpfApi.so"))
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/wintool/ebpfapi_stub.c"))
                .arg("-lpthread")
                .output()
                .expect("run cc");
            assert!(cc.status.success(), "cc failed:\n{}", text(&cc));
            Some(Built { dir })
        })
        .as_ref()
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// mcs at `-langversion:5` rejects C# 6, so compiling the tools with it proves they stay
/// within what Add-Type on Windows PowerShell 5.1 accepts (the check above would be
/// meaningless if mcs accepted newer syntax).
#[test]
fn mcs_at_level_5_rejects_csharp_6() {
    let Some(b) = built() else { return };
    let src = b.dir().join("csharp6.cs");
    std::fs::write(
        &src,
        "class C { static void Main() { int x = 1; System.Console.WriteLine($\"{x}\"); } }\n",
    )
    .unwrap();
    let o = Command::new("mcs")
        .arg("-langversion:5")
        .arg(format!("-out:{}", b.dir().join("csharp6.exe").display()))
        .arg(&src)
        .output()
        .unwrap();
    assert!(!o.status.success(), "mcs accepted C# 6:\n{}", text(&o));
}

/// The struct layouts the tools pass to EbpfApi, against libbpf's (ebpf-for-windows'
/// include/bpf/bpf.h includes external/libbpf/src/bpf.h): x64 sizes and field offsets.
#[test]
fn struct_layouts_match_upstream() {
    let Some(b) = built() else { return };
    let o = b.run("layout", &[], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let got: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let upstream: &[(&str, i64)] = &[
        ("bpf_map_create_opts.size", 48),
        ("bpf_map_create_opts.sz", 0),
        ("bpf_map_create_opts.btf_fd", 8),
        ("bpf_map_create_opts.inner_map_fd", 24),
        ("bpf_map_create_opts.map_flags", 28),
        ("bpf_map_create_opts.map_extra", 32),
        ("bpf_map_create_opts.numa_node", 40),
        ("bpf_map_create_opts.map_ifindex", 44),
        ("bpf_test_run_opts.size", 80),
        ("bpf_test_run_opts.sz", 0),
        ("bpf_test_run_opts.data_in", 8),
        ("bpf_test_run_opts.data_out", 16),
        ("bpf_test_run_opts.data_size_in", 24),
        ("bpf_test_run_opts.ctx_in", 32),
        ("bpf_test_run_opts.ctx_out", 40),
        ("bpf_test_run_opts.ctx_size_in", 48),
        ("bpf_test_run_opts.retval", 56),
        ("bpf_test_run_opts.repeat", 60),
        ("bpf_test_run_opts.duration", 64),
        ("bpf_test_run_opts.flags", 68),
        ("bpf_test_run_opts.cpu", 72),
        ("bpf_test_run_opts.batch_size", 76),
    ];
    for (field, offset) in upstream {
        assert_eq!(got[field].as_i64(), Some(*offset), "{field} in {got}");
    }
}

/// hvlab_tools.ps1 is Windows PowerShell that the tree-sitter grammar parses without an
/// error, and it compiles exactly the C# files the payload deploys.
#[test]
fn powershell_entry_script_parses() {
    let text = std::fs::read_to_string(tools_dir().join("hvlab_tools.ps1")).unwrap();
    let mut parser = tree_sitter::Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .unwrap();
    let tree = parser.parse(&text, None).unwrap();
    let mut errors = Vec::new();
    let mut stack = vec![tree.root_node()];
    while let Some(n) = stack.pop() {
        if n.is_error() || n.is_missing() {
            errors.push(format!(
                "{} at {:?}: {:?}",
                n.kind(),
                n.start_position(),
                &text[n.byte_range()]
            ));
        }
        let mut c = n.walk();
        stack.extend(n.children(&mut c));
    }
    assert!(errors.is_empty(), "{errors:#?}");
    assert!(text.contains("Add-Type -Path $sources"));
    let payload =
        std::fs::read_to_string(repo().join("driver-payloads/ebpf-for-windows.yaml")).unwrap();
    for f in sources() {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            text.contains(&format!("'{name}'")),
            "hvlab_tools.ps1 does not compile {name}"
        );
        assert!(
            payload.contains(&format!("windows-tools/{name}")),
            "the payload does not deploy {name}"
        );
    }
    for tool in ["map_stress", "map_tool", "ebpf_stats"] {
        let cmd = std::fs::read_to_string(tools_dir().join(format!("{tool}.cmd"))).unwrap();
        assert!(
            cmd.contains(&format!("-File \"%~dp0hvlab_tools.ps1\" {tool} %*")),
            "{tool}.cmd: {cmd}"
        );
        assert!(
            cmd.contains("exit /b %ERRORLEVEL%"),
            "{tool}.cmd passes the exit code through"
        );
    }
}
