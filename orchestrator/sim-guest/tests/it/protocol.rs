//! Protocol round trips and decoder robustness.

use proptest::prelude::*;
use sim_guest::protocol::*;

fn sample_requests() -> Vec<Request> {
    vec![
        Request::Ping,
        Request::Exec {
            argv: vec!["C:\\ebpf\\map_tool.exe".into(), "list".into()],
            timeout_ms: 5000,
        },
        Request::UploadBegin {
            path: "C:\\ebpf\\x.sys".into(),
            size: 3,
            sha256: "ab".repeat(32),
        },
        Request::UploadChunk {
            id: 7,
            offset: 0,
            data: vec![0, 1, 255],
        },
        Request::UploadEnd { id: 7 },
        Request::Download {
            path: "C:\\Windows\\MEMORY.DMP".into(),
            offset: 10,
            max_len: 1024,
        },
        Request::Stat {
            path: "C:\\a".into(),
        },
        Request::List { dir: "C:\\".into() },
        Request::Remove {
            path: "C:\\a".into(),
        },
        Request::ServiceCreate {
            name: "sample_ebpf_ext".into(),
            binary_path: "C:\\Windows\\System32\\drivers\\sample_ebpf_ext.sys".into(),
            start_type: StartType::Demand,
            depends_on: vec!["ebpfcore".into()],
        },
        Request::ServiceStart { name: "s".into() },
        Request::ServiceStop { name: "s".into() },
        Request::ServiceQuery { name: "s".into() },
        Request::ServiceDelete { name: "s".into() },
        Request::SetTestSigning { on: true },
        Request::SetCrashControl(CrashControl {
            dump_kind: DumpKind::Small,
            auto_reboot: true,
            always_keep_memory_dump: true,
            nmi_crash_dump: true,
        }),
        Request::SetVerifier {
            drivers: vec!["sample_ebpf_ext.sys".into()],
            flags: 0x209BB,
        },
        Request::GetConfig,
        Request::Events {
            log: "System".into(),
            since_record: 4,
        },
        Request::Metric {
            name: "pool_bytes:Smpl".into(),
        },
        Request::Reboot,
        Request::Shutdown,
    ]
}

#[test]
fn every_request_round_trips() {
    for req in sample_requests() {
        let frame = encode_request(&req).unwrap();
        assert_eq!(decode_request(&frame).unwrap(), req);
        let mut cursor = std::io::Cursor::new(Vec::new());
        write_request(&mut cursor, &req).unwrap();
        cursor.set_position(0);
        assert_eq!(read_request(&mut cursor).unwrap(), req);
    }
}

#[test]
fn responses_round_trip() {
    let responses = vec![
        Response::Pong {
            boot_id: "b".into(),
            uptime_ms: 3,
            protocol: PROTOCOL_VERSION,
        },
        Response::Exec(ExecOutput {
            exit_code: None,
            stdout: "x".into(),
            stderr: String::new(),
            timed_out: true,
        }),
        Response::Data {
            data: (0..=255).collect(),
            eof: true,
        },
        Response::Listing {
            entries: vec![DirEntry {
                name: "a".into(),
                is_dir: false,
                size: 1,
            }],
        },
        Response::Service(ServiceStatus {
            name: "s".into(),
            state: ServiceState::StopPending,
            start_type: StartType::Demand,
            binary_path: "C:\\s.sys".into(),
            depends_on: vec![],
            win32_exit_code: 0,
            delete_pending: false,
        }),
        Response::Events {
            records: vec![EventRecord {
                record_id: 1,
                time_created: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                event_id: 41,
                provider: "Microsoft-Windows-Kernel-Power".into(),
                level: "critical".into(),
                message: "m".into(),
                data: [("BugcheckCode".to_string(), "80".to_string())].into(),
            }],
        },
        Response::Ok,
        Response::error(codes::ERROR_INVALID_IMAGE_HASH, "nope"),
    ];
    for resp in responses {
        let frame = encode_response(&resp).unwrap();
        assert_eq!(decode_response(&frame).unwrap(), resp);
    }
}

#[test]
fn wire_shape_is_tagged_snake_case_json() {
    let frame = encode_request(&Request::Exec {
        argv: vec!["hostname".into()],
        timeout_ms: 100,
    })
    .unwrap();
    assert_eq!(
        std::str::from_utf8(&frame[4..]).unwrap(),
        r#"{"op":"exec","argv":["hostname"],"timeout_ms":100}"#
    );
    assert_eq!(
        u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
        frame.len() - 4
    );
    let chunk = encode_request(&Request::UploadChunk {
        id: 1,
        offset: 0,
        data: b"hi".to_vec(),
    })
    .unwrap();
    assert_eq!(
        std::str::from_utf8(&chunk[4..]).unwrap(),
        r#"{"op":"upload_chunk","id":1,"offset":0,"data":"aGk="}"#
    );
}

#[test]
fn decoder_errors_say_what_is_wrong() {
    let body = br#"{"op":"exec","argv":[],"timeout_ms":1,"bogus":1}"#;
    let err = decode_request_body(body).unwrap_err();
    assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
    let err = decode_request_body(br#"{"op":"format_disk"}"#).unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `format_disk`"),
        "{err}"
    );
    let err =
        decode_request_body(br#"{"op":"upload_chunk","id":1,"offset":0,"data":"!!"}"#).unwrap_err();
    assert!(err.to_string().contains("invalid base64"), "{err}");
    let mut frame = encode_request(&Request::Ping).unwrap();
    frame.push(b' ');
    let err = decode_request(&frame).unwrap_err();
    assert_eq!(err.to_string(), "1 trailing bytes after the frame");
    let err = decode_request(&frame[..frame.len() - 3]).unwrap_err();
    assert!(err.to_string().starts_with("truncated frame"), "{err}");
}

#[test]
fn oversized_frames_are_refused_both_ways() {
    let huge = Request::UploadChunk {
        id: 1,
        offset: 0,
        data: vec![0; MAX_FRAME_LEN as usize],
    };
    assert!(matches!(
        encode_request(&huge),
        Err(FrameError::TooLarge { .. })
    ));
    let mut frame = (MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
    frame.extend_from_slice(b"{}");
    assert!(matches!(
        read_frame(&mut &frame[..]),
        Err(FrameError::TooLarge { .. })
    ));
    // A chunk of the advertised maximum still fits a frame after base64.
    let max_chunk = Request::UploadChunk {
        id: u64::MAX,
        offset: u64::MAX,
        data: vec![0xff; MAX_CHUNK_LEN as usize],
    };
    assert!(encode_request(&max_chunk).is_ok());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_request(&bytes);
        let _ = decode_response(&bytes);
        let _ = decode_request_body(&bytes);
        let _ = split_frame(&bytes);
        let _ = read_frame(&mut &bytes[..]);
    }

    #[test]
    fn json_like_garbage_never_panics(s in r#"\{"op":"[a-z_]{0,12}"(,"[a-z_]{1,10}":("[^"]{0,8}"|[0-9]{1,20}|\[\]|null|true))*\}"#) {
        let _ = decode_request_body(s.as_bytes());
        let _ = decode_response_body(s.as_bytes());
    }

    #[test]
    fn chunk_data_round_trips(data in proptest::collection::vec(any::<u8>(), 0..2048), offset in any::<u64>()) {
        let req = Request::UploadChunk { id: 3, offset, data };
        prop_assert_eq!(decode_request(&encode_request(&req).unwrap()).unwrap(), req);
    }
}
