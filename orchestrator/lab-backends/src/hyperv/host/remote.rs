//! A Hyper-V host reached over WinRM or SSH through lab-transport. Scripts go as
//! `-EncodedCommand`; files go over SFTP on SSH, and in base64 chunks through scripts on
//! WinRM (whose own file copy stops at 1 MiB), checked by SHA-256 at the end either way.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use lab_transport::{AnyTransport, Transport, TransportError};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{PowerShellHost, call};
use crate::hyperv::error::PsError;
use crate::hyperv::script::Script;
use crate::hyperv::scripts::files;

/// Bytes per chunk script on WinRM: ~350 KB of base64, well inside WinRM's default
/// 500 KB envelope once the bootstrap carries it over stdin.
const CHUNK: usize = 256 * 1024;
const FILE_OP_TIMEOUT: Duration = Duration::from_secs(120);

/// A remote host.
#[derive(Debug)]
pub struct RemotePowerShell {
    transport: AnyTransport,
    target: String,
}

impl RemotePowerShell {
    pub fn new(transport: AnyTransport) -> Self {
        let target = match &transport {
            AnyTransport::Ssh(t) => format!("ssh://{}", t.target()),
            AnyTransport::Winrm(t) => format!("winrm://{}", t.target()),
        };
        RemotePowerShell { transport, target }
    }

    fn transport_err(&self, op: &'static str, source: TransportError) -> PsError {
        match source {
            TransportError::Timeout {
                after,
                transient: false,
                ..
            } => PsError::Timeout { op, after },
            source => PsError::Transport {
                op,
                target: self.target.clone(),
                source: Box::new(source),
            },
        }
    }

    async fn verify(&self, host_path: &str, size: u64, sha256: &str) -> Result<(), PsError> {
        let s = files::hash(host_path);
        let got: files::FileHash = call(self, &s, FILE_OP_TIMEOUT).await?;
        if !got.exists || got.length != size || !got.hash.eq_ignore_ascii_case(sha256) {
            return Err(PsError::Transfer {
                op: "file.hash",
                detail: format!(
                    "{host_path} on {} has {} bytes sha256 {}, expected {size} bytes sha256 {sha256}",
                    self.target, got.length, got.hash
                ),
            });
        }
        Ok(())
    }
}

impl PowerShellHost for RemotePowerShell {
    fn target(&self) -> &str {
        &self.target
    }

    async fn run(&self, script: &Script, timeout: Duration) -> Result<String, PsError> {
        let out = self
            .transport
            .powershell(&script.render(), timeout)
            .await
            .map_err(|e| self.transport_err(script.op, e))?;
        if out.stdout.trim().is_empty() {
            return Err(PsError::NoResult {
                op: script.op,
                code: out.exit_code,
                stderr: out.stderr.trim().to_owned(),
            });
        }
        Ok(out.stdout)
    }

    async fn put_file(&self, local: &Path, host_path: &str) -> Result<(), PsError> {
        let op = "file.put";
        let io = |source| PsError::Spawn {
            op,
            program: format!("read {}", local.display()),
            source,
        };
        if let AnyTransport::Ssh(t) = &self.transport {
            call::<serde_json::Value, _>(self, &files::make_parent(host_path), FILE_OP_TIMEOUT)
                .await?;
            t.upload(local, host_path)
                .await
                .map_err(|e| self.transport_err(op, e))?;
            return Ok(());
        }
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let mut n = 0;
            while n < buf.len() {
                let k = file.read(&mut buf[n..]).await.map_err(io)?;
                if k == 0 {
                    break;
                }
                n += k;
            }
            if n == 0 && offset > 0 {
                break;
            }
            hasher.update(&buf[..n]);
            let s = files::put_chunk(host_path, offset, &B64.encode(&buf[..n]));
            call::<serde_json::Value, _>(self, &s, FILE_OP_TIMEOUT).await?;
            offset += n as u64;
            if n < buf.len() {
                break;
            }
        }
        self.verify(host_path, offset, &hex::encode(hasher.finalize()))
            .await
    }

    async fn get_file(&self, host_path: &str, local: &Path) -> Result<(), PsError> {
        let op = "file.get";
        if let AnyTransport::Ssh(t) = &self.transport {
            t.download(host_path, local)
                .await
                .map_err(|e| self.transport_err(op, e))?;
            return Ok(());
        }
        let io = |source| PsError::Spawn {
            op,
            program: format!("write {}", local.display()),
            source,
        };
        let expected: files::FileHash =
            call(self, &files::hash(host_path), FILE_OP_TIMEOUT).await?;
        let mut out = tokio::fs::File::create(local).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        while offset < expected.length {
            let s = files::get_chunk(host_path, offset, CHUNK as i64);
            let chunk: files::Chunk = call(self, &s, FILE_OP_TIMEOUT).await?;
            let data = B64
                .decode(chunk.data.trim())
                .map_err(|e| PsError::Transfer {
                    op,
                    detail: format!("chunk at {offset} of {host_path} is not base64: {e}"),
                })?;
            if data.is_empty() {
                break;
            }
            hasher.update(&data);
            out.write_all(&data).await.map_err(io)?;
            offset += data.len() as u64;
        }
        out.flush().await.map_err(io)?;
        let actual = hex::encode(hasher.finalize());
        if offset != expected.length || !actual.eq_ignore_ascii_case(&expected.hash) {
            return Err(PsError::Transfer {
                op,
                detail: format!(
                    "{host_path}: received {offset} bytes sha256 {actual}, the host has {} bytes sha256 {}",
                    expected.length, expected.hash
                ),
            });
        }
        Ok(())
    }
}
