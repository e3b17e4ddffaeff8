//! The CLI's side of a lab backend: simulated guests run as this executable, the backend
//! itself comes from `lab_backends::connect`; and the `--dry-run` plan of a Hyper-V run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lab_backends::AnyHypervisor;
use lab_backends::connect::hyperv_config;
use lab_backends::hyperv::dry_run;
use lab_backends::sim::{GuestLauncher, SimHypervisor};
use lab_backends::{ServiceSpec, VmSpec};
use lab_config::{Lab, LabBackend, Plan};

use crate::error::CliError;
use crate::settings::EnvSettings;

/// The hidden verb a simulated VM runs (`hvlab __sim-guest --disk DIR`).
pub const GUEST_VERB: &str = "__sim-guest";

/// How simulated VMs are started: as this very executable, running the hidden guest verb.
pub fn launcher() -> Result<GuestLauncher, CliError> {
    let exe = std::env::current_exe().map_err(|source| CliError::Io {
        action: "find the hvlab executable to start simulated guests".into(),
        source,
    })?;
    Ok(GuestLauncher {
        program: exe,
        args: vec![GUEST_VERB.into()],
    })
}

/// The simulated hypervisor (state under the resolved sim root).
pub fn sim(env: &EnvSettings) -> Result<SimHypervisor, CliError> {
    Ok(lab_backends::connect::sim(&env.lab, launcher()?))
}

/// The backend for `lab`, built by the backends crate from the lab and the settings.
pub fn connect(lab: &Lab, env: &EnvSettings) -> Result<AnyHypervisor, CliError> {
    Ok(lab_backends::connect(lab, &env.lab, launcher()?)?)
}

/// `hvlab run --dry-run`: every script the run would send to its Hyper-V hosts, for one VM
/// per template the selected scenarios use, without contacting a host or reading a secret.
pub fn dry_run(plan: &Plan) -> Result<String, CliError> {
    let LabBackend::HyperV(hv) = &plan.lab.backend else {
        return Ok(format!(
            "# lab `{}` is the simulated lab: it runs no host scripts\n",
            plan.lab.name
        ));
    };
    let mut out = String::new();
    let mut templates: Vec<&str> = Vec::new();
    for m in plan.matrix() {
        if !templates.contains(&m.template) {
            templates.push(m.template);
        }
    }
    for payload in &plan.payloads {
        let build = payload.build_dir().ok();
        let deploy = dry_run::DeployPlan {
            files: payload
                .files
                .iter()
                .map(|f| {
                    let local = match &build {
                        Some(b) => b.join(&f.source),
                        // Shipped with the manifest (`relative_to: manifest`): already absolute.
                        None if Path::new(&f.source).is_absolute() => PathBuf::from(&f.source),
                        None => {
                            PathBuf::from(format!("{}/{}", payload.build_dir_template, f.source))
                        }
                    };
                    (local, f.destination.clone())
                })
                .collect(),
            services: payload
                .drivers_in_install_order()
                .map(|d| ServiceSpec {
                    name: d.service.clone(),
                    binary_path: payload.files[d.file].destination.clone(),
                    start_type: d.start,
                    depends_on: d.depends_on.clone(),
                })
                .collect(),
        };
        let specs: Vec<VmSpec> = templates
            .iter()
            .filter(|t| {
                plan.scenarios
                    .iter()
                    .any(|s| s.payload.name == payload.name && s.vms.iter().any(|v| v == *t))
            })
            .filter_map(|t| hv.templates.iter().find(|x| x.name == *t))
            .map(|t| VmSpec {
                name: format!("hvlab-dry-run-{}-0", t.name),
                run_id: "dry-run".into(),
                template: t.name.clone(),
                vcpus: t.vcpus,
                memory_mb: t.memory_bytes / (1024 * 1024),
                boot_delay: Duration::ZERO,
                guest: lab_runner::worker::guest_settings(&t.guest),
            })
            .collect();
        let units: Vec<dry_run::PlannedUnit> = plan
            .matrix()
            .into_iter()
            .filter(|m| m.scenario.payload.name == payload.name)
            .map(|m| dry_run::PlannedUnit {
                id: format!("{}@{}#{}", m.scenario.name, m.template, m.iteration + 1),
                template: m.template.to_owned(),
                steps: planned_steps(m.scenario, m.template, m.iteration + 1),
            })
            .collect();
        let rt = crate::runtime(false)?;
        let config = hyperv_config(hv, false);
        let mut ops = rt
            .block_on(dry_run::plan(config.clone(), &specs, &deploy, &units))
            .map_err(|e| CliError::infra("plan the run", e))?;
        if let Some(d) = &plan.lab.debugger {
            // The driver images go first on the debugger's symbol path (a PDB beside one
            // goes too, when the build has it).
            let drivers: Vec<PathBuf> = deploy
                .files
                .iter()
                .filter(|(_, dest)| {
                    payload
                        .drivers
                        .iter()
                        .any(|d| d.binary.eq_ignore_ascii_case(dest))
                })
                .map(|(local, _)| local.clone())
                .collect();
            for spec in &specs {
                let host = ops.iter().find(|o| o.vm == spec.name && !o.host.is_empty());
                let host = host.map(|o| o.host.clone()).unwrap_or_default();
                ops.extend(dry_run::crash_analysis(
                    &config,
                    &host,
                    &spec.name,
                    &d.path,
                    d.symbol_path.as_deref(),
                    &drivers,
                ));
            }
        }
        out.push_str(&format!(
            "# hvlab dry run: lab `{}`, payload `{}`, {} VM(s); no host was contacted and no secret was read\n",
            plan.lab.name,
            payload.name,
            specs.len()
        ));
        out.push_str(&dry_run::render(&ops));
    }
    Ok(out)
}

/// The setup and scenario steps of one unit, as guest actions. `{seed}` shows as 0: the
/// run derives it from the run seed.
fn planned_steps(
    scenario: &lab_config::Scenario,
    template: &str,
    iteration: u32,
) -> Vec<dry_run::PlannedStep> {
    let ctx = lab_config::InvocationContext {
        seed: 0,
        iteration: iteration.saturating_sub(1),
        vm: template,
        scenario: &scenario.name,
    };
    let mut out = Vec::new();
    for (part, steps) in [("setup", &scenario.setup), ("steps", &scenario.steps)] {
        for (i, step) in steps.iter().enumerate() {
            let path = format!("{part}[{i}]");
            step_actions(scenario, step, &ctx, &path, true, &mut out);
        }
    }
    out
}

fn step_actions(
    scenario: &lab_config::Scenario,
    step: &lab_config::Step,
    ctx: &lab_config::InvocationContext<'_>,
    path: &str,
    top_level: bool,
    out: &mut Vec<dry_run::PlannedStep>,
) {
    use dry_run::GuestAction as A;
    use lab_config::StepKind as K;
    let nested = |kind: &str, steps: &[lab_config::Step], out: &mut Vec<_>| {
        for (i, s) in steps.iter().enumerate() {
            step_actions(scenario, s, ctx, &format!("{path}.{kind}[{i}]"), false, out);
        }
    };
    let note = |n: String| vec![A::Note(n)];
    let actions = match &step.kind {
        K::DriverStart(o) => vec![A::ServiceStart(o.driver.service.clone())],
        K::DriverStop(o) => vec![A::ServiceStop(o.driver.service.clone())],
        K::DriverRestart(o) => vec![
            A::ServiceStop(o.driver.service.clone()),
            A::ServiceStart(o.driver.service.clone()),
        ],
        K::DriverWait(o) => vec![A::ServiceQuery(o.driver.service.clone())],
        K::Run(r) => {
            let tool = &scenario.payload.tools[r.tool.index];
            let mut v = match r.argv(&scenario.payload, ctx) {
                Ok(argv) => vec![A::Exec {
                    argv,
                    timeout: r.timeout,
                }],
                Err(e) => note(format!(
                    "run {}: its command cannot be rendered: {e}",
                    tool.name
                )),
            };
            if let Some(junit) = &tool.result.junit {
                v.push(A::Note(format!(
                    "then the tool's JUnit report {junit} is copied back (guest -> host -> here)"
                )));
            }
            v
        }
        K::Exec(e) => match e.argv(ctx) {
            Ok(argv) => vec![A::Exec {
                argv,
                timeout: e.timeout,
            }],
            Err(err) => note(format!("exec: its command cannot be rendered: {err}")),
        },
        K::Checkpoint { name } => vec![A::Checkpoint(name.clone())],
        K::Parallel(steps) | K::Sequence(steps) => {
            out.push(dry_run::PlannedStep {
                path: path.to_owned(),
                label: step.display_name(),
                actions: vec![],
                top_level,
            });
            let kind = if matches!(step.kind, K::Parallel(_)) {
                "parallel"
            } else {
                "sequence"
            };
            nested(kind, steps, out);
            return;
        }
        K::Repeat { steps, .. } => {
            out.push(dry_run::PlannedStep {
                path: path.to_owned(),
                label: step.display_name(),
                actions: vec![A::Note(
                    "each round runs the steps below (shown once)".into(),
                )],
                top_level,
            });
            nested("steps", steps, out);
            return;
        }
        K::Deploy => note("deploy: already done when the VM was provisioned".into()),
        K::Sleep(_) => note("sleeps here; nothing is sent to the host".into()),
        K::ExpectBugcheck { .. } | K::ExpectNoBugcheck => {
            note("judges the crash (if any) the runner noticed by the boot id".into())
        }
        other => note(format!(
            "{}: the dry run does not list this step's operations",
            other.describe()
        )),
    };
    out.push(dry_run::PlannedStep {
        path: path.to_owned(),
        label: step.display_name(),
        actions,
        top_level,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped example lab, planned as `hvlab run --dry-run` would: every host
    /// operation, no secret read (the variables are unset here), nothing contacted.
    #[test]
    fn dry_run_of_the_example_lab_prints_every_host_script() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let lab = root.join("vm-configs/hyperv-example.yaml");
        let plan = crate::commands::run::select_plan(&root, &lab, &[], &["windows".into()])
            .expect("the example lab and the windows scenarios validate");
        let text = dry_run(&plan).unwrap();
        for needle in [
            "New-VHD -Path $vhd -ParentPath $P.BaseVhdx -Differencing",
            r"'BaseVhdx' = 'D:\hvlab\base\ws2022-testsigning.vhdx'",
            "Set-VMFirmware -VM $vm -EnableSecureBoot",
            "Invoke-Command -VMName $H.VmName",
            "'Password' = '<secret env:HVLAB_GUEST_PASSWORD: not read in a dry run>'",
            "'Arguments' = '/set {current} testsigning on'",
            "Copy-VMFile -VM $vm",
            "Checkpoint-VM -VM $vm -SnapshotName $P.Checkpoint",
            "Restore-VMSnapshot",
            "Remove-VM -VM $vm -Force",
            r"f0 <- ",
            // After a crash: the lab's debugger runs `!analyze -v` on the host.
            "host.debugger_analyze on host",
            r"'Debugger' = 'C:\Program Files (x86)\Windows Kits\10\Debuggers\x64\kd.exe'",
            r"\.hvlab-staging\",
            r"-analyze\symbols;srv*C:\symbols*https://msdl.microsoft.com/download/symbols -c",
            r#"-c "!analyze -v; q""#,
        ] {
            assert!(text.contains(needle), "missing {needle:?} in the plan");
        }
        assert!(text.starts_with("# hvlab dry run: lab `hyperv-example`"));
        // Which unit runs where, each step with what it sends, and the counts at the end.
        assert!(text.contains(" unit(s):\n#   '"), "{text}");
        assert!(text.contains("# ==== step 'steps[0] "), "{text}");
        assert!(text.contains(" operation(s):\n#   "), "{text}");
        assert!(!text.contains(".tmp"), "no temp path in the plan");
    }
}
