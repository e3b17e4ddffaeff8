//! WinRM transport over winrm-rs 1.1: one remote shell reused across commands, PowerShell
//! through `-EncodedCommand`, per-command deadlines that terminate the command and drop its
//! shell, and HTTPS with certificate pinning. Only small files go over WinRM.

mod pin;
mod session;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use crate::command::{
    Command, CommandLine, ExecOutput, PS_FLAGS, PS_PRELUDE, PS_STDIN_BOOTSTRAP, encode_powershell,
    ps_quote,
};
use crate::error::TransportError;
use crate::secret::SecretRef;
use crate::transport::{PsOutput, TransferReport, Transport};
use session::{Invocation, WinrmSessions};

/// Largest file [`WinrmTransport::upload`] and [`WinrmTransport::download`] accept. Bulk
/// files (payload archives, dumps) go over SFTP or PowerShell Direct instead.
pub const SMALL_FILE_MAX: u64 = 1024 * 1024;

/// cmd.exe, which runs every WinRM command, truncates lines past 8191 characters; longer
/// scripts are fed to a bootstrap over stdin.
const MAX_COMMAND_LINE: usize = 8000;

/// How the server's certificate is checked over HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsVerify {
    /// Against the public web roots built into winrm-rs (not the OS store): for hosts with a
    /// publicly issued certificate. Keeps channel binding (CBT) intact.
    PublicRoots,
    /// Only a certificate whose DER SHA-256 fingerprint is this (64 hex digits, `:`
    /// separators allowed). For the usual self-signed listener certificate.
    PinnedSha256(String),
    /// Any certificate, logged as a warning: traffic is encrypted but the host is not
    /// authenticated. For disposable labs only.
    InsecureAcceptAny,
}

/// Where WinRM listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WinrmScheme {
    /// Port 5985. Only with NTLM, whose message sealing encrypts the bodies.
    Http,
    /// Port 5986.
    Https(TlsVerify),
}

/// Who we are to WinRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WinrmAuth {
    /// NTLMv2 (local or domain accounts). `domain` empty for a local account.
    Ntlm {
        user: String,
        domain: String,
        password: SecretRef,
    },
    /// Basic (local accounts with `AllowUnencrypted`-free HTTPS listeners only).
    Basic { user: String, password: SecretRef },
}

impl WinrmAuth {
    fn user(&self) -> &str {
        match self {
            WinrmAuth::Ntlm { user, .. } | WinrmAuth::Basic { user, .. } => user,
        }
    }
}

/// Everything needed to reach one WinRM listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WinrmSettings {
    pub host: String,
    /// Defaults to 5985 (HTTP) or 5986 (HTTPS).
    pub port: Option<u16>,
    pub scheme: WinrmScheme,
    pub auth: WinrmAuth,
    pub connect_timeout: Duration,
    /// How long one Receive may wait on the server for output (WS-Management
    /// OperationTimeout); command deadlines are enforced separately.
    pub poll_timeout: Duration,
}

impl WinrmSettings {
    pub fn new(host: impl Into<String>, scheme: WinrmScheme, auth: WinrmAuth) -> Self {
        Self {
            host: host.into(),
            port: None,
            scheme,
            auth,
            connect_timeout: Duration::from_secs(15),
            poll_timeout: Duration::from_secs(20),
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub(crate) fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.scheme {
            WinrmScheme::Http => 5985,
            WinrmScheme::Https(_) => 5986,
        })
    }
}

/// The WinRM transport. Commands are serialised on one shell (WinRM runs one command per
/// shell at a time); use several transports for parallelism.
#[derive(Debug)]
pub struct WinrmTransport {
    // Boxed: the settings are large, and transports are moved around in `AnyTransport`.
    sessions: Box<WinrmSessions>,
}

impl WinrmTransport {
    /// Checks the settings; no connection is made until the first operation.
    pub fn new(settings: WinrmSettings) -> Result<Self, TransportError> {
        let target = format!(
            "{}@{}:{}",
            settings.auth.user(),
            settings.host,
            settings.effective_port()
        );
        let config_err = |detail: &str| TransportError::Config {
            target: target.clone(),
            detail: detail.to_owned(),
        };
        match (&settings.scheme, &settings.auth) {
            (WinrmScheme::Http, WinrmAuth::Basic { .. }) => {
                return Err(config_err(
                    "basic authentication over http would send the password in clear text; \
                     use https, or ntlm (which encrypts the messages)",
                ));
            }
            (WinrmScheme::Https(TlsVerify::PinnedSha256(fp)), _)
                if pin::parse_fingerprint(fp).is_none() =>
            {
                return Err(config_err(
                    "the pinned certificate fingerprint must be 64 hex digits (sha256)",
                ));
            }
            (WinrmScheme::Https(TlsVerify::InsecureAcceptAny), _) => {
                tracing::warn!(target_host = %target,
                    "WINRM TLS CERTIFICATE NOT VERIFIED (insecure_accept_any_certificate): \
                     the host is not authenticated; use only for disposable labs");
            }
            _ => {}
        }
        Ok(Self {
            sessions: Box::new(WinrmSessions::new(settings, target)),
        })
    }

    /// Deletes the remote shell (best-effort). Dropping the transport without this leaves
    /// the shell to the server's idle timeout.
    pub async fn close(&self) {
        self.sessions.close().await;
    }

    fn invocation(&self, script: &str) -> Invocation {
        let full = format!("{PS_PRELUDE}{script}");
        let flags: Vec<String> = PS_FLAGS.split(' ').map(str::to_owned).collect();
        let encoded = encode_powershell(&full);
        if encoded.len() + 100 <= MAX_COMMAND_LINE {
            let mut args = flags;
            args.extend(["-EncodedCommand".to_owned(), encoded]);
            Invocation {
                program: "powershell.exe".into(),
                args,
                stdin: None,
            }
        } else {
            let mut args = flags;
            args.extend([
                "-EncodedCommand".to_owned(),
                encode_powershell(PS_STDIN_BOOTSTRAP),
            ]);
            Invocation {
                program: "powershell.exe".into(),
                args,
                stdin: Some(B64.encode(full.as_bytes()).into_bytes()),
            }
        }
    }

    async fn powershell_json(
        &self,
        script: &str,
        what: &str,
    ) -> Result<serde_json::Value, TransportError> {
        let out = self.powershell(script, Duration::from_secs(120)).await?;
        out.json(self.target()).map_err(|e| match e {
            TransportError::Remote {
                target,
                exit_code,
                stderr,
                ..
            } => TransportError::Remote {
                target,
                what: what.to_owned(),
                exit_code,
                stderr,
            },
            other => other,
        })
    }

    fn too_big(&self, what: String, size: u64) -> TransportError {
        TransportError::Unsupported {
            transport: "winrm",
            what,
            why: format!(
                "{size} bytes is over the {SMALL_FILE_MAX}-byte limit for files over winrm; send \
                 bulk files as one archive over sftp or powershell direct"
            ),
        }
    }
}

/// Reads `{"size": n, "sha256": "..."}` from a script's JSON answer.
fn size_and_hash(v: &serde_json::Value) -> Option<(u64, String)> {
    Some((
        v.get("size")?.as_u64()?,
        v.get("sha256")?.as_str()?.to_ascii_lowercase(),
    ))
}

impl Transport for WinrmTransport {
    fn target(&self) -> &str {
        self.sessions.target()
    }

    async fn exec(&self, cmd: &Command) -> Result<ExecOutput, TransportError> {
        let inv = match &cmd.line {
            // A raw line goes to cmd.exe, which is what WinRM's shell runs.
            CommandLine::Shell(line) => Invocation {
                program: line.clone(),
                args: Vec::new(),
                stdin: None,
            },
            CommandLine::Program { .. } => self.invocation(&cmd.to_powershell_script()),
        };
        self.sessions.run(&inv, cmd.timeout, cmd.output_cap).await
    }

    async fn powershell(
        &self,
        script: &str,
        timeout: Duration,
    ) -> Result<PsOutput, TransportError> {
        let inv = self.invocation(script);
        let out = self
            .sessions
            .run(&inv, timeout, crate::command::DEFAULT_OUTPUT_CAP)
            .await?;
        Ok(out.into())
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<TransferReport, TransportError> {
        let local_err = |op, source| TransportError::LocalIo {
            op,
            path: local.to_owned(),
            source,
        };
        let size = std::fs::metadata(local)
            .map_err(|e| local_err("stat", e))?
            .len();
        if size > SMALL_FILE_MAX {
            return Err(self.too_big(format!("upload {}", local.display()), size));
        }
        let data = std::fs::read(local).map_err(|e| local_err("read", e))?;
        let sha = hex::encode(Sha256::digest(&data));
        let script = format!(
            "$p = {path}\n\
             [IO.File]::WriteAllBytes($p, [Convert]::FromBase64String('{b64}'))\n\
             $h = (Get-FileHash -Algorithm SHA256 -LiteralPath $p).Hash.ToLower()\n\
             @{{ size = (Get-Item -LiteralPath $p).Length; sha256 = $h }} | ConvertTo-Json -Compress",
            path = ps_quote(remote),
            b64 = B64.encode(&data),
        );
        let v = self
            .powershell_json(&script, &format!("write remote file {remote:?}"))
            .await?;
        let (rsize, rsha) = size_and_hash(&v).unwrap_or((0, String::new()));
        if rsize != data.len() as u64 || rsha != sha {
            return Err(TransportError::Verify {
                target: self.target().to_owned(),
                path: remote.to_owned(),
                expected_size: data.len() as u64,
                expected_sha256: sha,
                actual_size: rsize,
                actual_sha256: rsha,
            });
        }
        Ok(TransferReport {
            size: rsize,
            sha256: sha,
        })
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<TransferReport, TransportError> {
        let script = format!(
            "$p = {path}\n\
             $len = (Get-Item -LiteralPath $p).Length\n\
             if ($len -gt {max}) {{ @{{ size = $len }} | ConvertTo-Json -Compress; exit 0 }}\n\
             $b = [IO.File]::ReadAllBytes($p)\n\
             $h = (Get-FileHash -Algorithm SHA256 -LiteralPath $p).Hash.ToLower()\n\
             @{{ size = $b.Length; sha256 = $h; data = [Convert]::ToBase64String($b) }} | ConvertTo-Json -Compress",
            path = ps_quote(remote),
            max = SMALL_FILE_MAX,
        );
        let v = self
            .powershell_json(&script, &format!("read remote file {remote:?}"))
            .await?;
        let rsize = v.get("size").and_then(|s| s.as_u64()).unwrap_or(0);
        if rsize > SMALL_FILE_MAX {
            return Err(self.too_big(format!("download {remote:?}"), rsize));
        }
        let data = v
            .get("data")
            .and_then(|d| d.as_str())
            .and_then(|d| B64.decode(d).ok())
            .unwrap_or_default();
        let (rsize, rsha) = size_and_hash(&v).unwrap_or((0, String::new()));
        let sha = hex::encode(Sha256::digest(&data));
        if rsize != data.len() as u64 || rsha != sha {
            return Err(TransportError::Verify {
                target: self.target().to_owned(),
                path: remote.to_owned(),
                expected_size: rsize,
                expected_sha256: rsha,
                actual_size: data.len() as u64,
                actual_sha256: sha,
            });
        }
        std::fs::write(local, &data).map_err(|source| TransportError::LocalIo {
            op: "write",
            path: local.to_owned(),
            source,
        })?;
        Ok(TransferReport {
            size: rsize,
            sha256: sha,
        })
    }

    async fn health(&self) -> Result<(), TransportError> {
        let out = self
            .sessions
            .run(
                &Invocation {
                    program: "exit 0".into(),
                    args: Vec::new(),
                    stdin: None,
                },
                Duration::from_secs(60),
                4096,
            )
            .await?;
        if out.exit_code != 0 {
            return Err(TransportError::Remote {
                target: self.target().to_owned(),
                what: "run a health check".into(),
                exit_code: out.exit_code,
                stderr: crate::redact::scrub(&out.stderr_text()),
            });
        }
        Ok(())
    }
}
