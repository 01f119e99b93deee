//! Summaries of repeated runs: min, median and max.

use serde::Serialize;

/// The figures of a workload's repetitions and their summary. A run that failed (or did not
/// apply) is `null` in `runs` and left out of the summary; all three are `null` when no run
/// has a figure.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stat {
    pub runs: Vec<Option<f64>>,
    pub min: Option<f64>,
    pub median: Option<f64>,
    pub max: Option<f64>,
}

impl Stat {
    /// Summarizes runs, rounding every figure with `round`.
    pub fn new(runs: Vec<Option<f64>>, round: fn(f64) -> f64) -> Stat {
        let mut v: Vec<f64> = runs
            .iter()
            .flatten()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        Stat {
            min: v.first().copied().map(round),
            median: median_sorted(&v).map(round),
            max: v.last().copied().map(round),
            runs: runs.into_iter().map(|x| x.map(round)).collect(),
        }
    }

    /// Whether no run has a figure.
    pub fn is_empty(&self) -> bool {
        self.median.is_none()
    }
}

/// The median of sorted values: the middle one, or the mean of the two middle ones.
pub fn median_sorted(v: &[f64]) -> Option<f64> {
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The median of values in any order.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    median_sorted(&v)
}

/// Rounds to one decimal.
pub fn r1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Rounds to two decimals.
pub fn r2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Rounds to three decimals.
pub fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_skips_failed_runs_and_orders_figures() {
        let s = Stat::new(vec![Some(3.0), None, Some(1.0), Some(2.0)], |x| x);
        assert_eq!((s.min, s.median, s.max), (Some(1.0), Some(2.0), Some(3.0)));
        assert_eq!(s.runs.len(), 4);
        assert_eq!(s.runs[1], None);
        let even = Stat::new(vec![Some(4.0), Some(1.0)], |x| x);
        assert_eq!(even.median, Some(2.5));
        let none = Stat::new(vec![None, None], |x| x);
        assert!(none.is_empty() && none.min.is_none() && none.max.is_none());
    }

    #[test]
    fn median_of_unsorted_values() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(&[]), None);
    }
}
