//! The CLI against the Go reference peer (`interop/go/bin/smuxpeer`, xtaci/smux v1.5.16 as
//! Debian ships it), built with `interop/build.sh`; a failed build fails the tests (never a skip).
//!
//! Limits of Go smux 1.5.16 that shape these tests:
//! - a Go stream has no half-close: `Close` sends FIN and drops the stream, so the Go tunnel
//!   client cannot carry a response after the local side's EOF (its `-halfclose=close`);
//! - a Go v2 writer blocked on the peer's window gives up (`io.EOF`) once the peer's FIN
//!   arrived ("future window update is impossible"; later Go versions do the same), so after
//!   our FIN a Go v2 stream can only send what fits in its window.

mod common;

use std::time::Duration;

use common::{
    echo_through, go_peer, pattern, request_eof_target, request_response, run, runtime,
    tcp_echo_target, tunnel_client, tunnel_server, within, Proc, Shutdown,
};

/// Go smux clients (each scenario a fresh process) against `rsmux echo`.
#[test]
fn go_clients_against_rsmux_echo() {
    let go = go_peer();
    for v in ["1", "2"] {
        let echo = Proc::rsmux(&["echo", "--listen", "127.0.0.1:0", "--smuxver", v]);
        let addr = echo.addr.to_string();
        for (scenario, extra) in [
            ("echo", vec![]),
            ("parallel", vec!["-streams", "300", "-msgs", "20"]),
            ("bulk", vec!["-bytes", "16777216", "-seed", "3"]),
        ] {
            let mut args = vec![
                "client",
                "-ver",
                v,
                "-connect",
                &addr,
                "-scenario",
                scenario,
                "-timeout",
                "40",
                "-quiet",
            ];
            args.extend(extra);
            let out = run(&go, &args, Duration::from_secs(50));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains(&format!("OK {scenario}")),
                "Go client v{v} {scenario}: {stdout}\n{}\nrsmux echo stderr: {}",
                String::from_utf8_lossy(&out.stderr),
                echo.stderr()
            );
        }
    }
}

/// The Go peer's `tunnel-server` (smux version `ver`) on a free loopback port, to `target`.
fn go_tunnel_server(go: &str, ver: &str, target: &str) -> Proc {
    Proc::start(
        go,
        &[
            "tunnel-server",
            "-ver",
            ver,
            "-listen",
            "127.0.0.1:0",
            "-target",
            target,
            "-quiet",
        ],
    )
}

/// The Go peer's `tunnel-client` (one smux session of version `ver`) to `server`.
fn go_tunnel_client(go: &str, ver: &str, server: &str) -> Proc {
    Proc::start(
        go,
        &[
            "tunnel-client",
            "-ver",
            ver,
            "-listen",
            "127.0.0.1:0",
            "-server",
            server,
            "-quiet",
        ],
    )
}

/// Go smux clients of both versions, at the same time, against one `rsmux echo --smuxver
/// auto` and one `rsmux tunnel server --smuxver auto`: each session speaks its client's
/// version (Go smux servers cannot do this; a mismatch there is a dead session).
#[test]
fn one_auto_version_server_serves_go_clients_of_both_versions() {
    let go = go_peer();
    let echo = Proc::rsmux(&["echo", "--listen", "127.0.0.1:0", "--smuxver", "auto"]);
    let addr = echo.addr.to_string();
    let clients: Vec<_> = ["1", "2", "1", "2"]
        .into_iter()
        .map(|v| {
            let go = go.clone();
            let addr = addr.clone();
            std::thread::spawn(move || {
                let args = [
                    "client",
                    "-ver",
                    v,
                    "-connect",
                    &addr,
                    "-scenario",
                    "parallel",
                    "-streams",
                    "50",
                    "-msgs",
                    "20",
                    "-timeout",
                    "40",
                    "-quiet",
                ];
                (v, run(&go, &args, Duration::from_secs(50)))
            })
        })
        .collect();
    for c in clients {
        let (v, out) = c.join().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("OK parallel"),
            "Go client v{v}: {stdout}\n{}\nrsmux echo stderr: {}",
            String::from_utf8_lossy(&out.stderr),
            echo.stderr()
        );
    }

    let rt = runtime();
    let target = rt.block_on(tcp_echo_target()).to_string();
    let server = tunnel_server(&target, &["--smuxver", "auto"]);
    let s = server.addr.to_string();
    for v in ["1", "2"] {
        let client = go_tunnel_client(&go, v, &s);
        // The Go client drops the stream at our EOF, so shut down only after the echo.
        rt.block_on(within(
            Duration::from_secs(60),
            "Go tunnel client through an auto-version server",
            echo_through(client.addr, pattern(7, 4 << 20), Shutdown::AfterEcho),
        ));
    }
}

/// Go `tunnel-client` → `rsmux tunnel server` → TCP echo: 16 MiB byte-exact.
#[test]
fn go_tunnel_client_to_rsmux_tunnel_server() {
    let go = go_peer();
    let rt = runtime();
    for v in ["1", "2"] {
        let target = rt.block_on(tcp_echo_target()).to_string();
        let server = tunnel_server(&target, &["--smuxver", v]);
        let s = server.addr.to_string();
        let client = go_tunnel_client(&go, v, &s);
        let addr = client.addr;
        rt.block_on(within(
            Duration::from_secs(60),
            "Go tunnel client",
            async move {
                // The Go client drops the stream at our EOF, so shut down only after the echo.
                let mut tasks = Vec::new();
                for i in 0..4u64 {
                    let n = if i == 0 { 16 << 20 } else { 300_000 };
                    tasks.push(tokio::spawn(echo_through(
                        addr,
                        pattern(i, n),
                        Shutdown::AfterEcho,
                    )));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            },
        ));
    }
}

/// `rsmux tunnel client` → Go `tunnel-server` → targets: 16 MiB byte-exact and nc-style
/// half-close (our FIN becomes the Go side's TCP CloseWrite towards the target).
#[test]
fn rsmux_tunnel_client_to_go_tunnel_server() {
    let go = go_peer();
    let rt = runtime();
    for v in ["1", "2"] {
        let echo_target = rt.block_on(tcp_echo_target()).to_string();
        // After our FIN a Go v2 stream only sends what fits its window (see the top).
        let response = if v == "1" { 2 << 20 } else { 32 << 10 };
        let eof_target = rt.block_on(request_eof_target(response)).to_string();
        let echo_server = go_tunnel_server(&go, v, &echo_target);
        let eof_server = go_tunnel_server(&go, v, &eof_target);
        let echo_client = tunnel_client(&echo_server, &["--smuxver", v, "--conns", "2"]);
        let eof_client = tunnel_client(&eof_server, &["--smuxver", v]);
        let (ea, fa) = (echo_client.addr, eof_client.addr);
        let when = if v == "1" {
            Shutdown::AfterWriting
        } else {
            Shutdown::AfterEcho
        };
        rt.block_on(within(
            Duration::from_secs(60),
            "Go tunnel server",
            async move {
                let mut tasks = Vec::new();
                tasks.push(tokio::spawn(echo_through(ea, pattern(9, 16 << 20), when)));
                for i in 0..4usize {
                    tasks.push(tokio::spawn(request_response(fa, i * 50_000, response)));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            },
        ));
    }
}

/// `rsmux bench --connect` against a Go echo server, both versions (the echo design must
/// not lose the echo's tail, see the top).
#[test]
fn bench_connect_against_go_echo() {
    let go = go_peer();
    for v in ["1", "2"] {
        let echo = Proc::start(
            &go,
            &["echo", "-ver", v, "-listen", "127.0.0.1:0", "-quiet"],
        );
        let addr = echo.addr.to_string();
        let out = run(
            common::bin(),
            &[
                "bench",
                "--connect",
                &addr,
                "--smuxver",
                v,
                "--seconds",
                "0.2",
                "--json",
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
        let j: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let remote = &j["rows"][2];
        assert_eq!(remote["id"], "remote");
        assert!(
            remote["one_stream_mb_s"].as_f64().unwrap() > 0.0,
            "{remote}"
        );
        assert!(
            remote["many_streams_mb_s"].as_f64().unwrap() > 0.0,
            "{remote}"
        );
        assert!(remote["open_close_us"].as_f64().unwrap() > 0.0, "{remote}");
    }
}
