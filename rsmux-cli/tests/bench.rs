//! `rsmux bench`: the quick JSON run has every field; `--connect` and `--plot` work; `--rtt`
//! is checked and runs through the delay proxy; the proxy delays and keeps every byte.

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
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const ROW_FIELDS: [&str; 33] = [
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
];

const RATIO_FIELDS: [&str; 10] = [
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
];

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

#[test]
fn quick_json_has_every_field() {
    // Build the Go peer first, so the Go rows run (the bench would build it too).
    common::go_peer();
    let started = Instant::now();
    let out = run(
        common::bin(),
        &["bench", "--quick", "--json"],
        Duration::from_secs(90),
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
        "rtts_ms",
        "proxy_line_cap_bytes",
        "config",
        "go",
        "rows",
        "ratios",
        "plot",
        "total_seconds",
    ] {
        assert!(v.get(key).is_some(), "missing top-level field {key}");
    }
    assert_eq!(v["mode"], "local");
    assert_eq!(v["quick"], true);
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
    for key in ["available", "peer", "skip_reason"] {
        assert!(v["go"].get(key).is_some(), "missing go.{key}");
    }
    // Generous bound: the tests share two cores; alone it takes about ten seconds.
    assert!(num(&v, "total_seconds") < 60.0, "{}", v["total_seconds"]);

    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(
        ids(rows),
        [
            "tcp",
            "rsmux-v1",
            "rsmux-v2",
            "rsmux-v2-fixed",
            "go-v1",
            "go-v2"
        ]
    );
    for row in rows {
        for key in ROW_FIELDS {
            assert!(row.get(key).is_some(), "row {}: missing {key}", row["id"]);
        }
        assert_eq!(row["errors"].as_array().map(Vec::len), Some(0), "{row}");
        assert!(row["skipped"].is_null(), "{row}");
        assert_eq!(num(row, "rtt_ms"), 0.0);
        assert_eq!(num(row, "echo_many_streams"), 16.0);
        // Every row has both directions and the echo workloads, v1 beside v2.
        for key in RATE_KEYS {
            assert!(num(row, key) > 1.0, "{key}: {row}");
        }
    }
    let by_id = |id: &str| rows.iter().find(|r| r["id"] == id).unwrap();
    assert_eq!(by_id("rsmux-v2")["auto_tune"], true);
    assert_eq!(by_id("rsmux-v2-fixed")["auto_tune"], false);
    assert!(by_id("rsmux-v1")["auto_tune"].is_null());
    assert!(by_id("go-v2")["auto_tune"].is_null());
    assert_eq!(num(&rows[0], "one_stream_ratio"), 1.0);
    assert_eq!(num(&rows[0], "echo_many_streams_ratio"), 1.0);
    assert!(rows[0]["idle_bytes_per_stream"].is_null());
    for id in ["tcp", "rsmux-v1", "rsmux-v2", "go-v1", "go-v2"] {
        let row = by_id(id);
        assert!(num(row, "open_close_us") > 0.0, "{row}");
        assert!(num(row, "open_close_ops") >= 1.0, "{row}");
    }
    // Open/close moves one byte: the fixed-window row leaves it out.
    assert!(by_id("rsmux-v2-fixed")["open_close_us"].is_null());
    for id in ["rsmux-v1", "rsmux-v2"] {
        let row = by_id(id);
        let b = num(row, "idle_bytes_per_stream");
        assert!(b > 0.0 && b < 100_000.0, "{row}");
        assert_eq!(num(row, "idle_streams"), 10_000.0);
    }

    let ratios = v["ratios"].as_array().expect("ratios");
    let ratio_ids: Vec<&str> = ratios.iter().map(|r| r["id"].as_str().unwrap()).collect();
    for id in [
        "rsmux-v2/rsmux-v1",
        "rsmux-v2/rsmux-v2-fixed",
        "rsmux-v2/go-v2",
        "go-v2/go-v1",
    ] {
        assert!(ratio_ids.contains(&id), "no ratio {id}: {ratio_ids:?}");
    }
    for r in ratios {
        for key in RATIO_FIELDS {
            assert!(r.get(key).is_some(), "ratio {}: missing {key}", r["id"]);
        }
    }
    // The ratio is the quotient of the two rows' figures (both rounded, hence the slack).
    let r = ratios
        .iter()
        .find(|r| r["id"] == "rsmux-v2/rsmux-v1")
        .unwrap();
    let expect =
        num(by_id("rsmux-v2"), "one_stream_mb_s") / num(by_id("rsmux-v1"), "one_stream_mb_s");
    assert!((num(r, "one_stream") - expect).abs() < 0.01, "{r}");
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
        "rsmux echo / raw TCP echo",
    ] {
        assert!(stdout.contains(needle), "table lacks {needle:?}:\n{stdout}");
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    let picture = std::fs::read_to_string(&svg).expect("svg written");
    assert!(picture.starts_with("<svg"));
    assert_eq!(picture.matches("<polyline").count(), 4);
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
fn rtt_runs_every_row_through_the_proxy() {
    // A 1 MiB window keeps the fixed-window row's 16 MiB requests short at this RTT; the
    // larger --smuxbuf holds 16 such windows (fixed windows beyond the receive budget can
    // stall a v2 echo, in Go smux as in rsmux).
    let out = run(
        common::bin(),
        &[
            "bench",
            "--quick",
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON object");
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
    ];
    for set in [&direct, &delayed] {
        let got: Vec<&str> = set.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(got, want);
    }
    for row in &delayed {
        if row["id"].as_str().unwrap().starts_with("go") {
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
    assert!(num(v2(&direct), "idle_bytes_per_stream") > 0.0);
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
