//! The results directory of one run: unique run ids, the `results/<run-id>/` layout and
//! atomic file writes.
//!
//! Nothing here overwrites another run: a run directory is created with `create_dir`
//! (never `create_dir_all` on the leaf), so two runs that draw the same id in the same
//! second cannot share a folder; the loser draws again. Files that are rewritten during a
//! run (junit.xml, summary.json) go through [`atomic_write`], so a reader, or a run that is
//! killed mid-write, sees either the old or the new file, never half of one.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use rand::Rng;

use crate::events::UnitId;

/// How many ids [`RunDir::create`] draws before giving up. With 65,536 suffixes per second
/// this only runs out when something other than a collision is wrong.
const MAX_ID_ATTEMPTS: usize = 64;

/// Longest name component we produce (well under every file system's 255).
const MAX_COMPONENT: usize = 80;

/// Errors from the results directory.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("create the results root {}", path.display())]
    CreateRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("create the run directory {}", path.display())]
    CreateRunDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("find a free run id under {} after {attempts} attempts", root.display())]
    NoFreeRunId { root: PathBuf, attempts: usize },
    #[error("parse run id {id:?}: expected YYYYMMDD-HHMMSS-xxxx (xxxx: 4 lowercase hex digits)")]
    InvalidRunId { id: String },
    #[error("write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("remove {}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A run id: `YYYYMMDD-HHMMSS-xxxx` (UTC start time, 4 random hex digits). Sorts by time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(String);

impl RunId {
    /// A new id for a run starting at `now`, with a random suffix from `rng`.
    pub fn generate(now: DateTime<Utc>, rng: &mut impl Rng) -> Self {
        let suffix: u16 = rng.random();
        RunId(format!("{}-{suffix:04x}", now.format("%Y%m%d-%H%M%S")))
    }

    /// Checks the shape of an id given by a user (e.g. `hvlab results show ID`).
    pub fn parse(id: &str) -> Result<Self, ResultsError> {
        let b = id.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let ok = b.len() == 20
            && digits(0..8)
            && b[8] == b'-'
            && digits(9..15)
            && b[15] == b'-'
            && b[16..]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
        if ok {
            Ok(RunId(id.to_owned()))
        } else {
            Err(ResultsError::InvalidRunId { id: id.to_owned() })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The folder of one run, `<root>/<run-id>/`, and where each kind of file goes in it.
///
/// ```text
/// <run-id>/junit.xml summary.json events.jsonl index.html hvlab.log
/// <run-id>/<scenario>/<template>/iter-<n>/   step logs, guest JUnit, dumps of one unit
/// <run-id>/crashes/<bucket>/                 triage output per crash bucket
/// ```
#[derive(Debug, Clone)]
pub struct RunDir {
    id: RunId,
    path: PathBuf,
}

impl RunDir {
    pub const JUNIT: &'static str = "junit.xml";
    pub const SUMMARY: &'static str = "summary.json";
    pub const EVENTS: &'static str = "events.jsonl";
    pub const INDEX: &'static str = "index.html";
    pub const LOG: &'static str = "hvlab.log";

    /// Creates a new, empty run directory under `root` (created if missing) for a run that
    /// starts at `now`. Never reuses an existing directory: on a clash it draws another id.
    /// The returned path is absolute, so attachment paths in junit.xml work from anywhere.
    pub fn create(root: &Path, now: DateTime<Utc>) -> Result<Self, ResultsError> {
        Self::create_with(root, now, &mut rand::rng())
    }

    /// [`RunDir::create`] with an injectable random source (tests force clashes with it).
    pub fn create_with(
        root: &Path,
        now: DateTime<Utc>,
        rng: &mut impl Rng,
    ) -> Result<Self, ResultsError> {
        let create_root = |source| ResultsError::CreateRoot {
            path: root.to_owned(),
            source,
        };
        fs::create_dir_all(root).map_err(create_root)?;
        // `absolute`, not `canonicalize`: no `\\?\` verbatim prefix on Windows hosts, whose
        // paths end up in junit.xml attachments.
        let root = std::path::absolute(root).map_err(create_root)?;
        for _ in 0..MAX_ID_ATTEMPTS {
            let id = RunId::generate(now, rng);
            let path = root.join(id.as_str());
            match fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { id, path }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(ResultsError::CreateRunDir { path, source }),
            }
        }
        Err(ResultsError::NoFreeRunId {
            root,
            attempts: MAX_ID_ATTEMPTS,
        })
    }

    pub fn id(&self) -> &RunId {
        &self.id
    }

    /// Absolute path of the run directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Absolute path of a file named relative to the run directory.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// The per-unit folder, relative to the run directory: `<scenario>/<template>/iter-<n>`,
    /// each component made safe by [`safe_name`].
    pub fn unit_rel(unit: &UnitId) -> PathBuf {
        [
            safe_name(&unit.scenario),
            safe_name(&unit.template),
            format!("iter-{}", unit.iteration),
        ]
        .iter()
        .collect()
    }

    /// Creates (if needed) and returns the absolute per-unit folder.
    pub fn unit_dir(&self, unit: &UnitId) -> Result<PathBuf, ResultsError> {
        let path = self.path.join(Self::unit_rel(unit));
        fs::create_dir_all(&path).map_err(|source| ResultsError::CreateRunDir {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }

    /// The folder of one crash bucket, relative to the run directory.
    pub fn crash_rel(bucket_id: &str) -> PathBuf {
        Path::new("crashes").join(safe_name(bucket_id))
    }
}

/// Turns any name into one path component that is valid on Linux and Windows: characters
/// outside `[A-Za-z0-9._-]` become `_`, names Windows reserves (`CON`, `nul.txt`, ...) and
/// names ending in a dot are changed, long names are cut. When the name had to change, a
/// hash of the original is appended so that two different names never share a folder.
pub fn safe_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.trim_matches('.').is_empty() || out.ends_with('.') || is_windows_reserved(&out) {
        out.push('_');
    }
    let changed = out != name;
    if changed || out.len() > MAX_COMPONENT {
        out.truncate(MAX_COMPONENT - 9);
        out.push_str(&format!("-{:08x}", fnv1a(name.as_bytes()) as u32));
    }
    out
}

fn is_windows_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("").to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit())
}

/// FNV-1a: stable across platforms and releases (std's hasher is not), so folder names are.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Replaces `path` with `bytes` so that readers see the old or the new content, never a
/// mix: write a temporary file in the same directory, fsync it, rename it over `path`,
/// then fsync the directory so the rename itself survives a power loss.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let err = |source| ResultsError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| err(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(e));
    }
    // Directory fsync makes the rename durable. Some platforms and file systems cannot
    // open or sync a directory (Windows, some network file systems): that is not a failed
    // write. Any other error (EIO) is.
    let synced = File::open(dir).and_then(|d| d.sync_all());
    match synced {
        Err(e)
            if !matches!(
                e.kind(),
                io::ErrorKind::Unsupported
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::PermissionDenied
            ) =>
        {
            Err(err(e))
        }
        _ => Ok(()),
    }
}

/// Room held back in a run folder for the files written when the run ends.
///
/// A run that fills its disk (dumps are large) would otherwise be unable to write its final
/// junit.xml and summary.json, leaving the last good ones: counts from the middle of the
/// run and no exit code. The reserve is a file of [`Reserve::BYTES`] created when the run
/// starts and deleted just before the final files are written, so they have that much room.
#[derive(Debug)]
pub struct Reserve {
    path: Option<PathBuf>,
}

impl Reserve {
    /// Enough for the final junit.xml, summary.json and index.html of a few dozen units
    /// (each is written beside its old version before the rename frees it).
    pub const BYTES: usize = 96 * 1024;
    pub const FILE: &'static str = ".hvlab-reserve";

    /// Writes `<dir>/.hvlab-reserve`. Fails (naming the file and the OS cause) when there is
    /// not even that much room: such a run could not keep its results.
    pub fn create(dir: &Path) -> Result<Self, ResultsError> {
        let path = dir.join(Self::FILE);
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
            // Real bytes, not `set_len`: a sparse file would hold no room at all.
            f.write_all(&vec![0u8; Self::BYTES])?;
            f.sync_all()
        };
        if let Err(source) = write() {
            // Cleanup of what we just failed to fill; the error below names the path.
            let _ = fs::remove_file(&path);
            return Err(ResultsError::Write { path, source });
        }
        Ok(Reserve { path: Some(path) })
    }

    /// Deletes the file so the final writes can use its room. Idempotent.
    pub fn release(&mut self) -> Result<(), ResultsError> {
        match self.path.take() {
            Some(path) => match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(ResultsError::Remove { path, source }),
            },
            None => Ok(()),
        }
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        // A run that ends by an error path still leaves no reserve behind; a failure here
        // was already reported by an explicit `release` where it mattered.
        let _ = self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 4, 5, 6, 7).unwrap()
    }

    #[test]
    fn run_id_has_the_documented_shape_and_parses_back() {
        let id = RunId::generate(t0(), &mut StdRng::seed_from_u64(1));
        assert!(id.as_str().starts_with("20250304-050607-"), "{id}");
        assert_eq!(RunId::parse(id.as_str()).unwrap(), id);
        for bad in [
            "",
            "20250304-050607",
            "20250304-050607-ABCD",
            "2025030x-050607-abcd",
        ] {
            let e = RunId::parse(bad).unwrap_err().to_string();
            assert!(e.contains("YYYYMMDD-HHMMSS-xxxx"), "{e}");
        }
    }

    #[test]
    fn a_clashing_id_draws_again_and_never_reuses_a_run() {
        let root = tempfile::tempdir().unwrap();
        let first = RunDir::create_with(root.path(), t0(), &mut StdRng::seed_from_u64(7)).unwrap();
        fs::write(first.join("junit.xml"), "old").unwrap();
        // Same seed: the first draw is the same id, so the second run must pick another.
        let second = RunDir::create_with(root.path(), t0(), &mut StdRng::seed_from_u64(7)).unwrap();
        assert_ne!(first.id(), second.id());
        assert_eq!(fs::read_to_string(first.join("junit.xml")).unwrap(), "old");
        assert!(second.path().is_absolute());
        assert_eq!(fs::read_dir(second.path()).unwrap().count(), 0);
    }

    #[test]
    fn run_dir_creation_reports_an_unusable_root() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("not-a-dir");
        fs::write(&file, "x").unwrap();
        let e = RunDir::create(&file, t0()).unwrap_err().to_string();
        assert!(e.contains("not-a-dir"), "{e}");
    }

    #[test]
    fn unit_folders_are_safe_and_distinct() {
        let unit = |s: &str, t: &str| UnitId {
            scenario: s.into(),
            template: t.into(),
            iteration: 3,
        };
        assert_eq!(
            RunDir::unit_rel(&unit("stress-map", "win11")),
            Path::new("stress-map/win11/iter-3")
        );
        let a = RunDir::unit_rel(&unit("a/b", "t"));
        let b = RunDir::unit_rel(&unit("a_b", "t"));
        assert_ne!(a, b);
        assert_eq!(a.components().count(), 3, "{a:?}");
        let up = RunDir::unit_rel(&unit("..", "CON"));
        assert!(!up.to_string_lossy().contains("/../"), "{up:?}");
        assert!(
            up.components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        );
    }

    #[test]
    fn safe_name_handles_reserved_long_and_odd_names() {
        assert_eq!(safe_name("win11-x64_v2.1"), "win11-x64_v2.1");
        assert!(safe_name("nul.txt").starts_with("nul.txt_-"));
        assert!(safe_name("COM1").starts_with("COM1_-"));
        assert_eq!(safe_name("COM10"), "COM10");
        assert!(safe_name("").starts_with("_-"));
        assert!(safe_name("trailing.").starts_with("trailing._-"));
        let long = "x".repeat(300);
        assert!(safe_name(&long).len() <= MAX_COMPONENT);
        assert_ne!(safe_name(&long), safe_name(&"x".repeat(301)));
        assert_eq!(safe_name("päth with space"), safe_name("päth with space"));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("summary.json");
        atomic_write(&p, b"one").unwrap();
        atomic_write(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("summary.json")]);
    }

    #[test]
    fn a_reserve_holds_real_bytes_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Reserve::create(dir.path()).unwrap();
        let p = dir.path().join(Reserve::FILE);
        assert_eq!(fs::read(&p).unwrap().len(), Reserve::BYTES);
        r.release().unwrap();
        assert!(!p.exists());
        r.release().unwrap();
        let e = Reserve::create(&dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(Reserve::FILE), "{e}");
    }

    #[test]
    fn atomic_write_into_a_missing_dir_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing/junit.xml");
        let e = atomic_write(&p, b"x").unwrap_err();
        assert!(e.to_string().contains("missing/junit.xml"), "{e}");
    }
}
