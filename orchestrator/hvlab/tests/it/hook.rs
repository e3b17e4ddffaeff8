//! The hook side on the simulated lab: restarting the sample extension while its hook is
//! invoked passes on the correct build, and fails with its own crash bucket on the build
//! without the per-client rundown (upstream #254 / #2275).

use crate::support::{Sandbox, text};

#[test]
fn invocation_during_unload_fails_only_without_the_per_client_rundown() {
    let _timing = crate::support::timing_sensitive();
    let sb = Sandbox::new();
    let clean = sb
        .hvlab()
        .args([
            "run",
            "restart-hook-extension-during-invocation",
            "upstream-254-invoke-during-unload-clean",
        ])
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    // The race needs a restart while runs are in flight: a few tries, each a full run.
    let mut last = String::new();
    for _ in 0..3 {
        let out = sb
            .hvlab()
            .args(["run", "upstream-254-invoke-during-unload"])
            .output()
            .unwrap();
        last = text(&out);
        if out.status.code() == Some(1) {
            assert!(
                last.contains(
                    "PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ext_invoke_without_rundown.sys"
                ),
                "{last}"
            );
            return;
        }
        assert_eq!(out.status.code(), Some(0), "{last}");
    }
    panic!("the invocation-during-unload race never fired in 3 runs: {last}");
}
