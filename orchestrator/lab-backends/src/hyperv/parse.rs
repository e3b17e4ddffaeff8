//! Parsing script output: the JSON envelope into a value or a typed error record, the
//! shapes PowerShell's `ConvertTo-Json` produces (one object where a list of one was meant,
//! nothing where a list was empty), `sc.exe` text, and the notes hvlab tags its VMs with.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{PsError, PsErrorRecord};
use crate::model::{ServiceState, VmState};

#[derive(Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    value: serde_json::Value,
    #[serde(default)]
    error: Option<PsErrorRecord>,
    /// The guest's boot id, from a script made with `Script::with_boot_id`.
    #[serde(default)]
    boot: Option<String>,
}

/// Reads the envelope a script printed. Lines before it (stray output of a native tool) are
/// ignored: the envelope is always the last line.
pub fn envelope<T: DeserializeOwned>(op: &'static str, stdout: &str) -> Result<T, PsError> {
    envelope_boot(op, stdout).map(|(v, _)| v)
}

/// [`envelope`], with the boot id the script reported beside its value, if any.
pub fn envelope_boot<T: DeserializeOwned>(
    op: &'static str,
    stdout: &str,
) -> Result<(T, Option<String>), PsError> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let env: Envelope = serde_json::from_str(line).map_err(|source| PsError::Json {
        op,
        snippet: snippet(line),
        source,
    })?;
    if !env.ok {
        return Err(PsError::Record {
            op,
            record: Box::new(env.error.unwrap_or_default()),
        });
    }
    let value = serde_json::from_value(env.value).map_err(|source| PsError::Json {
        op,
        snippet: snippet(line),
        source,
    })?;
    Ok((value, env.boot.filter(|b| !b.is_empty())))
}

fn snippet(s: &str) -> String {
    lab_transport::redact::scrub(&s.chars().take(200).collect::<String>())
}

/// A list as `ConvertTo-Json` writes it: `null` for none, an object for one, an array for
/// several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for List<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Shape<T> {
            Many(Vec<T>),
            One(T),
        }
        Ok(match Option::<Shape<T>>::deserialize(d)? {
            None => List(Vec::new()),
            Some(Shape::Many(v)) => List(v),
            Some(Shape::One(x)) => List(vec![x]),
        })
    }
}

/// `Get-VM` reduced to what hvlab reads (`State` as its name, not the enum number).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VmInfo {
    pub name: String,
    pub state: String,
    #[serde(default)]
    pub notes: Option<String>,
    /// `CreationTime` in UTC, round-trip format (`vm.list_owned` only).
    #[serde(default)]
    pub created: Option<String>,
}

/// Maps Hyper-V's `VMState` names onto the backend's states.
pub fn vm_state(state: &str) -> Option<VmState> {
    Some(match state {
        "Running" | "RunningCritical" => VmState::Running,
        "Off" | "OffCritical" | "Saved" | "SavedCritical" | "Paused" | "PausedCritical" => {
            VmState::Off
        }
        "Starting" | "StartingCritical" | "Resuming" | "ResumingCritical" | "Reset"
        | "ResetCritical" => VmState::Starting,
        "Stopping" | "StoppingCritical" | "Saving" | "SavingCritical" | "Pausing"
        | "PausingCritical" | "FastSaving" | "FastSavingCritical" => VmState::Stopping,
        _ => return None,
    })
}

/// The heartbeat integration service and the VM state.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Heartbeat {
    pub state: String,
    /// `PrimaryOperationalStatus` by name: `Ok`, `Degraded`, `NoContact`, `LostCommunication`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub enabled: bool,
}

impl Heartbeat {
    /// The guest OS is alive: running and its heartbeat answering (Degraded means the OS
    /// answers but an application reported unhealthy).
    pub fn alive(&self) -> bool {
        self.state == "Running" && matches!(self.status.as_deref(), Some("Ok" | "Degraded"))
    }
}

/// The first address of a guest that is reachable from outside: IPv4 before IPv6, never a
/// link-local one (169.254/16, fe80::/10), which Windows assigns before DHCP answers.
pub fn pick_address(addresses: &[String]) -> Option<String> {
    let parsed: Vec<std::net::IpAddr> = addresses
        .iter()
        .filter_map(|a| a.trim().parse().ok())
        .filter(|ip: &std::net::IpAddr| match ip {
            std::net::IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_unspecified(),
            std::net::IpAddr::V6(v6) => {
                (v6.segments()[0] & 0xffc0) != 0xfe80 && !v6.is_unspecified() && !v6.is_loopback()
            }
        })
        .collect();
    parsed
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| parsed.first())
        .map(ToString::to_string)
}

/// What hvlab writes into a VM's Notes so `hvlab lab gc` finds it later.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct VmTag {
    pub hvlab: u32,
    pub run_id: String,
    pub template: String,
    /// Who owns the VM and until when; renewed while the run lives. Absent in tags of
    /// hvlab versions before leases (such a VM counts as unowned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<super::lease::Lease>,
}

/// The prefix of every tag; VMs without it are never touched.
pub const TAG_PREFIX: &str = "hvlab-owned:";

impl VmTag {
    pub fn notes(&self) -> String {
        format!(
            "{TAG_PREFIX}{}",
            serde_json::to_string(self).expect("tag serialises")
        )
    }

    pub fn from_notes(notes: &str) -> Option<VmTag> {
        let json = notes.trim().strip_prefix(TAG_PREFIX)?;
        serde_json::from_str(json.lines().next()?).ok()
    }
}

/// The `STATE` line of `sc.exe query` / `sc.exe stop` output:
/// `        STATE              : 3  STOP_PENDING`.
pub fn sc_state(text: &str) -> Option<ServiceState> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        if key.trim() != "STATE" {
            return None;
        }
        let code: u32 = value.split_whitespace().next()?.parse().ok()?;
        Some(match code {
            1 => ServiceState::Stopped,
            2 => ServiceState::StartPending,
            3 => ServiceState::StopPending,
            4 => ServiceState::Running,
            // CONTINUE_PENDING, PAUSE_PENDING, PAUSED: a kernel driver never pauses; report
            // the closest states the contract has.
            5 => ServiceState::StartPending,
            6 | 7 => ServiceState::Running,
            _ => return None,
        })
    })
}

/// `sc.exe` reports failures as `[SC] StartService FAILED 577:` followed by the message.
pub fn sc_failure(text: &str) -> Option<(u32, String)> {
    let line = text.lines().find(|l| l.contains("FAILED"))?;
    let after = line.split("FAILED").nth(1)?;
    let code: u32 = after
        .trim()
        .trim_end_matches(':')
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let message = text
        .lines()
        .skip_while(|l| !l.contains("FAILED"))
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Some((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_id_beside_a_result_is_read_and_an_empty_one_is_none() {
        let (v, boot): (u32, _) = envelope_boot(
            "t",
            r#"{"ok":true,"value":7,"boot":"2025-01-01T00:00:01Z"}"#,
        )
        .unwrap();
        assert_eq!((v, boot.as_deref()), (7, Some("2025-01-01T00:00:01Z")));
        let (_, boot): (u32, _) =
            envelope_boot("t", r#"{"ok":true,"value":7,"boot":null}"#).unwrap();
        assert_eq!(boot, None);
        let (_, boot): (u32, _) = envelope_boot("t", r#"{"ok":true,"value":7,"boot":""}"#).unwrap();
        assert_eq!(boot, None);
        let (_, boot): (u32, _) = envelope_boot("t", r#"{"ok":true,"value":7}"#).unwrap();
        assert_eq!(boot, None);
    }

    #[test]
    fn link_local_addresses_are_skipped() {
        let a = |v: &[&str]| pick_address(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&["fe80::1c2d:3e4f:5a6b:7c8d", "169.254.12.3"]), None);
        assert_eq!(
            a(&["fe80::1", "2001:db8::5", "10.0.0.7"]),
            Some("10.0.0.7".into())
        );
        assert_eq!(a(&["fe80::1", "2001:db8::5"]), Some("2001:db8::5".into()));
        assert_eq!(a(&[]), None);
    }

    #[test]
    fn tags_round_trip_and_foreign_notes_are_ignored() {
        let t = VmTag {
            hvlab: 1,
            run_id: "r1".into(),
            template: "ws2022".into(),
            lease: Some(super::super::lease::Lease {
                owner_host: "ci-7".into(),
                owner_pid: 42,
                expires_unix: 1_767_225_600,
            }),
        };
        assert_eq!(VmTag::from_notes(&t.notes()), Some(t.clone()));
        let old = VmTag { lease: None, ..t };
        assert!(!old.notes().contains("lease"), "{}", old.notes());
        assert_eq!(VmTag::from_notes(&old.notes()), Some(old));
        assert_eq!(VmTag::from_notes("build agent VM, do not touch"), None);
    }
}
