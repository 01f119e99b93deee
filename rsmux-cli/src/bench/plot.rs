//! The fairness picture: throughput over time of several streams sharing one session, one
//! panel per server, all on one y-scale, drawn with plotters' SVG backend. Fairness is Jain's
//! index of the streams' throughputs in each time sample, then summarized over the samples.

use plotters::prelude::*;
use serde::Serialize;

use super::stats::median;

/// Throughput samples of the streams of one session.
#[derive(Debug, Clone)]
pub struct Panel {
    pub title: String,
    /// Seconds between samples.
    pub interval: f64,
    /// `series[stream][sample]`: MB/s of that stream during that interval.
    pub series: Vec<Vec<f64>>,
}

/// Jain's fairness index of some throughputs: 1 when all are equal, 1/n when one gets
/// everything; `None` when all are zero (nothing to share).
pub fn jain(x: &[f64]) -> Option<f64> {
    let sum: f64 = x.iter().sum();
    let sq: f64 = x.iter().map(|v| v * v).sum();
    (sq > 0.0).then(|| sum * sum / (x.len() as f64 * sq))
}

/// Jain's index per time sample, summarized.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fairness {
    /// Mean of the per-sample indices (the headline figure).
    pub mean: f64,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// Samples with some traffic (those without are left out).
    pub samples: usize,
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

    /// Jain's index of the streams' mean throughputs (over the whole run): 1.0 even when the
    /// streams take turns, so it is kept only for comparison with [`Panel::fairness`].
    pub fn jain_of_means(&self) -> f64 {
        jain(&self.means()).unwrap_or(0.0)
    }

    /// Jain's index of every time sample, in order (samples without traffic left out).
    pub fn jain_per_sample(&self) -> Vec<f64> {
        let samples = self.series.iter().map(Vec::len).min().unwrap_or(0);
        (0..samples)
            .filter_map(|k| {
                let x: Vec<f64> = self.series.iter().map(|s| s[k]).collect();
                jain(&x)
            })
            .collect()
    }

    /// The per-sample indices summarized; `None` when no sample had traffic.
    pub fn fairness(&self) -> Option<Fairness> {
        let v = self.jain_per_sample();
        Some(Fairness {
            mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
            min: v.iter().copied().reduce(f64::min)?,
            median: median(&v)?,
            max: v.iter().copied().reduce(f64::max)?,
            samples: v.len(),
        })
    }

    /// The highest sample of any stream.
    pub fn peak(&self) -> f64 {
        self.series.iter().flatten().copied().fold(0.0, f64::max)
    }
}

/// Width of a stream's line: the axes are 1 px wide, so the lines are told apart by it.
pub const LINE_WIDTH: u32 = 2;

/// How many stream lines an SVG drawn by [`svg`] has.
#[cfg(test)]
pub fn series_lines(svg: &str) -> usize {
    let width = format!("stroke-width=\"{LINE_WIDTH}\"");
    svg.split("<polyline")
        .skip(1)
        .filter(|p| p.split('>').next().is_some_and(|tag| tag.contains(&width)))
        .count()
}

/// Colors of the streams' lines.
const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The y-axis top shared by every panel: a little above the highest sample.
pub fn shared_y_max(panels: &[Panel]) -> f64 {
    panels.iter().map(Panel::peak).fold(1.0, f64::max) * 1.1
}

/// Draws the panels one above the other under a title and up to two subtitle lines, each
/// stream one line (an SVG `<polyline>`; the legend uses rectangles). Text is left to the
/// SVG viewer's sans-serif font: no font is read here.
pub fn svg(panels: &[Panel], subtitle: &str) -> Result<String, String> {
    // Width, height of a panel, height of the title block.
    const W: u32 = 960;
    const PH: u32 = 320;
    const TOP: u32 = 70;
    let h = TOP + PH * panels.len().max(1) as u32;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (W, h)).into_drawing_area();
        draw(&root, panels, subtitle, TOP).map_err(|e| format!("drawing the plot: {e}"))?;
        root.present()
            .map_err(|e| format!("drawing the plot: {e}"))?;
    }
    Ok(out)
}

fn draw(
    root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    panels: &[Panel],
    subtitle: &str,
    top: u32,
) -> Result<(), Box<dyn std::error::Error>> {
    root.fill(&WHITE)?;
    let (head, body) = root.split_vertically(top);
    let (w, _) = head.dim_in_pixel();
    let centre = |size: u32| {
        ("sans-serif", size)
            .into_font()
            .color(&BLACK)
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ))
    };
    head.draw(&Text::new(
        "Throughput of concurrent streams sharing one session (flat, even lines = fair)",
        (w as i32 / 2, 8),
        centre(18),
    ))?;
    for (i, line) in subtitle.lines().take(2).enumerate() {
        head.draw(&Text::new(
            line.to_string(),
            (w as i32 / 2, 32 + 16 * i as i32),
            centre(13),
        ))?;
    }
    let ymax = shared_y_max(panels);
    let areas = body.split_evenly((panels.len().max(1), 1));
    for (area, p) in areas.iter().zip(panels) {
        let samples = p.series.iter().map(Vec::len).max().unwrap_or(0);
        let tmax = (samples as f64 * p.interval).max(p.interval);
        let fair = p.fairness().map_or("no traffic".to_string(), |f| {
            format!(
                "Jain index per sample: mean {:.3}, min {:.3}",
                f.mean, f.min
            )
        });
        let mut chart = ChartBuilder::on(area)
            .caption(format!("{} — {fair}", p.title), ("sans-serif", 15))
            .margin_left(10)
            .margin_right(10)
            .margin_bottom(6)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0.0..tmax, 0.0..ymax)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("MB/s per stream")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(WHITE)
            .draw()?;
        let means = p.means();
        for (i, series) in p.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts = series
                .iter()
                .enumerate()
                .map(|(k, v)| ((k as f64 + 0.5) * p.interval, *v));
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(LINE_WIDTH)))?
                .label(format!("stream {}: {:.0} MB/s", i + 1, means[i]))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 3), (x + 16, y + 3)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(series: Vec<Vec<f64>>) -> Panel {
        Panel {
            title: "t <1>".into(),
            interval: 0.1,
            series,
        }
    }

    #[test]
    fn even_streams_are_fair() {
        let p = panel(vec![vec![10.0, 10.0], vec![10.0, 10.0]]);
        let f = p.fairness().unwrap();
        assert!((f.mean - 1.0).abs() < 1e-9 && (f.min - 1.0).abs() < 1e-9);
        assert_eq!(f.samples, 2);
    }

    #[test]
    fn streams_taking_turns_are_unfair_per_sample_though_their_means_are_equal() {
        // Lines that cross: each stream gets everything half of the time.
        let p = panel(vec![vec![10.0, 0.0, 10.0, 0.0], vec![0.0, 10.0, 0.0, 10.0]]);
        assert!((p.jain_of_means() - 1.0).abs() < 1e-9);
        let f = p.fairness().unwrap();
        assert!((f.mean - 0.5).abs() < 1e-9, "{f:?}");
        assert!(f.max < 1.0);
        // Partly unfair: one sample even, one 3:1.
        let p = panel(vec![vec![5.0, 3.0], vec![5.0, 1.0]]);
        let per = p.jain_per_sample();
        assert!((per[0] - 1.0).abs() < 1e-9);
        assert!((per[1] - 0.8).abs() < 1e-9, "{per:?}");
    }

    #[test]
    fn samples_without_traffic_are_left_out() {
        let p = panel(vec![vec![0.0, 4.0], vec![0.0, 4.0]]);
        assert_eq!(p.jain_per_sample(), vec![1.0]);
        assert!(panel(vec![vec![0.0], vec![0.0]]).fairness().is_none());
    }

    #[test]
    fn svg_has_one_line_per_stream_and_one_scale() {
        let a = panel(vec![vec![1.0, 2.0, 3.0], vec![3.0, 2.0, 1.0]]);
        let b = panel(vec![vec![100.0, 50.0], vec![10.0, 20.0], vec![5.0, 5.0]]);
        assert!((shared_y_max(&[a.clone(), b.clone()]) - 110.0).abs() < 1e-9);
        let s = svg(&[a, b], "x < y").unwrap();
        assert!(s.starts_with("<svg"), "{}", &s[..80.min(s.len())]);
        assert!(s.trim_end().ends_with("</svg>"));
        assert_eq!(series_lines(&s), 5, "{s}");
        assert!(s.contains("x &lt; y") && s.contains("t &lt;1&gt;"));
    }
}
