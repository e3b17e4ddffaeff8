//! Metric steps: read a number from the guest (pool bytes of a tag, epoch counters), record
//! it as a baseline, or poll until a condition holds (e.g. pool bytes back to baseline once
//! epochs have released what the workload freed).

use std::time::{Duration, Instant};

use lab_backends::Guest;
use lab_config::{AssertMetric, MetricCondition, MetricRef};

use super::{LeafResult, StepError, UnitCtx, from_backend};
use crate::events::StepOutput;

const POLL: Duration = Duration::from_millis(25);

async fn read(ctx: &UnitCtx<'_>, metric: &MetricRef) -> Result<i64, StepError> {
    let source = &ctx.payload.metrics[metric.index].source;
    let key = source.sim_key().ok_or_else(|| {
        StepError::Infra(format!(
            "metric {}: its source is not available on the simulated lab",
            metric.name
        ))
    })?;
    ctx.guest
        .metric(&key)
        .await
        .map_err(|e| from_backend(&format!("read metric {}", metric.name), e))
}

fn output(name: &str, value: i64) -> StepOutput {
    let mut counters = serde_json::Map::new();
    counters.insert(name.to_owned(), value.into());
    StepOutput {
        counters: Some(counters),
        ..StepOutput::default()
    }
}

pub(super) async fn record(ctx: &UnitCtx<'_>, metric: &MetricRef, as_name: &str) -> LeafResult {
    let v = read(ctx, metric).await.map_err(|e| (e, None))?;
    ctx.baselines
        .lock()
        .expect("baseline lock")
        .insert(as_name.to_owned(), v);
    Ok(Some(output(&metric.name, v)))
}

pub(super) async fn assert(ctx: &UnitCtx<'_>, a: &AssertMetric) -> LeafResult {
    let baseline = match &a.condition {
        MetricCondition::Baseline { name, .. } => {
            let b = ctx
                .baselines
                .lock()
                .expect("baseline lock")
                .get(name)
                .copied();
            match b {
                Some(b) => Some(b),
                None => {
                    let msg = format!(
                        "assert_metric {}: no value was recorded as {name} in this iteration",
                        a.metric.name
                    );
                    return Err((StepError::Failed(msg), None));
                }
            }
        }
        _ => None,
    };
    let deadline = Instant::now() + a.within.unwrap_or(Duration::ZERO);
    loop {
        let v = read(ctx, &a.metric).await.map_err(|e| (e, None))?;
        if a.condition.holds(v, baseline) {
            return Ok(Some(output(&a.metric.name, v)));
        }
        if Instant::now() >= deadline {
            let want = match &a.condition {
                MetricCondition::Equals(x) => format!("= {x}"),
                MetricCondition::AtMost(x) => format!("<= {x}"),
                MetricCondition::AtLeast(x) => format!(">= {x}"),
                MetricCondition::Baseline { name, tolerance } => {
                    format!(
                        "within {tolerance} of {name} ({})",
                        baseline.unwrap_or_default()
                    )
                }
            };
            let within = a
                .within
                .map(|w| format!(" within {}", humantime::format_duration(w)))
                .unwrap_or_default();
            let msg = format!(
                "assert_metric {}: value {v}, expected {want}{within}",
                a.metric.name
            );
            return Err((StepError::Failed(msg), Some(output(&a.metric.name, v))));
        }
        tokio::time::sleep(POLL).await;
    }
}
