//! Each fault switch, under the same kind of workload, is detected by the model within a
//! bounded time: the right bugcheck, or a failed reclamation check. Every test runs a fixed
//! number of attempts (stopping early once the budget is spent), prints the observed
//! detection rate and requires at least one detection.

use crate::support::*;
use sim_kernel::*;
use std::time::{Duration, Instant};

/// [`rate`] for the other modules' fault tests.
pub fn rate_pub(name: &str, runs: u32, attempt: impl FnMut() -> bool) -> u32 {
    rate(name, runs, attempt)
}

/// Runs `attempt` up to `runs` times; prints and returns the detection count.
fn rate(name: &str, runs: u32, mut attempt: impl FnMut() -> bool) -> u32 {
    let start = Instant::now();
    let mut hits = 0;
    let mut tried = 0;
    for _ in 0..runs {
        tried += 1;
        if attempt() {
            hits += 1;
        }
        if start.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    println!(
        "fault {name}: detected in {hits}/{tried} runs ({:.0}%)",
        100.0 * f64::from(hits) / f64::from(tried)
    );
    assert!(hits >= 1, "fault {name} was never detected in {tried} runs");
    hits
}

/// Runs map_stress until a bugcheck or `budget`; returns the bugcheck.
fn stress_until_bugcheck(k: &Kernel, argv: &str, budget: Duration) -> Option<Bugcheck> {
    let cancel = CancelFlag::with_deadline(Instant::now() + budget);
    let _ = k.run_tool("map_stress", &args(argv), &cancel);
    k.bugcheck()
}

fn module_contains(k: &Kernel, bc: &Bugcheck) -> bool {
    k.modules()
        .iter()
        .chain(k.unloaded_modules().iter())
        .any(|m| m.name == bc.module && m.contains(bc.rip))
}

#[test]
fn free_without_epoch_is_a_use_after_free_under_readers() {
    rate("free_without_epoch", 3, || {
        let (k, svc) = boot_with(&[Fault::FreeWithoutEpoch], false);
        let bc = stress_until_bugcheck(
            &k,
            "--threads 8 --duration 2s --keys 8 --mix find:70,update:20,delete:10 --helpers",
            Duration::from_secs(2),
        );
        k.shutdown();
        match bc {
            Some(bc) => {
                assert_eq!(bc.code, 0x50, "{bc:?}");
                assert_eq!(bc.module, format!("{svc}.sys"));
                assert!(bc.function.starts_with("_sample_"), "{bc:?}");
                true
            }
            None => false,
        }
    });
}

#[test]
fn detach_without_rundown_breaks_maps_in_use_during_hot_unload() {
    rate("detach_without_rundown", 3, || {
        let (k, svc) = boot_with(&[Fault::DetachWithoutRundown], false);
        let stress = {
            let k = k.clone();
            std::thread::spawn(move || {
                stress_until_bugcheck(
                    &k,
                    "--threads 6 --duration 2s --keys 32 --maps 2 --helpers",
                    Duration::from_secs(2),
                )
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        let _ = k.stop_driver(&svc);
        let bc = stress
            .join()
            .unwrap()
            .or_else(|| k.wait_bugcheck(Duration::from_millis(200)));
        let ok = match &bc {
            Some(bc) => {
                assert!(matches!(bc.code, 0x50 | 0xCE), "{bc:?}");
                assert_eq!(bc.module, format!("{svc}.sys"));
                assert!(module_contains(&k, bc));
                // The driver's callback was called by ebpfcore: its return address is the
                // first one on the stack, and ebpfcore's exports name it.
                let core = k.modules().into_iter().find(|m| m.name == "ebpfcore.sys");
                let core = core.expect("ebpfcore loaded");
                let ret = *bc.stack.first().expect("a caller on the stack");
                assert!(core.contains(ret), "{bc:?}");
                let named = k.exports(&core).into_iter().filter(|(_, a)| *a <= ret);
                let caller = named.max_by_key(|(_, a)| *a).map(|(f, _)| f);
                assert!(
                    matches!(
                        caller,
                        Some(
                            "ebpf_map_find_entry"
                                | "ebpf_map_update_entry"
                                | "ebpf_map_delete_entry"
                                | "ebpf_program_invoke"
                                | "_ebpf_map_delete"
                        )
                    ),
                    "{caller:?}"
                );
                true
            }
            None => false,
        };
        k.shutdown();
        ok
    });
}

#[test]
fn double_free_on_replace_fails_fast() {
    rate("double_free_on_replace", 3, || {
        let (k, svc) = boot_with(&[Fault::DoubleFreeOnReplace], false);
        let bc = stress_until_bugcheck(
            &k,
            "--threads 8 --duration 2s --keys 4 --mix find:20,update:80",
            Duration::from_secs(2),
        );
        k.shutdown();
        match bc {
            Some(bc) => {
                assert!(matches!(bc.code, 0x139 | 0xC2), "{bc:?}");
                assert_eq!(bc.module, format!("{svc}.sys"));
                true
            }
            None => false,
        }
    });
}

#[test]
fn leak_on_replace_fails_the_reclamation_check() {
    rate("leak_on_replace", 3, || {
        let (k, _) = boot_with(&[Fault::LeakOnReplace], false);
        k.synchronize().unwrap();
        let base = k.pool_stats().tag("Smpl").bytes;
        let out = k
            .run_tool(
                "map_stress",
                &args("--threads 4 --duration 300ms --keys 16"),
                &CancelFlag::new(),
            )
            .unwrap();
        assert_eq!(out.exit_code, 0, "{}", out.stderr);
        k.synchronize().unwrap();
        assert_eq!(k.live_maps(), 0);
        let leaked = k.pool_stats().tag("Smpl").bytes - base;
        k.shutdown();
        leaked > 0
    });
}

#[test]
fn stuck_reader_pins_the_epoch_and_pending_bytes_grow() {
    rate("stuck_reader", 2, || {
        let (k, svc) = boot_with(&[Fault::StuckReader], false);
        let out = k
            .run_tool(
                "map_stress",
                &args("--threads 4 --duration 700ms --keys 64 --helpers"),
                &CancelFlag::new(),
            )
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        let stuck = v["stuck_threads"].as_u64().unwrap();
        let e1 = k.epoch_stats();
        std::thread::sleep(Duration::from_millis(50));
        let e2 = k.epoch_stats();
        // Released epoch no longer advances and retired bytes stay pending.
        let pinned = stuck == 1
            && e2.pending_bytes > 0
            && e2.released == e1.released
            && e2.current > e1.current;
        if pinned {
            assert_eq!(out.exit_code, 1);
            assert!(
                out.stderr.contains("did not return from the kernel"),
                "{}",
                out.stderr
            );
        }
        // Unloading sets the event the reader waits for: it leaves and memory drains.
        let _ = k.stop_driver(&svc);
        let drained = eventually(Duration::from_secs(3), || {
            k.epoch_stats().pending_bytes == 0
        });
        assert!(
            drained,
            "pending bytes never drained: {:?}",
            k.epoch_stats()
        );
        assert!(wait_state(
            &k,
            &svc,
            ServiceState::Stopped,
            Duration::from_secs(3)
        ));
        k.shutdown();
        pinned
    });
}

#[test]
fn hang_on_unload_stays_pending_until_an_nmi() {
    rate("hang_on_unload", 2, || {
        let (k, svc) = boot_with(&[Fault::HangOnUnload], false);
        let out = k
            .run_tool(
                "map_stress",
                &args("--threads 2 --duration 100ms"),
                &CancelFlag::new(),
            )
            .unwrap();
        assert_eq!(out.exit_code, 0, "{}", out.stderr);
        let _ = k.stop_driver(&svc);
        std::thread::sleep(Duration::from_millis(300));
        let hung = k.driver_state(&svc) == ServiceState::StopPending;
        let bc = k.nmi().unwrap();
        k.shutdown();
        hung && bc.code == 0x80 && bc.module == format!("{svc}.sys")
    });
}
