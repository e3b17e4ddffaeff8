//! System event log records, and the bugcheck Kernel-Power 41 carries.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::bugcheck::Bugcheck;

/// One event log record, shaped like the System log's XML (`EventData` as name/value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRecord {
    /// Increasing, never reused within a log.
    pub record_id: u64,
    pub time_created: DateTime<Utc>,
    /// E.g. 41 (Kernel-Power), 1001 (BugCheck), 6005/6006/6008 (EventLog), 7036 (SCM).
    pub event_id: u32,
    /// E.g. `Microsoft-Windows-Kernel-Power`.
    pub provider: String,
    /// `critical`, `error`, `warning` or `information` (empty when the source does not
    /// say).
    pub level: String,
    pub message: String,
    /// `EventData` values; event 41 has `BugcheckCode` (decimal) and
    /// `BugcheckParameter1..4` (hex).
    pub data: BTreeMap<String, String>,
}

impl EventRecord {
    /// The bugcheck in a Kernel-Power 41 record, converting the decimal code (Windows stores
    /// it in decimal).
    pub fn bugcheck(&self) -> Option<Bugcheck> {
        if self.event_id != 41 {
            return None;
        }
        let code: u32 = self.data.get("BugcheckCode")?.trim().parse().ok()?;
        if code == 0 {
            return None;
        }
        let mut params = [0u64; 4];
        for (i, p) in params.iter_mut().enumerate() {
            let raw = self
                .data
                .get(&format!("BugcheckParameter{}", i + 1))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            *p = parse_u64(&raw).unwrap_or(0);
        }
        Some(Bugcheck { code, params })
    }
}

/// Parses `0x1a`, `1A` hex or decimal strings the way event data and WMI hand them out.
fn parse_u64(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(event_id: u32, data: &[(&str, &str)]) -> EventRecord {
        EventRecord {
            record_id: 1,
            time_created: DateTime::UNIX_EPOCH,
            event_id,
            provider: "Microsoft-Windows-Kernel-Power".into(),
            level: "critical".into(),
            message: String::new(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn event_41_code_is_decimal() {
        let rec = record(
            41,
            &[
                ("BugcheckCode", "80"),
                ("BugcheckParameter1", "0xffffa0001234"),
            ],
        );
        let bc = rec.bugcheck().unwrap();
        assert_eq!(bc.code, 0x50);
        assert_eq!(bc.params[0], 0xffff_a000_1234);
        assert_eq!(bc.params[1], 0);
    }

    #[test]
    fn clean_shutdown_41_has_no_bugcheck() {
        assert!(record(41, &[("BugcheckCode", "0")]).bugcheck().is_none());
        assert!(record(1001, &[("BugcheckCode", "80")]).bugcheck().is_none());
    }
}
