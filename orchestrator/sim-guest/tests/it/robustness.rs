//! Bad input on the wire: garbage, oversized and truncated frames get error replies (or a
//! clean close), and the guest keeps answering; many connections at once.

use std::io::{Read, Write};
use std::net::Shutdown;

use sim_guest::protocol::*;

use crate::support::*;

fn raw_reply(c: &mut Client) -> Response {
    read_response(&mut c.stream).unwrap()
}

#[test]
fn garbage_frames_get_errors_and_the_guest_stays_up() {
    let disk = TestDisk::new();
    let guest = disk.boot();
    let mut c = Client::connect(guest.addr());

    // Not JSON.
    write_frame(&mut c.stream, b"\x00\xffnot json at all").unwrap();
    let Response::Error { code, message } = raw_reply(&mut c) else {
        panic!()
    };
    assert_eq!(code, codes::ERROR_INVALID_DATA);
    assert!(message.starts_with("decode request:"), "{message}");
    // JSON, unknown op / unknown field.
    write_frame(&mut c.stream, br#"{"op":"format_c"}"#).unwrap();
    let Response::Error { message, .. } = raw_reply(&mut c) else {
        panic!()
    };
    assert!(message.contains("unknown variant `format_c`"), "{message}");
    // Still answering on the same connection.
    assert!(!c.boot_id().is_empty());

    // Oversized but drainable: error, and the connection goes on.
    let len = MAX_FRAME_LEN + 10;
    c.stream.write_all(&len.to_be_bytes()).unwrap();
    c.stream.write_all(&vec![b'x'; len as usize]).unwrap();
    let Response::Error { code, message } = raw_reply(&mut c) else {
        panic!()
    };
    assert_eq!(code, codes::ERROR_BUFFER_OVERFLOW, "{message}");
    assert!(c.boot_id().len() > 8);

    // An absurd length: error reply, then the guest closes the connection.
    let mut c2 = Client::connect(guest.addr());
    c2.stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let Response::Error { code, .. } = raw_reply(&mut c2) else {
        panic!()
    };
    assert_eq!(code, codes::ERROR_BUFFER_OVERFLOW);
    let mut rest = Vec::new();
    assert_eq!(c2.stream.read_to_end(&mut rest).unwrap(), 0);

    // Truncated: the peer sends half a frame and stops writing.
    let mut c3 = Client::connect(guest.addr());
    c3.stream.write_all(&100u32.to_be_bytes()).unwrap();
    c3.stream.write_all(b"{\"op\":").unwrap();
    c3.stream.shutdown(Shutdown::Write).unwrap();
    let Response::Error { message, .. } = raw_reply(&mut c3) else {
        panic!()
    };
    assert!(
        message.contains("truncated frame: expected 100 bytes, got 6"),
        "{message}"
    );

    // A prefix cut short and a silent disconnect.
    let mut c4 = Client::connect(guest.addr());
    c4.stream.write_all(&[0, 0]).unwrap();
    drop(c4);
    drop(Client::connect(guest.addr()));

    // Random garbage from several connections at once.
    let addr = guest.addr();
    let threads: Vec<_> = (0..8u8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let body: Vec<u8> = (0..200u32).map(|j| (j as u8).wrapping_mul(i + 3)).collect();
                write_frame(&mut c.stream, &body).unwrap();
                assert!(matches!(raw_reply(&mut c), Response::Error { .. }));
                c.boot_id()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), guest.boot_id());
    }
    assert_eq!(Client::connect(guest.addr()).boot_id(), guest.boot_id());
}

#[test]
fn requests_on_parallel_connections_are_served_concurrently() {
    let disk = TestDisk::new();
    let guest = disk.boot();
    start_core(&disk, &mut Client::connect(guest.addr()));
    // A slow request on one connection does not block the others.
    let addr = guest.addr();
    let slow = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        c.exec(
            &[
                MAP_STRESS,
                "--threads",
                "1",
                "--duration",
                "2s",
                "--map-type",
                "hash",
            ],
            1500,
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let start = std::time::Instant::now();
    let mut c = Client::connect(guest.addr());
    for _ in 0..20 {
        c.boot_id();
    }
    assert!(start.elapsed() < std::time::Duration::from_millis(1000));
    assert!(slow.join().unwrap().timed_out);
}
