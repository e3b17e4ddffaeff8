//! `!analyze -v` from a host debugger (cdb.exe / kd.exe): the command line that runs it on a
//! dump, and a parser for the fields triage and signatures use.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The host debugger as the lab file configures it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebuggerConfig {
    /// `cdb.exe` or `kd.exe` (both take `-z <dump> -c <commands>`).
    pub path: PathBuf,
    /// `_NT_SYMBOL_PATH`-style symbol path passed with `-y`, e.g.
    /// `srv*C:\symbols*https://msdl.microsoft.com/download/symbols`.
    pub symbol_path: Option<String>,
}

/// A program and its arguments, ready to run or to show to a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl CommandLine {
    pub fn to_command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args);
        c
    }

    /// The command as a user would type it (arguments with spaces quoted).
    pub fn display(&self) -> String {
        let quote = |s: &str| {
            if s.contains([' ', ';', '"']) {
                format!("\"{}\"", s.replace('"', "\\\""))
            } else {
                s.to_owned()
            }
        };
        std::iter::once(self.program.to_string_lossy().into_owned())
            .chain(self.args.iter().map(|a| a.to_string_lossy().into_owned()))
            .map(|s| quote(&s))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `cdb -z <dump> [-y <symbols>] -c "!analyze -v; q"`: analyse the dump and quit.
pub fn analyze_command(debugger: &DebuggerConfig, dump: &Path) -> CommandLine {
    let mut args: Vec<OsString> = vec!["-z".into(), dump.as_os_str().to_owned()];
    if let Some(symbols) = &debugger.symbol_path {
        args.push("-y".into());
        args.push(symbols.into());
    }
    args.push("-c".into());
    args.push("!analyze -v; q".into());
    CommandLine {
        program: debugger.path.clone(),
        args,
    }
}

/// Why `!analyze -v` produced nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("start debugger {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("run debugger {program}: no result after {timeout:?}, killed")]
    Timeout { program: PathBuf, timeout: Duration },
    #[error("run debugger {program}: its output holds no !analyze result (exit status {status})")]
    NoAnalysis { program: PathBuf, status: String },
}

/// Run `!analyze -v` on `dump` with the configured debugger and parse its output. Blocking;
/// the debugger is killed when `timeout` passes.
pub fn run_analyze(
    debugger: &DebuggerConfig,
    dump: &Path,
    timeout: Duration,
) -> Result<Analyze, AnalyzeError> {
    let line = analyze_command(debugger, dump);
    let spawn_err = |source| AnalyzeError::Spawn {
        program: line.program.clone(),
        source,
    };
    let mut child = line
        .to_command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(spawn_err)?;
    // Read stdout on a thread so a chatty debugger never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().map_err(spawn_err)? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(AnalyzeError::Timeout {
                    program: line.program.clone(),
                    timeout,
                });
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let text = reader.join().unwrap_or_default();
    parse_analyze(&String::from_utf8_lossy(&text)).ok_or_else(|| AnalyzeError::NoAnalysis {
        program: line.program.clone(),
        status: status.to_string(),
    })
}

/// The fields of `!analyze -v` output that identify a failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analyze {
    /// The bugcheck name from the banner line, e.g. `PAGE_FAULT_IN_NONPAGED_AREA`.
    pub bugcheck_name: Option<String>,
    pub bugcheck_code: Option<u32>,
    /// `BUGCHECK_P1..P4` (or `Arg1..Arg4` from the banner section).
    pub bugcheck_args: Vec<u64>,
    pub failure_bucket_id: Option<String>,
    pub module_name: Option<String>,
    pub image_name: Option<String>,
    pub symbol_name: Option<String>,
    pub process_name: Option<String>,
    pub failure_id_hash: Option<String>,
    pub os_version: Option<String>,
    /// The frames of STACK_TEXT, innermost first, as the debugger names them (e.g.
    /// `nt!KeBugCheckEx`, `<Unloaded_x.sys>+0x11a40`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack: Vec<String>,
}

impl Analyze {
    /// Whether the debugger blamed a driver that was already unloaded (`x!unloaded` as
    /// symbol or bucket, as WinDbg names a frame in `MmUnloadedDrivers`).
    pub fn blames_unloaded(&self) -> bool {
        [&self.symbol_name, &self.failure_bucket_id]
            .into_iter()
            .flatten()
            .any(|s| s.to_ascii_lowercase().ends_with("!unloaded"))
    }
}

/// Parse `!analyze -v` output. Fields are `NAME:  value` lines at column 0; the first
/// non-empty value of a repeated field wins (WinDbg prints MODULE_NAME and IMAGE_NAME twice).
/// Returns `None` when the text holds no analysis at all.
pub fn parse_analyze(text: &str) -> Option<Analyze> {
    let mut a = Analyze::default();
    let mut args_from_banner: Vec<u64> = Vec::new();
    let mut p: [Option<u64>; 4] = [None; 4];
    let mut found = false;
    let mut after_banner = false;
    let mut in_stack = false;
    for line in text.lines() {
        let line = line.trim_end();
        // STACK_TEXT rows: `child-sp retaddr : args : frame`, up to the first blank line.
        if in_stack {
            match line.rsplit_once(" : ") {
                Some((_, frame)) if !line.is_empty() => {
                    a.stack.push(frame.trim().to_owned());
                    continue;
                }
                _ => in_stack = false,
            }
        }
        if line.starts_with("STACK_TEXT:") && a.stack.is_empty() {
            in_stack = true;
            found = true;
            continue;
        }
        if line.contains("Bugcheck Analysis") {
            after_banner = true;
            found = true;
            continue;
        }
        // The first "NAME (code)" line after the banner names the bugcheck.
        if after_banner
            && a.bugcheck_name.is_none()
            && let Some((name, code)) = banner_name(line)
        {
            a.bugcheck_name = Some(name.to_owned());
            a.bugcheck_code.get_or_insert(code);
            continue;
        }
        if let Some(rest) = line.strip_prefix("Arg")
            && let Some((n, value)) = rest.split_once(':')
            && n.len() == 1
            && let Some(v) = value.trim().split([',', ' ']).next().and_then(parse_hex)
        {
            args_from_banner.push(v);
            continue;
        }
        let Some((key, value)) = field(line) else {
            continue;
        };
        found = true;
        let set = |slot: &mut Option<String>| {
            if slot.is_none() && !value.is_empty() {
                *slot = Some(value.to_owned());
            }
        };
        match key {
            "FAILURE_BUCKET_ID" => set(&mut a.failure_bucket_id),
            "MODULE_NAME" => set(&mut a.module_name),
            "IMAGE_NAME" => set(&mut a.image_name),
            "SYMBOL_NAME" => set(&mut a.symbol_name),
            "PROCESS_NAME" => set(&mut a.process_name),
            "FAILURE_ID_HASH" => set(&mut a.failure_id_hash),
            "OS_VERSION" => set(&mut a.os_version),
            "BUGCHECK_CODE" => {
                if let Some(c) = parse_hex(value).and_then(|c| u32::try_from(c).ok()) {
                    a.bugcheck_code = Some(c);
                }
            }
            "BUGCHECK_P1" | "BUGCHECK_P2" | "BUGCHECK_P3" | "BUGCHECK_P4" => {
                let i = usize::from(key.as_bytes()[10] - b'1');
                p[i] = parse_hex(value);
            }
            _ => {}
        }
    }
    a.bugcheck_args = if p.iter().any(Option::is_some) {
        p.iter().map(|v| v.unwrap_or(0)).collect()
    } else {
        args_from_banner
    };
    found.then_some(a)
}

/// `KEY:  value` with an upper-case key at column 0.
fn field(line: &str) -> Option<(&str, &str)> {
    let (key, value) = line.split_once(':')?;
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && key.as_bytes()[0].is_ascii_uppercase();
    ok.then(|| (key, value.trim()))
}

/// `PAGE_FAULT_IN_NONPAGED_AREA (50)` -> (name, 0x50).
fn banner_name(line: &str) -> Option<(&str, u32)> {
    let (name, rest) = line.split_once(" (")?;
    let code = rest.strip_suffix(')')?;
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        return None;
    }
    Some((name, u32::from_str_radix(code, 16).ok()?))
}

/// WinDbg hex: `ffffb00a1c2e3000`, `ffffb00a`1c2e3000`, `0x50`, `50`.
fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix("0x").unwrap_or(s);
    let digits: String = s.chars().filter(|&c| c != '`').collect();
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(&digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_runs_analyze_and_quits() {
        let cfg = DebuggerConfig {
            path: PathBuf::from(r"C:\Debuggers\cdb.exe"),
            symbol_path: Some(r"srv*C:\symbols".to_owned()),
        };
        let cmd = analyze_command(&cfg, Path::new(r"C:\results\run-1\MEMORY.DMP"));
        assert_eq!(
            cmd.display(),
            r#"C:\Debuggers\cdb.exe -z C:\results\run-1\MEMORY.DMP -y srv*C:\symbols -c "!analyze -v; q""#
        );
    }

    #[test]
    fn hex_values_accept_backticks_and_prefixes() {
        assert_eq!(parse_hex("ffffb00a`1c2e3000"), Some(0xFFFF_B00A_1C2E_3000));
        assert_eq!(parse_hex("0x50"), Some(0x50));
        assert_eq!(parse_hex("zz"), None);
    }

    #[test]
    fn text_without_analysis_is_none() {
        assert_eq!(
            parse_analyze("Microsoft (R) Windows Debugger\nquit:\n"),
            None
        );
    }
}
