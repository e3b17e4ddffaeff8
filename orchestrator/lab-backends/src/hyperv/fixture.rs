//! The Hyper-V lab that tests and benches drive against the scripted host, spelled once:
//! `ws2022` on one or more hosts, reached by PowerShell Direct, with timing for a fake host.

use std::sync::Arc;
use std::time::Duration;

use super::{
    AnyPsHost, CheckpointKind, GuestAccess, GuestAccessKind, HostConfig, HyperV, HyperVConfig,
    ScriptedHost, TemplateConfig, Timing,
};

/// A host with room for one VM, VM folders under `D:\hvlab\vms`, no switch.
pub fn host(name: &str) -> HostConfig {
    HostConfig {
        name: name.into(),
        capacity: 1,
        vm_dir: r"D:\hvlab\vms".into(),
        switch: None,
    }
}

/// A generation 2 template with standard checkpoints, reached by PowerShell Direct as
/// Administrator with no password.
pub fn template(name: &str, base_vhdx: &str) -> TemplateConfig {
    TemplateConfig {
        name: name.into(),
        base_vhdx: base_vhdx.into(),
        generation: 2,
        secure_boot: false,
        checkpoint: CheckpointKind::Standard,
        guest: GuestAccess {
            kind: GuestAccessKind::PowerShellDirect,
            port: None,
            user: "Administrator".into(),
            password: None,
            private_key: None,
        },
    }
}

/// Timing for a fake host: it answers at once, so polls are short and a hang shows soon.
pub const FAST: Timing = Timing {
    op_timeout: Duration::from_secs(10),
    transfer_timeout: Duration::from_secs(10),
    poll: Duration::from_millis(2),
};

/// The named hosts (see [`host`]) with the `ws2022` template on `D:\hvlab\base\ws2022.vhdx`,
/// [`FAST`] timing, secrets never read.
pub fn config(hosts: &[&str]) -> HyperVConfig {
    HyperVConfig {
        hosts: hosts.iter().map(|h| host(h)).collect(),
        templates: vec![template("ws2022", r"D:\hvlab\base\ws2022.vhdx")],
        timing: FAST,
        read_secrets: false,
    }
}

/// A backend over the given scripted hosts, in the order of `config.hosts`.
pub fn backend(config: HyperVConfig, hosts: Vec<ScriptedHost>) -> HyperV {
    let hosts = hosts
        .into_iter()
        .map(|h| Arc::new(AnyPsHost::Scripted(h)))
        .collect();
    HyperV::new(config, hosts)
}
