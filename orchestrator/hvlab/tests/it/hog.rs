//! A CPU hog: busy threads that keep every core of the machine loaded until dropped, so a
//! test or benchmark can check that verdicts do not depend on an idle machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Spins one thread per core until dropped.
pub struct CpuHog {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<u64>>,
}

impl CpuHog {
    /// One busy thread per available core (at least two: the machines this runs on are small).
    pub fn start() -> CpuHog {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut spins = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        spins = std::hint::black_box(spins.wrapping_add(1));
                    }
                    spins
                })
            })
            .collect();
        CpuHog { stop, threads }
    }

    /// How many threads spin.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
