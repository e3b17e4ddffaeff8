//! What the runner asks of a lab's backend before it creates VMs — how many VMs fit at
//! once and what a template needs — so the runner never matches on the backend kind.

use std::time::Duration;

use lab_config::{GuestConfig, LabBackend};

/// A template's facts a VM worker needs, whatever the backend.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateFacts {
    pub vcpus: u32,
    pub memory_mb: u64,
    /// Simulated boot time (the sim lab's `boot_delay`); zero where boots are real.
    pub boot_delay: Duration,
    pub boot_timeout: Duration,
    pub guest: GuestConfig,
}

/// Capacity and template facts of a lab's backend.
pub trait BackendFacts {
    /// Most VMs at once across the lab (the sum over Hyper-V hosts).
    fn capacity(&self) -> usize;
    /// The facts of template `name`, or `None` when the lab has no such template.
    fn template(&self, name: &str) -> Option<TemplateFacts>;
}

impl BackendFacts for LabBackend {
    fn capacity(&self) -> usize {
        match self {
            LabBackend::Sim(s) => s.capacity as usize,
            LabBackend::HyperV(h) => h.hosts.iter().map(|h| h.capacity as usize).sum(),
        }
    }

    fn template(&self, name: &str) -> Option<TemplateFacts> {
        match self {
            LabBackend::Sim(sim) => {
                sim.templates
                    .iter()
                    .find(|t| t.name == name)
                    .map(|t| TemplateFacts {
                        vcpus: t.vcpus,
                        memory_mb: t.memory_bytes / (1024 * 1024),
                        boot_delay: t.boot_delay,
                        boot_timeout: t.boot_timeout,
                        guest: t.guest.clone(),
                    })
            }
            LabBackend::HyperV(hv) => {
                hv.templates
                    .iter()
                    .find(|t| t.name == name)
                    .map(|t| TemplateFacts {
                        vcpus: t.vcpus,
                        memory_mb: t.memory_bytes / (1024 * 1024),
                        boot_delay: Duration::ZERO,
                        boot_timeout: t.boot_timeout,
                        guest: t.guest.clone(),
                    })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn shipped(file: &str) -> lab_config::Lab {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../vm-configs")
            .join(file);
        lab_config::load_lab(&path).expect("the shipped lab validates")
    }

    #[test]
    fn the_sim_lab_answers_its_capacity_and_templates() {
        let lab = shipped("local-sim.yaml");
        assert_eq!(lab.backend.capacity(), 2);
        let t = lab
            .backend
            .template("ws2022")
            .expect("ws2022 is in the lab");
        assert_eq!(t.memory_mb, 2048);
        assert_eq!(t.boot_delay, Duration::from_millis(50));
        assert!(lab.backend.template("no-such-template").is_none());
    }

    #[test]
    fn a_hyperv_lab_sums_its_hosts_and_boots_without_a_simulated_delay() {
        let lab = shipped("hyperv-example.yaml");
        assert_eq!(lab.backend.capacity(), 2 + 4 + 4);
        let t = lab
            .backend
            .template("ws2022")
            .expect("ws2022 is in the lab");
        assert_eq!(t.boot_delay, Duration::ZERO);
    }
}
