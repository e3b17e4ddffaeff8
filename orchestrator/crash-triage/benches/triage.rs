//! Triage of a 1 GiB sparse complete dump against one sequential read of the same file.
//!
//! The dump is a complete bitmap dump of a guest with 1 GiB of RAM: header, bitmap, the
//! page tables and module-list pages, and a hole for every other page. Triage must read
//! only what it needs; the target is triage < 1% of the time of a full read.
//! Run: `cargo bench -p crash-triage --bench triage`.

use std::fs::File;
use std::io::Read;
use std::time::{Duration, Instant};

use crash_triage::{DumpKind, DumpSpec, Module, triage_file, write_dump};

const GIB: u64 = 1 << 30;

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("MEMORY.DMP");
    let base = 0xFFFF_F807_5020_0000;
    let mut spec = DumpSpec::new(
        DumpKind::Complete,
        0x50,
        [0xFFFF_B00A_1C2E_3000, 0, base + 0x1A3C, 2],
        base + 0x1A3C,
        vec![
            Module::new("ntoskrnl.exe", 0xFFFF_F807_4A00_0000, 0x0104_6000),
            Module::new("ebpfcore.sys", 0xFFFF_F807_5010_0000, 0x0008_2000),
            Module::new("sample_ebpf_ext.sys", base, 0x0001_2000),
        ],
    );
    spec.physical_memory = GIB;
    let t = Instant::now();
    write_dump(&path, &spec).expect("write dump");
    let size = std::fs::metadata(&path).expect("stat").len();
    println!(
        "wrote {:.1} MiB sparse complete dump in {:?}",
        size as f64 / (1 << 20) as f64,
        t.elapsed()
    );

    // Triage first, so the sequential read below does not warm the page cache for it.
    let runs = 5;
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let triage = triage_file(&path).expect("triage");
        times.push(t.elapsed());
        assert_eq!(
            triage.faulting_module.map(|m| m.name).as_deref(),
            Some("sample_ebpf_ext.sys")
        );
    }
    times.sort();
    let triage_median = times[runs / 2];

    let read_time = sequential_read(&path);
    let warm_read = sequential_read(&path);
    let ratio = triage_median.as_secs_f64() / read_time.as_secs_f64();
    println!(
        "triage (median of {runs}): {triage_median:?}  [min {:?}, max {:?}]",
        times[0],
        times[runs - 1]
    );
    println!("one sequential read:       {read_time:?}");
    println!("triage / read = {:.3}%  (target < 1%)", ratio * 100.0);
    println!(
        "(a second, page-cache-warm read took {warm_read:?}: triage / warm read = {:.3}%)",
        triage_median.as_secs_f64() / warm_read.as_secs_f64() * 100.0
    );
    drop(dir);
}

fn sequential_read(path: &std::path::Path) -> Duration {
    let t = Instant::now();
    let mut f = File::open(path).expect("open");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    assert!(total >= GIB);
    t.elapsed()
}
