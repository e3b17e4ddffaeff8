//! VM workers: each owns one VM at a time, provisions and deploys it once, then runs units
//! from the shared queue on it, restoring the `deployed` checkpoint before each. Workers
//! prefer units of their VM's template so VMs are reused, and remove their VM at the end,
//! also when cancelled.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab_backends::{
    AnyHypervisor, BackendFacts, CrashControl, DEPLOYED_CHECKPOINT, Guest, GuestSettings,
    Hypervisor, Verifier, VmSpec,
};
use lab_config::{GuestConfig, Plan, VerifierFlags};
use tokio_util::sync::CancellationToken;

use crate::deploy::LocalFile;
use crate::error::RunnerError;
use crate::events::{Event, UnitId, UnitOutcome};
use crate::exec::EventTx;
use crate::results::RunDir;
use crate::unit::{UnitEnv, UnitPlan, run_unit};

/// What every worker shares.
#[derive(Debug)]
pub struct Shared {
    pub plan: Arc<Plan>,
    pub hv: AnyHypervisor,
    pub run_dir: RunDir,
    pub events: EventTx,
    pub cancel: CancellationToken,
    /// Where the next unit comes from: the plan's fixed list for `hvlab run`, a source that
    /// decides from earlier results for `hvlab repro`.
    pub queue: Mutex<Box<dyn UnitSource>>,
    /// Resolved files per payload name.
    pub files: std::collections::HashMap<String, Vec<LocalFile>>,
    /// Every VM created by this run and not yet removed (shared with the dispatcher for
    /// force teardown, which must not hold `events` or the channel would never close).
    pub vms: Arc<Mutex<BTreeSet<String>>>,
    pub vm_counter: std::sync::atomic::AtomicU32,
    /// `--keep-dumps`: how many dumps a crash bucket keeps across runs.
    pub keep_dumps: crash_triage::KeepDumps,
    /// Test retries and fail-fast.
    pub policy: crate::run::RunPolicy,
    /// Set by `--fail-fast` after a unit failed: no worker takes another unit (those never
    /// started are reported cancelled by the dispatcher).
    pub stop: std::sync::atomic::AtomicBool,
}

/// Hands units to workers. `hvlab run` uses the plan's fixed list (`VecDeque`); repro mode
/// plugs in a source that picks each next iteration (its seed, hence its timing) from the
/// results so far and says when to stop.
pub trait UnitSource: Send + std::fmt::Debug {
    /// The next unit, preferring one of `template` (the worker's VM, so it is reused);
    /// `None` ends the asking worker.
    fn next(&mut self, template: Option<&str>) -> Option<UnitPlan>;

    /// A unit ended. Called by its worker before the `UnitFinished` event is sent, so the
    /// next `next` (on any worker) already knows the outcome.
    fn finished(&mut self, _unit: &UnitPlan, _outcome: &UnitOutcome) {}

    /// The units known before the run starts (`RunStarted.units`; those never finished are
    /// reported cancelled at the end). Empty for a source that decides as it goes.
    fn planned(&self) -> Vec<UnitId>;
}

impl UnitSource for VecDeque<UnitPlan> {
    fn next(&mut self, template: Option<&str>) -> Option<UnitPlan> {
        if let Some(t) = template
            && let Some(pos) = self.iter().position(|u| u.id.template == t)
        {
            return self.remove(pos);
        }
        self.pop_front()
    }

    fn planned(&self) -> Vec<UnitId> {
        self.iter().map(|u| u.id.clone()).collect()
    }
}

/// The VM a worker holds.
struct Held {
    name: String,
    template: String,
    payload: Option<String>,
    boot_timeout: Duration,
}

/// The guest settings a template asks for, as the backends take them (what a worker
/// applies before the first deploy; the Hyper-V dry run prints the same).
pub fn guest_settings(g: &GuestConfig) -> GuestSettings {
    GuestSettings {
        test_signing: g.test_signing,
        // A test lab always wants the dump kept and NMIs to produce one.
        crash_control: CrashControl {
            dump_kind: g.crash_dump,
            auto_reboot: g.auto_reboot,
            ..CrashControl::LAB
        },
        verifier: g
            .verifier
            .as_ref()
            .map(|v| Verifier {
                drivers: v.drivers.clone(),
                flags: match v.flags {
                    VerifierFlags::Standard => Verifier::STANDARD,
                    VerifierFlags::Mask(m) => m,
                },
            })
            .unwrap_or_default(),
    }
}

/// Runs units from the queue until it is empty or the run is cancelled.
pub async fn worker(shared: Arc<Shared>) {
    let mut held: Option<Held> = None;
    while !shared.cancel.is_cancelled() {
        // A lab that lost a host has fewer VM slots than workers: the extra ones stop
        // rather than take a unit they could only error.
        if held.is_none() && !crate::hosts::has_room(&shared.hv) {
            break;
        }
        let Some(unit) = next_unit(&shared, held.as_ref().map(|h| h.template.as_str())) else {
            break;
        };
        let mut attempt = 1;
        let scenario = &shared.plan.scenarios[unit.scenario];
        let mut infra_left = shared.plan.lab.infra_retries;
        let mut test_left = shared.policy.retries_for(scenario);
        let (outcome, junit, vm, started) = loop {
            // Reset by run_one once the VM is ready, so a unit's time excludes provisioning.
            let mut started = Instant::now();
            let (outcome, junit, vm) =
                run_one(&shared, &mut held, &unit, attempt, &mut started).await;
            let retry = match &outcome {
                UnitOutcome::Errored { .. } => {
                    // The VM may be what broke: no later unit (or retry) runs on it.
                    if let Some(h) = held.take() {
                        remove_vm(&shared, &h.name).await;
                    }
                    // No slot left (a host was lost): a retry could only fail to place
                    // its VM.
                    crate::hosts::has_room(&shared.hv) && take_one(&mut infra_left)
                }
                // A crash is evidence, not bad luck: only `--retries` may retry it.
                UnitOutcome::Failed { crash, .. } => {
                    (crash.is_none() || shared.policy.retries_crashes()) && take_one(&mut test_left)
                }
                _ => false,
            };
            if !retry || shared.cancel.is_cancelled() {
                break (outcome, junit, vm, started);
            }
            let _ = shared.events.send(Event::UnitRetried {
                unit: unit.id.clone(),
                vm,
                attempt,
                outcome,
                duration: started.elapsed(),
            });
            attempt += 1;
        };
        if shared.policy.fail_fast
            && matches!(
                outcome,
                UnitOutcome::Failed { .. } | UnitOutcome::Errored { .. }
            )
        {
            shared.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        shared
            .queue
            .lock()
            .expect("queue lock")
            .finished(&unit, &outcome);
        let _ = shared.events.send(Event::UnitFinished {
            unit: unit.id.clone(),
            vm,
            seed: unit.seed,
            outcome,
            duration: started.elapsed(),
            guest_junit: junit,
        });
    }
    if let Some(h) = held {
        remove_vm(&shared, &h.name).await;
    }
}

/// Uses one retry of a budget, if any is left.
fn take_one(left: &mut u32) -> bool {
    let ok = *left > 0;
    *left = left.saturating_sub(1);
    ok
}

fn next_unit(shared: &Shared, template: Option<&str>) -> Option<UnitPlan> {
    if shared.stop.load(std::sync::atomic::Ordering::SeqCst) {
        return None;
    }
    shared.queue.lock().expect("queue lock").next(template)
}

/// Runs one attempt of `unit` (1-based `attempt`; a retry gets its own results folder so
/// the errored attempt's files are kept, not overwritten).
async fn run_one(
    shared: &Shared,
    held: &mut Option<Held>,
    unit: &UnitPlan,
    attempt: u32,
    started: &mut Instant,
) -> (UnitOutcome, Vec<std::path::PathBuf>, String) {
    let scenario = &shared.plan.scenarios[unit.scenario];
    let payload = &scenario.payload;
    // A VM of another template is replaced, and so is one deployed with another payload:
    // that payload's drivers are running, their images in use (a redeploy fails with 32).
    if held.as_ref().is_some_and(|h| {
        h.template != unit.id.template || h.payload.as_ref().is_some_and(|p| *p != payload.name)
    }) {
        let h = held.take().expect("held VM");
        remove_vm(shared, &h.name).await;
    }
    // A new VM's console is all this unit's (its boots included); a reused one's from here.
    let new_vm = held.is_none();
    if held.is_none() {
        match provision(shared, &unit.id.template).await {
            Ok(h) => *held = Some(h),
            Err(e) => return (UnitOutcome::errored(&e), vec![], String::new()),
        }
    }
    let h = held.as_mut().expect("held VM");
    let vm = h.name.clone();
    let console_from = if new_vm {
        Some(0)
    } else {
        crate::console::mark(&shared.hv, &vm).await
    };
    let files = &shared.files[&payload.name];
    let fresh = h.payload.as_deref() != Some(payload.name.as_str());
    if fresh {
        if let Err(e) = deploy_payload(shared, h, payload, files).await {
            return (UnitOutcome::errored(&e), vec![], vm);
        }
        *started = Instant::now();
    } else {
        // The restore is part of the unit (every unit pays it); provisioning is not.
        *started = Instant::now();
        if let Err(e) = shared.hv.restore(&vm, DEPLOYED_CHECKPOINT).await {
            let e = RunnerError::lab(format!("restore the deployed checkpoint of {vm}"))(e);
            return (UnitOutcome::errored(&e), vec![], vm);
        }
    }
    let _ = shared.events.send(Event::UnitStarted {
        unit: unit.id.clone(),
        vm: vm.clone(),
        seed: unit.seed,
    });
    let guest = match shared.hv.guest(&vm) {
        Ok(g) => g,
        Err(e) => return (UnitOutcome::errored(&e), vec![], vm),
    };
    let unit_rel = attempt_rel(RunDir::unit_rel(&unit.id), attempt);
    let unit_dir = match attempt_dir(&shared.run_dir, &unit.id, attempt) {
        Ok(d) => d,
        Err(e) => return (UnitOutcome::errored(&e), vec![], vm),
    };
    let env = UnitEnv {
        hv: &shared.hv,
        vm: &vm,
        guest,
        scenario,
        payload,
        files,
        events: &shared.events,
        cancel: &shared.cancel,
        unit_dir,
        unit_rel,
        boot_timeout: h.boot_timeout,
        results_root: shared
            .run_dir
            .path()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
        run_id: shared.run_dir.id().as_str().to_owned(),
        keep_dumps: shared.keep_dumps,
        debugger: shared.plan.lab.debugger.as_ref(),
    };
    let (unit_dir, unit_rel) = (env.unit_dir.clone(), env.unit_rel.clone());
    let (outcome, junit) = run_unit(env, unit).await;
    if let Some(from) = console_from {
        let (hv, ev) = (&shared.hv, &shared.events);
        crate::console::keep(hv, ev, &unit.id, &vm, from, &unit_dir, &unit_rel).await;
    }
    (outcome, junit, vm)
}

/// Where attempt `attempt` of a unit keeps its files, relative to the run directory: the
/// unit's folder for the first, `attempt-<n>/` inside it for a retry.
fn attempt_rel(unit_rel: std::path::PathBuf, attempt: u32) -> std::path::PathBuf {
    if attempt <= 1 {
        unit_rel
    } else {
        unit_rel.join(format!("attempt-{attempt}"))
    }
}

fn attempt_dir(
    run_dir: &RunDir,
    unit: &UnitId,
    attempt: u32,
) -> Result<std::path::PathBuf, crate::results::ResultsError> {
    let first = run_dir.unit_dir(unit)?;
    if attempt <= 1 {
        return Ok(first);
    }
    let dir = run_dir
        .path()
        .join(attempt_rel(RunDir::unit_rel(unit), attempt));
    std::fs::create_dir_all(&dir).map_err(|source| crate::results::ResultsError::CreateRunDir {
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// Creates, boots and configures a VM of `template` (test signing, CrashControl, verifier,
/// then a reboot so they take effect), and takes no checkpoint yet.
async fn provision(shared: &Shared, template: &str) -> Result<Held, RunnerError> {
    let facts = shared
        .plan
        .lab
        .backend
        .template(template)
        .ok_or_else(|| RunnerError::Observed(format!("find template {template} in the lab")))?;
    let n = shared
        .vm_counter
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!(
        "hvlab-{}-{}-{n}",
        shared.run_dir.id().as_str(),
        crate::results::safe_name(template)
    );
    let settings = guest_settings(&facts.guest);
    let spec = VmSpec {
        name: name.clone(),
        run_id: shared.run_dir.id().as_str().to_owned(),
        template: template.to_owned(),
        vcpus: facts.vcpus,
        memory_mb: facts.memory_mb,
        boot_delay: facts.boot_delay,
        guest: settings.clone(),
    };
    let _ = shared.events.send(Event::VmProvisioning {
        vm: name.clone(),
        template: template.to_owned(),
    });
    let started = Instant::now();
    shared
        .hv
        .create(&spec)
        .await
        .map_err(RunnerError::lab(format!("create VM {name}")))?;
    shared.vms.lock().expect("vm set lock").insert(name.clone());
    let ctx = |what: &str, e| RunnerError::lab(format!("{what} {name}"))(e);
    shared.hv.start(&name).await.map_err(|e| ctx("start", e))?;
    let first_boot = shared
        .hv
        .wait_ready(&name, facts.boot_timeout)
        .await
        .map_err(|e| ctx("boot", e))?;
    let guest = shared.hv.guest(&name).map_err(|e| ctx("connect to", e))?;
    guest
        .set_test_signing(settings.test_signing)
        .await
        .map_err(|e| ctx("configure test signing on", e))?;
    guest
        .set_crash_control(&settings.crash_control)
        .await
        .map_err(|e| ctx("configure CrashControl on", e))?;
    guest
        .set_verifier(&settings.verifier)
        .await
        .map_err(|e| ctx("configure Driver Verifier on", e))?;
    // BCD and verifier settings apply at the next boot, as on Windows.
    guest.reboot().await.map_err(|e| ctx("reboot", e))?;
    let deadline = Instant::now() + facts.boot_timeout;
    let boot_id = loop {
        if let Ok(id) = shared
            .hv
            .wait_ready(&name, Duration::from_millis(200))
            .await
            && id != first_boot
        {
            break id;
        }
        if Instant::now() >= deadline {
            return Err(RunnerError::Observed(format!(
                "bring {name} back from its configuration reboot"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let _ = shared.events.send(Event::VmReady {
        vm: name.clone(),
        boot_id,
        elapsed: started.elapsed(),
    });
    Ok(Held {
        name,
        template: template.to_owned(),
        payload: None,
        boot_timeout: facts.boot_timeout,
    })
}

async fn deploy_payload(
    shared: &Shared,
    h: &mut Held,
    payload: &lab_config::Payload,
    files: &[LocalFile],
) -> Result<(), RunnerError> {
    let started = Instant::now();
    let guest = shared
        .hv
        .guest(&h.name)
        .map_err(RunnerError::lab(format!("connect to {}", h.name)))?;
    crate::deploy::deploy(&guest, payload, files).await?;
    shared
        .hv
        .checkpoint(&h.name, DEPLOYED_CHECKPOINT)
        .await
        .map_err(RunnerError::lab(format!("checkpoint {}", h.name)))?;
    h.payload = Some(payload.name.clone());
    let _ = shared.events.send(Event::VmDeployed {
        vm: h.name.clone(),
        elapsed: started.elapsed(),
    });
    Ok(())
}

/// Removes a VM, reporting what could not be removed.
pub async fn remove_vm(shared: &Shared, name: &str) {
    let _ = shared.events.send(
        delete_vm(
            &shared.hv,
            &shared.vms,
            name,
            &crate::hosts::gc_hint(&shared.plan),
        )
        .await,
    );
}

/// Deletes a VM and says how it went: removed, or left over with how to remove it.
pub async fn delete_vm(
    hv: &AnyHypervisor,
    vms: &Mutex<BTreeSet<String>>,
    name: &str,
    how_to_remove: &str,
) -> Event {
    match hv.delete(name).await {
        Ok(()) => {
            vms.lock().expect("vm set lock").remove(name);
            Event::VmRemoved {
                vm: name.to_owned(),
            }
        }
        Err(e) => Event::Leftover {
            what: format!("VM {name} ({})", lab_error::Chain(&e)),
            how_to_remove: how_to_remove.to_owned(),
        },
    }
}
