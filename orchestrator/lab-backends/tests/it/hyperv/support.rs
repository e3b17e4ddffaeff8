//! Shared fixtures: a one-host lab config and a scripted host around a responder.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lab_backends::hyperv::host::scripted::{HostFiles, ReceivedScript, Reply};
use lab_backends::hyperv::script::Script;
use lab_backends::hyperv::{HyperV, HyperVConfig, ScriptedHost, Timing, fixture};
use lab_backends::{CrashControl, GuestSettings, Verifier, VmSpec};

pub fn config() -> HyperVConfig {
    let mut config = fixture::config(&["hv1"]);
    config.hosts[0].capacity = 2;
    config.hosts[0].switch = Some("hvlab-internal".into());
    // Scripts show a placeholder instead of the password: stable snapshots, no env.
    config.templates[0].guest.password = Some(lab_transport::SecretRef::Env(
        "HVLAB_TEST_GUEST_PASSWORD".into(),
    ));
    config.timing = Timing {
        op_timeout: Duration::from_secs(5),
        transfer_timeout: Duration::from_secs(5),
        poll: Duration::from_millis(1),
    };
    config
}

pub fn spec(name: &str) -> VmSpec {
    VmSpec {
        name: name.into(),
        run_id: "20250101-000000-abcd".into(),
        template: "ws2022".into(),
        vcpus: 4,
        memory_mb: 4096,
        boot_delay: Duration::ZERO,
        guest: GuestSettings {
            test_signing: true,
            crash_control: CrashControl::LAB,
            verifier: Verifier {
                drivers: vec!["ebpfcore.sys".into()],
                flags: Verifier::STANDARD,
            },
        },
    }
}

pub type Log = Arc<Mutex<Vec<ReceivedScript>>>;

/// A one-host Hyper-V backend over a scripted host.
pub fn backend(
    responder: impl Fn(&Script, &HostFiles) -> Reply + Send + Sync + 'static,
) -> (HyperV, Log, HostFiles) {
    let host = ScriptedHost::new("hv1", responder);
    let (log, files) = (host.log(), host.files());
    let hv = fixture::backend(config(), vec![host]);
    (hv, log, files)
}

pub fn ops(log: &Log) -> Vec<&'static str> {
    log.lock().unwrap().iter().map(|r| r.op).collect()
}
