//! What a caller asks a transport to run, what comes back, and the quoting that keeps
//! arguments and paths out of the remote shell's grammar.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

/// Default per-command deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// Default cap on each of stdout and stderr kept in memory.
pub const DEFAULT_OUTPUT_CAP: usize = 16 * 1024 * 1024;

/// How the remote side should run a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// A program and its arguments; each is quoted for the remote shell, so no argument is
    /// ever interpreted as shell code.
    Program { program: String, args: Vec<String> },
    /// A line handed to the remote shell as written (pipes, redirections). The caller is
    /// responsible for quoting anything that came from a file or a user.
    Shell(String),
}

/// A command with its deadline and output cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub line: CommandLine,
    /// The remote command is killed when this runs out (see docs/transports.md).
    pub timeout: Duration,
    /// Bytes kept of each of stdout and stderr; the rest is read and dropped, and
    /// [`ExecOutput::truncated`] says so.
    pub output_cap: usize,
}

impl Command {
    /// Runs `program` with arguments added by [`Command::arg`].
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            line: CommandLine::Program {
                program: program.into(),
                args: Vec::new(),
            },
            timeout: DEFAULT_TIMEOUT,
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }

    /// Runs a raw shell line.
    pub fn shell(line: impl Into<String>) -> Self {
        Self {
            line: CommandLine::Shell(line.into()),
            timeout: DEFAULT_TIMEOUT,
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }

    /// Adds one argument (ignored for [`CommandLine::Shell`] commands, which have none).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        if let CommandLine::Program { args, .. } = &mut self.line {
            args.push(arg.into());
        }
        self
    }

    pub fn args<I, S>(mut self, more: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        for a in more {
            self = self.arg(a);
        }
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn output_cap(mut self, cap: usize) -> Self {
        self.output_cap = cap;
        self
    }

    /// The line a POSIX shell runs.
    pub fn to_posix_line(&self) -> String {
        match &self.line {
            CommandLine::Shell(line) => line.clone(),
            CommandLine::Program { program, args } => std::iter::once(program)
                .chain(args)
                .map(|a| posix_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    /// A PowerShell script that runs the program with its arguments as literals and exits
    /// with its exit code (Windows hosts get programs through PowerShell, whose quoting is
    /// well defined, rather than through cmd.exe, whose quoting is not).
    pub fn to_powershell_script(&self) -> String {
        match &self.line {
            CommandLine::Shell(line) => line.clone(),
            CommandLine::Program { program, args } => {
                let mut s = format!("& {}", ps_quote(program));
                for a in args {
                    s.push(' ');
                    s.push_str(&ps_quote(a));
                }
                s.push_str("; exit $LASTEXITCODE");
                s
            }
        }
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Output past [`Command::output_cap`] was dropped.
    pub truncated: bool,
}

impl ExecOutput {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// A byte buffer that keeps at most `cap` bytes and remembers whether it dropped any.
#[derive(Debug)]
pub(crate) struct CappedBuf {
    pub(crate) data: Vec<u8>,
    cap: usize,
    pub(crate) truncated: bool,
}

impl CappedBuf {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            data: Vec::new(),
            cap,
            truncated: false,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let room = self.cap.saturating_sub(self.data.len());
        if bytes.len() > room {
            self.truncated = true;
        }
        self.data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// Quotes a word for a POSIX shell: single quotes, with each `'` written as `'\''`. Safe
/// for every byte sequence, including newlines, `$()` and backquotes.
pub fn posix_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes a string as a PowerShell single-quoted literal. PowerShell also treats the
/// typographic quotes U+2018..U+201B as single quotes, so those are doubled too.
pub fn ps_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Encodes a script for `powershell.exe -EncodedCommand`: UTF-16LE, then base64.
pub fn encode_powershell(script: &str) -> String {
    let bytes: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
    B64.encode(bytes)
}

/// Lines every script starts with: progress records would otherwise arrive on stderr as
/// CLIXML when stdout is not a console.
pub(crate) const PS_PRELUDE: &str = "$ProgressPreference = 'SilentlyContinue'\n";

/// Windows' command line limit for cmd.exe (the default shell of Windows OpenSSH) is 8191
/// characters; longer scripts go over stdin instead.
pub(crate) const MAX_ENCODED_COMMAND_LINE: usize = 8000;

/// Flags for every PowerShell launch: no profile (speed, determinism), never prompt.
pub(crate) const PS_FLAGS: &str =
    "-NoLogo -NoProfile -NonInteractive -ExecutionPolicy Bypass -OutputFormat Text";

/// The bootstrap used for long scripts: reads a base64 UTF-8 script from stdin and runs it.
pub(crate) const PS_STDIN_BOOTSTRAP: &str = "$b = [Console]::In.ReadToEnd(); \
    $s = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($b.Trim())); \
    & ([scriptblock]::Create($s)); exit $LASTEXITCODE";

/// Extracts the human text of a PowerShell CLIXML error stream (`#< CLIXML` followed by
/// `<S S="Error">...</S>` records); other input is returned unchanged.
pub fn decode_clixml(stderr: &str) -> String {
    let Some(rest) = stderr.trim_start().strip_prefix("#< CLIXML") else {
        return stderr.to_owned();
    };
    let mut out = String::new();
    let mut s = rest;
    while let Some(start) = s.find("<S S=\"Error\">") {
        let body = &s[start + "<S S=\"Error\">".len()..];
        let Some(end) = body.find("</S>") else { break };
        out.push_str(&unescape_clixml(&body[..end]));
        s = &body[end..];
    }
    out
}

fn unescape_clixml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    // `_xHHHH_` escapes a UTF-16 code unit; XML entities escape markup.
    while let Some(i) = rest.find("_x") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let code = tail
            .get(2..6)
            .filter(|_| tail.get(6..7) == Some("_"))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .and_then(char::from_u32);
        match code {
            Some(c) => {
                out.push(c);
                rest = &tail[7..];
            }
            None => {
                out.push_str("_x");
                rest = &tail[2..];
            }
        }
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posix_quote_survives_a_real_shell() {
        let hostile = [
            "plain",
            "",
            "with space",
            "quote'in'side",
            "$(touch /tmp/hvlab-pwned)",
            "`id`",
            "new\nline",
            "semi;colon&&amp|pipe>redir",
            "\\back\\slash\"dq\"",
        ];
        for word in hostile {
            let line = format!("printf '%s' {}", posix_quote(word));
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&line)
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), word, "{line}");
        }
    }

    #[test]
    fn ps_quote_doubles_every_single_quote_kind() {
        assert_eq!(ps_quote("it's"), "'it''s'");
        assert_eq!(ps_quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(ps_quote("$(x) `n"), "'$(x) `n'");
    }

    #[test]
    fn program_lines_quote_each_argument() {
        let c = Command::new("ls").arg("a b").arg("$(x)");
        assert_eq!(c.to_posix_line(), "ls 'a b' '$(x)'");
        assert_eq!(
            c.to_powershell_script(),
            "& 'ls' 'a b' '$(x)'; exit $LASTEXITCODE"
        );
    }

    #[test]
    fn encoded_command_is_utf16le_base64() {
        // Known value: "dir" -> UTF-16LE 64 00 69 00 72 00.
        assert_eq!(encode_powershell("dir"), "ZABpAHIA");
        let decoded = B64.decode(encode_powershell("é€")).unwrap();
        assert_eq!(decoded, vec![0xE9, 0x00, 0xAC, 0x20]);
    }

    #[test]
    fn capped_buf_keeps_the_head_and_flags_truncation() {
        let mut b = CappedBuf::new(5);
        b.push(b"abc");
        b.push(b"defg");
        assert_eq!(b.data, b"abcde");
        assert!(b.truncated);
    }

    #[test]
    fn clixml_errors_become_text() {
        let raw = "#< CLIXML\r\n<Objs Version=\"1.1.0.1\" xmlns=\"x\"><S S=\"Error\">Get-Item : \
                   Cannot find path 'C:\\nope'_x000D__x000A_</S><S S=\"Error\">&lt;here&gt;</S></Objs>";
        assert_eq!(
            decode_clixml(raw),
            "Get-Item : Cannot find path 'C:\\nope'\r\n<here>"
        );
        assert_eq!(decode_clixml("plain error"), "plain error");
    }
}
