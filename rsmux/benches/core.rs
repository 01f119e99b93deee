//! The sans-IO core alone, no sockets and no runtime, so a regression in the protocol code
//! shows without the noise of a loaded machine: frame header encoding and decoding, and full
//! send/receive cycles between two [`Connection`]s (write on one side, `poll_transmit`, hand the
//! bytes to the peer the way the driver does after a socket read, `handle_input`, read them
//! out; v2 window updates travel back the same way).

#![allow(missing_docs)] // criterion_group! defines an undocumented public function

use std::{hint::black_box, io::IoSlice, time::Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rsmux::{
    frame::{Cmd, Header, HEADER_LEN},
    proto::{
        internals::MAX_IOVECS, Connection, Progress, ReadOutcome, RecvBuffer, Role, StreamId, TxBuf,
    },
    Config, Version,
};

/// Bytes moved per iteration of a transfer benchmark (all streams together, each way).
const TRANSFER: usize = 4 * 1024 * 1024;

/// Size of one application write and of the reader's buffer (as in `throughput.rs`).
const IO_SIZE: usize = 128 * 1024;

/// The driver's transmit batch.
const TX_BATCH: usize = 256 * 1024;

fn header(c: &mut Criterion) {
    let mut g = c.benchmark_group("header");
    let headers: Vec<[u8; HEADER_LEN]> = (0..64u32)
        .map(|i| {
            let cmd = [Cmd::Psh, Cmd::Upd, Cmd::Syn, Cmd::Fin][i as usize % 4];
            let len = match cmd {
                Cmd::Psh => 1 + (i as u16 * 1000),
                Cmd::Upd => 8,
                _ => 0,
            };
            Header::new(2, cmd, len, 1 + 2 * i).encode()
        })
        .collect();
    g.throughput(Throughput::Elements(headers.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut sum = 0u32;
            for raw in &headers {
                let h = Header::decode(black_box(raw), 2).expect("valid");
                sum = sum.wrapping_add(h.stream_id ^ h.len as u32);
            }
            sum
        })
    });
    let decoded: Vec<Header> = headers
        .iter()
        .map(|raw| Header::decode(raw, 2).unwrap())
        .collect();
    g.bench_function("encode", |b| {
        b.iter(|| {
            let mut sum = 0u8;
            for h in black_box(&decoded) {
                let raw = h.encode();
                sum = sum.wrapping_add(raw[1] ^ raw[7]);
            }
            sum
        })
    });
    g.finish();
}

/// One end of the in-memory pipe: its core and the buffer its "socket" reads land in.
struct End {
    conn: Connection,
    rb: RecvBuffer,
    tx: TxBuf,
    /// Stream ids, in opening order.
    ids: Vec<StreamId>,
}

impl End {
    fn new(config: &Config, role: Role, now: Instant) -> End {
        End {
            conn: Connection::new(config.clone(), role, now).expect("valid config"),
            rb: RecvBuffer::new(),
            tx: TxBuf::new(),
            ids: Vec::new(),
        }
    }

    /// Frames what is queued (one driver batch) and delivers it to `peer` as socket reads
    /// would: copied into the peer's receive buffer, each read handed to its core. Returns
    /// the bytes moved.
    fn send_to(&mut self, peer: &mut End) -> usize {
        self.conn.poll_transmit(&mut self.tx, TX_BATCH);
        let total = self.tx.len();
        while !self.tx.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.tx.io_slices(&mut slices);
            let mut written = 0;
            for s in &slices[..n] {
                let mut s: &[u8] = s;
                while !s.is_empty() {
                    let buf = peer.rb.prepare();
                    let take = (buf.capacity() - buf.len()).min(s.len());
                    buf.extend_from_slice(&s[..take]);
                    peer.rb.note_read(take);
                    peer.conn.handle_input(&mut peer.rb);
                    s = &s[take..];
                    written += take;
                }
            }
            self.tx.advance(written);
        }
        if total > 0 {
            self.conn.handle_transmitted();
        }
        total
    }

    /// Drops the core's events (the driver would wake tasks with them).
    fn drain_events(&mut self) {
        while self.conn.poll_event().is_some() {}
    }
}

/// Two connected ends with `streams` streams open (client side opened them).
fn pair(version: u8, streams: usize) -> (End, End, Instant) {
    let now = Instant::now();
    let config = Config::default().with_version(Version::try_from(version).expect("1 or 2"));
    let mut client = End::new(&config, Role::Client, now);
    let mut server = End::new(&config, Role::Server, now);
    for _ in 0..streams {
        let id = client.conn.open().expect("open");
        client.ids.push(id);
    }
    client.send_to(&mut server);
    while let Some(id) = server.conn.accept().expect("live") {
        server.ids.push(id);
    }
    assert_eq!(server.ids.len(), streams);
    client.drain_events();
    server.drain_events();
    (client, server, now)
}

/// Per-stream progress of one direction of a transfer.
struct Flow {
    /// Bytes each stream still has to write.
    to_write: Vec<usize>,
    /// Bytes still to be read, all streams together.
    to_read: usize,
}

impl Flow {
    fn new(streams: usize) -> Flow {
        Flow {
            to_write: vec![TRANSFER / streams; streams],
            to_read: TRANSFER / streams * streams,
        }
    }

    fn done(&self) -> bool {
        self.to_read == 0
    }
}

/// Writes what `from`'s streams may take now.
fn write_some(from: &mut End, flow: &mut Flow, data: &[u8], now: Instant) {
    for (i, &id) in from.ids.iter().enumerate() {
        while flow.to_write[i] > 0 {
            let n = flow.to_write[i].min(data.len());
            match from.conn.write(id, &data[..n], now).expect("write") {
                Progress::Ready(n) => flow.to_write[i] -= n,
                Progress::Blocked => break,
            }
        }
    }
}

/// Reads everything `to`'s streams hold.
fn read_all(to: &mut End, flow: &mut Flow, buf: &mut [u8], now: Instant) {
    for &id in &to.ids {
        while let ReadOutcome::Data(n) = to.conn.read(id, buf, now).expect("read") {
            flow.to_read -= n;
        }
    }
}

/// Moves [`TRANSFER`] bytes client → server (and, when `duplex`, as many server → client at
/// the same time) over every stream of the pair.
fn transfer(client: &mut End, server: &mut End, now: Instant, duplex: bool, data: &[u8]) {
    let streams = client.ids.len();
    let mut up = Flow::new(streams);
    let mut down = Flow::new(streams);
    if !duplex {
        down.to_read = 0;
        down.to_write.fill(0);
    }
    let mut buf = vec![0u8; IO_SIZE];
    let mut idle = 0;
    while !(up.done() && down.done()) {
        // Input that waited for receive budget (the driver does this each pass).
        for end in [&mut *client, &mut *server] {
            if !end.rb.is_empty() {
                end.conn.handle_input(&mut end.rb);
            }
        }
        write_some(client, &mut up, data, now);
        write_some(server, &mut down, data, now);
        let moved = client.send_to(server) + server.send_to(client);
        read_all(server, &mut up, &mut buf, now);
        read_all(client, &mut down, &mut buf, now);
        client.drain_events();
        server.drain_events();
        idle = if moved == 0 { idle + 1 } else { 0 };
        assert!(idle < 3, "transfer stalled");
    }
}

fn cycle(c: &mut Criterion) {
    let data = vec![7u8; IO_SIZE];
    for (name, duplex) in [("one_way", false), ("duplex", true)] {
        let mut g = c.benchmark_group(format!("core_{name}"));
        // Bytes moved per iteration, both directions counted.
        let moved = if duplex { 2 * TRANSFER } else { TRANSFER };
        g.throughput(Throughput::Bytes(moved as u64));
        for version in [1u8, 2] {
            for streams in [1usize, 100] {
                if duplex && streams != 1 {
                    continue;
                }
                let id = BenchmarkId::new(format!("v{version}"), format!("{streams}_streams"));
                g.bench_function(id, |b| {
                    let (mut client, mut server, now) = pair(version, streams);
                    b.iter(|| transfer(&mut client, &mut server, now, duplex, &data));
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, header, cycle);
criterion_main!(benches);
