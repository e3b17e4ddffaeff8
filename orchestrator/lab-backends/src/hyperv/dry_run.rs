//! The dry run: the exact scripts a run would send to each host, produced by driving this
//! backend through the runner's sequence (provision, configure, reboot, deploy, checkpoint,
//! restore, remove) against recording hosts that answer like a healthy lab. Secrets are not
//! read; their place in the scripts shows where they come from.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::host::scripted::{HostFiles, Recorded, Reply};
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

/// One host operation of the plan.
#[derive(Debug, Clone)]
pub struct PlannedOp {
    pub host: String,
    pub vm: String,
    pub op: &'static str,
    /// The complete script (or, for a file copy, what is copied where).
    pub text: String,
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

/// Plans one VM per spec through provision, deploy, checkpoint, one restore and removal.
pub async fn plan(
    mut config: HyperVConfig,
    specs: &[VmSpec],
    deploy: &DeployPlan,
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
    let mut take = |vm: &str, out: &mut Vec<PlannedOp>| {
        for (i, (host, log)) in logs.iter().enumerate() {
            let log = log.lock().expect("log lock");
            for Recorded { op, text } in &log[seen[i]..] {
                out.push(PlannedOp {
                    host: host.clone(),
                    vm: vm.to_owned(),
                    op,
                    text: text.clone(),
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
        hv.restore(vm, DEPLOYED_CHECKPOINT).await?;
        hv.delete(vm).await?;
        take(vm, &mut out);
    }
    // The archive is packed at run time; say what goes into it.
    for op in out.iter_mut().filter(|o| o.op == "file.put") {
        op.text
            .push_str("# the deploy archive (gzip'd tar), entry <- local file -> guest path:\n");
        for (i, (local, remote)) in deploy.files.iter().enumerate() {
            op.text.push_str(&format!(
                "#   {} <- {} -> {remote}\n",
                super::archive::entry_name(i),
                local.display()
            ));
        }
    }
    Ok(out)
}

/// The plan as text: one section per operation, the script verbatim.
pub fn render(ops: &[PlannedOp]) -> String {
    let mut s = String::new();
    for (i, op) in ops.iter().enumerate() {
        // Guest scripts of WinRM/SSH templates go straight to the guest, not through the host.
        let place = if op.op.starts_with("guest.") && !op.text.contains("Invoke-Command -VMName") {
            format!("in VM {} over its WinRM/SSH transport", op.vm)
        } else {
            format!("on host {} (VM {})", op.host, op.vm)
        };
        s.push_str(&format!(
            "# ---- {n}. {op} {place}\n{text}\n",
            n = i + 1,
            op = op.op,
            text = op.text.trim_end()
        ));
    }
    s
}
