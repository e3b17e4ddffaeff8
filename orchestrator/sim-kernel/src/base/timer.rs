//! The epoch flush timer's DPC loop: release what a propose/commit cycle freed, run work
//! items, complete waiting `synchronize` calls.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::KernelBase;
use crate::epoch::{self, Retired};
use crate::irql;
use crate::modules;
use crate::pool::Owed;

impl KernelBase {
    /// The epoch flush timer's DPC loop (runs as CPU 0 until the kernel stops).
    pub(crate) fn timer_loop(self: Arc<Self>) {
        epoch::bind_cpu(0);
        while !self.halt.stopped() {
            let (armed, urgent) = self.epoch.wait_armed(Duration::from_millis(50));
            if self.halt.stopped() {
                break;
            }
            if !armed && !urgent {
                continue;
            }
            if !urgent {
                let start = Instant::now();
                // The 1 ms timer; an urgent request (synchronize) cuts the delay short.
                while start.elapsed() < epoch::FLUSH_DELAY {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            let mut release = self.epoch.core.compute();
            #[cfg(test)]
            std::thread::sleep(Duration::from_micros(
                self.release_delay_us.load(Ordering::Relaxed),
            ));
            let _frame = self
                .core_module()
                .map(|f| modules::push_frame(f, "_ebpf_epoch_release_free_list"));
            // The timer's DPC: the frees run at DISPATCH_LEVEL.
            let mut dpc = Some(irql::raise(irql::DISPATCH_LEVEL));
            let mut slots: Vec<Vec<u32>> = vec![Vec::new(); self.cpus];
            // The pass's accounting is summed here and applied once per CPU after it (not
            // per item, which bounced the counters with every allocating CPU); all of it
            // lands before a waiting synchronize is completed below.
            let mut owed = Owed::default();
            let mut released = vec![(0i64, 0i64); self.cpus];
            for it in std::mem::take(&mut release.items) {
                let cpu = crate::sync::wrap(it.cpu, self.cpus);
                if self.release_item(&it, &mut owed) {
                    slots[cpu].push(it.handle.index());
                }
                released[cpu].0 += i64::from(it.size);
                released[cpu].1 += 1;
            }
            self.pool.settle(&mut owed);
            for (cpu, (bytes, items)) in released.into_iter().enumerate() {
                if items > 0 {
                    self.epoch.pending_bytes.add(cpu, -bytes);
                    self.epoch.pending_items.add(cpu, -items);
                    self.epoch.released_count.add(cpu, items);
                }
            }
            for (cpu, s) in slots.iter_mut().enumerate() {
                if !s.is_empty() {
                    self.pool.recycle(cpu, s);
                }
            }
            // Work items (map teardown) run after the frees, before a waiting synchronize
            // may return; at PASSIVE_LEVEL (upstream queues them to a system worker since
            // PR #2309), except in the core flavour of issue #2191, which runs them inside
            // the DPC.
            if !self.work_items_at_dispatch.load(Ordering::Relaxed) {
                dpc = None;
            }
            for w in std::mem::take(&mut release.work) {
                w.run();
            }
            // Only now may a waiting synchronize return: its items are freed.
            release.complete();
            drop(dpc);
            if self.epoch.core.has_pending() {
                self.epoch.arm();
            }
            self.epoch.cycle_done();
        }
        self.epoch.cycle_done();
    }

    /// Releases one retired item; true if its slot can be recycled.
    fn release_item(&self, it: &Retired, owed: &mut Owed) -> bool {
        match self.pool.invalidate_owing(it.handle, it.cpu, owed) {
            Ok(_) => true,
            Err(f) => {
                if !self.halt.stopped() {
                    self.pool_fault(f);
                }
                false
            }
        }
    }

    /// Shutdown: stop the timer; release what is left on free lists.
    pub(crate) fn stop_timer(&self) {
        self.epoch.wake_timer();
        if let Some(t) = self.timer.lock().take() {
            let _ = t.join();
        }
    }
}
