//! Host health before a host takes work (LAVA's health check): reachable, the Hyper-V
//! module present, free memory and disk for its capacity, each base VHDX present (with the
//! expected SHA-256 when the lab gives one), the switch present. One script gathers the
//! facts ([`crate::hyperv::scripts::host::health`]); the verdict is made here.

use serde::Deserialize;

use super::HostConfig;
use super::parse::List;

/// What the lab asks of every host, from its templates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthNeeds {
    /// Memory of the largest template: each VM slot needs this much free.
    pub vm_memory_bytes: u64,
    /// Base VHDX paths with their expected SHA-256 (lowercase hex), when known.
    pub bases: Vec<(String, Option<String>)>,
}

/// Disk a VM slot needs besides its memory (a standard checkpoint saves the memory to
/// disk): room for the differencing disk to grow while a scenario runs.
pub const DISK_PER_VM: u64 = 2 << 30;

/// The facts the health script reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostFacts {
    pub module: bool,
    pub free_memory_bytes: u64,
    #[serde(default)]
    pub free_disk_bytes: Option<u64>,
    #[serde(default)]
    pub bases: List<BaseFacts>,
    /// `None` when the lab names no switch (or the module is missing).
    #[serde(default)]
    pub switch_exists: Option<bool>,
}

/// One base disk.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BaseFacts {
    pub path: String,
    pub exists: bool,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// One host's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    pub host: String,
    pub capacity: u32,
    /// Why the host takes no work (`None`: healthy).
    pub problem: Option<String>,
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Everything wrong with a host, in the order a user would fix it; empty when healthy.
pub fn problems(host: &HostConfig, needs: &HealthNeeds, facts: &HostFacts) -> Vec<String> {
    let mut out = Vec::new();
    if !facts.module {
        out.push(
            "the Hyper-V PowerShell module is not installed (Install-WindowsFeature Hyper-V \
             -IncludeManagementTools)"
                .to_owned(),
        );
    }
    let slots = u64::from(host.capacity);
    let memory = needs.vm_memory_bytes.saturating_mul(slots);
    if facts.free_memory_bytes < memory {
        out.push(format!(
            "{} of memory free, {} needed for {slots} VM(s) of {}",
            gib(facts.free_memory_bytes),
            gib(memory),
            gib(needs.vm_memory_bytes)
        ));
    }
    let disk = (needs.vm_memory_bytes + DISK_PER_VM).saturating_mul(slots);
    match facts.free_disk_bytes {
        None => out.push(format!(
            "cannot read the free space of the drive of {}",
            host.vm_dir
        )),
        Some(free) if free < disk => out.push(format!(
            "{} free on the drive of {}, {} needed for {slots} VM(s)",
            gib(free),
            host.vm_dir,
            gib(disk)
        )),
        Some(_) => {}
    }
    for (path, expected) in &needs.bases {
        let Some(b) = facts.bases.0.iter().find(|b| b.path == *path) else {
            out.push(format!("base disk {path} was not checked"));
            continue;
        };
        if !b.exists {
            out.push(format!("base disk {path} does not exist"));
        } else if let Some(want) = expected {
            match &b.sha256 {
                Some(got) if got.eq_ignore_ascii_case(want) => {}
                Some(got) => out.push(format!(
                    "base disk {path} has SHA-256 {got}, the lab expects {want}"
                )),
                None => out.push(format!("base disk {path} was not hashed")),
            }
        }
    }
    if let Some(switch) = &host.switch
        && facts.module
        && facts.switch_exists != Some(true)
    {
        out.push(format!("virtual switch {switch:?} does not exist"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostConfig {
        HostConfig {
            name: "hv1".into(),
            capacity: 2,
            vm_dir: r"D:\hvlab\vms".into(),
            switch: Some("lab".into()),
        }
    }

    fn needs() -> HealthNeeds {
        HealthNeeds {
            vm_memory_bytes: 4 << 30,
            bases: vec![
                (r"D:\base\a.vhdx".into(), Some("ab".repeat(32))),
                (r"D:\base\b.vhdx".into(), None),
            ],
        }
    }

    fn healthy() -> HostFacts {
        HostFacts {
            module: true,
            free_memory_bytes: 8 << 30,
            free_disk_bytes: Some(12 << 30),
            bases: List(vec![
                BaseFacts {
                    path: r"D:\base\a.vhdx".into(),
                    exists: true,
                    sha256: Some("AB".repeat(32)),
                },
                BaseFacts {
                    path: r"D:\base\b.vhdx".into(),
                    exists: true,
                    sha256: None,
                },
            ]),
            switch_exists: Some(true),
        }
    }

    #[test]
    fn a_host_with_room_for_its_capacity_is_healthy() {
        assert_eq!(
            problems(&host(), &needs(), &healthy()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_shortfall_is_named() {
        let mut f = healthy();
        f.free_memory_bytes = 6 << 30;
        f.free_disk_bytes = Some(11 << 30);
        f.bases.0[0].sha256 = Some("cd".repeat(32));
        f.bases.0[1].exists = false;
        f.switch_exists = Some(false);
        let p = problems(&host(), &needs(), &f);
        assert_eq!(p.len(), 5, "{p:#?}");
        assert_eq!(
            p[0],
            "6.0 GiB of memory free, 8.0 GiB needed for 2 VM(s) of 4.0 GiB"
        );
        assert!(p[1].starts_with(r"11.0 GiB free on the drive of D:\hvlab\vms, 12.0 GiB"));
        assert!(p[2].contains("has SHA-256 cdcd"), "{}", p[2]);
        assert_eq!(p[3], r"base disk D:\base\b.vhdx does not exist");
        assert_eq!(p[4], "virtual switch \"lab\" does not exist");
    }

    #[test]
    fn a_missing_module_is_said_once_not_as_a_missing_switch() {
        let mut f = healthy();
        f.module = false;
        f.switch_exists = None;
        let p = problems(&host(), &needs(), &f);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("Hyper-V PowerShell module"));
    }
}
