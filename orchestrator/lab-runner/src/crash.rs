//! The crash pipeline of one unit: notice that the guest rebooted (boot id changed), turn a
//! hang into a dump with an NMI, wait for the guest to come back, collect the bugcheck events
//! and dump files, and triage them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab_backends::guest::{MEMORY_DMP, MINIDUMP_DIR};
use lab_backends::{Guest, Hypervisor, VmState};

use crate::error::{self, RunnerError};
use crate::events::{ArtifactKind, Bucket, BugcheckInfo, Crash, CrashKind, Event};
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

/// Waits until the guest answers again, powering a halted VM back on (a bugcheck with
/// AutoReboot off leaves it down), and returns the new boot id.
async fn wait_back(ctx: &UnitCtx<'_>) -> Result<String, RunnerError> {
    let deadline = Instant::now() + ctx.boot_timeout;
    loop {
        let state = ctx
            .hv
            .state(ctx.vm)
            .await
            .map_err(RunnerError::lab(format!("read the state of {}", ctx.vm)))?;
        if state == VmState::Off {
            ctx.hv
                .start(ctx.vm)
                .await
                .map_err(RunnerError::lab(format!("start {}", ctx.vm)))?;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match ctx
            .hv
            .wait_ready(ctx.vm, left.max(Duration::from_millis(50)))
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
    collect(ctx, CrashKind::Hang, Some(step.to_owned()))
        .await
        .map_err(RunnerError::Observed)
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
) -> Result<Crash, String> {
    let mut crash = Crash {
        kind,
        step,
        bugcheck: None,
        dumps: Vec::new(),
        bucket: None,
        triage_error: None,
    };
    let before = ctx.boot_id.lock().expect("boot id lock").clone();
    let after = match wait_back(ctx).await {
        Ok(id) => {
            *ctx.boot_id.lock().expect("boot id lock") = id.clone();
            id
        }
        Err(e) => return Err(verdict::did_not_come_back(&before, &error::text(&e))),
    };
    let since = *ctx.event_mark.lock().expect("event mark lock");
    let event_ids = match ctx.guest.events(since).await {
        Ok(records) => {
            if let Some(last) = records.iter().map(|r| r.record).max() {
                *ctx.event_mark.lock().expect("event mark lock") = last;
            }
            if let Some(bc) = records.iter().rev().find_map(|r| r.bugcheck()) {
                crash.bugcheck = Some(BugcheckInfo {
                    code: bc.code,
                    name: crash_triage::codes::bugcheck_name(bc.code).map(str::to_owned),
                    params: bc.params,
                    module: None,
                    symbol: None,
                });
            }
            let rel = ctx.unit_rel.join("system-events.json");
            let body = serde_json::to_vec_pretty(&records).unwrap_or_default();
            if crate::results::atomic_write(&ctx.unit_dir.join("system-events.json"), &body).is_ok()
            {
                artifact(ctx, ArtifactKind::EventLog, rel);
            }
            Ok(records.iter().map(|r| r.event_id).collect())
        }
        Err(e) => {
            tracing::warn!(vm = ctx.vm, error = %e, "could not read the System event log");
            Err(e.to_string())
        }
    };
    let dumps = collect_dumps(ctx).await;
    for (local, rel) in dumps {
        // Only the first dump is triaged and bucketed: a small dump beside MEMORY.DMP is
        // the same crash.
        if crash.bucket.is_some() || crash.triage_error.is_some() {
            artifact(ctx, ArtifactKind::Dump, rel.clone());
            crash.dumps.push(rel);
            continue;
        }
        match triage(&local).await {
            Ok(t) => {
                let sig = crash_triage::signature::signature(&t, None);
                crash.bugcheck = Some(BugcheckInfo {
                    code: t.bugcheck.code,
                    name: t.bugcheck.name.clone(),
                    params: t.bugcheck.params,
                    module: t.faulting_module.as_ref().map(|m| m.name.clone()),
                    symbol: sig.symbol.clone(),
                });
                match record_bucket(ctx, &sig, &rel).await {
                    Ok(rec) => {
                        crash.bucket = Some(Bucket {
                            id: rec.bucket_id,
                            title: rec.title,
                            new: rec.is_new,
                        });
                        if !rec.keep_dump {
                            // Past the first few of a bucket only the count is kept.
                            let _ = std::fs::remove_file(&local);
                            continue;
                        }
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
        return Err(verdict::restart_without_evidence(&verdict::RestartSeen {
            before: &before,
            after: &after,
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

fn artifact(ctx: &UnitCtx<'_>, kind: ArtifactKind, path: PathBuf) {
    let _ = ctx.events.send(Event::ArtifactCollected {
        unit: Some(ctx.unit.clone()),
        vm: ctx.vm.to_owned(),
        kind,
        path,
    });
}

/// Downloads `MEMORY.DMP` and `Minidump\*.dmp` into the unit folder and removes them from
/// the guest, so the next crash on this VM is not mistaken for this one.
async fn collect_dumps(ctx: &UnitCtx<'_>) -> Vec<(PathBuf, PathBuf)> {
    let mut remote = Vec::new();
    if let Ok(Some(_)) = ctx.guest.stat(MEMORY_DMP).await {
        remote.push((MEMORY_DMP.to_owned(), "MEMORY.DMP".to_owned()));
    }
    if let Ok(entries) = ctx.guest.list_dir(MINIDUMP_DIR).await {
        for e in entries.into_iter().filter(|e| !e.is_dir) {
            remote.push((format!("{MINIDUMP_DIR}\\{}", e.name), e.name));
        }
    }
    let dir = ctx.unit_dir.join("dumps");
    let mut out = Vec::new();
    if remote.is_empty() || std::fs::create_dir_all(&dir).is_err() {
        return out;
    }
    for (path, name) in remote {
        let name = crate::results::safe_name(&name);
        let local = dir.join(&name);
        match ctx.guest.download(&path, &local).await {
            Ok(_) => {
                let _ = ctx.guest.remove(&path).await;
                out.push((local, ctx.unit_rel.join("dumps").join(name)));
            }
            Err(e) => tracing::warn!(vm = ctx.vm, dump = %path, error = %e, "dump not collected"),
        }
    }
    out
}

/// Triage on a blocking thread: the dump parser is synchronous and not `Send`.
async fn triage(path: &Path) -> Result<crash_triage::Triage, RunnerError> {
    let p = path.to_owned();
    let err = |source: lab_error::BoxError| RunnerError::Triage {
        what: "triage",
        path: path.to_owned(),
        source,
    };
    tokio::task::spawn_blocking(move || crash_triage::triage_file(&p))
        .await
        .map_err(|e| err(e.into()))?
        .map_err(|e| err(e.into()))
}

/// Files the crash in the results root's bucket index (shared across runs, file-locked).
async fn record_bucket(
    ctx: &UnitCtx<'_>,
    sig: &crash_triage::signature::Signature,
    rel: &Path,
) -> Result<crash_triage::bucket::Recorded, RunnerError> {
    let bucket_err = |source: lab_error::BoxError| RunnerError::Triage {
        what: "update the crash bucket index in",
        path: ctx.results_root.clone(),
        source,
    };
    let (root, run_id, sig, rel) = (
        ctx.results_root.clone(),
        ctx.run_id.clone(),
        sig.clone(),
        rel.to_path_buf(),
    );
    tokio::task::spawn_blocking(move || {
        let rec = crash_triage::bucket::CrashRecord {
            signature: &sig,
            run_id: &run_id,
            dump: Some(&rel),
            seen_at: chrono::Utc::now(),
        };
        crash_triage::bucket::BucketIndex::record(
            &root,
            &rec,
            crash_triage::bucket::DEFAULT_KEEP_DUMPS,
        )
    })
    .await
    .map_err(|e| bucket_err(e.into()))?
    .map_err(|e| bucket_err(e.into()))
}
