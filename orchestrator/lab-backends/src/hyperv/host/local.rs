//! `powershell.exe` on this machine, for hvlab running on the Hyper-V host itself. The
//! script goes over stdin (no command line length limit) to a fixed bootstrap passed with
//! `-EncodedCommand`; the child is killed when its timeout passes or its future is dropped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::PowerShellHost;
use crate::hyperv::error::PsError;
use crate::hyperv::script::Script;

/// Reads a base64 UTF-8 script from stdin and runs it (stdin is read to its end first, so
/// a script can be any size).
const BOOTSTRAP: &str = "$b = [Console]::In.ReadToEnd(); \
    $s = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($b.Trim())); \
    & ([scriptblock]::Create($s))";

/// A local PowerShell.
#[derive(Debug, Clone)]
pub struct LocalPowerShell {
    program: String,
}

impl Default for LocalPowerShell {
    fn default() -> Self {
        LocalPowerShell::new("powershell.exe")
    }
}

impl LocalPowerShell {
    /// `program` is `powershell.exe` (Windows PowerShell 5.1, which has the Hyper-V module
    /// everywhere) or `pwsh`.
    pub fn new(program: impl Into<String>) -> Self {
        LocalPowerShell {
            program: program.into(),
        }
    }
}

impl PowerShellHost for LocalPowerShell {
    fn target(&self) -> &str {
        "local"
    }

    async fn run(&self, script: &Script, timeout: Duration) -> Result<String, PsError> {
        let op = script.op;
        let spawn_err = |source| PsError::Spawn {
            op,
            program: self.program.clone(),
            source,
        };
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args([
            "-NoLogo",
            "-NoProfile",
            "-NonInteractive",
            "-ExecutionPolicy",
            "Bypass",
            "-EncodedCommand",
            &lab_transport::encode_powershell(BOOTSTRAP),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        #[cfg(unix)]
        cmd.process_group(0);
        let mut child = cmd.spawn().map_err(spawn_err)?;
        let input = B64.encode(script.render());
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let work = async {
            stdin.write_all(input.as_bytes()).await?;
            drop(stdin);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            a?;
            b?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        };
        let (status, out, err) = match tokio::time::timeout(timeout, work).await {
            Ok(r) => r.map_err(spawn_err)?,
            // Dropping `work` drops the child, which kill_on_drop kills.
            Err(_) => return Err(PsError::Timeout { op, after: timeout }),
        };
        let out = String::from_utf8_lossy(&out).into_owned();
        if out.trim().is_empty() {
            return Err(PsError::NoResult {
                op,
                code: status.code().unwrap_or(-1),
                stderr: lab_transport::command::decode_clixml(&String::from_utf8_lossy(&err))
                    .trim()
                    .to_owned(),
            });
        }
        Ok(out)
    }

    async fn put_file(&self, local: &Path, host_path: &str) -> Result<(), PsError> {
        copy(local, Path::new(host_path)).await
    }

    async fn get_file(&self, host_path: &str, local: &Path) -> Result<(), PsError> {
        copy(Path::new(host_path), local).await
    }
}

async fn copy(from: &Path, to: &Path) -> Result<(), PsError> {
    let err = |source| PsError::Spawn {
        op: "file.copy",
        program: format!("copy {} to {}", from.display(), to.display()),
        source,
    };
    if let Some(parent) = to.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(err)?;
    }
    tokio::fs::copy(from, to).await.map_err(err).map(|_| ())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A stand-in for powershell.exe: checks the bootstrap arrives, then echoes the script's
    /// first line back as the "envelope", or sleeps.
    fn fake(dir: &Path, body: &str) -> String {
        let path = dir.join("fake-powershell");
        let draft = dir.join("fake-powershell.draft");
        std::fs::write(&draft, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&draft, std::fs::Permissions::from_mode(0o755)).unwrap();
        // `cp` writes the executable in its own process: a file this test process had open
        // for writing would be inherited by a child another test thread forks meanwhile,
        // and exec of it would fail with "text file busy" until that child execs.
        let copied = std::process::Command::new("cp")
            .arg(&draft)
            .arg(&path)
            .status()
            .unwrap();
        assert!(copied.success());
        path.display().to_string()
    }

    #[tokio::test]
    async fn script_goes_over_stdin_and_output_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let ps = LocalPowerShell::new(fake(
            dir.path(),
            r#"[ "$6" = "-EncodedCommand" ] || exit 9; base64 -d | head -n 1"#,
        ));
        let s = Script::new("t.echo", "1").with("X", "a'b");
        let out = ps.run(&s, Duration::from_secs(10)).await.unwrap();
        assert_eq!(out.trim(), "$P = @{");
    }

    #[tokio::test]
    async fn a_hung_powershell_is_killed_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let ps = LocalPowerShell::new(fake(dir.path(), "cat >/dev/null; sleep 30"));
        let started = std::time::Instant::now();
        let e = ps
            .run(&Script::new("t.hang", "1"), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, PsError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn no_output_is_an_error_with_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let ps = LocalPowerShell::new(fake(dir.path(), "cat >/dev/null; echo boom >&2; exit 3"));
        let e = ps
            .run(&Script::new("t.fail", "1"), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.fail: powershell exited with code 3 without a result: boom"
        );
    }
}
