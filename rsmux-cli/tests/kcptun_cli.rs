//! `rsmux kcptun client|server` against Debian's real `kcptun-client`/`kcptun-server` and
//! against each other, through real processes, TCP and UDP on loopback.

mod common;

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    time::Duration,
};

use common::{
    echo_then_shutdown, echo_through, pattern, rsmux, runtime, tcp_echo_target, within, Proc,
    Shutdown,
};
use rsmux_test_support::process::Child;

/// Test key (the same on both ends).
const KEY: &str = "rsmux kcptun cli test";

/// Path of a kcptun binary. On a fresh Debian machine, running as root, installs Debian's
/// `kcptun` first (one test process at a time, under a lock), as the rsmux-kcp tests do;
/// `RSMUX_NO_APT=1` turns that off.
fn kcptun_bin(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    if !std::path::Path::new(&path).exists() {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0"));
        if root && std::env::var_os("RSMUX_NO_APT").is_none() {
            let script = "command -v kcptun-server >/dev/null 2>&1 || { command -v apt-get \
                >/dev/null && apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq kcptun; }";
            let _ = Command::new("flock")
                .args(["/tmp/rsmux-kcptun-install.lock", "sh", "-c", script])
                .stdout(Stdio::null())
                .status();
        }
    }
    assert!(
        std::path::Path::new(&path).exists(),
        "{name} not found: these tests run against the real kcptun; install it with \
         `apt-get install -y kcptun`"
    );
    path
}

/// A real kcptun process, killed on drop (its log is printed then with `KCPTUN_LOG` set, and
/// when the test fails).
struct Kcptun {
    child: Child,
    /// The address from its "listening on:" log line.
    listening: String,
}

impl Drop for Kcptun {
    fn drop(&mut self) {
        if std::env::var_os("KCPTUN_LOG").is_some() {
            eprintln!(
                "--- log of {} ---\n{}",
                self.child.desc(),
                self.child.stderr()
            );
        }
    }
}

impl Kcptun {
    /// Starts `name args` and waits for "key derivation done" (the client has bound its TCP
    /// port by then; the server binds its UDP port right after, and KCP retransmits anything
    /// sent before).
    fn start(name: &str, args: &[&str]) -> Kcptun {
        let child = Child::spawn(kcptun_bin(name), args);
        assert!(
            child.wait_stderr("key derivation done", Duration::from_secs(20)),
            "{name} {args:?} did not start: {}",
            child.stderr()
        );
        let log = child.stderr();
        let listening = log
            .lines()
            .take_while(|l| !l.contains("key derivation done"))
            .filter_map(|l| l.split_once("listening on: "))
            .map(|(_, addr)| addr.trim().to_string())
            .last()
            .unwrap_or_default();
        Kcptun { child, listening }
    }
}

/// `rsmux kcptun server` on a free UDP port of 127.0.0.1, forwarding to `target`, with the test
/// key and `extra` flags.
fn rsmux_kcptun_server(target: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "kcptun",
        "server",
        "-l",
        "127.0.0.1:0",
        "-t",
        target,
        "--key",
        KEY,
    ];
    args.extend_from_slice(extra);
    Proc::rsmux(&args)
}

/// `rsmux kcptun client` on a free TCP port of 127.0.0.1, to the server at `udp`, with the test
/// key and `extra` flags.
fn rsmux_kcptun_client(udp: &str, extra: &[&str]) -> Proc {
    let mut args = vec![
        "kcptun",
        "client",
        "-l",
        "127.0.0.1:0",
        "-r",
        udp,
        "--key",
        KEY,
    ];
    args.extend_from_slice(extra);
    Proc::rsmux(&args)
}

/// A free UDP port on loopback (bound and released; kcptun-server binds it right after).
fn free_udp_port() -> String {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// Echoes a small and a multi-MiB payload through `addr`, each on its own connection,
/// byte-exact. The client shuts down only after the whole echo came back (kcptun has no
/// half-close).
async fn echo_small_and_large(addr: SocketAddr) {
    within(Duration::from_secs(20), "small echo", async {
        echo_through(addr, pattern(1, 1000), Shutdown::AfterEcho).await
    })
    .await;
    within(Duration::from_secs(30), "4 MiB echo", async {
        echo_through(addr, pattern(2, 4 << 20), Shutdown::AfterEcho).await
    })
    .await;
}

#[test]
fn rsmux_client_to_real_kcptun_server_with_kcptun_defaults() {
    let rt = runtime();
    rt.block_on(async {
        let target = tcp_echo_target().await.to_string();
        let udp = free_udp_port();
        let _server = Kcptun::start("kcptun-server", &["-l", &udp, "-t", &target, "--key", KEY]);
        let client = rsmux_kcptun_client(&udp, &[]);
        echo_small_and_large(client.addr).await;
    });
}

#[test]
fn real_kcptun_client_to_rsmux_server_with_kcptun_defaults() {
    let rt = runtime();
    rt.block_on(async {
        let target = tcp_echo_target().await.to_string();
        // The key from kcptun's environment variable rather than --key.
        let env_key = format!("KCPTUN_KEY={KEY}");
        let server = Proc::start(
            "env",
            &[
                &env_key,
                common::bin(),
                "kcptun",
                "server",
                "-l",
                "127.0.0.1:0",
                "-t",
                &target,
            ],
        );
        let udp = server.addr.to_string();
        let client = Kcptun::start(
            "kcptun-client",
            &["-l", "127.0.0.1:0", "-r", &udp, "--key", KEY],
        );
        let addr: SocketAddr = client.listening.parse().expect("kcptun-client's address");
        echo_small_and_large(addr).await;
    });
}

/// Flags other than kcptun's defaults, as a command line and as kcptun JSON keys.
const NON_DEFAULT: &[&str] = &[
    "--crypt",
    "salsa20",
    "--mode",
    "fast3",
    "--nocomp",
    "--smuxver",
    "2",
    "--ds",
    "0",
    "--ps",
    "0",
    "--mtu",
    "1200",
];

#[test]
fn rsmux_client_to_rsmux_server_non_default_flags() {
    let rt = runtime();
    rt.block_on(async {
        let target = tcp_echo_target().await.to_string();
        let server = rsmux_kcptun_server(&target, NON_DEFAULT);
        let udp = server.addr.to_string();
        let client = rsmux_kcptun_client(&udp, NON_DEFAULT);
        echo_small_and_large(client.addr).await;
        assert!(
            client.stderr().contains("crypt salsa20"),
            "{}",
            client.stderr()
        );
        assert!(server.stderr().contains("smux v2"), "{}", server.stderr());
    });
}

#[test]
fn json_config_overrides_flags() {
    let rt = runtime();
    rt.block_on(async {
        let target = tcp_echo_target().await.to_string();
        let dir = std::env::temp_dir().join(format!("rsmux-kcptun-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The non-default settings as kcptun's JSON keys; the flags given alongside say
        // otherwise (aes, snappy, v1) and must lose.
        let body = |addr_key: &str, addr: &str, target_key: &str, target: &str| {
            format!(
                r#"{{"{addr_key}": "{addr}", "{target_key}": "{target}", "key": "{KEY}",
                "crypt": "salsa20", "mode": "fast3", "nocomp": true, "smuxver": 2,
                "datashard": 0, "parityshard": 0, "mtu": 1200, "quiet": true}}"#
            )
        };
        let server_json = dir.join("server.json");
        std::fs::write(
            &server_json,
            body("listen", "127.0.0.1:0", "target", &target),
        )
        .unwrap();
        let server = Proc::rsmux(&[
            "kcptun",
            "server",
            "--crypt",
            "aes",
            "--smuxver",
            "1",
            "-c",
            server_json.to_str().unwrap(),
        ]);
        let client_json = dir.join("client.json");
        std::fs::write(
            &client_json,
            body(
                "localaddr",
                "127.0.0.1:0",
                "remoteaddr",
                &server.addr.to_string(),
            ),
        )
        .unwrap();
        let client = Proc::rsmux(&[
            "kcptun",
            "client",
            "--key",
            "not the key",
            "-c",
            client_json.to_str().unwrap(),
        ]);
        echo_small_and_large(client.addr).await;
        assert!(server.stderr().contains("smux v2"), "{}", server.stderr());
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn conn_3_spreads_10_parallel_connections_over_3_sessions() {
    let rt = runtime();
    rt.block_on(async {
        let target = tcp_echo_target().await.to_string();
        let server = rsmux_kcptun_server(&target, &[]);
        let udp = server.addr.to_string();
        let client = rsmux_kcptun_client(&udp, &["--conn", "3"]);
        let addr = client.addr;
        let tasks: Vec<_> = (0..10u64)
            .map(|i| {
                tokio::spawn(async move {
                    echo_through(addr, pattern(10 + i, 200_000), Shutdown::AfterEcho).await
                })
            })
            .collect();
        within(Duration::from_secs(30), "10 parallel echoes", async {
            for t in tasks {
                t.await.unwrap();
            }
        })
        .await;
        // Every session logged "session from" before its first stream was served.
        let sessions = server.stderr().matches("session from").count();
        assert_eq!(sessions, 3, "{}", server.stderr());
        assert_eq!(
            client.stderr().matches("dialled").count(),
            3,
            "{}",
            client.stderr()
        );
    });
}

#[test]
fn usage_errors_exit_2_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["kcptun", "client", "--tcp"], "--tcp"),
        (&["kcptun", "server", "--tcp"], "--tcp"),
        (&["kcptun", "client", "--crypt", "aes-512"], "--crypt"),
        (&["kcptun", "server", "--crypt", "rc4"], "--crypt \"rc4\""),
        (&["kcptun", "client", "--mode", "turbo"], "--mode"),
        (&["kcptun", "client", "--mtu", "9000"], "--mtu"),
        (&["kcptun", "client", "--conn", "0"], "--conn"),
        (&["kcptun", "server", "--smuxver", "3"], "--smuxver"),
        (&["kcptun", "client", "--sndwnd", "x"], "--sndwnd"),
        (
            &["kcptun", "client", "-c", "/nonexistent/kcptun.json"],
            "-c",
        ),
    ];
    for (args, flag) in cases {
        let out = rsmux(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} should name {flag}: {err}");
    }
}

#[test]
fn unix_socket_target() {
    let rt = runtime();
    rt.block_on(async {
        let dir = std::env::temp_dir().join(format!("rsmux-kcptun-unix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("echo.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = tokio::io::split(conn);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let target = path.to_str().unwrap();
        let server = rsmux_kcptun_server(target, &[]);
        let udp = server.addr.to_string();
        let client = rsmux_kcptun_client(&udp, &[]);
        within(Duration::from_secs(20), "echo via a Unix socket", async {
            echo_through(client.addr, pattern(3, 300_000), Shutdown::AfterEcho).await
        })
        .await;
        let _ = std::fs::remove_dir_all(&dir);
    });
}

#[test]
fn autoexpire_replaces_the_session_for_new_connections() {
    let rt = runtime();
    rt.block_on(async {
        let target = tcp_echo_target().await.to_string();
        let server = rsmux_kcptun_server(&target, &[]);
        let udp = server.addr.to_string();
        let client = rsmux_kcptun_client(&udp, &["--autoexpire", "1", "--scavengettl", "0"]);
        // Connections keep coming; once the first session is a second old, the next one
        // replaces it (and the old one is closed at once, --scavengettl 0).
        within(Duration::from_secs(10), "session expiry", async {
            let mut seed = 20;
            while !client.stderr().contains("session 0 expired") {
                echo_through(client.addr, pattern(seed, 10_000), Shutdown::AfterEcho).await;
                seed += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            echo_through(client.addr, pattern(seed, 10_000), Shutdown::AfterEcho).await;
        })
        .await;
        assert!(
            client.stderr().matches("dialled").count() >= 2,
            "{}",
            client.stderr()
        );
        assert!(
            server.stderr().matches("session from").count() >= 2,
            "{}",
            server.stderr()
        );
    });
}

#[test]
fn no_half_close_as_kcptun() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = runtime();
    rt.block_on(async {
        // The target answers only after the request's EOF: through kcptun that answer never
        // comes back, since the first EOF closes both directions.
        let target = common::request_eof_target(100_000).await.to_string();
        let server = rsmux_kcptun_server(&target, &[]);
        let udp = server.addr.to_string();
        let client = rsmux_kcptun_client(&udp, &[]);
        let mut tcp = tokio::net::TcpStream::connect(client.addr).await.unwrap();
        tcp.write_all(b"request").await.unwrap();
        tcp.shutdown().await.unwrap();
        let mut got = Vec::new();
        let read = within(Duration::from_secs(10), "close after EOF", async {
            tcp.read_to_end(&mut got).await
        })
        .await;
        assert!(
            got.is_empty(),
            "{} bytes came back after a half-close ({read:?})",
            got.len()
        );
    });
}

#[test]
fn rsmux_client_to_real_kcptun_server_same_non_default_command_line() {
    let rt = runtime();
    rt.block_on(async {
        let target = tcp_echo_target().await.to_string();
        let udp = free_udp_port();
        // The very same flags go to kcptun-server and to rsmux.
        let mut args = vec!["-l", &udp, "-t", &target, "--key", KEY];
        args.extend(NON_DEFAULT);
        let _server = Kcptun::start("kcptun-server", &args);
        let client = rsmux_kcptun_client(&udp, NON_DEFAULT);
        echo_small_and_large(client.addr).await;
    });
}

/// One echo of `data` through `addr` that reports failure (the connection closed or reset,
/// the echo differs) instead of panicking: used while a tunnel may still be broken.
async fn try_echo(addr: SocketAddr, data: &[u8]) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let (mut r, mut w) = tcp.into_split();
    let write = async { w.write_all(data).await.is_ok() };
    let read = async {
        let mut got = vec![0u8; data.len()];
        r.read_exact(&mut got).await.is_ok() && got == data
    };
    let (wrote, read) = tokio::join!(write, read);
    wrote && read
}

/// Like kcptun-client, `rsmux kcptun client` dials a new session when its session dies: here
/// the real kcptun-server is killed and started again on the same port. The old session
/// hears nothing back from the new server (KCP has no reset; the new server cannot continue
/// a stream it never saw), so it ends by the smux keepalive timeout (shortened to 3 s with the
/// hidden --keepalive-timeout; kcptun's is 30 s) and the next connection goes over a new
/// session. Connections are tried until one echoes, each for at most 2 s.
#[test]
fn client_redials_when_the_server_restarts() {
    let rt = runtime();
    rt.block_on(async {
        let target = tcp_echo_target().await.to_string();
        let udp = free_udp_port();
        let server_args = ["-l", &udp, "-t", &target, "--key", KEY];
        let server = Kcptun::start("kcptun-server", &server_args);
        let client = rsmux_kcptun_client(&udp, &["--keepalive", "1", "--keepalive-timeout", "3"]);
        within(Duration::from_secs(20), "echo before the restart", async {
            echo_through(client.addr, pattern(40, 200_000), Shutdown::AfterEcho).await
        })
        .await;
        drop(server);
        let _server = Kcptun::start("kcptun-server", &server_args);
        let attempts = within(
            Duration::from_secs(30),
            "an echo after the restart",
            async {
                let data = pattern(41, 100_000);
                let mut attempts = 1;
                while !matches!(
                    tokio::time::timeout(Duration::from_secs(2), try_echo(client.addr, &data))
                        .await,
                    Ok(true)
                ) {
                    attempts += 1;
                }
                attempts
            },
        )
        .await;
        let log = client.stderr();
        assert!(log.contains("re-dialling"), "{log}");
        assert_eq!(log.matches("dialled").count(), 2, "{log}");
        eprintln!("working again after {attempts} attempt(s)");
    });
}

/// A target for the transfer tests, steered by the first byte a connection sends: `E` echoes
/// everything after it; `C` reads a u32 LE length, sends `pattern(7, length)` and closes at
/// once without waiting for the client (the target closes first).
async fn steered_target() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = tcp.into_split();
                let mut r = tokio::io::BufReader::with_capacity(64 * 1024, r);
                let mut kind = [0u8; 1];
                if r.read_exact(&mut kind).await.is_err() {
                    return;
                }
                if kind[0] == b'E' {
                    echo_then_shutdown(&mut r, &mut w).await;
                } else {
                    let mut len = [0u8; 4];
                    if r.read_exact(&mut len).await.is_ok() {
                        let n = u32::from_le_bytes(len) as usize;
                        let _ = w.write_all(&pattern(7, n)).await;
                        let _ = w.shutdown().await;
                    }
                }
            });
        }
    });
    addr
}

/// Echoes `data` through `addr` to a [`steered_target`] (both directions at once), checks it
/// byte for byte, then closes (after the echo: kcptun has no half-close).
async fn steered_echo(addr: SocketAddr, data: &[u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = tcp.into_split();
    let write = async {
        w.write_all(b"E").await.unwrap();
        for chunk in data.chunks(256 * 1024) {
            w.write_all(chunk).await.unwrap();
        }
    };
    let read = async {
        let mut got = vec![0u8; data.len()];
        r.read_exact(&mut got).await.expect("the whole echo");
        got
    };
    let ((), got) = tokio::join!(write, read);
    assert!(got == data, "echo of {} bytes differs", data.len());
    w.shutdown().await.unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await.expect("EOF after ours");
    assert!(rest.is_empty(), "{} bytes too many", rest.len());
}

/// kcptun's data path through a tunnel at `addr` (whose target is a [`steered_target`]):
/// 64 MiB echoed on one connection (64 MiB each way at once), 100 connections in parallel,
/// 500 in sequence, and a target that sends 1 MiB and closes first (every byte arrives, then
/// EOF, without the client closing anything).
async fn transfer_suite(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let big = pattern(64, 64 << 20);
    let t = std::time::Instant::now();
    within(
        Duration::from_secs(120),
        "64 MiB echo",
        steered_echo(addr, &big),
    )
    .await;
    eprintln!("64 MiB echo: {:?}", t.elapsed());
    drop(big);
    let t = std::time::Instant::now();

    let parallel: Vec<_> = (0..100u64)
        .map(|i| tokio::spawn(async move { steered_echo(addr, &pattern(100 + i, 64 << 10)).await }))
        .collect();
    within(Duration::from_secs(60), "100 parallel connections", async {
        for t in parallel {
            t.await.unwrap();
        }
    })
    .await;
    eprintln!("100 parallel: {:?}", t.elapsed());
    let t = std::time::Instant::now();

    let small = pattern(500, 1024);
    within(
        Duration::from_secs(120),
        "500 sequential connections",
        async {
            for _ in 0..500 {
                steered_echo(addr, &small).await;
            }
        },
    )
    .await;
    eprintln!("500 sequential: {:?}", t.elapsed());

    within(Duration::from_secs(30), "target closes first", async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let n = 1u32 << 20;
        tcp.write_all(b"C").await.unwrap();
        tcp.write_all(&n.to_le_bytes()).await.unwrap();
        let mut got = Vec::new();
        tcp.read_to_end(&mut got).await.unwrap();
        assert!(
            got == pattern(7, n as usize),
            "{} of {n} bytes, or different",
            got.len()
        );
    })
    .await;
}

/// Windows wide enough that 64 MiB is quick (kcptun-client's default 128/512 would take ~15 s).
const WIDE: &[&str] = &["--sndwnd", "1024", "--rcvwnd", "1024"];

#[test]
fn rsmux_client_with_real_kcptun_server_transfers() {
    let rt = runtime();
    rt.block_on(async {
        let target = steered_target().await.to_string();
        let udp = free_udp_port();
        let mut args = vec!["-l", &udp, "-t", &target, "--key", KEY, "--quiet"];
        args.extend(WIDE);
        let _server = Kcptun::start("kcptun-server", &args);
        let mut extra = vec!["--quiet"];
        extra.extend(WIDE);
        let client = rsmux_kcptun_client(&udp, &extra);
        let started = std::time::Instant::now();
        transfer_suite(client.addr).await;
        eprintln!("rsmux client -> kcptun-server: {:?}", started.elapsed());
    });
}

#[test]
fn real_kcptun_client_with_rsmux_server_transfers() {
    let rt = runtime();
    rt.block_on(async {
        let target = steered_target().await.to_string();
        let mut extra = vec!["--quiet"];
        extra.extend(WIDE);
        let server = rsmux_kcptun_server(&target, &extra);
        let udp = server.addr.to_string();
        let mut args = vec!["-l", "127.0.0.1:0", "-r", &udp, "--key", KEY, "--quiet"];
        args.extend(WIDE);
        let client = Kcptun::start("kcptun-client", &args);
        let addr: SocketAddr = client.listening.parse().expect("kcptun-client's address");
        let started = std::time::Instant::now();
        transfer_suite(addr).await;
        eprintln!("kcptun-client -> rsmux server: {:?}", started.elapsed());
    });
}
