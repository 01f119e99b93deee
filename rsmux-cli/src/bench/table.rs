//! The text output: rendered from the [`Report`], one table per RTT (medians, with min-max
//! under each figure), the per-repetition speed ratios, the servers' CPU time per GiB, the
//! scale workload and the plot's fairness.

use std::fmt::Write;

use super::{
    args::{ECHO_STREAMS, IDLE_STREAMS, MANY_STREAMS},
    delay, memory,
    report::{Report, RowReport, WorkloadRuns},
    rows::{size, Workload},
    stats::Stat,
};

/// Width of every figure column.
pub(super) const COL: usize = 13;
/// Width of a ratio column ("min/median/max").
pub(super) const RCOL: usize = 17;

/// The two header lines of a workload's column.
fn heading(w: Workload, local: bool) -> (String, String) {
    match (w, local) {
        (Workload::One, true) => ("1 stream".into(), "one way".into()),
        (Workload::Many, true) => (format!("{MANY_STREAMS} streams"), "one way".into()),
        (Workload::One, false) => ("1 stream".into(), "echoed".into()),
        (Workload::Many, false) => (format!("{MANY_STREAMS} streams"), "echoed".into()),
        (Workload::EchoOne, _) => ("echo".into(), "1 stream".into()),
        (Workload::EchoMany, _) => ("echo".into(), format!("{ECHO_STREAMS} streams")),
        (Workload::OpenClose, _) => ("open+close".into(), String::new()),
    }
}

/// A one-line column name.
fn short(w: Workload, local: bool) -> String {
    match heading(w, local) {
        (a, b) if a == "echo" => format!(
            "echo {}",
            b.trim_end_matches(" streams").trim_end_matches(" stream")
        ),
        (a, _) => a,
    }
}

/// A figure with as many decimals as suit it.
fn fig(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

/// The median of a stat, or "-".
fn median_cell(s: &Stat, decimals: usize) -> String {
    s.median.map_or("-".into(), |v| fig(v, decimals))
}

/// "min-max" of a stat, or nothing.
fn range_cell(s: &Stat, decimals: usize) -> String {
    match (s.min, s.max) {
        (Some(a), Some(b)) => format!("{}-{}", fig(a, decimals), fig(b, decimals)),
        _ => String::new(),
    }
}

/// "min/median/max" of a stat, or "-".
pub(super) fn triple_cell(s: &Stat) -> String {
    match (s.min, s.median, s.max) {
        (Some(a), Some(m), Some(b)) => format!("{a:.2}/{m:.2}/{b:.2}"),
        _ => "-".into(),
    }
}

/// A row's server CPU seconds per GiB over all runs of a workload.
fn cpu_overall(r: &RowReport, w: Workload) -> Option<f64> {
    match w {
        Workload::One => r.one_stream_server_cpu_s_per_gib,
        Workload::Many => r.many_streams_server_cpu_s_per_gib,
        Workload::EchoOne => r.echo_one_stream_server_cpu_s_per_gib,
        Workload::EchoMany => r.echo_many_streams_server_cpu_s_per_gib,
        Workload::OpenClose => None,
    }
}

/// A row's (Go) client CPU seconds per GiB over all runs of a workload.
fn client_cpu_overall(r: &RowReport, w: Workload) -> Option<f64> {
    match w {
        Workload::One => r.one_stream_client_cpu_s_per_gib,
        Workload::Many => r.many_streams_client_cpu_s_per_gib,
        Workload::EchoOne => r.echo_one_stream_client_cpu_s_per_gib,
        Workload::EchoMany => r.echo_many_streams_client_cpu_s_per_gib,
        Workload::OpenClose => None,
    }
}

/// Whose CPU time a CPU block shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CpuOf {
    Server,
    Client,
}

/// A block of CPU seconds per GiB: one line per row that has the figure, the MB/s workloads
/// as columns; the figure is over all runs together (finer than a run's 10 ms ticks), the
/// range under it the runs'.
fn cpu_block(
    out: &mut String,
    rows: &[&RowReport],
    of: CpuOf,
    workloads: &[Workload],
    name_w: usize,
    repeat: u32,
    local: bool,
) {
    let stat = |x: &WorkloadRuns| match of {
        CpuOf::Server => x.server_cpu_s_per_gib.clone(),
        CpuOf::Client => x.client_cpu_s_per_gib.clone(),
    };
    let with: Vec<&&RowReport> = rows
        .iter()
        .filter(|r| {
            Workload::RATES
                .iter()
                .any(|w| runs(r, *w).is_some_and(|x| !stat(x).is_empty()))
        })
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(out);
    let title = match of {
        CpuOf::Server => "server CPU s per GiB, all runs",
        CpuOf::Client => "Go client CPU s/GiB, all runs",
    };
    let mut h = format!("{title:name_w$}");
    let rates: Vec<Workload> = workloads
        .iter()
        .copied()
        .filter(|w| *w != Workload::OpenClose)
        .collect();
    for w in &rates {
        let _ = write!(h, "{:>COL$}", short(*w, local));
    }
    let _ = writeln!(out, "{}", h.trim_end());
    for r in with {
        let overall: Vec<Option<Stat>> = rates
            .iter()
            .map(|w| {
                let cpu = stat(runs(r, *w)?);
                let median = match of {
                    CpuOf::Server => cpu_overall(r, *w),
                    CpuOf::Client => client_cpu_overall(r, *w),
                };
                Some(Stat { median, ..cpu })
            })
            .collect();
        let cells: Vec<(Option<&Stat>, usize)> = overall.iter().map(|s| (s.as_ref(), 2)).collect();
        stat_lines(out, &r.name, name_w, &cells, None, repeat);
    }
}

fn runs(r: &RowReport, w: Workload) -> Option<&WorkloadRuns> {
    r.per_run.get(w.key())
}

/// Appends a row's median line, and its range line when there are several runs.
pub(super) fn stat_lines(
    out: &mut String,
    name: &str,
    name_w: usize,
    cells: &[(Option<&Stat>, usize)],
    extra: Option<String>,
    repeat: u32,
) {
    let mut line = format!("{name:name_w$}");
    let mut range = format!("{:name_w$}", "");
    for (s, d) in cells {
        // A leading space keeps a figure as wide as the column apart from the last.
        let m = s.map_or("-".into(), |s| median_cell(s, *d));
        let _ = write!(line, "{:>COL$}", format!(" {m}"));
        let rg = s.map_or(String::new(), |s| range_cell(s, *d));
        let _ = write!(range, "{:>COL$}", format!(" {rg}"));
    }
    if let Some(e) = extra {
        let _ = write!(line, "{e:>COL$}");
    }
    let _ = writeln!(out, "{}", line.trim_end());
    if repeat > 1 && !range.trim().is_empty() {
        let _ = writeln!(out, "{}", range.trim_end());
    }
}

/// The whole text output.
pub fn render(rep: &Report) -> String {
    let mut out = String::new();
    let c = &rep.config;
    let local = rep.mode == "local";
    let keepalive = if c.keepalive_seconds == 0.0 {
        "off".to_string()
    } else {
        format!("{}/{} s", c.keepalive_seconds, c.keepalive_timeout_seconds)
    };
    if rep.rows.is_empty() {
        let _ = writeln!(
            out,
            "rsmux bench — {} only (--no-table), {} run{} of each",
            match (rep.scale.is_some(), rep.kcp.is_some()) {
                (true, true) => "the scale workload and the KCP tunnels",
                (false, true) => "the KCP tunnels",
                _ => "the scale workload",
            },
            rep.repeat,
            if rep.repeat == 1 { "" } else { "s" },
        );
    } else {
        let _ = writeln!(
        out,
        "rsmux bench — {}, {} s per workload{}, {} run{} of each; smuxbuf {}, streambuf {} ({}), framesize {}, keepalive {}",
        if local { "loopback TCP".to_string() } else { format!("echo server {}", rep.connect.as_deref().unwrap_or("")) },
        rep.seconds_per_workload,
        if rep.quick { " (--quick)" } else { "" },
        rep.repeat,
        if rep.repeat == 1 { "" } else { "s" },
        size(c.smuxbuf),
        size(c.streambuf),
        if c.fixed_streambuf { "fixed" } else { "v2: auto-tuned" },
        size(c.framesize),
        keepalive,
    );
    }
    let workloads = super::rows::all_workloads(local);
    let name_w = rep
        .rows
        .iter()
        .map(|r| r.name.chars().count())
        .chain(rep.ratios.iter().map(|r| r.name.chars().count()))
        .max()
        .unwrap_or(8)
        .max(28)
        + 2;
    for rtt in &rep.rtts {
        let rows: Vec<&RowReport> = rep.rows.iter().filter(|r| r.rtt_ms == rtt.rtt_ms).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out);
        if rtt.rtt_ms == 0.0 {
            let _ = write!(out, "RTT 0: direct loopback");
        } else {
            let measured = match (&rtt.measured_ms, &rtt.probe_error) {
                (Some(ms), _) => format!("{ms:.1} ms"),
                (None, Some(e)) => format!("failed: {e}"),
                _ => "not measured".into(),
            };
            let _ = write!(
                out,
                "RTT {}ms: every connection through the delay proxy ({}ms each way; a 1-byte round trip through it: {measured}), {} s per workload",
                rtt.rtt_ms,
                rtt.rtt_ms / 2.0,
                rtt.seconds_per_workload
            );
        }
        if rep.repeat > 1 {
            let _ = write!(out, "; median of {} runs, min-max below", rep.repeat);
        }
        let _ = writeln!(out);
        let heads: Vec<(String, String)> = workloads.iter().map(|w| heading(*w, local)).collect();
        let mut h = [format!("{:name_w$}", ""), String::new(), String::new()];
        h[1] = h[0].clone();
        h[2] = h[0].clone();
        for (w, (a, b)) in workloads.iter().zip(&heads) {
            let unit = if *w == Workload::OpenClose {
                "µs/op"
            } else {
                "MB/s"
            };
            let _ = write!(h[0], "{a:>COL$}");
            let _ = write!(h[1], "{b:>COL$}");
            let _ = write!(h[2], "{unit:>COL$}");
        }
        if local {
            let _ = write!(h[0], "{:>COL$}", "idle stream");
            let _ = write!(h[2], "{:>COL$}", "bytes");
        }
        for line in &h {
            let _ = writeln!(out, "{}", line.trim_end());
        }
        for r in &rows {
            if let Some(reason) = &r.skipped {
                let _ = writeln!(out, "{:name_w$}skipped: {reason}", r.name);
                continue;
            }
            let cells: Vec<(Option<&Stat>, usize)> = workloads
                .iter()
                .map(|w| {
                    let d = if *w == Workload::OpenClose { 1 } else { 0 };
                    (runs(r, *w).map(|x| &x.value), d)
                })
                .collect();
            let idle = local.then(|| {
                r.idle_bytes_per_stream
                    .map_or(idle_missing().into(), |b| format!("{b:.0}"))
            });
            stat_lines(&mut out, &r.name, name_w, &cells, idle, rep.repeat);
            for e in &r.errors {
                let _ = writeln!(out, "{:name_w$}FAILED {e}", "");
            }
        }
        let ratios: Vec<_> = rep
            .ratios
            .iter()
            .filter(|r| r.rtt_ms == rtt.rtt_ms)
            .collect();
        if !ratios.is_empty() {
            let _ = writeln!(out);
            let mut h = format!("{:name_w$}", "speed ratios, min/median/max");
            for w in &workloads {
                let _ = write!(h, "{:>RCOL$}", short(*w, local));
            }
            let _ = writeln!(out, "{}", h.trim_end());
            for ratio in ratios {
                let mut line = format!("{:name_w$}", ratio.name);
                for w in &workloads {
                    let v = ratio.per_run.get(w.key()).map_or("-".into(), triple_cell);
                    // A leading space keeps wide cells (ratios of 10 and more) apart.
                    let _ = write!(line, "{:>RCOL$}", format!(" {v}"));
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
        cpu_block(
            &mut out,
            &rows,
            CpuOf::Server,
            &workloads,
            name_w,
            rep.repeat,
            local,
        );
        cpu_block(
            &mut out,
            &rows,
            CpuOf::Client,
            &workloads,
            name_w,
            rep.repeat,
            local,
        );
    }
    if let Some(s) = &rep.scale {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Scale: {} sessions x {} streams from {} to one echo server process, {} B echo rounds on every stream for {} s, v{}{}",
            s.sessions,
            s.streams_per_session,
            if s.client == "go" { "the Go peer's scale-client" } else { "this process (rsmux)" },
            s.message_bytes,
            s.seconds,
            s.version,
            if rep.repeat > 1 { format!("; median of {} runs, min-max below", rep.repeat) } else { String::new() },
        );
        let mut h = format!("{:name_w$}", "");
        for col in [
            "rounds/s",
            "setup s",
            "RSS idle MB",
            "RSS busy MB",
            "RSS peak MB",
            "CPU s",
            "client CPU s",
            "µs/round",
        ] {
            let _ = write!(h, "{col:>COL$}");
        }
        let _ = writeln!(out, "{}", h.trim_end());
        let mb = |s: &Stat| Stat::new(s.runs.iter().map(|b| b.map(|b| b / 1e6)).collect(), |x| x);
        for srv in &s.servers {
            if let Some(reason) = &srv.skipped {
                let _ = writeln!(out, "{:name_w$}skipped: {reason}", srv.name);
                continue;
            }
            let (idle, busy, peak) = (
                mb(&srv.rss_idle_bytes),
                mb(&srv.rss_busy_bytes),
                mb(&srv.rss_peak_bytes),
            );
            let cells = [
                (Some(&srv.rounds_per_s), 0),
                (Some(&srv.setup_seconds), 2),
                (Some(&idle), 0),
                (Some(&busy), 0),
                (Some(&peak), 0),
                (Some(&srv.server_cpu_seconds), 2),
                (Some(&srv.client_cpu_seconds), 2),
                (Some(&srv.cpu_us_per_round), 1),
            ];
            stat_lines(&mut out, srv.name, name_w, &cells, None, rep.repeat);
            for e in &srv.errors {
                let _ = writeln!(out, "{:name_w$}FAILED {e}", "");
            }
        }
        let _ = writeln!(
            out,
            "rsmux echo / Go echo, rounds/s: {}",
            match triple_cell(&s.rounds_ratio_rsmux_to_go).as_str() {
                "-" => "-".to_string(),
                t => format!("{t} (min/median/max, within each run)"),
            }
        );
    }
    if let Some(k) = &rep.kcp {
        super::kcp_report::render(&mut out, k, rep.repeat);
    }
    notes(&mut out, rep, local);
    out
}

/// The explanations under the tables.
fn notes(out: &mut String, rep: &Report, local: bool) {
    let _ = writeln!(out);
    if !rep.rows.is_empty() && local {
        let _ = writeln!(out, "raw TCP: a TCP connection per stream. rsmux: this process <-> an `rsmux` server process, one session.");
        if !rep.config.fixed_streambuf && !rep.quick {
            let _ = writeln!(out, "v2 fixed window: auto-tuning off on both ends (--fixed-streambuf), Go's behaviour: the figure before it.");
        }
        match (&rep.go.peer, &rep.go.skip_reason) {
            (Some(p), _) => {
                let _ = writeln!(
                    out,
                    "Go smux: Go client <-> Go server, both {p} (xtaci/smux)."
                );
                if !rep.quick {
                    let _ = writeln!(out, "rsmux→Go: this process <-> Go server; Go→rsmux: Go client <-> `rsmux` server process.");
                }
                let _ = writeln!(out, "Echo with a Go client: the Go peer's bench-client (one session) straight to the echo server, two processes.");
                match (&rep.go.yamux_lib, &rep.go.yamux_skip_reason) {
                    (Some(lib), _) => {
                        let _ = writeln!(out, "Go yamux: Go client <-> Go server, {lib}, DefaultConfig (256 KiB stream window); one way only.");
                    }
                    (None, Some(reason)) if rep.rows.iter().any(|r| r.transport == "yamux") => {
                        let _ = writeln!(out, "Go yamux row skipped: {reason}");
                    }
                    _ => {}
                }
            }
            (None, reason) => {
                let _ = writeln!(
                    out,
                    "Go smux rows skipped: {}",
                    reason.as_deref().unwrap_or("?")
                );
            }
        }
        let _ = writeln!(out, "One way: client to server, 128 KiB writes and reads. Echo: every stream writes 128 KiB chunks while reading");
        let _ = writeln!(out, "the echo; MB/s of bytes echoed (each direction carries that much). open+close: open, write 1 B, read 1 B, close.");
        let _ = writeln!(out, "idle stream: heap bytes per idle open stream, client + server sessions together, {IDLE_STREAMS} streams.");
        if !memory::AVAILABLE {
            let _ = writeln!(out, "idle stream {}.", memory::UNAVAILABLE_NOTE);
        }
    } else if !rep.rows.is_empty() {
        let _ = writeln!(out, "Echoed: each stream writes 128 KiB chunks while reading the echo; when all came back it half-closes");
        let _ = writeln!(
            out,
            "and expects EOF. MB/s of bytes echoed (each direction carries that much)."
        );
        let _ = writeln!(
            out,
            "raw TCP echo: in this process; rsmux echo: an `rsmux echo` child process."
        );
    }
    if !rep.rows.is_empty() {
        let _ = writeln!(out, "Runs are round-robin over the rows. Speed ratios: MB/s, or operations per second for open+close, computed");
        let _ = writeln!(out, "within each run (both rows side by side), then min/median/max; above 1: the first row is faster.");
        let _ = writeln!(out, "Server CPU: user + system seconds of the server process (/proc, 10 ms ticks) per GiB moved by the client.");
        if rep.rows.iter().any(|r| {
            r.client == "go"
                && r.per_run
                    .values()
                    .any(|w| !w.client_cpu_s_per_gib.is_empty())
        }) {
            let _ = writeln!(out, "Go client CPU: the same for the Go bench-client process (its own getrusage, start-up included). Client and");
            let _ = writeln!(out, "server share the machine's cores: where the client spends more per GiB than the server, the client is the bound.");
        }
    }
    if let Some(s) = rep.scale.as_ref().filter(|s| s.client == "go") {
        let _ = writeln!(out, "Scale CPU s: the server's (/proc) and the Go scale-client's (its own getrusage) during the rounds; µs/round:");
        let _ = writeln!(
            out,
            "both together per round ({} sessions; server and client share the machine's cores).",
            s.sessions
        );
    }
    if rep.rtts.iter().any(|r| r.rtt_ms != 0.0) {
        let _ = writeln!(out, "Delay proxy: in this process, RTT/2 each way, one RTT before a new connection forwards (the handshake);");
        let _ = writeln!(
            out,
            "it holds at most {} per direction and connection.",
            size(delay::LINE_CAP)
        );
    }
    let _ = writeln!(
        out,
        "MB = 10^6 bytes. Total time {:.1} s.",
        rep.total_seconds
    );
    if let Some(p) = &rep.plot {
        match &p.error {
            Some(e) => {
                let _ = writeln!(out, "Plot FAILED: {e}");
            }
            None => {
                let _ = writeln!(
                    out,
                    "Plot written to {} (one y-scale, up to {} MB/s). Jain's fairness index per sample (mean, min):",
                    p.file,
                    p.y_max_mb_s.unwrap_or(0.0)
                );
                for panel in &p.panels {
                    let f = panel.jain_per_sample.map_or("no traffic".into(), |f| {
                        format!("{:.3}, {:.3}", f.mean, f.min)
                    });
                    let _ = writeln!(
                        out,
                        "  {}: {f} (of the means: {:.3})",
                        panel.title, panel.jain_of_means
                    );
                }
            }
        }
    }
}

/// The idle-stream cell of a row without the figure: "-" where it is not measured (raw TCP,
/// Go), "n/a" everywhere in a build that cannot count heap bytes.
fn idle_missing() -> &'static str {
    if memory::AVAILABLE {
        "-"
    } else {
        "n/a"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(runs: &[f64]) -> Stat {
        Stat::new(runs.iter().map(|x| Some(*x)).collect(), |x| x)
    }

    #[test]
    fn cells_show_median_range_and_triple() {
        let s = stat(&[3.0, 1.0, 2.0]);
        assert_eq!(median_cell(&s, 1), "2.0");
        assert_eq!(range_cell(&s, 0), "1-3");
        assert_eq!(triple_cell(&s), "1.00/2.00/3.00");
        let none = Stat::new(vec![None, None], |x| x);
        assert_eq!(median_cell(&none, 0), "-");
        assert_eq!(range_cell(&none, 0), "");
        assert_eq!(triple_cell(&none), "-");
    }

    #[test]
    fn a_row_has_a_range_line_only_with_several_runs() {
        let s = stat(&[10.0, 30.0, 20.0]);
        let mut out = String::new();
        stat_lines(&mut out, "row", 6, &[(Some(&s), 0), (None, 0)], None, 3);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("row") && lines[0].contains("20") && lines[0].ends_with('-'));
        assert!(lines[1].trim() == "10-30", "{out}");
        let mut one = String::new();
        stat_lines(&mut one, "row", 6, &[(Some(&stat(&[5.0])), 0)], None, 1);
        assert_eq!(one.lines().count(), 1, "{one}");
    }

    #[test]
    fn wide_ranges_stay_apart() {
        let a = stat(&[1648.2, 1706.5]);
        let mut out = String::new();
        stat_lines(&mut out, "r", 2, &[(Some(&a), 1), (Some(&a), 1)], None, 2);
        let range = out.lines().nth(1).unwrap();
        assert_eq!(range.split_whitespace().count(), 2, "{out}");
    }

    #[test]
    fn echo_columns_get_short_names() {
        assert_eq!(
            short(Workload::EchoMany, true),
            format!("echo {ECHO_STREAMS}")
        );
        assert_eq!(short(Workload::EchoOne, true), "echo 1");
        assert_eq!(
            short(Workload::Many, true),
            format!("{MANY_STREAMS} streams")
        );
    }
}
