//! WinRM client behaviour against the recorded-exchange responder: what we send (actions,
//! encoded PowerShell, credentials, shell reuse, cleanup) and how we read the answers.

use std::time::{Duration, Instant};

use lab_transport::{
    Command, SecretRef, TlsVerify, Transport, TransportError, WinrmAuth, WinrmScheme,
    WinrmSettings, WinrmTransport,
};

use crate::winrm_mock::{
    Mock, Reply, command_response, create_response, decode_encoded_command, delete_response,
    fixture_fingerprint, receive_response, signal_response, standard, timed_out_fault,
    unknown_shell_fault,
};

/// The password file every test's settings name (a file, because tests cannot set
/// environment variables without `unsafe`, which this workspace denies).
fn password_file() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().unwrap());
    let pw = dir.path().join("password");
    if !pw.exists() {
        std::fs::write(&pw, "Winrm-Pa55!\n").unwrap();
    }
    pw
}

fn settings(mock: &Mock, pin: &str) -> WinrmSettings {
    let pw = password_file();
    let mut s = WinrmSettings::new(
        "127.0.0.1",
        WinrmScheme::Https(TlsVerify::PinnedSha256(pin.to_owned())),
        WinrmAuth::Basic {
            user: "labadmin".into(),
            password: SecretRef::File(pw),
        },
    )
    .port(mock.port);
    s.poll_timeout = Duration::from_secs(5);
    s.connect_timeout = Duration::from_secs(5);
    s
}

#[tokio::test]
async fn commands_reuse_one_shell_and_are_sent_as_encoded_powershell() {
    let mock = Mock::start(standard("hello\r\n", "warn\r\n", 3)).await;
    let t = WinrmTransport::new(settings(&mock, &fixture_fingerprint())).unwrap();

    let out = t
        .exec(&Command::new("C:\\Tools\\it's.exe").args(["a b", "$(x)"]))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout_text(), "hello\r\n");
    assert_eq!(out.stderr_text(), "warn\r\n");

    let out = t.exec(&Command::shell("ver")).await.unwrap();
    assert_eq!(out.stdout_text(), "hello\r\n");
    t.close().await;

    // One shell for both commands; each command's resources released with a terminate
    // signal; the shell deleted on close.
    assert_eq!(
        mock.actions(),
        [
            "Create", "Command", "Receive", "Receive", "Signal", "Command", "Receive", "Receive",
            "Signal", "Delete"
        ]
    );
    let commands = mock.requests("Command");
    assert_eq!(
        commands[0].element("Command").as_deref(),
        Some("powershell.exe")
    );
    let args = commands[0].arguments();
    let enc = args.iter().position(|a| a == "-EncodedCommand").unwrap();
    assert!(args.contains(&"-NonInteractive".to_owned()));
    let script = decode_encoded_command(&args[enc + 1]);
    assert!(
        script.ends_with("& 'C:\\Tools\\it''s.exe' 'a b' '$(x)'; exit $LASTEXITCODE"),
        "{script}"
    );
    assert!(
        script.starts_with("$ProgressPreference = 'SilentlyContinue'"),
        "{script}"
    );
    // A raw line goes to cmd.exe untouched.
    assert_eq!(commands[1].element("Command").as_deref(), Some("ver"));
    // Every request carried the Basic credentials from the secret file.
    for r in mock.log.lock().iter() {
        assert_eq!(
            r.authorization.as_deref(),
            Some("Basic bGFiYWRtaW46V2lucm0tUGE1NSE="),
            "{}",
            r.action
        );
    }
}

#[tokio::test]
async fn receive_timeouts_are_polled_through_and_powershell_json_is_parsed() {
    let mock = Mock::start(|req, n| match req.action.as_str() {
        "Create" => Reply::Ok(create_response("S1")),
        "Command" => Reply::Ok(command_response("C1")),
        // Two empty polls (the server's OperationTimeout), then the output in two chunks.
        "Receive" => match n {
            0 | 1 => timed_out_fault(),
            2 => Reply::Ok(receive_response("C1", b"{\"Name\":\"vm 1\",", b"", None)),
            _ => Reply::Ok(receive_response("C1", b"\"State\":2}\r\n", b"", Some(0))),
        },
        "Signal" => Reply::Ok(signal_response()),
        _ => Reply::Ok(delete_response()),
    })
    .await;
    let t = WinrmTransport::new(settings(&mock, &fixture_fingerprint())).unwrap();
    let v: serde_json::Value = lab_transport::powershell_json(
        &t,
        "Get-VM -Name 'vm 1' | Select Name,State | ConvertTo-Json -Compress",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(v["Name"], "vm 1");
    assert_eq!(v["State"], 2);
    assert_eq!(mock.requests("Receive").len(), 4);
}

#[tokio::test]
async fn a_rejected_password_is_a_permanent_error_without_the_password() {
    let mock = Mock::start(|_, _| Reply::Status(401, String::new())).await;
    let t = WinrmTransport::new(settings(&mock, &fixture_fingerprint())).unwrap();
    let err = t.exec(&Command::shell("ver")).await.unwrap_err();
    assert!(
        matches!(err, TransportError::AuthRejected { .. }),
        "{err:?}"
    );
    assert!(!err.is_transient());
    let text = format!("{err} {err:?}");
    assert!(!text.contains("Winrm-Pa55!"), "{text}");
    assert_eq!(
        err.to_string(),
        format!(
            "authenticate on labadmin@127.0.0.1:{} with basic: the server answered 401 unauthorized",
            mock.port
        )
    );
}

#[tokio::test]
async fn a_command_past_its_deadline_is_terminated_and_its_shell_replaced() {
    // The command never finishes: every Receive waits, then reports "still running".
    let mock = Mock::start(|req, n| match req.action.as_str() {
        "Create" => Reply::Ok(create_response(&format!("S{n}"))),
        "Command" => Reply::Ok(command_response(&format!("C{n}"))),
        "Receive" if n == 0 => Reply::Later(
            Duration::from_millis(300),
            Box::new(Reply::Ok(receive_response("C0", b"", b"", None))),
        ),
        "Receive" if n < 100 => Reply::Later(Duration::from_secs(30), Box::new(timed_out_fault())),
        "Receive" => Reply::Ok(receive_response("C1", b"ok", b"", Some(0))),
        "Signal" => Reply::Ok(signal_response()),
        _ => Reply::Ok(delete_response()),
    })
    .await;
    let t = WinrmTransport::new(settings(&mock, &fixture_fingerprint())).unwrap();
    let started = Instant::now();
    let err = t
        .exec(&Command::shell("ping -t 10.0.0.1").timeout(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // The command was terminated and its shell deleted (which ends its processes).
    let signals = mock.requests("Signal");
    assert_eq!(signals.len(), 1);
    assert!(signals[0].body.contains("signal/terminate"));
    assert!(signals[0].body.contains("C0"));
    let deletes = mock.requests("Delete");
    assert_eq!(deletes.len(), 1);
    assert!(deletes[0].body.contains(">S0<"));
    // The next command gets a new shell.
    let creates_before = mock.requests("Create").len();
    let _ = t
        .exec(&Command::shell("ver").timeout(Duration::from_millis(200)))
        .await;
    assert_eq!(mock.requests("Create").len(), creates_before + 1);
}

#[tokio::test]
async fn a_cancelled_command_is_cleaned_up_in_the_background() {
    let mock = Mock::start(|req, n| match req.action.as_str() {
        "Create" => Reply::Ok(create_response(&format!("S{n}"))),
        "Command" => Reply::Ok(command_response(&format!("C{n}"))),
        "Receive" => Reply::Later(Duration::from_secs(30), Box::new(timed_out_fault())),
        "Signal" => Reply::Ok(signal_response()),
        _ => Reply::Ok(delete_response()),
    })
    .await;
    let t = WinrmTransport::new(settings(&mock, &fixture_fingerprint())).unwrap();
    // The caller gives up (drops the future) long before the command's own deadline.
    let r =
        tokio::time::timeout(Duration::from_millis(800), t.exec(&Command::shell("pause"))).await;
    assert!(r.is_err());
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.requests("Delete").is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(mock.requests("Signal").len(), 1);
    assert_eq!(mock.requests("Delete").len(), 1);
}

#[tokio::test]
async fn a_shell_the_server_dropped_is_recreated_once() {
    let mock = Mock::start(|req, n| match req.action.as_str() {
        "Create" => Reply::Ok(create_response(&format!("S{n}"))),
        // The second command finds its shell gone (idle timeout on the server).
        "Command" if n == 1 => unknown_shell_fault(),
        "Command" => Reply::Ok(command_response(&format!("C{n}"))),
        "Receive" => Reply::Ok(receive_response("C", b"x", b"", Some(0))),
        "Signal" => Reply::Ok(signal_response()),
        _ => Reply::Ok(delete_response()),
    })
    .await;
    let t = WinrmTransport::new(settings(&mock, &fixture_fingerprint())).unwrap();
    t.exec(&Command::shell("ver")).await.unwrap();
    let out = t.exec(&Command::shell("ver")).await.unwrap();
    assert_eq!(out.stdout_text(), "x");
    assert_eq!(
        mock.actions(),
        [
            "Create", "Command", "Receive", "Signal", "Command", "Create", "Command", "Receive",
            "Signal"
        ]
    );
}

#[tokio::test]
async fn long_scripts_go_over_stdin_of_a_one_off_shell() {
    let mock = Mock::start(standard("done", "", 0)).await;
    let t = WinrmTransport::new(settings(&mock, &fixture_fingerprint())).unwrap();
    let script: String = (0..3000)
        .map(|i| format!("$v{i} = 'w\u{e9}rt {i}'\n"))
        .collect();
    let out = t
        .powershell(&script, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    let actions = mock.actions();
    let sends = actions.iter().filter(|a| *a == "Send").count();
    assert!(sends >= 2, "{actions:?}");
    assert_eq!(actions.first().map(String::as_str), Some("Create"));
    assert_eq!(actions.last().map(String::as_str), Some("Delete"));
    // The bootstrap is short; the script arrives whole, in order, over stdin.
    let cmd = &mock.requests("Command")[0];
    let args = cmd.arguments();
    let bootstrap = decode_encoded_command(&args[args.len() - 1]);
    assert!(
        bootstrap.contains("[Console]::In.ReadToEnd()"),
        "{bootstrap}"
    );
    let stdin: Vec<u8> = mock
        .requests("Send")
        .iter()
        .flat_map(|r| r.stdin())
        .collect();
    use base64::Engine;
    let sent = base64::engine::general_purpose::STANDARD
        .decode(stdin)
        .unwrap();
    let sent = String::from_utf8(sent).unwrap();
    assert!(sent.ends_with(&script), "script was altered in transit");
    let sends = mock.requests("Send");
    assert!(sends.last().unwrap().body.contains(r#"End="true""#));
}

#[tokio::test]
async fn a_certificate_other_than_the_pinned_one_is_refused() {
    let mock = Mock::start(standard("", "", 0)).await;
    let wrong = "00".repeat(32);
    let t = WinrmTransport::new(settings(&mock, &wrong)).unwrap();
    let err = t.exec(&Command::shell("ver")).await.unwrap_err();
    match &err {
        TransportError::CertificateMismatch { actual, .. } => {
            assert_eq!(actual, &fixture_fingerprint());
        }
        other => panic!("unexpected error: {other:?}"),
    }
    assert!(!err.is_transient());
    // Nothing reached the server: the TLS handshake stopped before any request.
    assert!(mock.actions().is_empty());
}

#[test]
fn unsafe_combinations_are_refused_up_front() {
    let basic_over_http = WinrmSettings::new(
        "hv01",
        WinrmScheme::Http,
        WinrmAuth::Basic {
            user: "u".into(),
            password: SecretRef::Env("X".into()),
        },
    );
    let err = WinrmTransport::new(basic_over_http).unwrap_err();
    assert!(err.to_string().contains("clear text"), "{err}");
    let bad_pin = WinrmSettings::new(
        "hv01",
        WinrmScheme::Https(TlsVerify::PinnedSha256("12:34".into())),
        WinrmAuth::Ntlm {
            user: "u".into(),
            domain: String::new(),
            password: SecretRef::Env("X".into()),
        },
    );
    let err = WinrmTransport::new(bad_pin).unwrap_err();
    assert!(err.to_string().contains("64 hex digits"), "{err}");
}

#[tokio::test]
async fn bulk_files_are_refused_with_a_pointer_to_sftp() {
    let mock = Mock::start(standard("", "", 0)).await;
    let t = WinrmTransport::new(settings(&mock, &fixture_fingerprint())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("payload.zip");
    std::fs::write(&big, vec![0u8; 2 * 1024 * 1024]).unwrap();
    let err = t.upload(&big, "C:\\payload.zip").await.unwrap_err();
    assert!(matches!(err, TransportError::Unsupported { .. }), "{err:?}");
    assert!(err.to_string().contains("sftp"), "{err}");
    assert!(mock.actions().is_empty());
}
