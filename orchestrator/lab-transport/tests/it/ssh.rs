//! SSH commands against a real sshd: exit codes, stderr, caps, timeouts that kill, host key
//! and credential refusals, reconnect after a restart, parallel commands through the pool.

use std::time::{Duration, Instant};

use lab_transport::testing::{Sshd, processes_matching};
use lab_transport::{
    Command, HostKeyPolicy, SshAuth, SshConfig, SshTransport, Transport, TransportError,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_keeps_exit_code_stdout_and_stderr_apart() {
    let Some(sshd) = Sshd::start_or_skip("exec_keeps_exit_code_stdout_and_stderr_apart") else {
        return;
    };
    let t = SshTransport::new(sshd.config());
    let out = t
        .exec(&Command::shell("echo out; echo err >&2; echo more; exit 3"))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout_text(), "out\nmore\n");
    assert_eq!(out.stderr_text(), "err\n");
    assert!(!out.truncated);

    // Arguments are data, never shell code.
    let out = t
        .exec(&Command::new("printf").arg("%s|").args([
            "a b",
            "$(echo pwned)",
            "it's",
            "new\nline",
            "`id`",
        ]))
        .await
        .unwrap();
    assert_eq!(out.stdout_text(), "a b|$(echo pwned)|it's|new\nline|`id`|");
    assert_eq!(out.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_is_capped_and_flagged() {
    let Some(sshd) = Sshd::start_or_skip("large_output_is_capped_and_flagged") else {
        return;
    };
    let t = SshTransport::new(sshd.config());
    let out = t
        .exec(&Command::shell("head -c 3000000 /dev/zero; echo done >&2").output_cap(1000))
        .await
        .unwrap();
    assert_eq!(out.stdout.len(), 1000);
    assert!(out.truncated);
    assert_eq!(out.stderr_text(), "done\n");
    assert_eq!(out.exit_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_kills_the_remote_command_and_the_session_stays_usable() {
    let Some(sshd) = Sshd::start_or_skip("timeout_kills_the_remote_command") else {
        return;
    };
    let t = SshTransport::new(sshd.config());
    let marker = format!("sleep 31{}", std::process::id() % 1000);
    let started = Instant::now();
    let err = t
        .exec(&Command::shell(format!("{marker}; echo never")).timeout(Duration::from_millis(1500)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransportError::Timeout { .. }),
        "unexpected error: {err:?}"
    );
    assert!(!err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The kill is TERM then KILL of the whole process group: nothing is left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_matching(&marker).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        processes_matching(&marker),
        Vec::<u32>::new(),
        "{marker} survived"
    );
    // The same pooled session runs the next command.
    assert_eq!(t.idle_sessions(), 1);
    let out = t.exec(&Command::shell("echo still-here")).await.unwrap();
    assert_eq!(out.stdout_text(), "still-here\n");
    assert_eq!(t.idle_sessions(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_mismatched_host_keys_are_refused() {
    let Some(sshd) = Sshd::start_or_skip("unknown_and_mismatched_host_keys_are_refused") else {
        return;
    };
    // A known_hosts entry for this host:port with some other key.
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
    let mut config = sshd.config();
    config.host_key = HostKeyPolicy::KnownHosts(wrong.clone());
    let err = SshTransport::new(config).health().await.unwrap_err();
    assert!(
        matches!(err, TransportError::HostKeyMismatch { .. }),
        "unexpected error: {err:?}"
    );
    assert!(!err.is_transient());
    assert!(
        err.to_string().contains("does not match the entry in"),
        "{err}"
    );

    let empty = sshd.dir().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let mut config = sshd.config();
    config.host_key = HostKeyPolicy::KnownHosts(empty);
    let err = SshTransport::new(config).health().await.unwrap_err();
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "unexpected error: {err:?}"
    );
    assert!(!err.is_transient());
    assert!(err.to_string().contains("ssh-keyscan"), "{err}");

    // The explicit opt-out connects to the same server.
    let mut config = sshd.config();
    config.host_key = HostKeyPolicy::InsecureAcceptAny;
    SshTransport::new(config).health().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_that_is_not_authorized_is_refused_permanently() {
    let Some(sshd) = Sshd::start_or_skip("a_key_that_is_not_authorized_is_refused") else {
        return;
    };
    let config = SshConfig {
        auth: SshAuth::KeyFile {
            path: sshd.stranger_key(),
            passphrase: None,
        },
        ..sshd.config()
    };
    let err = SshTransport::new(config).health().await.unwrap_err();
    assert!(
        matches!(err, TransportError::AuthRejected { .. }),
        "unexpected error: {err:?}"
    );
    assert!(!err.is_transient());
    assert!(
        err.to_string()
            .starts_with(&format!("authenticate on {}@127.0.0.1:", sshd.user())),
        "{err}"
    );

    let config = SshConfig {
        auth: SshAuth::KeyFile {
            path: sshd.dir().join("no-such-key"),
            passphrase: None,
        },
        ..sshd.config()
    };
    let err = SshTransport::new(config).health().await.unwrap_err();
    assert!(err.to_string().contains("no-such-key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_server_restarts() {
    let Some(mut sshd) = Sshd::start_or_skip("reconnects_after_the_server_restarts") else {
        return;
    };
    let t = SshTransport::new(sshd.config());
    t.health().await.unwrap();
    assert_eq!(t.idle_sessions(), 1);

    // Down: the pooled session is dead and a new one is refused -> transient.
    sshd.stop();
    let err = t.exec(&Command::shell("echo hi")).await.unwrap_err();
    assert!(
        err.is_transient(),
        "refused while down must be transient: {err:?}"
    );

    // Back up: the next command reconnects by itself.
    sshd.restart().unwrap();
    let out = t.exec(&Command::shell("echo back")).await.unwrap();
    assert_eq!(out.stdout_text(), "back\n");

    // Restart under a kept session: the stale session is replaced transparently.
    sshd.restart().unwrap();
    let out = t.exec(&Command::shell("echo again")).await.unwrap();
    assert_eq!(out.stdout_text(), "again\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_commands_run_on_parallel_sessions() {
    let Some(sshd) = Sshd::start_or_skip("parallel_commands_run_on_parallel_sessions") else {
        return;
    };
    let t = std::sync::Arc::new(SshTransport::new(sshd.config()));
    let dir = tempfile::tempdir().unwrap();
    let rendezvous = lab_transport::posix_quote(&dir.path().display().to_string());
    // Each command checks in, then waits until all four have: this only finishes if the
    // pool really runs them at the same time.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let t = t.clone();
            let line = format!(
                "touch {rendezvous}/{i}; n=0; \
                 while [ $(ls {rendezvous} | wc -l) -lt 4 ] && [ $n -lt 150 ]; do sleep 0.1; n=$((n+1)); done; \
                 ls {rendezvous} | wc -l"
            );
            tokio::spawn(async move { t.exec(&Command::shell(line)).await })
        })
        .collect();
    for task in tasks {
        let out = task.await.unwrap().unwrap();
        assert_eq!(out.stdout_text().trim(), "4");
    }
    assert_eq!(t.idle_sessions(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn powershell_is_sent_encoded_short_and_long() {
    let Some(sshd) = Sshd::start_or_skip("powershell_is_sent_encoded_short_and_long") else {
        return;
    };
    // A stand-in for powershell.exe: decodes -EncodedCommand (UTF-16LE base64); for our
    // stdin bootstrap it decodes the script from stdin; prints the script minus the
    // one-line prelude. What comes back is exactly what a real PowerShell would run.
    let fake = sshd.dir().join("fake-powershell");
    std::fs::write(
        &fake,
        r#"#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in -EncodedCommand) enc="$2"; shift 2;; *) shift;; esac
done
script=$(printf '%s' "$enc" | base64 -d | iconv -f UTF-16LE -t UTF-8) || exit 90
case "$script" in
  *'[Console]::In.ReadToEnd()'*) base64 -d | tail -n +2 ;;
  *) printf '%s\n' "$script" | tail -n +2 ;;
esac
"#,
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&fake)
        .status()
        .unwrap();
    let mut config = sshd.config();
    config.powershell = fake.display().to_string();
    let t = SshTransport::new(config);

    let script = "Write-Output 'h\u{e9}llo w\u{f6}rld' \"$env:X\" `n";
    let out = t.powershell(script, Duration::from_secs(20)).await.unwrap();
    assert_eq!(out.exit_code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim_end(), script);

    // Past the command-line limit of Windows the script travels over stdin.
    let long: String = (0..600).map(|i| format!("$v{i} = '{i}'\n")).collect();
    assert!(lab_transport::encode_powershell(&long).len() > 8000);
    let out = t.powershell(&long, Duration::from_secs(20)).await.unwrap();
    assert_eq!(out.stdout.trim_end(), long.trim_end());

    let v: serde_json::Value = lab_transport::powershell_json(
        &t,
        r#"{"vms":[{"name":"a b","state":2}]}"#,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(v["vms"][0]["name"], "a b");
}

/// `ssh-keygen -lf FILE`'s fingerprint (`SHA256:...`), the form users copy into a lab file.
fn keygen_fingerprint(public_key: &std::path::Path) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()
        .expect("run ssh-keygen -lf");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_host_key_connects_and_a_wrong_pin_names_both_fingerprints() {
    let Some(sshd) = Sshd::start_or_skip("a_pinned_host_key_connects") else {
        return;
    };
    // The right pin connects without any known_hosts file.
    let right = keygen_fingerprint(&sshd.dir().join("host_ed25519.pub"));
    let mut config = sshd.config();
    config.host_key = HostKeyPolicy::PinnedSha256(right.clone());
    let t = SshTransport::new(config);
    t.health().await.unwrap();
    let out = t.exec(&Command::shell("echo pinned")).await.unwrap();
    assert_eq!(out.stdout_text(), "pinned\n");

    // Another key's fingerprint is refused, naming both, before authentication.
    let wrong = keygen_fingerprint(&sshd.dir().join("stranger_ed25519.pub"));
    let mut config = sshd.config();
    config.host_key = HostKeyPolicy::PinnedSha256(wrong.clone());
    let err = SshTransport::new(config).health().await.unwrap_err();
    let TransportError::HostKeyPinMismatch {
        expected, actual, ..
    } = &err
    else {
        panic!("unexpected error: {err:?}");
    };
    assert_eq!((expected, actual), (&wrong, &right));
    assert!(!err.is_transient());
    let text = lab_error::chain(&err).join("\n  because: ");
    let (right_re, wrong_re) = (regex_lite_escape(&right), regex_lite_escape(&wrong));
    insta::with_settings!({
        filters => vec![
            (right_re.as_str(), "SHA256:[HOST KEY]"),
            (wrong_re.as_str(), "SHA256:[PINNED]"),
            (r"\S+@127\.0\.0\.1:\d+", "[USER]@127.0.0.1:[PORT]"),
        ],
    }, {
        insta::assert_snapshot!("pinned_host_key_mismatch", text);
    });

    // A pin that is no fingerprint at all is a configuration error, not a mismatch.
    let mut config = sshd.config();
    config.host_key = HostKeyPolicy::PinnedSha256("3F:2A:9C".into());
    let err = SshTransport::new(config).health().await.unwrap_err();
    assert!(
        matches!(err, TransportError::Config { .. }),
        "unexpected error: {err:?}"
    );
    assert!(err.to_string().contains("ssh-keygen -lf"), "{err}");
}

/// A regex matching `s` literally (fingerprints hold `+` and `/`).
fn regex_lite_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}
