//! The crash pipeline of one unit: notice that the guest rebooted (boot id changed), turn a
//! hang into a dump with an NMI, wait for the guest to come back, collect the bugcheck events
//! and dump files, and triage them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab_backends::guest::{MEMORY_DMP, MINIDUMP_DIR};
use lab_backends::{Guest, Hypervisor, VmState};

use crate::error::{self, RunnerError};
use crate::events::{ArtifactKind, Bucket, BugcheckInfo, Crash, CrashKind, Event, LostDump};
use crate::exec::UnitCtx;
use crate::verdict;

/// Whether the guest has rebooted since the unit last looked. An unreachable guest is
/// waited for (it may be writing a dump and restarting) up to the boot timeout.
pub async fn rebooted(ctx: &UnitCtx<'_>) -> Result<bool, RunnerError> {
    let expected = ctx.boot_id.lock().expect("boot id lock").clone();
    match ctx.guest.boot_id().await {
        Ok(id) => Ok(id != expected),
        Err(_) => {
            let id = wait_back(ctx).await?;
            Ok(id != expected)
        }
    }
}

/// [`rebooted`] after a step that succeeded, answered without a round trip from the boot
/// id the step's own last guest script reported (taken: see `Guest::take_seen_boot_id`);
/// a step that reported none (a sleep, a host-only step, the sim lab) is checked by a read.
pub async fn rebooted_after_step(ctx: &UnitCtx<'_>) -> Result<bool, RunnerError> {
    match ctx.guest.take_seen_boot_id() {
        Some(id) => Ok(id != *ctx.boot_id.lock().expect("boot id lock")),
        None => rebooted(ctx).await,
    }
}

/// How long a VM may stay `Crashed` before the runner takes it for halted. With AutoReboot
/// on, `Crashed` lasts only until the backend restarts the guest; with it off (a template's
/// `auto_reboot: false`) the guest stays down at the bugcheck, its dump already written.
const HALT_GRACE: Duration = Duration::from_secs(1);

/// The longest single wait for the guest to answer before its power state is read again.
const WAIT_SLICE: Duration = Duration::from_secs(5);

/// Waits until the guest answers again, powering a VM that is off back on and resetting
/// one halted at a bugcheck (AutoReboot off), and returns the new boot id.
async fn wait_back(ctx: &UnitCtx<'_>) -> Result<String, RunnerError> {
    let deadline = Instant::now() + ctx.boot_timeout;
    let mut crashed_since: Option<Instant> = None;
    loop {
        let state = ctx
            .hv
            .state(ctx.vm)
            .await
            .map_err(RunnerError::lab(format!("read the state of {}", ctx.vm)))?;
        let halted = match state {
            VmState::Crashed => {
                let since = *crashed_since.get_or_insert_with(Instant::now);
                since.elapsed() >= HALT_GRACE
            }
            _ => {
                crashed_since = None;
                false
            }
        };
        if halted {
            // A halted guest never restarts by itself: reset it (turn off, then start) so
            // its dump and bugcheck record can be collected; otherwise the crash would
            // read as a guest that never came back (a lab error).
            tracing::info!(vm = ctx.vm, "the guest halted at a bugcheck: resetting it");
            ctx.hv
                .stop(ctx.vm, lab_backends::StopMode::TurnOff)
                .await
                .map_err(RunnerError::lab(format!("turn off the halted {}", ctx.vm)))?;
            crashed_since = None;
        }
        if halted || state == VmState::Off {
            ctx.hv
                .start(ctx.vm)
                .await
                .map_err(RunnerError::lab(format!("start {}", ctx.vm)))?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if state == VmState::Crashed && !halted && !left.is_zero() {
            // Restarting by itself, or halted: look again shortly.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        // In slices, so a guest that halts while the runner waits (it answered "shutting
        // down" a moment ago) is seen as `Crashed` and reset before the boot timeout ends.
        match ctx
            .hv
            .wait_ready(ctx.vm, left.clamp(Duration::from_millis(50), WAIT_SLICE))
            .await
        {
            Ok(id) => return Ok(id),
            Err(e) if Instant::now() >= deadline => {
                return Err(RunnerError::lab("wait for the guest to come back")(e));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A step hung: inject an NMI so the guest bugchecks (0x80) with the stuck code in its dump,
/// then collect like any crash.
pub async fn hang(ctx: &UnitCtx<'_>, step: &str) -> Result<Crash, RunnerError> {
    let before = ctx.boot_id.lock().expect("boot id lock").clone();
    ctx.hv
        .inject_nmi(ctx.vm)
        .await
        .map_err(RunnerError::lab("inject NMI into the hung guest"))?;
    let deadline = Instant::now() + ctx.boot_timeout;
    loop {
        if let Ok(id) = ctx.guest.boot_id().await
            && id != before
        {
            break;
        }
        if Instant::now() >= deadline {
            return Err(RunnerError::Observed(format!(
                "the guest hung in {step} and did not bugcheck after an NMI within {}",
                humantime::format_duration(ctx.boot_timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(collect(ctx, CrashKind::Hang, Some(step.to_owned())).await?)
}

/// Collects the evidence of a crash that already happened: events 41/1001 and dumps.
///
/// `Err` is a lab error, not a crash (see [`crate::verdict`]): the guest did not come back,
/// or it restarted without a bugcheck record or dump (its process died or was powered off).
/// No `CrashDetected` is emitted then, so no report shows it as a crash.
pub async fn collect(
    ctx: &UnitCtx<'_>,
    kind: CrashKind,
    step: Option<String>,
) -> Result<Crash, verdict::NotACrash> {
    let mut crash = Crash {
        kind,
        step,
        bugcheck: None,
        dumps: Vec::new(),
        bucket: None,
        triage_error: None,
        dumps_lost: Vec::new(),
    };
    let before = ctx.boot_id.lock().expect("boot id lock").clone();
    let after = match wait_back(ctx).await {
        Ok(id) => {
            *ctx.boot_id.lock().expect("boot id lock") = id.clone();
            id
        }
        Err(e) => {
            return Err(verdict::NotACrash::DidNotComeBack {
                before,
                source: Box::new(e),
            });
        }
    };
    let since = *ctx.event_mark.lock().expect("event mark lock");
    let event_ids = match ctx.guest.events(since).await {
        Ok(records) => {
            if let Some(last) = records.iter().map(|r| r.record_id).max() {
                *ctx.event_mark.lock().expect("event mark lock") = last;
            }
            if let Some(bc) = records.iter().rev().find_map(|r| r.bugcheck()) {
                crash.bugcheck = Some(BugcheckInfo::from(bc));
            }
            if let Some(l) = dump_not_saved(&records) {
                crash.dumps_lost.push(l);
            }
            let rel = ctx.unit_rel.join("system-events.json");
            let path = ctx.unit_dir.join("system-events.json");
            let written = serde_json::to_vec_pretty(&events_file(&records))
                .map_err(std::io::Error::other)
                .map_err(|source| crate::results::ResultsError::Write {
                    path: path.clone(),
                    source,
                })
                .and_then(|body| crate::results::atomic_write(&path, &body));
            match written {
                Ok(()) => artifact(ctx, ArtifactKind::EventLog, rel),
                Err(e) => results_error(ctx, &e),
            }
            Ok(records.iter().map(|r| r.event_id).collect())
        }
        Err(e) => {
            tracing::warn!(vm = ctx.vm, error = %e, "could not read the System event log");
            Err(error::text(&e))
        }
    };
    let (dumps, lost) = collect_dumps(ctx).await;
    crash.dumps_lost.extend(lost);
    // Evidence lost to the lab (a full disk, a failed transfer) is a lab failure as well as
    // a line in the verdict: the run must not pass as a clean result.
    for l in &crash.dumps_lost {
        let _ = ctx.events.send(Event::InfraError {
            vm: Some(ctx.vm.to_owned()),
            message: format!("keep dump {} of {}: {}", l.dump, ctx.unit, l.reason),
            causes: vec![],
        });
    }
    for (local, rel) in dumps {
        // Only the first dump is triaged and bucketed: a small dump beside MEMORY.DMP is
        // the same crash.
        if crash.bucket.is_some() || crash.triage_error.is_some() {
            artifact(ctx, ArtifactKind::Dump, rel.clone());
            crash.dumps.push(rel);
            continue;
        }
        match triage(&local, symbol_path(ctx)).await {
            Ok(t) => {
                let analyze = analyze(ctx, &local).await;
                let sig = crash_triage::signature::signature(&t, analyze.as_ref());
                crash.bugcheck = Some(BugcheckInfo {
                    module: t.faulting_module.as_ref().map(|m| m.name.clone()),
                    // RIP's function, named from the dump or the payload's driver files.
                    symbol: sig
                        .symbol
                        .clone()
                        .or_else(|| t.stack.first().and_then(|f| f.function.clone())),
                    ..BugcheckInfo::from(t.bugcheck.record())
                });
                match record_bucket(ctx, &sig, &local).await {
                    Ok(rec) => {
                        crash.bucket = Some(Bucket {
                            id: rec.bucket_id.clone(),
                            title: rec.title.clone(),
                            new: rec.is_new,
                            // Set by the dispatcher, which holds the known-issues file.
                            known_issue: None,
                        });
                        bucket_notices(ctx, &rec);
                        write_triage(ctx, &t, &sig, &rel, rec.is_new);
                    }
                    Err(e) => crash.triage_error = Some(error::text(&e)),
                }
            }
            Err(e) => crash.triage_error = Some(error::text(&e)),
        }
        artifact(ctx, ArtifactKind::Dump, rel.clone());
        crash.dumps.push(rel);
    }
    if !verdict::is_evidence(&crash) {
        return Err(verdict::NotACrash::NoEvidence(verdict::RestartSeen {
            before,
            after,
            since_record: since,
            event_ids,
        }));
    }
    let _ = ctx.events.send(Event::CrashDetected {
        unit: ctx.unit.clone(),
        vm: ctx.vm.to_owned(),
        crash: crash.clone(),
    });
    Ok(crash)
}

/// A record as `system-events.json` writes it: the field names and order it had before the
/// records took the guest protocol's (`record`, `time`), so tools that read it need no
/// change.
#[derive(serde::Serialize)]
struct EventsFileRecord<'a> {
    record: u64,
    event_id: u32,
    provider: &'a str,
    time: String,
    message: &'a str,
    data: &'a std::collections::BTreeMap<String, String>,
}

fn events_file(records: &[lab_backends::EventRecord]) -> Vec<EventsFileRecord<'_>> {
    records
        .iter()
        .map(|r| EventsFileRecord {
            record: r.record_id,
            event_id: r.event_id,
            provider: &r.provider,
            time: r.time_created.to_rfc3339(),
            message: &r.message,
            data: &r.data,
        })
        .collect()
}

/// Event 161 (volmgr) says the guest could not write its dump (e.g. its disk was full),
/// and why. Without it, "A dump was not saved." in event 1001 only means none was
/// configured.
fn dump_not_saved(records: &[lab_backends::EventRecord]) -> Option<LostDump> {
    let failed = records.iter().rev().find(|r| r.event_id == 161)?;
    Some(LostDump {
        dump: "(the guest's crash dump)".to_owned(),
        reason: format!("the guest saved no dump: {}", failed.message),
    })
}

/// A failed write into the results folder is a lab failure: announced (terminal, junit.xml,
/// summary.json) and the run ends with exit code 3.
fn results_error(ctx: &UnitCtx<'_>, e: &crate::results::ResultsError) {
    let _ = ctx.events.send(Event::InfraError {
        vm: Some(ctx.vm.to_owned()),
        message: format!("record results of {}: {}", ctx.unit, lab_error::Chain(e)),
        causes: vec![],
    });
}

/// Writes `crashes/<bucket>/triage.json` and `analyze.txt` for the first crash of the run
/// in the bucket (later ones are the same signature; `index.json` lists them all). The
/// folder exists before `CrashDetected` is sent, so no report links to a missing folder.
fn write_triage(
    ctx: &UnitCtx<'_>,
    t: &crash_triage::Triage,
    sig: &crash_triage::Signature,
    dump_rel: &Path,
    new: bool,
) {
    // The unit folder is `<run dir>/<unit_rel>`: walk up as many components.
    let Some(run_dir) = ctx
        .unit_dir
        .ancestors()
        .nth(ctx.unit_rel.components().count())
    else {
        return;
    };
    let dir = run_dir.join(crate::results::RunDir::crash_rel(&sig.id));
    let json_path = dir.join("triage.json");
    if json_path.exists() {
        return;
    }
    let doc = crash_triage::report::CrashTriage::new(t, dump_rel.to_path_buf(), sig, new);
    let write = |path: PathBuf, body: Vec<u8>| {
        std::fs::create_dir_all(&dir)
            .map_err(|source| crate::results::ResultsError::CreateRunDir {
                path: dir.clone(),
                source,
            })
            .and_then(|()| crate::results::atomic_write(&path, &body))
    };
    // Plain data: serializing cannot fail, but a failure must not panic a worker either.
    let json = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    let text = crash_triage::report::render_analyze(&doc, t).into_bytes();
    for (name, body) in [("analyze.txt", text), ("triage.json", json)] {
        if let Err(e) = write(dir.join(name), body) {
            results_error(ctx, &e);
            return;
        }
    }
}

/// What recording a crash did to the index beyond the bucket itself: a corrupt index moved
/// aside, dumps of earlier runs trimmed by `--keep-dumps`.
fn bucket_notices(ctx: &UnitCtx<'_>, rec: &crash_triage::BucketUpdate) {
    if let Some(aside) = &rec.moved_aside {
        let _ = ctx.events.send(Event::Warning {
            message: format!(
                "the crash bucket index was corrupt: moved it aside to {} and started a \
                 fresh one (bucket history before this run is in that file)",
                aside.display()
            ),
        });
    }
    if let (false, crash_triage::KeepDumps::Last(keep)) = (rec.removed.is_empty(), ctx.keep_dumps) {
        let _ = ctx.events.send(Event::DumpsRemoved {
            bucket: rec.bucket_id.clone(),
            keep,
            removed: rec.removed.iter().map(PathBuf::from).collect(),
        });
    }
    for (dump, why) in &rec.remove_failed {
        let _ = ctx.events.send(Event::Warning {
            message: format!(
                "--keep-dumps: could not remove {dump} of bucket {}: {why}",
                rec.bucket_id
            ),
        });
    }
}

fn artifact(ctx: &UnitCtx<'_>, kind: ArtifactKind, path: PathBuf) {
    let _ = ctx.events.send(Event::ArtifactCollected {
        unit: Some(ctx.unit.clone()),
        vm: ctx.vm.to_owned(),
        kind,
        path,
    });
}

/// Downloads `MEMORY.DMP` and `Minidump\*.dmp` into the unit folder and removes them from
/// the guest, so the next crash on this VM is not mistaken for this one. Returns the dumps
/// kept (local, relative to the run dir) and those that could not be kept, with why; a
/// dump that failed to download stays on the guest.
async fn collect_dumps(ctx: &UnitCtx<'_>) -> (Vec<(PathBuf, PathBuf)>, Vec<LostDump>) {
    let mut remote = Vec::new();
    let mut lost = Vec::new();
    match ctx.guest.stat(MEMORY_DMP).await {
        Ok(Some(_)) => remote.push((MEMORY_DMP.to_owned(), "MEMORY.DMP".to_owned())),
        Ok(None) => {}
        Err(e) => lost.push(LostDump {
            dump: MEMORY_DMP.to_owned(),
            reason: format!("look for it on the guest: {e}"),
        }),
    }
    if let Ok(entries) = ctx.guest.list_dir(MINIDUMP_DIR).await {
        for e in entries.into_iter().filter(|e| !e.is_dir) {
            remote.push((format!("{MINIDUMP_DIR}\\{}", e.name), e.name));
        }
    }
    let dir = ctx.unit_dir.join("dumps");
    let mut out = Vec::new();
    if remote.is_empty() {
        return (out, lost);
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        let reason = format!("create {}: {e}", dir.display());
        lost.extend(remote.into_iter().map(|(dump, _)| LostDump {
            dump,
            reason: reason.clone(),
        }));
        return (out, lost);
    }
    for (path, name) in remote {
        let name = crate::results::safe_name(&name);
        let local = dir.join(&name);
        match ctx.guest.download(&path, &local).await {
            Ok(_) => {
                if let Err(e) = ctx.guest.remove(&path).await {
                    tracing::warn!(vm = ctx.vm, dump = %path, error = %e, "dump left on the guest");
                }
                out.push((local, ctx.unit_rel.join("dumps").join(name)));
            }
            Err(e) => {
                // A half-written copy is no evidence, and it holds the space that ran out.
                let mut reason = format!("download to {}: {}", local.display(), error::text(&e));
                match std::fs::remove_file(&local) {
                    Ok(()) => {}
                    Err(r) if r.kind() == std::io::ErrorKind::NotFound => {}
                    Err(r) => reason.push_str(&format!(" (and removing the partial copy: {r})")),
                }
                lost.push(LostDump { dump: path, reason });
            }
        }
    }
    (out, lost)
}

/// `!analyze -v` of the lab's `debugger:` on the collected dump, parsed; `None` (with a
/// warning in the log and the terminal) when it is not set or fails: the crash keeps
/// hvlab's own triage, never lost to a debugger problem.
async fn analyze(ctx: &UnitCtx<'_>, dump: &Path) -> Option<crash_triage::Analyze> {
    let d = ctx.debugger?;
    if let lab_backends::AnyHypervisor::HyperV(hv) = ctx.hv {
        // On Hyper-V the debugger lives on the VM's host.
        let ran = crate::host_debugger::analyze(ctx, hv, d, dump, ANALYZE_TIMEOUT).await;
        return ran.map_err(|m| debugger_warning(ctx, d, dump, &m)).ok();
    }
    let config = crash_triage::DebuggerConfig {
        path: PathBuf::from(&d.path),
        // The payload's driver folders first: the debugger finds the driver images there.
        symbol_path: debugger_symbol_path(ctx, d.symbol_path.as_deref()),
    };
    let p = dump.to_owned();
    let ran = tokio::task::spawn_blocking(move || {
        crash_triage::run_analyze(&config, &p, ANALYZE_TIMEOUT)
    })
    .await;
    let message = match ran {
        Ok(Ok(a)) => return Some(a),
        Ok(Err(e)) => lab_error::Chain(&e).to_string(),
        Err(e) => e.to_string(),
    };
    debugger_warning(ctx, d, dump, &message);
    None
}

/// The debugger failed: the crash keeps hvlab's own triage, and the user is told why.
fn debugger_warning(ctx: &UnitCtx<'_>, d: &lab_config::Debugger, dump: &Path, message: &str) {
    let _ = ctx.events.send(Event::Warning {
        message: format!(
            "debugger `{}` gave no analysis of {}; kept hvlab's own triage: {message}",
            d.path,
            dump.display()
        ),
    });
}

/// Time allowed for one `!analyze -v` (symbol downloads can be slow).
const ANALYZE_TIMEOUT: Duration = Duration::from_secs(300);

/// The payload's driver folders, then the lab's symbol path.
fn debugger_symbol_path(ctx: &UnitCtx<'_>, lab: Option<&str>) -> Option<String> {
    let dirs = symbol_path(ctx).dirs;
    let mut parts: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    parts.extend(lab.map(str::to_owned));
    (!parts.is_empty()).then(|| parts.join(";"))
}

/// The payload's driver files and their folders: the symbol path that names functions of
/// an unloaded driver (whose pages the dump lacks), as a debugger's symbol path would. The
/// deployed files come first: a build folder may hold sibling variants of one driver that
/// a small dump's cut names cannot tell apart.
fn symbol_path(ctx: &UnitCtx<'_>) -> crash_triage::SymbolPath {
    let mut path = crash_triage::SymbolPath::default();
    for image in driver_images(ctx) {
        path.images.push(image.to_owned());
        if let Some(dir) = image.parent()
            && !path.dirs.iter().any(|d| d == dir)
        {
            path.dirs.push(dir.to_owned());
        }
    }
    path
}

/// The local files deployed as one of the payload's drivers, in deploy order.
pub(crate) fn driver_images<'a>(ctx: &'a UnitCtx<'_>) -> impl Iterator<Item = &'a Path> {
    ctx.files
        .iter()
        .filter(|f| {
            ctx.payload
                .drivers
                .iter()
                .any(|d| d.binary.eq_ignore_ascii_case(&f.destination))
        })
        .map(|f| f.source.as_path())
}

/// Triage on a blocking thread: the dump parser is synchronous and not `Send`.
async fn triage(
    path: &Path,
    symbols: crash_triage::SymbolPath,
) -> Result<crash_triage::Triage, RunnerError> {
    let p = path.to_owned();
    let err = |source: lab_error::BoxError| RunnerError::Triage {
        what: "triage",
        path: path.to_owned(),
        source,
    };
    tokio::task::spawn_blocking(move || {
        let mut t = crash_triage::triage_file(&p)?;
        crash_triage::symbolize(&mut t, &symbols);
        Ok::<_, crash_triage::TriageError>(t)
    })
    .await
    .map_err(|e| err(e.into()))?
    .map_err(|e| err(e.into()))
}

/// Files the crash in the results root's bucket index (shared across runs, file-locked).
/// `local` is the dump's absolute path, so the index records it relative to the results
/// root (`<run-id>/<unit>/dumps/MEMORY.DMP`).
async fn record_bucket(
    ctx: &UnitCtx<'_>,
    sig: &crash_triage::signature::Signature,
    local: &Path,
) -> Result<crash_triage::bucket::BucketUpdate, RunnerError> {
    let bucket_err = |source: lab_error::BoxError| RunnerError::Triage {
        what: "update the crash bucket index in",
        path: ctx.results_root.clone(),
        source,
    };
    let (root, run_id, sig, local, keep) = (
        ctx.results_root.clone(),
        ctx.run_id.clone(),
        sig.clone(),
        local.to_path_buf(),
        ctx.keep_dumps,
    );
    tokio::task::spawn_blocking(move || {
        let rec = crash_triage::bucket::CrashRecord {
            signature: &sig,
            run_id: &run_id,
            dump: Some(&local),
            seen_at: chrono::Utc::now(),
        };
        crash_triage::bucket::BucketIndex::record(&root, &rec, keep)
    })
    .await
    .map_err(|e| bucket_err(e.into()))?
    .map_err(|e| bucket_err(e.into()))
}

#[cfg(test)]
mod tests {
    use lab_backends::EventRecord;

    use super::dump_not_saved;

    fn rec(event_id: u32, message: &str) -> EventRecord {
        EventRecord {
            record_id: u64::from(event_id),
            time_created: Default::default(),
            event_id,
            provider: String::new(),
            level: String::new(),
            message: message.to_owned(),
            data: Default::default(),
        }
    }

    #[test]
    fn only_event_161_means_a_dump_was_lost() {
        // "A dump was not saved." alone is what a VM configured for no dump logs.
        assert_eq!(dump_not_saved(&[rec(1001, "A dump was not saved.")]), None);
        let lost = dump_not_saved(&[
            rec(
                161,
                "Dump file creation failed: No space left on device (os error 28)",
            ),
            rec(1001, "A dump was not saved."),
        ])
        .expect("a lost dump");
        assert!(lost.reason.contains("No space left on device"), "{lost:?}");
    }
}
