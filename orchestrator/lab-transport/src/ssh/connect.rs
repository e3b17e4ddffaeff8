//! Opening one authenticated ssh2 session: TCP connect, handshake, host key verification
//! against known_hosts or a pinned fingerprint, authentication. Blocking; runs on a `spawn_blocking` thread.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ssh2::{CheckResult, KnownHostFileKind, MethodType, Session};

use super::{HostKeyPolicy, SshAuth, SshConfig};
use crate::error::{TransportError, ssh_is_transient};

/// One live session plus a second handle on its socket, which `poll` waits on while the
/// session is in non-blocking mode.
pub(crate) struct Conn {
    pub(crate) session: Session,
    pub(crate) socket: TcpStream,
    pub(crate) last_used: Instant,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("peer", &self.socket.peer_addr().ok())
            .finish()
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX).max(1)
}

/// Connects, verifies the host key and authenticates.
pub(crate) fn connect(config: &SshConfig, target: &str) -> Result<Conn, TransportError> {
    let tcp = tcp_connect(config, target)?;
    let socket = tcp.try_clone().map_err(|source| TransportError::Connect {
        target: target.to_owned(),
        source,
    })?;
    let mut session = Session::new().map_err(|source| TransportError::Handshake {
        target: target.to_owned(),
        source,
    })?;
    session.set_tcp_stream(tcp);
    session.set_timeout(millis(config.connect_timeout));

    // Offer only the host key types we have on record, so the server cannot pick one we
    // cannot check (libssh2 would then report a mismatch rather than a missing entry).
    let prefs = match &config.host_key {
        HostKeyPolicy::KnownHosts(path) => {
            known_key_types(&session, path, &config.host, config.port)
        }
        // A pin names no key type: ask for ed25519 first, the key the docs tell users to pin.
        HostKeyPolicy::PinnedSha256(_) => Some(PIN_KEY_PREFERENCE.to_owned()),
        HostKeyPolicy::InsecureAcceptAny => None,
    };
    if let Some(prefs) = prefs {
        // An unsupported list only narrows nothing: ignore failure, the check still runs.
        let _ = session.method_pref(MethodType::HostKey, &prefs);
    }

    session.handshake().map_err(|source| {
        if source.code() == ssh2::ErrorCode::Session(-9) {
            TransportError::Timeout {
                target: target.to_owned(),
                what: "complete the ssh handshake".into(),
                after: config.connect_timeout,
                transient: true,
            }
        } else {
            TransportError::Handshake {
                target: target.to_owned(),
                source,
            }
        }
    })?;
    verify_host_key(&session, config, target)?;
    authenticate(&session, config, target)?;
    if !config.keepalive_interval.is_zero() {
        // want_reply=true makes the server answer, so a dead peer shows up as an error.
        let secs = u32::try_from(config.keepalive_interval.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        session.set_keepalive(true, secs);
    }
    session.set_timeout(0);
    Ok(Conn {
        session,
        socket,
        last_used: Instant::now(),
    })
}

fn tcp_connect(config: &SshConfig, target: &str) -> Result<TcpStream, TransportError> {
    let connect_err = |source| TransportError::Connect {
        target: target.to_owned(),
        source,
    };
    let addrs = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(connect_err)?;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address resolved");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, config.connect_timeout) {
            Ok(s) => {
                // Small command round trips matter more than bulk packing.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(connect_err(last))
}

/// The key algorithms recorded for this host in a known_hosts file, as a libssh2 method
/// preference string, or None when nothing readable is recorded (hashed entries).
fn known_key_types(session: &Session, path: &Path, host: &str, port: u16) -> Option<String> {
    let mut kh = session.known_hosts().ok()?;
    kh.read_file(path, KnownHostFileKind::OpenSSH).ok()?;
    let names = [host.to_owned(), format!("[{host}]:{port}")];
    let mut types: Vec<&'static str> = Vec::new();
    for entry in kh.hosts().ok()? {
        let Some(name) = entry.name() else { continue };
        if !name.split(',').any(|n| names.iter().any(|m| m == n)) {
            continue;
        }
        let Some(kind) = key_type(entry.key()) else {
            continue;
        };
        for alg in host_key_algorithms(&kind) {
            if !types.contains(alg) {
                types.push(alg);
            }
        }
    }
    (!types.is_empty()).then(|| types.join(","))
}

/// The algorithm name at the start of a base64 public key blob.
fn key_type(b64: &str) -> Option<String> {
    blob_key_type(&B64.decode(b64.trim()).ok()?)
}

/// Host key algorithms offered when pinning, ed25519 first.
const PIN_KEY_PREFERENCE: &str = "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,\
ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa";

/// OpenSSH's fingerprint of a public key blob: `SHA256:` and the unpadded base64 of its
/// SHA-256.
pub(crate) fn fingerprint(blob: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(sha2::Sha256::digest(blob))
    )
}

/// A pin in the `SHA256:<base64>` form, normalised to what [`fingerprint`] prints (the
/// `SHA256:` prefix may be left out, trailing `=` padding is dropped), or None if it is
/// not the SHA-256 of anything.
pub(crate) fn normalise_pin(pin: &str) -> Option<String> {
    let pin = pin.trim();
    let b64 = pin
        .strip_prefix("SHA256:")
        .or_else(|| pin.strip_prefix("sha256:"))
        .unwrap_or(pin)
        .trim_end_matches('=');
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(b64)
        .ok()?;
    (bytes.len() == 32).then(|| format!("SHA256:{b64}"))
}

fn host_key_algorithms(kind: &str) -> &'static [&'static str] {
    match kind {
        "ssh-ed25519" => &["ssh-ed25519"],
        "ssh-rsa" => &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
        "ecdsa-sha2-nistp256" => &["ecdsa-sha2-nistp256"],
        "ecdsa-sha2-nistp384" => &["ecdsa-sha2-nistp384"],
        "ecdsa-sha2-nistp521" => &["ecdsa-sha2-nistp521"],
        _ => &[],
    }
}

fn verify_host_key(
    session: &Session,
    config: &SshConfig,
    target: &str,
) -> Result<(), TransportError> {
    let path = match &config.host_key {
        HostKeyPolicy::InsecureAcceptAny => {
            tracing::warn!(
                target_host = %target,
                "SSH HOST KEY NOT VERIFIED (insecure_accept_any_host_key): anyone on the path \
                 can impersonate this host and capture its credentials; use only for \
                 disposable labs"
            );
            return Ok(());
        }
        HostKeyPolicy::KnownHosts(path) => path,
        HostKeyPolicy::PinnedSha256(pin) => return verify_pin(session, pin, target),
    };
    let session_err = |op: &str, source: ssh2::Error| TransportError::Session {
        target: target.to_owned(),
        op: op.to_owned(),
        transient: false,
        source: Box::new(source),
    };
    let mut kh = session
        .known_hosts()
        .map_err(|e| session_err("load known hosts", e))?;
    kh.read_file(path, KnownHostFileKind::OpenSSH)
        .map_err(|e| session_err(&format!("read known_hosts file {}", path.display()), e))?;
    let (key, _) = session.host_key().ok_or_else(|| TransportError::Session {
        target: target.to_owned(),
        op: "read the server host key".into(),
        transient: true,
        source: "the server sent no host key".into(),
    })?;
    match kh.check_port(&config.host, config.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(TransportError::HostKeyMismatch {
            target: target.to_owned(),
            known_hosts: path.clone(),
        }),
        CheckResult::NotFound | CheckResult::Failure => Err(TransportError::HostKeyUnknown {
            target: target.to_owned(),
            known_hosts: path.clone(),
        }),
    }
}

/// Compares the server's key with a pinned fingerprint.
fn verify_pin(session: &Session, pin: &str, target: &str) -> Result<(), TransportError> {
    let expected = normalise_pin(pin).ok_or_else(|| TransportError::Config {
        target: target.to_owned(),
        detail: format!(
            "host_key_sha256 {pin:?} is not a SHA-256 fingerprint in OpenSSH's \
             `SHA256:<43 base64 characters>` form (as `ssh-keygen -lf KEY.pub` prints it)"
        ),
    })?;
    let (key, _) = session.host_key().ok_or_else(|| TransportError::Session {
        target: target.to_owned(),
        op: "read the server host key".into(),
        transient: true,
        source: "the server sent no host key".into(),
    })?;
    let actual = fingerprint(key);
    if actual == expected {
        return Ok(());
    }
    Err(TransportError::HostKeyPinMismatch {
        target: target.to_owned(),
        key_type: blob_key_type(key).unwrap_or_else(|| "unknown".into()),
        expected,
        actual,
    })
}

/// The algorithm name at the start of a raw public key blob.
fn blob_key_type(blob: &[u8]) -> Option<String> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    String::from_utf8(blob.get(4..4 + len)?.to_vec()).ok()
}

fn authenticate(session: &Session, config: &SshConfig, target: &str) -> Result<(), TransportError> {
    let user = &config.user;
    let (method, result) = match &config.auth {
        SshAuth::Password(secret) => {
            let pw = secret.resolve()?;
            ("password", session.userauth_password(user, pw.expose()))
        }
        SshAuth::KeyFile { path, passphrase } => {
            let pass = passphrase.as_ref().map(|p| p.resolve()).transpose()?;
            if let Err(source) = std::fs::metadata(path) {
                return Err(TransportError::LocalIo {
                    op: "read ssh private key",
                    path: path.clone(),
                    source,
                });
            }
            (
                "key file",
                session.userauth_pubkey_file(user, None, path, pass.as_ref().map(|p| p.expose())),
            )
        }
        SshAuth::Agent => ("ssh agent", session.userauth_agent(user)),
    };
    match result {
        Ok(()) if session.authenticated() => Ok(()),
        Ok(()) => Err(TransportError::AuthRejected {
            target: target.to_owned(),
            user: user.clone(),
            method,
            detail: "the server did not accept the credentials".into(),
        }),
        Err(e) if ssh_is_transient(&e) => Err(TransportError::AuthNotReady {
            target: target.to_owned(),
            user: user.clone(),
            source: Box::new(e),
        }),
        Err(e) => Err(TransportError::AuthRejected {
            target: target.to_owned(),
            user: user.clone(),
            method,
            // libssh2's message names the failure (never the secret).
            detail: e.message().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_reads_the_blob_header() {
        // "ssh-ed25519" length-prefixed, then junk.
        let mut blob = vec![0, 0, 0, 11];
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&[0, 0, 0, 1, 7]);
        assert_eq!(key_type(&B64.encode(blob)).as_deref(), Some("ssh-ed25519"));
        assert_eq!(key_type("not base64!"), None);
    }

    #[test]
    fn fingerprints_and_pins_use_the_openssh_form() {
        // SHA-256 of nothing, as `ssh-keygen -l` would print it: unpadded base64.
        let empty = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
        assert_eq!(fingerprint(b""), empty);
        assert_eq!(normalise_pin(empty).as_deref(), Some(empty));
        assert_eq!(
            normalise_pin(" 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= ").as_deref(),
            Some(empty)
        );
        assert_eq!(normalise_pin("SHA256:tooshort"), None);
        assert_eq!(normalise_pin("MD5:aa:bb"), None);
        // A hex SHA-256 (the WinRM pin's form) is not taken for a host key fingerprint.
        assert_eq!(normalise_pin(&"ab".repeat(32)), None);
    }
}
