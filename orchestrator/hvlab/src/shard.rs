//! `--shard K/N`: splits a run's units over N CI jobs so that every unit runs in exactly
//! one. By default a unit's shard is a stable hash of its id (the same unit lands in the
//! same shard whatever else the plan holds); with `--timings summary.json` units are dealt
//! longest first to the least-loaded shard, using the durations of a previous run.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use lab_runner::events::UnitId;

use crate::error::CliError;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: u32,
    pub count: u32,
}

/// A `--shard` value that is not `K/N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a shard: write K/N with 1 <= K <= N, e.g. 2/4")]
pub struct BadShard(pub String);

impl FromStr for ShardSpec {
    type Err = BadShard;

    fn from_str(s: &str) -> Result<Self, BadShard> {
        let bad = || BadShard(s.to_owned());
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(ShardSpec { index, count })
    }
}

impl std::fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1a of the unit's id text: stable across platforms, releases and plans.
fn unit_hash(u: &UnitId) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in u.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The units of shard `spec`, in their original order. `timings` (seconds per unit) turns
/// on duration balancing; a unit without a recorded time counts as the mean of the others.
pub fn select(
    units: &[UnitId],
    spec: ShardSpec,
    timings: Option<&HashMap<UnitId, f64>>,
) -> Vec<UnitId> {
    let n = u64::from(spec.count);
    let mine = u64::from(spec.index - 1);
    let Some(t) = timings else {
        return units
            .iter()
            .filter(|u| unit_hash(u) % n == mine)
            .cloned()
            .collect();
    };
    let known: Vec<f64> = units.iter().filter_map(|u| t.get(u).copied()).collect();
    let mean = if known.is_empty() {
        1.0
    } else {
        known.iter().sum::<f64>() / known.len() as f64
    };
    // Longest first, ties by id so every shard computes the same deal.
    let mut order: Vec<(f64, &UnitId)> = units
        .iter()
        .map(|u| (t.get(u).copied().unwrap_or(mean), u))
        .collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    let mut load = vec![0.0f64; spec.count as usize];
    let mut assigned: HashMap<&UnitId, usize> = HashMap::new();
    for (secs, u) in order {
        let (least, _) = load
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .expect("at least one shard");
        load[least] += secs;
        assigned.insert(u, least);
    }
    units
        .iter()
        .filter(|u| assigned[u] as u64 == mine)
        .cloned()
        .collect()
}

/// Reads unit durations from a previous run's `summary.json`.
pub fn read_timings(path: &Path) -> Result<HashMap<UnitId, f64>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        action: format!("read --timings file `{}`", path.display()),
        source,
    })?;
    let doc: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        CliError::Usage(format!(
            "--timings `{}` is not a summary.json: {e}",
            path.display()
        ))
    })?;
    let units = doc["units"].as_array().ok_or_else(|| {
        CliError::Usage(format!(
            "--timings `{}` has no `units` array (give a run's summary.json)",
            path.display()
        ))
    })?;
    Ok(units
        .iter()
        .filter_map(|u| {
            let id: UnitId = serde_json::from_value(u["unit"].clone()).ok()?;
            Some((id, u["duration_secs"].as_f64()?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units(n: u32) -> Vec<UnitId> {
        (1..=n)
            .map(|i| UnitId {
                scenario: format!("s{}", i % 7),
                template: "ws2022".into(),
                iteration: i,
            })
            .collect()
    }

    #[test]
    fn parses_k_of_n_and_refuses_the_rest() {
        assert_eq!(
            "2/4".parse::<ShardSpec>(),
            Ok(ShardSpec { index: 2, count: 4 })
        );
        for bad in ["0/4", "5/4", "1/0", "1", "a/b", "1/2/3", ""] {
            assert!(bad.parse::<ShardSpec>().is_err(), "{bad}");
        }
        insta::assert_snapshot!("5/4".parse::<ShardSpec>().unwrap_err().to_string());
    }

    #[test]
    fn shards_partition_the_units_by_hash_and_by_timings() {
        let all = units(200);
        let timings: HashMap<UnitId, f64> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 5 != 0)
            .map(|(i, u)| (u.clone(), (i % 13) as f64 + 0.5))
            .collect();
        for t in [None, Some(&timings)] {
            let mut seen: Vec<UnitId> = Vec::new();
            let mut sizes = Vec::new();
            for k in 1..=4 {
                let part = select(&all, ShardSpec { index: k, count: 4 }, t);
                sizes.push(part.len());
                seen.extend(part);
            }
            seen.sort();
            let mut want = all.clone();
            want.sort();
            assert_eq!(seen, want, "every unit in exactly one shard");
            assert!(sizes.iter().all(|&n| n > 20), "{sizes:?}");
        }
    }

    #[test]
    fn timings_balance_the_load() {
        let all = units(40);
        // One long unit and many short ones: the long one gets a shard nearly to itself.
        let mut timings: HashMap<UnitId, f64> = all.iter().map(|u| (u.clone(), 1.0)).collect();
        timings.insert(all[0].clone(), 20.0);
        let loads: Vec<f64> = (1..=2)
            .map(|k| {
                select(&all, ShardSpec { index: k, count: 2 }, Some(&timings))
                    .iter()
                    .map(|u| timings[u])
                    .sum()
            })
            .collect();
        assert!((loads[0] - loads[1]).abs() <= 1.0, "{loads:?}");
    }
}
