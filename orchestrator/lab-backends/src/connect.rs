//! Builds a lab's backend from its validated config: the simulated lab, or Hyper-V hosts
//! reached locally, over WinRM or over SSH, with the environment-derived [`Settings`] the
//! caller resolved once before any work started.

use std::path::PathBuf;
use std::sync::Arc;

use lab_config::{CheckpointType, Connection, GuestTransportKind, HyperVLab, Lab, LabBackend};
use lab_transport::{
    AnyTransport, HostKeyPolicy, RemoteOs, SshAuth, SshConfig, SshTransport, TlsVerify,
    TransportError, WinrmAuth, WinrmScheme, WinrmSettings, WinrmTransport,
};

use crate::AnyHypervisor;
use crate::hyperv::{
    AnyPsHost, CheckpointKind, GuestAccess, GuestAccessKind, HostConfig, HyperV, HyperVConfig,
    LocalPowerShell, RemotePowerShell, TemplateConfig, Timing,
};
use crate::sim::{GuestLauncher, SimHypervisor};

/// What the backends take from the process environment. The caller resolves it once (the
/// CLI from `HOME` and `HVLAB_SIM_ROOT`); nothing in this crate reads those variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Home directory: where `.ssh/known_hosts` lives for Hyper-V hosts reached over SSH.
    pub home: Option<PathBuf>,
    /// The simulated lab's state directory.
    pub sim_root: PathBuf,
}

impl Settings {
    /// The OpenSSH known_hosts file host keys are checked against: `$HOME/.ssh/known_hosts`,
    /// else `known_hosts` in the working directory.
    pub fn known_hosts(&self) -> PathBuf {
        self.home.as_ref().map_or_else(
            || PathBuf::from("known_hosts"),
            |h| h.join(".ssh").join("known_hosts"),
        )
    }
}

/// Why a lab's backend could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The lab file lacks something this host's connection needs.
    #[error("connect to Hyper-V host {host}: {problem}")]
    Lab { host: String, problem: HostProblem },
    /// The transport refused its settings.
    #[error("connect to Hyper-V host {host}")]
    Transport {
        host: String,
        // Boxed: a transport error is large and this one is rare.
        #[source]
        source: Box<TransportError>,
    },
}

/// What a Hyper-V host's entry in the lab file lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostProblem {
    #[error("the lab gives no address")]
    NoAddress,
    #[error("WinRM needs a password reference")]
    NoWinrmPassword,
    #[error("an SSH private key must be a file (got env:{0})")]
    SshKeyInEnv(String),
}

/// The simulated hypervisor (state under `settings.sim_root`), launching guests with
/// `guest`.
pub fn sim(settings: &Settings, guest: GuestLauncher) -> SimHypervisor {
    SimHypervisor::new(settings.sim_root.clone(), guest)
}

/// The backend for `lab`; simulated guests are launched with `guest`. Hyper-V host
/// credentials are read here, at connect time.
pub fn connect(
    lab: &Lab,
    settings: &Settings,
    guest: GuestLauncher,
) -> Result<AnyHypervisor, ConnectError> {
    match &lab.backend {
        LabBackend::Sim(_) => Ok(AnyHypervisor::Sim(sim(settings, guest))),
        LabBackend::HyperV(hv) => {
            let config = hyperv_config(hv, true);
            let hosts = hv
                .hosts
                .iter()
                .map(|h| connect_host(h, settings).map(Arc::new))
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

fn connect_host(h: &lab_config::Host, settings: &Settings) -> Result<AnyPsHost, ConnectError> {
    let lab_err = |problem| ConnectError::Lab {
        host: h.name.clone(),
        problem,
    };
    let address = || {
        h.address
            .clone()
            .ok_or_else(|| lab_err(HostProblem::NoAddress))
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
                .ok_or_else(|| lab_err(HostProblem::NoWinrmPassword))?;
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
            let winrm = WinrmSettings::new(address()?, scheme, auth).port(*port);
            let t = WinrmTransport::new(winrm).map_err(|source| ConnectError::Transport {
                host: h.name.clone(),
                source: Box::new(source),
            })?;
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
                    return Err(lab_err(HostProblem::SshKeyInEnv(v.clone())));
                }
                (None, Some(p)) => SshAuth::Password(secret(p)),
                (None, None) => SshAuth::Agent,
            };
            // A pin in the lab file is the host's identity; without one, known_hosts is.
            let host_key = match host_key_sha256 {
                Some(pin) => HostKeyPolicy::PinnedSha256(pin.clone()),
                None => HostKeyPolicy::KnownHosts(settings.known_hosts()),
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

/// The backend's view of a Hyper-V lab; `read_secrets` is `false` for a dry run.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_is_under_home_else_in_the_working_directory() {
        let mut s = Settings {
            home: Some("/home/u".into()),
            sim_root: "/tmp/sim".into(),
        };
        assert_eq!(s.known_hosts(), PathBuf::from("/home/u/.ssh/known_hosts"));
        s.home = None;
        assert_eq!(s.known_hosts(), PathBuf::from("known_hosts"));
    }

    #[test]
    fn a_host_problem_reads_after_failed_to() {
        let e = ConnectError::Lab {
            host: "hv1".into(),
            problem: HostProblem::SshKeyInEnv("KEY".into()),
        };
        assert_eq!(
            e.to_string(),
            "connect to Hyper-V host hv1: an SSH private key must be a file (got env:KEY)"
        );
    }
}
