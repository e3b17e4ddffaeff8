//! Agent and boot costs of the simulated guest, each against a baseline measured in the same
//! run: Ping round trip vs a bare length-prefixed TCP echo, upload throughput vs a plain file
//! write, and cold boot / checkpoint resume time of a guest with ebpfcore and the sample
//! extension running (the lab's checkpoint-restore target is <= 100 ms).
//!
//! Run: `cargo bench -p sim-guest --bench agent`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sim_guest::disk::{Disk, VmConfig, write_json};
use sim_guest::protocol::*;
use sim_guest::registry::{BootOptions as RegBoot, Registry, ServiceEntry};
use sim_guest::{BootOptions, RunningGuest};

const ROUND_TRIPS: u32 = 2000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let disk = make_disk(&dir.path().join("disk"));
    let guest = boot(disk.root());

    let echo = echo_round_trip();
    let ping = ping_round_trip(guest.addr());
    println!(
        "ping round trip: {:>8.1} us   bare TCP echo: {:>8.1} us   ratio {:.2}",
        us(ping),
        us(echo),
        ping.as_secs_f64() / echo.as_secs_f64()
    );

    let (upload, plain) = upload_throughput(&guest, dir.path());
    println!(
        "upload 32 MiB:   {upload:>8.1} MiB/s  plain file write: {plain:>8.1} MiB/s  ratio {:.2}",
        upload / plain
    );

    let cold = time_boots(disk.root(), false);
    let resume = time_boots(disk.root(), true);
    println!(
        "cold boot:       {:>8.2} ms   resume: {:>8.2} ms   (resume target <= 100 ms: {})",
        ms(cold),
        ms(resume),
        if resume <= Duration::from_millis(100) {
            "met"
        } else {
            "MISSED"
        }
    );
    drop(guest);
}

fn make_disk(root: &Path) -> Disk {
    let disk = Disk::create(
        root,
        &VmConfig {
            name: "BENCH".into(),
            cpus: 2,
            memory_mb: 256,
            boot_delay_ms: 0,
            resume: false,
            tags: Default::default(),
        },
    )
    .unwrap();
    let drivers = disk.drivers_dir();
    for (file, image) in [
        ("ebpfcore.sys", "ebpfcore"),
        ("sample_ebpf_ext.sys", "sample_ext"),
    ] {
        let manifest =
            format!(r#"{{"format":"hvlab-sim-driver/1","image":"{image}","signature":"test"}}"#);
        std::fs::write(drivers.join(file), manifest).unwrap();
    }
    let mut reg = Registry {
        boot: RegBoot { test_signing: true },
        ..Default::default()
    };
    for (name, start, deps) in [
        ("ebpfcore", StartType::System, vec![]),
        (
            "sample_ebpf_ext",
            StartType::Auto,
            vec!["ebpfcore".to_string()],
        ),
    ] {
        reg.services.insert(
            name.into(),
            ServiceEntry {
                name: name.into(),
                binary_path: format!(r"C:\Windows\System32\drivers\{name}.sys"),
                start_type: start,
                depends_on: deps,
                delete_pending: false,
            },
        );
    }
    write_json(&disk.registry_path(), &reg).unwrap();
    disk
}

fn boot(root: &Path) -> RunningGuest {
    RunningGuest::boot(
        root,
        &BootOptions {
            skip_boot_delay: true,
        },
    )
    .unwrap()
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Mean round trip of a length-prefixed echo of a Ping-sized body: the floor any framed
/// protocol on loopback TCP pays.
fn echo_round_trip() -> Duration {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        loop {
            let mut len = [0u8; 4];
            if s.read_exact(&mut len).is_err() {
                return;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).unwrap();
            let mut frame = len.to_vec();
            frame.extend_from_slice(&body);
            s.write_all(&frame).unwrap();
        }
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let frame = encode_request(&Request::Ping).unwrap();
    let start = Instant::now();
    for _ in 0..ROUND_TRIPS {
        c.write_all(&frame).unwrap();
        let mut back = vec![0u8; frame.len()];
        c.read_exact(&mut back).unwrap();
    }
    let elapsed = start.elapsed() / ROUND_TRIPS;
    drop(c);
    server.join().unwrap();
    elapsed
}

fn ping_round_trip(addr: std::net::SocketAddr) -> Duration {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let start = Instant::now();
    for _ in 0..ROUND_TRIPS {
        write_request(&mut c, &Request::Ping).unwrap();
        assert!(matches!(
            read_response(&mut c).unwrap(),
            Response::Pong { .. }
        ));
    }
    start.elapsed() / ROUND_TRIPS
}

/// MiB/s of a 32 MiB upload in 1 MiB chunks, and of writing the same bytes to a file.
fn upload_throughput(guest: &RunningGuest, scratch: &Path) -> (f64, f64) {
    let data: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761)) as u8)
        .collect();
    let mib = data.len() as f64 / (1 << 20) as f64;

    let start = Instant::now();
    let mut f = std::fs::File::create(scratch.join("plain.bin")).unwrap();
    for chunk in data.chunks(1 << 20) {
        f.write_all(chunk).unwrap();
    }
    f.sync_all().unwrap();
    let plain = mib / start.elapsed().as_secs_f64();

    let mut c = TcpStream::connect(guest.addr()).unwrap();
    c.set_nodelay(true).unwrap();
    let sha = hex::encode(Sha256::digest(&data));
    let start = Instant::now();
    write_request(
        &mut c,
        &Request::UploadBegin {
            path: r"C:\bench\blob.bin".into(),
            size: data.len() as u64,
            sha256: sha,
        },
    )
    .unwrap();
    let Response::UploadStarted { id } = read_response(&mut c).unwrap() else {
        panic!("upload refused")
    };
    let mut offset = 0;
    for chunk in data.chunks(1 << 20) {
        write_request(
            &mut c,
            &Request::UploadChunk {
                id,
                offset,
                data: chunk.to_vec(),
            },
        )
        .unwrap();
        assert!(matches!(
            read_response(&mut c).unwrap(),
            Response::ChunkAccepted { .. }
        ));
        offset += chunk.len() as u64;
    }
    write_request(&mut c, &Request::UploadEnd { id }).unwrap();
    assert!(matches!(
        read_response(&mut c).unwrap(),
        Response::UploadDone { .. }
    ));
    (mib / start.elapsed().as_secs_f64(), plain)
}

/// Mean time from "start" to "agent.json written" over 10 boots (cold) or resumes.
fn time_boots(root: &Path, resume: bool) -> Duration {
    let disk = Disk::open(root).unwrap();
    let mut vm = disk.vm_config().unwrap();
    vm.resume = resume;
    disk.write_vm_config(&vm).unwrap();
    const N: u32 = 10;
    let mut total = Duration::ZERO;
    for _ in 0..N {
        let start = Instant::now();
        let mut g = boot(root);
        total += start.elapsed();
        g.request_shutdown();
        g.wait_exit(None);
    }
    total / N
}
