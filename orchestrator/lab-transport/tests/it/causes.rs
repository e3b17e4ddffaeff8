//! Why an SSH connection failed reaches the rendered error chain (the text every hvlab
//! output shows): DNS, refused, timed out, closed before authentication, credentials and
//! host key refused. Only loopback peers; the last two need a real sshd.

use std::net::TcpListener;
use std::time::Duration;

use lab_transport::testing::Sshd;
use lab_transport::{HostKeyPolicy, SshAuth, SshConfig, SshTransport, Transport, TransportError};

/// A config for `host:port` with a short connect timeout; no secret is involved.
fn config(host: &str, port: u16) -> SshConfig {
    let mut c = SshConfig::new(
        host,
        "hvlab",
        SshAuth::Agent,
        HostKeyPolicy::InsecureAcceptAny,
    )
    .port(port);
    c.connect_timeout = Duration::from_millis(500);
    c
}

async fn fail(config: SshConfig) -> TransportError {
    SshTransport::new(config).health().await.unwrap_err()
}

/// The chain as hvlab prints it, with ports and resolver wording redacted.
fn rendered(e: &TransportError) -> String {
    lab_error::chain(e).join("\n  because: ")
}

fn snapshot(name: &str, e: &TransportError) {
    insta::with_settings!({
        filters => vec![
            (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
            (r"failed to lookup address information: .*", "failed to lookup address information: [RESOLVER]"),
            // libssh2 reports a peer that hung up as -13 or -43 depending on timing.
            (r"\[Session\(-\d+\)\]", "[Session(..)]"),
        ],
    }, {
        insta::assert_snapshot!(name, rendered(e));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_host_name_says_the_lookup_failed() {
    let e = fail(config("hv-rack9.hvlab.invalid", 22)).await;
    let text = rendered(&e);
    assert!(
        text.contains("connect to hvlab@hv-rack9.hvlab.invalid:22")
            && text.contains("failed to lookup address information"),
        "{text}"
    );
    snapshot("dns", &e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_says_connection_refused() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = fail(config("127.0.0.1", port)).await;
    assert!(
        rendered(&e).contains("Connection refused (os error 111)"),
        "{e:?}"
    );
    snapshot("refused", &e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_answers_times_out_after_the_configured_limit() {
    // The kernel completes the TCP handshake into the backlog; nobody ever accepts or
    // sends a banner.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let e = fail(config("127.0.0.1", port)).await;
    assert!(
        rendered(&e).contains("timed out after 500ms"),
        "{}",
        rendered(&e)
    );
    snapshot("timeout", &e);
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_closes_before_authentication_is_named() {
    let closer = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closer.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    closer.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            match closer.accept() {
                Ok((s, _)) => drop(s),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    // A generous limit: the hang-up, not a slow accept on a loaded machine, must decide.
    let mut c = config("127.0.0.1", port);
    c.connect_timeout = Duration::from_secs(20);
    let e = fail(c).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    t.join().unwrap();
    let text = rendered(&e);
    assert!(
        text.contains("complete the ssh handshake with hvlab@127.0.0.1")
            && text.contains("because: "),
        "{text}"
    );
    snapshot("closed_before_auth", &e);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_and_a_mismatched_host_key_are_named() {
    let Some(sshd) = Sshd::start_or_skip("a_rejected_key_and_a_mismatched_host_key_are_named")
    else {
        return;
    };
    let stranger = SshConfig {
        auth: SshAuth::KeyFile {
            path: sshd.stranger_key(),
            passphrase: None,
        },
        ..sshd.config()
    };
    let e = fail(stranger).await;
    let text = rendered(&e);
    assert!(text.contains("authenticate on"), "{text}");
    // Not a snapshot: this test only runs where an sshd is installed, and the server's
    // wording varies with its version.
    assert!(!e.is_transient(), "{text}");

    let other = std::fs::read_to_string(sshd.dir().join("stranger_ed25519.pub")).unwrap();
    let mut f = other.split_whitespace();
    let wrong = sshd.dir().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port(),
            f.next().unwrap(),
            f.next().unwrap()
        ),
    )
    .unwrap();
    let mut mismatched = sshd.config();
    mismatched.host_key = HostKeyPolicy::KnownHosts(wrong);
    let text = rendered(&fail(mismatched).await);
    assert!(text.contains("does not match the entry in"), "{text}");
}
