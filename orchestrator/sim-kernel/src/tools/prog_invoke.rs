//! `prog_invoke`: loads a sample program, attaches links to the sample hook and runs the
//! hook from several threads at a given rate (the extension's run IOCTL); prints one JSON
//! line of counters. While the extension restarts, runs fail cleanly (`extension_away`)
//! and the links bind again when it is back; anything else is an error. A tool started while
//! the extension is away retries loading and attaching (counted as `extension_away`) until
//! it is back or the duration ends. With `--link-lifetime` the links are detached and
//! attached again during the run.

use super::args::Args;
use crate::error::EbpfError;
use crate::hook::{LinkHandle, ProgramHandle};
use crate::kernel::Kernel;
use crate::tool_io::{CancelFlag, ToolOutput};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub(crate) const USAGE: &str = "usage: prog_invoke [--threads N] [--duration D] [--links N] \
[--rate N] [--link-lifetime D] [--seed S]";

#[derive(Debug)]
struct Config {
    threads: usize,
    duration: Duration,
    links: usize,
    /// Runs per second per thread; 0 = as fast as possible.
    rate: u64,
    /// Detach and re-attach every link this often (user-side detach during invocation).
    link_lifetime: Option<Duration>,
}

fn parse(args: &[String]) -> Result<Config, String> {
    let a = Args::parse(
        args,
        &[
            "threads",
            "duration",
            "links",
            "rate",
            "link-lifetime",
            "seed",
        ],
        &[],
    )?;
    // The seed is accepted for the common tool contract; the workload has no randomness.
    a.int("seed", 0, 0, u64::MAX)?;
    let link_lifetime = a.duration("link-lifetime", None)?;
    if link_lifetime.is_some_and(|d| d.is_zero()) {
        return Err("--link-lifetime must be more than 0".into());
    }
    Ok(Config {
        link_lifetime,
        threads: a.int("threads", 4, 1, 256)? as usize,
        duration: a
            .duration("duration", Some(Duration::from_secs(2)))?
            .unwrap_or_default(),
        links: a.int("links", 2, 1, 64)? as usize,
        rate: a.int("rate", 0, 0, 1_000_000)?,
    })
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    invocations: AtomicU64,
    extension_away: AtomicU64,
    errors: AtomicU64,
}

struct Run {
    k: Kernel,
    cfg: Config,
    c: Counters,
    first_error: parking_lot::Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Run {
    fn error(&self, msg: String) {
        self.c.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().get_or_insert(msg);
    }

    fn worker(&self, i: usize) {
        self.k.bind_current_thread(i as u32);
        let period = (self.cfg.rate > 0).then(|| Duration::from_secs(1) / self.cfg.rate as u32);
        let mut next = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if let Some(p) = period {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep((next - now).min(Duration::from_millis(5)));
                    continue;
                }
                next += p;
            }
            self.c.calls.fetch_add(1, Ordering::Relaxed);
            match self.k.invoke_hook(i as u32) {
                Ok(r) => {
                    self.c
                        .invocations
                        .fetch_add(u64::from(r.ran), Ordering::Relaxed);
                    self.c
                        .extension_away
                        .fetch_add(u64::from(r.away), Ordering::Relaxed);
                }
                Err(EbpfError::ExtensionFailedToLoad) => {
                    self.c.extension_away.fetch_add(1, Ordering::Relaxed);
                    // The device is gone; do not spin on it while the extension restarts.
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err(EbpfError::Halted(_)) => {
                    self.stop.store(true, Ordering::Relaxed);
                    return;
                }
                Err(e) => self.error(format!("failed to run the hook: {e}")),
            }
        }
    }
}

/// Detaches every link and attaches new ones while the workers keep invoking. With the
/// extension away, attach fails cleanly (counted) and is retried at the next lifetime.
fn relink(run: &Run, program: &ProgramHandle, links: &mut Vec<LinkHandle>) {
    for l in links.drain(..) {
        match l.detach() {
            Ok(()) | Err(EbpfError::Halted(_)) => {}
            Err(e) => run.error(format!("failed to detach a link: {e}")),
        }
    }
    for _ in 0..run.cfg.links {
        match program.attach() {
            Ok(l) => links.push(l),
            Err(EbpfError::ExtensionFailedToLoad) => {
                run.c.extension_away.fetch_add(1, Ordering::Relaxed);
            }
            Err(EbpfError::Halted(_)) => {}
            Err(e) => run.error(format!("failed to attach a link: {e}")),
        }
    }
}

/// Loads the program if it is not yet and tops the links up to `--links`. The extension
/// may be away when the tool starts (a restart loop beside it): that is a clean, counted
/// failure retried at the next tick, as a real tool would, not a reason to give up.
fn ensure_attached(run: &Run, program: &mut Option<ProgramHandle>, links: &mut Vec<LinkHandle>) {
    let p = match program {
        Some(p) => p,
        None => match run.k.load_program() {
            Ok(p) => program.insert(p),
            Err(EbpfError::ExtensionFailedToLoad) => {
                run.c.extension_away.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(EbpfError::Halted(_)) => return,
            Err(e) => {
                run.error(format!("failed to load the program: {e}"));
                run.stop.store(true, Ordering::Relaxed);
                return;
            }
        },
    };
    while links.len() < run.cfg.links {
        match p.attach() {
            Ok(l) => links.push(l),
            Err(EbpfError::ExtensionFailedToLoad) => {
                run.c.extension_away.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(EbpfError::Halted(_)) => return,
            Err(e) => {
                run.error(format!("failed to attach a link: {e}"));
                run.stop.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

pub(crate) fn run(k: &Kernel, args: &[String], cancel: &CancelFlag) -> ToolOutput {
    let cfg = match parse(args) {
        Ok(c) => c,
        Err(e) => return super::usage_error("prog_invoke", &e, USAGE),
    };
    let run = Arc::new(Run {
        k: k.clone(),
        cfg,
        c: Counters::default(),
        first_error: parking_lot::Mutex::new(None),
        stop: AtomicBool::new(false),
    });
    let mut program = None;
    let mut links = Vec::new();
    ensure_attached(&run, &mut program, &mut links);
    let workers: Vec<_> = (0..run.cfg.threads)
        .map(|i| {
            let run = run.clone();
            std::thread::Builder::new()
                .name(format!("prog_invoke-{i}"))
                .spawn(move || run.worker(i))
        })
        .collect();
    let start = Instant::now();
    let mut cancelled = false;
    let mut relinked = Instant::now();
    let mut relinks = 0u64;
    while start.elapsed() < run.cfg.duration && !run.stop.load(Ordering::Relaxed) {
        if cancel.is_cancelled() {
            cancelled = true;
            break;
        }
        if k.is_halted() {
            break;
        }
        if let Some(p) = &program
            && run
                .cfg
                .link_lifetime
                .is_some_and(|l| relinked.elapsed() >= l)
        {
            relinked = Instant::now();
            relinks += 1;
            relink(&run, p, &mut links);
        }
        ensure_attached(&run, &mut program, &mut links);
        std::thread::sleep(
            Duration::from_millis(5).min(run.cfg.duration.saturating_sub(start.elapsed())),
        );
    }
    run.stop.store(true, Ordering::Relaxed);
    let mut spawn_errors = 0u64;
    for w in workers {
        match w {
            Ok(h) => {
                let _ = h.join();
            }
            Err(_) => spawn_errors += 1,
        }
    }
    // Detach the links and unload the program, as a tool exiting closes its handles.
    for l in &links {
        if let Err(e) = l.detach()
            && !matches!(e, EbpfError::Halted(_))
        {
            run.error(format!("failed to detach a link: {e}"));
        }
    }
    let runs = program.as_ref().map_or(0, ProgramHandle::runs);
    drop(links);
    if program.is_none() && !k.is_halted() && !cancelled {
        // Nothing was ever invoked: the run tested nothing, so it cannot pass.
        run.error("failed to load the program: the extension was away for the whole run".into());
    }
    drop(program);
    let c = &run.c;
    let errors = c.errors.load(Ordering::Relaxed) + spawn_errors;
    let line = serde_json::json!({
        "calls": c.calls.load(Ordering::Relaxed),
        "invocations": c.invocations.load(Ordering::Relaxed),
        "extension_away": c.extension_away.load(Ordering::Relaxed),
        "errors": errors,
        "program_runs": runs,
        "links": run.cfg.links,
        "relinks": relinks,
        "elapsed_ms": start.elapsed().as_millis() as u64,
        "bugcheck": k.bugcheck().map(|b| format!("{:#x}", b.code)),
    });
    let mut stderr = String::new();
    if let Some(e) = run.first_error.lock().as_ref() {
        stderr.push_str(&format!("prog_invoke: {e}\n"));
    }
    if k.is_halted() {
        stderr.push_str("prog_invoke: the kernel stopped during the run\n");
    }
    let exit_code = if cancelled {
        stderr.push_str("prog_invoke: cancelled\n");
        130
    } else if errors > 0 || k.is_halted() {
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
    fn arguments_are_checked() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            (c.threads, c.links, c.rate, c.duration),
            (4, 2, 0, Duration::from_secs(2))
        );
        let e = parse(&["--links".into(), "0".into()]).unwrap_err();
        assert_eq!(e, "--links: 0 is out of range 1..=64");
    }
}
