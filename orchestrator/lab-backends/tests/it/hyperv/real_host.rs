//! Opt-in tests against a real Hyper-V host (docs/hyperv.md, "Testing against a real
//! host"). Skipped, with a message saying what to set, unless `HVLAB_HYPERV_HOST` names a
//! host (`local` for this machine) and `HVLAB_HYPERV_BASE_VHDX` a base image there; WinRM
//! hosts also need `HVLAB_HYPERV_USER` and `HVLAB_HYPERV_PASSWORD`, and the guest account
//! `HVLAB_GUEST_USER` / `HVLAB_GUEST_PASSWORD`.

use std::sync::Arc;
use std::time::Duration;

use lab_backends::hyperv::{
    AnyPsHost, HostConfig, HyperV, HyperVConfig, LocalPowerShell, RemotePowerShell, Timing, fixture,
};
use lab_backends::{Guest, Hypervisor, StopMode};
use lab_transport::{
    AnyTransport, SecretRef, TlsVerify, WinrmAuth, WinrmScheme, WinrmSettings, WinrmTransport,
};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn setup() -> Option<HyperV> {
    let (Some(host), Some(base)) = (env("HVLAB_HYPERV_HOST"), env("HVLAB_HYPERV_BASE_VHDX")) else {
        eprintln!(
            "skipped: the real Hyper-V suite needs HVLAB_HYPERV_HOST (a host name, or `local`) and \
             HVLAB_HYPERV_BASE_VHDX (a base image on that host); see docs/hyperv.md"
        );
        return None;
    };
    let shell = if host == "local" {
        AnyPsHost::Local(LocalPowerShell::default())
    } else {
        let user = env("HVLAB_HYPERV_USER").unwrap_or_else(|| "Administrator".into());
        let (domain, user) = user
            .split_once('\\')
            .map(|(d, u)| (d.to_owned(), u.to_owned()))
            .unwrap_or((String::new(), user));
        let settings = WinrmSettings::new(
            host.clone(),
            WinrmScheme::Https(TlsVerify::InsecureAcceptAny),
            WinrmAuth::Ntlm {
                user,
                domain,
                password: SecretRef::Env("HVLAB_HYPERV_PASSWORD".into()),
            },
        );
        AnyPsHost::Remote(RemotePowerShell::new(AnyTransport::Winrm(
            WinrmTransport::new(settings).expect("winrm settings"),
        )))
    };
    let mut template = fixture::template("real", &base);
    template.guest.user = env("HVLAB_GUEST_USER").unwrap_or_else(|| "Administrator".into());
    template.guest.password = Some(SecretRef::Env("HVLAB_GUEST_PASSWORD".into()));
    let config = HyperVConfig {
        hosts: vec![HostConfig {
            name: host,
            capacity: 1,
            vm_dir: env("HVLAB_HYPERV_VM_DIR").unwrap_or_else(|| r"C:\hvlab\vms".into()),
            switch: env("HVLAB_HYPERV_SWITCH"),
        }],
        templates: vec![template],
        timing: Timing::default(),
        read_secrets: true,
    };
    Some(HyperV::new(config, vec![Arc::new(shell)]))
}

#[tokio::test]
async fn real_host_lifecycle() {
    let Some(hv) = setup() else { return };
    let mut spec = super::support::spec(&format!("hvlab-realtest-{}", std::process::id()));
    spec.template = "real".into();
    spec.memory_mb = 2048;
    spec.vcpus = 2;
    hv.create(&spec).await.expect("create");
    let result = async {
        hv.start(&spec.name).await?;
        let boot = hv.wait_ready(&spec.name, Duration::from_secs(600)).await?;
        let g = hv.guest(&spec.name)?;
        let out = g
            .exec(
                &["cmd.exe".into(), "/c".into(), "echo it's $(ok)".into()],
                Duration::from_secs(60),
            )
            .await?;
        assert_eq!(out.exit_code, 0);
        hv.checkpoint(&spec.name, "deployed").await?;
        hv.restore(&spec.name, "deployed").await?;
        assert_eq!(g.boot_id().await?, boot);
        assert!(!g.events(0).await?.is_empty());
        hv.stop(&spec.name, StopMode::TurnOff).await
    }
    .await;
    hv.delete(&spec.name).await.expect("delete");
    result.expect("lifecycle");
}
