//! Unit tests of repro's pieces on the shipped hot-unload race scenario (validated from the
//! repository, so the paths checked are the executor's real ones).

use std::path::PathBuf;
use std::time::Duration;

use lab_config::{Scenario, ValidateRequest, validate};

use super::jitter::{JitterPlan, Role, resolve};
use super::search::{Learned, Observation, Phase, Search, van_der_corput};
use super::state::{Until, failure_key};
use crate::events::{Bucket, Crash, CrashKind, UnitId, UnitOutcome};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn scenario(file: &str) -> Scenario {
    let r = repo();
    let req = ValidateRequest {
        labs: vec![r.join("vm-configs/local-sim.yaml")],
        payloads: vec![r.join("driver-payloads/sim-ebpf.yaml")],
        scenarios: vec![r.join("scenarios").join(file)],
        lab: Some(r.join("vm-configs/local-sim.yaml")),
        default_lab: None,
        explicit_scenarios: true,
        payload: None,
    };
    let v = validate(&req).expect("shipped scenario validates");
    v.plans[0].scenarios[0].clone()
}

fn race() -> (Scenario, JitterPlan) {
    let s = scenario("fault-hot-unload-race.yaml");
    let plan = JitterPlan::analyze(&s).expect("the race scenario has a jitter plan");
    (s, plan)
}

#[test]
fn the_race_is_found_with_executor_paths() {
    let (s, plan) = race();
    assert_eq!(plan.parallel, "steps[0]");
    assert_eq!(plan.branch, "steps[0].parallel[4]");
    assert_eq!(plan.disruptive, "steps[0].parallel[4].sequence[1]");
    assert_eq!(
        (plan.min, plan.max),
        (Duration::ZERO, Duration::from_millis(700))
    );
    assert!(resolve(&s, "steps[0].parallel[0].sequence[1]").is_some());
    assert!(resolve(&s, "steps[0].parallel[9]").is_none());
    assert!(resolve(&s, "steps[7]").is_none());
    assert!(resolve(&s, "bogus").is_none());
    let role = |p: &str| plan.classify(&s, p).map(|(_, r)| r);
    assert_eq!(
        role("steps[0].parallel[1].sequence[1]"),
        Some(Role::Workload)
    );
    assert_eq!(role("steps[0].parallel[1].sequence[0]"), Some(Role::Other));
    assert_eq!(
        role("steps[0].parallel[4].sequence[1]"),
        Some(Role::Disruptive)
    );
    assert_eq!(role("steps[0].parallel[4].sequence[0]"), Some(Role::Other));
    // Composites and steps outside the race are not timeline leaves.
    assert_eq!(role("steps[0].parallel[1]"), None);
    assert_eq!(role("steps[0]"), None);
    assert_eq!(role("steps[1]"), None);
}

#[test]
fn scenarios_without_a_timed_disruption_have_no_plan() {
    // Sequential stop, no parallel.
    assert!(JitterPlan::analyze(&scenario("stop-extension-live-maps.yaml")).is_none());
    // Restarts after random sleeps inside a repeat: the first round's sleep is the knob.
    let s = scenario("restart-extension-during-invocation.yaml");
    let plan = JitterPlan::analyze(&s).unwrap();
    assert_eq!(plan.disruptive, "steps[0].parallel[1].repeat[0][1]");
    assert_eq!(plan.min, Duration::from_millis(200));
}

#[test]
fn a_picked_seed_lands_the_stop_where_the_search_aims() {
    let (_, plan) = race();
    let unit = UnitId {
        scenario: "fault-hot-unload-race".into(),
        template: "ws2022".into(),
        iteration: 3,
    };
    for target_ms in [5u64, 151, 333, 690] {
        let target = Duration::from_millis(target_ms);
        let tol = Duration::from_millis(1);
        let seed = plan.pick_seed(42, &unit, target, tol);
        assert!(plan.delay(seed).abs_diff(target) <= tol, "{target_ms}ms");
        // Deterministic: the same decision gives the same seed.
        assert_eq!(plan.pick_seed(42, &unit, target, tol), seed);
        // And the executor draws exactly that delay from the seed.
        let spec = plan.sleeps[0].1;
        assert_eq!(
            crate::exec::sleep_duration(seed, &plan.sleeps[0].0, &spec),
            plan.delay(seed)
        );
    }
}

#[test]
fn van_der_corput_halves_the_gaps() {
    let xs: Vec<f64> = (1..=4).map(van_der_corput).collect();
    assert_eq!(xs, vec![0.5, 0.25, 0.75, 0.125]);
}

fn obs(delay: f64, stop_at: f64, workload: &[(f64, f64)]) -> Observation {
    Observation {
        delay_ms: Some(delay),
        stop_at_ms: Some(stop_at),
        workload_ms: workload.to_vec(),
        bucket: None,
    }
}

#[test]
fn the_search_explores_only_where_the_workload_runs() {
    let (_, plan) = race();
    let a = obs(100.0, 102.0, &[(150.0, 170.0), (450.0, 470.0)]);
    let b = obs(300.0, 302.0, &[(152.0, 171.0), (451.0, 468.0)]);
    let learned = Learned::from(&plan, &[&a, &b]);
    assert_eq!(learned.latency_ms, Some(2.0));
    assert_eq!(learned.active_ms, vec![(148.0, 169.0), (448.0, 468.0)]);
    let mut search = Search::new(9);
    for _ in 0..32 {
        let (phase, t) = search.next(&plan, &learned, &[]);
        assert_eq!(phase, Phase::Explore);
        assert!(
            learned.active_ms.iter().any(|(a, b)| *a <= t && t <= *b),
            "{t} outside {:?}",
            learned.active_ms
        );
    }
    // Nothing measured yet: first just after each predicted burst start, then the whole
    // range, evenly.
    assert_eq!(plan.predicted_ms, vec![150.0, 300.0, 450.0, 600.0]);
    let mut search = Search::new(9);
    let first: Vec<f64> = (0..4)
        .map(|_| search.next(&plan, &Learned::default(), &[]).1)
        .collect();
    for p in &plan.predicted_ms {
        assert!(
            first.iter().any(|t| *t >= p + 3.0 && *t <= p + 5.0),
            "{p}: {first:?}"
        );
    }
    let ts: Vec<f64> = (0..8)
        .map(|_| search.next(&plan, &Learned::default(), &[]).1)
        .collect();
    assert!(ts.iter().all(|t| (0.0..=700.0).contains(t)));
    let mut sorted = ts.clone();
    sorted.sort_by(f64::total_cmp);
    let widest_gap = sorted
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(sorted[0] + 700.0 - sorted[7], f64::max);
    // Eight van der Corput points leave no gap wider than 3/16 of the range.
    assert!(widest_gap <= 700.0 * 3.0 / 16.0 + 1e-6, "{ts:?}");
}

#[test]
fn after_a_failure_most_iterations_aim_at_its_burst() {
    let (_, plan) = race();
    let a = obs(100.0, 100.0, &[(150.0, 170.0), (450.0, 470.0)]);
    let learned = Learned::from(&plan, &[&a]);
    let failures = vec![("b1".to_owned(), 455.0)];
    let mut search = Search::new(3);
    let picks: Vec<(Phase, f64)> = (0..200)
        .map(|_| search.next(&plan, &learned, &failures))
        .collect();
    let aimed: Vec<f64> = picks
        .iter()
        .filter(|(p, _)| *p == Phase::Exploit)
        .map(|(_, t)| *t)
        .collect();
    assert!(aimed.len() > 120 && aimed.len() < 180, "{}", aimed.len());
    assert!(
        aimed.iter().all(|t| (450.0..=470.0).contains(t)),
        "{aimed:?}"
    );
}

#[test]
fn until_parses_and_explains_mistakes() {
    assert_eq!("first".parse::<Until>(), Ok(Until::First));
    assert_eq!("budget".parse::<Until>(), Ok(Until::Budget));
    assert_eq!("5-failures".parse::<Until>(), Ok(Until::Failures(5)));
    assert_eq!("3".parse::<Until>(), Ok(Until::Failures(3)));
    assert_eq!(
        "0-failures".parse::<Until>().unwrap_err().to_string(),
        "expected `first`, `N-failures` (e.g. `5-failures`) or `budget`, got `0-failures`"
    );
    assert!(
        "sometimes"
            .parse::<Until>()
            .unwrap_err()
            .to_string()
            .contains("`sometimes`")
    );
}

#[test]
fn failures_are_keyed_by_bucket_else_by_masked_message() {
    let crash = Crash {
        kind: CrashKind::Bugcheck,
        step: None,
        bugcheck: None,
        dumps: vec![],
        bucket: Some(Bucket {
            id: "abc".into(),
            title: "T".into(),
            new: false,
            known_issue: None,
        }),
        triage_error: None,
        dumps_lost: vec![],
    };
    let failed = |message: &str, crash: Option<Crash>| UnitOutcome::Failed {
        message: message.into(),
        crash,
    };
    assert_eq!(
        failure_key(&failed("x", Some(crash))),
        Some(("abc".into(), "T".into()))
    );
    let a = failure_key(&failed("ops = 17 not in 20..", None)).unwrap();
    let b = failure_key(&failed("ops = 18 not in 20..", None)).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.1, "ops = ## not in ##..");
    assert_eq!(failure_key(&UnitOutcome::Passed), None);
}
