//! `rsmux bench --kcp`: the report has every pairing at every loss rate with figures (with
//! Debian's kcptun when installed); without kcptun only the rsmux rows run and the others say
//! how to install it; bad `--kcp` usage exits 2. Nothing here is about speed.

mod common;

use std::time::Duration;

use common::run;
use serde_json::Value;

const PAIRINGS: [&str; 4] = [
    "kcptun-kcptun",
    "rsmux-kcptun",
    "kcptun-rsmux",
    "rsmux-rsmux",
];

fn kcptun_installed() -> bool {
    ["/usr/bin/kcptun-client", "/usr/bin/kcptun-server"]
        .iter()
        .all(|p| std::path::Path::new(p).is_file())
}

/// Runs `rsmux bench --kcp --no-table --quick --repeat 1 --json` with `extra` (through `env`
/// with `env_args` first), returns the exit code and the `kcp` object.
fn kcp_report(env_args: &[&str], extra: &[&str]) -> (Option<i32>, Value) {
    let mut args: Vec<&str> = env_args.to_vec();
    args.push(common::bin());
    args.extend([
        "bench",
        "--kcp",
        "--no-table",
        "--quick",
        "--repeat",
        "1",
        "--json",
    ]);
    args.extend(extra);
    let out = run("env", &args, Duration::from_secs(180));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}); stderr: {stderr}"));
    assert!(v["rows"].as_array().is_some_and(Vec::is_empty), "{v}");
    (out.status.code(), v["kcp"].clone())
}

/// Checks a row that ran: both workloads have one run with bytes, a positive MB/s and CPU
/// figures of both processes, and memory figures.
fn assert_measured(row: &Value) {
    let id = &row["id"];
    for w in ["one_conn", "many_conns"] {
        let runs = &row["per_run"][w];
        let mb = runs["mb_s"]["median"].as_f64();
        assert!(mb.is_some_and(|x| x > 0.0), "{id} {w}: {runs}");
        assert_eq!(row[format!("{w}_mb_s")].as_f64(), mb, "{id}");
        assert!(runs["bytes"][0].as_u64().is_some_and(|b| b > 0), "{id} {w}");
        for p in ["client", "server"] {
            let cpu = runs[format!("{p}_cpu_s_per_gib")]["runs"][0].as_f64();
            assert!(cpu.is_some_and(|c| c >= 0.0), "{id} {w} {p}: {runs}");
        }
    }
    for key in ["client_rss_peak_bytes", "server_rss_peak_bytes"] {
        let b = row["memory"][key]["median"].as_f64();
        assert!(b.is_some_and(|b| b > 1e6), "{id} {key}: {}", row["memory"]);
    }
}

#[test]
fn kcp_quick_report_has_every_pairing_and_loss() {
    let with_kcptun = kcptun_installed();
    let (code, k) = kcp_report(&[], &[]);
    assert_eq!(k["losses_percent"], serde_json::json!([0.0, 3.0]), "{k}");
    assert_eq!(k["many_conns"], 16);
    assert_eq!(k["kcptun"]["available"], with_kcptun, "{k}");
    let rows = k["rows"].as_array().expect("kcp.rows");
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let want: Vec<String> = ["0", "3"]
        .iter()
        .flat_map(|l| PAIRINGS.iter().map(move |p| format!("{p}-loss{l}")))
        .collect();
    assert_eq!(ids, want);
    let mut failed = 0;
    for row in rows {
        let rsmux_only = row["pairing"] == "rsmux-rsmux";
        let errors = row["errors"].as_array().unwrap();
        failed += errors.len();
        if !rsmux_only && !with_kcptun {
            assert!(
                row["skipped"]
                    .as_str()
                    .is_some_and(|s| s.contains("apt-get")),
                "{row}"
            );
            continue;
        }
        // A session to Debian's kcptun-server now and then stalls at its start (kcptun-server
        // sends one datagram, then nothing; with either client: see the README's Performance
        // section). The bench reports that as the row's error; every other row must measure.
        if errors.is_empty() || row["server"] != "kcptun" {
            assert!(errors.is_empty(), "{row}");
            assert_measured(row);
        }
        assert!(row["relay"]["up_forwarded"].as_u64().unwrap() > 0, "{row}");
        if row["loss_percent"] == 0.0 {
            assert_eq!(row["relay"]["up_dropped"], 0, "{row}");
        }
    }
    assert_eq!(code, Some(if failed == 0 { 0 } else { 1 }), "{k}");
    // The ratios of each replaced end (and both) at each loss rate, where both rows ran.
    let ratios = k["ratios"].as_array().expect("kcp.ratios");
    let expected = if with_kcptun { 10 } else { 0 };
    assert_eq!(ratios.len(), expected, "{k}");
    for r in ratios {
        for key in [
            "one_conn",
            "many_conns",
            "one_conn_cpu",
            "many_conns_cpu",
            "rss_peak",
            "session_bytes",
        ] {
            assert_eq!(
                r["per_run"][key]["runs"].as_array().map(Vec::len),
                Some(1),
                "{r}"
            );
        }
        assert!(["client", "server", "both"].contains(&r["process"].as_str().unwrap()));
    }
}

#[test]
fn without_kcptun_only_the_rsmux_rows_run() {
    let (code, k) = kcp_report(&["PATH=/nonexistent"], &["--kcp-loss", "0"]);
    assert_eq!(code, Some(0), "{k}");
    assert_eq!(k["kcptun"]["available"], false);
    let hint = k["kcptun"]["skip_reason"].as_str().unwrap();
    assert!(hint.contains("apt-get install -y kcptun"), "{hint}");
    let rows = k["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for row in rows {
        if row["pairing"] == "rsmux-rsmux" {
            assert!(row["skipped"].is_null(), "{row}");
            assert_measured(row);
        } else {
            assert_eq!(row["skipped"].as_str(), Some(hint), "{row}");
            assert!(row["one_conn_mb_s"].is_null(), "{row}");
        }
    }
    assert!(k["ratios"].as_array().unwrap().is_empty());
}

#[test]
fn kcp_usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["bench", "--kcp-loss", "3"], "--kcp"),
        (&["bench", "--kcp", "--kcp-loss", "60"], "--kcp-loss"),
        (&["bench", "--kcp", "--kcp-loss", "3,3"], "--kcp-loss"),
        (&["bench", "--kcp", "--connect", "127.0.0.1:9"], "--connect"),
    ];
    for (args, needle) in cases {
        let out = common::rsmux(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
