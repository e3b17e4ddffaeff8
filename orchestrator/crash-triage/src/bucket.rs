//! The bucket index: one entry per crash signature, kept across runs in
//! `<results root>/buckets.json`.
//!
//! Updates take an exclusive lock on `buckets.json.lock`, read the index, apply the crash
//! and replace the file atomically (temp file + rename): two runs recording one after the
//! other (or at the same time) never lose an update, and a reader never sees half a file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::signature::Signature;

/// File name of the index inside the results root.
pub const BUCKETS_FILE: &str = "buckets.json";
/// How many dumps per bucket are kept by default; later ones are only counted.
pub const DEFAULT_KEEP_DUMPS: usize = 5;
const VERSION: u32 = 1;

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
    /// The first dumps, relative to the results root when inside it.
    pub dumps: Vec<String>,
    /// Dumps seen after `dumps` was full.
    pub dumps_not_kept: u64,
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
pub struct Recorded {
    pub bucket_id: String,
    pub title: String,
    /// The first crash in this bucket.
    pub is_new: bool,
    pub count: u64,
    /// Whether the dump is among the first N kept; when false the caller may delete it.
    pub keep_dump: bool,
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

    /// Record one crash in the index of `results_root` (locked, read, updated, replaced).
    pub fn record(
        results_root: &Path,
        crash: &CrashRecord<'_>,
        keep_dumps: usize,
    ) -> Result<Recorded, BucketError> {
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
        let mut index = Self::load(results_root)?;
        let recorded = index.apply(results_root, crash, keep_dumps);
        index.save(results_root)?;
        // Dropping the file releases the lock.
        drop(lock);
        Ok(recorded)
    }

    /// Apply one crash in memory.
    pub fn apply(
        &mut self,
        results_root: &Path,
        crash: &CrashRecord<'_>,
        keep_dumps: usize,
    ) -> Recorded {
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
            });
        bucket.count += 1;
        bucket.first_seen = bucket.first_seen.min(crash.seen_at);
        bucket.last_seen = bucket.last_seen.max(crash.seen_at);
        if !bucket.runs.iter().any(|r| r == crash.run_id) {
            bucket.runs.push(crash.run_id.to_owned());
        }
        let mut keep_dump = false;
        if let Some(dump) = crash.dump {
            let shown = relative_to(dump, results_root);
            if bucket.dumps.contains(&shown) {
                keep_dump = true;
            } else if bucket.dumps.len() < keep_dumps {
                bucket.dumps.push(shown);
                keep_dump = true;
            } else {
                bucket.dumps_not_kept += 1;
            }
        }
        Recorded {
            bucket_id: bucket.id.clone(),
            title: bucket.title.clone(),
            is_new,
            count: bucket.count,
            keep_dump,
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
