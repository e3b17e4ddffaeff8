//! Deploying a payload: a preflight that resolves and hash-checks every local file before any
//! VM exists (a wrong build is a config error, found in a second, not after provisioning),
//! then the deploy itself: files copied and hash-checked in the guest, services created, and
//! non-demand drivers started in dependency order. Deploy is idempotent, so a scenario's
//! explicit `deploy` step can repeat it.

use std::path::PathBuf;

use lab_backends::{BackendError, Guest, ServiceSpec, ServiceState};
use lab_config::{Payload, UnsetVariable};
use sha2::{Digest, Sha256};

/// A payload file resolved on this machine.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub source: PathBuf,
    pub destination: String,
    pub sha256: String,
    pub size: u64,
}

/// Why a payload cannot be deployed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    UnsetVariable(#[from] UnsetVariable),
    #[error("read payload file {path} (payload `{payload}`, {manifest})")]
    Missing {
        payload: String,
        manifest: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "verify payload file {path} (payload `{payload}`): sha256 is {actual}, the manifest {manifest} expects {expected}"
    )]
    HashMismatch {
        payload: String,
        manifest: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("deploy to {vm}: {source}")]
    Guest {
        vm: String,
        #[source]
        source: BackendError,
    },
    #[error("deploy to {vm}: driver {service} is {state} after start, not running")]
    NotRunning {
        vm: String,
        service: String,
        state: ServiceState,
    },
}

/// Resolves and verifies every file of `payload` on this machine.
pub fn preflight(payload: &Payload) -> Result<Vec<LocalFile>, DeployError> {
    let build = payload.build_dir()?;
    let manifest = payload.file.display().to_string();
    payload
        .files
        .iter()
        .map(|f| {
            let path = build.join(&f.source);
            let bytes = std::fs::read(&path).map_err(|source| DeployError::Missing {
                payload: payload.name.clone(),
                manifest: manifest.clone(),
                path: path.clone(),
                source,
            })?;
            let actual = hex::encode(Sha256::digest(&bytes));
            if let Some(expected) = &f.sha256
                && !expected.eq_ignore_ascii_case(&actual)
            {
                return Err(DeployError::HashMismatch {
                    payload: payload.name.clone(),
                    manifest: manifest.clone(),
                    path,
                    expected: expected.clone(),
                    actual,
                });
            }
            Ok(LocalFile {
                source: path,
                destination: f.destination.clone(),
                sha256: actual,
                size: bytes.len() as u64,
            })
        })
        .collect()
}

/// Copies files (skipping ones already there with the right hash), creates the services and
/// starts the non-demand drivers in dependency order.
pub async fn deploy<G: Guest + Sync>(
    guest: &G,
    payload: &Payload,
    files: &[LocalFile],
) -> Result<(), DeployError> {
    let vm = guest.vm().to_owned();
    let err = |source| DeployError::Guest {
        vm: vm.clone(),
        source,
    };
    let mut missing = Vec::new();
    for f in files {
        let present = guest.stat(&f.destination).await.map_err(err)?;
        if present.is_some_and(|p| p.sha256.eq_ignore_ascii_case(&f.sha256)) {
            continue;
        }
        missing.push((f.source.clone(), f.destination.clone()));
    }
    // One batch: the Hyper-V guest moves it as a single archive.
    guest.upload_many(&missing).await.map_err(err)?;
    for d in payload.drivers_in_install_order() {
        let spec = ServiceSpec {
            name: d.service.clone(),
            binary_path: payload.files[d.file].destination.clone(),
            start_type: d.start,
            depends_on: d.depends_on.clone(),
        };
        match guest.service_create(&spec).await {
            Ok(()) => {}
            // ERROR_SERVICE_EXISTS: deployed before (idempotent deploy).
            Err(e) if e.guest_code() == Some(1073) => {}
            Err(e) => return Err(err(e)),
        }
    }
    for d in payload
        .drivers_in_install_order()
        .filter(|d| d.started_by_deploy())
    {
        if guest.service_query(&d.service).await.map_err(err)? == ServiceState::Running {
            continue;
        }
        let state = match guest.service_start(&d.service).await {
            Ok(s) => s,
            Err(e) if e.guest_code() == Some(1056) => ServiceState::Running,
            Err(e) => return Err(err(e)),
        };
        if state != ServiceState::Running {
            return Err(DeployError::NotRunning {
                vm,
                service: d.service.clone(),
                state,
            });
        }
    }
    Ok(())
}
