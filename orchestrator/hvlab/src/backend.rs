//! Turns a validated lab into a hypervisor backend: the simulated lab, or Hyper-V hosts
//! reached locally, over WinRM or over SSH; and the `--dry-run` plan of a Hyper-V run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lab_backends::AnyHypervisor;
use lab_backends::hyperv::{
    AnyPsHost, CheckpointKind, GuestAccess, GuestAccessKind, HostConfig, HyperV, HyperVConfig,
    LocalPowerShell, RemotePowerShell, TemplateConfig, Timing, dry_run,
};
use lab_backends::sim::{GuestLauncher, SimHypervisor};
use lab_backends::{ServiceSpec, VmSpec};
use lab_config::{
    CheckpointType, Connection, GuestTransportKind, HyperVLab, Lab, LabBackend, Plan,
};
use lab_transport::{
    AnyTransport, HostKeyPolicy, RemoteOs, SshAuth, SshConfig, SshTransport, TlsVerify, WinrmAuth,
    WinrmScheme, WinrmSettings, WinrmTransport,
};

use crate::error::CliError;
use crate::settings::EnvSettings;

/// The hidden verb a simulated VM runs (`hvlab __sim-guest --disk DIR`).
pub const GUEST_VERB: &str = "__sim-guest";

/// The simulated hypervisor (state under `env.sim_root`), launching guests as this very
/// executable.
pub fn sim(env: &EnvSettings) -> Result<SimHypervisor, CliError> {
    let exe = std::env::current_exe().map_err(|source| CliError::Io {
        action: "find the hvlab executable to start simulated guests".into(),
        source,
    })?;
    Ok(SimHypervisor::new(
        env.sim_root.clone(),
        GuestLauncher {
            program: exe,
            args: vec![GUEST_VERB.into()],
        },
    ))
}

/// A backend for `lab`. Hyper-V host credentials are read here, at connect time.
pub fn connect(lab: &Lab, env: &EnvSettings) -> Result<AnyHypervisor, CliError> {
    match &lab.backend {
        LabBackend::Sim(_) => Ok(AnyHypervisor::Sim(sim(env)?)),
        LabBackend::HyperV(hv) => {
            let config = hyperv_config(hv, true);
            let hosts = hv
                .hosts
                .iter()
                .map(|h| connect_host(h, env).map(Arc::new))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(AnyHypervisor::HyperV(HyperV::new(config, hosts)))
        }
    }
}

fn secret(r: &lab_config::SecretRef) -> lab_transport::SecretRef {
    match r {
        lab_config::SecretRef::Env(v) => lab_transport::SecretRef::Env(v.clone()),
        lab_config::SecretRef::File(p) => lab_transport::SecretRef::File(p.clone()),
    }
}

fn connect_host(h: &lab_config::Host, env: &EnvSettings) -> Result<AnyPsHost, CliError> {
    let infra =
        |what: String| CliError::infra_msg(format!("connect to Hyper-V host {}: {what}", h.name));
    let address = || {
        h.address
            .clone()
            .ok_or_else(|| infra("the lab gives no address".into()))
    };
    match &h.connection {
        Connection::Local => Ok(AnyPsHost::Local(LocalPowerShell::default())),
        Connection::WinRm {
            port,
            https,
            cert_sha256,
            credentials,
        } => {
            let password = credentials
                .password
                .as_ref()
                .map(secret)
                .ok_or_else(|| infra("WinRM needs a password reference".into()))?;
            let (domain, user) = match credentials.user.split_once('\\') {
                Some((d, u)) => (d.to_owned(), u.to_owned()),
                None => (String::new(), credentials.user.clone()),
            };
            let scheme = match (https, cert_sha256) {
                (false, _) => WinrmScheme::Http,
                (true, Some(pin)) => WinrmScheme::Https(TlsVerify::PinnedSha256(pin.clone())),
                (true, None) => WinrmScheme::Https(TlsVerify::PublicRoots),
            };
            let auth = WinrmAuth::Ntlm {
                user,
                domain,
                password,
            };
            let settings = WinrmSettings::new(address()?, scheme, auth).port(*port);
            let t = WinrmTransport::new(settings)
                .map_err(|e| CliError::infra(format!("connect to Hyper-V host {}", h.name), e))?;
            Ok(AnyPsHost::Remote(RemotePowerShell::new(
                AnyTransport::Winrm(t),
            )))
        }
        Connection::Ssh {
            port,
            credentials,
            host_key_sha256,
        } => {
            let auth = match (&credentials.private_key, &credentials.password) {
                (Some(lab_config::SecretRef::File(path)), _) => SshAuth::KeyFile {
                    path: path.clone(),
                    passphrase: None,
                },
                (Some(lab_config::SecretRef::Env(v)), _) => {
                    return Err(infra(format!(
                        "an SSH private key must be a file (got env:{v})"
                    )));
                }
                (None, Some(p)) => SshAuth::Password(secret(p)),
                (None, None) => SshAuth::Agent,
            };
            // A pin in the lab file is the host's identity; without one, known_hosts is.
            let host_key = match host_key_sha256 {
                Some(pin) => HostKeyPolicy::PinnedSha256(pin.clone()),
                None => HostKeyPolicy::KnownHosts(env.known_hosts()),
            };
            let cfg = SshConfig::new(address()?, credentials.user.clone(), auth, host_key)
                .port(*port)
                .remote_os(RemoteOs::Windows);
            Ok(AnyPsHost::Remote(RemotePowerShell::new(AnyTransport::Ssh(
                SshTransport::new(cfg),
            ))))
        }
    }
}

/// The backend's view of a Hyper-V lab.
pub fn hyperv_config(hv: &HyperVLab, read_secrets: bool) -> HyperVConfig {
    HyperVConfig {
        hosts: hv
            .hosts
            .iter()
            .map(|h| HostConfig {
                name: h.name.clone(),
                capacity: h.capacity,
                vm_dir: h.vm_dir.clone(),
                switch: h.switch.clone(),
            })
            .collect(),
        templates: hv
            .templates
            .iter()
            .map(|t| TemplateConfig {
                name: t.name.clone(),
                base_vhdx: t.base_vhdx.clone(),
                generation: t.generation,
                secure_boot: t.secure_boot,
                checkpoint: match t.checkpoint_type {
                    CheckpointType::Standard => CheckpointKind::Standard,
                    CheckpointType::Production => CheckpointKind::Production,
                },
                guest: GuestAccess {
                    kind: match t.transport.kind {
                        GuestTransportKind::PowershellDirect => GuestAccessKind::PowerShellDirect,
                        GuestTransportKind::Winrm => GuestAccessKind::Winrm,
                        GuestTransportKind::Ssh => GuestAccessKind::Ssh,
                    },
                    port: t.transport.port,
                    user: t.transport.credentials.user.clone(),
                    password: t.transport.credentials.password.as_ref().map(secret),
                    private_key: match &t.transport.credentials.private_key {
                        Some(lab_config::SecretRef::File(p)) => Some(p.clone()),
                        _ => None,
                    },
                },
            })
            .collect(),
        timing: Timing::default(),
        read_secrets,
    }
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
        let ops = rt
            .block_on(dry_run::plan(
                hyperv_config(hv, false),
                &specs,
                &deploy,
                &units,
            ))
            .map_err(|e| CliError::infra("plan the run", e))?;
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
