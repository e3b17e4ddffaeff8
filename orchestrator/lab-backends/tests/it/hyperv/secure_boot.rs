//! A template with Secure Boot on cannot take test signing: Windows ignores `testsigning`
//! under Secure Boot while `bcdedit` may still exit 0, so the backend must refuse instead of
//! trusting the exit code (test-signed drivers would then fail to load much later).

use lab_backends::hyperv::host::scripted::Reply;
use lab_backends::hyperv::{HyperV, ScriptedHost, fixture};
use lab_backends::{Guest, Hypervisor};

use super::support::{Log, config, ops, spec};

const VM: &str = "hvlab-r-ws2022-0";

/// A lab whose only template has Secure Boot as given, over a host where every script
/// succeeds (bcdedit included, exit code 0: the case the backend used to trust).
fn lab(secure_boot: bool) -> (HyperV, Log) {
    let mut cfg = config();
    cfg.templates[0].secure_boot = secure_boot;
    let host = ScriptedHost::new("hv1", |script, _| match script.op {
        "vm.create" => Reply::Value(serde_json::json!({
            "Name": VM, "Id": "00000000-0000-0000-0000-000000000000", "Path": "D:\\x"
        })),
        op if op.starts_with("guest.") => Reply::Value(serde_json::json!({
            "ExitCode": 0, "Stdout": "The operation completed successfully.", "Stderr": "",
            "TimedOut": false
        })),
        _ => Reply::ok(),
    });
    let log = host.log();
    let hv = fixture::backend(cfg, vec![host]);
    (hv, log)
}

#[tokio::test]
async fn test_signing_on_a_secure_boot_template_is_refused_naming_secure_boot() {
    let (hv, log) = lab(true);
    hv.create(&spec(VM)).await.unwrap();
    let err = hv
        .guest(VM)
        .unwrap()
        .set_test_signing(true)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Secure Boot"), "{err}");
    assert!(err.contains("ws2022"), "names the template: {err}");
    assert!(
        !ops(&log).contains(&"guest.set_test_signing"),
        "bcdedit must not run: {:?}",
        ops(&log)
    );
}

#[tokio::test]
async fn secure_boot_allows_turning_test_signing_off_and_plain_templates_allow_on() {
    let (hv, log) = lab(true);
    hv.create(&spec(VM)).await.unwrap();
    hv.guest(VM).unwrap().set_test_signing(false).await.unwrap();
    assert!(ops(&log).contains(&"guest.set_test_signing"));

    let (hv, log) = lab(false);
    hv.create(&spec(VM)).await.unwrap();
    hv.guest(VM).unwrap().set_test_signing(true).await.unwrap();
    assert!(ops(&log).contains(&"guest.set_test_signing"));
}
