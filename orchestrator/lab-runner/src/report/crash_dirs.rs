//! `crashes/<bucket>/index.json` (and `crashes/untriaged/index.json`): every crash of the
//! run filed in one folder, with its unit, dumps and seed. `triage.json` and `analyze.txt`
//! beside it are written by the crash pipeline, which holds the parsed dump.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::model::RunModel;
use super::{ReportError, Reporter};
use crate::events::{Bucket, BugcheckInfo, Crash, CrashKind, Envelope, Event, UnitId};
use crate::results::{RunDir, atomic_write};

/// The folder of crashes that have no bucket: the dump could not be triaged, or there was
/// no dump (bucket ids are hex digits, so it never clashes with one).
pub const UNTRIAGED: &str = "untriaged";

/// A crash's folder, relative to the run directory.
pub fn crash_folder(c: &Crash) -> PathBuf {
    match &c.bucket {
        Some(b) => RunDir::crash_rel(&b.id),
        None => Path::new("crashes").join(UNTRIAGED),
    }
}

/// `index.json` of one crash folder.
#[derive(Debug, Serialize)]
pub struct CrashIndex<'a> {
    /// `None` in the untriaged folder.
    pub bucket: Option<&'a Bucket>,
    pub crashes: Vec<CrashEntry<'a>>,
}

/// One crash in a folder's `index.json`.
#[derive(Debug, Serialize)]
pub struct CrashEntry<'a> {
    pub unit: &'a UnitId,
    /// The unit's folder, relative to the run directory.
    pub unit_dir: PathBuf,
    /// Relative to the run directory.
    pub dumps: &'a [PathBuf],
    pub seed: Option<u64>,
    pub kind: CrashKind,
    pub step: Option<&'a str>,
    pub bugcheck: Option<&'a BugcheckInfo>,
    /// Why the crash has no bucket (untriaged folder only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage_error: Option<String>,
}

/// Every crash folder of the run and its `index.json`, in folder order.
pub fn indexes(m: &RunModel) -> BTreeMap<PathBuf, CrashIndex<'_>> {
    let mut out: BTreeMap<PathBuf, CrashIndex<'_>> = BTreeMap::new();
    for u in &m.units {
        for c in &u.crashes {
            let folder = out.entry(crash_folder(c)).or_insert_with(|| CrashIndex {
                bucket: c.bucket.as_ref(),
                crashes: Vec::new(),
            });
            let triage_error = match (&c.bucket, &c.triage_error) {
                (Some(_), _) => None,
                (None, Some(e)) => Some(e.clone()),
                (None, None) if c.dumps.is_empty() => Some("no dump was collected".to_owned()),
                (None, None) => Some("the dump was not triaged".to_owned()),
            };
            folder.crashes.push(CrashEntry {
                unit: &u.id,
                unit_dir: RunDir::unit_rel(&u.id),
                dumps: &c.dumps,
                seed: u.seed,
                kind: c.kind,
                step: c.step.as_deref(),
                bugcheck: c.bugcheck.as_ref(),
                triage_error,
            });
        }
    }
    out
}

/// Writes each crash folder's `index.json` in `<results_dir>/crashes/` when it changes.
#[derive(Debug)]
pub struct CrashDirReporter {
    dir: PathBuf,
    model: RunModel,
    /// What each index.json holds now, so unchanged folders are not rewritten.
    written: HashMap<PathBuf, Vec<u8>>,
    rewrites: super::Rewrites,
}

impl CrashDirReporter {
    pub fn new(results_dir: &Path) -> Self {
        CrashDirReporter {
            dir: results_dir.to_owned(),
            model: RunModel::new(),
            written: HashMap::new(),
            rewrites: super::Rewrites::new(),
        }
    }
}

impl Reporter for CrashDirReporter {
    fn event(&mut self, ev: &Envelope) -> Result<(), ReportError> {
        self.model.apply(ev);
        // A crash in a folder without an index yet is filed at once (the folder's first
        // crash); the others wait for the schedule, as the other whole-run files do.
        let new_folder = match &ev.event {
            Event::CrashDetected { crash, .. } => !self.written.contains_key(&crash_folder(crash)),
            _ => false,
        };
        if !self.rewrites.due(&ev.event) && !new_folder {
            return Ok(());
        }
        for (folder, index) in indexes(&self.model) {
            let mut json =
                serde_json::to_vec_pretty(&index).map_err(|source| ReportError::Json {
                    what: "crashes/<bucket>/index.json",
                    source,
                })?;
            json.push(b'\n');
            if self.written.get(&folder) == Some(&json) {
                continue;
            }
            let dir = self.dir.join(&folder);
            std::fs::create_dir_all(&dir).map_err(|source| ReportError::Io {
                path: dir.clone(),
                source,
            })?;
            atomic_write(&dir.join("index.json"), &json)?;
            self.written.insert(folder, json);
        }
        Ok(())
    }
}
