//! `map_stress`: worker threads (bound to CPUs round robin) hammer custom or hash maps with a
//! find/update/delete mix, optionally through program helpers, optionally recreating their
//! maps every `--map-lifetime`; runs for `--duration` or until `--ops` operations were
//! started; prints one JSON line of counters.

use super::args::Args;
use crate::error::EbpfError;
use crate::kernel::Kernel;
use crate::maps::MapHandle;
use crate::maps::{BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_SAMPLE_HASH_MAP, MapDefinition, UpdateOption};
use crate::tool_io::{CancelFlag, ToolOutput};
use parking_lot::RwLock;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) const USAGE: &str = "usage: map_stress [--threads N] [--duration D] [--keys N] \
[--mix find:50,update:30,delete:20] [--map-type sample|hash] [--maps N] [--map-lifetime D] \
[--helpers] [--program-lookups N] [--program-work-us N] [--max-entries N] [--ops N] [--seed S]";

/// How long workers stuck inside the kernel are waited for after the run ends.
const STUCK_GRACE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Mix {
    find: u32,
    update: u32,
    delete: u32,
}

fn parse_mix(s: &str) -> Result<Mix, String> {
    let mut m = Mix {
        find: 0,
        update: 0,
        delete: 0,
    };
    for part in s.split(',') {
        let (op, w) = part
            .split_once(':')
            .ok_or_else(|| format!("--mix: {part:?} is not op:weight"))?;
        let w: u32 = w
            .trim()
            .parse()
            .map_err(|_| format!("--mix: weight {w:?} of {op} is not a number"))?;
        match op.trim() {
            "find" => m.find = w,
            "update" => m.update = w,
            "delete" => m.delete = w,
            other => {
                return Err(format!(
                    "--mix: unknown operation {other:?} (find, update, delete)"
                ));
            }
        }
    }
    if m.find + m.update + m.delete == 0 {
        return Err("--mix: weights add up to 0".into());
    }
    Ok(m)
}

#[derive(Debug)]
struct Config {
    threads: usize,
    duration: Duration,
    keys: u32,
    mix: Mix,
    map_type: u32,
    maps: usize,
    lifetime: Option<Duration>,
    helpers: bool,
    /// Helper finds run as one program doing this many lookups (0: one lookup per call).
    program_lookups: u32,
    /// Such a program's own work between its lookups and its reads.
    program_work: Duration,
    /// The maps' capacity (default: `keys`); updates of new keys into a full map fail.
    max_entries: u32,
    /// Stop after this many operations (0: only `duration` ends the run). A count bounds
    /// what the run can allocate, so a pool check names a leak at any machine speed.
    ops: u64,
    seed: u64,
}

fn parse(args: &[String]) -> Result<Config, String> {
    let a = Args::parse(
        args,
        &[
            "threads",
            "duration",
            "keys",
            "mix",
            "map-type",
            "maps",
            "map-lifetime",
            "program-lookups",
            "program-work-us",
            "max-entries",
            "ops",
            "seed",
        ],
        &["helpers"],
    )?;
    let map_type = match a.get("map-type").unwrap_or("sample") {
        "sample" => BPF_MAP_TYPE_SAMPLE_HASH_MAP,
        "hash" => BPF_MAP_TYPE_HASH,
        other => return Err(format!("--map-type: unknown type {other:?} (sample, hash)")),
    };
    let lifetime = a.duration("map-lifetime", None)?;
    if lifetime.is_some_and(|d| d.is_zero()) {
        return Err("--map-lifetime must be more than 0".into());
    }
    let keys = a.int("keys", 64, 1, 1 << 20)? as u32;
    Ok(Config {
        threads: a.int("threads", 4, 1, 256)? as usize,
        duration: a
            .duration("duration", Some(Duration::from_secs(5)))?
            .unwrap_or_default(),
        keys,
        mix: parse_mix(a.get("mix").unwrap_or("find:50,update:30,delete:20"))?,
        map_type,
        maps: a.int("maps", 1, 1, 64)? as usize,
        lifetime,
        helpers: a.flag("helpers"),
        program_lookups: a.int("program-lookups", 0, 0, 64)? as u32,
        program_work: Duration::from_micros(a.int("program-work-us", 0, 0, 10_000)?),
        max_entries: a.int("max-entries", u64::from(keys), 1, 1 << 20)? as u32,
        ops: a.int("ops", 0, 0, u64::MAX)?,
        seed: a.int("seed", 0, 0, u64::MAX)?,
    })
}

#[derive(Debug, Default)]
struct Counters {
    ops: AtomicU64,
    finds: AtomicU64,
    hits: AtomicU64,
    updates: AtomicU64,
    deletes: AtomicU64,
    errors: AtomicU64,
    full: AtomicU64,
    refused: AtomicU64,
    helper_calls: AtomicU64,
    create_failures: AtomicU64,
    maps_created: AtomicU64,
}

/// One map slot shared by a group of threads; the group's leader recreates it.
#[derive(Debug, Default)]
struct Slot {
    map: RwLock<Option<MapHandle>>,
}

struct Run {
    k: Kernel,
    cfg: Config,
    c: Counters,
    slots: Vec<Slot>,
    first_error: parking_lot::Mutex<Option<String>>,
    stop: AtomicBool,
    fatal: AtomicBool,
}

impl Run {
    fn error(&self, what: &str, e: EbpfError) {
        self.c.errors.fetch_add(1, Ordering::Relaxed);
        let mut f = self.first_error.lock();
        if f.is_none() {
            *f = Some(format!("failed to {what}: {e}"));
        }
    }

    /// Counts one operation; false (and the run stops) once `--ops` were started.
    fn start_op(&self) -> bool {
        let n = self.c.ops.fetch_add(1, Ordering::Relaxed);
        if self.cfg.ops > 0 && n >= self.cfg.ops {
            self.c.ops.fetch_sub(1, Ordering::Relaxed);
            self.stop.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Creates the slot's map; creation failures while the provider is away are counted.
    fn create(&self, slot: &Slot) -> bool {
        let def = MapDefinition::new(self.cfg.map_type, self.cfg.max_entries);
        match self.k.create_map(def) {
            Ok(h) => {
                *slot.map.write() = Some(h);
                self.c.maps_created.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(EbpfError::ExtensionFailedToLoad) => {
                self.c.create_failures.fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(EbpfError::Halted(_)) => false,
            Err(e) => {
                self.error("create a map", e);
                if e == EbpfError::CoreNotRunning || e == EbpfError::InvalidArgument {
                    self.fatal.store(true, Ordering::Relaxed);
                }
                false
            }
        }
    }

    fn worker(&self, i: usize) {
        self.k.bind_current_thread(i as u32);
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.cfg.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let group = i % self.cfg.maps;
        let leader = i < self.cfg.maps;
        let slot = &self.slots[group];
        let mut born = Instant::now();
        let total = self.cfg.mix.find + self.cfg.mix.update + self.cfg.mix.delete;
        let object_map = self.cfg.map_type != BPF_MAP_TYPE_HASH;
        while !self.stop.load(Ordering::Relaxed) {
            if leader && self.cfg.lifetime.is_some_and(|l| born.elapsed() >= l) {
                // Close the old map first so a pending extension stop can complete.
                let old = slot.map.write().take();
                drop(old);
                born = Instant::now();
            }
            let Some(h) = slot.map.read().clone() else {
                if leader && !self.create(slot) {
                    std::thread::sleep(Duration::from_millis(2));
                } else if !leader {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if leader {
                    born = Instant::now();
                }
                continue;
            };
            for _ in 0..64 {
                let key = rng.random_range(0..self.cfg.keys);
                let pick = rng.random_range(0..total);
                let via_helper = self.cfg.helpers && rng.random_bool(0.5);
                if !self.start_op() {
                    return;
                }
                if via_helper {
                    self.c.helper_calls.fetch_add(1, Ordering::Relaxed);
                }
                let r = if pick < self.cfg.mix.find {
                    self.c.finds.fetch_add(1, Ordering::Relaxed);
                    let r = if via_helper && self.cfg.program_lookups > 0 {
                        let keys: Vec<u32> = (0..self.cfg.program_lookups)
                            .map(|_| rng.random_range(0..self.cfg.keys))
                            .collect();
                        h.run_lookup_program(&keys, self.cfg.program_work)
                    } else if via_helper {
                        h.get_value_helper(key)
                    } else {
                        h.find(key)
                    };
                    if r.is_ok() {
                        self.c.hits.fetch_add(1, Ordering::Relaxed);
                    }
                    r.map(|_| ())
                } else if pick < self.cfg.mix.find + self.cfg.mix.update {
                    self.c.updates.fetch_add(1, Ordering::Relaxed);
                    let v = rng.random::<u32>();
                    if via_helper && !object_map {
                        h.update_helper(key, v, UpdateOption::Any)
                    } else {
                        h.update(key, v, UpdateOption::Any)
                    }
                } else {
                    self.c.deletes.fetch_add(1, Ordering::Relaxed);
                    if via_helper && !object_map {
                        h.delete_helper(key)
                    } else {
                        h.delete(key)
                    }
                };
                match r {
                    Ok(()) | Err(EbpfError::KeyNotFound) => {}
                    // A map smaller than the key range (`--max-entries`): the update failed
                    // cleanly, which is what the workload asked for.
                    Err(EbpfError::OutOfSpace) if self.cfg.max_entries < self.cfg.keys => {
                        self.c.full.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(EbpfError::OperationNotSupported) => {
                        self.c.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(EbpfError::Halted(_)) => {
                        self.stop.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => self.error("run a map operation", e),
                }
            }
        }
    }
}

pub(crate) fn run(k: &Kernel, args: &[String], cancel: &CancelFlag) -> ToolOutput {
    let cfg = match parse(args) {
        Ok(c) => c,
        Err(e) => return super::usage_error("map_stress", &e, USAGE),
    };
    let run = Arc::new(Run {
        k: k.clone(),
        slots: (0..cfg.maps).map(|_| Slot::default()).collect(),
        cfg,
        c: Counters::default(),
        first_error: parking_lot::Mutex::new(None),
        stop: AtomicBool::new(false),
        fatal: AtomicBool::new(false),
    });
    for slot in &run.slots {
        run.create(slot);
    }
    let workers: Vec<_> = (0..run.cfg.threads)
        .map(|i| {
            let run = run.clone();
            std::thread::Builder::new()
                .name(format!("map_stress-{i}"))
                .spawn(move || run.worker(i))
        })
        .collect();
    let start = Instant::now();
    let mut cancelled = false;
    while start.elapsed() < run.cfg.duration && !run.stop.load(Ordering::Relaxed) {
        if cancel.is_cancelled() {
            cancelled = true;
            break;
        }
        if k.is_halted() || run.fatal.load(Ordering::Relaxed) {
            break;
        }
        std::thread::sleep(
            Duration::from_millis(5).min(run.cfg.duration.saturating_sub(start.elapsed())),
        );
    }
    run.stop.store(true, Ordering::Relaxed);
    // Workers blocked inside the kernel (a stuck helper) cannot be stopped: give them a
    // grace, then report them instead of hanging.
    let grace = Instant::now() + STUCK_GRACE;
    let mut spawn_errors = 0;
    let mut handles = Vec::new();
    for w in workers {
        match w {
            Ok(h) => handles.push(h),
            Err(_) => spawn_errors += 1,
        }
    }
    while handles.iter().any(|h| !h.is_finished())
        && Instant::now() < grace
        && !cancel.is_cancelled()
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut stuck = 0u64;
    for h in handles {
        if h.is_finished() {
            let _ = h.join();
        } else {
            stuck += 1;
        }
    }
    // Close the tool's maps (a stuck worker still holds its clone).
    for slot in &run.slots {
        let m = slot.map.write().take();
        drop(m);
    }
    let c = &run.c;
    let bugcheck = k.bugcheck().map(|b| format!("{:#x}", b.code));
    let line = serde_json::json!({
        "ops": c.ops.load(Ordering::Relaxed),
        "finds": c.finds.load(Ordering::Relaxed),
        "hits": c.hits.load(Ordering::Relaxed),
        "updates": c.updates.load(Ordering::Relaxed),
        "deletes": c.deletes.load(Ordering::Relaxed),
        "errors": c.errors.load(Ordering::Relaxed) + spawn_errors,
        "full": c.full.load(Ordering::Relaxed),
        "refused": c.refused.load(Ordering::Relaxed),
        "helper_calls": c.helper_calls.load(Ordering::Relaxed),
        "create_failures": c.create_failures.load(Ordering::Relaxed),
        "maps_created": c.maps_created.load(Ordering::Relaxed),
        "stuck_threads": stuck,
        "elapsed_ms": start.elapsed().as_millis() as u64,
        "bugcheck": bugcheck,
    });
    let mut stderr = String::new();
    if let Some(e) = run.first_error.lock().as_ref() {
        stderr.push_str(&format!("map_stress: {e}\n"));
    }
    if stuck > 0 {
        stderr.push_str(&format!(
            "map_stress: {stuck} worker thread(s) did not return from the kernel within {}s of the end\n",
            STUCK_GRACE.as_secs()
        ));
    }
    if k.is_halted() {
        stderr.push_str("map_stress: the kernel stopped during the run\n");
    }
    let exit_code = if cancelled {
        stderr.push_str("map_stress: cancelled\n");
        130
    } else if c.errors.load(Ordering::Relaxed) + spawn_errors > 0 || stuck > 0 || k.is_halted() {
        1
    } else {
        0
    };
    ToolOutput {
        exit_code,
        stdout: format!("{line}\n"),
        stderr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_and_type_errors_name_the_problem() {
        assert_eq!(
            parse_mix("find:1,nap:2").unwrap_err(),
            "--mix: unknown operation \"nap\" (find, update, delete)"
        );
        assert_eq!(
            parse_mix("find").unwrap_err(),
            "--mix: \"find\" is not op:weight"
        );
        assert_eq!(
            parse_mix("find:0").unwrap_err(),
            "--mix: weights add up to 0"
        );
        let e = parse(&["--map-type".to_string(), "array".to_string()]).unwrap_err();
        assert_eq!(e, "--map-type: unknown type \"array\" (sample, hash)");
        let c = parse(&[]).unwrap();
        assert_eq!(
            (c.threads, c.keys, c.maps, c.duration),
            (4, 64, 1, Duration::from_secs(5))
        );
    }
}
