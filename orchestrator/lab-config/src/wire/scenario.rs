//! Wire format of scenario files (`scenarios/*.yaml`). A step is a mapping with an optional
//! `name` and exactly one step-kind key (checked during validation, with the position).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::values::{ArgValueWire, BugcheckCodeWire, HumanDuration, Sp, present_or_empty};

/// A scenario file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Scenario")]
#[schemars(rename = "Scenario")]
pub(crate) struct ScenarioWire {
    /// Scenario name (unique across scenarios), used in reports.
    pub name: Sp<String>,
    /// What the scenario checks and why.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags for selection (`hvlab run --tag`). `fault` scenarios are left out by default.
    #[serde(default)]
    pub tags: Option<Vec<Sp<String>>>,
    /// VM templates to run on (a matrix). Default: every template of the lab.
    #[serde(default)]
    pub vms: Option<Sp<Vec<Sp<String>>>>,
    /// Pins the payload manifest this scenario runs with. Leave it out to use the lab's
    /// `payload` (or `hvlab run --payload`), so one scenario runs on every lab whose payload
    /// provides the tools, drivers and metrics it uses.
    #[serde(default)]
    pub payload: Option<Sp<String>>,
    /// How many times the steps run per VM (restoring `deployed` in between). Default 1.
    #[serde(default)]
    pub iterations: Option<Sp<i64>>,
    /// Re-runs of an iteration that *failed* (an expectation; a crash only with
    /// `hvlab run --retries`); one that passes on a retry is reported flaky. Default 0.
    #[serde(default)]
    pub retries: Option<Sp<u32>>,
    /// Time limit for one iteration on one VM. Default `10m`.
    #[serde(default)]
    pub timeout: Option<Sp<HumanDuration>>,
    /// Default time limit of steps that wait (driver, run, exec, reboot). Default `60s`.
    #[serde(default)]
    pub step_timeout: Option<Sp<HumanDuration>>,
    /// Steps run before `steps` in each iteration; a failure here is an error, not a test
    /// failure.
    #[serde(default)]
    pub setup: Option<Sp<Vec<StepWire>>>,
    /// The test.
    pub steps: Sp<Vec<StepWire>>,
}

/// One step: an optional `name` and exactly one kind.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Step")]
pub(crate) struct StepWire {
    /// Shown in reports instead of the generated description.
    #[serde(default)]
    pub name: Option<Sp<String>>,
    /// Copy files, create services, start non-demand drivers in dependency order.
    #[serde(default, deserialize_with = "present_or_empty")]
    #[schemars(with = "Option<DeployWire>")]
    pub deploy: Option<Sp<DeployWire>>,
    /// Start a driver service.
    #[serde(default)]
    pub driver_start: Option<Sp<DriverOpWire>>,
    /// Stop a driver service.
    #[serde(default)]
    pub driver_stop: Option<Sp<DriverOpWire>>,
    /// Stop then start a driver service.
    #[serde(default)]
    pub driver_restart: Option<Sp<DriverOpWire>>,
    /// Wait until a driver service is in a state (without sending a control).
    #[serde(default)]
    pub driver_wait: Option<Sp<DriverOpWire>>,
    /// Run a payload tool.
    #[serde(default)]
    pub run: Option<Sp<RunWire>>,
    /// Run a raw command line in the guest.
    #[serde(default)]
    pub exec: Option<Sp<ExecWire>>,
    /// Run the listed steps at the same time; done when all are.
    #[serde(default)]
    pub parallel: Option<Sp<Vec<StepWire>>>,
    /// Run the listed steps in order (for grouping inside `parallel`).
    #[serde(default)]
    pub sequence: Option<Sp<Vec<StepWire>>>,
    /// Repeat steps a number of times or for a duration.
    #[serde(default)]
    pub repeat: Option<Sp<RepeatWire>>,
    /// Wait a fixed time (`2s`) or a seeded random time (`{min: 100ms, max: 1s}`).
    #[serde(default)]
    pub sleep: Option<Sp<SleepWire>>,
    /// Take a named VM checkpoint.
    #[serde(default)]
    pub checkpoint: Option<Sp<CheckpointWire>>,
    /// Restore a named checkpoint (`deployed` always exists).
    #[serde(default)]
    pub restore: Option<Sp<CheckpointWire>>,
    /// Reboot the guest and wait until it is ready.
    #[serde(default, deserialize_with = "present_or_empty")]
    #[schemars(with = "Option<RebootWire>")]
    pub reboot: Option<Sp<RebootWire>>,
    /// Read a metric and remember it under a name (a baseline).
    #[serde(default)]
    pub record_metric: Option<Sp<RecordMetricWire>>,
    /// Check a metric, polling until it holds or `within` ends.
    #[serde(default)]
    pub assert_metric: Option<Sp<AssertMetricWire>>,
    /// Expect the guest to bugcheck (crash) within a time.
    #[serde(default)]
    pub expect_bugcheck: Option<Sp<ExpectBugcheckWire>>,
    /// Fail if the guest has bugchecked since the iteration started.
    #[serde(default, deserialize_with = "present_or_empty")]
    #[schemars(with = "Option<ExpectNoBugcheckWire>")]
    pub expect_no_bugcheck: Option<Sp<ExpectNoBugcheckWire>>,
}

/// `deploy: {}`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Deploy")]
pub(crate) struct DeployWire {}

/// Service state a driver step expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriverState {
    /// SERVICE_RUNNING.
    Running,
    /// SERVICE_STOPPED.
    Stopped,
    /// SERVICE_STOP_PENDING (e.g. an extension whose maps are still alive).
    StopPending,
}

/// The YAML accepts the states a driver step can end in (not `start_pending`); the model
/// speaks the shared vocabulary.
impl From<DriverState> for win_vocab::ServiceState {
    fn from(s: DriverState) -> Self {
        match s {
            DriverState::Running => win_vocab::ServiceState::Running,
            DriverState::Stopped => win_vocab::ServiceState::Stopped,
            DriverState::StopPending => win_vocab::ServiceState::StopPending,
        }
    }
}

/// `driver_start` / `driver_stop` / `driver_restart` / `driver_wait`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "DriverOp")]
pub(crate) struct DriverOpWire {
    /// Service name of a payload driver.
    pub driver: Sp<String>,
    /// State to reach. Default: `running` (start, restart), `stopped` (stop); required for
    /// `driver_wait`.
    #[serde(default)]
    pub expect: Option<Sp<DriverState>>,
    /// How long to wait for the state. Default: the scenario's `step_timeout`.
    #[serde(default)]
    pub timeout: Option<Sp<HumanDuration>>,
}

/// A bound on a counter.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Range")]
pub(crate) struct RangeWire {
    /// Smallest accepted value.
    #[serde(default)]
    pub min: Option<Sp<i64>>,
    /// Largest accepted value.
    #[serde(default)]
    pub max: Option<Sp<i64>>,
    /// Exact value.
    #[serde(default)]
    pub equals: Option<Sp<i64>>,
}

/// What a `run` step expects beyond the tool's result contract.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RunExpect")]
pub(crate) struct RunExpectWire {
    /// Exit codes that pass. Default: the tool's `result.exit_codes`.
    #[serde(default)]
    pub exit_codes: Option<Sp<Vec<i64>>>,
    /// Bounds on counters the tool reports.
    #[serde(default)]
    pub counters: Option<Sp<BTreeMap<String, Sp<RangeWire>>>>,
}

/// `run`: a payload tool with arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Run")]
pub(crate) struct RunWire {
    /// Tool name.
    pub tool: Sp<String>,
    /// Argument values by name.
    #[serde(default)]
    pub args: Option<Sp<BTreeMap<String, Sp<ArgValueWire>>>>,
    /// Expectations.
    #[serde(default)]
    pub expect: Option<Sp<RunExpectWire>>,
    /// Time limit. Default: the tool's `timeout`, else the scenario's `step_timeout`.
    #[serde(default)]
    pub timeout: Option<Sp<HumanDuration>>,
}

/// `exec`: a raw command.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Exec")]
pub(crate) struct ExecWire {
    /// Program and arguments; builtins `{seed}`, `{iteration}`, `{vm}`, `{scenario}` expand.
    pub command: Sp<Vec<Sp<String>>>,
    /// Exit codes that pass. Default `[0]`.
    #[serde(default)]
    pub exit_codes: Option<Sp<Vec<i64>>>,
    /// Time limit. Default: the scenario's `step_timeout`.
    #[serde(default)]
    pub timeout: Option<Sp<HumanDuration>>,
}

/// `repeat`: exactly one of `count` or `duration`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Repeat")]
pub(crate) struct RepeatWire {
    /// Number of rounds.
    #[serde(default)]
    pub count: Option<Sp<i64>>,
    /// Keep starting rounds until this much time has passed.
    #[serde(default)]
    pub duration: Option<Sp<HumanDuration>>,
    /// The steps of one round.
    pub steps: Sp<Vec<StepWire>>,
}

/// `sleep: 2s` or `sleep: {min: 100ms, max: 1s}`. Parsed by hand (not `untagged`) so the
/// position of a bad value survives.
#[derive(Debug)]
pub(crate) enum SleepWire {
    Fixed(HumanDuration),
    Random {
        min: Sp<HumanDuration>,
        max: Sp<HumanDuration>,
    },
}

impl<'de> Deserialize<'de> for SleepWire {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SleepWire;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration (`2s`) or a range `{min: 100ms, max: 1s}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SleepWire, E> {
                crate::values::parse_duration(v)
                    .map(|d| SleepWire::Fixed(HumanDuration(d)))
                    .map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SleepWire, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit: write e.g. `{v}s` or `{v}ms`"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SleepWire, E> {
                Err(E::custom(format!(
                    "invalid duration `{v}`: durations are positive and need a unit, e.g. `30s`"
                )))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<SleepWire, A::Error> {
                let (mut min, mut max) = (None, None);
                while let Some(key) = m.next_key::<String>()? {
                    match key.as_str() {
                        "min" if min.is_none() => min = Some(m.next_value::<Sp<HumanDuration>>()?),
                        "max" if max.is_none() => max = Some(m.next_value::<Sp<HumanDuration>>()?),
                        "min" | "max" => {
                            return Err(de::Error::custom(format!("duplicate key `{key}`")));
                        }
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown field `{other}`, expected `min` or `max`"
                            )));
                        }
                    }
                }
                match (min, max) {
                    (Some(min), Some(max)) => Ok(SleepWire::Random { min, max }),
                    (None, _) => Err(de::Error::custom(
                        "a random sleep needs both `min` and `max`; missing `min`",
                    )),
                    (_, None) => Err(de::Error::custom(
                        "a random sleep needs both `min` and `max`; missing `max`",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for SleepWire {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Sleep".into()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let dur = g.subschema_for::<HumanDuration>();
        schemars::json_schema!({
            "description": "A fixed duration, or a random one between `min` and `max` (drawn from the iteration's seed).",
            "oneOf": [
                dur,
                {"type": "object", "properties": {"min": dur, "max": dur}, "required": ["min", "max"], "additionalProperties": false}
            ]
        })
    }
}

/// `checkpoint` / `restore`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Checkpoint")]
pub(crate) struct CheckpointWire {
    /// Checkpoint name.
    pub name: Sp<String>,
}

/// `reboot: {}`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Reboot")]
pub(crate) struct RebootWire {
    /// Time allowed to come back. Default: the template's boot timeout.
    #[serde(default)]
    pub timeout: Option<Sp<HumanDuration>>,
}

/// `record_metric`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "RecordMetric")]
pub(crate) struct RecordMetricWire {
    /// Payload metric name.
    pub metric: Sp<String>,
    /// Name to remember the value under (for `assert_metric`'s `baseline`).
    #[serde(rename = "as")]
    pub as_name: Sp<String>,
}

/// `assert_metric`: exactly one of `equals`, `at_most`, `at_least`, `baseline`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AssertMetric")]
pub(crate) struct AssertMetricWire {
    /// Payload metric name.
    pub metric: Sp<String>,
    /// The value must equal this.
    #[serde(default)]
    pub equals: Option<Sp<i64>>,
    /// The value must be at most this.
    #[serde(default)]
    pub at_most: Option<Sp<i64>>,
    /// The value must be at least this.
    #[serde(default)]
    pub at_least: Option<Sp<i64>>,
    /// The value must be back to a value recorded earlier with `record_metric`.
    #[serde(default)]
    pub baseline: Option<Sp<String>>,
    /// Allowed difference from the baseline. Default 0.
    #[serde(default)]
    pub tolerance: Option<Sp<i64>>,
    /// Keep polling until the condition holds or this much time passed. Default: check once.
    #[serde(default)]
    pub within: Option<Sp<HumanDuration>>,
}

/// `expect_bugcheck`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ExpectBugcheck")]
pub(crate) struct ExpectBugcheckWire {
    /// The expected code, e.g. `0x50`. Without it any bugcheck passes.
    #[serde(default)]
    pub code: Option<Sp<BugcheckCodeWire>>,
    /// How long to wait for it. Default: the scenario's `step_timeout`.
    #[serde(default)]
    pub within: Option<Sp<HumanDuration>>,
}

/// `expect_no_bugcheck: {}`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "ExpectNoBugcheck")]
pub(crate) struct ExpectNoBugcheckWire {}
