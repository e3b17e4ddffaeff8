//! Benchmark: custom-map find/update throughput from 1 and 2 threads against a dashmap
//! baseline doing the same operations (an object allocated per update, as the sample
//! extension does), and epoch release latency (last reader exit -> bytes released).
//!
//! Run: `cargo bench -p sim-kernel --bench kernel`. Targets: find ratio >= 0.3x (issue 13),
//! release p99 <= 10 ms. Update is printed too: it has stayed near 0.1x (see the README).

use dashmap::DashMap;
use sim_kernel::{
    BPF_MAP_TYPE_SAMPLE_HASH_MAP, DriverImage, ImageKind, Kernel, KernelConfig, MapDefinition,
    MapHandle, Signing, UpdateOption,
};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEYS: u32 = 1024;
/// One measurement; a cell is the median ratio of `ROUNDS` back-to-back (sim, dashmap)
/// pairs, so a burst of load on this noisy machine hits both sides of one ratio alike.
const RUN: Duration = Duration::from_millis(250);
const ROUNDS: usize = 5;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Find,
    Update,
}

/// A cheap per-thread key stream (xorshift), the same for both maps.
fn next(x: &mut u32) -> u32 {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    *x
}

fn measure(threads: u32, work: impl Fn(u32, &mut u32) + Sync) -> f64 {
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let work = &work;
                s.spawn(move || {
                    let mut x = 0x9E37_79B9 ^ (t + 1);
                    let mut n = 0u64;
                    while start.elapsed() < RUN {
                        for _ in 0..256 {
                            work(t, &mut x);
                        }
                        n += 256;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn sim_ops(k: &Kernel, m: &MapHandle, threads: u32, op: Op) -> f64 {
    measure(threads, |t, x| {
        k.bind_current_thread(t);
        let key = next(x) % KEYS;
        match op {
            Op::Find => {
                black_box(m.find(key).unwrap());
            }
            Op::Update => m.update(key, *x, UpdateOption::Any).unwrap(),
        }
    })
}

fn dash_ops(d: &DashMap<u32, Box<u32>>, threads: u32, op: Op) -> f64 {
    measure(threads, |_, x| {
        let key = next(x) % KEYS;
        match op {
            Op::Find => {
                black_box(d.get(&key).map(|v| **v).unwrap());
            }
            Op::Update => {
                black_box(d.insert(key, Box::new(*x)));
            }
        }
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let k = Kernel::boot(KernelConfig {
        cpus: 2,
        ..KernelConfig::default()
    })
    .unwrap();
    let img = |image| DriverImage {
        image,
        signature: Signing::Test,
        faults: vec![],
    };
    k.load_driver("ebpfcore", &img(ImageKind::EbpfCore))
        .unwrap();
    k.load_driver("sample_ebpf_ext", &img(ImageKind::SampleExt))
        .unwrap();
    let m = k
        .create_map(MapDefinition::new(BPF_MAP_TYPE_SAMPLE_HASH_MAP, KEYS))
        .unwrap();
    let d: Arc<DashMap<u32, Box<u32>>> = Arc::new(DashMap::new());
    for key in 0..KEYS {
        m.update(key, key, UpdateOption::Any).unwrap();
        d.insert(key, Box::new(key));
    }

    println!(
        "custom map (sample object map, {KEYS} keys) vs dashmap<u32, Box<u32>>: median of \
         {ROUNDS} back-to-back pairs of {} ms",
        RUN.as_millis()
    );
    println!(
        "{:<8} {:>7} {:>14} {:>14} {:>7}",
        "op", "threads", "sim ops/s", "dashmap ops/s", "ratio"
    );
    let mut worst = [f64::MAX; 2];
    for (i, op) in [Op::Find, Op::Update].into_iter().enumerate() {
        for threads in [1, 2] {
            let mut rounds: Vec<(f64, f64)> = (0..ROUNDS)
                .map(|_| (sim_ops(&k, &m, threads, op), dash_ops(&d, threads, op)))
                .collect();
            rounds.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
            let (sim, base) = rounds[ROUNDS / 2];
            let ratio = sim / base;
            worst[i] = worst[i].min(ratio);
            let name = if op == Op::Find { "find" } else { "update" };
            println!("{name:<8} {threads:>7} {sim:>14.0} {base:>14.0} {ratio:>6.2}x");
        }
    }
    // Issue 13's target is find (a program's lookups); update allocates an object per call
    // and retires the old one through the epoch, as the sample extension does, and has
    // stayed near 0.1x since the first benchmark (docs in the crate README).
    println!(
        "find: worst ratio {:.2}x (target >= 0.30x): {}",
        worst[0],
        if worst[0] >= 0.3 {
            "ok"
        } else {
            "BELOW TARGET"
        }
    );
    println!(
        "update: worst ratio {:.2}x (below 0.30x: a pool allocation and an epoch retire per call)",
        worst[1]
    );

    // Epoch release latency: a reader holds an epoch while an update retires the old
    // object; from the reader's exit until the retired bytes are released.
    k.synchronize().unwrap();
    let mut lat = Vec::new();
    for i in 0..200u32 {
        let guard = k.enter_epoch();
        m.update(i % KEYS, i, UpdateOption::Any).unwrap();
        std::thread::sleep(Duration::from_millis(1));
        assert!(
            k.epoch_stats().pending_bytes > 0,
            "released while a reader was inside"
        );
        let t0 = Instant::now();
        drop(guard);
        while k.epoch_stats().pending_bytes > 0 {
            std::hint::spin_loop();
        }
        lat.push(t0.elapsed());
    }
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    println!(
        "epoch release latency over {} frees: p50 {:.2} ms, p99 {:.2} ms (target p99 <= 10 ms): {}",
        lat.len(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        if p99 <= Duration::from_millis(10) {
            "ok"
        } else {
            "ABOVE TARGET"
        }
    );
    drop(m);
    k.shutdown();
}
