//! One test per rule of the reference file (custom maps, NMR rundown, epochs, verifier).

use crate::support::*;
use sim_kernel::*;
use std::time::Duration;

const SAMPLE: u32 = BPF_MAP_TYPE_SAMPLE_HASH_MAP;

#[test]
fn custom_map_without_provider_fails_to_load() {
    let k = Kernel::boot(KernelConfig::default()).unwrap();
    k.load_driver("ebpfcore", &image(ImageKind::EbpfCore, &[]))
        .unwrap();
    let e = k.create_map(MapDefinition::new(SAMPLE, 16)).unwrap_err();
    assert_eq!(e, EbpfError::ExtensionFailedToLoad);
    assert_eq!(e.result_name(), "EBPF_EXTENSION_FAILED_TO_LOAD");
    // A type nobody provides fails the same way even with the sample loaded.
    k.load_driver("sample_ebpf_ext", &image(ImageKind::SampleExt, &[]))
        .unwrap();
    assert_eq!(
        k.create_map(MapDefinition::new(77, 16)).unwrap_err(),
        EbpfError::ExtensionFailedToLoad
    );
    assert!(k.create_map(MapDefinition::new(SAMPLE, 16)).is_ok());
    k.shutdown();
}

#[test]
fn map_api_needs_ebpfcore() {
    let k = Kernel::boot(KernelConfig::default()).unwrap();
    assert_eq!(
        k.create_map(MapDefinition::new(BPF_MAP_TYPE_HASH, 4))
            .unwrap_err(),
        EbpfError::CoreNotRunning
    );
    k.shutdown();
}

#[test]
fn stop_pends_with_live_maps_and_completes_after_they_are_deleted() {
    let (k, svc) = boot();
    let a = k.create_map(MapDefinition::new(SAMPLE, 16)).unwrap();
    let b = k.create_map(MapDefinition::new(SAMPLE, 16)).unwrap();
    k.pin_map("pinned", &b).unwrap();
    drop(b);
    a.update(1, 10, UpdateOption::Any).unwrap();
    assert_eq!(k.stop_driver(&svc).unwrap(), ServiceState::StopPending);
    // While stopping, new maps of the type cannot bind.
    assert_eq!(
        k.create_map(MapDefinition::new(SAMPLE, 16)).unwrap_err(),
        EbpfError::ExtensionFailedToLoad
    );
    // Existing maps keep working: the provider is still there.
    assert_eq!(a.find(1), Ok(10));
    drop(a);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        k.driver_state(&svc),
        ServiceState::StopPending,
        "the pinned map still holds the rundown"
    );
    k.unpin_map("pinned").unwrap();
    assert!(wait_state(
        &k,
        &svc,
        ServiceState::Stopped,
        Duration::from_secs(2)
    ));
    assert!(k.modules().iter().all(|m| m.name != format!("{svc}.sys")));
    assert!(k.bugcheck().is_none());
    // Start again: maps bind to the new provider instance.
    k.load_driver(&svc, &image(ImageKind::SampleExt, &[]))
        .unwrap();
    assert!(k.create_map(MapDefinition::new(SAMPLE, 16)).is_ok());
    k.shutdown();
}

#[test]
fn stop_without_maps_completes_at_once() {
    let (k, svc) = boot();
    assert_eq!(k.stop_driver(&svc).unwrap(), ServiceState::Stopped);
    assert_eq!(k.stop_driver(&svc).unwrap_err().win32_code(), Some(1062));
    k.shutdown();
}

#[test]
fn object_map_refuses_program_access() {
    let (k, _) = boot();
    let m = k.create_map(MapDefinition::new(SAMPLE, 16)).unwrap();
    m.update(3, 30, UpdateOption::Any).unwrap();
    assert_eq!(
        m.update_helper(3, 1, UpdateOption::Any),
        Err(EbpfError::OperationNotSupported)
    );
    assert_eq!(m.delete_helper(3), Err(EbpfError::OperationNotSupported));
    assert_eq!(m.find_helper(3), Err(EbpfError::OperationNotSupported));
    // The extension's own helper dereferences the object.
    assert_eq!(m.get_value_helper(3), Ok(30));
    assert_eq!(m.find(3), Ok(30));
    // A built-in hash map takes program updates.
    let h = k
        .create_map(MapDefinition::new(BPF_MAP_TYPE_HASH, 16))
        .unwrap();
    h.update_helper(1, 2, UpdateOption::Any).unwrap();
    assert_eq!(h.find_helper(1), Ok(2));
    h.delete_helper(1).unwrap();
    k.shutdown();
}

#[test]
fn update_options_and_next_key_follow_bpf_semantics() {
    let (k, _) = boot();
    for t in [SAMPLE, BPF_MAP_TYPE_HASH] {
        let m = k.create_map(MapDefinition::new(t, 4)).unwrap();
        assert_eq!(
            m.update(1, 1, UpdateOption::Exist),
            Err(EbpfError::KeyNotFound)
        );
        m.update(1, 1, UpdateOption::NoExist).unwrap();
        assert_eq!(
            m.update(1, 2, UpdateOption::NoExist),
            Err(EbpfError::KeyAlreadyExists)
        );
        m.update(1, 3, UpdateOption::Exist).unwrap();
        assert_eq!(m.find(1), Ok(3));
        for key in 2..=4 {
            m.update(key, key, UpdateOption::Any).unwrap();
        }
        assert_eq!(
            m.update(5, 5, UpdateOption::Any),
            Err(EbpfError::OutOfSpace)
        );
        let mut keys = vec![];
        let mut prev = None;
        while let Ok(key) = m.next_key(prev) {
            // Bounded: a walk that never ends must fail the test, not hang it.
            assert!(keys.len() < 4, "the walk repeats: {keys:?}");
            keys.push(key);
            prev = Some(key);
        }
        keys.sort();
        assert_eq!(keys, vec![1, 2, 3, 4]);
        m.delete(2).unwrap();
        assert_eq!(m.delete(2), Err(EbpfError::KeyNotFound));
        assert_eq!(m.len(), 3);
    }
    k.shutdown();
}

/// Failed updates undo the provider's allocation (delete with UPDATE), and every displaced
/// value is freed exactly once under concurrent replacement: a missed callback would leak
/// `Smpl` bytes, a second one would bugcheck 0x139.
#[test]
fn delete_callback_runs_exactly_once_per_displaced_value_and_undoes_failed_updates() {
    let (k, _) = boot();
    k.synchronize().unwrap();
    let base = k.pool_stats().tag("Smpl");
    let m = k.create_map(MapDefinition::new(SAMPLE, 8)).unwrap();
    m.update(1, 1, UpdateOption::Any).unwrap();
    for _ in 0..100 {
        assert_eq!(
            m.update(1, 2, UpdateOption::NoExist),
            Err(EbpfError::KeyAlreadyExists)
        );
        assert_eq!(
            m.update(9, 2, UpdateOption::Exist),
            Err(EbpfError::KeyNotFound)
        );
    }
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let m = m.clone();
            s.spawn(move || {
                for i in 0..5_000u32 {
                    m.update(i % 4, t, UpdateOption::Any).unwrap();
                    if i % 7 == 0 {
                        let _ = m.delete(i % 4);
                    }
                }
            });
        }
    });
    drop(m);
    k.synchronize().unwrap();
    let after = k.pool_stats().tag("Smpl");
    assert_eq!((after.bytes, after.allocs), (base.bytes, base.allocs));
    assert!(k.bugcheck().is_none());
    assert!(k.epoch_stats().retired >= 20_000);
    k.shutdown();
}

#[test]
fn test_signed_images_need_test_signing_and_unsigned_never_load() {
    let k = Kernel::boot(KernelConfig {
        test_signing: false,
        ..KernelConfig::default()
    })
    .unwrap();
    let e = k
        .load_driver("ebpfcore", &image(ImageKind::EbpfCore, &[]))
        .unwrap_err();
    assert_eq!(e.win32_code(), Some(577));
    assert!(
        e.to_string()
            .contains("Windows cannot verify the digital signature"),
        "{e}"
    );
    let prod = DriverImage {
        signature: Signing::Production,
        ..image(ImageKind::EbpfCore, &[])
    };
    k.load_driver("ebpfcore", &prod).unwrap();
    k.shutdown();
    let k = Kernel::boot(KernelConfig::default()).unwrap();
    let unsigned = DriverImage {
        signature: Signing::Unsigned,
        ..image(ImageKind::EbpfCore, &[])
    };
    assert_eq!(
        k.load_driver("ebpfcore", &unsigned)
            .unwrap_err()
            .win32_code(),
        Some(577)
    );
    k.shutdown();
}

#[test]
fn service_control_errors_carry_windows_codes() {
    let (k, svc) = boot();
    let e = k
        .load_driver(&svc, &image(ImageKind::SampleExt, &[]))
        .unwrap_err();
    assert_eq!(e.win32_code(), Some(1056));
    let e = k.stop_driver("ebpfcore").unwrap_err();
    assert_eq!(e.win32_code(), Some(1051));
    assert!(e.to_string().contains(&svc), "{e}");
    // A second sample variant provides the same map type: its DriverEntry fails.
    let e = k
        .load_driver(
            "sample_ext_leak_on_replace",
            &image(ImageKind::SampleExt, &[Fault::LeakOnReplace]),
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("STATUS_OBJECT_NAME_COLLISION"),
        "{e}"
    );
    assert_eq!(k.driver_state("nothing"), ServiceState::Stopped);
    k.shutdown();
}

/// Rule: the sample extension allocates its map entries with ebpfcore's
/// `epoch_allocate_with_tag` (the client dispatch table), so Driver Verifier charges them to
/// ebpfcore.sys: a leaked entry is not the extension's leak at its unload (it stops), but
/// ebpfcore's at ebpfcore's unload (0xC4/0x62 blaming ebpfcore.sys).
#[test]
fn verifier_charges_leaked_map_entries_to_ebpfcore() {
    let cfg = KernelConfig {
        cpus: 2,
        verifier_drivers: vec![
            "ebpfcore.sys".into(),
            "sample_ext_leak_on_replace.sys".into(),
        ],
        test_signing: true,
        ..KernelConfig::default()
    };
    let k = Kernel::boot(cfg).unwrap();
    k.load_driver("ebpfcore", &image(ImageKind::EbpfCore, &[]))
        .unwrap();
    let svc = sample_service(&[Fault::LeakOnReplace]);
    k.load_driver(&svc, &image(ImageKind::SampleExt, &[Fault::LeakOnReplace]))
        .unwrap();
    let m = k.create_map(MapDefinition::new(SAMPLE, 8)).unwrap();
    m.update(1, 1, UpdateOption::Any).unwrap();
    m.update(1, 2, UpdateOption::Any).unwrap(); // the displaced entry leaks
    drop(m);
    k.stop_driver(&svc).unwrap();
    assert!(
        wait_state(&k, &svc, ServiceState::Stopped, Duration::from_secs(5)),
        "the extension's own allocations are all freed: {:?}",
        k.bugcheck()
    );
    assert!(k.bugcheck().is_none(), "{:?}", k.bugcheck());
    k.stop_driver("ebpfcore").unwrap();
    let bc = k.wait_bugcheck(Duration::from_secs(5)).expect("bugcheck");
    assert_eq!((bc.code, bc.params[0]), (0xC4, 0x62));
    assert_eq!(bc.params[3], 1, "one allocation leaked");
    assert_eq!(bc.module, "ebpfcore.sys");
    let m = k
        .modules()
        .into_iter()
        .find(|m| m.name == bc.module)
        .unwrap();
    assert!(m.contains(bc.rip));
    k.shutdown();
}

/// Rule: an extension whose detach does not wait for its maps' rundown stops even under
/// Verifier (the entries its live maps hold are ebpfcore's allocations); the map's next use
/// runs the unloaded driver's code (0xCE), which is how upstream finds that bug.
#[test]
fn verifier_lets_a_detach_without_rundown_stop_and_the_next_map_use_is_0xce() {
    let (k, svc) = boot_with(&[Fault::DetachWithoutRundown], true);
    let m = k.create_map(MapDefinition::new(SAMPLE, 8)).unwrap();
    m.update(1, 1, UpdateOption::Any).unwrap();
    // Without waiting for the rundown the unload frees the map context under the live map;
    // the stop completes (nothing of the extension's is left), and the map's next use runs
    // the unloaded driver's code.
    k.stop_driver(&svc).unwrap();
    assert!(wait_state(
        &k,
        &svc,
        ServiceState::Stopped,
        Duration::from_secs(5)
    ));
    assert!(k.bugcheck().is_none(), "{:?}", k.bugcheck());
    drop(m);
    let bc = k.wait_bugcheck(Duration::from_secs(5)).expect("bugcheck");
    assert_eq!(bc.code, 0xCE, "{bc:?}");
    assert_eq!(bc.module, format!("{svc}.sys"));
    k.shutdown();
}

#[test]
fn verifier_is_quiet_for_a_clean_driver() {
    let (k, svc) = boot_with(&[], true);
    let m = k.create_map(MapDefinition::new(SAMPLE, 8)).unwrap();
    for i in 0..100 {
        m.update(i % 8, i, UpdateOption::Any).unwrap();
    }
    drop(m);
    k.stop_driver(&svc).unwrap();
    assert!(wait_state(
        &k,
        &svc,
        ServiceState::Stopped,
        Duration::from_secs(2)
    ));
    assert!(k.bugcheck().is_none());
    k.shutdown();
}

#[test]
fn nmi_names_the_hanging_unload_or_the_kernel() {
    let (k, svc) = boot_with(&[Fault::HangOnUnload], false);
    assert_eq!(k.stop_driver(&svc).unwrap(), ServiceState::StopPending);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(k.driver_state(&svc), ServiceState::StopPending);
    let bc = k.nmi().unwrap();
    assert_eq!(bc.code, 0x80);
    assert_eq!(bc.module, format!("{svc}.sys"));
    assert_eq!(bc.function, "_sample_ebpf_ext_driver_unload");
    let m = k
        .modules()
        .into_iter()
        .find(|m| m.name == bc.module)
        .unwrap();
    assert!(m.contains(bc.rip));
    k.shutdown();

    let k = Kernel::boot(KernelConfig::default()).unwrap();
    let bc = k.nmi().unwrap();
    assert_eq!(
        (bc.module.as_str(), bc.name()),
        ("ntoskrnl.exe", "NMI_HARDWARE_FAILURE")
    );
    assert!(k.modules()[0].contains(bc.rip));
    k.shutdown();
}

#[test]
fn after_a_bugcheck_everything_returns_errors() {
    let (k, svc) = boot();
    let m = k.create_map(MapDefinition::new(SAMPLE, 8)).unwrap();
    k.nmi();
    assert!(matches!(m.find(1), Err(EbpfError::Halted(Some(0x80)))));
    assert!(matches!(
        k.stop_driver(&svc),
        Err(KernelError::Halted(Some(0x80)))
    ));
    assert!(matches!(
        k.run_tool("ebpf_stats", &[], &CancelFlag::new()),
        Err(KernelError::Halted(_))
    ));
    assert!(k.create_map(MapDefinition::new(SAMPLE, 8)).is_err());
    // The first bugcheck wins.
    assert_eq!(k.nmi().unwrap().code, 0x80);
    drop(m);
    k.shutdown();
}

#[test]
fn modules_have_deterministic_ranges() {
    let (k, svc) = boot();
    let mods = k.modules();
    let names: Vec<_> = mods.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        vec!["ntoskrnl.exe", "ebpfcore.sys", &format!("{svc}.sys")]
    );
    assert_eq!(mods[1].base, 0xFFFF_F806_1000_0000);
    assert_eq!(mods[2].base, 0xFFFF_F806_1010_0000);
    k.shutdown();
}

#[test]
fn metrics_follow_the_contract_names() {
    let (k, _) = boot();
    let m = k.create_map(MapDefinition::new(SAMPLE, 8)).unwrap();
    m.update(1, 1, UpdateOption::Any).unwrap();
    assert!(k.metric("pool_bytes:Smpl").unwrap() > 0);
    assert!(
        k.metric("pool_allocs:Smpl").unwrap() >= 3,
        "provider ctx, map ctx, entry"
    );
    assert_eq!(k.metric("pool_bytes:None"), Some(0));
    assert!(k.metric("epoch_current").unwrap() >= 1);
    assert!(k.metric("epoch_released").is_some());
    assert!(k.metric("epoch_pending_bytes").is_some());
    assert_eq!(k.metric("pool_bytes:toolong"), None);
    assert_eq!(k.metric("nonsense"), None);
    k.shutdown();
}
