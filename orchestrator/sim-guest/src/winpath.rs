//! Windows paths (`C:\ebpf\x.sys`) mapped into the guest's disk directory (`<disk>/C/ebpf/x.sys`).
//!
//! Only absolute paths on drive `C:` are accepted. Anything that could leave the disk
//! directory or means something else on Windows is refused with the Windows error a real
//! guest would give: `..`, UNC and `\\?\` paths, host paths (`/etc/passwd`), relative and
//! drive-relative paths, device names (`NUL`, `COM1.txt`), reserved characters.
//! Lookups are case-insensitive like NTFS: an existing entry that differs only in case is
//! used instead of creating a second one.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::protocol::codes;

/// A refused path: the Windows error code and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("resolve path {path:?}: {reason} (error {code})")]
pub struct PathError {
    pub path: String,
    pub code: u32,
    pub reason: String,
}

/// A validated absolute path on drive `C:`, as its components below the drive root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinPath {
    components: Vec<String>,
}

const RESERVED_CHARS: &[char] = &['<', '>', ':', '"', '|', '?', '*'];
const DEVICE_NAMES: &[&str] = &["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];

impl WinPath {
    /// Parses and validates a Windows path (`\` or `/` separators).
    pub fn parse(path: &str) -> Result<Self, PathError> {
        let err = |code: u32, reason: &str| PathError {
            path: path.to_owned(),
            code,
            reason: reason.to_owned(),
        };
        if path.is_empty() {
            return Err(err(codes::ERROR_BAD_PATHNAME, "the path is empty"));
        }
        if path.chars().any(|c| c.is_control()) {
            return Err(err(
                codes::ERROR_INVALID_NAME,
                "control characters in the path",
            ));
        }
        let bytes = path.as_bytes();
        let is_sep = |b: u8| b == b'\\' || b == b'/';
        if bytes.len() >= 2 && is_sep(bytes[0]) && is_sep(bytes[1]) {
            return Err(err(
                codes::ERROR_BAD_PATHNAME,
                "UNC and device namespace paths are not supported",
            ));
        }
        if is_sep(bytes[0]) {
            return Err(err(
                codes::ERROR_BAD_PATHNAME,
                "not a Windows path with a drive letter (host paths are refused)",
            ));
        }
        if bytes.len() < 2 || bytes[1] != b':' || !bytes[0].is_ascii_alphabetic() {
            return Err(err(
                codes::ERROR_BAD_PATHNAME,
                "relative paths are not supported: give a full path such as C:\\dir\\file",
            ));
        }
        if !bytes[0].eq_ignore_ascii_case(&b'C') {
            return Err(err(
                codes::ERROR_INVALID_DRIVE,
                "the guest has only drive C:",
            ));
        }
        if bytes.len() > 2 && !is_sep(bytes[2]) {
            return Err(err(
                codes::ERROR_BAD_PATHNAME,
                "drive-relative paths (C:dir) are not supported",
            ));
        }
        let mut components = Vec::new();
        for comp in path[2..].split(['\\', '/']) {
            match comp {
                "" | "." => continue,
                ".." => {
                    return Err(err(
                        codes::ERROR_BAD_PATHNAME,
                        "`..` components are refused",
                    ));
                }
                _ => {}
            }
            if comp.chars().count() > 255 {
                return Err(err(
                    codes::ERROR_INVALID_NAME,
                    "a path component exceeds 255 characters",
                ));
            }
            if comp.contains(RESERVED_CHARS) {
                return Err(err(
                    codes::ERROR_INVALID_NAME,
                    &format!("component {comp:?} contains one of < > : \" | ? *"),
                ));
            }
            if comp.ends_with(['.', ' ']) {
                return Err(err(
                    codes::ERROR_INVALID_NAME,
                    &format!("component {comp:?} ends with a dot or a space"),
                ));
            }
            if is_device_name(comp) {
                return Err(err(
                    codes::ERROR_BAD_PATHNAME,
                    &format!("{comp:?} is a device name"),
                ));
            }
            components.push(comp.to_owned());
        }
        Ok(WinPath { components })
    }

    /// True for `C:\` itself.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The last component (the file name), if any.
    pub fn file_name(&self) -> Option<&str> {
        self.components.last().map(String::as_str)
    }

    /// Where this path lives under `disk`, matching existing entries case-insensitively.
    pub fn to_host(&self, disk: &Path) -> PathBuf {
        let mut host = disk.join("C");
        for comp in &self.components {
            host = match_case_insensitive(&host, comp);
        }
        host
    }

    /// The Windows path of a host path under `disk/C`, if it is one.
    pub fn from_host(disk: &Path, host: &Path) -> Option<WinPath> {
        let rel = host.strip_prefix(disk.join("C")).ok()?;
        let components = rel
            .components()
            .map(|c| c.as_os_str().to_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()?;
        Some(WinPath { components })
    }
}

impl fmt::Display for WinPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C:\\{}", self.components.join("\\"))
    }
}

fn is_device_name(comp: &str) -> bool {
    // Windows ignores the extension and trailing spaces: `NUL.txt` and `com1 .log` are devices.
    let stem = comp.split('.').next().unwrap_or(comp).trim_end_matches(' ');
    let upper = stem.to_ascii_uppercase();
    if DEVICE_NAMES.contains(&upper.as_str()) {
        return true;
    }
    let b = upper.as_bytes();
    b.len() == 4
        && (upper.starts_with("COM") || upper.starts_with("LPT"))
        && (b'1'..=b'9').contains(&b[3])
}

/// `dir/name`, or the existing entry of `dir` whose name equals `name` ignoring case.
fn match_case_insensitive(dir: &Path, name: &str) -> PathBuf {
    let exact = dir.join(name);
    if exact.symlink_metadata().is_ok() {
        return exact;
    }
    let wanted = name.to_lowercase();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_str().map(str::to_lowercase).as_deref() == Some(&wanted) {
                return entry.path();
            }
        }
    }
    exact
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(p: &str) -> u32 {
        WinPath::parse(p).unwrap_err().code
    }

    #[test]
    fn accepts_drive_c_paths_with_either_separator() {
        let p = WinPath::parse(r"C:\ebpf\x.sys").unwrap();
        assert_eq!(p.to_string(), r"C:\ebpf\x.sys");
        assert_eq!(p.to_host(Path::new("/d")), Path::new("/d/C/ebpf/x.sys"));
        assert_eq!(WinPath::parse("c:/ebpf//./x.sys").unwrap(), p);
        assert!(WinPath::parse("C:\\").unwrap().is_root());
    }

    #[test]
    fn refuses_paths_that_escape_or_mean_something_else() {
        assert_eq!(code(r"C:\ebpf\..\..\etc"), codes::ERROR_BAD_PATHNAME);
        assert_eq!(code("/etc/passwd"), codes::ERROR_BAD_PATHNAME);
        assert_eq!(code(r"\\server\share\x"), codes::ERROR_BAD_PATHNAME);
        assert_eq!(code(r"\\?\C:\x"), codes::ERROR_BAD_PATHNAME);
        assert_eq!(code(r"ebpf\x.sys"), codes::ERROR_BAD_PATHNAME);
        assert_eq!(code(r"C:ebpf"), codes::ERROR_BAD_PATHNAME);
        assert_eq!(code(r"D:\x"), codes::ERROR_INVALID_DRIVE);
        assert_eq!(code(r"C:\dir\NUL"), codes::ERROR_BAD_PATHNAME);
        assert_eq!(code(r"C:\com1.txt"), codes::ERROR_BAD_PATHNAME);
        assert_eq!(code(r"C:\a:stream"), codes::ERROR_INVALID_NAME);
        assert_eq!(code(r"C:\a*"), codes::ERROR_INVALID_NAME);
        assert_eq!(code("C:\\a\u{0}b"), codes::ERROR_INVALID_NAME);
        assert_eq!(code(""), codes::ERROR_BAD_PATHNAME);
        // Not device names: a longer stem, COM0.
        assert!(WinPath::parse(r"C:\console\com10\com0").is_ok());
    }

    #[test]
    fn error_message_names_the_path_and_reason() {
        let e = WinPath::parse(r"C:\x\..\y").unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"resolve path "C:\\x\\..\\y": `..` components are refused (error 161)"#
        );
    }

    #[test]
    fn lookups_ignore_case_like_ntfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("C/Windows/System32")).unwrap();
        let p = WinPath::parse(r"c:\WINDOWS\system32\drivers").unwrap();
        assert_eq!(
            p.to_host(dir.path()),
            dir.path().join("C/Windows/System32/drivers")
        );
        let back = WinPath::from_host(dir.path(), &dir.path().join("C/Windows/MEMORY.DMP"));
        assert_eq!(back.unwrap().to_string(), r"C:\Windows\MEMORY.DMP");
    }
}
