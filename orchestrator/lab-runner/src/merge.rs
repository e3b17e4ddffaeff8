//! `hvlab results merge`: one results folder from the folders of several shards of a run
//! (`hvlab run --shard K/N` in a CI matrix). The shards' `events.jsonl` are joined into one
//! stream (one `run_started` with every unit, each shard's events in time order, one
//! `run_finished` with summed counts and the combined exit code); junit.xml, summary.json,
//! index.html and the crash folder indexes are rendered from it by the same builders a
//! live run uses, so crash buckets are counted over all shards. Unit folders, crash
//! folders and each shard's `hvlab.log` (as `shards/<run-id>.log`) are copied (hard links
//! where the file system allows).

use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::events::{Envelope, Event, RunStats, UnitId};
use crate::exit;
use crate::report::{RunModel, write_all};
use crate::results::RunDir;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {}:{line}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} has no run_started event: not a run's events.jsonl", path.display())]
    NotARun { path: PathBuf },
    #[error("unit {unit} is in both {} and {}: merge the shards of one run, each once", first.display(), second.display())]
    Overlap {
        unit: UnitId,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("the output folder {} exists and is not empty", path.display())]
    OutNotEmpty { path: PathBuf },
    #[error("write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("render the merged reports")]
    Report(#[source] crate::report::ReportError),
}

impl MergeError {
    /// 2 for inputs that are not shards of one run, 3 for the file system.
    pub fn exit_code(&self) -> u8 {
        match self {
            MergeError::Parse { .. }
            | MergeError::NotARun { .. }
            | MergeError::Overlap { .. }
            | MergeError::OutNotEmpty { .. } => exit::CONFIG_ERROR,
            _ => exit::INFRA_ERROR,
        }
    }
}

/// What the merge produced.
#[derive(Debug)]
pub struct Merged {
    pub stats: RunStats,
    pub exit_code: i32,
    pub shards: usize,
}

struct Shard {
    dir: PathBuf,
    events: Vec<Envelope>,
}

fn read_shard(dir: &Path) -> Result<Shard, MergeError> {
    let path = dir.join(RunDir::EVENTS);
    let read = |source| MergeError::Read {
        path: path.clone(),
        source,
    };
    let file = fs::File::open(&path).map_err(read)?;
    let mut events = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(read)?;
        if line.trim().is_empty() {
            continue;
        }
        let env: Envelope = serde_json::from_str(&line).map_err(|source| MergeError::Parse {
            path: path.clone(),
            line: i + 1,
            source,
        })?;
        events.push(env);
    }
    if !matches!(
        events.first().map(|e| &e.event),
        Some(Event::RunStarted { .. })
    ) {
        return Err(MergeError::NotARun { path });
    }
    Ok(Shard {
        dir: dir.to_owned(),
        events,
    })
}

/// Merges the run folders `dirs` into `out` (created; an existing one must be empty).
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Merged, MergeError> {
    if fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(MergeError::OutNotEmpty {
            path: out.to_owned(),
        });
    }
    let write = |path: &Path| {
        let path = path.to_owned();
        move |source| MergeError::Write { path, source }
    };
    fs::create_dir_all(out).map_err(write(out))?;
    let out = std::path::absolute(out).map_err(write(out))?;
    let shards: Vec<Shard> = dirs
        .iter()
        .map(|d| read_shard(d))
        .collect::<Result<_, _>>()?;

    let mut units: Vec<UnitId> = Vec::new();
    let mut owner: std::collections::HashMap<UnitId, usize> = Default::default();
    let mut stats = RunStats::default();
    let mut elapsed = Duration::ZERO;
    let (mut interrupted, mut infra, mut max_vms) = (false, false, 0usize);
    let mut body: Vec<Envelope> = Vec::new();
    for (i, sh) in shards.iter().enumerate() {
        let mut finished = false;
        for env in &sh.events {
            match &env.event {
                Event::RunStarted {
                    units: u,
                    max_vms: m,
                    ..
                } => {
                    max_vms += m;
                    for id in u {
                        if let Some(&j) = owner.get(id) {
                            return Err(MergeError::Overlap {
                                unit: id.clone(),
                                first: shards[j].dir.clone(),
                                second: sh.dir.clone(),
                            });
                        }
                        owner.insert(id.clone(), i);
                        units.push(id.clone());
                    }
                }
                Event::RunFinished {
                    elapsed: e,
                    stats: s,
                    interrupted: int,
                    ..
                } => {
                    finished = true;
                    elapsed = elapsed.max(*e);
                    interrupted |= int;
                    add(&mut stats, s);
                }
                other => {
                    infra |= matches!(other, Event::InfraError { .. });
                    body.push(env.clone());
                }
            }
        }
        // A shard killed before its end: its counts come from its events, and the merged
        // run is marked interrupted (its verdict is incomplete).
        if !finished {
            interrupted = true;
            let mut m = RunModel::new();
            sh.events.iter().for_each(|e| m.apply(e));
            add(&mut stats, &m.stats());
        }
    }
    // Stable: a unit's own events keep their order when timestamps tie.
    body.sort_by_key(|e| e.at);

    let first = &shards[0].events[0];
    let Event::RunStarted {
        lab,
        lab_kind,
        seed,
        ..
    } = &first.event
    else {
        unreachable!("read_shard checked the first event");
    };
    let run_id = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "merged".into());
    let exit_code = if interrupted {
        i32::from(exit::INTERRUPTED)
    } else if infra {
        // Evidence or results a shard could not keep: the merged verdict is incomplete too.
        i32::from(exit::INFRA_ERROR)
    } else {
        exit::for_run(stats.failed > 0, stats.errored > 0, false)
    };
    let started_at = shards
        .iter()
        .map(|s| s.events[0].at)
        .min()
        .unwrap_or(first.at);
    let last_at = body.last().map_or(started_at, |e| e.at);
    let mut all = Vec::with_capacity(body.len() + 2);
    all.push(Envelope {
        at: started_at,
        event: Event::RunStarted {
            run_id,
            lab: lab.clone(),
            lab_kind: lab_kind.clone(),
            results_dir: out.clone(),
            units,
            seed: *seed,
            max_vms,
        },
    });
    all.extend(body);
    all.push(Envelope {
        at: last_at,
        event: Event::RunFinished {
            elapsed,
            stats,
            exit_code,
            interrupted,
        },
    });

    let events_path = out.join(RunDir::EVENTS);
    let mut w = BufWriter::new(fs::File::create(&events_path).map_err(write(&events_path))?);
    let mut model = RunModel::new();
    for env in &all {
        model.apply(env);
        serde_json::to_writer(&mut w, env).map_err(|e| MergeError::Write {
            path: events_path.clone(),
            source: e.into(),
        })?;
        w.write_all(b"\n").map_err(write(&events_path))?;
    }
    w.flush().map_err(write(&events_path))?;
    for sh in &shards {
        copy_tree(&sh.dir, &out, true)?;
        let log = sh.dir.join(RunDir::LOG);
        if log.is_file() {
            let name = sh
                .dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dest = out.join("shards").join(format!("{name}.log"));
            fs::create_dir_all(out.join("shards")).map_err(write(&dest))?;
            link_or_copy(&log, &dest)?;
        }
    }
    write_all(&model, &out).map_err(MergeError::Report)?;
    Ok(Merged {
        stats,
        exit_code,
        shards: shards.len(),
    })
}

fn add(total: &mut RunStats, s: &RunStats) {
    total.units += s.units;
    total.passed += s.passed;
    total.failed += s.failed;
    total.errored += s.errored;
    total.cancelled += s.cancelled;
    total.crashes += s.crashes;
    total.retried += s.retried;
    total.flaky += s.flaky;
}

/// Files at a run folder's top level that the merge renders anew (or must not carry over).
const NOT_COPIED: &[&str] = &[
    RunDir::JUNIT,
    RunDir::SUMMARY,
    RunDir::EVENTS,
    RunDir::INDEX,
    RunDir::LOG,
    crate::results::Reserve::FILE,
    crate::in_progress::MARKER,
];

/// Copies `from` into `to`, keeping files that exist already (the first shard's triage of
/// a shared crash bucket wins; the bucket's index.json is rewritten afterwards anyway).
fn copy_tree(from: &Path, to: &Path, top: bool) -> Result<(), MergeError> {
    let read = |source| MergeError::Read {
        path: from.to_owned(),
        source,
    };
    for entry in fs::read_dir(from).map_err(read)? {
        let entry = entry.map_err(read)?;
        let name = entry.file_name();
        if top && NOT_COPIED.iter().any(|n| name == *n) {
            continue;
        }
        let dest = to.join(&name);
        if entry.file_type().map_err(read)?.is_dir() {
            fs::create_dir_all(&dest).map_err(|source| MergeError::Write {
                path: dest.clone(),
                source,
            })?;
            copy_tree(&entry.path(), &dest, false)?;
        } else if !dest.exists() {
            link_or_copy(&entry.path(), &dest)?;
        }
    }
    Ok(())
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), MergeError> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to)
        .map(drop)
        .map_err(|source| MergeError::Write {
            path: to.to_owned(),
            source,
        })
}
