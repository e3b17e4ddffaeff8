//! The bucket index: one entry per crash signature, kept across runs in
//! `<results root>/buckets.json`.
//!
//! Updates take an exclusive lock on `buckets.json.lock`, read the index, apply the crash
//! and replace the file atomically (temp file + rename): two runs recording one after the
//! other (or at the same time) never lose an update, and a reader never sees half a file.
//!
//! Dump paths are relative to the results root (`<run-id>/<unit>/dumps/MEMORY.DMP`), so they
//! resolve from the index and never clash across runs. Old indexes that stored paths
//! relative to a run folder are migrated when the file is found in exactly one of the
//! bucket's runs. A corrupt index is moved aside (`buckets.json.corrupt-<time>`) and a
//! fresh one started, so one bad file never leaves a run's crashes unbucketed.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::signature::Signature;

/// File name of the index inside the results root.
pub const BUCKETS_FILE: &str = "buckets.json";

/// How many dumps a bucket keeps across runs (`--keep-dumps all|N`). Dumps of the run that
/// records a crash are never removed; with `Last(n)`, dumps of *earlier* runs are removed,
/// oldest first, while the bucket holds more than `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepDumps {
    /// Keep every dump (the default: evidence is never deleted unless asked).
    #[default]
    All,
    Last(usize),
}

impl std::str::FromStr for KeepDumps {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(KeepDumps::All);
        }
        s.parse::<usize>()
            .map(KeepDumps::Last)
            .map_err(|_| format!("expected `all` or a number of dumps, got `{s}`"))
    }
}

impl std::fmt::Display for KeepDumps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepDumps::All => f.write_str("all"),
            KeepDumps::Last(n) => write!(f, "{n}"),
        }
    }
}
const VERSION: u32 = 1;
/// Length of a run id, `YYYYMMDD-HHMMSS-xxxx`.
const RUN_ID_LEN: usize = 20;

/// Why the index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("access bucket index {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parse bucket index {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("move the corrupt bucket index {path} aside to {to}")]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "read bucket index {path}: version {version} is newer than this hvlab understands ({VERSION})"
    )]
    Version { path: PathBuf, version: u32 },
}

/// One bucket: every crash with the same signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub id: String,
    pub title: String,
    pub bugcheck_code: u32,
    pub module: Option<String>,
    pub symbol: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub count: u64,
    /// Runs that hit this bucket, in the order first seen.
    pub runs: Vec<String>,
    /// Kept dumps, oldest first, relative to the results root when inside it.
    pub dumps: Vec<String>,
    /// Dumps removed by `--keep-dumps N` (or, before it existed, not kept).
    pub dumps_not_kept: u64,
    /// How often each faulting function (the blamed frame's, when named) was seen: one
    /// bucket's crashes may fault in several callbacks of the same driver.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub functions: BTreeMap<String, u64>,
}

/// One crash to record.
#[derive(Debug, Clone)]
pub struct CrashRecord<'a> {
    pub signature: &'a Signature,
    pub run_id: &'a str,
    pub dump: Option<&'a Path>,
    pub seen_at: DateTime<Utc>,
}

/// What recording a crash did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketUpdate {
    pub bucket_id: String,
    pub title: String,
    /// The first crash in this bucket.
    pub is_new: bool,
    pub count: u64,
    /// Dumps of earlier runs removed from the index by `--keep-dumps N`, relative to the
    /// results root; [`BucketIndex::record`] already deleted the files named in `removed`.
    pub removed: Vec<String>,
    /// Removed dumps whose file could not be deleted, with why.
    pub remove_failed: Vec<(String, String)>,
    /// Where a corrupt index was moved before a fresh one was started.
    pub moved_aside: Option<PathBuf>,
}

/// All buckets of a results root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketIndex {
    pub version: u32,
    pub buckets: BTreeMap<String, Bucket>,
}

impl BucketIndex {
    /// `<results root>/buckets.json`.
    pub fn path(results_root: &Path) -> PathBuf {
        results_root.join(BUCKETS_FILE)
    }

    /// Read the index of `results_root`; an absent file is an empty index.
    pub fn load(results_root: &Path) -> Result<Self, BucketError> {
        let path = Self::path(results_root);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Self {
                    version: VERSION,
                    buckets: BTreeMap::new(),
                });
            }
            Err(source) => return Err(BucketError::Io { path, source }),
        };
        let index: Self = serde_json::from_str(&text).map_err(|source| BucketError::Parse {
            path: path.clone(),
            source,
        })?;
        if index.version > VERSION {
            return Err(BucketError::Version {
                path,
                version: index.version,
            });
        }
        Ok(index)
    }

    /// Record one crash in the index of `results_root` (locked, read, updated, replaced),
    /// then delete the files of dumps that `keep` trims from earlier runs.
    pub fn record(
        results_root: &Path,
        crash: &CrashRecord<'_>,
        keep: KeepDumps,
    ) -> Result<BucketUpdate, BucketError> {
        let lock_path = results_root.join(format!("{BUCKETS_FILE}.lock"));
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BucketError::Io { path, source }
        };
        fs::create_dir_all(results_root).map_err(io_err(results_root))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        lock.lock().map_err(io_err(&lock_path))?;
        // Under the lock: only one run moves a corrupt file aside, the others read the
        // fresh index it saved.
        let (mut index, moved_aside) = match Self::load(results_root) {
            Ok(index) => (index, None),
            Err(BucketError::Parse { path, .. }) => {
                let to = aside_path(&path, crash.seen_at);
                fs::rename(&path, &to).map_err(|source| BucketError::MoveAside {
                    path: path.clone(),
                    to: to.clone(),
                    source,
                })?;
                (Self::default(), Some(to))
            }
            Err(e) => return Err(e),
        };
        index.migrate_run_relative(results_root);
        let mut recorded = index.apply(results_root, crash, keep);
        index.save(results_root)?;
        // Dropping the file releases the lock.
        drop(lock);
        // Files go after the index no longer names them: a reader never follows a path
        // to a deleted dump.
        for rel in &recorded.removed {
            match fs::remove_file(results_root.join(rel)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => recorded.remove_failed.push((rel.clone(), e.to_string())),
            }
        }
        recorded.moved_aside = moved_aside;
        Ok(recorded)
    }

    /// Rewrites dump paths of old indexes (relative to a run folder) to paths relative to
    /// the results root, when the file exists in exactly one of the bucket's runs; others
    /// are left as they were (and never trimmed).
    fn migrate_run_relative(&mut self, results_root: &Path) {
        for b in self.buckets.values_mut() {
            for d in &mut b.dumps {
                if is_root_relative(d) || Path::new(d.as_str()).is_absolute() {
                    continue;
                }
                let mut hits = b
                    .runs
                    .iter()
                    .filter(|r| results_root.join(r).join(&*d).is_file());
                if let (Some(run), None) = (hits.next(), hits.next()) {
                    *d = format!("{run}/{d}");
                }
            }
        }
    }

    /// Apply one crash in memory: count it, add its dump, and list the dumps of earlier
    /// runs that `keep` trims (oldest first) in [`BucketUpdate::removed`].
    pub fn apply(
        &mut self,
        results_root: &Path,
        crash: &CrashRecord<'_>,
        keep: KeepDumps,
    ) -> BucketUpdate {
        self.version = VERSION;
        let sig = crash.signature;
        let is_new = !self.buckets.contains_key(&sig.id);
        let bucket = self
            .buckets
            .entry(sig.id.clone())
            .or_insert_with(|| Bucket {
                id: sig.id.clone(),
                title: sig.title.clone(),
                bugcheck_code: sig.bugcheck_code,
                module: sig.module.clone(),
                symbol: sig.symbol.clone(),
                first_seen: crash.seen_at,
                last_seen: crash.seen_at,
                count: 0,
                runs: Vec::new(),
                dumps: Vec::new(),
                dumps_not_kept: 0,
                functions: BTreeMap::new(),
            });
        bucket.count += 1;
        if let Some(f) = &sig.function {
            *bucket.functions.entry(f.clone()).or_default() += 1;
        }
        bucket.first_seen = bucket.first_seen.min(crash.seen_at);
        bucket.last_seen = bucket.last_seen.max(crash.seen_at);
        if !bucket.runs.iter().any(|r| r == crash.run_id) {
            bucket.runs.push(crash.run_id.to_owned());
        }
        if let Some(dump) = crash.dump {
            let shown = relative_to(dump, results_root);
            if !bucket.dumps.contains(&shown) {
                bucket.dumps.push(shown);
            }
        }
        let mut removed = Vec::new();
        if let KeepDumps::Last(n) = keep {
            // Only runs that started before this one (run ids sort by start time): this
            // run's dumps, and those of a run started after it on the same root, stay.
            let mut excess = bucket.dumps.len().saturating_sub(n);
            bucket.dumps.retain(|d| {
                let earlier = is_root_relative(d) && d[..RUN_ID_LEN] < *crash.run_id;
                let trim = excess > 0 && earlier;
                if trim {
                    excess -= 1;
                    removed.push(d.clone());
                }
                !trim
            });
            bucket.dumps_not_kept += removed.len() as u64;
        }
        BucketUpdate {
            bucket_id: bucket.id.clone(),
            title: bucket.title.clone(),
            is_new,
            count: bucket.count,
            removed,
            remove_failed: Vec::new(),
            moved_aside: None,
        }
    }

    /// Write the index atomically.
    pub fn save(&self, results_root: &Path) -> Result<(), BucketError> {
        let path = Self::path(results_root);
        let io_err = |source| BucketError::Io {
            path: path.clone(),
            source,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".buckets-")
            .suffix(".tmp")
            .tempfile_in(results_root)
            .map_err(io_err)?;
        let text = serde_json::to_string_pretty(self).map_err(|e| io_err(io::Error::other(e)))?;
        tmp.write_all(text.as_bytes()).map_err(io_err)?;
        tmp.write_all(b"\n").map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(&path).map_err(|e| io_err(e.error))?;
        Ok(())
    }

    /// Buckets by count (highest first), then first seen.
    pub fn sorted(&self) -> Vec<&Bucket> {
        let mut v: Vec<&Bucket> = self.buckets.values().collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.first_seen.cmp(&b.first_seen)));
        v
    }
}

/// `buckets.json.corrupt-20250101T000000Z` (with `-2`, `-3`... if that exists already).
fn aside_path(path: &Path, now: DateTime<Utc>) -> PathBuf {
    let base = format!(
        "{}.corrupt-{}",
        path.display(),
        now.format("%Y%m%dT%H%M%SZ")
    );
    (1..)
        .map(|i| match i {
            1 => PathBuf::from(&base),
            i => PathBuf::from(format!("{base}-{i}")),
        })
        .find(|p| !p.exists())
        .expect("an unused name")
}

/// Whether a stored dump path starts with a run id (`YYYYMMDD-HHMMSS-xxxx/`): relative to
/// the results root, as written since run-relative paths were retired.
fn is_root_relative(dump: &str) -> bool {
    let Some((first, _)) = dump.split_once('/') else {
        return false;
    };
    let b = first.as_bytes();
    b.len() == RUN_ID_LEN
        && b[8] == b'-'
        && b[15] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 8 | 15) || c.is_ascii_hexdigit())
}

/// `dump` relative to `root` with `/` separators when inside it, else as given.
fn relative_to(dump: &Path, root: &Path) -> String {
    match dump.strip_prefix(root) {
        Ok(rel) => rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
        Err(_) => dump.to_string_lossy().into_owned(),
    }
}
