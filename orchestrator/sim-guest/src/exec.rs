//! `Exec`: the sim tools (run by sim-kernel, only when their tool file was deployed) and a
//! few builtins for raw commands (`cmd /c exit N`, `cmd /c echo ...`, `hostname`).
//!
//! A tool file is JSON `{"format": "hvlab-sim-tool/1", "tool": "<name>"}` at the path in
//! `argv[0]`; a missing file is error 2 (so a tool that was never deployed fails loudly),
//! a file that is not a tool is error 193. The timeout cancels the tool; the reply then has
//! `timed_out: true`, no exit code, and whatever the tool printed.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sim_kernel::CancelFlag;

use crate::error::{GuestError, GuestResult};
use crate::guest::GuestCore;
use crate::protocol::{ExecOutput, codes};

/// The tool file format tag.
pub const TOOL_FORMAT: &str = "hvlab-sim-tool/1";
/// Longest accepted `timeout_ms` (one day).
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;
/// How long a cancelled tool gets to stop before the reply goes out without it.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolFile {
    format: String,
    tool: String,
}

impl GuestCore {
    pub(crate) fn exec(&self, argv: &[String], timeout_ms: u64) -> GuestResult<ExecOutput> {
        let Some(program) = argv.first() else {
            return Err(GuestError::new(
                codes::ERROR_INVALID_PARAMETER,
                "exec: argv is empty",
            ));
        };
        if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(GuestError::new(
                codes::ERROR_INVALID_PARAMETER,
                format!("exec {program}: timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"),
            ));
        }
        if let Some(out) = builtin(argv, &self.vm.name) {
            return Ok(out);
        }
        let resolved = self.files.resolve(program).map_err(|e| {
            GuestError::new(
                codes::ERROR_FILE_NOT_FOUND,
                format!(
                    "exec {program}: not a builtin and not a full path of a deployed tool ({})",
                    e.message
                ),
            )
        })?;
        let bytes = std::fs::read(&resolved.host)
            .map_err(|e| GuestError::io("exec", &resolved.win, &resolved.host, &e))?;
        let tool = match serde_json::from_slice::<ToolFile>(&bytes) {
            Ok(t) if t.format == TOOL_FORMAT => t.tool,
            _ => {
                return Err(GuestError::new(
                    codes::ERROR_BAD_EXE_FORMAT,
                    format!(
                        "exec {}: not a valid sim tool file ({TOOL_FORMAT})",
                        resolved.win
                    ),
                ));
            }
        };
        self.run_tool(&tool, &argv[1..], Duration::from_millis(timeout_ms))
    }

    fn run_tool(&self, tool: &str, args: &[String], timeout: Duration) -> GuestResult<ExecOutput> {
        let cancel = CancelFlag::new();
        let (tx, rx) = mpsc::channel();
        let kernel = self.kernel.clone();
        let (t, a, c) = (tool.to_owned(), args.to_vec(), cancel.clone());
        thread::Builder::new()
            .name(format!("tool-{tool}"))
            .spawn(move || {
                let _ = tx.send(kernel.run_tool(&t, &a, &c));
            })
            .map_err(|e| {
                GuestError::new(codes::ERROR_INTERNAL_ERROR, format!("exec {tool}: {e}"))
            })?;
        let started = Instant::now();
        let (result, timed_out) = match rx.recv_timeout(timeout) {
            Ok(r) => (Some(r), false),
            Err(_) => {
                cancel.cancel();
                let left = CANCEL_GRACE.saturating_sub(started.elapsed().saturating_sub(timeout));
                (rx.recv_timeout(left).ok(), true)
            }
        };
        match result {
            Some(Ok(out)) => Ok(ExecOutput {
                exit_code: (!timed_out).then_some(out.exit_code),
                stdout: out.stdout,
                stderr: out.stderr,
                timed_out,
            }),
            Some(Err(e)) => Err(GuestError::new(
                match e {
                    sim_kernel::KernelError::Halted(_) => codes::ERROR_SHUTDOWN_IN_PROGRESS,
                    sim_kernel::KernelError::UnknownTool(_) => codes::ERROR_BAD_EXE_FORMAT,
                    _ => codes::ERROR_INTERNAL_ERROR,
                },
                format!("exec {tool}: {e}"),
            )),
            None => Ok(ExecOutput {
                exit_code: None,
                stdout: String::new(),
                stderr: format!("{tool} did not stop within {CANCEL_GRACE:?} of its timeout\r\n"),
                timed_out: true,
            }),
        }
    }
}

/// The builtins; `None` when `argv` is not one.
fn builtin(argv: &[String], hostname: &str) -> Option<ExecOutput> {
    let program = argv[0].rsplit(['\\', '/']).next().unwrap_or(&argv[0]);
    let program = program.to_ascii_lowercase();
    let program = program.strip_suffix(".exe").unwrap_or(&program);
    let system_path = argv[0].contains(['\\', '/']);
    if system_path
        && !argv[0]
            .to_ascii_lowercase()
            .replace('/', "\\")
            .starts_with("c:\\windows\\system32\\")
    {
        return None;
    }
    let ok = |code: i32, stdout: String, stderr: String| ExecOutput {
        exit_code: Some(code),
        stdout,
        stderr,
        timed_out: false,
    };
    match program {
        "hostname" => Some(ok(0, format!("{hostname}\r\n"), String::new())),
        "cmd" => {
            let Some(pos) = argv.iter().position(|a| a.eq_ignore_ascii_case("/c")) else {
                return Some(ok(
                    1,
                    String::new(),
                    "cmd: only `cmd /c <command>` is supported by the simulated guest\r\n".into(),
                ));
            };
            let rest = &argv[pos + 1..];
            let verb = rest.first().map(|s| s.to_ascii_lowercase());
            Some(match verb.as_deref() {
                Some("exit") => {
                    let code = rest.get(1).and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
                    ok(code, String::new(), String::new())
                }
                Some("echo") => ok(0, format!("{}\r\n", rest[1..].join(" ")), String::new()),
                Some(other) => ok(
                    1,
                    String::new(),
                    format!(
                        "'{other}' is not recognized as an internal or external command,\r\n\
                         operable program or batch file.\r\n"
                    ),
                ),
                None => ok(0, String::new(), String::new()),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Option<ExecOutput> {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        builtin(&argv, "VM1")
    }

    #[test]
    fn builtins() {
        assert_eq!(run(&["cmd", "/c", "exit", "3"]).unwrap().exit_code, Some(3));
        assert_eq!(
            run(&["C:\\Windows\\System32\\cmd.exe", "/C", "exit", "-1"])
                .unwrap()
                .exit_code,
            Some(-1)
        );
        assert_eq!(
            run(&["cmd.exe", "/c", "echo", "hi", "there"])
                .unwrap()
                .stdout,
            "hi there\r\n"
        );
        assert_eq!(run(&["hostname"]).unwrap().stdout, "VM1\r\n");
        let bad = run(&["cmd", "/c", "format", "c:"]).unwrap();
        assert_eq!(bad.exit_code, Some(1));
        assert!(bad.stderr.contains("'format' is not recognized"));
        assert!(run(&["C:\\ebpf\\cmd.exe", "/c", "exit", "0"]).is_none());
        assert!(run(&["C:\\ebpf\\map_tool.exe", "list"]).is_none());
    }
}
