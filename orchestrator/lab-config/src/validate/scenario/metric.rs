//! The metric steps: `record_metric` takes a named baseline, `assert_metric` checks one
//! condition (a bound, or a baseline recorded earlier with a tolerance).

use super::Walk;
use crate::diag::Related;
use crate::model::{AssertMetric, MetricCondition, MetricRef, StepKind};
use crate::validate::{Cx, list};
use crate::values::{Loc, Sp};
use crate::wire::scenario::{AssertMetricWire, RecordMetricWire};

pub(super) fn record(
    cx: &mut Cx<'_>,
    walk: &mut Walk<'_>,
    r: &RecordMetricWire,
    kp: &str,
) -> Option<StepKind> {
    let metric = metric_ref(cx, walk, &r.metric, &format!("{kp}.metric"));
    cx.name(&r.as_name, &format!("{kp}.as"), "baseline");
    let metric = metric?;
    walk.baselines.insert(r.as_name.value.clone(), metric.index);
    Some(StepKind::RecordMetric {
        metric,
        as_name: r.as_name.value.clone(),
    })
}

fn metric_ref(cx: &mut Cx<'_>, walk: &Walk<'_>, name: &Sp<String>, p: &str) -> Option<MetricRef> {
    let payload = walk.payload;
    match payload.metrics.iter().position(|m| m.name == name.value) {
        Some(index) => Some(MetricRef {
            index,
            name: name.value.clone(),
        }),
        None => {
            let names: Vec<&str> = payload.metrics.iter().map(|m| m.name.as_str()).collect();
            let d = cx.error(
                "unknown-reference",
                name.loc,
                p,
                format!(
                    "unknown metric `{}` in payload `{}`",
                    name.value, payload.name
                ),
            );
            d.related.push(Related {
                message: format!(
                    "payload `{}` defines metrics {}",
                    payload.name,
                    list(&names)
                ),
                file: payload.file.to_path_buf(),
                loc: payload.metrics.first().map(|m| m.origin.loc),
            });
            None
        }
    }
}

pub(super) fn assert(
    cx: &mut Cx<'_>,
    walk: &Walk<'_>,
    w: &Sp<AssertMetricWire>,
    p: &str,
) -> Option<AssertMetric> {
    let metric = metric_ref(cx, walk, &w.metric, &format!("{p}.metric"));
    let mut conditions = Vec::new();
    if let Some(v) = &w.equals {
        conditions.push(("equals", v.loc, MetricCondition::Equals(v.value)));
    }
    if let Some(v) = &w.at_most {
        conditions.push(("at_most", v.loc, MetricCondition::AtMost(v.value)));
    }
    if let Some(v) = &w.at_least {
        conditions.push(("at_least", v.loc, MetricCondition::AtLeast(v.value)));
    }
    let tolerance = tolerance(cx, w, p);
    if let Some(b) = &w.baseline {
        baseline(cx, walk, w, b, metric.as_ref(), p);
        conditions.push((
            "baseline",
            b.loc,
            MetricCondition::Baseline {
                name: b.value.clone(),
                tolerance,
            },
        ));
    } else if let Some(t) = &w.tolerance {
        cx.error(
            "conflict",
            t.loc,
            format!("{p}.tolerance"),
            "`tolerance` only applies with `baseline`",
        );
    }
    let condition = one_condition(cx, w, conditions, p)?;
    let within = w
        .within
        .as_ref()
        .map(|d| cx.positive_duration(Some(d), &format!("{p}.within"), "within", d.value.0));
    Some(AssertMetric {
        metric: metric?,
        condition,
        within,
    })
}

/// The baseline tolerance: 0 when not given, never negative.
fn tolerance(cx: &mut Cx<'_>, w: &AssertMetricWire, p: &str) -> u64 {
    match &w.tolerance {
        None => 0,
        Some(t) if t.value < 0 => {
            cx.error(
                "range",
                t.loc,
                format!("{p}.tolerance"),
                format!("tolerance must be 0 or more, got {}", t.value),
            );
            0
        }
        Some(t) => t.value.unsigned_abs(),
    }
}

/// A baseline must be recorded by an earlier step, of the same metric.
fn baseline(
    cx: &mut Cx<'_>,
    walk: &Walk<'_>,
    w: &AssertMetricWire,
    b: &Sp<String>,
    metric: Option<&MetricRef>,
    p: &str,
) {
    match walk.baselines.get(&b.value) {
        None => {
            let mut known: Vec<&str> = walk.baselines.keys().map(String::as_str).collect();
            known.sort_unstable();
            cx.error(
                "unknown-reference",
                b.loc,
                format!("{p}.baseline"),
                format!(
                    "unknown baseline `{}`: no earlier `record_metric` step records it",
                    b.value
                ),
            )
            .help = Some(format!(
                "baselines recorded before this step: {}",
                list(&known)
            ));
        }
        Some(&idx) if metric.is_some_and(|m| m.index != idx) => {
            cx.error(
                "conflict",
                b.loc,
                format!("{p}.baseline"),
                format!(
                    "baseline `{}` records metric `{}`, not `{}`",
                    b.value, walk.payload.metrics[idx].name, w.metric.value
                ),
            );
        }
        Some(_) => {}
    }
}

/// Exactly one of the conditions the step gives.
fn one_condition(
    cx: &mut Cx<'_>,
    w: &Sp<AssertMetricWire>,
    mut conditions: Vec<(&str, Loc, MetricCondition)>,
    p: &str,
) -> Option<MetricCondition> {
    match conditions.len() {
        0 => {
            cx.error(
                "missing",
                w.loc,
                p,
                format!(
                    "`assert_metric` needs one of {}",
                    list(&["equals", "at_most", "at_least", "baseline"])
                ),
            );
            None
        }
        1 => Some(conditions.pop()?.2),
        _ => {
            cx.error(
                "conflict",
                conditions[1].1,
                format!("{p}.{}", conditions[1].0),
                format!(
                    "`assert_metric` takes one condition, got `{}` and `{}`",
                    conditions[0].0, conditions[1].0
                ),
            );
            None
        }
    }
}
