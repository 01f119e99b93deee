//! How `rsmux tunnel` ends TCP connections that could not finish: reset (RST) when the
//! session dies or the target cannot be reached, a clean EOF after a normal close; and names
//! that do not resolve are reported at start.

mod common;

use std::{io::ErrorKind, net::SocketAddr, time::Duration};

use common::{
    dead_addr, only_the_stream_was_refused, pattern, request_eof_target, request_response, runtime,
    tunnel, within, Proc,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
};

/// Reads until EOF or an error; the error kind, or `None` for a clean EOF. Counts the bytes.
async fn read_to_the_end(tcp: &mut TcpStream, total: &mut usize) -> Option<ErrorKind> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) => return None,
            Ok(n) => *total += n,
            Err(e) => return Some(e.kind()),
        }
    }
}

/// Reads the first MiB from `tcp` and hands it to `check`, tells `started`, then reads to
/// the end (see [`read_to_the_end`]): how it ended and the bytes read in all.
async fn read_past_a_mib(
    tcp: &mut TcpStream,
    started: oneshot::Sender<()>,
    check: impl FnOnce(&[u8]),
) -> (Option<ErrorKind>, usize) {
    let mut buf = vec![0u8; 1 << 20];
    tcp.read_exact(&mut buf).await.unwrap();
    check(&buf);
    started.send(()).unwrap();
    let mut total = buf.len();
    let end = read_to_the_end(tcp, &mut total).await;
    (end, total)
}

/// Once `started` (a transfer is under way), kills `killed`, and checks that `reader` (see
/// [`read_past_a_mib`]) then ends with a reset; failures show the log of `survivor`.
fn reset_when_killed(
    rt: &tokio::runtime::Runtime,
    started: oneshot::Receiver<()>,
    killed: Proc,
    reader: tokio::task::JoinHandle<(Option<ErrorKind>, usize)>,
    name: &str,
    survivor: &Proc,
) {
    rt.block_on(within(Duration::from_secs(20), "1 MiB through", started))
        .unwrap();
    drop(killed);
    let (end, total) = rt
        .block_on(within(Duration::from_secs(20), "reset", reader))
        .unwrap();
    assert_eq!(
        end,
        Some(ErrorKind::ConnectionReset),
        "after {total} bytes: expected a reset, not a clean EOF (None); {name}: {}",
        survivor.stderr()
    );
}

/// A target that sends without end (until its connection fails) and reads nothing.
async fn endless_target() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let block = pattern(7, 64 * 1024);
                while tcp.write_all(&block).await.is_ok() {}
            });
        }
    });
    addr
}

#[test]
fn unreachable_target_resets_the_local_connection() {
    let rt = runtime();
    let dead = rt.block_on(dead_addr());
    let (server, client) = tunnel(dead, &[], &[]);
    let addr = client.addr;
    let end = rt.block_on(within(Duration::from_secs(20), "reset", async move {
        // The reset may come before connect() returns, or before the write.
        let mut tcp = match TcpStream::connect(addr).await {
            Ok(tcp) => tcp,
            Err(e) => return Some(e.kind()),
        };
        if let Err(e) = tcp.write_all(b"hello?").await {
            return Some(e.kind());
        }
        let mut total = 0;
        let end = read_to_the_end(&mut tcp, &mut total).await;
        assert_eq!(total, 0, "bytes came back from an unreachable target");
        end
    }));
    assert_eq!(
        end,
        Some(ErrorKind::ConnectionReset),
        "expected a reset, not a clean EOF (None); client: {}",
        client.stderr()
    );
    // Only the stream was refused: the session itself survives.
    only_the_stream_was_refused(&server, &client);
}

#[test]
fn session_killed_mid_transfer_resets_the_local_connection() {
    let rt = runtime();
    let target = rt.block_on(endless_target());
    let (server, client) = tunnel(target, &[], &[]);
    let addr = client.addr;
    let (started_tx, started_rx) = oneshot::channel();
    let reader = rt.spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        read_past_a_mib(&mut tcp, started_tx, |first| {
            assert!(first[..64 * 1024] == pattern(7, 64 * 1024)[..]);
        })
        .await
    });
    // The session dies with the server process.
    reset_when_killed(&rt, started_rx, server, reader, "client", &client);
}

/// The other way round: the client dies while the target is receiving; the server resets its
/// connection to the target.
#[test]
fn session_killed_mid_transfer_resets_the_target_connection() {
    let rt = runtime();
    let (l, target) = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        (l, addr)
    });
    let (started_tx, started_rx) = oneshot::channel();
    let receiver = rt.spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        read_past_a_mib(&mut tcp, started_tx, |_| {}).await
    });
    let (server, client) = tunnel(target, &[], &[]);
    let addr = client.addr;
    // Sends without end; fails once the client is gone.
    rt.spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let block = pattern(8, 64 * 1024);
        while tcp.write_all(&block).await.is_ok() {}
    });
    reset_when_killed(&rt, started_rx, client, receiver, "server", &server);
}

#[test]
fn a_normal_close_is_still_a_clean_eof() {
    let rt = runtime();
    const SENT: usize = 3 << 20;
    // A target that sends its bytes and closes without being asked anything.
    let target = rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = l.accept().await {
                tokio::spawn(async move {
                    tcp.write_all(&pattern(9, SENT)).await.unwrap();
                    tcp.shutdown().await.unwrap();
                    let mut rest = Vec::new();
                    let _ = tcp.read_to_end(&mut rest).await;
                });
            }
        });
        addr
    });
    let (server, client) = tunnel(target, &[], &[]);
    let addr = client.addr;
    rt.block_on(within(Duration::from_secs(30), "clean EOF", async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut got = Vec::new();
        // Nothing sent and no shutdown: the end comes from the target alone.
        let n = tcp.read_to_end(&mut got).await.expect("a clean EOF");
        assert_eq!(n, SENT);
        assert!(got == pattern(9, SENT), "data corrupted");
    }));
    // Half-close the other way: request, our FIN, then the whole answer and a clean EOF.
    drop((client, server));
    let target = rt.block_on(request_eof_target(100_000));
    let (_server, client) = tunnel(target, &[], &[]);
    let addr = client.addr;
    rt.block_on(within(
        Duration::from_secs(30),
        "request, FIN, response",
        request_response(addr, 50_000, 100_000),
    ));
    // An empty request too: our FIN comes before anything else.
    rt.block_on(within(
        Duration::from_secs(30),
        "empty request",
        request_response(addr, 0, 100_000),
    ));
}

/// The one-line error of a start that fails, with its exit status.
fn failed_start(args: &[&str]) -> (Option<i32>, String, String) {
    let out = common::rsmux(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn names_that_do_not_resolve_are_reported_at_start() {
    let (code, stdout, stderr) = failed_start(&[
        "tunnel",
        "server",
        "--listen",
        "127.0.0.1:0",
        "--target",
        "no.such.host.invalid:80",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stdout.contains("listening on"), "it listened: {stdout}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: --target no.such.host.invalid:80: "),
        "{stderr}"
    );

    let (code, stdout, stderr) = failed_start(&[
        "tunnel",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        "no.such.host.invalid:4000",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stdout.contains("listening on"), "it listened: {stdout}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: --server no.such.host.invalid:4000: "),
        "{stderr}"
    );
}
