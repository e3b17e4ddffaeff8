//! SFTP transfers against a real sshd: 64 MiB both ways with hash checks, and file names
//! built to break anything that splices them into shell code.

use lab_transport::testing::Sshd;
use lab_transport::{SshTransport, Transport, TransportError};

use crate::support::{sha256_file, write_pattern};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_round_trip_is_hash_checked() {
    let Some(sshd) = Sshd::start_or_skip("sixty_four_mib_round_trip_is_hash_checked") else {
        return;
    };
    let t = SshTransport::new(sshd.config());
    let local = tempfile::tempdir().unwrap();
    let src = local.path().join("payload.bin");
    let size = 64 * 1024 * 1024 + 12345; // not a multiple of the block size
    write_pattern(&src, size, 7);
    let want = sha256_file(&src);

    let remote = sshd.dir().join("uploaded.bin").display().to_string();
    let up = t.upload(&src, &remote).await.unwrap();
    assert_eq!(up.size, size as u64);
    assert_eq!(up.sha256, want);
    // The sshd is local: the file really is there, whole.
    assert_eq!(sha256_file(std::path::Path::new(&remote)), want);

    let back = local.path().join("back.bin");
    let down = t.download(&remote, &back).await.unwrap();
    assert_eq!(down.size, size as u64);
    assert_eq!(down.sha256, want);
    assert_eq!(sha256_file(&back), want);
    // No partial file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(local.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("hvlab-partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_file_names_are_data_not_code() {
    let Some(sshd) = Sshd::start_or_skip("hostile_file_names_are_data_not_code") else {
        return;
    };
    let t = SshTransport::new(sshd.config());
    let local = tempfile::tempdir().unwrap();
    // Injected code would run in the remote user's home directory (or the sshd's).
    let canary_q = format!("hvlab-pwned-{}", std::process::id());
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let canaries = [
        std::path::Path::new(&home).join(&canary_q),
        sshd.dir().join(&canary_q),
        sshd.dir().join("home").join(&canary_q),
        std::env::current_dir().unwrap().join(&canary_q),
    ];
    let names = [
        format!("it's a \"file\" $(touch {canary_q}) `touch {canary_q}`;touch {canary_q}"),
        "new\nline & | > < * ? ~ #.bin".to_owned(),
        " leading space and trailing ".to_owned(),
        "-starts-with-dash".to_owned(),
    ];
    for (i, name) in names.iter().enumerate() {
        let src = local.path().join(format!("src{i}"));
        write_pattern(&src, 100_000 + i, i as u64 + 1);
        let remote = format!("{}/{}", sshd.dir().display(), name);
        let up = t.upload(&src, &remote).await.unwrap();
        assert_eq!(up.sha256, sha256_file(&src), "{name:?}");
        assert!(
            std::path::Path::new(&remote).is_file(),
            "{name:?} not created as named"
        );
        let back = local.path().join(format!("back{i}"));
        t.download(&remote, &back).await.unwrap();
        assert_eq!(sha256_file(&back), up.sha256, "{name:?}");
    }
    for c in &canaries {
        assert!(
            !c.exists(),
            "a file name was executed as shell code: {}",
            c.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_remote_file_is_a_clear_permanent_error() {
    let Some(sshd) = Sshd::start_or_skip("missing_remote_file_is_a_clear_permanent_error") else {
        return;
    };
    let t = SshTransport::new(sshd.config());
    let local = tempfile::tempdir().unwrap();
    let remote = format!("{}/nope/absent.bin", sshd.dir().display());
    let err = t
        .download(&remote, &local.path().join("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::RemoteFile { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().starts_with("open remote file"), "{err}");
    // The session survives a failed transfer.
    t.health().await.unwrap();

    let err = t
        .upload(&local.path().join("absent-local"), &remote)
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("open local file"), "{err}");
}
