//! A metric's source: exactly one of pool_bytes, pool_allocs, epoch or powershell, fitting
//! the payload's target.

use crate::model::MetricSource;
use crate::validate::{Cx, list};
use crate::values::{Loc, Sp};
use crate::wire::payload::{MetricWire, PayloadTarget};

/// The metric's one source, fitting `target`; `None` (reported) when it has none or several.
pub(super) fn source(
    cx: &mut Cx<'_>,
    m: &MetricWire,
    target: PayloadTarget,
    p: &str,
) -> Option<MetricSource> {
    if !exactly_one_source(cx, m, p) {
        return None;
    }
    if m.field.is_some() != m.powershell.is_some()
        && let Some(loc) = m
            .field
            .as_ref()
            .map(|f| f.loc)
            .or(m.powershell.as_ref().map(|s| s.loc))
    {
        cx.error("missing", loc, format!("{p}.field"), "`powershell` and `field` go together: the script prints JSON and `field` names the number");
        return None;
    }
    if let Some(t) = &m.pool_bytes {
        return Some(MetricSource::PoolBytes {
            tag: pool_tag(cx, t, p, "pool_bytes"),
        });
    }
    if let Some(t) = &m.pool_allocs {
        return Some(MetricSource::PoolAllocs {
            tag: pool_tag(cx, t, p, "pool_allocs"),
        });
    }
    if let Some(e) = &m.epoch {
        if target != PayloadTarget::Sim {
            wrong_target(cx, e.loc, p, "epoch", "sim");
        }
        return Some(MetricSource::Epoch(e.value));
    }
    let (script, field) = (m.powershell.as_ref()?, m.field.as_ref()?);
    if target != PayloadTarget::Windows {
        wrong_target(cx, script.loc, p, "powershell", "windows");
    }
    Some(MetricSource::PowerShell {
        script: script.value.clone(),
        field: field.value.clone(),
    })
}

/// Exactly one of pool_bytes, pool_allocs, epoch and powershell is given.
fn exactly_one_source(cx: &mut Cx<'_>, m: &MetricWire, p: &str) -> bool {
    let mut sources = Vec::new();
    if m.pool_bytes.is_some() {
        sources.push("pool_bytes");
    }
    if m.pool_allocs.is_some() {
        sources.push("pool_allocs");
    }
    if m.epoch.is_some() {
        sources.push("epoch");
    }
    if m.powershell.is_some() {
        sources.push("powershell");
    }
    if sources.len() == 1 {
        return true;
    }
    let msg = if sources.is_empty() {
        format!(
            "metric `{}` has no source: give one of {}",
            m.name.value,
            list(&["pool_bytes", "pool_allocs", "epoch", "powershell"])
        )
    } else {
        format!(
            "metric `{}` has more than one source: {}",
            m.name.value,
            list(&sources)
        )
    };
    cx.error("invalid-value", m.name.loc, p, msg);
    false
}

/// A pool tag: 1 to 4 printable ASCII characters.
fn pool_tag(cx: &mut Cx<'_>, t: &Sp<String>, p: &str, field: &str) -> String {
    if t.is_empty() || t.len() > 4 || !t.chars().all(|c| c.is_ascii_graphic()) {
        cx.error(
            "invalid-value",
            t.loc,
            format!("{p}.{field}"),
            format!(
                "pool tag `{}` must be 1 to 4 printable ASCII characters",
                t.value
            ),
        );
    }
    t.value.clone()
}

fn wrong_target(cx: &mut Cx<'_>, loc: Loc, p: &str, field: &str, only: &str) {
    cx.error(
        "conflict",
        loc,
        format!("{p}.{field}"),
        format!("`{field}` metrics are only available on {only} payloads"),
    );
}
