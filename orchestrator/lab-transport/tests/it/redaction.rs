//! A run with a known secret (a WinRM password and an SSH key passphrase), traced at TRACE
//! level through the redacting writer, including careless log lines that print the secret:
//! no file the run wrote may contain it, in clear or base64.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use lab_transport::testing::Sshd;
use lab_transport::{
    Command, RedactingMakeWriter, Redactor, SecretRef, SshAuth, SshTransport, TlsVerify, Transport,
    WinrmAuth, WinrmScheme, WinrmSettings, WinrmTransport,
};

use crate::winrm_mock::{Mock, fixture_fingerprint, standard};

/// The run directory and its log; the subscriber is process-wide, so it is installed once.
fn run_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("hvlab.log")).unwrap();
        let writer = RedactingMakeWriter::new(Mutex::new(log), Redactor::global().clone());
        tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .with_env_filter("lab_transport=trace,winrm_rs=trace,it=trace,info")
            .try_init()
            .ok();
        dir
    })
    .path()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_secret_appears_in_no_file_the_run_wrote() {
    let run = run_dir();
    let secret = format!("Redact-Me-{}-Zq9!", std::process::id());
    let secrets_dir = tempfile::tempdir().unwrap();
    let secret_file = secrets_dir.path().join("password");
    std::fs::write(&secret_file, format!("{secret}\n")).unwrap();

    // WinRM with the secret as Basic password; the server echoes it back in its output and
    // the script itself contains it (so it travels UTF-16LE base64-encoded).
    let echo: &'static str = Box::leak(format!("token={secret}\r\n").into_boxed_str());
    let mock = Mock::start(standard(echo, "", 0)).await;
    let mut settings = WinrmSettings::new(
        "127.0.0.1",
        WinrmScheme::Https(TlsVerify::PinnedSha256(fixture_fingerprint())),
        WinrmAuth::Basic {
            user: "labadmin".into(),
            password: SecretRef::File(secret_file.clone()),
        },
    )
    .port(mock.port);
    settings.poll_timeout = Duration::from_secs(5);
    let winrm = WinrmTransport::new(settings).unwrap();
    let out = winrm
        .powershell(
            &format!("Write-Output 'token={secret}'"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        out.stdout.contains(&secret),
        "the mock should echo the secret"
    );
    tracing::info!(stdout = %out.stdout, "winrm command output");

    // SSH with the secret as key passphrase (ignored by the unencrypted test key, but
    // resolved and registered like any secret), and a command that prints it.
    if let Some(sshd) = Sshd::start_or_skip("a_known_secret_appears_in_no_file_the_run_wrote") {
        let mut config = sshd.config();
        config.auth = SshAuth::KeyFile {
            path: sshd.client_key(),
            passphrase: Some(SecretRef::File(secret_file.clone())),
        };
        let ssh = SshTransport::new(config);
        let out = ssh.exec(&Command::new("echo").arg(&secret)).await.unwrap();
        assert_eq!(out.stdout_text().trim(), secret);
        tracing::info!(stdout = %out.stdout_text(), "ssh command output");
        let err = ssh
            .exec(
                &Command::shell(format!("sleep 5 # {secret}")).timeout(Duration::from_millis(300)),
            )
            .await
            .unwrap_err();
        assert!(!err.to_string().contains(&secret), "{err}");
        tracing::error!("command failed: {err}; {err:?}");
    }

    // Careless code that logs the secret outright, and an events file written through the
    // same redactor.
    tracing::warn!(
        "connecting with password {secret} (base64 {})",
        B64.encode(&secret)
    );
    {
        use std::io::Write;
        let events = std::fs::File::create(run.join("events.jsonl")).unwrap();
        let mut w = Redactor::global().wrap(events);
        writeln!(w, "{{\"event\":\"output\",\"text\":\"{secret}\"}}").unwrap();
    }

    let utf16: Vec<u8> = secret.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let forbidden = [secret.clone(), B64.encode(&secret), B64.encode(&utf16)];
    let log = std::fs::read_to_string(run.join("hvlab.log")).unwrap();
    assert!(
        log.matches("***").count() >= 3,
        "the redactor should have masked the careless lines:\n{log}"
    );
    for file in files_under(run) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        for f in &forbidden {
            // Base64 spellings are checked by their stable middle part.
            let core = &f[4..f.len() - 4];
            assert!(
                !text.contains(core),
                "{} contains the secret ({f}):\n{text}",
                file.display()
            );
        }
    }
}
