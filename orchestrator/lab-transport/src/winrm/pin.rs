//! Certificate pinning for WinRM over HTTPS. winrm-rs 1.1 verifies only against public
//! roots (or not at all), and Hyper-V hosts usually have self-signed listener certificates.
//! So for a pinned host, winrm-rs talks plain HTTP to a forwarder on 127.0.0.1, and the
//! forwarder carries every byte over a TLS connection that it verifies itself: the server's
//! leaf certificate must have the pinned SHA-256 fingerprint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

/// Parses a fingerprint written as 64 hex digits, with or without `:` separators.
pub(crate) fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex_digits: String = s
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    let bytes = hex::decode(hex_digits).ok()?;
    bytes.try_into().ok()
}

/// Accepts exactly one leaf certificate, by SHA-256 of its DER encoding. Handshake
/// signatures are still checked, so the peer must hold the certificate's private key.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
    /// The fingerprint of the last certificate refused, for the error message.
    refused: Arc<Mutex<Option<String>>>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let actual: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if actual == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            *self.refused.lock() = Some(hex::encode(actual));
            Err(rustls::Error::General(
                "server certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a pinned connection could not be made.
#[derive(Debug)]
pub(crate) enum PinError {
    Io(std::io::Error),
    /// The server presented a certificate with this other fingerprint.
    Mismatch {
        actual: String,
    },
}

/// A loopback listener that forwards each connection to the remote host over pinned TLS.
/// Dropping it stops the listener (connections in flight finish on their own).
pub(crate) struct PinnedForwarder {
    local: SocketAddr,
    connector: TlsConnector,
    remote: (String, u16),
    refused: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PinnedForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinnedForwarder")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .finish()
    }
}

impl Drop for PinnedForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PinnedForwarder {
    pub(crate) async fn start(
        host: &str,
        port: u16,
        pin: [u8; 32],
        connect_timeout: Duration,
    ) -> std::io::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let refused = Arc::new(Mutex::new(None));
        let verifier = PinVerifier {
            pin,
            algorithms: provider.signature_verification_algorithms,
            refused: refused.clone(),
        };
        let config =
            rustls::ClientConfig::builder_with_provider(provider.clone() as Arc<CryptoProvider>)
                .with_safe_default_protocol_versions()
                .map_err(std::io::Error::other)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
        let connector = TlsConnector::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let local = listener.local_addr()?;
        let remote = (host.to_owned(), port);
        let task = tokio::spawn(accept_loop(
            listener,
            connector.clone(),
            remote.clone(),
            connect_timeout,
        ));
        Ok(Self {
            local,
            connector,
            remote,
            refused,
            task,
        })
    }

    pub(crate) fn local_port(&self) -> u16 {
        self.local.port()
    }

    /// Makes one TLS connection now, so a wrong certificate is reported as such instead of
    /// as a dropped HTTP connection later.
    pub(crate) async fn probe(&self, connect_timeout: Duration) -> Result<(), PinError> {
        match open_tls(&self.connector, &self.remote, connect_timeout).await {
            Ok(_) => Ok(()),
            Err(e) => match self.refused.lock().take() {
                Some(actual) => Err(PinError::Mismatch { actual }),
                None => Err(PinError::Io(e)),
            },
        }
    }

    /// The fingerprint of a certificate refused since the last call, if any.
    pub(crate) fn take_refused(&self) -> Option<String> {
        self.refused.lock().take()
    }
}

async fn open_tls(
    connector: &TlsConnector,
    (host, port): &(String, u16),
    connect_timeout: Duration,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.clone())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect((host.as_str(), *port)))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let _ = tcp.set_nodelay(true);
    tokio::time::timeout(connect_timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

async fn accept_loop(
    listener: TcpListener,
    connector: TlsConnector,
    remote: (String, u16),
    connect_timeout: Duration,
) {
    loop {
        let Ok((mut local, _)) = listener.accept().await else {
            continue;
        };
        let connector = connector.clone();
        let remote = remote.clone();
        tokio::spawn(async move {
            match open_tls(&connector, &remote, connect_timeout).await {
                Ok(mut tls) => {
                    let _ = tokio::io::copy_bidirectional(&mut local, &mut tls).await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, host = %remote.0, "pinned tls connection failed");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let plain = "2d38e2e322c8e89cf3bd361c9d86ef38977566fc4e74b65673e5ad4c7a8e69a5";
        let colons = plain
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_fingerprint(plain), parse_fingerprint(&colons));
        assert!(parse_fingerprint(plain).is_some());
        assert!(parse_fingerprint("abcd").is_none());
        assert!(parse_fingerprint("zz").is_none());
    }
}
