//! Remote transports to hosts and guests: SSH (ssh2) and WinRM (winrm-rs).
//!
//! ```text
//!  backend ──Transport──> SshTransport ──pool of ssh2 sessions (spawn_blocking)──> sshd
//!                    └──> WinrmTransport ──one shell, winrm-rs──> WinRM (5985/5986)
//!                                             └─ pinned HTTPS: loopback TLS forwarder
//! ```
//!
//! Every implementation runs commands with deadlines and output caps, runs PowerShell sent
//! as `-EncodedCommand`, moves files with size and SHA-256 checks, and reports errors that
//! say whether a retry can help ([`TransportError::is_transient`]). Secrets are named by
//! [`SecretRef`], resolved at connect time and masked in logs by [`redact::Redactor`].
//! See docs/transports.md for configuration and security trade-offs.

pub mod command;
pub mod error;
pub mod redact;
pub mod secret;
pub mod ssh;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod transport;
pub mod winrm;

pub use command::{Command, CommandLine, ExecOutput, encode_powershell, posix_quote, ps_quote};
pub use error::TransportError;
pub use redact::{RedactingMakeWriter, Redactor};
pub use secret::{Secret, SecretError, SecretRef};
pub use ssh::{HostKeyPolicy, RemoteOs, SshAuth, SshConfig, SshTransport};
pub use transport::{AnyTransport, PsOutput, TransferReport, Transport, powershell_json};
pub use winrm::{TlsVerify, WinrmAuth, WinrmScheme, WinrmSettings, WinrmTransport};
