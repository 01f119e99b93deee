//! Protocol v2 past the 2^32-byte wrap of the per-stream byte counters, against the real Go
//! smux (the repo's Go peer, `smuxpeer bigstream`, built against Debian's xtaci/smux
//! v1.5.16): one stream, loopback TCP, `2^32 + 64 MiB` bytes, every byte checked.
//!
//! An rsmux receiver whose read drains its whole window used to stall at exactly 4294967296
//! bytes: the UPD whose CONSUMED wrapped to 0 was skipped (as Go itself does), and a sender
//! with nothing left in flight then waits for an UPD that never comes. rsmux now sends it and
//! Go accepts it (its in-flight arithmetic wraps).
//!
//! Tests (protocol v2; `Config::default()` unless the name says otherwise; `_go_window` means
//! `stream_window_auto_tune: false`, Go's exact 64 KiB window):
//!
//! - `go_to_rsmux_large_reads_one_frame_window` — **runs by default**. Go writes, rsmux
//!   reads with 128 KiB `read`s that drain everything buffered, with
//!   `stream_window_auto_tune: false` and `max_stream_buffer: 32768`: the window is one Go
//!   frame, so every read drains the whole window and a skipped UPD at the wrap stalls the
//!   stream every time (with the fix reverted it stalls at 4294967296 bytes, run after run).
//!   Only this shape catches that bug against Go: with the default auto-tuned window (grown to
//!   2 MiB) a 128 KiB read never drains a window, and with Go's 64 KiB window the reader in
//!   practice gets Go's 32 KiB frames one at a time, so after a skipped UPD the sender still
//!   has half a window to send and the next UPD carries on.
//! - `go_to_rsmux_large_reads` (the same with `Config::default()`) and `rsmux_to_go` (rsmux
//!   writes 128 KiB `write_all`s; Go reads, checks and answers its count and the offset of
//!   the first wrong byte) — also **run by default**: both directions cross the wrap in CI.
//! - `go_to_rsmux_large_reads_go_window`, `go_to_rsmux_small_reads` (4 KiB reads),
//!   `go_to_rsmux_small_reads_go_window`, `rsmux_to_go_go_window`: only with
//!   `RSMUX_WRAP_GO_ALL=1`, otherwise they print that they were skipped and pass:
//!   `RSMUX_WRAP_GO_ALL=1 cargo test -p rsmux --test wrap_go`.
//! - `go_reader_reports_a_wrong_byte` (default, a few MiB): the Go side's check is not vacuous.
//!
//! The data is `periodic_table(streamID)` (see `interop_support`): a pattern with a prime
//! period of about 1 MB, checked with a memcmp per read on both sides. A stall fails the test
//! after [`STALL`] without progress, saying how many bytes had arrived (and whether that is
//! exactly 2^32); nothing waits longer than [`OVERALL`] in total.

mod interop_support;

use std::time::Duration;

use interop_support::{periodic_table, within, Counters, Counting, GoPeer, BIG_PERIOD};
use rsmux::{Config, Session, Stream};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::Instant,
};

/// Bytes moved on the one stream: past the wrap, and far enough past it for many more window
/// updates.
const TOTAL: u64 = (1 << 32) + (64 << 20);
/// The v2 byte counters wrap here.
const WRAP: u64 = 1 << 32;
/// No progress for this long is a stall.
const STALL: Duration = Duration::from_secs(20);
/// Longest a whole transfer may take (about 7 MB/s; CI runs it at hundreds of MB/s).
const OVERALL: Duration = Duration::from_secs(600);
/// rsmux's large I/O size, as Go's `BenchmarkConnSmux` and `rsmux bench`.
const LARGE: usize = 128 * 1024;
const SMALL: usize = 4 * 1024;
const SHORT: Duration = Duration::from_secs(10);

/// Whether the long variants run (`RSMUX_WRAP_GO_ALL` set to anything but `0` or empty).
fn run_all() -> bool {
    std::env::var("RSMUX_WRAP_GO_ALL").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Returns true (after saying so) when a long variant is to be skipped.
fn skipped(name: &str) -> bool {
    if run_all() {
        return false;
    }
    eprintln!("{name}: skipped (set RSMUX_WRAP_GO_ALL=1 to run the long variants)");
    true
}

fn config(auto_tune: bool) -> Config {
    Config::default()
        .with_version(rsmux::Version::V2)
        .with_stream_window_auto_tune(auto_tune)
}

/// Starts the Go `bigstream` role and an rsmux v2 client session connected to it; the
/// counters see the TCP bytes.
async fn connect(auto_tune: bool) -> (GoPeer, Session, Counters) {
    connect_with(config(auto_tune)).await
}

async fn connect_with(cfg: Config) -> (GoPeer, Session, Counters) {
    let peer = GoPeer::start("bigstream", &["-ver", "2", "-quiet"]).await;
    let tcp = within(SHORT, "TCP connect to Go", TcpStream::connect(peer.addr))
        .await
        .expect("TCP connect to Go");
    tcp.set_nodelay(true).unwrap();
    let (io, wire) = Counting::new(tcp);
    let session = Session::client(io, cfg).expect("Session::client");
    (peer, session, wire)
}

/// Opens a stream and sends the `bigstream` command `cmd` for `n` bytes.
async fn command(session: &Session, cmd: u8, n: u64) -> Stream {
    let mut s = within(SHORT, "open_stream", session.open_stream())
        .await
        .expect("open_stream");
    let mut msg = [0u8; 9];
    msg[0] = cmd;
    msg[1..].copy_from_slice(&n.to_le_bytes());
    within(SHORT, "sending the command", s.write_all(&msg))
        .await
        .expect("sending the command");
    s
}

/// Why a transfer stopped, with the byte count, for the panic message.
fn stopped(what: &str, bytes: u64, started: Instant) -> String {
    let elapsed = started.elapsed();
    let at_wrap = if bytes == WRAP {
        " — exactly 2^32, where the v2 byte counters wrap (was the UPD with CONSUMED 0 sent?)"
    } else {
        ""
    };
    if elapsed >= OVERALL {
        format!("{what}: too slow: {bytes} of {TOTAL} bytes after {elapsed:?}")
    } else {
        format!("{what}: stalled at {bytes} bytes of {TOTAL}{at_wrap} (no progress for {STALL:?})")
    }
}

/// The deadline of the next step: [`STALL`] from now, but never past the overall one.
fn step_deadline(overall: Instant) -> Instant {
    (Instant::now() + STALL).min(overall)
}

/// Prints the throughput; checks that the TCP connection carried every byte (`wire_bytes`,
/// frame headers included).
fn report(what: &str, started: Instant, wire_bytes: u64) {
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{what}: {TOTAL} bytes in {secs:.1} s ({:.0} MiB/s), {wire_bytes} bytes on the wire",
        TOTAL as f64 / secs / f64::from(1 << 20)
    );
    assert!(
        wire_bytes > TOTAL,
        "{what}: only {wire_bytes} bytes crossed TCP"
    );
}

/// The Go side writes [`TOTAL`] bytes then FIN; rsmux reads them with `read_size` reads and
/// checks every one, then expects EOF.
async fn go_writes_rsmux_reads(what: &str, read_size: usize, auto_tune: bool) {
    go_writes_rsmux_reads_with(what, read_size, config(auto_tune)).await;
}

async fn go_writes_rsmux_reads_with(what: &str, read_size: usize, cfg: Config) {
    let (mut peer, session, wire) = connect_with(cfg).await;
    let mut s = command(&session, b'W', TOTAL).await;
    let id = s.id().get();
    let table = periodic_table(id, read_size);
    let mut buf = vec![0u8; read_size];
    let started = Instant::now();
    let overall = started + OVERALL;
    let mut received = 0u64;
    loop {
        let read = tokio::time::timeout_at(step_deadline(overall), s.read(&mut buf)).await;
        let Ok(res) = read else {
            panic!("{}", stopped(what, received, started));
        };
        let n = res.unwrap_or_else(|e| panic!("{what}: read error after {received} bytes: {e}"));
        if n == 0 {
            break;
        }
        let off = (received % BIG_PERIOD as u64) as usize;
        if buf[..n] != table[off..off + n] {
            let i = (0..n).find(|&i| buf[i] != table[off + i]).unwrap();
            panic!(
                "{what}: wrong byte at stream offset {}",
                received + i as u64
            );
        }
        received += n as u64;
        assert!(
            received <= TOTAL,
            "{what}: more than the {TOTAL} bytes Go sent"
        );
    }
    assert_eq!(received, TOTAL, "{what}: EOF after {received} bytes");
    report(what, started, wire.read());
    let line = peer.expect_line("bigstream", SHORT).await;
    assert!(
        line.starts_with(&format!("bigstream stream {id}: wrote {TOTAL} bytes")),
        "{what}: Go says {line:?}"
    );
    drop(s);
    within(SHORT, "session close", session.close())
        .await
        .expect("session close");
}

/// rsmux writes [`TOTAL`] bytes in 128 KiB `write_all`s; the Go side reads and checks them
/// and answers with its count and the offset of the first wrong byte.
async fn rsmux_writes_go_reads(what: &str, auto_tune: bool) {
    let (mut peer, session, wire) = connect(auto_tune).await;
    let mut s = command(&session, b'R', TOTAL).await;
    let id = s.id().get();
    let table = periodic_table(id, LARGE);
    let started = Instant::now();
    let overall = started + OVERALL;
    let mut sent = 0u64;
    while sent < TOTAL {
        let off = (sent % BIG_PERIOD as u64) as usize;
        let n = (TOTAL - sent).min(LARGE as u64) as usize;
        let write = s.write_all(&table[off..off + n]);
        let Ok(res) = tokio::time::timeout_at(step_deadline(overall), write).await else {
            let lines = peer.lines_so_far();
            panic!(
                "{}; Go printed {lines:?}",
                stopped(&format!("{what} (bytes rsmux handed over)"), sent, started)
            );
        };
        res.unwrap_or_else(|e| panic!("{what}: write error after {sent} bytes: {e}"));
        sent += n as u64;
    }
    let mut answer = [0u8; 16];
    let res = tokio::time::timeout_at(step_deadline(overall), s.read_exact(&mut answer)).await;
    match res {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!(
            "{what}: no answer from Go after all {TOTAL} bytes: {e}; Go printed {:?}",
            peer.lines_so_far()
        ),
        Err(_) => panic!(
            "{what}: Go did not answer within {STALL:?} after rsmux handed over all {TOTAL} \
             bytes (a stall on the way, e.g. at 2^32 = {WRAP}); Go printed {:?}",
            peer.lines_so_far()
        ),
    }
    report(what, started, wire.written());
    let count = u64::from_le_bytes(answer[..8].try_into().unwrap());
    let first_wrong = u64::from_le_bytes(answer[8..].try_into().unwrap());
    assert_eq!(count, TOTAL, "{what}: Go read {count} bytes");
    assert_eq!(
        first_wrong,
        u64::MAX,
        "{what}: Go saw a wrong byte at stream offset {first_wrong}"
    );
    let mut rest = Vec::new();
    within(SHORT, "EOF after Go's answer", s.read_to_end(&mut rest))
        .await
        .expect("EOF after Go's answer");
    assert!(
        rest.is_empty(),
        "{what}: {} bytes after the answer",
        rest.len()
    );
    let line = peer.expect_line("bigstream", SHORT).await;
    assert!(
        line.starts_with(&format!("bigstream stream {id}: read {TOTAL} bytes"))
            && line.ends_with("first mismatch none"),
        "{what}: Go says {line:?}"
    );
    drop(s);
    within(SHORT, "session close", session.close())
        .await
        .expect("session close");
}

/// The regression test of the stall at 2^32 (see the top of the file): Go's frames are
/// 32 KiB, so with a 32 KiB window each read drains the whole window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_to_rsmux_large_reads_one_frame_window() {
    let cfg = config(false).with_max_stream_buffer(32768);
    go_writes_rsmux_reads_with("Go -> rsmux, 128 KiB reads, 32 KiB window", LARGE, cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_to_rsmux_large_reads() {
    go_writes_rsmux_reads("Go -> rsmux, 128 KiB reads, auto-tuned window", LARGE, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_to_rsmux_large_reads_go_window() {
    if skipped("go_to_rsmux_large_reads_go_window") {
        return;
    }
    go_writes_rsmux_reads("Go -> rsmux, 128 KiB reads, Go's window", LARGE, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_to_rsmux_small_reads() {
    if skipped("go_to_rsmux_small_reads") {
        return;
    }
    go_writes_rsmux_reads("Go -> rsmux, 4 KiB reads, auto-tuned window", SMALL, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_to_rsmux_small_reads_go_window() {
    if skipped("go_to_rsmux_small_reads_go_window") {
        return;
    }
    go_writes_rsmux_reads("Go -> rsmux, 4 KiB reads, Go's window", SMALL, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsmux_to_go() {
    rsmux_writes_go_reads("rsmux -> Go, 128 KiB writes, auto-tuned window", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsmux_to_go_go_window() {
    if skipped("rsmux_to_go_go_window") {
        return;
    }
    rsmux_writes_go_reads("rsmux -> Go, 128 KiB writes, Go's window", false).await;
}

/// The Go side's check is real: one wrong byte in a small transfer is reported at its offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_reader_reports_a_wrong_byte() {
    const N: u64 = 3 << 20;
    const BAD: u64 = 2_500_000; // past the first period
    let (mut peer, session, _) = connect(true).await;
    let mut s = command(&session, b'R', N).await;
    let table = periodic_table(s.id().get(), N as usize);
    let mut data = table[..N as usize].to_vec();
    data[BAD as usize] ^= 0x5a;
    within(SHORT, "writing 3 MiB", s.write_all(&data))
        .await
        .expect("write");
    let mut answer = [0u8; 16];
    within(SHORT, "Go's answer", s.read_exact(&mut answer))
        .await
        .expect("Go's answer");
    assert_eq!(u64::from_le_bytes(answer[..8].try_into().unwrap()), N);
    assert_eq!(u64::from_le_bytes(answer[8..].try_into().unwrap()), BAD);
    let line = peer.expect_line("bigstream", SHORT).await;
    assert!(line.ends_with(&format!("first mismatch {BAD}")), "{line:?}");
    drop(s);
    within(SHORT, "session close", session.close())
        .await
        .expect("session close");
}
