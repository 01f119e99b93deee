//! One stream's bulk transfer between two sessions in one process over loopback TCP, as a
//! plain program to run under a profiler (`valgrind --tool=callgrind`, `perf stat`): moves
//! `RSMUX_MIB` MiB (default 256) in 128 KiB writes and 128 KiB reads, v1 unless
//! `RSMUX_VERSION=2`, over `RSMUX_STREAMS` streams (default 1, each moving its share), and
//! prints the rate. Not a criterion bench: a profile wants one fixed
//! amount of work, not calibrated repetitions.

use std::time::Instant;

use rsmux::{Config, Session, Version};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const IO_SIZE: usize = 128 * 1024;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; any other run (cargo test --benches) only checks it starts.
    let mib = if std::env::args().any(|a| a == "--bench") {
        env_or("RSMUX_MIB", 256)
    } else {
        1
    };
    let version = env_or("RSMUX_VERSION", 1) as u8;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(env_or("RSMUX_THREADS", 2))
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let (c, s) = tokio::join!(TcpStream::connect(addr), l.accept());
        let (c, s) = (c.expect("connect"), s.expect("accept").0);
        c.set_nodelay(true).expect("nodelay");
        s.set_nodelay(true).expect("nodelay");
        let config = Config::default().with_version(Version::try_from(version).expect("1 or 2"));
        let client = Session::client(c, config.clone()).expect("client");
        let server = Session::server(s, config).expect("server");
        let streams = env_or("RSMUX_STREAMS", 1).max(1);
        let writes = (mib * 1024 * 1024 / IO_SIZE / streams).max(1);
        let total = writes * IO_SIZE * streams;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let mut w = client.open_stream().await.expect("open");
            tasks.push(tokio::spawn(async move {
                let buf = vec![1u8; IO_SIZE];
                for _ in 0..writes {
                    w.write_all(&buf).await.expect("write");
                }
                w.shutdown().await.expect("shutdown");
                0
            }));
            let mut r = server.accept_stream().await.expect("accept");
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; IO_SIZE];
                let mut got = 0;
                loop {
                    let n = r.read(&mut buf).await.expect("read");
                    if n == 0 {
                        return got;
                    }
                    got += n;
                }
            }));
        }
        let mut got = 0;
        for t in tasks {
            got += t.await.expect("task");
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(got, total);
        println!(
            "v{version}, {streams} streams: {} MiB in {secs:.3} s, {:.0} MB/s",
            total >> 20,
            total as f64 / secs / 1e6
        );
    });
}
