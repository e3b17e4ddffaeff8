//! `DUMP_HEADER64`, read and checked by hand (the same fields for every dump type,
//! including the DumpType 4 small dumps kdmp-parser does not read).

use super::Fail;
use super::error::TriageErrorKind as K;
use crate::format::{self, ctx, get_u32, get_u64, hdr};

/// The first 0x2000 bytes of a dump whose signature says 64-bit kernel dump.
#[derive(Debug, Clone)]
pub struct Header {
    raw: Vec<u8>,
}

impl Header {
    /// Check the signature and wrap the header bytes.
    pub fn parse(raw: Vec<u8>) -> Result<Self, Fail> {
        debug_assert_eq!(raw.len(), format::HEADER_SIZE);
        let sig = &raw[0..8];
        if &sig[0..4] == b"MDMP" {
            return Err(Fail::new(Some(0), K::UserModeMinidump));
        }
        if sig == b"PAGEDUMP" {
            return Err(Fail::new(Some(0), K::ThirtyTwoBit));
        }
        if &sig[0..4] != format::SIGNATURE || &sig[4..8] != format::VALID_DUMP64 {
            return Err(Fail::new(
                Some(0),
                K::NotADump {
                    found: super::printable(sig),
                },
            ));
        }
        Ok(Self { raw })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    pub fn dump_type(&self) -> u32 {
        get_u32(&self.raw, hdr::DUMP_TYPE)
    }

    pub fn major_version(&self) -> u32 {
        get_u32(&self.raw, hdr::MAJOR_VERSION)
    }

    pub fn build(&self) -> u32 {
        get_u32(&self.raw, hdr::MINOR_VERSION)
    }

    pub fn directory_table_base(&self) -> u64 {
        get_u64(&self.raw, hdr::DIRECTORY_TABLE_BASE)
    }

    pub fn ps_loaded_module_list(&self) -> u64 {
        get_u64(&self.raw, hdr::PS_LOADED_MODULE_LIST)
    }

    pub fn machine(&self) -> u32 {
        get_u32(&self.raw, hdr::MACHINE_IMAGE_TYPE)
    }

    pub fn processors(&self) -> u32 {
        get_u32(&self.raw, hdr::NUMBER_PROCESSORS)
    }

    pub fn bugcheck_code(&self) -> u32 {
        get_u32(&self.raw, hdr::BUGCHECK_CODE)
    }

    pub fn bugcheck_params(&self) -> [u64; 4] {
        std::array::from_fn(|i| get_u64(&self.raw, hdr::BUGCHECK_PARAMS + i * 8))
    }

    /// RIP of the context record in the header.
    pub fn rip(&self) -> u64 {
        get_u64(&self.raw, hdr::CONTEXT_RECORD + ctx::RIP)
    }

    pub fn rsp(&self) -> u64 {
        get_u64(&self.raw, hdr::CONTEXT_RECORD + crate::format::ctx::RSP)
    }

    pub fn kd_debugger_data_block(&self) -> u64 {
        get_u64(&self.raw, hdr::KD_DEBUGGER_DATA_BLOCK)
    }

    pub fn system_time(&self) -> i64 {
        get_u64(&self.raw, hdr::SYSTEM_TIME) as i64
    }

    /// Uptime in 100 ns units.
    pub fn system_up_time(&self) -> u64 {
        get_u64(&self.raw, hdr::SYSTEM_UP_TIME)
    }

    pub fn product_type(&self) -> u32 {
        get_u32(&self.raw, hdr::PRODUCT_TYPE)
    }

    /// The printable part of `Comment`, if any.
    pub fn comment(&self) -> Option<String> {
        let c = &self.raw[hdr::COMMENT..hdr::COMMENT + hdr::COMMENT_SIZE];
        let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
        let s: String = c[..end]
            .iter()
            .take_while(|b| b.is_ascii_graphic() || **b == b' ')
            .map(|&b| char::from(b))
            .collect();
        // An unused comment is "PAGE" fill on some writers.
        (!s.is_empty() && !s.starts_with("PAGEPAGE")).then_some(s)
    }

    /// A copy of the header with `field` (a u32 or u64 offset) replaced, for kdmp-parser.
    pub fn patched(&self, patches: &[(usize, u64, usize)]) -> Vec<u8> {
        let mut raw = self.raw.clone();
        for &(at, value, width) in patches {
            raw[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        }
        raw
    }
}
