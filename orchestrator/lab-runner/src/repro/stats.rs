//! Rates with confidence: the Wilson score interval of a failure count, and the per-bucket
//! tallies repro mode reports live and at the end.

use serde::Serialize;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// A proportion `k / n` with its 95% Wilson score interval.
///
/// Wilson rather than the normal ("Wald") interval because repro counts are small and
/// often 0 or n: Wald collapses to `[0, 0]` for 0 failures in 50 runs, which would claim a
/// race is impossible; Wilson gives `[0, 7%]`, which is what 50 clean runs really show.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rate {
    pub hits: u64,
    pub trials: u64,
    /// `hits / trials` (0 when there were no trials).
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

impl Rate {
    pub fn new(hits: u64, trials: u64) -> Self {
        let (low, high) = wilson(hits, trials);
        Rate {
            hits,
            trials,
            rate: if trials == 0 {
                0.0
            } else {
                hits as f64 / trials as f64
            },
            low,
            high,
        }
    }
}

impl std::fmt::Display for Rate {
    /// `3/24 = 12.5% (95% CI 4.3%-31.0%)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} = {} (95% CI {}-{})",
            self.hits,
            self.trials,
            pct(self.rate),
            pct(self.low),
            pct(self.high)
        )
    }
}

/// `12.5%`, with one decimal below 10% so small rates stay readable.
pub fn pct(p: f64) -> String {
    let v = p * 100.0;
    if (0.05..9.95).contains(&v) {
        format!("{v:.1}%")
    } else {
        format!("{v:.0}%")
    }
}

/// The 95% Wilson score interval of `hits` successes in `trials`; `(0, 1)` with no trials.
pub fn wilson(hits: u64, trials: u64) -> (f64, f64) {
    if trials == 0 {
        return (0.0, 1.0);
    }
    let n = trials as f64;
    let p = hits.min(trials) as f64 / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-4
    }

    #[test]
    fn wilson_matches_published_values() {
        // Reference values (Newcombe 1998, table I; also R's prop.test without correction).
        let (l, h) = wilson(81, 263);
        assert!(close(l, 0.2553) && close(h, 0.3662), "{l} {h}");
        let (l, h) = wilson(15, 148);
        assert!(close(l, 0.0624) && close(h, 0.1605), "{l} {h}");
        let (l, h) = wilson(0, 20);
        assert!(close(l, 0.0) && close(h, 0.1611), "{l} {h}");
        let (l, h) = wilson(1, 29);
        assert!(close(l, 0.0061) && close(h, 0.1718), "{l} {h}");
    }

    #[test]
    fn edge_cases_stay_inside_zero_one() {
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (l, h) = wilson(10, 10);
        assert!(l > 0.72 && l < 0.73 && h > 0.9999 && h <= 1.0, "{l} {h}");
        // More hits than trials cannot happen; it is clamped rather than producing NaN.
        let (l, h) = wilson(11, 10);
        assert!(l.is_finite() && h <= 1.0);
    }

    #[test]
    fn rate_renders_for_people() {
        assert_eq!(Rate::new(3, 24).to_string(), "3/24 = 12% (95% CI 4.3%-31%)");
        assert_eq!(Rate::new(0, 50).to_string(), "0/50 = 0% (95% CI 0%-7.1%)");
    }
}
