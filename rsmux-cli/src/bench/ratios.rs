//! Speed ratios of row pairs, computed within each repetition (both rows ran in the same
//! round), then summarized over the repetitions.

use std::time::Duration;

use super::rows::{Row, Workload};

/// A ratio of two rows' speeds, printed under each table.
pub struct RatioSpec {
    pub num: String,
    pub den: String,
    pub name: String,
}

/// The pairs compared: local mode, or `--connect ADDR`.
pub fn ratio_specs(connect: Option<&str>) -> Vec<RatioSpec> {
    let spec = |num: &str, den: &str, name: &str| RatioSpec {
        num: num.into(),
        den: den.into(),
        name: name.into(),
    };
    match connect {
        Some(a) => vec![
            spec("local-echo", "tcp-echo", "rsmux echo / raw TCP echo"),
            spec("remote", "tcp-echo", &format!("{a} / raw TCP echo")),
            spec("remote", "local-echo", &format!("{a} / rsmux echo")),
        ],
        None => vec![
            spec("rsmux-v2", "rsmux-v1", "rsmux v2 / rsmux v1"),
            spec("rsmux-v2", "rsmux-v2-fixed", "rsmux v2 / v2 fixed window"),
            spec("rsmux-v2", "go-v2", "rsmux v2 / Go v2"),
            spec("rsmux-v1", "go-v1", "rsmux v1 / Go v1"),
            spec("rsmux-v1", "go-yamux", "rsmux v1 / Go yamux"),
            spec("rsmux-v2", "go-yamux", "rsmux v2 / Go yamux"),
            spec("go-v2", "go-v1", "Go v2 / Go v1"),
            spec("rsmux-to-go-v2", "rsmux-to-go-v1", "rsmux→Go v2 / v1"),
            spec("go-to-rsmux-v2", "go-to-rsmux-v1", "Go→rsmux v2 / v1"),
            spec("go-to-rsmux-v1", "go-v1", "Go→rsmux v1 / Go v1"),
            spec("go-to-rsmux-v2", "go-v2", "Go→rsmux v2 / Go v2"),
            spec("rsmux-v1", "tcp", "rsmux v1 / raw TCP"),
            spec("rsmux-v2", "tcp", "rsmux v2 / raw TCP"),
        ],
    }
}

/// A ratio at one RTT: the two rows, when both ran.
pub struct Ratio<'a> {
    pub spec: &'a RatioSpec,
    pub rtt: Duration,
    pub num: &'a Row,
    pub den: &'a Row,
}

impl Ratio<'_> {
    /// The ratio in each repetition: `None` where either row has no figure.
    pub fn per_run(&self, w: Workload) -> Vec<Option<f64>> {
        per_run(self.num, self.den, w)
    }
}

/// `num`'s speed over `den`'s, repetition by repetition.
pub fn per_run(num: &Row, den: &Row, w: Workload) -> Vec<Option<f64>> {
    let n = num.runs(w).len().max(den.runs(w).len());
    (0..n)
        .map(|rep| Some(num.speed(w, rep)? / den.speed(w, rep)?))
        .collect()
}

/// The ratios whose two rows both ran at `rtt`.
pub fn ratios<'a>(specs: &'a [RatioSpec], rows: &'a [Row], rtt: Duration) -> Vec<Ratio<'a>> {
    let find = |id: &str| {
        rows.iter()
            .find(|r| r.id == id && r.rtt == rtt && r.skipped.is_none())
    };
    specs
        .iter()
        .filter_map(|spec| {
            Some(Ratio {
                spec,
                rtt,
                num: find(&spec.num)?,
                den: find(&spec.den)?,
            })
        })
        .collect()
}

/// A row's speed over the raw TCP row's at the same RTT, repetition by repetition (empty
/// without a raw TCP row).
pub fn tcp_ratio(rows: &[Row], row: &Row, w: Workload) -> Vec<Option<f64>> {
    match rows
        .iter()
        .find(|r| r.transport() == "tcp" && r.rtt == row.rtt)
    {
        Some(base) => per_run(row, base, w),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{
        rows::{Figure, Sample, Target},
        workload::Rate,
    };

    fn row(id: &str, mb: &[Option<f64>]) -> Row {
        let mut r = Row::new(id, id, Some(1), Target::TcpEcho, Duration::ZERO);
        for (rep, v) in mb.iter().enumerate() {
            if let Some(v) = v {
                let figure = Figure::Rate(Rate {
                    bytes: (*v * 1e6) as u64,
                    secs: 1.0,
                });
                r.record(
                    rep,
                    Workload::One,
                    Sample {
                        figure,
                        server_cpu: None,
                        client_cpu: None,
                    },
                );
            }
        }
        r
    }

    #[test]
    fn ratios_pair_runs_of_the_same_repetition() {
        let a = row("a", &[Some(100.0), Some(300.0), Some(200.0)]);
        let b = row("b", &[Some(50.0), None, Some(400.0)]);
        let got = per_run(&a, &b, Workload::One);
        assert_eq!(got, vec![Some(2.0), None, Some(0.5)]);
        assert!(per_run(&a, &b, Workload::Many).is_empty());
    }
}
