//! `rsmux bench --kcp`: rsmux's `kcptun client|server` against Debian's kcptun, each end
//! swapped in turn, on loopback through a lossy UDP relay. Per pairing and loss rate: one TCP
//! connection and 16 in parallel moving bytes one way (client side to the server's target),
//! the CPU time of each tunnel process per GiB, and their resident memory.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::{
    args::GRACE,
    kcp_net::{self, LossyRelay, Sink, Transfer},
    kcp_procs::{find_kcptun, Impl, TunnelProc},
    procfs,
    runner::{bounded, Ctx},
};

/// Who runs the client and the server of a tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pairing {
    pub client: Impl,
    pub server: Impl,
}

/// Every pairing, in table order: the reference first, then each end swapped, then rsmux
/// at both ends.
pub const PAIRINGS: [Pairing; 4] = [
    Pairing {
        client: Impl::Kcptun,
        server: Impl::Kcptun,
    },
    Pairing {
        client: Impl::Rsmux,
        server: Impl::Kcptun,
    },
    Pairing {
        client: Impl::Kcptun,
        server: Impl::Rsmux,
    },
    Pairing {
        client: Impl::Rsmux,
        server: Impl::Rsmux,
    },
];

impl Pairing {
    /// Identifier: `client-server`, e.g. `rsmux-kcptun`.
    pub fn id(self) -> String {
        format!("{}-{}", self.client.name(), self.server.name())
    }

    /// Label: `rsmux → kcptun`.
    pub fn name(self) -> String {
        format!("{} → {}", self.client.name(), self.server.name())
    }

    /// Whether either end is the real kcptun.
    pub fn needs_kcptun(self) -> bool {
        self.client == Impl::Kcptun || self.server == Impl::Kcptun
    }
}

/// A timed transfer of the KCP comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KcpWorkload {
    /// One TCP connection.
    One,
    /// [`MANY_CONNS`] connections at once.
    Many,
}

/// Connections of the parallel workload.
pub const MANY_CONNS: usize = 16;

impl KcpWorkload {
    /// Both, in table order.
    pub const ALL: [KcpWorkload; 2] = [KcpWorkload::One, KcpWorkload::Many];

    /// Key in the JSON output.
    pub fn key(self) -> &'static str {
        match self {
            KcpWorkload::One => "one_conn",
            KcpWorkload::Many => "many_conns",
        }
    }

    /// TCP connections opened.
    pub fn conns(self) -> usize {
        match self {
            KcpWorkload::One => 1,
            KcpWorkload::Many => MANY_CONNS,
        }
    }

    /// Name in progress and error messages.
    pub fn label(self) -> String {
        match self {
            KcpWorkload::One => "1 connection".into(),
            KcpWorkload::Many => format!("{MANY_CONNS} connections"),
        }
    }
}

/// How much a transfer moves and how long it may take.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Bytes per transfer, split evenly over its connections.
    pub bytes: u64,
    /// A transfer that has not finished by then ends there (its figure is what arrived).
    pub limit: Duration,
}

impl Sizes {
    /// 32 MiB in at most 12 s; with `--quick` 2 MiB in at most 2 s.
    pub fn new(quick: bool) -> Sizes {
        if quick {
            Sizes {
                bytes: 2 << 20,
                limit: Duration::from_secs(2),
            }
        } else {
            Sizes {
                bytes: 32 << 20,
                limit: Duration::from_secs(12),
            }
        }
    }
}

/// One transfer: what arrived and what each tunnel process spent.
#[derive(Clone, Copy, Debug)]
pub struct KcpSample {
    pub transfer: Transfer,
    /// CPU seconds (user + system) of the tunnel client process during the transfer.
    pub client_cpu: Option<f64>,
    /// The same of the tunnel server process.
    pub server_cpu: Option<f64>,
}

/// Resident memory of both tunnel processes in one run of a row, bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct KcpMemory {
    /// `VmRSS` once started, before any session.
    pub client_start: Option<u64>,
    /// `VmHWM` after both transfers.
    pub client_peak: Option<u64>,
    pub server_start: Option<u64>,
    pub server_peak: Option<u64>,
}

/// The relay's datagram counts in one run of a row, and the kernel's receive-buffer drops.
#[derive(Clone, Copy, Debug, Default)]
pub struct RelayRun {
    pub up_forwarded: u64,
    pub up_dropped: u64,
    pub down_forwarded: u64,
    pub down_dropped: u64,
    /// Growth of `RcvbufErrors` (all UDP sockets) during the run.
    pub rcvbuf_errors: Option<u64>,
}

/// A pairing at one loss rate, with every repetition.
#[derive(Debug)]
pub struct KcpRow {
    pub pairing: Pairing,
    /// Fraction of datagrams dropped each way (0 to 1).
    pub loss: f64,
    pub skipped: Option<String>,
    pub errors: Vec<String>,
    pub samples: BTreeMap<KcpWorkload, Vec<Option<KcpSample>>>,
    pub memory: Vec<Option<KcpMemory>>,
    pub relay: Vec<Option<RelayRun>>,
}

impl KcpRow {
    /// The runs of a workload, one per repetition.
    pub fn runs(&self, w: KcpWorkload) -> &[Option<KcpSample>] {
        self.samples.get(&w).map_or(&[], Vec::as_slice)
    }

    /// Row identifier: pairing and loss, e.g. `rsmux-kcptun-loss3`.
    pub fn id(&self) -> String {
        format!("{}-loss{}", self.pairing.id(), loss_text(self.loss))
    }

    fn record<T>(v: &mut Vec<Option<T>>, rep: usize, x: T) {
        if v.len() <= rep {
            v.resize_with(rep + 1, || None);
        }
        v[rep] = Some(x);
    }
}

/// A loss fraction as a percentage without needless decimals: "3", "0.5".
pub fn loss_text(loss: f64) -> String {
    let pct = (loss * 1e4).round() / 100.0;
    format!("{pct}")
}

/// Everything the KCP comparison measured.
pub struct KcpRun {
    pub rows: Vec<KcpRow>,
    /// kcptun's programs, or why there are none.
    pub kcptun: Result<(PathBuf, PathBuf), String>,
    pub sizes: Sizes,
    /// 1-minute load average before and after.
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    pub seconds: f64,
}

/// The rows for the given loss percentages.
pub fn rows(losses_pct: &[f64]) -> Vec<KcpRow> {
    let mut rows = Vec::new();
    for &pct in losses_pct {
        for pairing in PAIRINGS {
            rows.push(KcpRow {
                pairing,
                loss: pct / 100.0,
                skipped: None,
                errors: Vec::new(),
                samples: BTreeMap::new(),
                memory: Vec::new(),
                relay: Vec::new(),
            });
        }
    }
    rows
}

/// Progress steps the comparison takes.
pub fn steps(losses: usize, repeat: u32) -> u64 {
    (losses * PAIRINGS.len() * KcpWorkload::ALL.len()) as u64 * u64::from(repeat)
}

/// Runs the comparison: every repetition runs every row once (round-robin, as the smux
/// table), each with fresh tunnel processes and a fresh relay.
pub async fn run(ctx: &Ctx) -> KcpRun {
    let started = Instant::now();
    let load_before = kcp_net::load_average();
    let sizes = Sizes::new(ctx.args.quick);
    let kcptun = find_kcptun();
    let mut rows = rows(&ctx.args.kcp_losses());
    for row in &mut rows {
        if row.pairing.needs_kcptun() {
            if let Err(e) = &kcptun {
                row.skipped = Some(e.clone());
            }
        }
    }
    let payload = kcp_net::payload();
    match Sink::start().await {
        Err(e) => {
            for row in &mut rows {
                row.errors.push(format!("sink: {e}"));
            }
        }
        Ok(sink) => {
            for rep in 0..ctx.args.repeat as usize {
                for row in &mut rows {
                    if row.skipped.is_some() {
                        ctx.progress.inc(KcpWorkload::ALL.len() as u64);
                        continue;
                    }
                    let k = kcptun.as_ref().ok();
                    run_row(ctx, row, rep, &sink, &payload, k, sizes).await;
                }
            }
        }
    }
    KcpRun {
        rows,
        kcptun,
        sizes,
        load_before,
        load_after: kcp_net::load_average(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The seed of the relay's drops: the same for every pairing at a loss rate and repetition.
fn seed(loss: f64, rep: usize) -> u64 {
    0x6b63_7000_0000_0000 ^ (((loss * 1e6) as u64) << 16) ^ rep as u64
}

/// One run of a row: start the server, the relay and the client, run both transfers, read
/// the memory figures, stop everything.
async fn run_row(
    ctx: &Ctx,
    row: &mut KcpRow,
    rep: usize,
    sink: &Sink,
    payload: &Bytes,
    kcptun: Option<&(PathBuf, PathBuf)>,
    sizes: Sizes,
) {
    let prefix = if ctx.args.repeat > 1 {
        format!("run {}: ", rep + 1)
    } else {
        String::new()
    };
    let label = format!(
        "{prefix}KCP {}, {}% loss",
        row.pairing.name(),
        loss_text(row.loss)
    );
    ctx.step(format!("{label}: starting"));
    let fail = |row: &mut KcpRow, e: String| {
        row.errors.push(format!("{prefix}{e}"));
        ctx.progress.inc(KcpWorkload::ALL.len() as u64);
    };
    let server = match TunnelProc::server(row.pairing.server, &ctx.exe, kcptun, sink.addr).await {
        Ok(s) => s,
        Err(e) => return fail(row, format!("server: {e}")),
    };
    let relay = match LossyRelay::start(server.addr, row.loss, seed(row.loss, rep)).await {
        Ok(r) => r,
        Err(e) => return fail(row, format!("relay: {e}")),
    };
    let client = match TunnelProc::client(row.pairing.client, &ctx.exe, kcptun, relay.addr).await {
        Ok(c) => c,
        Err(e) => return fail(row, format!("client: {e}")),
    };
    let rss = |p: &TunnelProc| p.pid().and_then(procfs::rss);
    let mut mem = KcpMemory {
        client_start: rss(&client).map(|r| r.now),
        server_start: rss(&server).map(|r| r.now),
        ..KcpMemory::default()
    };
    let rcvbuf_before = kcp_net::udp_rcvbuf_errors();
    for w in KcpWorkload::ALL {
        ctx.step(format!("{label}: {}", w.label()));
        let cpu = |p: &TunnelProc| p.pid().and_then(procfs::cpu_time);
        let tally = sink.new_transfer();
        let per_conn = sizes.bytes / w.conns() as u64;
        let (c0, s0) = (cpu(&client), cpu(&server));
        let res = bounded(
            kcp_net::transfer(
                client.addr,
                w.conns(),
                per_conn,
                payload,
                &tally,
                sizes.limit,
            ),
            sizes.limit + GRACE,
        )
        .await;
        let (c1, s1) = (cpu(&client), cpu(&server));
        let spent = |a: Option<Duration>, b: Option<Duration>| {
            a.zip(b).map(|(a, b)| b.saturating_sub(a).as_secs_f64())
        };
        match res {
            Ok(transfer) if transfer.bytes > 0 => {
                let sample = KcpSample {
                    transfer,
                    client_cpu: spent(c0, c1),
                    server_cpu: spent(s0, s1),
                };
                KcpRow::record(row.samples.entry(w).or_default(), rep, sample);
            }
            other => {
                let e = match other {
                    Err(e) => e,
                    Ok(_) => format!("nothing arrived in {:?}", sizes.limit),
                };
                let c = &relay.counts;
                let n =
                    |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                row.errors.push(format!(
                    "{prefix}{}: {e} (relay so far: {} datagrams up, {} down; client said: {}; \
                     server said: {})",
                    w.label(),
                    n(&c.up_forwarded),
                    n(&c.down_forwarded),
                    client.last_line(),
                    server.last_line()
                ));
                if std::env::var_os("RSMUX_BENCH_KCP_LOGS").is_some() {
                    tracing::warn!(
                        "client log:\n{}\nserver log:\n{}",
                        client.log(),
                        server.log()
                    );
                }
            }
        }
        ctx.done();
    }
    mem.client_peak = rss(&client).map(|r| r.peak);
    mem.server_peak = rss(&server).map(|r| r.peak);
    KcpRow::record(&mut row.memory, rep, mem);
    let c = &relay.counts;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let relay_run = RelayRun {
        up_forwarded: load(&c.up_forwarded),
        up_dropped: load(&c.up_dropped),
        down_forwarded: load(&c.down_forwarded),
        down_dropped: load(&c.down_dropped),
        rcvbuf_errors: rcvbuf_before
            .zip(kcp_net::udp_rcvbuf_errors())
            .map(|(a, b)| b.saturating_sub(a)),
    };
    KcpRow::record(&mut row.relay, rep, relay_run);
    client.stop().await;
    drop(relay);
    server.stop().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cover_every_pairing_at_every_loss() {
        let rows = rows(&[0.0, 3.0]);
        let ids: Vec<String> = rows.iter().map(KcpRow::id).collect();
        assert_eq!(
            ids,
            [
                "kcptun-kcptun-loss0",
                "rsmux-kcptun-loss0",
                "kcptun-rsmux-loss0",
                "rsmux-rsmux-loss0",
                "kcptun-kcptun-loss3",
                "rsmux-kcptun-loss3",
                "kcptun-rsmux-loss3",
                "rsmux-rsmux-loss3",
            ]
        );
        assert_eq!(rows[1].pairing.name(), "rsmux → kcptun");
        assert!(!rows[3].pairing.needs_kcptun() && rows[2].pairing.needs_kcptun());
        assert_eq!(loss_text(0.005), "0.5");
        assert_eq!(steps(2, 3), 48);
    }

    #[test]
    fn every_pairing_at_a_loss_rate_gets_the_same_drops() {
        assert_eq!(seed(0.03, 1), seed(0.03, 1));
        assert_ne!(seed(0.03, 1), seed(0.03, 2));
        assert_ne!(seed(0.0, 1), seed(0.03, 1));
    }
}
