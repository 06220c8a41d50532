//! Rates with confidence intervals, so a verdict says how sure it is.

use aura_proto::view::Rate;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval for `successes` out of `trials` (95%). Unlike the normal
/// approximation it stays inside [0, 1] and behaves at 0 and n successes.
pub fn wilson(successes: u32, trials: u32) -> Option<Rate> {
    if trials == 0 {
        return None;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * ((p * (1.0 - p) / n) + z2 / (4.0 * n * n)).sqrt() / denom;
    Some(Rate {
        successes,
        trials,
        value: p,
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-3
    }

    #[test]
    fn known_values() {
        // Reference values from the Wilson formula (e.g. 0/10: 0 .. 0.2775).
        let r = wilson(0, 10).unwrap();
        assert!(close(r.low, 0.0) && close(r.high, 0.2775), "{r:?}");
        let r = wilson(5, 10).unwrap();
        assert!(close(r.low, 0.2366) && close(r.high, 0.7634), "{r:?}");
        let r = wilson(1, 100).unwrap();
        assert!(close(r.high, 0.0545), "{r:?}");
        let r = wilson(10, 10).unwrap();
        assert!(close(r.high, 1.0) && close(r.low, 0.7225), "{r:?}");
        assert!(wilson(0, 0).is_none());
    }
}
