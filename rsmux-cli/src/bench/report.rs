//! The report of a run, one serializable type: `--json` prints it, the table is rendered
//! from it. Its fields are documented in `rsmux-cli/BENCH-JSON.md`.

use std::{collections::BTreeMap, time::Duration};

use serde::Serialize;

use super::{
    args::{ECHO_STREAMS, MANY_STREAMS},
    delay,
    kcp_report::KcpReport,
    plot::Fairness,
    plot_run::PlotResult,
    ratios::{ratio_specs, ratios, tcp_ratio},
    rows::{all_workloads, row_rtts, Figure, Row, Workload, GIB},
    runner::Ctx,
    scale::ScaleReport,
    stats::{r1, r2, r3, Stat},
};

/// Everything `rsmux bench` measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub mode: &'static str,
    pub connect: Option<String>,
    pub quick: bool,
    pub repeat: u32,
    pub seconds_per_workload: f64,
    pub rtts_ms: Vec<f64>,
    pub rtts: Vec<RttReport>,
    pub proxy_line_cap_bytes: usize,
    pub config: ConfigReport,
    pub go: GoReport,
    pub rows: Vec<RowReport>,
    pub ratios: Vec<RatioReport>,
    pub plot: Option<PlotReport>,
    pub scale: Option<ScaleReport>,
    /// `--kcp`: rsmux's kcptun client and server against Debian's kcptun.
    pub kcp: Option<KcpReport>,
    pub total_seconds: f64,
}

/// One `--rtt` value.
#[derive(Debug, Serialize)]
pub struct RttReport {
    pub rtt_ms: f64,
    pub seconds_per_workload: f64,
    pub measured_ms: Option<f64>,
    pub probe_error: Option<String>,
}

/// The smux flags used.
#[derive(Debug, Serialize)]
pub struct ConfigReport {
    pub smuxver: u8,
    pub smuxbuf: usize,
    pub streambuf: usize,
    pub framesize: usize,
    pub keepalive_seconds: f64,
    pub keepalive_timeout_seconds: f64,
    pub fixed_streambuf: bool,
}

/// The Go peer, and whether it has hashicorp/yamux (the "Go yamux" row).
#[derive(Debug, Serialize)]
pub struct GoReport {
    pub available: bool,
    pub peer: Option<String>,
    pub skip_reason: Option<String>,
    pub yamux_available: bool,
    /// Which yamux the peer was built with.
    pub yamux_lib: Option<String>,
    pub yamux_skip_reason: Option<String>,
}

/// The repetitions of one workload of a row.
#[derive(Debug, Default, Serialize)]
pub struct WorkloadRuns {
    /// The table's figure: MB/s, or µs per operation for open/close.
    pub value: Stat,
    /// Speed over the raw TCP row's in the same repetition.
    pub ratio_to_tcp: Stat,
    /// CPU seconds (user + system) of the server process per GiB moved (MB/s workloads).
    pub server_cpu_s_per_gib: Stat,
    /// The server process's CPU seconds in each run (MB/s workloads).
    pub server_cpu_seconds: Vec<Option<f64>>,
    /// CPU seconds (user + system) of the client process per GiB moved: Go clients only
    /// (the bench-client reports its own), MB/s workloads.
    pub client_cpu_s_per_gib: Stat,
    /// The Go client process's CPU seconds in each run (MB/s workloads).
    pub client_cpu_seconds: Vec<Option<f64>>,
    /// Bytes moved (MB/s workloads) or operations done (open/close), per repetition.
    pub amount: Vec<Option<u64>>,
    /// Seconds each repetition took.
    pub seconds: Vec<Option<f64>>,
}

/// One row at one RTT. The flat `*_mb_s`, `*_ratio` and `open_close_us` fields are medians
/// over the repetitions; `per_run` has every run and min/median/max.
#[derive(Debug, Serialize)]
pub struct RowReport {
    pub id: String,
    pub name: String,
    pub rtt_ms: f64,
    pub seconds_per_workload: f64,
    pub transport: &'static str,
    pub version: Option<u8>,
    pub auto_tune: Option<bool>,
    pub client: &'static str,
    pub server: String,
    pub skipped: Option<String>,
    pub errors: Vec<String>,
    pub one_stream_mb_s: Option<f64>,
    pub one_stream_ratio: Option<f64>,
    pub one_stream_bytes: Option<u64>,
    pub one_stream_seconds: Option<f64>,
    pub one_stream_server_cpu_s_per_gib: Option<f64>,
    pub one_stream_client_cpu_s_per_gib: Option<f64>,
    pub many_streams: usize,
    pub many_streams_mb_s: Option<f64>,
    pub many_streams_ratio: Option<f64>,
    pub many_streams_bytes: Option<u64>,
    pub many_streams_seconds: Option<f64>,
    pub many_streams_server_cpu_s_per_gib: Option<f64>,
    pub many_streams_client_cpu_s_per_gib: Option<f64>,
    pub echo_one_stream_mb_s: Option<f64>,
    pub echo_one_stream_ratio: Option<f64>,
    pub echo_one_stream_bytes: Option<u64>,
    pub echo_one_stream_seconds: Option<f64>,
    pub echo_one_stream_server_cpu_s_per_gib: Option<f64>,
    pub echo_one_stream_client_cpu_s_per_gib: Option<f64>,
    pub echo_many_streams: usize,
    pub echo_many_streams_mb_s: Option<f64>,
    pub echo_many_streams_ratio: Option<f64>,
    pub echo_many_streams_bytes: Option<u64>,
    pub echo_many_streams_seconds: Option<f64>,
    pub echo_many_streams_server_cpu_s_per_gib: Option<f64>,
    pub echo_many_streams_client_cpu_s_per_gib: Option<f64>,
    pub open_close_us: Option<f64>,
    pub open_close_ops: Option<u64>,
    pub idle_streams: Option<usize>,
    pub idle_bytes_per_stream: Option<f64>,
    /// Per workload key (`one_stream`, ..., `open_close`): every repetition.
    pub per_run: BTreeMap<&'static str, WorkloadRuns>,
}

/// A pair of rows at one RTT; the workload fields are medians of the per-run ratios.
#[derive(Debug, Serialize)]
pub struct RatioReport {
    pub id: String,
    pub name: String,
    pub rtt_ms: f64,
    pub numerator: String,
    pub denominator: String,
    pub one_stream: Option<f64>,
    pub many_streams: Option<f64>,
    pub echo_one_stream: Option<f64>,
    pub echo_many_streams: Option<f64>,
    pub open_close: Option<f64>,
    /// Per workload key: the ratio in every repetition, min/median/max.
    pub per_run: BTreeMap<&'static str, Stat>,
}

/// `--plot` results.
#[derive(Debug, Serialize)]
pub struct PlotReport {
    pub file: String,
    pub error: Option<String>,
    /// Top of the y-axis, shared by every panel.
    pub y_max_mb_s: Option<f64>,
    pub panels: Vec<PanelReport>,
}

/// One panel of the picture.
#[derive(Debug, Serialize)]
pub struct PanelReport {
    pub title: String,
    pub interval_seconds: f64,
    pub streams: usize,
    pub stream_mean_mb_s: Vec<f64>,
    /// Mean of Jain's index over the time samples (`jain_per_sample.mean`).
    pub jain_index: Option<f64>,
    pub jain_per_sample: Option<Fairness>,
    /// Jain's index of the streams' means over the whole run (1.0 when they take turns).
    pub jain_of_means: f64,
}

/// Milliseconds, rounded.
pub fn rtt_ms(d: Duration) -> f64 {
    r3(d.as_secs_f64() * 1000.0)
}

/// `v` cut or extended with `None` to `n` entries.
fn padded<T>(mut v: Vec<Option<T>>, n: usize) -> Vec<Option<T>> {
    v.resize_with(n, || None);
    v
}

/// The median of the runs, or `None`.
fn mid(s: &Stat) -> Option<f64> {
    s.median
}

impl WorkloadRuns {
    /// The `n` repetitions of a workload of a row (runs that did not happen are `None`).
    fn of(rows: &[Row], row: &Row, w: Workload, n: usize) -> WorkloadRuns {
        let runs = padded(row.runs(w).to_vec(), n);
        let value = runs
            .iter()
            .map(|s| {
                s.map(|s| match s.figure {
                    Figure::Rate(r) => r.mb_s(),
                    Figure::Ops(o) => o.us_per_op(),
                })
            })
            .collect();
        WorkloadRuns {
            value: Stat::new(value, if w == Workload::OpenClose { r2 } else { r1 }),
            ratio_to_tcp: Stat::new(padded(tcp_ratio(rows, row, w), n), r3),
            server_cpu_s_per_gib: Stat::new(
                runs.iter()
                    .map(|s| s.and_then(|s| s.cpu_per_gib()))
                    .collect(),
                r3,
            ),
            server_cpu_seconds: runs
                .iter()
                .map(|s| match s.map(|s| (s.figure, s.server_cpu)) {
                    Some((Figure::Rate(_), Some(c))) => Some(r3(c)),
                    _ => None,
                })
                .collect(),
            client_cpu_s_per_gib: Stat::new(
                runs.iter()
                    .map(|s| s.and_then(|s| s.client_cpu_per_gib()))
                    .collect(),
                r3,
            ),
            client_cpu_seconds: runs
                .iter()
                .map(|s| match s.map(|s| (s.figure, s.client_cpu)) {
                    Some((Figure::Rate(_), Some(c))) => Some(r3(c)),
                    _ => None,
                })
                .collect(),
            amount: runs
                .iter()
                .map(|s| {
                    s.map(|s| match s.figure {
                        Figure::Rate(r) => r.bytes,
                        Figure::Ops(o) => o.ops,
                    })
                })
                .collect(),
            seconds: runs
                .iter()
                .map(|s| {
                    s.map(|s| match s.figure {
                        Figure::Rate(r) => r3(r.secs),
                        Figure::Ops(o) => r3(o.secs),
                    })
                })
                .collect(),
        }
    }

    /// Server CPU seconds per GiB over all runs together (total CPU time over total bytes of
    /// the runs where it was measured): finer than one run's figure, whose CPU time comes in
    /// 10 ms ticks. `None` without any.
    fn cpu_per_gib_overall(&self) -> Option<f64> {
        per_gib_overall(&self.server_cpu_seconds, &self.amount)
    }

    /// The same for the Go client's CPU seconds.
    fn client_cpu_per_gib_overall(&self) -> Option<f64> {
        per_gib_overall(&self.client_cpu_seconds, &self.amount)
    }
}

/// CPU seconds per GiB over the runs with both figures: total CPU time over total bytes.
fn per_gib_overall(cpu_seconds: &[Option<f64>], amount: &[Option<u64>]) -> Option<f64> {
    let (mut cpu, mut bytes) = (0.0, 0u64);
    for (c, b) in cpu_seconds.iter().zip(amount) {
        if let (Some(c), Some(b)) = (c, b) {
            cpu += c;
            bytes += b;
        }
    }
    (bytes > 0).then(|| r3(cpu / (bytes as f64 / GIB)))
}

impl WorkloadRuns {
    /// Sum of the runs' amounts, `None` without any.
    fn total(&self) -> Option<u64> {
        let v: Vec<u64> = self.amount.iter().flatten().copied().collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }

    /// Sum of the runs' seconds, `None` without any.
    fn total_secs(&self) -> Option<f64> {
        let v: Vec<f64> = self.seconds.iter().flatten().copied().collect();
        (!v.is_empty()).then(|| r3(v.iter().sum()))
    }
}

fn row_report(ctx: &Ctx, rows: &[Row], r: &Row) -> RowReport {
    let local = ctx.args.connect.is_none();
    let n = ctx.args.repeat as usize;
    let per_run: BTreeMap<&'static str, WorkloadRuns> = all_workloads(local)
        .into_iter()
        .map(|w| (w.key(), WorkloadRuns::of(rows, r, w, n)))
        .collect();
    let empty = WorkloadRuns::default();
    let get = |w: Workload| per_run.get(w.key()).unwrap_or(&empty);
    let (one, many, e1, em, oc) = (
        get(Workload::One),
        get(Workload::Many),
        get(Workload::EchoOne),
        get(Workload::EchoMany),
        get(Workload::OpenClose),
    );
    RowReport {
        id: r.id.clone(),
        name: r.name.clone(),
        rtt_ms: rtt_ms(r.rtt),
        seconds_per_workload: ctx.dur(r.rtt).as_secs_f64(),
        transport: r.transport(),
        version: r.version,
        auto_tune: ctx.auto_tune(r),
        client: r.client(),
        server: r.server(),
        skipped: r.skipped.clone(),
        errors: r.errors.clone(),
        one_stream_mb_s: mid(&one.value),
        one_stream_ratio: mid(&one.ratio_to_tcp),
        one_stream_bytes: one.total(),
        one_stream_seconds: one.total_secs(),
        one_stream_server_cpu_s_per_gib: one.cpu_per_gib_overall(),
        one_stream_client_cpu_s_per_gib: one.client_cpu_per_gib_overall(),
        many_streams: MANY_STREAMS,
        many_streams_mb_s: mid(&many.value),
        many_streams_ratio: mid(&many.ratio_to_tcp),
        many_streams_bytes: many.total(),
        many_streams_seconds: many.total_secs(),
        many_streams_server_cpu_s_per_gib: many.cpu_per_gib_overall(),
        many_streams_client_cpu_s_per_gib: many.client_cpu_per_gib_overall(),
        echo_one_stream_mb_s: mid(&e1.value),
        echo_one_stream_ratio: mid(&e1.ratio_to_tcp),
        echo_one_stream_bytes: e1.total(),
        echo_one_stream_seconds: e1.total_secs(),
        echo_one_stream_server_cpu_s_per_gib: e1.cpu_per_gib_overall(),
        echo_one_stream_client_cpu_s_per_gib: e1.client_cpu_per_gib_overall(),
        echo_many_streams: ECHO_STREAMS,
        echo_many_streams_mb_s: mid(&em.value),
        echo_many_streams_ratio: mid(&em.ratio_to_tcp),
        echo_many_streams_bytes: em.total(),
        echo_many_streams_seconds: em.total_secs(),
        echo_many_streams_server_cpu_s_per_gib: em.cpu_per_gib_overall(),
        echo_many_streams_client_cpu_s_per_gib: em.client_cpu_per_gib_overall(),
        open_close_us: mid(&oc.value),
        open_close_ops: oc.total(),
        idle_streams: r.idle.map(|m| m.streams),
        idle_bytes_per_stream: r.idle.map(|m| m.bytes_per_stream.round()),
        per_run,
    }
}

/// Builds the report of a run.
pub fn build(
    ctx: &Ctx,
    rows: &[Row],
    plot: Option<&PlotResult>,
    scale: Option<ScaleReport>,
    kcp: Option<KcpReport>,
    total: f64,
) -> Report {
    let s = &ctx.args.smux;
    let local = ctx.args.connect.is_none();
    let specs = ratio_specs(ctx.args.connect.as_deref());
    let mut ratio_reports = Vec::new();
    for rtt in row_rtts(rows) {
        for ratio in ratios(&specs, rows, rtt) {
            let per_run: BTreeMap<&'static str, Stat> = all_workloads(local)
                .into_iter()
                .map(|w| {
                    let runs = padded(ratio.per_run(w), ctx.args.repeat as usize);
                    (w.key(), Stat::new(runs, r3))
                })
                .collect();
            let m = |w: Workload| per_run.get(w.key()).and_then(mid);
            ratio_reports.push(RatioReport {
                id: format!("{}/{}", ratio.spec.num, ratio.spec.den),
                name: ratio.spec.name.clone(),
                rtt_ms: rtt_ms(ratio.rtt),
                numerator: ratio.spec.num.clone(),
                denominator: ratio.spec.den.clone(),
                one_stream: m(Workload::One),
                many_streams: m(Workload::Many),
                echo_one_stream: m(Workload::EchoOne),
                echo_many_streams: m(Workload::EchoMany),
                open_close: m(Workload::OpenClose),
                per_run,
            });
        }
    }
    let file = || {
        ctx.args
            .plot
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let plot = plot.map(|p| match p {
        Err(e) => PlotReport {
            file: file(),
            error: Some(e.clone()),
            y_max_mb_s: None,
            panels: Vec::new(),
        },
        Ok(panels) => PlotReport {
            file: file(),
            error: None,
            y_max_mb_s: Some(r1(super::plot::shared_y_max(panels))),
            panels: panels
                .iter()
                .map(|p| {
                    let f = p.fairness().map(|f| Fairness {
                        mean: r3(f.mean),
                        min: r3(f.min),
                        median: r3(f.median),
                        max: r3(f.max),
                        samples: f.samples,
                    });
                    PanelReport {
                        title: p.title.clone(),
                        interval_seconds: p.interval,
                        streams: p.series.len(),
                        stream_mean_mb_s: p.means().into_iter().map(r1).collect(),
                        jain_index: f.map(|f| f.mean),
                        jain_per_sample: f,
                        jain_of_means: r3(p.jain_of_means()),
                    }
                })
                .collect(),
        },
    });
    Report {
        tool: "rsmux bench",
        version: env!("CARGO_PKG_VERSION"),
        mode: if local { "local" } else { "connect" },
        connect: ctx.args.connect.clone(),
        quick: ctx.args.quick,
        repeat: ctx.args.repeat,
        seconds_per_workload: ctx.dur(Duration::ZERO).as_secs_f64(),
        rtts_ms: ctx.args.rtts().into_iter().map(rtt_ms).collect(),
        rtts: ctx
            .args
            .rtts()
            .into_iter()
            .map(|rtt| {
                let probe = ctx.probes.iter().find(|(r, _)| *r == rtt).map(|(_, p)| p);
                RttReport {
                    rtt_ms: rtt_ms(rtt),
                    seconds_per_workload: ctx.dur(rtt).as_secs_f64(),
                    measured_ms: probe.and_then(|p| p.as_ref().ok()).map(|d| rtt_ms(*d)),
                    probe_error: probe.and_then(|p| p.as_ref().err()).cloned(),
                }
            })
            .collect(),
        proxy_line_cap_bytes: delay::LINE_CAP,
        config: ConfigReport {
            smuxver: s.smuxver,
            smuxbuf: s.smuxbuf,
            streambuf: s.streambuf,
            framesize: s.framesize,
            keepalive_seconds: s.keepalive.as_secs_f64(),
            keepalive_timeout_seconds: s.keepalive_timeout.as_secs_f64(),
            fixed_streambuf: s.fixed_streambuf,
        },
        go: GoReport {
            available: ctx.go.is_ok(),
            peer: ctx.go.as_ref().ok().map(|p| p.display().to_string()),
            skip_reason: ctx.go.as_ref().err().cloned(),
            yamux_available: ctx.yamux.is_ok(),
            yamux_lib: ctx.yamux.as_ref().ok().cloned(),
            yamux_skip_reason: ctx.yamux.as_ref().err().cloned(),
        },
        rows: rows.iter().map(|r| row_report(ctx, rows, r)).collect(),
        ratios: ratio_reports,
        plot,
        scale,
        kcp,
        total_seconds: r3(total),
    }
}
