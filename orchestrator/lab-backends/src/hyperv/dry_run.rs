//! The dry run: the exact scripts a run would send to each host, produced by driving this
//! backend through the runner's sequence (provision, configure, reboot, deploy, checkpoint,
//! restore, remove) against recording hosts that answer like a healthy lab, then each unit
//! that would run on the VM (restore, readiness, and the guest operations of every setup
//! and scenario step). Secrets are not read; their place in the scripts shows where they
//! come from. Lab values shown in `#` comments go through [`shown`], so a newline in a
//! path cannot end the comment and turn the rest into a command.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::host::scripted::{HostFiles, Reply};
use super::script::Script;
use super::{AnyPsHost, HyperV, HyperVConfig, ScriptedHost};
use crate::error::Result;
use crate::guest::Guest;
use crate::hypervisor::{DEPLOYED_CHECKPOINT, Hypervisor};
use crate::model::{ServiceSpec, StartType, VmSpec};

/// What a deploy puts in a VM.
#[derive(Debug, Clone, Default)]
pub struct DeployPlan {
    /// Local file and guest destination.
    pub files: Vec<(PathBuf, String)>,
    /// Services in install order.
    pub services: Vec<ServiceSpec>,
}

/// What a scenario step asks of the guest; the caller maps its scenario steps to these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestAction {
    /// Run a program (argv\[0\]) with a timeout.
    Exec {
        argv: Vec<String>,
        timeout: Duration,
    },
    ServiceStart(String),
    ServiceStop(String),
    ServiceQuery(String),
    /// `Checkpoint-VM` under this name.
    Checkpoint(String),
    /// Something the runner does that sends nothing to the host (a sleep, judging a crash).
    Note(String),
}

/// One setup or scenario step of a unit.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// Where it is in the scenario (`steps[1]`, `setup[0]`).
    pub path: String,
    pub label: String,
    pub actions: Vec<GuestAction>,
    /// A top-level step: the runner reads the boot id after it (a reboot is a crash).
    pub top_level: bool,
}

/// One unit (a scenario iteration on a template).
#[derive(Debug, Clone)]
pub struct PlannedUnit {
    /// `scenario@template#iteration`.
    pub id: String,
    pub template: String,
    pub steps: Vec<PlannedStep>,
}

/// One host operation of the plan.
#[derive(Debug, Clone)]
pub struct PlannedOp {
    pub host: String,
    pub vm: String,
    /// The unit and step it belongs to; None while the VM is provisioned or removed.
    pub unit: Option<String>,
    pub step: Option<String>,
    pub op: &'static str,
    /// The complete script (or, for a file copy, what is copied where).
    pub text: String,
}

/// A lab value as a `#` comment shows it: single-quoted (quotes doubled, as in
/// PowerShell), control and line-separator characters escaped as `\n`, `\r`, `\t` or
/// `\u{..}`, so the comment stays one line whatever the value holds.
pub fn shown(value: &str) -> String {
    let mut s = String::with_capacity(value.len() + 2);
    s.push('\'');
    for c in value.chars() {
        match c {
            '\'' | '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}' => {
                s.push(c);
                s.push(c);
            }
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}') => {
                s.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// Answers every script the way a healthy host and guest would.
fn healthy(boots: &Mutex<u32>, script: &Script, _files: &HostFiles) -> Reply {
    let boot = |n: u32| format!("2025-01-01T00:{n:02}:00.0000000Z");
    Reply::Value(match script.op {
        "vm.heartbeat" => json!({"State": "Running", "Status": "Ok", "Enabled": true}),
        "vm.state" => json!({"Name": script.str_param("Name"), "State": "Running"}),
        "vm.restore" => json!({"State": "Running"}),
        "vm.create" => json!({"Name": script.str_param("Name")}),
        "guest.boot_id" => json!({"LastBootUpTime": boot(*boots.lock().expect("boots"))}),
        "guest.reboot" => {
            *boots.lock().expect("boots") += 1;
            json!({"ExitCode": 0, "Stdout": "", "Stderr": "", "TimedOut": false})
        }
        "guest.set_crash_control" => {
            json!({"RamMb": 4096, "PageFileMb": 8192, "AutomaticPageFile": true})
        }
        "guest.events" => json!([]),
        "guest.extract" => {
            let n = match script.param("Entries") {
                Some(super::script::PsValue::List(v)) => v.len(),
                _ => 0,
            };
            json!(
                (0..n)
                    .map(|_| json!({"Path": "", "Length": 0, "Hash": ""}))
                    .collect::<Vec<_>>()
            )
        }
        op if op.starts_with("guest.service_") => json!({
            "ExitCode": 0, "Stderr": "", "TimedOut": false,
            "Stdout": "SERVICE_NAME: x\n        STATE              : 4  RUNNING\n"
        }),
        op if op.starts_with("guest.") => {
            json!({"ExitCode": 0, "Stdout": "", "Stderr": "", "TimedOut": false})
        }
        _ => serde_json::Value::Null,
    })
}

/// Plans one VM per spec through provision, deploy and checkpoint, then every unit of
/// its template (restore, readiness, steps), then its removal.
pub async fn plan(
    mut config: HyperVConfig,
    specs: &[VmSpec],
    deploy: &DeployPlan,
    units: &[PlannedUnit],
) -> Result<Vec<PlannedOp>> {
    config.read_secrets = false;
    config.timing.poll = Duration::ZERO;
    let boots = Arc::new(Mutex::new(0u32));
    let mut logs = Vec::new();
    let hosts: Vec<Arc<AnyPsHost>> = config
        .hosts
        .iter()
        .map(|h| {
            let b = boots.clone();
            let host = ScriptedHost::new(h.name.clone(), move |s, f| healthy(&b, s, f));
            logs.push((h.name.clone(), host.log()));
            Arc::new(AnyPsHost::Scripted(host))
        })
        .collect();
    let hv = HyperV::new(config, hosts);
    let mut out = Vec::new();
    let mut seen = vec![0usize; logs.len()];
    let mut take = |vm: &str, unit: Option<&str>, step: Option<&str>, out: &mut Vec<PlannedOp>| {
        for (i, (host, log)) in logs.iter().enumerate() {
            let log = log.lock().expect("log lock");
            for r in &log[seen[i]..] {
                out.push(PlannedOp {
                    host: host.clone(),
                    vm: vm.to_owned(),
                    unit: unit.map(str::to_owned),
                    step: step.map(str::to_owned),
                    op: r.op,
                    text: describe(r, deploy),
                });
            }
            seen[i] = log.len();
        }
    };
    for spec in specs {
        let vm = spec.name.as_str();
        hv.create(spec).await?;
        hv.start(vm).await?;
        let first = hv.wait_ready(vm, Duration::from_secs(1)).await?;
        let guest = hv.guest(vm)?;
        guest.set_test_signing(spec.guest.test_signing).await?;
        guest.set_crash_control(&spec.guest.crash_control).await?;
        guest.set_verifier(&spec.guest.verifier).await?;
        guest.reboot().await?;
        let second = hv.wait_ready(vm, Duration::from_secs(1)).await?;
        debug_assert_ne!(first, second);
        guest.upload_many(&deploy.files).await?;
        for s in &deploy.services {
            guest.service_create(s).await?;
        }
        for s in deploy
            .services
            .iter()
            .filter(|s| s.start_type != StartType::Demand)
        {
            guest.service_start(&s.name).await?;
        }
        hv.checkpoint(vm, DEPLOYED_CHECKPOINT).await?;
        take(vm, None, None, &mut out);
        for (n, unit) in units
            .iter()
            .filter(|u| u.template == spec.template)
            .enumerate()
        {
            let id = Some(unit.id.as_str());
            // The first unit runs on the freshly deployed VM; later ones restore it.
            if n > 0 {
                hv.restore(vm, DEPLOYED_CHECKPOINT).await?;
            }
            guest.boot_id().await?;
            guest.events(0).await?;
            take(vm, id, None, &mut out);
            for step in &unit.steps {
                for action in &step.actions {
                    run_action(&hv, &guest, vm, action).await?;
                }
                if step.top_level {
                    guest.boot_id().await?;
                }
                let label = format!("{} {}", step.path, step.label);
                let before = out.len();
                take(vm, id, Some(&label), &mut out);
                for note in step.actions.iter().filter_map(|a| match a {
                    GuestAction::Note(n) => Some(n),
                    _ => None,
                }) {
                    out.insert(
                        before,
                        PlannedOp {
                            host: String::new(),
                            vm: vm.to_owned(),
                            unit: unit.id.clone().into(),
                            step: Some(label.clone()),
                            op: "note",
                            text: format!("# {}\n", shown(note)),
                        },
                    );
                }
            }
        }
        hv.delete(vm).await?;
        take(vm, None, None, &mut out);
    }
    Ok(out)
}

/// What a crash adds on a lab with `debugger:`: the collected dump (and the payload's
/// driver files, `symbol_files`) copied back to the VM's host, the debugger script, and the
/// analysis folder removed. Shown once per VM: it runs after each unit that crashes.
pub fn crash_analysis(
    config: &HyperVConfig,
    host: &str,
    vm: &str,
    debugger: &str,
    symbol_path: Option<&str>,
    symbol_files: &[PathBuf],
) -> Vec<PlannedOp> {
    let staging = config
        .hosts
        .iter()
        .find(|h| h.name == host)
        .map(|h| h.staging_dir())
        .unwrap_or_default();
    let (dir, dump, symbols) = super::debugger::host_paths(&staging, vm, "MEMORY.DMP");
    let mut copy = format!(
        "# copy the collected dump (MEMORY.DMP or a Minidump file) to {} on the host\n",
        shown(&dump)
    );
    for f in symbol_files {
        copy.push_str(&format!(
            "# copy {} to {} on the host\n",
            shown(&f.display().to_string()),
            shown(&symbols)
        ));
    }
    let path = super::debugger::symbol_path(
        (!symbol_files.is_empty()).then_some(symbols.as_str()),
        symbol_path,
    );
    let script = super::scripts::host::debugger_analyze(
        debugger,
        &dump,
        path.as_deref(),
        crate::hyperv::debugger::ANALYZE_TIMEOUT.as_millis() as u64,
    );
    let op = |op: &'static str, text: String| PlannedOp {
        host: host.to_owned(),
        vm: vm.to_owned(),
        unit: None,
        step: Some("after a unit crashes: !analyze -v by the lab's debugger".to_owned()),
        op,
        text,
    };
    vec![
        op("file.put", copy),
        op(script.op, script.render()),
        op("file.remove", super::scripts::files::remove(&dir).render()),
    ]
}

async fn run_action(
    hv: &HyperV,
    guest: &crate::guest::AnyGuest,
    vm: &str,
    action: &GuestAction,
) -> Result<()> {
    match action {
        GuestAction::Exec { argv, timeout } => guest.exec(argv, *timeout).await.map(drop),
        GuestAction::ServiceStart(n) => guest.service_start(n).await.map(drop),
        GuestAction::ServiceStop(n) => guest.service_stop(n).await.map(drop),
        GuestAction::ServiceQuery(n) => guest.service_query(n).await.map(drop),
        GuestAction::Checkpoint(name) => hv.checkpoint(vm, name).await,
        GuestAction::Note(_) => Ok(()),
    }
}

/// A recorded operation as the plan shows it: scripts verbatim; a file copy described by
/// what it carries (the deploy archive is packed in a temp folder at run time, so its
/// local path means nothing after the dry run).
fn describe(r: &super::host::scripted::ReceivedScript, deploy: &DeployPlan) -> String {
    let Some((local, host_path)) = &r.copy else {
        return r.text.clone();
    };
    if r.op != "file.put" {
        return format!(
            "# copy {} from the host to {}\n",
            shown(host_path),
            shown(&local.display().to_string())
        );
    }
    let mut text = format!(
        "# copy the deploy archive to {} on the host: a gzip'd tar packed at run time\n\
         # holding {} file(s), entry <- local file -> guest path:\n",
        shown(host_path),
        deploy.files.len()
    );
    for (i, (local, remote)) in deploy.files.iter().enumerate() {
        text.push_str(&format!(
            "#   {} <- {} -> {}\n",
            super::archive::entry_name(i),
            shown(&local.display().to_string()),
            shown(remote)
        ));
    }
    text
}

/// The plan as text: the units and where they run, then one section per operation with
/// the script verbatim, grouped by unit and step, and a count per kind of operation.
pub fn render(ops: &[PlannedOp]) -> String {
    let mut s = String::new();
    let mut units: Vec<(&str, &str, &str)> = Vec::new();
    for op in ops {
        if let Some(u) = op.unit.as_deref()
            && !op.host.is_empty()
            && !units.iter().any(|(x, _, _)| *x == u)
        {
            units.push((u, &op.host, &op.vm));
        }
    }
    s.push_str(&format!("# {} unit(s):\n", units.len()));
    for (u, host, vm) in &units {
        s.push_str(&format!(
            "#   {} on host {}, VM {}\n",
            shown(u),
            shown(host),
            shown(vm)
        ));
    }
    // `Some(None)`: in the VM's provisioning or teardown; `None`: nothing printed yet.
    let (mut unit, mut step): (Option<Option<&str>>, Option<&str>) = (None, None);
    let mut counts: Vec<(&str, usize)> = Vec::new();
    let mut n = 0;
    for op in ops {
        if Some(op.unit.as_deref()) != unit {
            unit = Some(op.unit.as_deref());
            step = None;
            match op.unit.as_deref() {
                Some(u) => s.push_str(&format!(
                    "\n# ======== unit {} on VM {}: restore, readiness, boot id, event log mark\n",
                    shown(u),
                    shown(&op.vm)
                )),
                None => s.push_str(&format!("\n# ======== VM {}\n", shown(&op.vm))),
            }
        }
        if op.step.as_deref() != step {
            step = op.step.as_deref();
            if let Some(st) = step {
                s.push_str(&format!("# ==== step {}\n", shown(st)));
            }
        }
        if op.op == "note" {
            s.push_str(&op.text);
            continue;
        }
        n += 1;
        match counts.iter_mut().find(|(k, _)| *k == op.op) {
            Some((_, c)) => *c += 1,
            None => counts.push((op.op, 1)),
        }
        // Guest scripts of WinRM/SSH templates go straight to the guest, not through the host.
        let place = if op.op.starts_with("guest.") && !op.text.contains("Invoke-Command -VMName") {
            format!("in VM {} over its WinRM/SSH transport", shown(&op.vm))
        } else {
            format!("on host {} (VM {})", shown(&op.host), shown(&op.vm))
        };
        s.push_str(&format!(
            "# ---- {n}. {op} {place}\n{text}\n",
            op = op.op,
            text = op.text.trim_end()
        ));
    }
    counts.sort_by(|a, b| a.0.cmp(b.0));
    s.push_str(&format!("\n# {n} operation(s):\n"));
    for (op, c) in counts {
        s.push_str(&format!("#   {op:<28} {c:>4}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn shown_values_stay_on_one_comment_line() {
        assert_eq!(shown(r"D:\hvlab\vms"), r"'D:\hvlab\vms'");
        assert_eq!(shown("a'b"), "'a''b'");
        assert_eq!(shown("x\nRemove-Item C:\\"), r"'x\nRemove-Item C:\'");
        assert_eq!(shown("a\r\tb\u{2028}c\u{7}"), r"'a\r\tb\u{2028}c\u{7}'");
    }
}
