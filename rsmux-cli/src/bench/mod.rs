//! `rsmux bench`: raw TCP, rsmux v1 and v2, and Go smux side by side on loopback, directly or
//! through an in-process delay proxy (`--rtt`), every workload several times; optionally the
//! many-sessions scale workload and the fairness picture.
//!
//! Files: [`args`] (flags and help), [`rows`] (who talks to whom, the figures), [`runner`]
//! (running a row once), [`ratios`], [`report`] (the serialized report), [`table`] (text
//! output), [`scale`], [`plot_run`] and [`plot`] (the picture), [`stats`], [`procfs`] (CPU
//! and memory of child processes), and the workloads' pieces: [`workload`], [`server`],
//! [`peers`], [`delay`], [`memory`]. `--kcp`: [`kcp`] (the rows and their runs),
//! [`kcp_net`] (lossy relay, sink, transfer), [`kcp_procs`] (the tunnel processes),
//! [`kcp_report`].

mod args;
mod delay;
mod kcp;
mod kcp_net;
mod kcp_procs;
mod kcp_report;
mod memory;
mod peers;
mod plot;
mod plot_run;
mod procfs;
mod ratios;
mod report;
mod rows;
mod runner;
mod scale;
pub mod server;
mod stats;
mod table;
mod workload;

use std::time::Instant;

pub use self::args::{BenchArgs, EXAMPLES};
use self::{
    args::{GRACE, IDLE_STREAMS},
    rows::{connect_rows, local_rows, ms_text, rtt_suffix, Row},
    runner::{bounded, probe_rtt, progress_bar, run_row, Ctx, TcpEcho},
};
use crate::common::{self, Failure, Result};

/// Runs `rsmux bench`; on a signal the run is dropped, which kills every child process.
pub async fn run(args: BenchArgs) -> Result<()> {
    tokio::select! {
        res = run_bench(args) => res,
        sig = common::shutdown_signal() => Err(Failure(format!("interrupted by {sig}"))),
    }
}

async fn run_bench(args: BenchArgs) -> Result<()> {
    let started = Instant::now();
    let exe = std::env::current_exe()
        .map_err(|e| Failure(format!("cannot find this program's path: {e}")))?;
    let fd_limit = if args.scale_sessions > 0 {
        procfs::raise_fd_limit()
    } else {
        None
    };

    let local = args.connect.is_none();
    let mut rows: Vec<Row> = Vec::new();
    if !args.no_table {
        for rtt in args.rtts() {
            rows.extend(match &args.connect {
                Some(addr) => connect_rows(addr, args.smux.smuxver, rtt),
                None => local_rows(args.quick, args.smux.fixed_streambuf, rtt),
            });
        }
    }
    let repeat = args.repeat as usize;
    let plot_panels = match (&args.plot, local) {
        (None, _) => 0,
        (Some(_), true) => 4,
        (Some(_), false) => 1,
    };
    let workloads: usize = rows.iter().map(|r| r.workloads().len()).sum();
    let memory_steps = if local && !rows.is_empty() { 2 } else { 0 };
    let scale_steps = if args.scale_sessions > 0 {
        2 * repeat
    } else {
        0
    };
    let kcp_steps = if args.kcp {
        kcp::steps(args.kcp_losses().len(), args.repeat)
    } else {
        0
    };
    let steps = (workloads * repeat + memory_steps + scale_steps) as u64 + plot_panels + kcp_steps;
    let mut ctx = Ctx {
        dur: args.base_dur(),
        exe,
        go: Err(String::new()),
        yamux: Err(String::new()),
        progress: progress_bar(steps),
        args,
        probes: Vec::new(),
    };
    ctx.go = if !local {
        Err("not used with --connect".into())
    } else if ctx.args.no_go {
        Err("--no-go given".into())
    } else {
        ctx.step("looking for the Go peer".into());
        peers::find_go_peer(ctx.args.go_peer.as_deref()).await
    };
    ctx.yamux = match &ctx.go {
        Ok(go) if rows.iter().any(|r| r.yamux) => peers::go_yamux(go).await,
        Ok(_) => Err("no yamux row".into()),
        Err(e) => Err(e.clone()),
    };

    if memory_steps > 0 {
        idle_memory(&ctx, &mut rows).await?;
    }
    let tcp_echo = if local {
        None
    } else {
        Some(
            TcpEcho::start()
                .await
                .map_err(|e| Failure(format!("tcp echo: {e}")))?,
        )
    };
    // Round-robin: every row runs once per repetition, so noise hits every row alike.
    for rep in 0..repeat {
        for row in &mut rows {
            if !row.rtt.is_zero() && !ctx.probes.iter().any(|(r, _)| *r == row.rtt) {
                ctx.step(format!("RTT {}: probing the delay proxy", ms_text(row.rtt)));
                let probe = probe_rtt(row.rtt).await;
                ctx.probes.push((row.rtt, probe));
            }
            let missing = match (row.needs_go(), row.yamux) {
                (true, false) => ctx.go.as_ref().err(),
                (_, true) => ctx.yamux.as_ref().err(),
                (false, false) => None,
            };
            if let Some(reason) = missing {
                row.skipped = Some(reason.clone());
                ctx.progress.inc(row.workloads().len() as u64);
                continue;
            }
            run_row(&ctx, row, rep, tcp_echo.as_ref().map(|t| t.addr)).await;
        }
    }
    let scale = if ctx.args.scale_sessions > 0 {
        Some(scale::run(&ctx, fd_limit).await)
    } else {
        None
    };
    let kcp = if ctx.args.kcp {
        Some(kcp::run(&ctx).await)
    } else {
        None
    };
    let plot = match ctx.args.plot.clone() {
        Some(path) => Some(plot_run::draw_plot(&ctx, &path).await),
        None => None,
    };
    ctx.progress.finish_and_clear();

    let total = started.elapsed().as_secs_f64();
    let kcp_report = kcp
        .as_ref()
        .map(|k| kcp_report::build(k, ctx.args.repeat, &ctx.args.kcp_losses()));
    let report = report::build(&ctx, &rows, plot.as_ref(), scale, kcp_report, total);
    if ctx.args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure(format!("cannot serialize the report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", table::render(&report));
    }
    let mut failures: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r.errors
                .iter()
                .map(move |e| format!("{}{}: {e}", r.name, rtt_suffix(r.rtt)))
        })
        .collect();
    if let Some(s) = &report.scale {
        for srv in &s.servers {
            failures.extend(
                srv.errors
                    .iter()
                    .map(|e| format!("scale, {}: {e}", srv.name)),
            );
        }
    }
    if let Some(k) = &report.kcp {
        for row in &k.rows {
            failures.extend(
                row.errors
                    .iter()
                    .map(|e| format!("KCP {}, {}% loss: {e}", row.name, row.loss_percent)),
            );
        }
    }
    if let Some(Err(e)) = &plot {
        failures.push(format!("plot: {e}"));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Failure(format!(
            "{} workload(s) failed; first: {}",
            failures.len(),
            failures[0]
        )))
    }
}

/// The memory figure, measured first, while nothing else runs in this process (the allocator
/// counts everything): on the `rsmux-v1` and `rsmux-v2` rows of the first RTT.
async fn idle_memory(ctx: &Ctx, rows: &mut [Row]) -> Result<()> {
    if !memory::AVAILABLE {
        return Ok(()); // reported as n/a
    }
    let first_rtt = rows.first().map(|r| r.rtt);
    for version in [1u8, 2] {
        ctx.step(format!(
            "memory: {IDLE_STREAMS} idle streams, rsmux v{version}"
        ));
        let config = ctx
            .args
            .smux
            .config_with_version(version)
            .map_err(Failure)?;
        let res = bounded(memory::idle_streams(config, IDLE_STREAMS), GRACE).await;
        if let Some(row) = rows
            .iter_mut()
            .find(|r| r.id == format!("rsmux-v{version}") && Some(r.rtt) == first_rtt)
        {
            match res {
                Ok(m) => row.idle = Some(m),
                Err(e) => row.errors.push(format!("idle streams: {e}")),
            }
        }
        ctx.done();
    }
    Ok(())
}
