//! Seeds: every random choice of a unit derives from the run seed, the unit's identity and
//! the step's position, so one unit replays the same way whatever else runs beside it.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::events::UnitId;

/// SplitMix64 finaliser: a good 64-bit mix, stable across platforms and releases.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mix_str(mut h: u64, s: &str) -> u64 {
    for b in s.bytes() {
        h = mix(h ^ u64::from(b));
    }
    mix(h ^ 0xFF)
}

/// The seed of one unit: a function of the run seed and the unit only.
pub fn unit_seed(run_seed: u64, unit: &UnitId) -> u64 {
    let h = mix_str(mix(run_seed), &unit.scenario);
    let h = mix_str(h, &unit.template);
    mix(h ^ u64::from(unit.iteration))
}

/// A generator for one step of a unit (`path` locates the step), independent of the order
/// in which parallel steps happen to run.
pub fn step_rng(unit_seed: u64, path: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix_str(unit_seed, path))
}

/// A fresh run seed when the user gave none.
pub fn random_seed() -> u64 {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn unit(s: &str, i: u32) -> UnitId {
        UnitId {
            scenario: s.into(),
            template: "win".into(),
            iteration: i,
        }
    }

    #[test]
    fn unit_seeds_are_stable_and_distinct() {
        assert_eq!(unit_seed(7, &unit("a", 1)), unit_seed(7, &unit("a", 1)));
        assert_ne!(unit_seed(7, &unit("a", 1)), unit_seed(7, &unit("a", 2)));
        assert_ne!(unit_seed(7, &unit("a", 1)), unit_seed(8, &unit("a", 1)));
        assert_ne!(unit_seed(7, &unit("a", 1)), unit_seed(7, &unit("b", 1)));
    }

    #[test]
    fn step_rng_depends_on_path_only() {
        let a: u64 = step_rng(1, "steps[0]").random();
        let b: u64 = step_rng(1, "steps[0]").random();
        let c: u64 = step_rng(1, "steps[1]").random();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
