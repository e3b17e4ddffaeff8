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
