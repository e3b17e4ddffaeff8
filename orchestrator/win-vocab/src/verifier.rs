//! Driver Verifier settings (`verifier /flags ... /driver ...`).

use serde::{Deserialize, Serialize};

/// Driver Verifier settings (`verifier /standard /driver ...`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verifier {
    /// Driver image names (`sample_ebpf_ext.sys`) or service names, compared
    /// case-insensitively.
    pub drivers: Vec<String>,
    /// Verifier flags (`/flags`); [`Verifier::STANDARD`] is `/standard`.
    pub flags: u32,
}

impl Verifier {
    /// The flag set `verifier /standard` selects.
    pub const STANDARD: u32 = 0x209BB;
}
