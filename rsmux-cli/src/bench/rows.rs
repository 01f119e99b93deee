//! The rows of the comparison (who talks to whom), the workloads, and the figures a row
//! collects: one sample per workload and repetition.

use std::{collections::BTreeMap, time::Duration};

use super::{
    args::{ECHO_STREAMS, MANY_STREAMS},
    memory::Memory,
    workload::{Ops, Rate},
};

/// Which implementation runs one end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Rust,
    Go,
}

impl Side {
    /// Name in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Side::Rust => "rsmux",
            Side::Go => "go",
        }
    }
}

/// Where a row's streams go.
#[derive(Clone, Debug)]
pub enum Target {
    /// Local comparison: the benchmark protocol (one way, open/close) against a benchmark
    /// server, and the echo workloads against an echo server, of this kind.
    Bench { client: Side, server: Side },
    /// The echo design, against an in-process raw TCP echo.
    TcpEcho,
    /// The echo design, against a `rsmux echo` child process.
    LocalEcho,
    /// The echo design, against an external server.
    Remote(String),
}

/// A timed workload of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// Local: one stream one way. `--connect`: one stream echoed.
    One,
    /// Local: [`MANY_STREAMS`] one way. `--connect`: as many echoed.
    Many,
    /// Local: one stream echoed.
    EchoOne,
    /// Local: [`ECHO_STREAMS`] echoed.
    EchoMany,
    /// Open a stream, one byte there and back, close; repeated.
    OpenClose,
}

impl Workload {
    /// The workloads measured in MB/s, in table order.
    pub const RATES: [Workload; 4] = [
        Workload::One,
        Workload::Many,
        Workload::EchoOne,
        Workload::EchoMany,
    ];
    /// Every workload, in table order.
    pub const ALL: [Workload; 5] = [
        Workload::One,
        Workload::Many,
        Workload::EchoOne,
        Workload::EchoMany,
        Workload::OpenClose,
    ];

    /// Name in progress and error messages.
    pub fn label(self) -> String {
        match self {
            Workload::One => "1 stream".into(),
            Workload::Many => format!("{MANY_STREAMS} streams"),
            Workload::EchoOne => "echo, 1 stream".into(),
            Workload::EchoMany => format!("echo, {ECHO_STREAMS} streams"),
            Workload::OpenClose => "open/close".into(),
        }
    }

    /// Key in the JSON output.
    pub fn key(self) -> &'static str {
        match self {
            Workload::One => "one_stream",
            Workload::Many => "many_streams",
            Workload::EchoOne => "echo_one_stream",
            Workload::EchoMany => "echo_many_streams",
            Workload::OpenClose => "open_close",
        }
    }
}

/// Which server a workload of a local row talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The benchmark protocol server (`rsmux __bench-server`, Go `bench-server`).
    Bench,
    /// An echo server (`rsmux echo`, Go `echo`, `rsmux __bench-server --echo` for raw TCP);
    /// every workload of a `--connect` row.
    Echo,
}

/// What one run of a workload measured.
#[derive(Clone, Copy, Debug)]
pub enum Figure {
    Rate(Rate),
    Ops(Ops),
}

/// One run of a workload: its figure and what the server process (and a Go client) spent
/// on it.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub figure: Figure,
    /// CPU seconds (user + system) of the server process during the run; `None` when the
    /// server is not a child process (in-process raw TCP echo, `--connect`).
    pub server_cpu: Option<f64>,
    /// CPU seconds (user + system) of the client process, as the Go peer's bench-client
    /// reports them; `None` when this process is the client.
    pub client_cpu: Option<f64>,
}

impl Sample {
    /// Speed: MB/s, or operations per second for open/close.
    pub fn speed(&self) -> f64 {
        match self.figure {
            Figure::Rate(r) => r.mb_s(),
            Figure::Ops(o) => o.ops as f64 / o.secs,
        }
    }

    /// Server CPU seconds per GiB (2^30 bytes) moved; only for MB/s workloads.
    pub fn cpu_per_gib(&self) -> Option<f64> {
        self.per_gib(self.server_cpu?)
    }

    /// Client CPU seconds per GiB moved; only for MB/s workloads with a Go client.
    pub fn client_cpu_per_gib(&self) -> Option<f64> {
        self.per_gib(self.client_cpu?)
    }

    /// Seconds per GiB moved, for MB/s workloads.
    fn per_gib(&self, secs: f64) -> Option<f64> {
        match self.figure {
            Figure::Rate(r) if r.bytes > 0 => Some(secs / (r.bytes as f64 / GIB)),
            _ => None,
        }
    }
}

/// Bytes in a GiB.
pub const GIB: f64 = (1u64 << 30) as f64;

/// One row of the table.
#[derive(Debug)]
pub struct Row {
    pub id: String,
    pub name: String,
    /// `None` for raw TCP.
    pub version: Option<u8>,
    pub target: Target,
    /// The extra row with window auto-tuning off, as before it existed.
    pub fixed_window: bool,
    /// hashicorp/yamux instead of smux (Go client and server; `version` is `None`).
    pub yamux: bool,
    /// Round-trip time added by the delay proxy; zero: direct.
    pub rtt: Duration,
    pub skipped: Option<String>,
    /// Per workload, one entry per repetition (`None`: that run failed or has not run).
    pub samples: BTreeMap<Workload, Vec<Option<Sample>>>,
    pub idle: Option<Memory>,
    pub errors: Vec<String>,
}

impl Row {
    /// A row that has measured nothing yet.
    pub fn new(id: &str, name: &str, version: Option<u8>, target: Target, rtt: Duration) -> Row {
        Row {
            id: id.into(),
            name: name.into(),
            version,
            target,
            fixed_window: false,
            yamux: false,
            rtt,
            skipped: None,
            samples: BTreeMap::new(),
            idle: None,
            errors: Vec::new(),
        }
    }

    /// Whether the row needs the Go peer.
    pub fn needs_go(&self) -> bool {
        matches!(self.target, Target::Bench { client, server } if client == Side::Go || server == Side::Go)
    }

    /// Who runs the workloads.
    pub fn client_side(&self) -> Side {
        match self.target {
            Target::Bench { client, .. } => client,
            _ => Side::Rust,
        }
    }

    /// The client's name in the JSON output.
    pub fn client(&self) -> &'static str {
        self.client_side().name()
    }

    /// The server's name in the JSON output.
    pub fn server(&self) -> String {
        match &self.target {
            Target::Bench { server, .. } => server.name().into(),
            Target::TcpEcho => "tcp-echo".into(),
            Target::LocalEcho => "rsmux echo".into(),
            Target::Remote(a) => a.clone(),
        }
    }

    /// `"smux"`, `"yamux"`, or `"tcp"` for raw TCP.
    pub fn transport(&self) -> &'static str {
        if self.yamux {
            "yamux"
        } else if self.version.is_some() {
            "smux"
        } else {
            "tcp"
        }
    }

    /// Whether one end of the smux session is rsmux.
    pub fn has_rsmux_end(&self) -> bool {
        match self.target {
            Target::Bench { client, server } => client == Side::Rust || server == Side::Rust,
            Target::TcpEcho => false,
            Target::LocalEcho | Target::Remote(_) => true,
        }
    }

    /// The workloads the row runs, in table order.
    pub fn workloads(&self) -> Vec<Workload> {
        use Workload::*;
        match self.target {
            // The yamux row is the reference of the one-way target only.
            Target::Bench { .. } if self.yamux => vec![One, Many],
            // Open/close moves one byte: the window cannot matter, it would repeat rsmux v2.
            Target::Bench { .. } if self.fixed_window => vec![One, Many, EchoOne, EchoMany],
            Target::Bench { .. } => vec![One, Many, EchoOne, EchoMany, OpenClose],
            _ => vec![One, Many, OpenClose],
        }
    }

    /// The server a workload talks to.
    pub fn phase(&self, w: Workload) -> Phase {
        match (&self.target, w) {
            (Target::Bench { .. }, Workload::One | Workload::Many | Workload::OpenClose) => {
                Phase::Bench
            }
            _ => Phase::Echo,
        }
    }

    /// The samples of a workload, one per repetition (empty if the row does not run it).
    pub fn runs(&self, w: Workload) -> &[Option<Sample>] {
        self.samples.get(&w).map_or(&[], Vec::as_slice)
    }

    /// Speed of a workload in one repetition.
    pub fn speed(&self, w: Workload, rep: usize) -> Option<f64> {
        self.runs(w).get(rep).copied().flatten().map(|s| s.speed())
    }

    /// Records a run of a workload; a figure of the wrong kind is an error.
    pub fn record(&mut self, rep: usize, w: Workload, s: Sample) {
        if (w == Workload::OpenClose) != matches!(s.figure, Figure::Ops(_)) {
            self.errors
                .push(format!("{}: wrong kind of figure", w.label()));
            return;
        }
        let runs = self.samples.entry(w).or_default();
        if runs.len() <= rep {
            runs.resize(rep + 1, None);
        }
        runs[rep] = Some(s);
    }
}

/// The rows of the local comparison at one round-trip time.
pub fn local_rows(quick: bool, all_fixed: bool, rtt: Duration) -> Vec<Row> {
    let bench = |client, server| Target::Bench { client, server };
    let row = |id: &str, name: &str, v, t| Row::new(id, name, v, t, rtt);
    let rr = bench(Side::Rust, Side::Rust);
    let mut rows = vec![
        row("tcp", "raw TCP", None, rr.clone()),
        row("rsmux-v1", "rsmux v1", Some(1), rr.clone()),
        row("rsmux-v2", "rsmux v2", Some(2), rr.clone()),
    ];
    if !all_fixed && !quick {
        // The "before" figure, measured in the same run.
        let mut fixed = row("rsmux-v2-fixed", "rsmux v2 fixed window", Some(2), rr);
        fixed.fixed_window = true;
        rows.push(fixed);
    }
    let gg = bench(Side::Go, Side::Go);
    if !quick {
        rows.push(row("go-v1", "Go smux v1", Some(1), gg.clone()));
    }
    rows.push(row("go-v2", "Go smux v2", Some(2), gg.clone()));
    let mut yamux = row("go-yamux", "Go yamux", None, gg);
    yamux.yamux = true;
    rows.push(yamux);
    if !quick {
        for v in [1u8, 2] {
            rows.push(row(
                &format!("rsmux-to-go-v{v}"),
                &format!("rsmux→Go v{v}"),
                Some(v),
                bench(Side::Rust, Side::Go),
            ));
        }
        for v in [1u8, 2] {
            rows.push(row(
                &format!("go-to-rsmux-v{v}"),
                &format!("Go→rsmux v{v}"),
                Some(v),
                bench(Side::Go, Side::Rust),
            ));
        }
    }
    rows
}

/// The rows of `--connect` mode at one round-trip time.
pub fn connect_rows(addr: &str, version: u8, rtt: Duration) -> Vec<Row> {
    vec![
        Row::new("tcp-echo", "raw TCP echo", None, Target::TcpEcho, rtt),
        Row::new(
            "local-echo",
            &format!("rsmux echo v{version}"),
            Some(version),
            Target::LocalEcho,
            rtt,
        ),
        Row::new(
            "remote",
            &format!("{addr} v{version}"),
            Some(version),
            Target::Remote(addr.to_string()),
            rtt,
        ),
    ]
}

/// The round-trip times of the rows, in run order.
pub fn row_rtts(rows: &[Row]) -> Vec<Duration> {
    let mut v: Vec<Duration> = Vec::new();
    for r in rows {
        if !v.contains(&r.rtt) {
            v.push(r.rtt);
        }
    }
    v
}

/// Workloads with a speed, in table order.
pub fn all_workloads(local: bool) -> Vec<Workload> {
    use Workload::*;
    if local {
        Workload::ALL.to_vec()
    } else {
        vec![One, Many, OpenClose]
    }
}

/// " (RTT 10 ms)", or nothing for direct rows.
pub fn rtt_suffix(rtt: Duration) -> String {
    if rtt.is_zero() {
        String::new()
    } else {
        format!(" (RTT {})", ms_text(rtt))
    }
}

/// A round-trip time as text: "0", "10ms", "2.5ms".
pub fn ms_text(d: Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        format!("{}ms", d.as_secs_f64() * 1000.0)
    }
}

/// A byte count as text: "4 MiB", "64 KiB", "100 B".
pub fn size(b: usize) -> String {
    if b >= 1 << 20 && b % (1 << 20) == 0 {
        format!("{} MiB", b >> 20)
    } else if b >= 1 << 10 && b % (1 << 10) == 0 {
        format!("{} KiB", b >> 10)
    } else {
        format!("{b} B")
    }
}
