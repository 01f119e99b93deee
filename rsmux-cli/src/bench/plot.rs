//! The fairness picture: throughput over time of several streams sharing one session, as a
//! hand-written SVG.

use std::fmt::Write;

/// Throughput samples of the streams of one session.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    /// Seconds between samples.
    pub interval: f64,
    /// `series[stream][sample]`: MB/s of that stream during that interval.
    pub series: Vec<Vec<f64>>,
}

impl Panel {
    /// Mean MB/s of each stream.
    pub fn means(&self) -> Vec<f64> {
        self.series
            .iter()
            .map(|s| {
                if s.is_empty() {
                    0.0
                } else {
                    s.iter().sum::<f64>() / s.len() as f64
                }
            })
            .collect()
    }

    /// Jain's fairness index of the streams' mean throughputs: 1 when all are equal, 1/n when
    /// one stream gets everything.
    pub fn jain(&self) -> f64 {
        let m = self.means();
        let sum: f64 = m.iter().sum();
        let sq: f64 = m.iter().map(|x| x * x).sum();
        if sq == 0.0 {
            return 0.0;
        }
        sum * sum / (m.len() as f64 * sq)
    }
}

const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// A round axis step giving about `ticks` steps over `range`.
fn nice_step(range: f64, ticks: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / ticks;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An axis label with as many decimals as the step needs.
fn num(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil() as usize
    };
    format!("{v:.decimals$}")
}

/// Draws the panels one above the other, under a title and up to two subtitle lines.
pub fn svg(panels: &[Panel], subtitle: &str) -> String {
    const W: f64 = 960.0;
    const PH: f64 = 320.0;
    const TOP: f64 = 70.0;
    const ML: f64 = 72.0;
    const MR: f64 = 190.0;
    const MT: f64 = 34.0;
    const MB: f64 = 46.0;
    let h = TOP + PH * panels.len() as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" font-size="16" font-weight="bold" text-anchor="middle">Throughput of concurrent streams sharing one session (flat, even lines = fair)</text>"#,
        W / 2.0
    );
    for (i, line) in subtitle.lines().take(2).enumerate() {
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
            W / 2.0,
            40 + 16 * i,
            esc(line)
        );
    }
    for (pi, p) in panels.iter().enumerate() {
        let y0 = TOP + PH * pi as f64;
        let (px, py) = (ML, y0 + MT);
        let (pw, ph) = (W - ML - MR, PH - MT - MB);
        let samples = p.series.iter().map(Vec::len).max().unwrap_or(0);
        let tmax = (samples as f64 * p.interval).max(p.interval);
        let vmax = p
            .series
            .iter()
            .flatten()
            .copied()
            .fold(0.0f64, f64::max)
            .max(1.0);
        let ystep = nice_step(vmax * 1.1, 5.0);
        let ymax = (vmax * 1.1 / ystep).ceil() * ystep;
        let xstep = nice_step(tmax, 8.0);
        let x = |t: f64| px + t / tmax * pw;
        let y = |v: f64| py + ph - v / ymax * ph;

        let _ = writeln!(
            s,
            r#"<text x="{px}" y="{}" font-size="14" font-weight="bold">{} — Jain fairness index {:.3}</text>"#,
            py - 10.0,
            esc(&p.title),
            p.jain()
        );
        // Grid and axes.
        let mut v = 0.0;
        while v <= ymax + ystep * 0.01 {
            let yy = y(v);
            let _ = writeln!(
                s,
                r##"<line x1="{px}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e4e4e4"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                px + pw,
                px - 6.0,
                yy + 4.0,
                num(v, ystep)
            );
            v += ystep;
        }
        let mut t = 0.0;
        while t <= tmax + xstep * 0.01 {
            let xx = x(t);
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{py}" x2="{xx:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                py + ph,
                py + ph + 16.0,
                num(t, xstep)
            );
            t += xstep;
        }
        let _ = writeln!(
            s,
            r##"<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">time (s)</text>"#,
            px + pw / 2.0,
            py + ph + 34.0
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">MB/s per stream</text>"#,
            px - 50.0,
            py + ph / 2.0
        );
        // One line per stream, each point at the middle of its interval.
        let means = p.means();
        for (i, series) in p.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut pts = String::new();
            for (k, v) in series.iter().enumerate() {
                let _ = write!(pts, "{:.1},{:.1} ", x((k as f64 + 0.5) * p.interval), y(*v));
            }
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.6" stroke-linejoin="round" points="{}"/>"#,
                pts.trim_end()
            );
            let ly = py + 14.0 + 18.0 * i as f64;
            let lx = px + pw + 14.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{ly:.1}">stream {}: {:.0} MB/s</text>"#,
                ly - 4.0,
                lx + 18.0,
                ly - 4.0,
                lx + 24.0,
                i + 1,
                means[i]
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(1000.0, 5.0), 200.0);
        assert_eq!(nice_step(3.0, 8.0), 0.5);
    }

    #[test]
    fn jain_index() {
        let p = Panel {
            title: "t".into(),
            interval: 0.1,
            series: vec![vec![10.0, 10.0], vec![10.0, 10.0]],
        };
        assert!((p.jain() - 1.0).abs() < 1e-9);
        let p = Panel {
            series: vec![vec![10.0], vec![0.0]],
            ..p
        };
        assert!((p.jain() - 0.5).abs() < 1e-9);
        let svg = svg(&[p], "x < y");
        assert!(svg.starts_with("<svg") && svg.contains("polyline") && svg.contains("x &lt; y"));
    }
}
