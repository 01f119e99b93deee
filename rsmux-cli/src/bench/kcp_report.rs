//! The KCP comparison in the report (`kcp` of `--json`, documented in
//! `rsmux-cli/BENCH-JSON.md`) and as text: a table of the rows and one of the ratios.

use std::{collections::BTreeMap, fmt::Write};

use serde::Serialize;

use super::{
    kcp::{loss_text, KcpRow, KcpRun, KcpWorkload, MANY_CONNS},
    kcp_procs::SHARED_FLAGS,
    rows::GIB,
    stats::{r1, r3, Stat},
    table::{stat_lines, triple_cell, COL, RCOL},
};

/// Everything `--kcp` measured.
#[derive(Debug, Serialize)]
pub struct KcpReport {
    pub kcptun: KcptunReport,
    /// The flags both ends of every tunnel got (beside their addresses).
    pub flags: Vec<&'static str>,
    /// Bytes each transfer moves, split evenly over its connections.
    pub bytes_per_transfer: u64,
    pub many_conns: usize,
    /// A transfer ends at this time even if not every byte arrived.
    pub limit_seconds: f64,
    pub losses_percent: Vec<f64>,
    /// 1-minute load average of the machine before and after the comparison.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub seconds: f64,
    pub rows: Vec<KcpRowReport>,
    pub ratios: Vec<KcpRatioReport>,
}

/// Debian's kcptun programs.
#[derive(Debug, Serialize)]
pub struct KcptunReport {
    pub available: bool,
    pub client: Option<String>,
    pub server: Option<String>,
    pub skip_reason: Option<String>,
}

/// A pairing at one loss rate.
#[derive(Debug, Serialize)]
pub struct KcpRowReport {
    pub id: String,
    pub pairing: String,
    pub name: String,
    pub client: &'static str,
    pub server: &'static str,
    pub loss_percent: f64,
    pub skipped: Option<String>,
    pub errors: Vec<String>,
    /// Medians of `per_run.*.mb_s`.
    pub one_conn_mb_s: Option<f64>,
    pub many_conns_mb_s: Option<f64>,
    /// Per workload key (`one_conn`, `many_conns`): every repetition.
    pub per_run: BTreeMap<&'static str, KcpRuns>,
    pub memory: KcpMemoryReport,
    pub relay: KcpRelayReport,
}

/// The repetitions of one transfer workload of a row.
#[derive(Debug, Default, Serialize)]
pub struct KcpRuns {
    pub mb_s: Stat,
    pub client_cpu_s_per_gib: Stat,
    pub server_cpu_s_per_gib: Stat,
    /// CPU seconds over GiB of all runs together (finer than a run's 10 ms ticks).
    pub client_cpu_s_per_gib_all_runs: Option<f64>,
    pub server_cpu_s_per_gib_all_runs: Option<f64>,
    pub bytes: Vec<Option<u64>>,
    pub seconds: Vec<Option<f64>>,
    /// Whether every byte arrived before the time limit.
    pub complete: Vec<Option<bool>>,
    pub client_cpu_seconds: Vec<Option<f64>>,
    pub server_cpu_seconds: Vec<Option<f64>>,
}

/// Resident memory of the tunnel processes, bytes, one entry per repetition.
#[derive(Debug, Default, Serialize)]
pub struct KcpMemoryReport {
    /// `VmRSS` once started, before any session.
    pub client_rss_start_bytes: Stat,
    /// `VmHWM` after both transfers.
    pub client_rss_peak_bytes: Stat,
    /// Peak minus start: what the one session (kcptun's `--conn 1`) and its traffic took.
    pub client_session_bytes: Stat,
    pub server_rss_start_bytes: Stat,
    pub server_rss_peak_bytes: Stat,
    pub server_session_bytes: Stat,
}

/// The relay's datagram counts, all runs together.
#[derive(Debug, Default, Serialize)]
pub struct KcpRelayReport {
    pub up_forwarded: u64,
    pub up_dropped: u64,
    pub down_forwarded: u64,
    pub down_dropped: u64,
    /// Dropped over relayed, both directions, percent.
    pub measured_loss_percent: Option<f64>,
    /// Per run: datagrams the kernel dropped for a full UDP receive buffer (any socket).
    pub rcvbuf_errors: Vec<Option<u64>>,
}

/// rsmux over kcptun for one end (or both), at one loss rate; per repetition.
#[derive(Debug, Serialize)]
pub struct KcpRatioReport {
    pub id: String,
    pub name: String,
    pub loss_percent: f64,
    pub numerator: String,
    pub denominator: String,
    /// Whose CPU time and memory are compared: `client`, `server` or `both` (summed).
    pub process: &'static str,
    /// Keys: `one_conn`, `many_conns` (MB/s: above 1, rsmux is faster), `one_conn_cpu`,
    /// `many_conns_cpu` (CPU s per GiB), `rss_peak`, `session_bytes` (below 1, rsmux is
    /// lighter).
    pub per_run: BTreeMap<&'static str, Stat>,
}

/// Which process a ratio compares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Proc {
    Client,
    Server,
    Both,
}

/// The ratios: each end swapped against kcptun with either server (or client), and both.
const RATIOS: [(&str, &str, &str, Proc); 5] = [
    (
        "rsmux-kcptun",
        "kcptun-kcptun",
        "rsmux client / kcptun client (kcptun server)",
        Proc::Client,
    ),
    (
        "rsmux-rsmux",
        "kcptun-rsmux",
        "rsmux client / kcptun client (rsmux server)",
        Proc::Client,
    ),
    (
        "kcptun-rsmux",
        "kcptun-kcptun",
        "rsmux server / kcptun server (kcptun client)",
        Proc::Server,
    ),
    (
        "rsmux-rsmux",
        "rsmux-kcptun",
        "rsmux server / kcptun server (rsmux client)",
        Proc::Server,
    ),
    (
        "rsmux-rsmux",
        "kcptun-kcptun",
        "rsmux ↔ rsmux / kcptun ↔ kcptun (both processes)",
        Proc::Both,
    ),
];

fn bytes_round(v: f64) -> f64 {
    v.round()
}

fn cpu_per_gib(cpu: Option<f64>, bytes: u64) -> Option<f64> {
    (bytes > 0).then_some(cpu? / (bytes as f64 / GIB))
}

fn sample_cpu(row: &KcpRow, w: KcpWorkload, rep: usize, p: Proc) -> Option<f64> {
    let s = row.runs(w).get(rep).copied().flatten()?;
    let cpu = match p {
        Proc::Client => s.client_cpu,
        Proc::Server => s.server_cpu,
        Proc::Both => Some(s.client_cpu? + s.server_cpu?),
    };
    cpu_per_gib(cpu, s.transfer.bytes)
}

fn speed(row: &KcpRow, w: KcpWorkload, rep: usize) -> Option<f64> {
    let s = row.runs(w).get(rep).copied().flatten()?;
    Some(s.transfer.bytes as f64 / s.transfer.secs / 1e6)
}

fn mem(row: &KcpRow, rep: usize, p: Proc, session: bool) -> Option<f64> {
    let m = row.memory.get(rep).copied().flatten()?;
    let one = |start: Option<u64>, peak: Option<u64>| -> Option<f64> {
        if session {
            Some(peak?.saturating_sub(start?) as f64)
        } else {
            Some(peak? as f64)
        }
    };
    let c = || one(m.client_start, m.client_peak);
    let s = || one(m.server_start, m.server_peak);
    match p {
        Proc::Client => c(),
        Proc::Server => s(),
        Proc::Both => Some(c()? + s()?),
    }
}

fn runs_of(row: &KcpRow, w: KcpWorkload, n: usize) -> KcpRuns {
    let get = |rep: usize| row.runs(w).get(rep).copied().flatten();
    let each = |f: &dyn Fn(usize) -> Option<f64>| (0..n).map(f).collect::<Vec<_>>();
    let all_runs = |p: Proc| {
        let (mut cpu, mut bytes) = (0.0, 0u64);
        for s in row.runs(w).iter().take(n).flatten() {
            let c = match p {
                Proc::Server => s.server_cpu,
                _ => s.client_cpu,
            };
            if let Some(c) = c {
                cpu += c;
                bytes += s.transfer.bytes;
            }
        }
        cpu_per_gib(Some(cpu), bytes).map(r3)
    };
    KcpRuns {
        client_cpu_s_per_gib_all_runs: all_runs(Proc::Client),
        server_cpu_s_per_gib_all_runs: all_runs(Proc::Server),
        mb_s: Stat::new(each(&|rep| speed(row, w, rep)), r1),
        client_cpu_s_per_gib: Stat::new(each(&|rep| sample_cpu(row, w, rep, Proc::Client)), r3),
        server_cpu_s_per_gib: Stat::new(each(&|rep| sample_cpu(row, w, rep, Proc::Server)), r3),
        bytes: (0..n)
            .map(|rep| get(rep).map(|s| s.transfer.bytes))
            .collect(),
        seconds: each(&|rep| get(rep).map(|s| r3(s.transfer.secs))),
        complete: (0..n)
            .map(|rep| get(rep).map(|s| s.transfer.complete))
            .collect(),
        client_cpu_seconds: each(&|rep| get(rep).and_then(|s| s.client_cpu).map(r3)),
        server_cpu_seconds: each(&|rep| get(rep).and_then(|s| s.server_cpu).map(r3)),
    }
}

fn row_report(row: &KcpRow, n: usize) -> KcpRowReport {
    let per_run: BTreeMap<&'static str, KcpRuns> = KcpWorkload::ALL
        .iter()
        .map(|w| (w.key(), runs_of(row, *w, n)))
        .collect();
    let m = |p: Proc, session: bool| {
        Stat::new(
            (0..n).map(|rep| mem(row, rep, p, session)).collect(),
            bytes_round,
        )
    };
    let start = |p: Proc| {
        let v = (0..n)
            .map(|rep| {
                let m = row.memory.get(rep).copied().flatten()?;
                match p {
                    Proc::Server => m.server_start,
                    _ => m.client_start,
                }
                .map(|b| b as f64)
            })
            .collect();
        Stat::new(v, bytes_round)
    };
    let mut relay = KcpRelayReport::default();
    for r in row.relay.iter().flatten() {
        relay.up_forwarded += r.up_forwarded;
        relay.up_dropped += r.up_dropped;
        relay.down_forwarded += r.down_forwarded;
        relay.down_dropped += r.down_dropped;
    }
    let all = relay.up_forwarded + relay.up_dropped + relay.down_forwarded + relay.down_dropped;
    relay.measured_loss_percent =
        (all > 0).then(|| r3((relay.up_dropped + relay.down_dropped) as f64 * 100.0 / all as f64));
    relay.rcvbuf_errors = (0..n)
        .map(|rep| {
            row.relay
                .get(rep)
                .copied()
                .flatten()
                .and_then(|r| r.rcvbuf_errors)
        })
        .collect();
    let median = |w: KcpWorkload| per_run.get(w.key()).and_then(|r| r.mb_s.median);
    KcpRowReport {
        id: row.id(),
        pairing: row.pairing.id(),
        name: row.pairing.name(),
        client: row.pairing.client.name(),
        server: row.pairing.server.name(),
        loss_percent: loss_text(row.loss).parse().unwrap_or(row.loss * 100.0),
        skipped: row.skipped.clone(),
        errors: row.errors.clone(),
        one_conn_mb_s: median(KcpWorkload::One),
        many_conns_mb_s: median(KcpWorkload::Many),
        memory: KcpMemoryReport {
            client_rss_start_bytes: start(Proc::Client),
            client_rss_peak_bytes: m(Proc::Client, false),
            client_session_bytes: m(Proc::Client, true),
            server_rss_start_bytes: start(Proc::Server),
            server_rss_peak_bytes: m(Proc::Server, false),
            server_session_bytes: m(Proc::Server, true),
        },
        per_run,
        relay,
    }
}

fn ratio_report(num: &KcpRow, den: &KcpRow, name: &str, p: Proc, n: usize) -> KcpRatioReport {
    let q = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    };
    let per = |f: &dyn Fn(&KcpRow, usize) -> Option<f64>| {
        Stat::new((0..n).map(|rep| q(f(num, rep), f(den, rep))).collect(), r3)
    };
    let mut per_run = BTreeMap::new();
    for w in KcpWorkload::ALL {
        per_run.insert(w.key(), per(&|r, rep| speed(r, w, rep)));
    }
    per_run.insert(
        "one_conn_cpu",
        per(&|r, rep| sample_cpu(r, KcpWorkload::One, rep, p)),
    );
    per_run.insert(
        "many_conns_cpu",
        per(&|r, rep| sample_cpu(r, KcpWorkload::Many, rep, p)),
    );
    per_run.insert("rss_peak", per(&|r, rep| mem(r, rep, p, false)));
    per_run.insert("session_bytes", per(&|r, rep| mem(r, rep, p, true)));
    KcpRatioReport {
        id: format!("{}/{}", num.id(), den.id()),
        name: name.to_string(),
        loss_percent: loss_text(num.loss).parse().unwrap_or(num.loss * 100.0),
        numerator: num.id(),
        denominator: den.id(),
        process: match p {
            Proc::Client => "client",
            Proc::Server => "server",
            Proc::Both => "both",
        },
        per_run,
    }
}

/// The report of a KCP comparison with `repeat` repetitions.
pub fn build(run: &KcpRun, repeat: u32, losses: &[f64]) -> KcpReport {
    let n = repeat as usize;
    let mut ratios = Vec::new();
    for &pct in losses {
        let at = |pairing: &str| {
            run.rows.iter().find(|r| {
                r.pairing.id() == pairing
                    && (r.loss * 100.0 - pct).abs() < 1e-9
                    && r.skipped.is_none()
            })
        };
        for (num, den, name, p) in RATIOS {
            if let (Some(a), Some(b)) = (at(num), at(den)) {
                ratios.push(ratio_report(a, b, name, p, n));
            }
        }
    }
    KcpReport {
        kcptun: KcptunReport {
            available: run.kcptun.is_ok(),
            client: run.kcptun.as_ref().ok().map(|k| k.0.display().to_string()),
            server: run.kcptun.as_ref().ok().map(|k| k.1.display().to_string()),
            skip_reason: run.kcptun.as_ref().err().cloned(),
        },
        flags: SHARED_FLAGS.to_vec(),
        bytes_per_transfer: run.sizes.bytes,
        many_conns: MANY_CONNS,
        limit_seconds: run.sizes.limit.as_secs_f64(),
        losses_percent: losses.to_vec(),
        load_before: run.load_before,
        load_after: run.load_after,
        seconds: r3(run.seconds),
        rows: run.rows.iter().map(|r| row_report(r, n)).collect(),
        ratios,
    }
}

/// MB (10^6 bytes) of a byte stat.
fn in_mb(s: &Stat) -> Stat {
    Stat::new(s.runs.iter().map(|b| b.map(|b| b / 1e6)).collect(), |x| x)
}

/// Appends the KCP tables and their notes.
pub fn render(out: &mut String, k: &KcpReport, repeat: u32) {
    let name_w = k
        .rows
        .iter()
        .map(|r| r.name.chars().count() + 12)
        .chain(k.ratios.iter().map(|r| r.name.chars().count() + 12))
        .max()
        .unwrap_or(30)
        .max(30)
        + 2;
    let load = |l: Option<f64>| l.map_or("?".into(), |l| format!("{l:.2}"));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "KCP tunnels: `rsmux kcptun` and Debian's kcptun on loopback through a lossy UDP relay; {} MiB one way per transfer (at most {} s){}; load {} before, {} after",
        k.bytes_per_transfer >> 20,
        k.limit_seconds,
        if repeat > 1 { format!("; median of {repeat} runs, min-max below") } else { String::new() },
        load(k.load_before),
        load(k.load_after),
    );
    let many = format!("{MANY_CONNS} conns");
    let many_gib = format!("s/GiB {MANY_CONNS}");
    let heads: [(&str, &str); 10] = [
        ("1 conn", "MB/s"),
        (&many, "MB/s"),
        ("client CPU", "s/GiB 1"),
        ("client CPU", &many_gib),
        ("server CPU", "s/GiB 1"),
        ("server CPU", &many_gib),
        ("client RSS", "peak MB"),
        ("client RSS", "+sess MB"),
        ("server RSS", "peak MB"),
        ("server RSS", "+sess MB"),
    ];
    let mut h = [format!("{:name_w$}", ""), format!("{:name_w$}", "")];
    for (a, b) in heads {
        let _ = write!(h[0], "{a:>COL$}");
        let _ = write!(h[1], "{b:>COL$}");
    }
    for line in &h {
        let _ = writeln!(out, "{}", line.trim_end());
    }
    for r in &k.rows {
        let name = format!("{}, {}% loss", r.name, r.loss_percent);
        if let Some(reason) = &r.skipped {
            let _ = writeln!(out, "{name:name_w$}skipped: {reason}");
            continue;
        }
        let empty = KcpRuns::default();
        let get = |key: &str| r.per_run.get(key).unwrap_or(&empty);
        let (one, many) = (get("one_conn"), get("many_conns"));
        let m = &r.memory;
        let mems = [
            in_mb(&m.client_rss_peak_bytes),
            in_mb(&m.client_session_bytes),
            in_mb(&m.server_rss_peak_bytes),
            in_mb(&m.server_session_bytes),
        ];
        // CPU: the figure over all runs together; the range under it is the runs'.
        let overall = |s: &Stat, all: Option<f64>| Stat {
            median: all,
            ..s.clone()
        };
        let cpus = [
            overall(&one.client_cpu_s_per_gib, one.client_cpu_s_per_gib_all_runs),
            overall(
                &many.client_cpu_s_per_gib,
                many.client_cpu_s_per_gib_all_runs,
            ),
            overall(&one.server_cpu_s_per_gib, one.server_cpu_s_per_gib_all_runs),
            overall(
                &many.server_cpu_s_per_gib,
                many.server_cpu_s_per_gib_all_runs,
            ),
        ];
        let cells = [
            (Some(&one.mb_s), 1),
            (Some(&many.mb_s), 1),
            (Some(&cpus[0]), 2),
            (Some(&cpus[1]), 2),
            (Some(&cpus[2]), 2),
            (Some(&cpus[3]), 2),
            (Some(&mems[0]), 1),
            (Some(&mems[1]), 1),
            (Some(&mems[2]), 1),
            (Some(&mems[3]), 1),
        ];
        stat_lines(out, &name, name_w, &cells, None, repeat);
        for e in &r.errors {
            let _ = writeln!(out, "{:name_w$}FAILED {e}", "");
        }
    }
    if !k.ratios.is_empty() {
        let _ = writeln!(out);
        let mut h = format!("{:name_w$}", "ratios, min/median/max");
        for col in [
            "1 conn MB/s",
            "16 conns MB/s",
            "CPU/GiB 1",
            "CPU/GiB 16",
            "RSS peak",
            "RSS +session",
        ] {
            let _ = write!(h, "{col:>RCOL$}");
        }
        let _ = writeln!(out, "{}", h.trim_end());
        for ratio in &k.ratios {
            let mut line = format!(
                "{:name_w$}",
                format!("{}, {}%", ratio.name, ratio.loss_percent)
            );
            for key in [
                "one_conn",
                "many_conns",
                "one_conn_cpu",
                "many_conns_cpu",
                "rss_peak",
                "session_bytes",
            ] {
                let v = ratio.per_run.get(key).map_or("-".into(), triple_cell);
                let _ = write!(line, "{:>RCOL$}", format!(" {v}"));
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "KCP: client → server: who runs `kcptun client` (TCP in, KCP out) and `kcptun server` (KCP in, TCP to a sink");
    let _ = writeln!(
        out,
        "in this process); both ends get: {}.",
        k.flags.join(" ")
    );
    let _ = writeln!(out, "One way, client side to the sink, incompressible bytes; MB/s from the first connect to the last byte at");
    let _ = writeln!(out, "the sink. CPU: user + system seconds of that tunnel process (/proc, 10 ms ticks) per GiB that arrived.");
    let _ = writeln!(out, "CPU figures are over all runs together (their runs' range below). RSS: the process's peak (VmHWM); +sess: peak minus its RSS once started, i.e. what its one session took.");
    let _ = writeln!(out, "Ratios: rsmux over kcptun in the same run; speed above 1, CPU and memory below 1: rsmux is better.");
    if let Some(reason) = &k.kcptun.skip_reason {
        let _ = writeln!(out, "kcptun rows skipped: {reason}");
    }
}
