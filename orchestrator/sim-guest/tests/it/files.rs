//! File transfer through the agent: chunked upload with hash check, download, stat, list,
//! remove, and path validation.

use sim_guest::protocol::*;

use crate::support::*;

#[test]
fn upload_download_stat_list_remove() {
    let disk = TestDisk::new();
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
    let sha = sha256_hex(&data);
    let Response::UploadStarted { id } = c.ok(&Request::UploadBegin {
        path: r"C:\payload\new\x.bin".into(),
        size: data.len() as u64,
        sha256: sha.clone(),
    }) else {
        panic!()
    };
    // Chunks may come on another connection.
    let mut c2 = Client::connect(guest.addr());
    let mut offset = 0;
    for chunk in data.chunks(100_000) {
        let resp = c2.ok(&Request::UploadChunk {
            id,
            offset,
            data: chunk.to_vec(),
        });
        offset += chunk.len() as u64;
        assert_eq!(
            resp,
            Response::ChunkAccepted {
                id,
                received: offset
            }
        );
    }
    assert_eq!(
        c.ok(&Request::UploadEnd { id }),
        Response::UploadDone {
            path: r"C:\payload\new\x.bin".into(),
            size: data.len() as u64,
            sha256: sha.clone()
        }
    );
    assert_eq!(
        std::fs::read(disk.host(r"C:\payload\new\x.bin")).unwrap(),
        data
    );

    assert_eq!(
        c.ok(&Request::Stat {
            path: r"c:\PAYLOAD\new\X.BIN".into()
        }),
        Response::FileStat {
            size: data.len() as u64,
            sha256: sha
        }
    );
    let mut got = Vec::new();
    loop {
        let Response::Data { data: d, eof } = c.ok(&Request::Download {
            path: r"C:\payload\new\x.bin".into(),
            offset: got.len() as u64,
            max_len: 65_536,
        }) else {
            panic!()
        };
        got.extend_from_slice(&d);
        if eof {
            break;
        }
    }
    assert_eq!(got, data);
    let Response::Listing { entries } = c.ok(&Request::List {
        dir: r"C:\payload\new".into(),
    }) else {
        panic!()
    };
    assert_eq!(
        entries,
        vec![DirEntry {
            name: "x.bin".into(),
            is_dir: false,
            size: 300_000
        }]
    );
    c.ok(&Request::Remove {
        path: r"C:\payload\new\x.bin".into(),
    });
    let (code, msg) = c.err(&Request::Stat {
        path: r"C:\payload\new\x.bin".into(),
    });
    assert_eq!(code, codes::ERROR_FILE_NOT_FOUND, "{msg}");
}

#[test]
fn upload_with_wrong_hash_is_refused_and_leaves_nothing() {
    let disk = TestDisk::new();
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    let Response::UploadStarted { id } = c.ok(&Request::UploadBegin {
        path: r"C:\ebpf\evil.sys".into(),
        size: 5,
        sha256: sha256_hex(b"hello"),
    }) else {
        panic!()
    };
    c.ok(&Request::UploadChunk {
        id,
        offset: 0,
        data: b"jello".to_vec(),
    });
    let (code, msg) = c.err(&Request::UploadEnd { id });
    assert_eq!(code, codes::ERROR_CRC);
    assert!(msg.contains(r"C:\ebpf\evil.sys: sha256 mismatch"), "{msg}");
    assert!(!disk.host(r"C:\ebpf\evil.sys").exists());
}

#[test]
fn bad_paths_are_refused_with_windows_codes() {
    let disk = TestDisk::new();
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());
    for (path, code) in [
        (r"C:\ebpf\..\..\..\etc\passwd", codes::ERROR_BAD_PATHNAME),
        ("/etc/passwd", codes::ERROR_BAD_PATHNAME),
        (r"\\host\share\x", codes::ERROR_BAD_PATHNAME),
        (r"C:\ebpf\NUL", codes::ERROR_BAD_PATHNAME),
        (r"C:\ebpf\x?.sys", codes::ERROR_INVALID_NAME),
        (r"E:\x", codes::ERROR_INVALID_DRIVE),
    ] {
        let (got, msg) = c.err(&Request::UploadBegin {
            path: path.into(),
            size: 0,
            sha256: sha256_hex(b""),
        });
        assert_eq!(got, code, "{path}: {msg}");
        assert!(msg.contains("resolve path"), "{msg}");
        let (got, _) = c.err(&Request::Download {
            path: path.into(),
            offset: 0,
            max_len: 10,
        });
        assert_eq!(got, code, "{path}");
    }
    let (code, _) = c.err(&Request::List {
        dir: r"C:\missing".into(),
    });
    assert_eq!(code, codes::ERROR_PATH_NOT_FOUND);
}
