//! The hook side: programs bound to the program-info provider, links bound to the hook
//! provider, both surviving an extension restart; `prog_invoke` while the extension
//! restarts is clean on the correct build and a use-after-free in the extension without
//! the per-client rundown (upstream #254 / #2275).

use crate::support::*;
use sim_kernel::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Stops and starts the extension `cycles` times while `prog_invoke` runs; returns the
/// tool's output (its runs' counters summed, the first failing run's exit code) and how
/// many restarts completed. The tool runs again until every restart is done, so a loaded
/// machine that slows the restarts cannot end the invocations before them.
fn restart_during_invocation(faults: &[Fault], cycles: u32) -> (Kernel, String, ToolOutput, u32) {
    let (k, svc) = boot_with(faults, false);
    let restarts = Arc::new(AtomicU32::new(0));
    let controller = {
        let (k, svc, restarts) = (k.clone(), svc.clone(), restarts.clone());
        let faults = faults.to_vec();
        std::thread::spawn(move || {
            for _ in 0..cycles {
                std::thread::sleep(Duration::from_millis(60));
                if k.stop_driver(&svc).is_err() {
                    return;
                }
                if !wait_state(&k, &svc, ServiceState::Stopped, Duration::from_secs(3)) {
                    return;
                }
                if k.load_driver(&svc, &image(ImageKind::SampleExt, &faults))
                    .is_err()
                {
                    return;
                }
                restarts.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = ToolOutput {
        exit_code: 0,
        stdout: String::new(),
        stderr: String::new(),
    };
    let mut sum = serde_json::Map::new();
    loop {
        let run = prog_invoke(&k, "--threads 4 --links 2 --duration 300ms", deadline);
        // A run ended by a bugcheck may print no counters; its exit code tells.
        let counted: Option<serde_json::Value> = serde_json::from_str(run.stdout.trim()).ok();
        for (name, v) in counted.iter().filter_map(|c| c.as_object()).flatten() {
            let total = sum.get(name).and_then(|t| t.as_u64()).unwrap_or(0);
            sum.insert(name.clone(), (total + v.as_u64().unwrap_or(0)).into());
        }
        out.stderr.push_str(&run.stderr);
        if run.exit_code != 0 {
            out.exit_code = run.exit_code;
            break;
        }
        if controller.is_finished() || k.bugcheck().is_some() || Instant::now() >= deadline {
            break;
        }
    }
    out.stdout = serde_json::Value::Object(sum).to_string();
    controller.join().unwrap();
    let n = restarts.load(Ordering::Relaxed);
    (k, svc, out, n)
}

/// Runs `prog_invoke` with `argv`, cancelled at `deadline`.
fn prog_invoke(k: &Kernel, argv: &str, deadline: Instant) -> ToolOutput {
    k.run_tool(
        "prog_invoke",
        &args(argv),
        &CancelFlag::with_deadline(deadline),
    )
    .unwrap()
}

fn counters(out: &ToolOutput) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn programs_and_links_need_their_providers_and_survive_a_restart() {
    let k = Kernel::boot(KernelConfig {
        cpus: 2,
        test_signing: true,
        ..KernelConfig::default()
    })
    .unwrap();
    assert_eq!(k.load_program().unwrap_err(), EbpfError::CoreNotRunning);
    k.load_driver("ebpfcore", &image(ImageKind::EbpfCore, &[]))
        .unwrap();
    assert_eq!(
        k.load_program().unwrap_err(),
        EbpfError::ExtensionFailedToLoad,
        "no program-info provider"
    );
    assert_eq!(k.invoke_hook(0), Err(EbpfError::ExtensionFailedToLoad));
    k.load_driver("sample_ebpf_ext", &image(ImageKind::SampleExt, &[]))
        .unwrap();
    let prog = k.load_program().unwrap();
    assert!(prog.is_bound());
    assert_eq!(
        k.invoke_hook(0),
        Ok(HookRun { ran: 0, away: 0 }),
        "no link yet"
    );
    let link = prog.attach().unwrap();
    assert_eq!(k.invoke_hook(1), Ok(HookRun { ran: 1, away: 0 }));
    assert_eq!(
        k.stop_driver("sample_ebpf_ext").unwrap(),
        ServiceState::Stopped,
        "nothing in flight: the stop completes at once"
    );
    assert!(!prog.is_bound(), "program-info detach NULLs the data");
    assert_eq!(k.invoke_hook(1), Err(EbpfError::ExtensionFailedToLoad));
    assert_eq!(prog.attach().unwrap_err(), EbpfError::ExtensionFailedToLoad);
    k.load_driver("sample_ebpf_ext", &image(ImageKind::SampleExt, &[]))
        .unwrap();
    assert!(prog.is_bound(), "NMR binds the program to the new provider");
    assert_eq!(
        k.invoke_hook(2),
        Ok(HookRun { ran: 1, away: 0 }),
        "the link binds to the new hook provider"
    );
    link.detach().unwrap();
    assert_eq!(k.invoke_hook(3), Ok(HookRun { ran: 0, away: 0 }));
    assert_eq!(prog.runs(), 2);
    drop(link);
    drop(prog);
    k.synchronize().unwrap();
    assert_eq!(
        k.stop_driver("sample_ebpf_ext").unwrap(),
        ServiceState::Stopped
    );
    assert!(k.bugcheck().is_none());
    k.shutdown();
}

/// Upstream's link holds a reference on its program: a program whose handle closed while
/// its link lives stays a client of the program-info provider, so an extension restart
/// binds it to the new provider's data instead of leaving it pointing at the old one.
#[test]
fn a_linked_program_whose_handle_closed_follows_an_extension_restart() {
    let (k, svc) = boot_with(&[], false);
    let prog = k.load_program().unwrap();
    let link = prog.attach().unwrap();
    drop(prog);
    assert_eq!(k.live_programs(), 1, "the link keeps the program loaded");
    assert_eq!(k.invoke_hook(1), Ok(HookRun { ran: 1, away: 0 }));
    assert_eq!(k.stop_driver(&svc).unwrap(), ServiceState::Stopped);
    k.load_driver(&svc, &image(ImageKind::SampleExt, &[]))
        .unwrap();
    assert_eq!(
        k.invoke_hook(2),
        Ok(HookRun { ran: 1, away: 0 }),
        "the program is bound to the restarted extension's data"
    );
    assert!(k.bugcheck().is_none(), "{:?}", k.bugcheck());
    drop(link);
    assert_eq!(
        k.live_programs(),
        0,
        "the link's close releases the program"
    );
    k.shutdown();
}

/// Detach waits for invocations holding the client's rundown, so the correct build
/// survives restarts under invocation, with clean failures counted.
#[test]
fn restarting_the_extension_during_invocation_is_clean() {
    let (k, svc, out, restarts) = restart_during_invocation(&[], 4);
    assert!(k.bugcheck().is_none(), "{:?}", k.bugcheck());
    assert_eq!(out.exit_code, 0, "{out:?}");
    let v = counters(&out);
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["invocations"].as_u64().unwrap() > 0, "{v}");
    assert!(
        v["extension_away"].as_u64().unwrap() > 0,
        "the extension was away at times: {v}"
    );
    assert_eq!(restarts, 4, "{v}");
    assert_eq!(k.driver_state(&svc), ServiceState::Running);
    k.shutdown();
}

#[test]
fn invoke_without_rundown_is_a_use_after_free_in_the_extension() {
    let _ = crate::faults::rate_pub("invoke_without_rundown", 4, || {
        let (k, svc, out, _) = restart_during_invocation(&[Fault::InvokeWithoutRundown], 6);
        let bc = k.bugcheck();
        k.shutdown();
        match bc {
            Some(bc) => {
                assert_eq!(out.exit_code, 1, "{out:?}");
                assert_eq!(bc.code, 0x50, "{bc:?}");
                assert_eq!(bc.module, format!("{svc}.sys"), "{bc:?}");
                assert_eq!(bc.function, "_sample_ebpf_extension_invoke_program");
                true
            }
            None => false,
        }
    });
}

/// Links detached and attached again while four threads invoke them: every detach waits
/// for its invocations, nothing fails, and the re-attached links run.
#[test]
fn relinking_during_invocation_is_clean() {
    let (k, _svc) = boot();
    let out = prog_invoke(
        &k,
        "--threads 4 --links 2 --duration 400ms --link-lifetime 20ms",
        Instant::now() + Duration::from_secs(10),
    );
    assert_eq!(out.exit_code, 0, "{out:?}");
    let v = counters(&out);
    assert!(v["relinks"].as_u64().unwrap() >= 3, "{v}");
    assert!(v["invocations"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(k.bugcheck().is_none());
    k.shutdown();
}

/// A `prog_invoke` started while the extension is away (its restart loop got there first)
/// retries loading and attaching, counted, and invokes once the extension is back; one
/// that never sees it back fails with that reason instead of passing having run nothing.
#[test]
fn prog_invoke_started_while_the_extension_is_away_waits_for_it() {
    let (k, svc) = boot_with(&[], false);
    k.stop_driver(&svc).unwrap();
    assert!(wait_state(
        &k,
        &svc,
        ServiceState::Stopped,
        Duration::from_secs(3)
    ));
    let restarter = {
        let (k, svc) = (k.clone(), svc.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            k.load_driver(&svc, &image(ImageKind::SampleExt, &[]))
                .unwrap();
        })
    };
    // Long enough that the extension is back well before the end on a loaded machine.
    let out = prog_invoke(
        &k,
        "--threads 2 --links 2 --duration 3s",
        Instant::now() + Duration::from_secs(20),
    );
    restarter.join().unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");
    let v = counters(&out);
    assert!(v["extension_away"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["program_runs"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");

    k.stop_driver(&svc).unwrap();
    assert!(wait_state(
        &k,
        &svc,
        ServiceState::Stopped,
        Duration::from_secs(3)
    ));
    let out = prog_invoke(
        &k,
        "--threads 1 --duration 100ms",
        Instant::now() + Duration::from_secs(10),
    );
    assert_eq!(out.exit_code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("the extension was away for the whole run"),
        "{}",
        out.stderr
    );
    k.shutdown();
}
