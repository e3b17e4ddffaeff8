//! No fault switch on: 8 threads for 5 s of mixed operations (user-mode and helper calls)
//! while the extension is stopped and started over and over; no bugcheck, and pool bytes
//! return to baseline once the maps are gone and epochs synchronise.

use crate::support::*;
use sim_kernel::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

#[test]
fn eight_threads_with_extension_restarts_leave_no_trace() {
    let (k, svc) = boot();
    k.synchronize().unwrap();
    let base = k.pool_stats().tag("Smpl");
    let done = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU32::new(0));
    let controller = {
        let (k, svc, done, cycles) = (k.clone(), svc.clone(), done.clone(), cycles.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(150));
                k.stop_driver(&svc).unwrap();
                // The stop completes once the tool's maps reach their lifetime.
                assert!(
                    wait_state(&k, &svc, ServiceState::Stopped, Duration::from_secs(3)),
                    "stop never completed"
                );
                std::thread::sleep(Duration::from_millis(20));
                k.load_driver(&svc, &image(ImageKind::SampleExt, &[]))
                    .unwrap();
                cycles.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let out = k
        .run_tool(
            "map_stress",
            &args("--threads 8 --duration 5s --keys 64 --maps 2 --map-lifetime 40ms --helpers --seed 7"),
            &CancelFlag::new(),
        )
        .unwrap();
    done.store(true, Ordering::Relaxed);
    controller.join().unwrap();
    assert_eq!(
        out.exit_code, 0,
        "stdout: {} stderr: {}",
        out.stdout, out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert!(v["ops"].as_u64().unwrap() > 10_000, "{v}");
    assert!(v["hits"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["create_failures"].as_u64().unwrap() > 0,
        "the provider was away at times: {v}"
    );
    assert!(
        cycles.load(Ordering::Relaxed) >= 3,
        "too few restart cycles"
    );
    assert!(k.bugcheck().is_none(), "{:?}", k.bugcheck());
    k.synchronize().unwrap();
    assert_eq!(k.live_maps(), 0);
    let after = k.pool_stats().tag("Smpl");
    assert_eq!(
        (after.bytes, after.allocs),
        (base.bytes, base.allocs),
        "pool bytes back to baseline"
    );
    assert_eq!(k.epoch_stats().pending_bytes, 0);
    assert_eq!(k.pool_stats().tag("eMap").bytes, 0);
    k.shutdown();
}
