//! The `Transport` trait the backends program against, its result types, and `AnyTransport`,
//! the closed set of implementations.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::command::{Command, ExecOutput};
use crate::error::TransportError;
use crate::ssh::SshTransport;
use crate::winrm::WinrmTransport;

/// A file that crossed the wire, checked on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReport {
    /// Bytes transferred (equal on both sides).
    pub size: u64,
    /// Hex SHA-256 of the content (equal on both sides).
    pub sha256: String,
}

/// What a PowerShell script printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsOutput {
    pub exit_code: i32,
    /// Standard output, UTF-8 (scripts end with `ConvertTo-Json -Compress`).
    pub stdout: String,
    /// Error stream as text (CLIXML decoded).
    pub stderr: String,
    pub truncated: bool,
}

impl From<ExecOutput> for PsOutput {
    /// A PowerShell process's output: stdout as text, the CLIXML error stream decoded.
    fn from(out: ExecOutput) -> Self {
        PsOutput {
            exit_code: out.exit_code,
            stdout: out.stdout_text(),
            stderr: crate::command::decode_clixml(&out.stderr_text()),
            truncated: out.truncated,
        }
    }
}

impl PsOutput {
    /// Parses stdout as JSON; empty output is `null`. Fails if the script exited non-zero.
    pub fn json<T: DeserializeOwned>(&self, target: &str) -> Result<T, TransportError> {
        if self.exit_code != 0 {
            return Err(TransportError::Remote {
                target: target.to_owned(),
                what: "run a powershell script".into(),
                exit_code: self.exit_code,
                stderr: crate::redact::scrub(self.stderr.trim()),
            });
        }
        let text = self.stdout.trim();
        let text = if text.is_empty() { "null" } else { text };
        serde_json::from_str(text).map_err(|source| TransportError::Json {
            target: target.to_owned(),
            what: "a powershell script".into(),
            snippet: crate::redact::scrub(&text.chars().take(200).collect::<String>()),
            source,
        })
    }
}

/// A way to run commands and move files on one remote machine. Implementations are cheap to
/// share (`&self` everywhere) and safe to call concurrently.
pub trait Transport: Send + Sync {
    /// `user@host:port`, for messages.
    fn target(&self) -> &str;

    /// Runs a command, keeping stdout and stderr apart. A non-zero exit code is a normal
    /// result, not an error; running past the timeout is an error and kills the command.
    fn exec(
        &self,
        cmd: &Command,
    ) -> impl Future<Output = Result<ExecOutput, TransportError>> + Send;

    /// Runs a PowerShell script sent with `-EncodedCommand` (UTF-16LE base64).
    fn powershell(
        &self,
        script: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<PsOutput, TransportError>> + Send;

    /// Copies a local file to `remote`, streaming, then checks size and SHA-256 remotely.
    fn upload(
        &self,
        local: &Path,
        remote: &str,
    ) -> impl Future<Output = Result<TransferReport, TransportError>> + Send;

    /// Copies `remote` to a local file, streaming, then checks size and SHA-256.
    fn download(
        &self,
        remote: &str,
        local: &Path,
    ) -> impl Future<Output = Result<TransferReport, TransportError>> + Send;

    /// Succeeds when the remote side accepts a trivial command.
    fn health(&self) -> impl Future<Output = Result<(), TransportError>> + Send;
}

/// Runs a script and parses its JSON output (see [`PsOutput::json`]).
pub async fn powershell_json<T, X>(
    transport: &X,
    script: &str,
    timeout: Duration,
) -> Result<T, TransportError>
where
    T: DeserializeOwned,
    X: Transport + ?Sized,
{
    transport
        .powershell(script, timeout)
        .await?
        .json(transport.target())
}

/// One of the transports, for code that picks at run time from the lab file.
#[derive(Debug)]
pub enum AnyTransport {
    Ssh(SshTransport),
    Winrm(WinrmTransport),
}

impl Transport for AnyTransport {
    fn target(&self) -> &str {
        match self {
            AnyTransport::Ssh(t) => t.target(),
            AnyTransport::Winrm(t) => t.target(),
        }
    }

    async fn exec(&self, cmd: &Command) -> Result<ExecOutput, TransportError> {
        match self {
            AnyTransport::Ssh(t) => t.exec(cmd).await,
            AnyTransport::Winrm(t) => t.exec(cmd).await,
        }
    }

    async fn powershell(
        &self,
        script: &str,
        timeout: Duration,
    ) -> Result<PsOutput, TransportError> {
        match self {
            AnyTransport::Ssh(t) => t.powershell(script, timeout).await,
            AnyTransport::Winrm(t) => t.powershell(script, timeout).await,
        }
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<TransferReport, TransportError> {
        match self {
            AnyTransport::Ssh(t) => t.upload(local, remote).await,
            AnyTransport::Winrm(t) => t.upload(local, remote).await,
        }
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<TransferReport, TransportError> {
        match self {
            AnyTransport::Ssh(t) => t.download(remote, local).await,
            AnyTransport::Winrm(t) => t.download(remote, local).await,
        }
    }

    async fn health(&self) -> Result<(), TransportError> {
        match self {
            AnyTransport::Ssh(t) => t.health().await,
            AnyTransport::Winrm(t) => t.health().await,
        }
    }
}
