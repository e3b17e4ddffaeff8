//! Keeps the part of a VM's serial console written during a unit as `<unit>/console.log`,
//! for passing and failing units alike, capped like every other tool output we keep.

use std::path::Path;

use lab_backends::{AnyHypervisor, ConsoleSegment, Hypervisor};

use crate::bounds::OUTPUT_MAX;
use crate::events::{ArtifactKind, Event, UnitId};
use crate::exec::EventTx;
use crate::results::atomic_write;

/// The console log's name in a unit folder.
pub const CONSOLE_LOG: &str = "console.log";

/// Where the VM's console stands now: the mark a unit's console log starts from. `None`
/// where the backend keeps no console or it could not be read (the unit runs regardless).
pub async fn mark(hv: &AnyHypervisor, vm: &str) -> Option<u64> {
    hv.console_len(vm).await.ok().flatten()
}

/// Writes what the console got since `from` to `<unit_dir>/console.log` and announces it
/// as an artifact; a console that cannot be read or written is a warning, never a verdict.
pub async fn keep(
    hv: &AnyHypervisor,
    events: &EventTx,
    unit: &UnitId,
    vm: &str,
    from: u64,
    unit_dir: &Path,
    unit_rel: &Path,
) {
    let segment = match hv.console_since(vm, from, OUTPUT_MAX).await {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            let _ = events.send(Event::Warning {
                message: format!(
                    "the console log of {vm} for {unit} was not kept: {}",
                    lab_error::Chain(&e)
                ),
            });
            return;
        }
    };
    let path = unit_dir.join(CONSOLE_LOG);
    if let Err(e) = atomic_write(&path, bounded(&segment).as_bytes()) {
        let _ = events.send(Event::Warning {
            message: format!("the console log of {unit} was not kept: {e}"),
        });
        return;
    }
    let _ = events.send(Event::ArtifactCollected {
        unit: Some(unit.clone()),
        vm: vm.to_owned(),
        kind: ArtifactKind::Console,
        path: unit_rel.join(CONSOLE_LOG),
    });
}

/// The segment as text of at most [`OUTPUT_MAX`] bytes, saying how much was left out (a
/// runaway guest must not fill the results disk).
fn bounded(s: &ConsoleSegment) -> String {
    let text = String::from_utf8_lossy(&s.bytes);
    let unread = s.len.saturating_sub(s.bytes.len() as u64);
    if unread == 0 {
        return lab_config::cap_text(&text, OUTPUT_MAX).into_owned();
    }
    // Keep the head and name the whole cut, as `cap_text` would had it seen every byte.
    let mut end = OUTPUT_MAX.saturating_sub(32).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.len.saturating_sub(end as u64);
    format!(
        "{} … [{} cut]",
        &text[..end],
        lab_config::human_bytes(usize::try_from(cut).unwrap_or(usize::MAX))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_console_is_kept_whole() {
        let s = ConsoleSegment {
            bytes: b"sim-guest: booting\n".to_vec(),
            len: 19,
        };
        assert_eq!(bounded(&s), "sim-guest: booting\n");
    }

    #[test]
    fn a_runaway_console_is_capped_and_says_how_much_was_cut() {
        let s = ConsoleSegment {
            bytes: vec![b'x'; OUTPUT_MAX],
            len: 5 * 1024 * 1024,
        };
        let text = bounded(&s);
        assert!(text.len() <= OUTPUT_MAX, "{} bytes", text.len());
        assert!(text.ends_with("MiB cut]"), "{}", &text[text.len() - 40..]);
    }
}
