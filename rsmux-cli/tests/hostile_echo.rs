//! Hostile peers against a real `rsmux echo` process: its peak RSS stays below `--smuxbuf`
//! plus a fixed overhead, attacked sessions end at their keepalive timeout once the peer goes
//! silent, and a well-behaved client is served throughout.

mod common;

use std::time::{Duration, Instant};

use common::{runtime, within, Proc};

use rsmux::{
    frame::{Cmd, Header},
    Config, Session,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

fn frame(cmd: Cmd, sid: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Header::new(1, cmd, payload.len() as u16, sid)
        .encode()
        .to_vec();
    v.extend_from_slice(payload);
    v
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

async fn assert_echo_works(addr: std::net::SocketAddr) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let session = Session::client(tcp, Config::default()).unwrap();
    let mut s = session.open_stream().await.unwrap();
    s.write_all(b"are you there").await.unwrap();
    let mut buf = [0u8; 13];
    within(
        Duration::from_secs(5),
        "echo from the attacked server",
        s.read_exact(&mut buf),
    )
    .await
    .unwrap();
    assert_eq!(&buf, b"are you there");
}

/// Reads until the server closes the connection; returns how long that took.
async fn server_closes(tcp: &mut TcpStream, limit: Duration, what: &str) -> Duration {
    let start = Instant::now();
    let mut sink = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    let res = tokio::time::timeout(limit, async {
        loop {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
    assert!(
        res.is_ok(),
        "{what}: still open after {limit:?}, {total} bytes read"
    );
    start.elapsed()
}

#[test]
fn echo_process_memory_stays_bounded_under_attack() {
    let echo = Proc::rsmux(&[
        "echo",
        "--listen",
        "127.0.0.1:0",
        "--smuxbuf",
        "1MiB",
        "--keepalive",
        "1",
        "--keepalive-timeout",
        "2",
    ]);
    let pid = echo.pid();
    let addr = echo.addr;
    let baseline = status_kib(pid, "VmRSS:");
    runtime().block_on(async {
        assert_echo_works(addr).await;

        // 1. SYN flood: 100,000 streams the server never sees accepted by anyone but the
        // echo loop, which accepts them all; the backlog bounds what waits.
        let mut syn = TcpStream::connect(addr).await.unwrap();
        let mut wire = Vec::new();
        for i in 0..100_000u32 {
            wire.extend_from_slice(&Header::new(1, Cmd::Syn, 0, 1 + 2 * i).encode());
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), syn.write_all(&wire)).await;
        assert_echo_works(addr).await;

        // 2. 32 MiB of PSH frames to streams that do not exist.
        let mut junk = TcpStream::connect(addr).await.unwrap();
        let f = frame(Cmd::Psh, 4001, &[0x55; 65535]);
        for _ in 0..500 {
            junk.write_all(&f).await.unwrap();
        }
        assert_echo_works(addr).await;

        // 3. 64 streams with 256 KiB each to echo, and the peer never reads its socket.
        let mut hog = TcpStream::connect(addr).await.unwrap();
        let mut wire = Vec::new();
        for i in 0..64u32 {
            wire.extend(frame(Cmd::Syn, 3 + 2 * i, b""));
        }
        for _ in 0..8 {
            for i in 0..64u32 {
                wire.extend(frame(Cmd::Psh, 3 + 2 * i, &[0x42; 32 * 1024]));
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), hog.write_all(&wire)).await;
        assert_echo_works(addr).await;

        // 4. Garbage.
        let mut garbage = TcpStream::connect(addr).await.unwrap();
        garbage.write_all(&[0xEE; 4096]).await.unwrap();

        // Every attacker now goes silent: each session must end at its keepalive timeout
        // (2 s; detection takes one to two periods).
        let limit = Duration::from_secs(10);
        let g = server_closes(&mut garbage, limit, "garbage session to end").await;
        let s = server_closes(&mut syn, limit, "SYN-flood session to end").await;
        let j = server_closes(&mut junk, limit, "PSH-flood session to end").await;
        let h = server_closes(&mut hog, limit, "never-reading session to end").await;
        eprintln!("sessions ended after: garbage {g:?}, SYN flood {s:?}, PSH flood {j:?}, never-reading {h:?}");
        assert_echo_works(addr).await;
    });
    let peak = status_kib(pid, "VmHWM:");
    eprintln!("rsmux echo RSS: {baseline} KiB at start, peak {peak} KiB under attack");
    // Receive side 3 x smuxbuf, send side 1 x smuxbuf, 64 echo chunks of 64 KiB held while
    // blocked, plus allocator and runtime slack.
    let bound_kib = baseline + (3 + 1) * 1024 + 64 * 64 + 16 * 1024;
    assert!(
        peak < bound_kib,
        "peak RSS {peak} KiB, bound {bound_kib} KiB"
    );
}
