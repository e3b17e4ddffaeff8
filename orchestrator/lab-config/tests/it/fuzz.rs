//! Property tests: arbitrary bytes (and YAML-ish text) fed to all three parsers never panic,
//! and every error is located.

use std::path::Path;

use proptest::prelude::*;

fn check(bytes: Vec<u8>) {
    let path = Path::new("fuzz.yaml");
    let Ok(src) = lab_config::source_from_bytes(path, bytes) else {
        return;
    };
    for result in [
        lab_config::parse_lab(&src).map(|_| ()),
        lab_config::parse_payload(&src).map(|_| ()),
        lab_config::parse_scenario(src.clone()).map(|_| ()),
    ] {
        if let Err(diags) = result {
            assert!(!diags.is_empty());
            // Rendering must not panic either (snippets index into the text).
            let _ = diags.to_string();
        }
    }
}

/// Fragments that make the fuzzer reach deeper than random bytes would.
fn yamlish() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("name: x\n".to_owned()),
        Just("kind: sim\n".to_owned()),
        Just("kind: hyperv\n".to_owned()),
        Just("target: sim\n".to_owned()),
        Just("payload: sim-ebpf\n".to_owned()),
        Just("steps:\n".to_owned()),
        Just("templates:\n".to_owned()),
        Just("  - ".to_owned()),
        Just("sleep: {min: 1s, max: 2s}\n".to_owned()),
        Just("&a [*a]\n".to_owned()),
        Just("*b\n".to_owned()),
        Just("{".to_owned()),
        Just("]".to_owned()),
        Just("\t".to_owned()),
        Just("---\n".to_owned()),
        Just("é".to_owned()),
        "[a-z_]{1,8}: [a-z0-9]{0,6}\n",
    ];
    prop::collection::vec(atom, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        check(bytes);
    }

    #[test]
    fn yamlish_text_never_panics(text in yamlish()) {
        check(text.into_bytes());
    }
}
