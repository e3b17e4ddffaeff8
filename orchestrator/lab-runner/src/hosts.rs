//! Many hosts, healthy hosts: the health check of every Hyper-V host before the run takes
//! work, the VM slots of the hosts that passed, hosts drained later (lost mid-run) turned
//! into events, and the `hvlab lab gc` line that removes what a run left behind.

use std::collections::BTreeSet;

use lab_backends::AnyHypervisor;
use lab_backends::hyperv::{HealthNeeds, HostReport};
use lab_config::{LabBackend, Plan};

use crate::events::Event;

/// The health check before a run: `None` for the simulated lab (nothing to check).
pub async fn check(hv: &AnyHypervisor, plan: &Plan) -> Option<Vec<HostReport>> {
    let (AnyHypervisor::HyperV(h), LabBackend::HyperV(lab)) = (hv, &plan.lab.backend) else {
        return None;
    };
    let needs = HealthNeeds {
        vm_memory_bytes: lab
            .templates
            .iter()
            .map(|t| t.memory_bytes)
            .max()
            .unwrap_or(0),
        bases: {
            let mut bases: Vec<(String, Option<String>)> = Vec::new();
            for t in &lab.templates {
                if !bases.iter().any(|(p, _)| *p == t.base_vhdx) {
                    bases.push((t.base_vhdx.clone(), t.base_vhdx_sha256.clone()));
                }
            }
            bases
        },
    };
    Some(h.check_hosts(&needs).await)
}

/// VM slots on the hosts that passed.
pub fn healthy_capacity(reports: &[HostReport]) -> usize {
    reports
        .iter()
        .filter(|r| r.problem.is_none())
        .map(|r| r.capacity as usize)
        .sum()
}

/// Why no host can take work: each host with its reason.
pub fn none_healthy(reports: &[HostReport]) -> String {
    let why: Vec<String> = reports
        .iter()
        .map(|r| format!("{}: {}", r.host, r.problem.as_deref().unwrap_or("healthy")))
        .collect();
    format!(
        "no Hyper-V host passed its health check ({})",
        why.join("; ")
    )
}

/// `HostDrained` for each host drained since the last call (`seen` remembers them).
pub fn new_drains(hv: &AnyHypervisor, seen: &mut BTreeSet<String>) -> Vec<Event> {
    let AnyHypervisor::HyperV(h) = hv else {
        return vec![];
    };
    h.drained()
        .into_iter()
        .filter(|(host, _)| seen.insert(host.clone()))
        .map(|(host, reason)| Event::HostDrained { host, reason })
        .collect()
}

/// Whether a worker without a VM may take a unit: a Hyper-V lab that lost a host has
/// fewer slots than workers, and a worker that could not place a VM would only error
/// its unit.
pub fn has_room(hv: &AnyHypervisor) -> bool {
    match hv {
        AnyHypervisor::HyperV(h) => h.has_room(),
        AnyHypervisor::Sim(_) => true,
    }
}

/// The command that removes a run's leftover VMs from this lab.
pub fn gc_hint(plan: &Plan) -> String {
    match plan.lab.backend {
        LabBackend::Sim(_) => "hvlab lab gc".into(),
        LabBackend::HyperV(_) => format!("hvlab lab gc --lab {}", plan.lab.file.display()),
    }
}
