//! `--plot`: runs several streams of one session per server and samples each stream's
//! throughput, then draws the picture (see [`super::plot`]).

use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Arc,
    },
    time::{Duration, Instant},
};

use super::{
    args::GRACE,
    plot::{self, Panel},
    rows::{size, Phase, Row, Side, Target},
    runner::{bounded, resolve, start_server, Ctx},
    workload::{self, Opener},
};

/// Result of `--plot`: the panels drawn, or why not.
pub type PlotResult = std::result::Result<Vec<Panel>, String>;

/// Samples and draws every panel, writing the SVG to `path`.
pub async fn draw_plot(ctx: &Ctx, path: &Path) -> PlotResult {
    let n = usize::from(ctx.args.plot_streams);
    let secs = if ctx.args.quick { 1.0 } else { 3.0 };
    let interval = if ctx.args.quick { 0.05 } else { 0.1 };
    let mut panels = Vec::new();
    let mut skipped = Vec::new();
    let jobs: Vec<(String, Target, u8)> = match &ctx.args.connect {
        Some(a) => vec![(
            format!("{a} (echo) v{}", ctx.args.smux.smuxver),
            Target::Remote(a.clone()),
            ctx.args.smux.smuxver,
        )],
        None => {
            let b = |server| Target::Bench {
                client: Side::Rust,
                server,
            };
            vec![
                ("rsmux v1 server → rsmux client".into(), b(Side::Rust), 1),
                ("rsmux v2 server → rsmux client".into(), b(Side::Rust), 2),
                ("Go smux v1 server → rsmux client".into(), b(Side::Go), 1),
                ("Go smux v2 server → rsmux client".into(), b(Side::Go), 2),
            ]
        }
    };
    for (title, target, version) in jobs {
        ctx.step(format!("plot: {title}"));
        let row = Row::new("plot", &title, Some(version), target, Duration::ZERO);
        if row.needs_go() {
            if let Err(e) = &ctx.go {
                skipped.push(format!("{title}: {e}"));
                ctx.done();
                continue;
            }
        }
        let res = plot_panel(ctx, &row, n, secs, interval).await;
        ctx.done();
        match res {
            Ok(series) => panels.push(Panel {
                title,
                interval,
                series,
            }),
            Err(e) => return Err(format!("{title}: {e}")),
        }
    }
    let direction = if ctx.args.connect.is_some() {
        "echoed bytes per stream"
    } else {
        "each downloading from the server (G requests, 128 KiB reads)"
    };
    let mut subtitle = format!(
        "{n} streams, {direction}, sampled every {} ms\nsmuxbuf {}, streambuf {}, framesize {}",
        (interval * 1000.0) as u64,
        size(ctx.args.smux.smuxbuf),
        size(ctx.args.smux.streambuf),
        size(ctx.args.smux.framesize)
    );
    if !skipped.is_empty() {
        subtitle.push_str(&format!("; skipped: {}", skipped.join("; ")));
    }
    let svg = plot::svg(&panels, &subtitle)?;
    std::fs::write(path, svg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(panels)
}

/// One panel: `n` streams of one session to the row's server, sampled every `interval`.
async fn plot_panel(
    ctx: &Ctx,
    row: &Row,
    n: usize,
    secs: f64,
    interval: f64,
) -> std::result::Result<Vec<Vec<f64>>, String> {
    let server = start_server(ctx, row, Phase::Bench).await?;
    let addr = match (&server, &row.target) {
        (Some(p), _) => p.addr,
        (None, Target::Remote(a)) => resolve(a).await?,
        _ => return Err("no server".into()),
    };
    let config = ctx
        .args
        .smux
        .config_with_version(row.version.unwrap_or(1))?;
    let opener = bounded(Opener::connect(addr, Some(config)), Duration::from_secs(10)).await?;
    let counters: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let set = if matches!(row.target, Target::Remote(_)) {
        workload::echo_streams(&opener, &counters, &stop).await
    } else {
        workload::downloads(&opener, &counters, &stop).await
    }
    .map_err(|e| e.to_string())?;

    let mut series = vec![Vec::new(); n];
    let mut last = vec![0u64; n];
    let start = Instant::now();
    let mut at = start;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(interval));
    tick.tick().await;
    while start.elapsed().as_secs_f64() < secs {
        tick.tick().await;
        let now = Instant::now();
        let dt = (now - at).as_secs_f64();
        at = now;
        for (i, c) in counters.iter().enumerate() {
            let v = c.load(Relaxed);
            series[i].push((v - last[i]) as f64 / dt / 1e6);
            last[i] = v;
        }
    }
    stop.store(true, Relaxed);
    if matches!(row.target, Target::Remote(_)) {
        // Echo streams end by themselves after their FIN; wait for them politely.
        let mut set = set;
        let _ =
            tokio::time::timeout(GRACE, async { while set.join_next().await.is_some() {} }).await;
    } else {
        drop(set);
    }
    opener.finish().await;
    if let Some(s) = server {
        s.stop().await;
    }
    Ok(series)
}
