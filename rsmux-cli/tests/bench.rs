//! `rsmux bench`: the quick JSON run has every field; `--connect` and `--plot` work.

mod common;

use std::time::{Duration, Instant};

use common::{run, Proc};
use serde_json::Value;

const ROW_FIELDS: [&str; 21] = [
    "id",
    "name",
    "transport",
    "version",
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
    "open_close_us",
    "open_close_ops",
    "idle_streams",
    "idle_bytes_per_stream",
];

fn num(row: &Value, key: &str) -> f64 {
    row[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{}: {key} is not a number: {}", row["id"], row[key]))
}

#[test]
fn quick_json_has_every_field() {
    // Build the Go peer first, so the Go rows run (the bench would build it too).
    common::go_peer();
    let started = Instant::now();
    let out = run(
        common::bin(),
        &["bench", "--quick", "--json"],
        Duration::from_secs(60),
    );
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
    eprintln!("bench --quick --json took {elapsed:?}");

    for key in [
        "tool",
        "version",
        "mode",
        "connect",
        "quick",
        "seconds_per_workload",
        "config",
        "go",
        "rows",
        "plot",
        "total_seconds",
    ] {
        assert!(v.get(key).is_some(), "missing top-level field {key}");
    }
    assert_eq!(v["mode"], "local");
    assert_eq!(v["quick"], true);
    for key in [
        "smuxver",
        "smuxbuf",
        "streambuf",
        "framesize",
        "keepalive_seconds",
        "keepalive_timeout_seconds",
    ] {
        assert!(v["config"].get(key).is_some(), "missing config.{key}");
    }
    for key in ["available", "peer", "skip_reason"] {
        assert!(v["go"].get(key).is_some(), "missing go.{key}");
    }
    // Generous bound: the tests share two cores; alone it takes a few seconds.
    assert!(num(&v, "total_seconds") < 30.0, "{}", v["total_seconds"]);

    let rows = v["rows"].as_array().expect("rows");
    let ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tcp", "rsmux-v1", "rsmux-v2", "go-v1", "go-v2"]);
    for row in rows {
        for key in ROW_FIELDS {
            assert!(row.get(key).is_some(), "row {}: missing {key}", row["id"]);
        }
        assert_eq!(row["errors"].as_array().map(Vec::len), Some(0), "{row}");
    }
    for row in &rows[..3] {
        assert!(row["skipped"].is_null());
        assert!(num(row, "one_stream_mb_s") > 1.0, "{row}");
        assert!(num(row, "many_streams_mb_s") > 1.0, "{row}");
        assert!(num(row, "open_close_us") > 0.0, "{row}");
        assert!(num(row, "open_close_ops") >= 1.0, "{row}");
        assert!(num(row, "one_stream_ratio") > 0.0, "{row}");
    }
    assert_eq!(num(&rows[0], "one_stream_ratio"), 1.0);
    assert!(rows[0]["idle_bytes_per_stream"].is_null());
    for row in &rows[1..3] {
        let b = num(row, "idle_bytes_per_stream");
        assert!(b > 0.0 && b < 100_000.0, "{row}");
        assert_eq!(num(row, "idle_streams"), 10_000.0);
    }
    for row in &rows[3..] {
        assert!(row["skipped"].is_null(), "{row}");
        assert!(num(row, "one_stream_mb_s") > 1.0, "{row}");
        assert!(num(row, "open_close_us") > 0.0, "{row}");
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
    ] {
        assert!(stdout.contains(needle), "table lacks {needle:?}:\n{stdout}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    let picture = std::fs::read_to_string(&svg).expect("svg written");
    assert!(picture.starts_with("<svg"));
    assert_eq!(picture.matches("<polyline").count(), 4);
    let _ = std::fs::remove_dir_all(&dir);
}
