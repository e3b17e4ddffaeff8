//! `hvlab results prune`: removes old run folders from a results root. Only folders named
//! like a run id are considered; a run in progress ([`crate::in_progress`]) is never
//! removed; `buckets.json` and anything else in the root is left alone.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::results::RunId;

/// Runs kept when neither `--keep` nor `--older-than` is given.
pub const DEFAULT_KEEP: usize = 20;

/// What to keep.
#[derive(Debug, Clone, Copy)]
pub struct PrunePolicy {
    /// Always keep the newest N runs.
    pub keep: Option<usize>,
    /// Remove runs that started longer ago than this.
    pub older_than: Option<Duration>,
}

impl PrunePolicy {
    /// The policy with the documented default applied: keep the newest [`DEFAULT_KEEP`].
    pub fn resolved(self) -> PrunePolicy {
        if self.keep.is_none() && self.older_than.is_none() {
            PrunePolicy {
                keep: Some(DEFAULT_KEEP),
                older_than: None,
            }
        } else {
            self
        }
    }
}

/// The decision for one run folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEntry {
    pub id: String,
    pub path: PathBuf,
    pub started: DateTime<Utc>,
    pub running: bool,
    pub remove: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("list run folders in {}", path.display())]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remove run folder {}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The start time a run id encodes.
fn started(id: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(id.get(..15)?, "%Y%m%d-%H%M%S")
        .ok()
        .map(|t| t.and_utc())
}

/// Decides which runs under `root` to remove, newest first. Runs in progress are kept and
/// do not count toward `keep`.
pub fn plan(
    root: &Path,
    policy: PrunePolicy,
    now: DateTime<Utc>,
) -> Result<Vec<RunEntry>, PruneError> {
    let policy = policy.resolved();
    let list = |source| PruneError::List {
        path: root.to_owned(),
        source,
    };
    let mut runs = Vec::new();
    for entry in std::fs::read_dir(root).map_err(list)? {
        let entry = entry.map_err(list)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if RunId::parse(&name).is_err() || !entry.file_type().map_err(list)?.is_dir() {
            continue;
        }
        let Some(started) = started(&name) else {
            continue;
        };
        let path = entry.path();
        runs.push(RunEntry {
            running: crate::in_progress::is_running(&path),
            id: name,
            path,
            started,
            remove: false,
        });
    }
    runs.sort_by(|a, b| b.id.cmp(&a.id));
    let mut kept = 0usize;
    for r in &mut runs {
        if r.running {
            continue;
        }
        let beyond_keep = policy.keep.is_none_or(|k| kept >= k);
        let old = policy.older_than.is_none_or(|d| {
            now.signed_duration_since(r.started)
                .to_std()
                .is_ok_and(|age| age > d)
        });
        r.remove = beyond_keep && old;
        kept += usize::from(!r.remove);
    }
    Ok(runs)
}

/// Removes the runs [`plan`] marked; re-checks each for a run that started meanwhile.
pub fn remove(runs: &[RunEntry]) -> Result<Vec<&RunEntry>, PruneError> {
    let mut removed = Vec::new();
    for r in runs.iter().filter(|r| r.remove) {
        if crate::in_progress::is_running(&r.path) {
            continue;
        }
        std::fs::remove_dir_all(&r.path).map_err(|source| PruneError::Remove {
            path: r.path.clone(),
            source,
        })?;
        removed.push(r);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        started(s).unwrap()
    }

    #[test]
    fn keep_and_older_than_and_in_progress() {
        let root = tempfile::tempdir().unwrap();
        let ids = [
            "20261101-000000-aaaa",
            "20261120-000000-bbbb",
            "20261129-000000-cccc",
            "20261130-000000-dddd",
        ];
        for id in ids {
            std::fs::create_dir(root.path().join(id)).unwrap();
        }
        std::fs::create_dir(root.path().join("not-a-run")).unwrap();
        // The oldest run is still in progress (this process holds its marker).
        let _m = crate::in_progress::RunMarker::create(&root.path().join(ids[0])).unwrap();
        let now = at("20261130-120000-0000");
        let removed = |p| -> Vec<String> {
            plan(root.path(), p, now)
                .unwrap()
                .into_iter()
                .filter(|r| r.remove)
                .map(|r| r.id)
                .collect()
        };
        let keep = |k| PrunePolicy {
            keep: Some(k),
            older_than: None,
        };
        assert_eq!(removed(keep(2)), vec![ids[1]]);
        assert_eq!(removed(keep(0)), vec![ids[3], ids[2], ids[1]]);
        let week = PrunePolicy {
            keep: None,
            older_than: Some(Duration::from_secs(7 * 86400)),
        };
        assert_eq!(removed(week), vec![ids[1]]);
        let both = PrunePolicy {
            keep: Some(3),
            older_than: Some(Duration::from_secs(86400)),
        };
        assert_eq!(removed(both), Vec::<String>::new());
        // The default keeps 20: nothing here.
        let default = PrunePolicy {
            keep: None,
            older_than: None,
        };
        assert_eq!(removed(default), Vec::<String>::new());
        let entries = plan(root.path(), keep(0), now).unwrap();
        assert_eq!(remove(&entries).unwrap().len(), 3);
        assert!(root.path().join(ids[0]).is_dir());
        assert!(root.path().join("not-a-run").is_dir());
    }
}
