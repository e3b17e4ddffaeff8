//! File scripts on the host: hash, parent folder, and base64 chunks (WinRM hosts, whose
//! own file copy stops at 1 MiB).

use serde::Deserialize;

use crate::hyperv::script::Script;

/// Size and SHA-256 of a file (`Exists = $false` when it is missing).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileHash {
    pub exists: bool,
    #[serde(default)]
    pub length: u64,
    #[serde(default)]
    pub hash: String,
}

/// One chunk of a file, base64.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Chunk {
    pub data: String,
}

pub(crate) const HASH_BODY: &str = r#"if (-not (Test-Path -LiteralPath $P.Path -PathType Leaf)) {
  return [ordered]@{ Exists = $false; Length = 0; Hash = '' }
}
$item = Get-Item -LiteralPath $P.Path -Force
[ordered]@{ Exists = $true; Length = $item.Length; Hash = (Get-FileHash -LiteralPath $P.Path -Algorithm SHA256).Hash.ToLowerInvariant() }"#;

pub fn hash(path: &str) -> Script {
    Script::new("file.hash", HASH_BODY).with("Path", path)
}

pub fn make_parent(path: &str) -> Script {
    Script::new(
        "file.make_parent",
        r#"$dir = Split-Path -Parent $P.Path
if ($dir) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
$null"#,
    )
    .with("Path", path)
}

pub fn put_chunk(path: &str, offset: u64, base64: &str) -> Script {
    Script::new(
        "file.put_chunk",
        r#"$bytes = [Convert]::FromBase64String($P.Data)
if ($P.Offset -eq 0) {
  $dir = Split-Path -Parent $P.Path
  if ($dir) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
  $mode = [IO.FileMode]::Create
} else { $mode = [IO.FileMode]::Append }
$f = [IO.File]::Open($P.Path, $mode, [IO.FileAccess]::Write)
try { $f.Write($bytes, 0, $bytes.Length) } finally { $f.Close() }
$null"#,
    )
    .with("Path", path)
    .with("Offset", offset as i64)
    .with("Data", base64)
}

pub fn get_chunk(path: &str, offset: u64, len: i64) -> Script {
    Script::new(
        "file.get_chunk",
        r#"$f = [IO.File]::Open($P.Path, [IO.FileMode]::Open, [IO.FileAccess]::Read, [IO.FileShare]::ReadWrite)
try {
  [void]$f.Seek($P.Offset, [IO.SeekOrigin]::Begin)
  $buf = New-Object byte[] $P.Length
  $n = $f.Read($buf, 0, $P.Length)
  [ordered]@{ Data = [Convert]::ToBase64String($buf, 0, $n) }
} finally { $f.Close() }"#,
    )
    .with("Path", path)
    .with("Offset", offset as i64)
    .with("Length", len)
}

pub fn remove(path: &str) -> Script {
    Script::new(
        "file.remove",
        r#"if (Test-Path -LiteralPath $P.Path) { Remove-Item -LiteralPath $P.Path -Recurse -Force }
$null"#,
    )
    .with("Path", path)
}
