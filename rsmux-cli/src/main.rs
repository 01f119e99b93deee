//! `rsmux`: an smux echo server, a kcptun-style TCP tunnel and a side-by-side benchmark, built
//! on the `rsmux` library (wire-compatible with Go's github.com/xtaci/smux).
//!
//! Exit status: 0 on success, 2 on bad usage (one line naming the flag), 1 on a failure at run
//! time.

mod alloc;
mod bench;
mod common;
mod echo;
mod kcptun;
mod shutdown;
mod tunnel;

use std::process::ExitCode;

use clap::{error::ErrorKind, ArgAction, Parser, Subcommand};

/// Counts heap bytes for `rsmux bench`'s idle-stream figure; only with `--features bench-alloc`,
/// so echo and tunnel do not pay an atomic per allocation.
#[cfg(feature = "bench-alloc")]
#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const EXAMPLES: &str = "\
Examples:
  rsmux bench                                        compare raw TCP, rsmux v1/v2 and Go smux
  rsmux echo --listen 127.0.0.1:7000                 smux echo server
  rsmux tunnel server --tls --listen 0.0.0.0:4000 --target 127.0.0.1:22
  rsmux tunnel client --listen 127.0.0.1:2222 --server example.com:4000 --conns 2 \\
      --fingerprint sha256:HEX --secret-file tunnel-secret

Sizes (--smuxbuf, --streambuf, --framesize) are bytes, optionally with a suffix:
K/KiB, M/MiB, G/GiB (powers of 1024) or KB/MB/GB (powers of 1000), e.g. 4MiB, 64KiB.
Exit status: 0 success, 1 failure at run time, 2 bad usage.";

/// Stream multiplexing over TCP, wire-compatible with Go's xtaci/smux.
#[derive(Parser, Debug)]
#[command(name = "rsmux", version, after_help = EXAMPLES, arg_required_else_help = false)]
struct Cli {
    /// More log output on stderr: -v debug, -vv trace (default: info; RUST_LOG is used
    /// when -v is not given)
    #[arg(short, long, action = ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// smux echo server: echoes every stream until the peer's FIN, then closes its side
    #[command(after_help = echo::EXAMPLES)]
    Echo(echo::EchoArgs),
    /// TCP port forwarding over smux: one stream per TCP connection (as kcptun)
    #[command(subcommand, after_help = tunnel::EXAMPLES, arg_required_else_help = false)]
    Tunnel(tunnel::TunnelCommand),
    /// kcptun-compatible client and server over KCP (drop-in for kcptun-client/-server)
    #[command(subcommand, after_help = kcptun::EXAMPLES, arg_required_else_help = false)]
    Kcptun(kcptun::KcptunCommand),
    /// Benchmark on loopback: raw TCP, rsmux v1 and v2, Go smux, side by side
    #[command(after_help = bench::EXAMPLES)]
    Bench(bench::BenchArgs),
    /// Internal: the server side of `rsmux bench`, started by it as a child process
    #[command(name = "__bench-server", hide = true)]
    BenchServer(bench::server::ServerArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_tracing(cli.verbose);

    // Check the flags before anything starts (smux settings; for the tunnel also TLS and
    // authentication flags and plaintext on a non-loopback address): bad usage, exit 2.
    let checked = match &cli.command {
        Command::Echo(a) => a.smux.config().map(drop),
        Command::Tunnel(t) => tunnel::check(t),
        Command::Kcptun(k) => kcptun::check(k),
        Command::Bench(a) => a.check(),
        Command::BenchServer(a) => a.smux.config().map(drop),
    };
    if let Err(msg) = checked {
        eprintln!("error: {msg}");
        return ExitCode::from(2);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Echo(a) => echo::run(a).await,
            Command::Tunnel(t) => tunnel::run(t).await,
            Command::Kcptun(k) => kcptun::run(k).await,
            Command::Bench(a) => bench::run(a).await,
            Command::BenchServer(a) => bench::server::run(a).await,
        }
    });
    // Tasks still running (sessions, copies) are dropped here without waiting.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Prints help or version (exit 0), or a one-line usage error (exit 2).
fn usage_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            eprintln!(
                "error: a subcommand is required: {} (try 'rsmux --help')",
                subcommand_hint()
            );
            ExitCode::from(2)
        }
        _ => {
            eprintln!("{} (try --help)", one_line(&e.render().to_string()));
            ExitCode::from(2)
        }
    }
}

/// Which subcommands the command line was missing, from the words given so far.
fn subcommand_hint() -> &'static str {
    if std::env::args().skip(1).any(|a| a == "tunnel") {
        "'rsmux tunnel server' or 'rsmux tunnel client'"
    } else if std::env::args().skip(1).any(|a| a == "kcptun") {
        "'rsmux kcptun server' or 'rsmux kcptun client'"
    } else {
        "echo, tunnel, kcptun or bench"
    }
}

/// The first paragraph of clap's message, joined into one line.
fn one_line(rendered: &str) -> String {
    let mut out = String::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.is_empty() {
            if out.is_empty() {
                continue;
            }
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(line);
    }
    if !out.starts_with("error:") {
        out.insert_str(0, "error: ");
    }
    out
}

fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = match verbose {
        0 => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,rsmux::driver=warn,rsmux::proto=warn")),
        1 => EnvFilter::new("debug"),
        _ => EnvFilter::new("trace"),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn one_line_joins_the_first_paragraph() {
        let msg = "error: the following required arguments were not provided:\n  --listen <ADDR>\n\nUsage: rsmux echo --listen <ADDR>\n";
        assert_eq!(
            one_line(msg),
            "error: the following required arguments were not provided: --listen <ADDR>"
        );
    }
}
