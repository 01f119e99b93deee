//! `rsmux bench`: the quick JSON run has every field (the Go client's CPU time, the Go yamux
//! row when the Go peer has yamux), repeats every workload and stays within its time budget;
//! a Go peer built without yamux makes the yamux row skipped, nothing fails; `--repeat` is
//! honoured; `--connect` and `--plot` work; `--rtt` is checked and runs through the delay
//! proxy; the scale workload reports both servers and their ratio run by run; the proxy
//! delays and keeps every byte.

mod common;

// The delay proxy, compiled into these tests from the binary's source (it needs only tokio).
#[path = "../src/bench/delay.rs"]
#[allow(dead_code)]
mod delay;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{run, within, Proc};
use serde::Deserialize;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const ROW_FIELDS: [&str; 42] = [
    "id",
    "name",
    "rtt_ms",
    "seconds_per_workload",
    "transport",
    "version",
    "auto_tune",
    "client",
    "server",
    "skipped",
    "errors",
    "one_stream_mb_s",
    "one_stream_ratio",
    "one_stream_bytes",
    "one_stream_seconds",
    "many_streams",
    "many_streams_mb_s",
    "many_streams_ratio",
    "many_streams_bytes",
    "many_streams_seconds",
    "echo_one_stream_mb_s",
    "echo_one_stream_ratio",
    "echo_one_stream_bytes",
    "echo_one_stream_seconds",
    "echo_many_streams",
    "echo_many_streams_mb_s",
    "echo_many_streams_ratio",
    "echo_many_streams_bytes",
    "echo_many_streams_seconds",
    "open_close_us",
    "open_close_ops",
    "idle_streams",
    "idle_bytes_per_stream",
    "one_stream_server_cpu_s_per_gib",
    "many_streams_server_cpu_s_per_gib",
    "echo_one_stream_server_cpu_s_per_gib",
    "echo_many_streams_server_cpu_s_per_gib",
    "one_stream_client_cpu_s_per_gib",
    "many_streams_client_cpu_s_per_gib",
    "echo_one_stream_client_cpu_s_per_gib",
    "echo_many_streams_client_cpu_s_per_gib",
    "per_run",
];

/// Workload keys of `per_run` in local mode.
const WORKLOADS: [&str; 5] = [
    "one_stream",
    "many_streams",
    "echo_one_stream",
    "echo_many_streams",
    "open_close",
];

/// The summary of repeated runs, as the report serializes it (nothing more, nothing less).
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct Stat {
    runs: Vec<Option<f64>>,
    min: Option<f64>,
    median: Option<f64>,
    max: Option<f64>,
}

impl Stat {
    /// Parses a stat and checks it is consistent: `runs` long, min <= median <= max, each
    /// within the runs' figures.
    fn parse(v: &Value, runs: usize, what: &str) -> Stat {
        let s: Stat =
            serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}: {v}"));
        assert_eq!(s.runs.len(), runs, "{what}: {v}");
        let figures: Vec<f64> = s.runs.iter().flatten().copied().collect();
        match (s.min, s.median, s.max) {
            (Some(a), Some(m), Some(b)) => {
                assert!(a <= m && m <= b, "{what}: {v}");
                assert!(figures.iter().all(|x| a <= *x && *x <= b), "{what}: {v}");
                assert!(figures.contains(&a) && figures.contains(&b), "{what}: {v}");
            }
            (None, None, None) => assert!(figures.is_empty(), "{what}: {v}"),
            _ => panic!("{what}: partly null summary: {v}"),
        }
        s
    }
}

/// One workload of a row's `per_run`.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct WorkloadRuns {
    value: Value,
    ratio_to_tcp: Value,
    server_cpu_s_per_gib: Value,
    server_cpu_seconds: Vec<Option<f64>>,
    client_cpu_s_per_gib: Value,
    client_cpu_seconds: Vec<Option<f64>>,
    amount: Vec<Option<u64>>,
    seconds: Vec<Option<f64>>,
}

/// Checks every `per_run` entry of a row and returns the table figures' stats by workload.
fn row_runs(row: &Value, runs: usize) -> Vec<(String, Stat)> {
    let per_run = row["per_run"].as_object().expect("per_run is an object");
    per_run
        .iter()
        .map(|(k, v)| {
            let w: WorkloadRuns = serde_json::from_value(v.clone())
                .unwrap_or_else(|e| panic!("{}: per_run.{k}: {e}", row["id"]));
            let what = format!("{} {k}", row["id"]);
            Stat::parse(&w.ratio_to_tcp, runs, &format!("{what} ratio"));
            Stat::parse(&w.server_cpu_s_per_gib, runs, &format!("{what} cpu"));
            Stat::parse(&w.client_cpu_s_per_gib, runs, &format!("{what} client cpu"));
            assert_eq!(w.amount.len(), runs, "{what}");
            assert_eq!(w.server_cpu_seconds.len(), runs, "{what}");
            assert_eq!(w.client_cpu_seconds.len(), runs, "{what}");
            assert_eq!(w.seconds.len(), runs, "{what}");
            (k.clone(), Stat::parse(&w.value, runs, &what))
        })
        .collect()
}

const RATIO_FIELDS: [&str; 11] = [
    "id",
    "name",
    "rtt_ms",
    "numerator",
    "denominator",
    "one_stream",
    "many_streams",
    "echo_one_stream",
    "echo_many_streams",
    "open_close",
    "per_run",
];

/// Runs `rsmux args` (at most `limit`), checks it exits 0 and returns the JSON object it
/// printed.
fn bench_json(args: &[&str], limit: Duration) -> Value {
    let out = run(common::bin(), args, limit);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn num(row: &Value, key: &str) -> f64 {
    row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{}: {key} is not a number: {}", row["id"], row[key]))
}

fn ids(rows: &[Value]) -> Vec<&str> {
    rows.iter().map(|r| r["id"].as_str().unwrap()).collect()
}

/// The JSON fields of every row's throughput figures: both one-way workloads and both echoes.
const RATE_KEYS: [&str; 4] = [
    "one_stream_mb_s",
    "many_streams_mb_s",
    "echo_one_stream_mb_s",
    "echo_many_streams_mb_s",
];

/// Whether the Go peer is built with yamux: when Debian's hashicorp/yamux sources are where
/// interop/build.sh looks for them.
fn yamux_installed() -> bool {
    let src = std::env::var("SMUX_GOPATH_SRC").unwrap_or_else(|_| "/usr/share/gocode/src".into());
    std::path::Path::new(&src)
        .join("github.com/hashicorp/yamux/session.go")
        .is_file()
}

#[test]
fn quick_json_has_every_field() {
    // Build the Go peer first, so the Go rows run (the bench would build it too).
    common::go_peer();
    let started = Instant::now();
    let v = bench_json(&["bench", "--quick", "--json"], Duration::from_secs(90));
    let elapsed = started.elapsed();
    eprintln!("bench --quick --json took {elapsed:?}");

    for key in [
        "tool",
        "version",
        "mode",
        "connect",
        "quick",
        "repeat",
        "seconds_per_workload",
        "rtts_ms",
        "proxy_line_cap_bytes",
        "config",
        "go",
        "rows",
        "ratios",
        "plot",
        "scale",
        "total_seconds",
    ] {
        assert!(v.get(key).is_some(), "missing top-level field {key}");
    }
    assert_eq!(v["mode"], "local");
    assert_eq!(v["quick"], true);
    assert_eq!(v["repeat"], 3);
    assert!(v["scale"].is_null());
    assert_eq!(v["rtts_ms"], serde_json::json!([0.0]));
    for key in [
        "smuxver",
        "smuxbuf",
        "streambuf",
        "framesize",
        "keepalive_seconds",
        "keepalive_timeout_seconds",
        "fixed_streambuf",
    ] {
        assert!(v["config"].get(key).is_some(), "missing config.{key}");
    }
    for key in [
        "available",
        "peer",
        "skip_reason",
        "yamux_available",
        "yamux_lib",
        "yamux_skip_reason",
    ] {
        assert!(v["go"].get(key).is_some(), "missing go.{key}");
    }
    let yamux = yamux_installed();
    assert_eq!(v["go"]["yamux_available"], yamux, "{}", v["go"]);
    assert_eq!(v["go"]["yamux_lib"].is_string(), yamux, "{}", v["go"]);
    // The budget is 10 s; loose here: the tests share two cores with each other.
    assert!(num(&v, "total_seconds") < 30.0, "{}", v["total_seconds"]);

    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(
        ids(rows),
        ["tcp", "rsmux-v1", "rsmux-v2", "go-v2", "go-yamux"]
    );
    let yamux_row = &rows[4];
    if !yamux {
        let reason = yamux_row["skipped"].as_str().expect("yamux row skipped");
        assert!(reason.contains("without hashicorp/yamux"), "{yamux_row}");
    }
    for row in rows.iter().filter(|r| r["skipped"].is_null()) {
        // Three runs of every workload, each with a figure; the flat figure is the median.
        // The yamux row runs the one-way workloads only.
        let is_yamux = row["id"] == "go-yamux";
        let stats = row_runs(row, 3);
        assert_eq!(stats.len(), WORKLOADS.len(), "{row}");
        for (k, stat) in &stats {
            assert!(WORKLOADS.contains(&k.as_str()), "{k}");
            let ran = !is_yamux || k == "one_stream" || k == "many_streams";
            let expected = if ran { 3 } else { 0 };
            assert_eq!(
                stat.runs.iter().flatten().count(),
                expected,
                "{} {k}: {stat:?}",
                row["id"]
            );
            let flat = if k == "open_close" {
                "open_close_us".to_string()
            } else {
                format!("{k}_mb_s")
            };
            assert_eq!(row[&flat].as_f64(), stat.median, "{} {flat}", row["id"]);
        }
        let keys = if is_yamux {
            &RATE_KEYS[..2]
        } else {
            &RATE_KEYS[..]
        };
        // Every server is a child process: its CPU time was measured. A Go client reports
        // its own (it moved at least some MB, so it spent some CPU); this process is no
        // child, so the rsmux rows have none.
        for key in keys {
            let cpu = key.replace("_mb_s", "_server_cpu_s_per_gib");
            assert!(num(row, &cpu) >= 0.0, "{cpu}: {row}");
            let client_cpu = key.replace("_mb_s", "_client_cpu_s_per_gib");
            if row["client"] == "go" {
                assert!(num(row, &client_cpu) > 0.0, "{client_cpu}: {row}");
                let per_run = &row["per_run"][key.trim_end_matches("_mb_s")];
                let secs = per_run["client_cpu_seconds"].as_array().unwrap();
                assert!(
                    secs.iter().all(|c| c.as_f64().is_some_and(|c| c > 0.0)),
                    "{row}"
                );
            } else {
                assert!(row[&client_cpu].is_null(), "{client_cpu}: {row}");
            }
        }
        for key in ROW_FIELDS {
            assert!(row.get(key).is_some(), "row {}: missing {key}", row["id"]);
        }
        assert_eq!(row["errors"].as_array().map(Vec::len), Some(0), "{row}");
        assert!(row["skipped"].is_null(), "{row}");
        assert_eq!(num(row, "rtt_ms"), 0.0);
        assert_eq!(num(row, "echo_many_streams"), 16.0);
        // Every smux row has one way and the echo workloads, v1 beside v2.
        for key in keys {
            assert!(num(row, key) > 1.0, "{key}: {row}");
        }
    }
    if yamux {
        assert_eq!(yamux_row["transport"], "yamux");
        assert!(yamux_row["version"].is_null(), "{yamux_row}");
        assert_eq!(yamux_row["client"], "go");
        assert_eq!(yamux_row["server"], "go");
        assert!(yamux_row["echo_one_stream_mb_s"].is_null(), "{yamux_row}");
        assert!(yamux_row["open_close_us"].is_null(), "{yamux_row}");
        // Its ratio to raw TCP: the yamux row is not taken for raw TCP (the base of 1.0).
        assert_ne!(
            yamux_row["one_stream_ratio"].as_f64(),
            Some(1.0),
            "{yamux_row}"
        );
    }
    let by_id = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(by_id("rsmux-v2")["auto_tune"], true);
    assert!(by_id("rsmux-v1")["auto_tune"].is_null());
    assert!(by_id("go-v2")["auto_tune"].is_null());
    assert_eq!(num(&rows[0], "one_stream_ratio"), 1.0);
    assert_eq!(num(&rows[0], "echo_many_streams_ratio"), 1.0);
    assert!(rows[0]["idle_bytes_per_stream"].is_null());
    assert_eq!(by_id("go-v2")["transport"], "smux");
    for id in ["tcp", "rsmux-v1", "rsmux-v2", "go-v2"] {
        let row = by_id(id);
        assert!(num(row, "open_close_us") > 0.0, "{row}");
        assert!(num(row, "open_close_ops") >= 3.0, "{row}");
    }
    for id in ["rsmux-v1", "rsmux-v2"] {
        let row = by_id(id);
        if cfg!(feature = "bench-alloc") {
            let b = num(row, "idle_bytes_per_stream");
            assert!(b > 0.0 && b < 100_000.0, "{row}");
            assert_eq!(num(row, "idle_streams"), 10_000.0);
        } else {
            // The default build has no counting allocator: the figure is unavailable.
            assert!(row["idle_bytes_per_stream"].is_null(), "{row}");
            assert!(row["idle_streams"].is_null(), "{row}");
        }
    }

    let ratios = v["ratios"].as_array().expect("ratios");
    let ratio_ids: Vec<&str> = ratios.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for id in [
        "rsmux-v2/rsmux-v1",
        "rsmux-v2/go-v2",
        "rsmux-v1/tcp",
        "rsmux-v2/tcp",
    ] {
        assert!(ratio_ids.contains(&id), "no ratio {id}: {ratio_ids:?}");
    }
    for id in ["rsmux-v1/go-yamux", "rsmux-v2/go-yamux"] {
        assert_eq!(ratio_ids.contains(&id), yamux, "{id}: {ratio_ids:?}");
    }
    for r in ratios {
        for key in RATIO_FIELDS {
            assert!(r.get(key).is_some(), "ratio {}: missing {key}", r["id"]);
        }
    }
    // Each run's ratio is the quotient of the two rows' figures of that run (both rounded,
    // hence the slack); the flat figure is their median.
    let r = ratios
        .iter()
        .find(|r| r["id"] == "rsmux-v2/rsmux-v1")
        .unwrap();
    let runs = |id: &str| {
        row_runs(by_id(id), 3)
            .into_iter()
            .find(|(k, _)| k == "one_stream")
            .unwrap()
            .1
            .runs
    };
    let (v2, v1) = (runs("rsmux-v2"), runs("rsmux-v1"));
    let ratio = Stat::parse(&r["per_run"]["one_stream"], 3, "ratio");
    for i in 0..3 {
        let expect = v2[i].unwrap() / v1[i].unwrap();
        let got = ratio.runs[i].unwrap();
        assert!(
            (got - expect).abs() < 0.01 * expect.max(1.0),
            "run {i}: {r}"
        );
    }
    assert_eq!(r["one_stream"].as_f64(), ratio.median, "{r}");
    if yamux {
        // The same within each run for rsmux v1 over Go yamux; no echo figure to divide.
        let r = ratios
            .iter()
            .find(|r| r["id"] == "rsmux-v1/go-yamux")
            .unwrap();
        let y = runs("go-yamux");
        let ratio = Stat::parse(&r["per_run"]["one_stream"], 3, "yamux ratio");
        for i in 0..3 {
            let expect = v1[i].unwrap() / y[i].unwrap();
            let got = ratio.runs[i].unwrap();
            assert!(
                (got - expect).abs() < 0.01 * expect.max(1.0),
                "run {i}: {r}"
            );
        }
        assert!(r["echo_one_stream"].is_null(), "{r}");
    }
}

#[test]
fn a_go_peer_without_yamux_skips_the_yamux_row() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../interop/build.sh");
    let out = run("bash", &[script, "--no-yamux"], Duration::from_secs(300));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peer = stdout
        .lines()
        .last()
        .expect("build.sh prints the path")
        .trim();
    assert!(peer.ends_with("smuxpeer-noyamux"), "{stdout}");
    let v = bench_json(
        &[
            "bench",
            "--quick",
            "--json",
            "--repeat",
            "1",
            "--seconds",
            "0.03",
            "--go-peer",
            peer,
        ],
        Duration::from_secs(90),
    );
    let go = &v["go"];
    assert_eq!(go["available"], true, "{go}");
    assert_eq!(go["yamux_available"], false, "{go}");
    assert!(go["yamux_lib"].is_null(), "{go}");
    let reason = go["yamux_skip_reason"].as_str().expect("a reason");
    assert!(reason.contains("without hashicorp/yamux"), "{reason}");
    let rows = v["rows"].as_array().expect("rows");
    let row = rows
        .iter()
        .find(|r| r["id"] == "go-yamux")
        .expect("yamux row");
    assert_eq!(row["skipped"].as_str(), Some(reason), "{row}");
    assert_eq!(row["errors"].as_array().map(Vec::len), Some(0), "{row}");
    assert!(row["one_stream_mb_s"].is_null(), "{row}");
    // The smux rows of the same peer ran.
    let go_v2 = rows.iter().find(|r| r["id"] == "go-v2").unwrap();
    assert!(go_v2["skipped"].is_null(), "{go_v2}");
    assert!(num(go_v2, "one_stream_mb_s") > 0.0, "{go_v2}");
    let ratios = v["ratios"].as_array().expect("ratios");
    assert!(
        !ratios.iter().any(|r| r["denominator"] == "go-yamux"),
        "{ratios:?}"
    );
}

#[test]
fn repeat_flag_sets_the_number_of_runs() {
    let v = bench_json(
        &[
            "bench",
            "--no-go",
            "--json",
            "--repeat",
            "2",
            "--seconds",
            "0.05",
        ],
        Duration::from_secs(90),
    );
    assert_eq!(v["repeat"], 2);
    let rows = v["rows"].as_array().expect("rows");
    // Without --quick: the fixed-window row and the skipped Go rows are there too.
    assert!(ids(rows).contains(&"rsmux-v2-fixed"), "{:?}", ids(rows));
    let fixed = rows.iter().find(|r| r["id"] == "rsmux-v2-fixed").unwrap();
    assert_eq!(fixed["auto_tune"], false);
    // Open/close moves one byte: the fixed-window row leaves it out.
    assert!(fixed["open_close_us"].is_null());
    for row in rows {
        if row["skipped"].is_string() {
            assert!(row["one_stream_mb_s"].is_null(), "{row}");
            continue;
        }
        for (k, stat) in row_runs(row, 2) {
            let ran = !(k == "open_close" && row["id"] == "rsmux-v2-fixed");
            assert_eq!(
                stat.runs.iter().flatten().count(),
                if ran { 2 } else { 0 },
                "{k}: {row}"
            );
        }
    }
    for r in v["ratios"].as_array().expect("ratios") {
        for k in WORKLOADS {
            Stat::parse(&r["per_run"][k], 2, &format!("{} {k}", r["id"]));
        }
    }
}

#[test]
fn scale_workload_reports_both_servers() {
    scale_workload("rsmux", 2);
}

#[test]
fn scale_workload_with_the_go_client() {
    scale_workload("go", 1);
}

/// Runs the scale workload with a client (`--scale-client`) and `repeat` runs, and checks
/// the report of both servers.
fn scale_workload(client: &str, repeat: usize) {
    common::go_peer();
    let repeat_arg = repeat.to_string();
    let v = bench_json(
        &[
            "bench",
            "--json",
            "--no-table",
            "--scale-sessions",
            "20",
            "--scale-streams",
            "3",
            "--scale-seconds",
            "0.3",
            "--repeat",
            &repeat_arg,
            "--scale-client",
            client,
        ],
        Duration::from_secs(90),
    );
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(0));
    let s = &v["scale"];
    assert_eq!(s["sessions"], 20);
    assert_eq!(s["streams_per_session"], 3);
    assert_eq!(s["message_bytes"], 1024);
    assert_eq!(s["client"], client);
    let servers = s["servers"].as_array().expect("servers");
    let server_ids: Vec<&str> = servers.iter().map(|x| x["id"].as_str().unwrap()).collect();
    assert_eq!(server_ids, ["rsmux-echo", "go-echo"]);
    // rsmux over Go within each run: the quotient of the two servers' figures of that run.
    let ratio = Stat::parse(&s["rounds_ratio_rsmux_to_go"], repeat, "scale ratio");
    let rounds = |i: usize| Stat::parse(&servers[i]["rounds_per_s"], repeat, "rounds").runs;
    let (rs, go) = (rounds(0), rounds(1));
    for i in 0..repeat {
        let expect = rs[i].unwrap() / go[i].unwrap();
        let got = ratio.runs[i].unwrap();
        assert!(
            (got - expect).abs() < 0.01 * expect.max(1.0),
            "run {i}: {s}"
        );
    }
    for srv in servers {
        assert!(srv["skipped"].is_null(), "{srv}");
        assert_eq!(srv["errors"].as_array().map(Vec::len), Some(0), "{srv}");
        let stat = |k: &str| Stat::parse(&srv[k], repeat, &format!("{} {k}", srv["id"]));
        let rounds = stat("rounds_per_s");
        assert!(rounds.min.unwrap() > 10.0, "{srv}");
        let (idle, busy, peak) = (
            stat("rss_idle_bytes"),
            stat("rss_busy_bytes"),
            stat("rss_peak_bytes"),
        );
        stat("setup_seconds");
        let server_cpu = stat("server_cpu_seconds");
        // The Go scale-client reports its CPU time during the rounds; with rsmux sessions
        // (this process) there is no client figure, nor CPU per round.
        let (client_cpu, per_round) = (&srv["client_cpu_seconds"], &srv["cpu_us_per_round"]);
        if client == "go" {
            let client_cpu = stat("client_cpu_seconds");
            let per_round = stat("cpu_us_per_round");
            for i in 0..repeat {
                let (c, r) = (client_cpu.runs[i].unwrap(), per_round.runs[i].unwrap());
                assert!(c > 0.0 && r > 0.0, "{srv}");
                // Per round: both processes' CPU over the rounds done (rounds/s x seconds).
                let done = rounds.runs[i].unwrap() * s["seconds"].as_f64().unwrap();
                let expect = (server_cpu.runs[i].unwrap() + c) * 1e6 / done;
                assert!((r - expect).abs() <= 0.15 * expect + 0.1, "run {i}: {srv}");
            }
        } else {
            assert!(
                client_cpu["runs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(Value::is_null),
                "{srv}"
            );
            assert!(
                per_round["runs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(Value::is_null),
                "{srv}"
            );
        }
        assert!(idle.min.unwrap() > 100_000.0, "{srv}");
        // The peak (VmHWM) is at least what was resident at any time of the same run.
        for i in 0..repeat {
            let p = peak.runs[i].unwrap();
            assert!(
                p >= idle.runs[i].unwrap() && p >= busy.runs[i].unwrap(),
                "{srv}"
            );
        }
    }
}

#[test]
fn connect_mode_and_plot() {
    let echo = Proc::rsmux(&["echo", "--listen", "127.0.0.1:0", "--smuxver", "2"]);
    let addr = echo.addr.to_string();
    let dir = std::env::temp_dir().join(format!("rsmux-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("fair.svg");
    let out = run(
        common::bin(),
        &[
            "bench",
            "--connect",
            &addr,
            "--smuxver",
            "2",
            "--quick",
            "--seconds",
            "0.2",
            "--plot",
            svg.to_str().unwrap(),
            "--plot-streams",
            "4",
            "--repeat",
            "1",
        ],
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "raw TCP echo",
        "rsmux echo v2",
        &format!("{addr} v2"),
        "MB/s",
        "rsmux echo / raw TCP echo",
        "1 run of each",
        "Jain's fairness index per sample",
    ] {
        assert!(stdout.contains(needle), "table lacks {needle:?}:\n{stdout}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    let picture = std::fs::read_to_string(&svg).expect("svg written");
    assert!(picture.starts_with("<svg"), "{picture}");
    assert!(picture.trim_end().ends_with("</svg>"), "{picture}");
    // One line per stream (stroke width 2; the axes are 1 wide).
    let lines = picture
        .split("<polyline")
        .skip(1)
        .filter(|p| p.split('>').next().unwrap().contains("stroke-width=\"2\""))
        .count();
    assert_eq!(lines, 4, "{picture}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rtt_flag_rejects_bad_values() {
    for (value, says) in [
        ("10", "give a unit"),
        ("10x", "unknown unit"),
        ("-5ms", "negative"),
        ("1ms", "from 2ms to 1s"),
        ("2s", "from 2ms to 1s"),
        ("10ms,,50ms", "empty"),
        ("abc", "round-trip time"),
        ("10ms,0.01s", "given twice"),
        ("0,2ms,3ms,4ms,5ms,6ms,7ms,8ms,9ms", "at most 8"),
    ] {
        let out = run(
            common::bin(),
            &["bench", "--rtt", value],
            Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--rtt {value}: {stderr}");
        assert!(stderr.contains("--rtt"), "--rtt {value}: {stderr}");
        assert!(stderr.contains(says), "--rtt {value}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "--rtt {value}: {stderr}");
        assert!(out.stdout.is_empty(), "--rtt {value}");
    }
}

#[test]
fn repeat_and_scale_flags_are_checked() {
    for (args, says) in [
        (&["--repeat", "0"][..], "--repeat"),
        (&["--repeat", "x"][..], "--repeat"),
        (&["--no-table"][..], "--scale-sessions"),
        (
            &["--scale-sessions", "2", "--scale-seconds", "0"][..],
            "--scale-seconds",
        ),
        (
            &["--scale-sessions", "2", "--connect", "127.0.0.1:9"][..],
            "--connect",
        ),
        (&["--scale-streams", "0"][..], "--scale-streams"),
    ] {
        let mut a = vec!["bench"];
        a.extend_from_slice(args);
        let out = run(common::bin(), &a, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn rtt_runs_every_row_through_the_proxy() {
    // A 1 MiB window keeps the fixed-window row's 16 MiB requests short at this RTT; the
    // larger --smuxbuf holds 16 such windows (fixed windows beyond the receive budget can
    // stall a v2 echo, in Go smux as in rsmux).
    let v = bench_json(
        &[
            "bench",
            "--repeat",
            "1",
            "--no-go",
            "--json",
            "--rtt",
            "0,20ms",
            "--seconds",
            "0.1",
            "--streambuf",
            "1MiB",
            "--smuxbuf",
            "32MiB",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(v["rtts_ms"], serde_json::json!([0.0, 20.0]));
    let rows = v["rows"].as_array().expect("rows");
    let at = |ms: f64| -> Vec<&Value> { rows.iter().filter(|r| num(r, "rtt_ms") == ms).collect() };
    let direct = at(0.0);
    let delayed = at(20.0);
    assert_eq!(direct.len() + delayed.len(), rows.len());
    let want = [
        "tcp",
        "rsmux-v1",
        "rsmux-v2",
        "rsmux-v2-fixed",
        "go-v1",
        "go-v2",
        "go-yamux",
        "rsmux-to-go-v1",
        "rsmux-to-go-v2",
        "go-to-rsmux-v1",
        "go-to-rsmux-v2",
    ];
    for set in [&direct, &delayed] {
        let got: Vec<&str> = set.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(got, want);
    }
    for row in &delayed {
        if row["id"].as_str().unwrap().contains("go") {
            assert!(row["skipped"].is_string(), "{row}");
            continue;
        }
        assert_eq!(row["errors"].as_array().map(Vec::len), Some(0), "{row}");
        for key in RATE_KEYS {
            assert!(num(row, key) > 0.0, "{key}: {row}");
        }
        // One round trip per operation at least (two for raw TCP: the handshake).
        if !row["open_close_us"].is_null() {
            let us = num(row, "open_close_us");
            let least = if row["id"] == "tcp" {
                40_000.0
            } else {
                20_000.0
            };
            assert!(us >= least, "{row}");
        }
    }
    // The memory figure is measured once, on the first RTT's rows.
    fn v2<'a>(set: &[&'a Value]) -> &'a Value {
        set.iter().find(|r| r["id"] == "rsmux-v2").unwrap()
    }
    if cfg!(feature = "bench-alloc") {
        assert!(num(v2(&direct), "idle_bytes_per_stream") > 0.0);
    } else {
        assert!(v2(&direct)["idle_bytes_per_stream"].is_null());
    }
    assert!(v2(&delayed)["idle_bytes_per_stream"].is_null());
    let ratios = v["ratios"].as_array().expect("ratios");
    assert!(ratios
        .iter()
        .any(|r| r["id"] == "rsmux-v2/rsmux-v2-fixed" && num(r, "rtt_ms") == 20.0));
}

/// Echoes every connection until EOF, then half-closes.
async fn echo_server() -> SocketAddr {
    common::tcp_echo_target().await
}

/// Writes `data` in uneven pieces while reading the echo; returns what came back.
async fn echo_through(addr: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut rd, mut wr) = tcp.into_split();
    let writer = tokio::spawn(async move {
        let mut at = 0;
        let mut step = 1usize;
        while at < data.len() {
            // 1 byte up to ~300 KiB, varying.
            step = (step * 7 + 13) % 300_000 + 1;
            let end = (at + step).min(data.len());
            wr.write_all(&data[at..end]).await.unwrap();
            at = end;
        }
        wr.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    rd.read_to_end(&mut back).await.unwrap();
    writer.await.unwrap();
    back
}

#[test]
fn proxy_round_trip_takes_at_least_the_rtt() {
    common::runtime().block_on(async {
        let rtt = Duration::from_millis(30);
        let proxy = delay::DelayProxy::start(echo_server().await, rtt)
            .await
            .unwrap();
        within(Duration::from_secs(10), "round trips", async {
            let started = Instant::now();
            let mut tcp = TcpStream::connect(proxy.addr()).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let mut b = [0u8; 1];
            // The first round trip also pays for the handshake.
            tcp.write_all(b"a").await.unwrap();
            tcp.read_exact(&mut b).await.unwrap();
            assert_eq!(&b, b"a");
            let first = started.elapsed();
            assert!(first >= rtt * 2, "first round trip took {first:?}");
            for i in 0..3u8 {
                let t = Instant::now();
                tcp.write_all(&[i]).await.unwrap();
                tcp.read_exact(&mut b).await.unwrap();
                assert_eq!(b[0], i);
                let took = t.elapsed();
                assert!(took >= rtt, "round trip {i} took {took:?}");
            }
        })
        .await;
    });
}

#[test]
fn proxy_keeps_every_byte_in_order_both_ways() {
    common::runtime().block_on(async {
        let proxy = delay::DelayProxy::start(echo_server().await, Duration::from_millis(4))
            .await
            .unwrap();
        let addr = proxy.addr();
        within(Duration::from_secs(30), "duplex echo", async {
            let mut set = tokio::task::JoinSet::new();
            for seed in 0..4u64 {
                set.spawn(async move {
                    // More than the proxy holds per direction: backpressure is exercised too.
                    let data = common::pattern(seed + 1, 12 << 20);
                    let back = echo_through(addr, data.clone()).await;
                    assert_eq!(back.len(), data.len(), "stream {seed}: length");
                    assert!(back == data, "stream {seed}: bytes differ");
                });
            }
            while let Some(r) = set.join_next().await {
                r.unwrap();
            }
        })
        .await;
    });
}

/// The largest value of a Linux TCP buffer sysctl (its third field), or 32 MiB.
fn sysctl_max(name: &str) -> usize {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(32 << 20)
}

#[test]
fn proxy_memory_is_bounded_by_backpressure() {
    common::runtime().block_on(async {
        // A server that accepts and reads nothing until told to.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = listener.local_addr().unwrap();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            go_rx.await.unwrap();
            let mut got = Vec::new();
            tcp.read_to_end(&mut got).await.unwrap();
            got
        });
        let proxy = delay::DelayProxy::start(upstream, Duration::from_millis(2))
            .await
            .unwrap();
        let mut tcp = TcpStream::connect(proxy.addr()).await.unwrap();
        // Write until a write makes no progress for a while: the proxy must stop reading
        // once it holds its cap (plus what the kernel buffers on the way).
        let chunk = common::pattern(7, 1 << 20);
        let mut written = 0usize;
        // What the kernel may buffer: a send and a receive buffer on each of the two hops.
        let kernel = 2 * (sysctl_max("net/ipv4/tcp_rmem") + sysctl_max("net/ipv4/tcp_wmem"));
        let bound = delay::LINE_CAP + kernel;
        let limit = bound + (256 << 20);
        while written < limit {
            match tokio::time::timeout(Duration::from_millis(500), tcp.write_all(&chunk)).await {
                Ok(r) => {
                    r.unwrap();
                    written += chunk.len();
                }
                Err(_) => break,
            }
        }
        eprintln!("the proxy and the kernel took {written} bytes before pushing back");
        assert!(
            written <= bound,
            "the proxy took {written} bytes (bound {bound}) from a sender whose receiver reads nothing"
        );
        // Nothing was lost on the way: let the server read everything.
        go_tx.send(()).unwrap();
        tcp.shutdown().await.unwrap();
        let got = within(Duration::from_secs(20), "server read", server)
            .await
            .unwrap();
        // Whole chunks were written, plus part of the one that timed out.
        assert!(got.len() >= written, "{} < {written}", got.len());
        assert!(got.len() <= written + chunk.len());
        for (i, piece) in got.chunks(chunk.len()).enumerate() {
            assert!(piece == &chunk[..piece.len()], "chunk {i} differs");
        }
    });
}
