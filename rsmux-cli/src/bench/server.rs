//! The server side of the benchmark protocol, shared with the Go peer's `bench-server` role
//! (`interop/go/src/smuxpeer/bench.go`), so every client can drive every server.
//!
//! Every stream (or raw TCP connection) carries requests, each starting with one byte:
//! - `S` + u64 LE `N`: the client sends `N` bytes; the server reads them (128 KiB reads) and
//!   answers u64 LE `N`. Then the next request.
//! - `G` + u64 LE `N`: the server writes `N` bytes (128 KiB writes). Then the next request.
//! - `P`: the server answers `P`, then reads until EOF and closes.
//!
//! EOF before a request ends the stream.
//!
//! With `--echo` the server echoes every stream instead (until EOF, then it half-closes): the
//! raw TCP reference of the bench's echo workloads.

use std::io;

use clap::{Args, ValueEnum};
use rsmux::Session;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::common::{self, Context, Result, SmuxOpts};

/// Size of every benchmark write and read (as Go's `BenchmarkConnSmux`).
pub const IO_SIZE: usize = 128 * 1024;

/// What is written: the content does not matter.
pub static DATA: [u8; IO_SIZE] = [0x5a; IO_SIZE];

/// Transport of a benchmark server.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Every TCP connection is one stream
    Tcp,
    /// Every TCP connection is one smux session
    Smux,
}

/// Arguments of the hidden `__bench-server` subcommand.
#[derive(Args, Debug)]
pub struct ServerArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0",
          value_parser = common::parse_host_port)]
    pub listen: String,
    /// Plain TCP or smux sessions
    #[arg(long, value_enum, default_value_t = Transport::Smux)]
    pub transport: Transport,
    /// Echo every stream until EOF, then half-close, instead of the benchmark protocol
    #[arg(long)]
    pub echo: bool,
    #[command(flatten)]
    pub smux: SmuxOpts,
}

/// Serves benchmark streams until stdin reaches EOF (the parent went away) or a signal.
pub async fn run(args: ServerArgs) -> Result<()> {
    let config = args.smux.config().map_err(common::Failure)?;
    let listener = common::bind(&args.listen).await?;
    common::print_listening(listener.local_addr().context("listener address")?);
    let serve = async {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let echo = args.echo;
            match args.transport {
                Transport::Tcp => {
                    tokio::spawn(serve_logged(tcp, echo));
                }
                Transport::Smux => {
                    let Ok(session) = Session::server(tcp, config.clone()) else {
                        continue;
                    };
                    tokio::spawn(async move {
                        while let Ok(stream) = session.accept_stream().await {
                            tokio::spawn(serve_logged(stream, echo));
                        }
                    });
                }
            }
        }
    };
    let parent_gone = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    tokio::select! {
        () = serve => {}
        () = parent_gone => {}
        _ = common::shutdown_signal() => {}
    }
    Ok(())
}

async fn serve_logged<S: AsyncRead + AsyncWrite + Unpin>(io: S, echo: bool) {
    let res = if echo {
        echo_stream(io).await
    } else {
        serve_stream(io).await
    };
    if let Err(e) = res {
        debug!("bench stream: {e}");
    }
}

/// Echoes one stream until EOF, then half-closes it.
pub async fn echo_stream<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> io::Result<()> {
    let (r, mut w) = tokio::io::split(io);
    let mut r = tokio::io::BufReader::with_capacity(IO_SIZE, r);
    tokio::io::copy_buf(&mut r, &mut w).await?;
    w.shutdown().await
}

/// Serves one benchmark stream.
pub async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let mut cmd = [0u8; 1];
        if io.read(&mut cmd).await? == 0 {
            return Ok(());
        }
        match cmd[0] {
            b'P' => {
                io.write_all(b"P").await?;
                io.flush().await?;
                let mut sink = [0u8; 512];
                while io.read(&mut sink).await? > 0 {}
                return Ok(());
            }
            c @ (b'G' | b'S') => {
                let mut n = [0u8; 8];
                io.read_exact(&mut n).await?;
                let n = u64::from_le_bytes(n);
                if c == b'G' {
                    let mut left = n;
                    while left > 0 {
                        let k = left.min(IO_SIZE as u64) as usize;
                        io.write_all(&DATA[..k]).await?;
                        left -= k as u64;
                    }
                } else {
                    if buf.is_empty() {
                        buf = vec![0u8; IO_SIZE];
                    }
                    let mut left = n;
                    while left > 0 {
                        let k = left.min(IO_SIZE as u64) as usize;
                        let got = io.read(&mut buf[..k]).await?;
                        if got == 0 {
                            return Err(io::ErrorKind::UnexpectedEof.into());
                        }
                        left -= got as u64;
                    }
                    io.write_all(&n.to_le_bytes()).await?;
                }
                io.flush().await?;
            }
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("unknown request byte {other:#x}"),
                ))
            }
        }
    }
}
