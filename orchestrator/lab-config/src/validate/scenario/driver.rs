//! The driver steps (`driver_start`, `driver_stop`, `driver_restart`, `driver_wait`): the
//! driver resolved in the payload and the state the step may end in.

use super::Walk;
use crate::diag::Related;
use crate::model::{DriverOp, DriverRef, StepKind};
use crate::validate::{Cx, list};
use crate::values::Sp;
use crate::wire::scenario::{DriverOpWire, DriverState};

use DriverState::{Running, StopPending, Stopped};

/// The state a driver step ends in without `expect`, and the states `expect` may name.
pub(super) struct Ends {
    default: DriverState,
    allowed: &'static [DriverState],
}

/// `driver_start` and `driver_restart`.
pub(super) const RUNNING: Ends = Ends {
    default: Running,
    allowed: &[Running],
};

/// `driver_stop`: it may also be told to end in STOP_PENDING (`expect: stop_pending`).
pub(super) const STOPPED: Ends = Ends {
    default: Stopped,
    allowed: &[Stopped, StopPending],
};

/// `driver_start`, `driver_stop` and `driver_restart`.
pub(super) fn op(
    cx: &mut Cx<'_>,
    walk: &Walk<'_>,
    w: &DriverOpWire,
    kp: &str,
    ends: &Ends,
) -> Option<DriverOp> {
    driver_op(cx, walk, w, kp, ends.default, ends.allowed)
}

pub(super) fn wait(
    cx: &mut Cx<'_>,
    walk: &Walk<'_>,
    w: &Sp<DriverOpWire>,
    kp: &str,
) -> Option<StepKind> {
    if w.expect.is_none() {
        cx.error(
            "missing",
            w.loc,
            format!("{kp}.expect"),
            "`driver_wait` needs `expect` (running, stopped or stop_pending)",
        );
    }
    let allowed = [Running, Stopped, StopPending];
    driver_op(cx, walk, w, kp, Stopped, &allowed).map(StepKind::DriverWait)
}

fn driver_op(
    cx: &mut Cx<'_>,
    walk: &Walk<'_>,
    w: &DriverOpWire,
    p: &str,
    default: DriverState,
    allowed: &[DriverState],
) -> Option<DriverOp> {
    let payload = walk.payload;
    let index = payload
        .drivers
        .iter()
        .position(|d| d.service == w.driver.value);
    if index.is_none() {
        let names: Vec<&str> = payload.drivers.iter().map(|d| d.service.as_str()).collect();
        let d = cx.error(
            "unknown-reference",
            w.driver.loc,
            format!("{p}.driver"),
            format!(
                "unknown driver `{}` in payload `{}`",
                w.driver.value, payload.name
            ),
        );
        d.related.push(Related {
            message: format!(
                "payload `{}` defines drivers {}",
                payload.name,
                list(&names)
            ),
            file: payload.file.to_path_buf(),
            loc: payload.drivers.first().map(|d| d.origin.loc),
        });
    }
    let expect = w.expect.as_ref().map_or(default, |e| e.value);
    if let Some(e) = &w.expect
        && !allowed.contains(&e.value)
    {
        let names: Vec<&str> = allowed.iter().map(|s| state_name(*s)).collect();
        cx.error(
            "invalid-value",
            e.loc,
            format!("{p}.expect"),
            format!(
                "this step cannot end in `{}`; expected {}",
                state_name(e.value),
                list(&names)
            ),
        );
    }
    let timeout = cx.positive_duration(
        w.timeout.as_ref(),
        &format!("{p}.timeout"),
        "timeout",
        walk.step_timeout,
    );
    Some(DriverOp {
        driver: DriverRef {
            index: index?,
            service: w.driver.value.clone(),
        },
        expect: expect.into(),
        timeout,
    })
}
fn state_name(s: DriverState) -> &'static str {
    match s {
        DriverState::Running => "running",
        DriverState::Stopped => "stopped",
        DriverState::StopPending => "stop_pending",
    }
}
