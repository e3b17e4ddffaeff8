//! The one error type of every transport, with the transient/permanent split callers retry on.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::secret::SecretError;

/// What went wrong talking to a host or guest. Messages are lowercase fragments that read
/// after "failed to ..."; none of them ever contains a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The TCP connection could not be made (refused, unreachable, timed out).
    #[error("connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: io::Error,
    },
    /// The SSH handshake (banner, key exchange) failed, typically because the peer is still
    /// booting or was restarted.
    #[error("complete the ssh handshake with {target}")]
    Handshake {
        target: String,
        #[source]
        source: ssh2::Error,
    },
    /// The server's host key is not in the known_hosts file.
    #[error(
        "verify the host key of {target}: no entry in {known_hosts} (add one with \
         `ssh-keyscan -p PORT HOST >> FILE` after checking the fingerprint, or opt out with \
         insecure_accept_any_host_key for a disposable lab)"
    )]
    HostKeyUnknown {
        target: String,
        known_hosts: PathBuf,
    },
    /// The server's host key differs from the one recorded in known_hosts.
    #[error(
        "verify the host key of {target}: it does not match the entry in {known_hosts} \
         (possible man-in-the-middle, or the host was reinstalled)"
    )]
    HostKeyMismatch {
        target: String,
        known_hosts: PathBuf,
    },
    /// The server's host key is not the pinned one. Both fingerprints are OpenSSH's
    /// `SHA256:<base64>` form.
    #[error(
        "verify the host key of {target}: its {key_type} key has fingerprint {actual}, not the \
         pinned {expected} (possible man-in-the-middle, or the host was reinstalled; \
         `ssh-keygen -lf` on the host's public key file prints its fingerprint)"
    )]
    HostKeyPinMismatch {
        target: String,
        key_type: String,
        expected: String,
        actual: String,
    },
    /// The TLS certificate is not the pinned one.
    #[error(
        "verify the tls certificate of {target}: its sha256 fingerprint {actual} is not the \
         pinned {expected} (possible man-in-the-middle, or the listener certificate was renewed)"
    )]
    CertificateMismatch {
        target: String,
        expected: String,
        actual: String,
    },
    /// The server rejected the credentials. Retrying will not help.
    #[error("authenticate on {target} with {method}: {detail}")]
    AuthRejected {
        target: String,
        user: String,
        method: &'static str,
        detail: String,
    },
    /// The authentication service did not answer (connection dropped during auth, service
    /// unavailable): a booting machine does this.
    #[error("authenticate on {target}: the service is not ready")]
    AuthNotReady {
        target: String,
        user: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A secret named by the configuration could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The configuration cannot work (e.g. Basic auth over plain HTTP).
    #[error("use the transport configuration for {target}: {detail}")]
    Config { target: String, detail: String },
    /// An established session broke or refused an operation.
    #[error("{op} on {target}")]
    Session {
        target: String,
        op: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        transient: bool,
    },
    /// A command, transfer or connection attempt ran past its deadline. For a command, the
    /// remote process was killed (see docs/transports.md for how).
    #[error("{what} on {target}: timed out after {after:?}")]
    Timeout {
        target: String,
        what: String,
        after: Duration,
        /// Connecting/authenticating timed out (a booting guest): worth retrying.
        transient: bool,
    },
    /// A local file could not be read or written.
    #[error("{op} local file {path}")]
    LocalIo {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A remote file operation (SFTP) failed.
    #[error("{op} remote file {path:?} on {target}")]
    RemoteFile {
        target: String,
        op: &'static str,
        path: String,
        #[source]
        source: ssh2::Error,
    },
    /// A transferred file does not have the expected size or hash on the other side.
    #[error(
        "verify {path:?} on {target}: expected {expected_size} bytes sha256 {expected_sha256}, \
         found {actual_size} bytes sha256 {actual_sha256}"
    )]
    Verify {
        target: String,
        path: String,
        expected_size: u64,
        expected_sha256: String,
        actual_size: u64,
        actual_sha256: String,
    },
    /// A helper command we ran remotely (hashing, killing) or a PowerShell script failed.
    #[error("{what} on {target}: exit code {exit_code}: {stderr}")]
    Remote {
        target: String,
        what: String,
        exit_code: i32,
        stderr: String,
    },
    /// Output that should have been JSON was not.
    #[error("parse the json output of {what} on {target} ({snippet:?})")]
    Json {
        target: String,
        what: String,
        snippet: String,
        #[source]
        source: serde_json::Error,
    },
    /// The WinRM client failed.
    #[error("{op} over winrm on {target}")]
    Winrm {
        target: String,
        op: String,
        #[source]
        source: winrm_rs::WinrmError,
    },
    /// The transport cannot do this by design (e.g. bulk files over WinRM).
    #[error("{what} over {transport}: not supported ({why})")]
    Unsupported {
        transport: &'static str,
        what: String,
        why: String,
    },
    /// The blocking worker thread panicked or was cancelled.
    #[error("run a blocking ssh task for {target}")]
    Worker {
        target: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

impl TransportError {
    /// Whether retrying the same operation later may succeed: the peer is booting or
    /// restarting, the network blipped, or the auth service is not up yet. Bad credentials,
    /// host key problems, configuration, local files and remote command failures are
    /// permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            TransportError::Connect { source, .. } => io_is_transient(source),
            TransportError::Handshake { .. } | TransportError::AuthNotReady { .. } => true,
            TransportError::Session { transient, .. } => *transient,
            TransportError::Timeout { transient, .. } => *transient,
            TransportError::RemoteFile { source, .. } => ssh_is_transient(source),
            TransportError::Winrm { source, .. } => winrm_is_transient(source),
            TransportError::HostKeyUnknown { .. }
            | TransportError::HostKeyMismatch { .. }
            | TransportError::HostKeyPinMismatch { .. }
            | TransportError::CertificateMismatch { .. }
            | TransportError::AuthRejected { .. }
            | TransportError::Secret(_)
            | TransportError::Config { .. }
            | TransportError::LocalIo { .. }
            | TransportError::Verify { .. }
            | TransportError::Remote { .. }
            | TransportError::Json { .. }
            | TransportError::Unsupported { .. }
            | TransportError::Worker { .. } => false,
        }
    }
}

/// Network conditions a booting or rebooting machine produces.
pub(crate) fn io_is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | BrokenPipe
            | TimedOut
            | HostUnreachable
            | NetworkUnreachable
            | NetworkDown
            | AddrNotAvailable
            | UnexpectedEof
            | Interrupted
            | WouldBlock
    )
}

/// libssh2 error codes that mean "the connection broke or stalled", as opposed to a
/// refusal by the server.
pub(crate) fn ssh_is_transient(e: &ssh2::Error) -> bool {
    match e.code() {
        ssh2::ErrorCode::Session(code) => matches!(
            code,
            -2  // BANNER_RECV
            | -3  // BANNER_SEND
            | -5  // KEX_FAILURE
            | -7  // SOCKET_SEND
            | -8  // KEY_EXCHANGE_FAILURE
            | -9  // TIMEOUT
            | -13 // SOCKET_DISCONNECT
            | -26 // CHANNEL_CLOSED
            | -30 // SOCKET_TIMEOUT
            | -43 // SOCKET_RECV
            | -45 // BAD_SOCKET
        ),
        // SFTP status codes: only "connection lost" is transient.
        ssh2::ErrorCode::SFTP(code) => matches!(code, 6 | 7), // NO_CONNECTION, CONNECTION_LOST
    }
}

/// HTTP-level failures and 5xx answers are transient (WinRM service starting); a 401, a
/// SOAP fault or a protocol error is not.
pub(crate) fn winrm_is_transient(e: &winrm_rs::WinrmError) -> bool {
    use winrm_rs::WinrmError as W;
    match e {
        W::Http(err) => {
            err.is_connect()
                || err.is_timeout()
                || err.is_request()
                || err.status().is_some_and(|s| s.is_server_error())
        }
        W::Timeout(_) => true,
        // winrm-rs reports every non-success HTTP status as AuthFailed("HTTP <status> ...").
        W::AuthFailed(msg) => {
            msg.contains("HTTP 502") || msg.contains("HTTP 503") || msg.contains("HTTP 504")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_and_reset_are_transient_permission_is_not() {
        let refused = TransportError::Connect {
            target: "h:22".into(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(refused.is_transient());
        let denied = TransportError::Connect {
            target: "h:22".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert!(!denied.is_transient());
    }

    #[test]
    fn auth_and_host_key_failures_are_permanent() {
        let e = TransportError::AuthRejected {
            target: "h:22".into(),
            user: "u".into(),
            method: "password",
            detail: "x".into(),
        };
        assert!(!e.is_transient());
        let e = TransportError::HostKeyMismatch {
            target: "h:22".into(),
            known_hosts: "/k".into(),
        };
        assert!(!e.is_transient());
        assert!(e.to_string().contains("does not match"));
    }

    #[test]
    fn ssh_socket_errors_are_transient_auth_errors_not() {
        let disc = ssh2::Error::new(ssh2::ErrorCode::Session(-13), "disconnect");
        assert!(ssh_is_transient(&disc));
        let auth = ssh2::Error::new(ssh2::ErrorCode::Session(-18), "auth failed");
        assert!(!ssh_is_transient(&auth));
    }

    #[test]
    fn winrm_503_is_transient_401_is_not() {
        let e = winrm_rs::WinrmError::AuthFailed("HTTP 503 Service Unavailable from WinRM".into());
        assert!(winrm_is_transient(&e));
        let e = winrm_rs::WinrmError::AuthFailed("HTTP 401 Unauthorized from WinRM: ".into());
        assert!(!winrm_is_transient(&e));
    }
}
