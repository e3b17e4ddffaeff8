//! A metric's source: exactly one of pool_bytes, pool_allocs, epoch or powershell, fitting
//! the payload's target.

use crate::model::MetricSource;
use crate::validate::{Cx, list};
use crate::values::Sp;
use crate::wire::payload::{MetricWire, PayloadTarget};

pub(super) fn source(
    cx: &mut Cx<'_>,
    m: &MetricWire,
    target: PayloadTarget,
    p: &str,
) -> Option<MetricSource> {
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
    if sources.len() != 1 {
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
    let tag = |cx: &mut Cx<'_>, t: &Sp<String>, field: &str| {
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
    };
    let wrong_target = |cx: &mut Cx<'_>, loc, field: &str, only: &str| {
        cx.error(
            "conflict",
            loc,
            format!("{p}.{field}"),
            format!("`{field}` metrics are only available on {only} payloads"),
        );
    };
    if let Some(t) = &m.pool_bytes {
        return Some(MetricSource::PoolBytes {
            tag: tag(cx, t, "pool_bytes"),
        });
    }
    if let Some(t) = &m.pool_allocs {
        return Some(MetricSource::PoolAllocs {
            tag: tag(cx, t, "pool_allocs"),
        });
    }
    if let Some(e) = &m.epoch {
        if target != PayloadTarget::Sim {
            wrong_target(cx, e.loc, "epoch", "sim");
        }
        return Some(MetricSource::Epoch(e.value));
    }
    let (script, field) = (m.powershell.as_ref()?, m.field.as_ref()?);
    if target != PayloadTarget::Windows {
        wrong_target(cx, script.loc, "powershell", "windows");
    }
    Some(MetricSource::PowerShell {
        script: script.value.clone(),
        field: field.value.clone(),
    })
}
