//! Scripts as data: an operation name, typed parameters and a fixed body. Rendering turns
//! every parameter into a PowerShell single-quoted literal in one `$P = @{...}` table, so a
//! value from a file or a user is never spliced into code; the body only reads `$P`.
//!
//! Every rendered script prints exactly one line: a JSON envelope, `{"ok":true,"value":..}`
//! or `{"ok":false,"error":{..}}` with the PowerShell error record's fields, made pure ASCII
//! (`\uXXXX` escapes) so no console code page can mangle it.

use std::fmt::Write as _;

use lab_transport::{Secret, ps_quote};

/// A value handed to a script.
#[derive(Debug, Clone)]
pub enum PsValue {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<String>),
    /// A resolved secret: rendered as its literal value, masked in logs by the redactor.
    Secret(Secret),
    /// A secret that is deliberately not read (dry run): rendered as a visible placeholder.
    Unread(String),
}

impl PsValue {
    /// The PowerShell expression for this value: a literal, never code.
    pub fn literal(&self) -> String {
        match self {
            PsValue::Str(s) => ps_quote(s),
            PsValue::Int(n) => n.to_string(),
            PsValue::Bool(b) => if *b { "$true" } else { "$false" }.to_owned(),
            PsValue::List(items) => {
                let inner: Vec<String> = items.iter().map(|s| ps_quote(s)).collect();
                format!("@({})", inner.join(", "))
            }
            PsValue::Secret(s) => ps_quote(s.expose()),
            PsValue::Unread(what) => ps_quote(&format!("<secret {what}: not read in a dry run>")),
        }
    }

    /// The value as text, for test doubles that act on parameters.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            PsValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for PsValue {
    fn from(s: &str) -> Self {
        PsValue::Str(s.to_owned())
    }
}
impl From<String> for PsValue {
    fn from(s: String) -> Self {
        PsValue::Str(s)
    }
}
impl From<i64> for PsValue {
    fn from(n: i64) -> Self {
        PsValue::Int(n)
    }
}
impl From<bool> for PsValue {
    fn from(b: bool) -> Self {
        PsValue::Bool(b)
    }
}
impl From<Vec<String>> for PsValue {
    fn from(v: Vec<String>) -> Self {
        PsValue::List(v)
    }
}

/// How a guest script reaches its guest when it is run through the host.
#[derive(Debug, Clone)]
pub struct PsDirect {
    pub vm: String,
    pub user: String,
    pub password: PsValue,
}

/// One PowerShell script: what it does (`op`), its inputs and its fixed body.
#[derive(Debug, Clone)]
pub struct Script {
    /// `vm.create`, `guest.service_stop`, ...: names the operation in logs, errors, plans and
    /// test doubles.
    pub op: &'static str,
    /// Inputs, rendered as literals into `$P`.
    pub params: Vec<(&'static str, PsValue)>,
    /// Code that reads `$P` and whose output is the result. Always a constant of this crate.
    pub body: &'static str,
    /// `Some`: run inside the VM through `Invoke-Command -VMName` on the host.
    pub via: Option<PsDirect>,
    /// A guest script that also reports the guest's boot id in its envelope (`boot`), so
    /// the runner's reboot check after a step needs no round trip of its own.
    pub reports_boot: bool,
}

/// Lines every script starts with: errors stop the script (so the envelope reports them),
/// progress records stay off stderr.
const PRELUDE: &str = "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\n";

/// Turns the result (`$r`) or the caught error record (`$_`) into the one-line envelope.
const ENVELOPE_FN: &str = r#"function ConvertTo-HvlabJson($o) {
  $j = ConvertTo-Json -InputObject $o -Compress -Depth 8
  [regex]::Replace($j, '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value })
}
function New-HvlabError($e, $layer) {
  $cmd = $null
  if ($e.InvocationInfo -and $e.InvocationInfo.MyCommand) { $cmd = $e.InvocationInfo.MyCommand.Name }
  [ordered]@{ ok = $false; error = [ordered]@{
    message = $e.Exception.Message; command = $cmd; fqid = $e.FullyQualifiedErrorId
    category = $e.CategoryInfo.Category.ToString(); exception = $e.Exception.GetType().FullName
    hresult = $e.Exception.HResult; layer = $layer } }
}
"#;

/// The success envelope of a script that reports the boot id too (see
/// [`Script::with_boot_id`]).
const BOOT_RESULT: &str = r#"  $b = $null
  try { $b = (Get-CimInstance -ClassName Win32_OperatingSystem).LastBootUpTime.ToUniversalTime().ToString('o') } catch { }
  ConvertTo-HvlabJson ([ordered]@{ ok = $true; value = $r; boot = $b })
"#;

impl Script {
    pub fn new(op: &'static str, body: &'static str) -> Self {
        Script {
            op,
            params: Vec::new(),
            body,
            via: None,
            reports_boot: false,
        }
    }

    /// Also reports the guest's boot id (`LastBootUpTime`, as [`super::scripts::guest::boot_id`]
    /// reads it) beside a successful result. A failed read reports none rather than failing
    /// the script: the boot id is a by-product here.
    pub fn with_boot_id(mut self) -> Self {
        self.reports_boot = true;
        self
    }

    /// Adds an input.
    pub fn with(mut self, name: &'static str, value: impl Into<PsValue>) -> Self {
        self.params.push((name, value.into()));
        self
    }

    /// The input named `name`.
    pub fn param(&self, name: &str) -> Option<&PsValue> {
        self.params.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The text input named `name` (empty if absent or not text).
    pub fn str_param(&self, name: &str) -> &str {
        self.param(name).and_then(PsValue::as_str).unwrap_or("")
    }

    /// Runs this script inside `vm` through PowerShell Direct.
    pub fn through(mut self, direct: PsDirect) -> Self {
        self.via = Some(direct);
        self
    }

    /// `@{ 'Name' = <literal>; ... }`, one entry per line.
    fn table(params: &[(&'static str, PsValue)]) -> String {
        if params.is_empty() {
            return "@{}".to_owned();
        }
        let mut s = String::from("@{\n");
        for (name, value) in params {
            let _ = writeln!(s, "  {} = {}", ps_quote(name), value.literal());
        }
        s.push('}');
        s
    }

    /// The body run under `$P`, with the envelope around it (`layer` says where it ran).
    fn enveloped(&self, layer: &str) -> String {
        let result = if self.reports_boot {
            BOOT_RESULT
        } else {
            "  ConvertTo-HvlabJson ([ordered]@{ ok = $true; value = $r })\n"
        };
        format!(
            "{PRELUDE}{ENVELOPE_FN}try {{\n  $r = & {{\n{body}\n  }}\n{result}}} catch {{\n  ConvertTo-HvlabJson (New-HvlabError $_ '{layer}')\n}}",
            body = indent(self.body.trim_end(), 4),
        )
    }

    /// The complete script text to send.
    pub fn render(&self) -> String {
        let params = Self::table(&self.params);
        match &self.via {
            None => format!("$P = {params}\n{}\n", self.enveloped("host")),
            Some(d) => {
                let host = Self::table(&[
                    ("VmName", PsValue::Str(d.vm.clone())),
                    ("User", PsValue::Str(d.user.clone())),
                    ("Password", d.password.clone()),
                ]);
                format!(
                    "{PRELUDE}{ENVELOPE_FN}$H = {host}\n$G = {params}\ntry {{\n  $pw = ConvertTo-SecureString -String $H.Password -AsPlainText -Force\n  $cred = New-Object System.Management.Automation.PSCredential ($H.User, $pw)\n  Invoke-Command -VMName $H.VmName -Credential $cred -ArgumentList $G -ScriptBlock {{\n    param($P)\n{inner}\n  }}\n}} catch {{\n  ConvertTo-HvlabJson (New-HvlabError $_ 'host')\n}}\n",
                    inner = indent(&self.enveloped("guest"), 4),
                )
            }
        }
    }
}

/// Indents every code line by `n` spaces, but not the body or the closing line of a
/// here-string: PowerShell requires the closing `'@` / `"@` at column 0
/// (`WhitespaceBeforeHereStringFooter`), and padding the body would change its text.
fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    // The closer of the here-string we are inside, if any.
    let mut closer: Option<&str> = None;
    text.lines()
        .map(|l| {
            if let Some(c) = closer {
                if l.starts_with(c) {
                    closer = None;
                }
                return l.to_owned();
            }
            let code = l.trim_end();
            if code.ends_with("@'") {
                closer = Some("'@");
            } else if code.ends_with("@\"") {
                closer = Some("\"@");
            }
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Quotes one argument for a Windows command line the way `CommandLineToArgvW` and the
/// MSVC runtime split it back (programs the guest starts parse their own command line).
pub fn windows_arg(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '\n', '\u{b}', '"']) {
        return arg.to_owned();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0usize;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                // Backslashes before a quote are doubled, and the quote itself escaped.
                out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            _ => {
                out.extend(std::iter::repeat_n('\\', backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    // Backslashes before the closing quote are doubled so they stay literal.
    out.extend(std::iter::repeat_n('\\', backslashes * 2));
    out.push('"');
    out
}

/// A Windows command line of the arguments after the program.
pub fn windows_command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| windows_arg(a))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indent_leaves_here_string_bodies_and_closers_at_column_zero() {
        let text = "$a = @'\nline one\n  two\n'@\nif ($x) {\n  $b = @\"\n$y\n\"@\n}";
        assert_eq!(
            indent(text, 4),
            "    $a = @'\nline one\n  two\n'@\n    if ($x) {\n      $b = @\"\n$y\n\"@\n    }"
        );
        // Nested envelopes (PowerShell Direct indents twice) keep the closer at column 0.
        let twice = indent(&indent(text, 4), 4);
        assert!(twice.lines().any(|l| l == "'@"), "{twice}");
        assert!(twice.lines().any(|l| l == "\"@"), "{twice}");
    }

    /// The MSVC runtime's argument splitting (post-2008 rules), as the oracle for quoting.
    fn split_windows(line: &str) -> Vec<String> {
        let chars: Vec<char> = line.chars().collect();
        let mut args = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                i += 1;
            }
            if i >= chars.len() {
                break;
            }
            let mut cur = String::new();
            let mut quoted = false;
            while i < chars.len() {
                let c = chars[i];
                if c == '\\' {
                    let start = i;
                    while i < chars.len() && chars[i] == '\\' {
                        i += 1;
                    }
                    let n = i - start;
                    if i < chars.len() && chars[i] == '"' {
                        cur.extend(std::iter::repeat_n('\\', n / 2));
                        if n % 2 == 1 {
                            cur.push('"');
                            i += 1;
                        }
                    } else {
                        cur.extend(std::iter::repeat_n('\\', n));
                    }
                    continue;
                }
                if c == '"' {
                    if quoted && i + 1 < chars.len() && chars[i + 1] == '"' {
                        cur.push('"');
                        i += 2;
                        continue;
                    }
                    quoted = !quoted;
                    i += 1;
                    continue;
                }
                if !quoted && (c == ' ' || c == '\t') {
                    break;
                }
                cur.push(c);
                i += 1;
            }
            args.push(cur);
        }
        args
    }

    #[test]
    fn windows_args_split_back_unchanged() {
        let args: Vec<String> = [
            "plain",
            "",
            "two words",
            r#"quo"te"#,
            r"C:\path with space\",
            r#"\\"\"#,
            "tab\there",
            "custom_maps*",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(split_windows(&windows_command_line(&args)), args);
    }

    proptest::proptest! {
        #[test]
        fn windows_quoting_round_trips(args in proptest::collection::vec("[ -~\\t\\\\\"é]{0,12}", 0..5)) {
            proptest::prop_assert_eq!(split_windows(&windows_command_line(&args)), args);
        }
    }

    #[test]
    fn params_are_literals_and_body_reads_them() {
        let s = Script::new("t.op", "$P.Name").with("Name", "a'b$(x)");
        let text = s.render();
        assert!(
            text.starts_with("$P = @{\n  'Name' = 'a''b$(x)'\n}\n"),
            "{text}"
        );
        assert!(text.contains("    $P.Name\n"));
    }
}
