//! The jitter search: which moment the next iteration's disruptive step should fire at.
//!
//! 1. **Measure the workload.** Every iteration's step timeline says when the workload's
//!    tools actually ran (relative to the start of the racing `parallel`) and how late the
//!    disruptive step fired after its sleeps. Together they give the *active* part of the
//!    sleep range: the delays at which a stop lands while invocations are in flight. A
//!    workload that runs in bursts is active for a small part of its span; a uniform sleep
//!    mostly stops the driver between bursts, where nothing can race.
//! 2. **Explore** the active part evenly: a randomly shifted van der Corput sequence
//!    (halves, quarters, eighths, ...), so k iterations cover it at resolution ~1/k instead
//!    of the clumps and gaps of independent uniform draws. Before anything is measured
//!    (the first iterations, one per VM) the aims go just after the moments the scenario
//!    itself says its workload tools start (the fixed sleeps before them on their
//!    branches); after those, and for workloads with no such prediction, the whole sleep
//!    range is explored evenly the same way.
//! 3. **Exploit** after failures: three iterations in four aim at a moment that already
//!    failed (a bucket picked uniformly, so a rare bucket is not drowned by a common one).
//!    If that moment lies in a measured burst of workload activity, the aim is uniform
//!    over that burst: the failure marks the burst as a race window, and its middle
//!    reproduces more surely than the (often edge) moment that happened to fail first.
//!    Otherwise the aim is the failing moment jittered by 1% of the range. The fourth
//!    iteration keeps exploring, to find other buckets and to keep an evenly spread
//!    sample for the rate.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::jitter::JitterPlan;

/// Share of iterations aimed at earlier failures once there are some.
const EXPLOIT_SHARE: f64 = 0.75;
/// Spread around a failing moment, as a share of the sleep range.
const EXPLOIT_SPREAD: f64 = 0.01;
/// How far after a predicted tool start the first, unmeasured, aims go (a tool needs a
/// moment to start its workers).
const PREDICTED_LEAD_MS: f64 = 3.0;
/// Timelines used to measure the workload (the latest ones).
const LEARN_WINDOW: usize = 8;

/// How an iteration's timing was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Spread over the (measured) active part of the sleep range.
    Explore,
    /// Aimed near a moment that failed before.
    Exploit,
    /// The scenario has no random sleep before a disruptive step: only the seed varies.
    Random,
    /// A recorded seed, re-run.
    Replay,
}

/// What one finished iteration tells the search (delays and offsets in milliseconds).
#[derive(Debug, Clone, Default)]
pub struct Observation {
    /// The summed sleep before the disruptive step.
    pub delay_ms: Option<f64>,
    /// When the disruptive step started, after the parallel started.
    pub stop_at_ms: Option<f64>,
    /// When workload tools ran, after the parallel started.
    pub workload_ms: Vec<(f64, f64)>,
    /// The failure bucket, if the iteration failed.
    pub bucket: Option<String>,
}

/// The measured part of the sleep range where the workload is active.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Learned {
    /// Median of (disruptive start - summed sleep): the step latency, in ms.
    pub latency_ms: Option<f64>,
    /// Sleep values (ms) at which the disruptive step lands inside workload activity;
    /// sorted, merged, inside the sleep range. Empty = nothing measured yet.
    pub active_ms: Vec<(f64, f64)>,
}

impl Learned {
    /// Length of the active set in ms.
    pub fn active_len(&self) -> f64 {
        self.active_ms.iter().map(|(a, b)| b - a).sum()
    }

    /// Measures from the latest observations (oldest first).
    pub fn from(plan: &JitterPlan, obs: &[&Observation]) -> Learned {
        let mut lat: Vec<f64> = obs
            .iter()
            .filter_map(|o| Some(o.stop_at_ms? - o.delay_ms?))
            .collect();
        lat.sort_by(f64::total_cmp);
        let latency_ms = (!lat.is_empty()).then(|| lat[lat.len() / 2]);
        let shift = latency_ms.unwrap_or(0.0);
        let (lo, hi) = range_ms(plan);
        let mut iv: Vec<(f64, f64)> = obs
            .iter()
            .rev()
            .take(LEARN_WINDOW)
            .flat_map(|o| o.workload_ms.iter())
            .map(|(a, b)| ((a - shift).max(lo), (b - shift).min(hi)))
            .filter(|(a, b)| b > a)
            .collect();
        iv.sort_by(|x, y| x.0.total_cmp(&y.0));
        let mut active_ms: Vec<(f64, f64)> = Vec::new();
        for (a, b) in iv {
            match active_ms.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => active_ms.push((a, b)),
            }
        }
        Learned {
            latency_ms,
            active_ms,
        }
    }
}

fn range_ms(plan: &JitterPlan) -> (f64, f64) {
    (ms(plan.min), ms(plan.max))
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The search state of one repro run.
#[derive(Debug)]
pub struct Search {
    rng: ChaCha8Rng,
    /// Random shift of the explore sequence, so run seeds explore different points.
    shift: f64,
    explored: u64,
}

impl Search {
    pub fn new(run_seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(run_seed ^ 0x5EA2_C4E5_7A61_0001);
        let shift = rng.random::<f64>();
        Search {
            rng,
            shift,
            explored: 0,
        }
    }

    /// The next target delay (ms) and why. `failures` are (bucket, delay ms) of failed
    /// iterations so far.
    pub fn next(
        &mut self,
        plan: &JitterPlan,
        learned: &Learned,
        failures: &[(String, f64)],
    ) -> (Phase, f64) {
        let (lo, hi) = range_ms(plan);
        if !failures.is_empty() && self.rng.random_bool(EXPLOIT_SHARE) {
            let mut buckets: Vec<&str> = failures.iter().map(|(b, _)| b.as_str()).collect();
            buckets.sort_unstable();
            buckets.dedup();
            let bucket = buckets[self.rng.random_range(0..buckets.len())];
            let moments: Vec<f64> = failures
                .iter()
                .filter(|(b, _)| b == bucket)
                .map(|(_, d)| *d)
                .collect();
            let centre = moments[self.rng.random_range(0..moments.len())];
            // Inside a measured burst of workload activity: aim anywhere in that burst (the
            // failure says this burst is a race window; its middle is the surest part).
            // Outside one (or nothing measured yet): stay close to the failing moment.
            let burst = learned
                .active_ms
                .iter()
                .find(|(a, b)| *a - 1.0 <= centre && centre <= *b + 1.0);
            let t = match burst {
                Some((a, b)) if b - a > 1.0 => self.rng.random_range(*a..*b),
                _ => {
                    let sigma = ((hi - lo) * EXPLOIT_SPREAD).max(0.5);
                    centre + sigma * self.normal()
                }
            };
            return (Phase::Exploit, t.clamp(lo, hi));
        }
        self.explored += 1;
        // Nothing measured yet: first aim just after the moments the scenario says its
        // workload tools start (a few ms in, when they are running), in turn.
        if learned.active_len() <= 0.5 {
            let predicted: Vec<f64> = plan
                .predicted_ms
                .iter()
                .copied()
                .filter(|t| (lo..=hi).contains(t))
                .collect();
            if self.explored as usize <= predicted.len() {
                let k = (self.explored as usize - 1
                    + (self.shift * predicted.len() as f64) as usize)
                    % predicted.len();
                let t = predicted[k] + PREDICTED_LEAD_MS + self.rng.random_range(0.0..2.0);
                return (Phase::Explore, t.clamp(lo, hi));
            }
        }
        let x = (van_der_corput(self.explored) + self.shift).fract();
        let t = if learned.active_len() > 0.5 {
            // Walk the active intervals to the point at fraction x of their total length.
            let mut left = x * learned.active_len();
            let mut at = learned.active_ms[learned.active_ms.len() - 1].1;
            for (a, b) in &learned.active_ms {
                if left <= b - a {
                    at = a + left;
                    break;
                }
                left -= b - a;
            }
            at
        } else {
            lo + x * (hi - lo)
        };
        (Phase::Explore, t)
    }

    /// A standard normal draw (Box-Muller).
    fn normal(&mut self) -> f64 {
        let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = self.rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The base-2 radical inverse: 1 -> 0.5, 2 -> 0.25, 3 -> 0.75, 4 -> 0.125, ...
pub fn van_der_corput(mut k: u64) -> f64 {
    let mut x = 0.0;
    let mut f = 0.5;
    while k > 0 {
        if k & 1 == 1 {
            x += f;
        }
        k >>= 1;
        f /= 2.0;
    }
    x
}
