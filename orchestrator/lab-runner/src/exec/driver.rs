//! Driver control steps: start / stop / restart / wait, each with an expected end state.
//!
//! A stop that should complete but stays STOP_PENDING past its timeout is a hang (upstream CI
//! bounds driver stops and forces a dump too); a stop expected to pend (live maps hold the
//! provider's rundown) must still be pending when checked.

use std::time::{Duration, Instant};

use lab_backends::{Guest, ServiceState};
use lab_config::DriverOp;

use super::{LeafResult, StepError, UnitCtx, from_backend};

const POLL: Duration = Duration::from_millis(10);

pub(super) async fn start(ctx: &UnitCtx<'_>, op: &DriverOp) -> LeafResult {
    let svc = &op.driver.service;
    let state = ctx
        .guest
        .service_start(svc)
        .await
        .map_err(|e| (from_backend(&format!("start {svc}"), e), None))?;
    settle(ctx, op, state, "start").await
}

pub(super) async fn stop(ctx: &UnitCtx<'_>, op: &DriverOp) -> LeafResult {
    let svc = &op.driver.service;
    let state = ctx
        .guest
        .service_stop(svc)
        .await
        .map_err(|e| (from_backend(&format!("stop {svc}"), e), None))?;
    settle(ctx, op, state, "stop").await
}

pub(super) async fn restart(ctx: &UnitCtx<'_>, op: &DriverOp) -> LeafResult {
    let stop_op = DriverOp {
        expect: ServiceState::Stopped,
        ..op.clone()
    };
    stop(ctx, &stop_op).await?;
    start(ctx, op).await
}

pub(super) async fn wait(ctx: &UnitCtx<'_>, op: &DriverOp) -> LeafResult {
    let svc = &op.driver.service;
    let state = ctx
        .guest
        .service_query(svc)
        .await
        .map_err(|e| (from_backend(&format!("query {svc}"), e), None))?;
    settle(ctx, op, state, "wait for").await
}

/// Polls the service until it reaches the expected state or the step's timeout passes.
async fn settle(
    ctx: &UnitCtx<'_>,
    op: &DriverOp,
    mut state: ServiceState,
    verb: &str,
) -> LeafResult {
    let svc = &op.driver.service;
    let want = op.expect;
    let started = Instant::now();
    let deadline = started + op.timeout;
    loop {
        if state == want {
            return Ok(None);
        }
        // A state from which the wanted one can no longer be reached fails at once: a stop
        // that completed while it should pend means the provider did not wait for its maps.
        let hopeless = match want {
            ServiceState::StopPending => state == ServiceState::Stopped,
            ServiceState::Running => state == ServiceState::Stopped && verb != "wait for",
            _ => false,
        };
        if hopeless || Instant::now() >= deadline {
            // The time it really took, to the millisecond: a hopeless state shows up in
            // milliseconds, long before the limit.
            let after = crate::report::duration_text(started.elapsed());
            let limit = crate::report::timeout_text(op.timeout);
            let msg =
                format!("{verb} {svc}: expected {want}, got {state} after {after} (limit {limit})");
            // A stop that never completes is a hung unload: get a dump of it.
            let hang = want == ServiceState::Stopped && state == ServiceState::StopPending;
            return Err((
                if hang {
                    StepError::Hang(msg)
                } else {
                    StepError::Failed(msg)
                },
                None,
            ));
        }
        tokio::time::sleep(POLL).await;
        state = ctx
            .guest
            .service_query(svc)
            .await
            .map_err(|e| (from_backend(&format!("query {svc}"), e), None))?;
    }
}
