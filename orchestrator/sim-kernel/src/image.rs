//! Sim "driver files": the JSON manifest (`hvlab-sim-driver/1`) naming a built-in image of
//! this crate, its signature kind and its fault switches; bare, or in the `.hvlab` section
//! of a PE image (see `image_file`).

use serde::Deserialize;
use std::fmt;
use thiserror::Error;

/// The manifest format tag every sim driver file carries.
pub const DRIVER_FORMAT: &str = "hvlab-sim-driver/1";

/// Which built-in driver an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    /// `ebpfcore`: the eBPF core (maps, epochs); other drivers depend on it.
    EbpfCore,
    /// `sample_ext`: the sample extension, provider of `BPF_MAP_TYPE_SAMPLE_HASH_MAP` (15).
    SampleExt,
}

/// How the image is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signing {
    /// Test-signed: loads only with test signing on.
    Test,
    /// Production-signed: always loads.
    Production,
    /// Not signed: never loads.
    Unsigned,
}

impl fmt::Display for Signing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signing::Test => "test",
            Signing::Production => "production",
            Signing::Unsigned => "unsigned",
        })
    }
}

/// A fault switch of a driver image (contract names in [`Fault::name`]): most belong to the
/// sample extension; the `ebpfcore` ones are build flavours of the core, each modelling one
/// bug upstream really had in it (see docs/upstream-bugs.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Displaced/deleted entries are freed at once instead of through `epoch_free`.
    FreeWithoutEpoch,
    /// Provider detach does not wait for the maps' rundown; unload frees their contexts.
    DetachWithoutRundown,
    /// Update frees the entry it saw in the map itself, racing concurrent replacers.
    DoubleFreeOnReplace,
    /// The delete callback for a displaced value (flag `UPDATE`) is lost: the entry leaks.
    LeakOnReplace,
    /// A program helper call that misses waits for an event only unload sets, in its epoch.
    StuckReader,
    /// `DriverUnload` blocks forever (until an NMI or shutdown).
    HangOnUnload,
    /// Not a bug: the extension registers the deprecated `preprocess_map_delete_element`
    /// (PRE_FREE mode), the provider shape PR #5224's bug needs.
    LegacyPreprocessDelete,
    /// ebpfcore before PR #4924 (issue #4920): enter and `epoch_free` stamp with the CPU's
    /// own epoch, which the timer's proposal updates CPU by CPU.
    PerCpuEpochStamp,
    /// ebpfcore before PR #5069 (issue #5054): a custom-map update the table refuses after
    /// `preprocess_map_update_element` succeeded is not undone; the prepared value leaks.
    UpdateFailureNotUndone,
    /// ebpfcore before PR #5224: in PRE_FREE mode a replace skips the displaced value's
    /// delete callback; the value leaks.
    PreFreeSkipsReplaced,
    /// ebpfcore of issue #1109 (the #1701 family of unload hangs): closing a map's last
    /// handle queues its teardown work item without entering or leaving an epoch, so
    /// nothing arms the epoch timer for it.
    CloseWithoutEpoch,
    /// Hook invocations take no per-client rundown and detach frees the client context at
    /// once (upstream #254 / #2275): an invocation in flight reads freed memory.
    InvokeWithoutRundown,
    /// The hook provider initializes a client's rundown after its provider-specific attach
    /// has already published the client to invocations (upstream #2010, before PR #2011):
    /// the initialization zeroes a count an invocation holds, the invocation's release
    /// underflows it, and the detach waits for the rundown for ever.
    RundownInitAfterAttach,
    /// ebpfcore before PR #2309 (issue #2191): epoch work items run in the epoch timer's
    /// DPC at DISPATCH_LEVEL, so a map's teardown calls `ebpf_extension_unload`, which
    /// waits in the passive-only `NmrWaitForClientDeregisterComplete`, at DISPATCH.
    WorkItemsAtDispatch,
}

impl Fault {
    /// Every fault switch, in contract order.
    pub const ALL: [Fault; 14] = [
        Fault::FreeWithoutEpoch,
        Fault::DetachWithoutRundown,
        Fault::DoubleFreeOnReplace,
        Fault::LeakOnReplace,
        Fault::StuckReader,
        Fault::HangOnUnload,
        Fault::LegacyPreprocessDelete,
        Fault::PerCpuEpochStamp,
        Fault::UpdateFailureNotUndone,
        Fault::PreFreeSkipsReplaced,
        Fault::CloseWithoutEpoch,
        Fault::InvokeWithoutRundown,
        Fault::RundownInitAfterAttach,
        Fault::WorkItemsAtDispatch,
    ];

    /// The image whose code the switch changes.
    pub fn image(self) -> ImageKind {
        match self {
            Fault::PerCpuEpochStamp
            | Fault::UpdateFailureNotUndone
            | Fault::PreFreeSkipsReplaced
            | Fault::CloseWithoutEpoch
            | Fault::WorkItemsAtDispatch => ImageKind::EbpfCore,
            _ => ImageKind::SampleExt,
        }
    }

    /// The manifest name, e.g. `free_without_epoch`.
    pub fn name(self) -> &'static str {
        match self {
            Fault::FreeWithoutEpoch => "free_without_epoch",
            Fault::DetachWithoutRundown => "detach_without_rundown",
            Fault::DoubleFreeOnReplace => "double_free_on_replace",
            Fault::LeakOnReplace => "leak_on_replace",
            Fault::StuckReader => "stuck_reader",
            Fault::HangOnUnload => "hang_on_unload",
            Fault::LegacyPreprocessDelete => "legacy_preprocess_delete",
            Fault::PerCpuEpochStamp => "per_cpu_epoch_stamp",
            Fault::UpdateFailureNotUndone => "update_failure_not_undone",
            Fault::PreFreeSkipsReplaced => "pre_free_skips_replaced",
            Fault::CloseWithoutEpoch => "close_without_epoch",
            Fault::InvokeWithoutRundown => "invoke_without_rundown",
            Fault::RundownInitAfterAttach => "rundown_init_after_attach",
            Fault::WorkItemsAtDispatch => "work_items_at_dispatch",
        }
    }

    /// Parses a manifest name.
    pub fn from_name(s: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// A parsed sim driver file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverImage {
    /// The built-in driver.
    pub image: ImageKind,
    /// How it is signed.
    pub signature: Signing,
    /// Fault switches of this image, without duplicates.
    pub faults: Vec<Fault>,
}

/// Why a driver file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ImageError {
    /// Not JSON of the manifest's shape.
    #[error("parse the driver manifest: {0}")]
    Json(String),
    /// `format` is not `hvlab-sim-driver/1`.
    #[error("parse the driver manifest: format is {0:?}, expected \"hvlab-sim-driver/1\"")]
    Format(String),
    /// Unknown `image`.
    #[error("parse the driver manifest: unknown image {0:?} (known: ebpfcore, sample_ext)")]
    UnknownImage(String),
    /// Unknown `signature`.
    #[error(
        "parse the driver manifest: unknown signature {0:?} (known: test, production, unsigned)"
    )]
    UnknownSignature(String),
    /// Unknown fault name.
    #[error(
        "parse the driver manifest: unknown fault {0:?} (known: free_without_epoch, \
         detach_without_rundown, double_free_on_replace, leak_on_replace, stuck_reader, \
         hang_on_unload, legacy_preprocess_delete, per_cpu_epoch_stamp, update_failure_not_undone, \
         pre_free_skips_replaced, close_without_epoch, \
         invoke_without_rundown, rundown_init_after_attach, work_items_at_dispatch)"
    )]
    UnknownFault(String),
    /// A fault switch of the other image.
    #[error("parse the driver manifest: fault {fault:?} is not a switch of image {image}")]
    FaultOfOtherImage { fault: String, image: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    format: String,
    image: String,
    signature: String,
    #[serde(default)]
    faults: Vec<String>,
}

impl DriverImage {
    /// Parses a sim driver file (the bytes of a `.sys`: a PE image or a bare manifest).
    pub fn parse(bytes: &[u8]) -> Result<DriverImage, ImageError> {
        let bytes = crate::image_file::manifest_section(bytes).unwrap_or(bytes);
        let w: Wire = serde_json::from_slice(bytes).map_err(|e| ImageError::Json(e.to_string()))?;
        if w.format != DRIVER_FORMAT {
            return Err(ImageError::Format(w.format));
        }
        let image = match w.image.as_str() {
            "ebpfcore" => ImageKind::EbpfCore,
            "sample_ext" => ImageKind::SampleExt,
            _ => return Err(ImageError::UnknownImage(w.image)),
        };
        let signature = match w.signature.as_str() {
            "test" => Signing::Test,
            "production" => Signing::Production,
            "unsigned" => Signing::Unsigned,
            _ => return Err(ImageError::UnknownSignature(w.signature)),
        };
        let mut faults = Vec::new();
        for name in &w.faults {
            let f = Fault::from_name(name).ok_or_else(|| ImageError::UnknownFault(name.clone()))?;
            if f.image() != image {
                return Err(ImageError::FaultOfOtherImage {
                    fault: name.clone(),
                    image: w.image,
                });
            }
            if !faults.contains(&f) {
                faults.push(f);
            }
        }
        Ok(DriverImage {
            image,
            signature,
            faults,
        })
    }

    /// True if the fault switch is on.
    pub fn has_fault(&self, f: Fault) -> bool {
        self.faults.contains(&f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_example() {
        let img = DriverImage::parse(
            br#"{"format": "hvlab-sim-driver/1", "image": "sample_ext", "signature": "test",
                 "faults": ["detach_without_rundown"]}"#,
        )
        .unwrap();
        assert_eq!(img.image, ImageKind::SampleExt);
        assert_eq!(img.signature, Signing::Test);
        assert_eq!(img.faults, vec![Fault::DetachWithoutRundown]);
    }

    #[test]
    fn rejects_bad_manifests_with_a_clear_message() {
        let cases: [(&[u8], &str); 7] = [
            (b"not json", "parse the driver manifest: expected"),
            (
                br#"{"format":"x","image":"ebpfcore","signature":"test"}"#,
                "format is \"x\", expected",
            ),
            (
                br#"{"format":"hvlab-sim-driver/1","image":"netebpfext","signature":"test"}"#,
                "unknown image \"netebpfext\"",
            ),
            (
                br#"{"format":"hvlab-sim-driver/1","image":"ebpfcore","signature":"self"}"#,
                "unknown signature \"self\"",
            ),
            (
                br#"{"format":"hvlab-sim-driver/1","image":"sample_ext","signature":"test","faults":["oops"]}"#,
                "unknown fault \"oops\"",
            ),
            (
                br#"{"format":"hvlab-sim-driver/1","image":"ebpfcore","signature":"test","faults":["hang_on_unload"]}"#,
                "fault \"hang_on_unload\" is not a switch of image ebpfcore",
            ),
            (
                br#"{"format":"hvlab-sim-driver/1","image":"sample_ext","signature":"test","faults":["per_cpu_epoch_stamp"]}"#,
                "fault \"per_cpu_epoch_stamp\" is not a switch of image sample_ext",
            ),
        ];
        for (bytes, want) in cases {
            let msg = DriverImage::parse(bytes).unwrap_err().to_string();
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
    }

    #[test]
    fn fault_names_round_trip() {
        for f in Fault::ALL {
            assert_eq!(Fault::from_name(f.name()), Some(f));
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = DriverImage::parse(&bytes);
        }
    }
}
