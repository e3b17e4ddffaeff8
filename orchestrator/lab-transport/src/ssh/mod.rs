//! SSH transport over ssh2 (libssh2): a pool of authenticated sessions driven from
//! `spawn_blocking`, commands with timeouts that kill the remote process, SFTP transfers
//! checked by size and SHA-256, and PowerShell for Windows OpenSSH hosts.

mod connect;
mod exec;
mod pool;
mod sftp;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::command::{
    Command, CommandLine, ExecOutput, MAX_ENCODED_COMMAND_LINE, PS_FLAGS, PS_PRELUDE,
    PS_STDIN_BOOTSTRAP, encode_powershell, posix_quote, ps_quote,
};
use crate::error::TransportError;
use crate::secret::SecretRef;
use crate::transport::{PsOutput, TransferReport, Transport};
use exec::{ExecRequest, KillMode};
use pool::Pool;

/// How the client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshAuth {
    /// A private key file (OpenSSH or PEM format), optionally encrypted.
    KeyFile {
        path: PathBuf,
        passphrase: Option<SecretRef>,
    },
    /// A password (Windows OpenSSH hosts often have only this at first).
    Password(SecretRef),
    /// Whatever identities the ssh-agent at `SSH_AUTH_SOCK` offers.
    Agent,
}

/// How the server's identity is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Against an OpenSSH known_hosts file (the default and the only safe choice).
    KnownHosts(PathBuf),
    /// Against one pinned key fingerprint, `SHA256:<base64>` as `ssh-keygen -lf` prints it
    /// (the lab file's `host_key_sha256`); no known_hosts file is read. The server is asked
    /// for its ed25519 key first, so pin that one where the host has several.
    PinnedSha256(String),
    /// Accept any key, logged as a warning on every connection. For disposable labs only:
    /// anyone on the path can impersonate the host and collect the credentials.
    InsecureAcceptAny,
}

/// What runs on the other side, which decides quoting and how a timed-out command dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteOs {
    /// A POSIX login shell (Linux, BSD, macOS).
    Posix,
    /// Windows OpenSSH: programs go through PowerShell; the default shell (cmd.exe or
    /// PowerShell) only sees [`CommandLine::Shell`] lines.
    Windows,
}

/// Everything needed to reach one SSH server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub auth: SshAuth,
    pub host_key: HostKeyPolicy,
    pub remote_os: RemoteOs,
    /// TCP connect + handshake + authentication, each.
    pub connect_timeout: Duration,
    /// How long one blocking SFTP call may stall before the transfer fails.
    pub transfer_stall_timeout: Duration,
    /// Keepalive period for idle sessions; zero disables keepalives.
    pub keepalive_interval: Duration,
    /// Sessions kept for parallel commands.
    pub pool_size: usize,
    /// The PowerShell executable (`powershell.exe`, or `pwsh` for PowerShell 7).
    pub powershell: String,
}

impl SshConfig {
    /// A configuration with defaults: port 22, POSIX, 15 s connect timeout, 60 s stall
    /// timeout, 30 s keepalive, a pool of 4, `powershell.exe`.
    pub fn new(
        host: impl Into<String>,
        user: impl Into<String>,
        auth: SshAuth,
        host_key: HostKeyPolicy,
    ) -> Self {
        Self {
            host: host.into(),
            port: 22,
            user: user.into(),
            auth,
            host_key,
            remote_os: RemoteOs::Posix,
            connect_timeout: Duration::from_secs(15),
            transfer_stall_timeout: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(30),
            pool_size: 4,
            powershell: "powershell.exe".into(),
        }
    }

    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    pub fn remote_os(mut self, os: RemoteOs) -> Self {
        self.remote_os = os;
        self
    }
}

/// The SSH transport. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct SshTransport {
    pool: Arc<Pool>,
    keepalive: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        if let Some(k) = self.keepalive.take() {
            k.abort();
        }
    }
}

impl SshTransport {
    /// Creates the transport; no connection is made until the first operation (use
    /// [`Transport::health`] to connect eagerly). Inside a tokio runtime a keepalive task
    /// is started for idle sessions.
    pub fn new(config: SshConfig) -> Self {
        if config.host_key == HostKeyPolicy::InsecureAcceptAny {
            tracing::warn!(host = %config.host,
                "ssh transport configured with insecure_accept_any_host_key: the host's \
                 identity will not be checked");
        }
        let target = format!("{}@{}:{}", config.user, config.host, config.port);
        let interval = config.keepalive_interval;
        let pool = Arc::new(Pool::new(config, target));
        let keepalive = (!interval.is_zero())
            .then(|| tokio::runtime::Handle::try_current().ok())
            .flatten()
            .map(|h| h.spawn(pool::keepalive_loop(Arc::downgrade(&pool), interval)));
        Self { pool, keepalive }
    }

    pub fn config(&self) -> &SshConfig {
        &self.pool.config
    }

    /// Idle sessions currently pooled.
    pub fn idle_sessions(&self) -> usize {
        self.pool.idle_count()
    }

    async fn run_line(
        &self,
        line: String,
        stdin: Option<Vec<u8>>,
        timeout: Duration,
        cap: usize,
    ) -> Result<ExecOutput, TransportError> {
        let kill = match self.pool.config.remote_os {
            RemoteOs::Posix => KillMode::PosixProcessGroup,
            RemoteOs::Windows => KillMode::CloseChannel,
        };
        let target = self.pool.target.clone();
        let deadline = Instant::now() + timeout;
        self.pool
            .run(move |conn| {
                let req = ExecRequest {
                    line: &line,
                    stdin: stdin.as_deref(),
                    deadline,
                    timeout,
                    cap,
                    kill,
                };
                exec::exec(conn, &req, &target)
            })
            .await
    }

    /// The remote SHA-256 of a file, computed by the remote side.
    async fn remote_sha256(&self, remote: &str) -> Result<String, TransportError> {
        let (text, out) = match self.pool.config.remote_os {
            RemoteOs::Posix => {
                // Reading from stdin keeps the name out of the output (sha256sum escapes
                // names with newlines). OpenSSL uses the CPU's SHA instructions (about 4x
                // coreutils here); coreutils, then `shasum` (BSD, macOS) are fallbacks.
                let q = posix_quote(remote);
                let line = format!(
                    "if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 < {q}; \
                     elif command -v sha256sum >/dev/null 2>&1; then sha256sum < {q}; \
                     else shasum -a 256 < {q}; fi"
                );
                let out = self
                    .run_line(line, None, Duration::from_secs(600), 4096)
                    .await?;
                (out.stdout_text(), out)
            }
            RemoteOs::Windows => {
                let script = format!(
                    "(Get-FileHash -Algorithm SHA256 -LiteralPath {}).Hash.ToLower()",
                    ps_quote(&windows_path(remote))
                );
                let ps = self.powershell(&script, Duration::from_secs(600)).await?;
                let out = ExecOutput {
                    exit_code: ps.exit_code,
                    stdout: ps.stdout.clone().into_bytes(),
                    stderr: ps.stderr.into_bytes(),
                    truncated: false,
                };
                (ps.stdout, out)
            }
        };
        // `HEX  -` (coreutils), `SHA2-256(stdin)= HEX` (OpenSSL 3), `(stdin)= HEX` (1.1).
        let hash = text
            .split(|c: char| c.is_whitespace() || c == '=')
            .find(|w| w.len() == 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
            .unwrap_or_default()
            .to_owned();
        if out.exit_code != 0 || hash.is_empty() {
            return Err(TransportError::Remote {
                target: self.pool.target.clone(),
                what: format!("hash remote file {remote:?}"),
                exit_code: out.exit_code,
                stderr: crate::redact::scrub(out.stderr_text().trim()),
            });
        }
        Ok(hash.to_ascii_lowercase())
    }

    fn powershell_line(&self, script: &str) -> (String, Option<Vec<u8>>) {
        use base64::Engine;
        let full = format!("{PS_PRELUDE}{script}");
        let exe = match self.pool.config.remote_os {
            RemoteOs::Posix => posix_quote(&self.pool.config.powershell),
            RemoteOs::Windows if self.pool.config.powershell.contains(' ') => {
                format!("\"{}\"", self.pool.config.powershell)
            }
            RemoteOs::Windows => self.pool.config.powershell.clone(),
        };
        let direct = format!(
            "{exe} {PS_FLAGS} -EncodedCommand {}",
            encode_powershell(&full)
        );
        if direct.len() <= MAX_ENCODED_COMMAND_LINE {
            return (direct, None);
        }
        let stdin = base64::engine::general_purpose::STANDARD.encode(full.as_bytes());
        (
            format!(
                "{exe} {PS_FLAGS} -EncodedCommand {}",
                encode_powershell(PS_STDIN_BOOTSTRAP)
            ),
            Some(stdin.into_bytes()),
        )
    }
}

/// `/C:/dir/f` (the SFTP spelling) -> `C:/dir/f` (what PowerShell expects).
fn windows_path(p: &str) -> String {
    let b = p.as_bytes();
    if b.len() >= 3 && b[0] == b'/' && b[1].is_ascii_alphabetic() && b[2] == b':' {
        p[1..].to_owned()
    } else {
        p.to_owned()
    }
}

impl Transport for SshTransport {
    fn target(&self) -> &str {
        &self.pool.target
    }

    async fn exec(&self, cmd: &Command) -> Result<ExecOutput, TransportError> {
        let (line, stdin) = match (&cmd.line, self.pool.config.remote_os) {
            (_, RemoteOs::Posix) => (cmd.to_posix_line(), None),
            // The default shell of the Windows host gets raw lines as written.
            (CommandLine::Shell(line), RemoteOs::Windows) => (line.clone(), None),
            (CommandLine::Program { .. }, RemoteOs::Windows) => {
                self.powershell_line(&cmd.to_powershell_script())
            }
        };
        self.run_line(line, stdin, cmd.timeout, cmd.output_cap)
            .await
    }

    async fn powershell(
        &self,
        script: &str,
        timeout: Duration,
    ) -> Result<PsOutput, TransportError> {
        let (line, stdin) = self.powershell_line(script);
        let out = self
            .run_line(line, stdin, timeout, crate::command::DEFAULT_OUTPUT_CAP)
            .await?;
        Ok(out.into())
    }

    async fn upload(&self, local: &Path, remote: &str) -> Result<TransferReport, TransportError> {
        let target = self.pool.target.clone();
        let stall = self.pool.config.transfer_stall_timeout;
        let (l, r) = (local.to_owned(), remote.to_owned());
        let sent = self
            .pool
            .run(move |conn| sftp::upload(conn, &l, &r, &target, stall))
            .await?;
        let target = self.pool.target.clone();
        let r = remote.to_owned();
        let size = self
            .pool
            .run(move |conn| sftp::remote_size(conn, &r, &target, stall))
            .await?;
        let sha = self.remote_sha256(remote).await?;
        self.verify(remote, &sent, size, sha)
    }

    async fn download(&self, remote: &str, local: &Path) -> Result<TransferReport, TransportError> {
        let target = self.pool.target.clone();
        let stall = self.pool.config.transfer_stall_timeout;
        let partial = sftp::partial_path(local);
        let (p, r) = (partial.clone(), remote.to_owned());
        // The remote side hashes the file on a second pooled session while it streams to
        // us: both read the same page cache, on different cores.
        let (transfer, remote_sha) = tokio::join!(
            self.pool
                .run(move |conn| sftp::download(conn, &r, &p, &target, stall)),
            self.remote_sha256(remote)
        );
        let checked = match (transfer, remote_sha) {
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
            (Ok((sent, remote_size)), Ok(sha)) => self.verify(remote, &sent, remote_size, sha),
        };
        match checked {
            Ok(report) => {
                std::fs::rename(&partial, local).map_err(|source| TransportError::LocalIo {
                    op: "rename into place",
                    path: local.to_owned(),
                    source,
                })?;
                Ok(report)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                Err(e)
            }
        }
    }

    async fn health(&self) -> Result<(), TransportError> {
        let out = self
            .run_line(
                "exit 0".into(),
                None,
                self.pool.config.connect_timeout * 2,
                4096,
            )
            .await?;
        if out.exit_code != 0 {
            return Err(TransportError::Remote {
                target: self.pool.target.clone(),
                what: "run a health check".into(),
                exit_code: out.exit_code,
                stderr: crate::redact::scrub(&out.stderr_text()),
            });
        }
        Ok(())
    }
}

impl SshTransport {
    fn verify(
        &self,
        remote: &str,
        sent: &sftp::Sent,
        remote_size: u64,
        remote_sha: String,
    ) -> Result<TransferReport, TransportError> {
        if remote_size != sent.size || remote_sha != sent.sha256 {
            return Err(TransportError::Verify {
                target: self.pool.target.clone(),
                path: remote.to_owned(),
                expected_size: sent.size,
                expected_sha256: sent.sha256.clone(),
                actual_size: remote_size,
                actual_sha256: remote_sha,
            });
        }
        Ok(TransferReport {
            size: sent.size,
            sha256: sent.sha256.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sftp_drive_paths_become_powershell_paths() {
        assert_eq!(windows_path("/C:/x y/f.txt"), "C:/x y/f.txt");
        assert_eq!(windows_path("/home/u/f"), "/home/u/f");
    }
}
