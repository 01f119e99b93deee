//! What rsmux tells `tracing`: the session span carries role, version and label, and stream
//! events (open, accept, FIN, refusal, close) and the session's end carry the stream id or
//! the reason.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use rsmux::{Config, Session, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn spans_and_stream_events_name_the_session_and_the_stream() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let client = Session::client(
                a,
                Config::default()
                    .with_version(Version::V2)
                    .with_label("peer-a"),
            )
            .unwrap();
            let server = Session::server(
                b,
                Config::default()
                    .with_version(Version::V2)
                    .with_max_streams(1),
            )
            .unwrap();
            let mut s = client.open_stream().await.unwrap();
            s.write_all(b"hi").await.unwrap();
            let mut peer = server.accept_stream().await.unwrap();
            let mut refused = client.open_stream().await.unwrap();
            refused.write_all(b"no").await.unwrap();
            let mut end = Vec::new();
            refused.read_to_end(&mut end).await.unwrap();
            s.shutdown().await.unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            drop(peer);
            client.close().await.unwrap();
            server.closed().await;
        });
    });
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    for expected in [
        "smux_session{role=Client version=\"2\" label=peer-a}",
        "smux_session{role=Server version=\"2\" label=}",
        "stream=3",
        // Calls through the session handle log in its span.
        "smux_session{role=Client version=\"2\" label=peer-a}: rsmux::proto::connection: stream opened stream=3",
        "stream opened",
        "stream opened by the peer",
        "stream accepted",
        "stream=5 reason=\"max_streams\"",
        "stream refused",
        "FIN sent",
        "FIN received",
        "stream closed",
        "closing",
        "session ended",
        "reason=read/write on closed stream or session",
    ] {
        assert!(log.contains(expected), "missing {expected:?} in:\n{log}");
    }
}
