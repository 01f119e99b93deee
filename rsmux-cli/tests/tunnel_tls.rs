//! The secure tunnel: `rsmux tunnel server --tls` and clients with `--fingerprint` or `--ca`
//! and the shared secret, as real processes over real TCP. Every refusal is checked on both
//! ends, and a target that counts its connections shows that nothing reached it.

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{
    bin, echo_connection, echo_through, pattern, request_eof_target, request_response, runtime,
    tunnel_client, tunnel_server, within, Proc, Shutdown,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Waits for log lines: generous, as the machine may be busy.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// Name in the certificate the server generates.
const GENERATED_NAME: &str = "rsmux-tunnel";

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rsmux-tls-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// `name` in this directory, as a string for the command line.
    fn file(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_string()
    }

    /// Writes a file readable by its owner only (so no permission warning is logged).
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        path.to_str().unwrap().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP echo target that counts the connections it accepted.
async fn counting_echo_target() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(echo_connection(tcp));
        }
    });
    (addr, count)
}

/// A TLS server on loopback with its certificate and secret in `dir`; returns it and the
/// fingerprint it logged.
fn tls_server(target: SocketAddr, dir: &TempDir, extra: &[&str]) -> (Proc, String) {
    let d = dir.path().to_str().unwrap();
    let mut args = vec!["--tls", "--tls-dir", d];
    args.extend(extra);
    let server = tunnel_server(&target.to_string(), &args);
    let fingerprint = logged_fingerprint(&server);
    (server, fingerprint)
}

/// A TLS tunnel server (see [`tls_server`]) in front of a target that counts its connections.
fn counted_tls_server(
    rt: &tokio::runtime::Runtime,
    dir: &TempDir,
    extra: &[&str],
) -> (Proc, String, Arc<AtomicUsize>) {
    let (target, count) = rt.block_on(counting_echo_target());
    let (server, fingerprint) = tls_server(target, dir, extra);
    (server, fingerprint, count)
}

/// The fingerprint in a server's log.
fn logged_fingerprint(server: &Proc) -> String {
    assert!(
        server.wait_stderr("certificate fingerprint sha256:", LOG_WAIT),
        "no fingerprint logged: {}",
        server.stderr()
    );
    let log = server.stderr();
    let at =
        log.find("certificate fingerprint sha256:").unwrap() + "certificate fingerprint ".len();
    let fingerprint: String = log[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert_eq!(fingerprint.len(), "sha256:".len() + 64, "{fingerprint}");
    fingerprint
}

/// Connects through a client that has no session and checks the connection is closed
/// (EOF or reset) without anything coming back.
async fn connection_is_closed(addr: SocketAddr) {
    // The client resets the connection, maybe before connect() returns.
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return;
    };
    let _ = tcp.write_all(b"anyone there?").await;
    let mut buf = [0u8; 64];
    let got = tcp.read(&mut buf).await;
    assert!(
        !matches!(got, Ok(n) if n > 0),
        "data came back through a refused tunnel"
    );
}

/// A connection through the client at `addr` is closed with nothing coming back.
fn refused(rt: &tokio::runtime::Runtime, addr: SocketAddr) {
    rt.block_on(within(
        Duration::from_secs(20),
        "refused",
        connection_is_closed(addr),
    ));
}

/// The target has seen exactly `connections` connections: no refused client reached it.
fn target_saw(count: &AtomicUsize, connections: usize) {
    assert_eq!(
        count.load(Ordering::SeqCst),
        connections,
        "a refused client reached the target"
    );
}

/// Waits for `needle` in the log of `p`, failing with the whole log.
fn expect_log(p: &Proc, who: &str, needle: &str) {
    assert!(
        p.wait_stderr(needle, LOG_WAIT),
        "{who} did not log {needle:?}: {}",
        p.stderr()
    );
}

/// Runs `rsmux args` to completion without `RSMUX_SECRET` in its environment; returns the
/// exit code and stderr.
fn run_clean(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("RSMUX_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts a run failed with `code` and exactly one line on stderr that contains `needles`.
fn one_line_error(args: &[&str], code: i32, needles: &[&str]) {
    let (got, stderr) = run_clean(args);
    assert_eq!(got, Some(code), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
    }
}

#[test]
fn transfers_through_tls_are_byte_exact_v1_and_v2() {
    let rt = runtime();
    for version in ["1", "2"] {
        let dir = TempDir::new("bytes");
        let (server, fingerprint, count) = counted_tls_server(&rt, &dir, &["--smuxver", version]);
        let secret = dir.file("tunnel-secret");
        let client = tunnel_client(
            &server,
            &[
                "--smuxver",
                version,
                "--fingerprint",
                &fingerprint,
                "--secret-file",
                &secret,
            ],
        );
        let addr = client.addr;
        rt.block_on(within(
            Duration::from_secs(60),
            "4 MiB both ways",
            async move {
                // Two at once, shutting down early and late.
                let a = tokio::spawn(echo_through(
                    addr,
                    pattern(1, 4 << 20),
                    Shutdown::AfterWriting,
                ));
                let b = tokio::spawn(echo_through(addr, pattern(2, 3 << 20), Shutdown::AfterEcho));
                a.await.unwrap();
                b.await.unwrap();
            },
        ));
        assert_eq!(count.load(Ordering::SeqCst), 2);
        expect_log(&server, "server", "(TLS, secret proved)");
    }
}

#[test]
fn half_close_crosses_the_tls_tunnel_v1_and_v2() {
    let rt = runtime();
    for version in ["1", "2"] {
        let dir = TempDir::new("half");
        let target = rt.block_on(request_eof_target(1 << 20));
        let (server, fingerprint) = tls_server(target, &dir, &["--smuxver", "auto"]);
        let secret = dir.file("tunnel-secret");
        let client = tunnel_client(
            &server,
            &[
                "--smuxver",
                version,
                "--conns",
                "2",
                "--fingerprint",
                &fingerprint,
                "--secret-file",
                &secret,
            ],
        );
        let addr = client.addr;
        rt.block_on(within(Duration::from_secs(60), "half-close", async move {
            let mut tasks = Vec::new();
            for i in 0..4usize {
                tasks.push(tokio::spawn(request_response(addr, i * 100_003, 1 << 20)));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }));
    }
}

#[test]
fn a_ca_file_and_server_name_verify_the_server() {
    let rt = runtime();
    let dir = TempDir::new("ca");
    let (server, _, count) = counted_tls_server(&rt, &dir, &[]);
    let cert = dir.file("tunnel-cert.pem");
    let secret = dir.file("tunnel-secret");
    // The self-signed certificate is its own CA, for its name.
    let good = tunnel_client(
        &server,
        &[
            "--ca",
            &cert,
            "--server-name",
            GENERATED_NAME,
            "--secret-file",
            &secret,
        ],
    );
    let addr = good.addr;
    rt.block_on(within(
        Duration::from_secs(20),
        "through --ca",
        echo_through(addr, pattern(3, 200_000), Shutdown::AfterWriting),
    ));
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Another name (by default the host of --server, 127.0.0.1) is not in the certificate.
    let wrong = tunnel_client(&server, &["--ca", &cert, "--secret-file", &secret]);
    refused(&rt, wrong.addr);
    expect_log(&wrong, "client", "certificate not valid for name");
    expect_log(&server, "server", "does not trust this certificate");
    target_saw(&count, 1);
}

#[test]
fn a_wrong_fingerprint_is_refused_and_nothing_reaches_the_target() {
    let rt = runtime();
    let dir = TempDir::new("pin");
    let (server, fingerprint, count) = counted_tls_server(&rt, &dir, &[]);
    // The right fingerprint with its last digit changed.
    let mut wrong = fingerprint.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    let secret = dir.file("tunnel-secret");
    let client = tunnel_client(
        &server,
        &["--fingerprint", &wrong, "--secret-file", &secret],
    );
    refused(&rt, client.addr);
    expect_log(
        &client,
        "client",
        &format!(
            "the server's certificate has fingerprint {fingerprint}, not --fingerprint {wrong}"
        ),
    );
    expect_log(&server, "server", "does not trust this certificate");
    expect_log(&server, "server", "refused 127.0.0.1:");
    target_saw(&count, 0);
}

#[test]
fn a_wrong_secret_is_refused_and_nothing_reaches_the_target() {
    let rt = runtime();
    let dir = TempDir::new("secret");
    let (server, fingerprint, count) = counted_tls_server(&rt, &dir, &[]);
    let other = dir.write("other-secret", &format!("{}\n", "ab".repeat(32)));
    let client = tunnel_client(
        &server,
        &["--fingerprint", &fingerprint, "--secret-file", &other],
    );
    refused(&rt, client.addr);
    expect_log(&client, "client", "the server refused our secret");
    expect_log(&server, "server", "wrong secret");
    assert!(
        !server.stderr().contains("secret proved"),
        "{}",
        server.stderr()
    );
    target_saw(&count, 0);
}

/// A hand-made TLS client that trusts the server's generated certificate.
async fn raw_tls(server: SocketAddr, cert_pem: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(server).await.unwrap();
    connector
        .connect(ServerName::try_from(GENERATED_NAME).unwrap(), tcp)
        .await
        .expect("TLS handshake with the trusted certificate")
}

/// smux v1 frames: SYN for stream 3, then PSH with 24 bytes on it (32 bytes in all, the
/// length of a proof).
fn smux_syn_and_data() -> Vec<u8> {
    let mut frames = vec![1, 0, 0, 0, 3, 0, 0, 0];
    frames.extend([1, 2, 24, 0, 3, 0, 0, 0]);
    frames.extend([b'x'; 24]);
    frames
}

#[test]
fn a_missing_secret_is_refused_and_nothing_reaches_the_target() {
    let rt = runtime();
    let dir = TempDir::new("nosecret");
    let (server, fingerprint, count) = counted_tls_server(&rt, &dir, &[]);
    // The rsmux client does not even start without a secret.
    let s = server.addr.to_string();
    one_line_error(
        &[
            "tunnel",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &s,
            "--fingerprint",
            &fingerprint,
        ],
        2,
        &["--secret-file", "RSMUX_SECRET"],
    );
    let cert = dir.file("tunnel-cert.pem");
    let addr = server.addr;
    rt.block_on(within(Duration::from_secs(20), "raw clients", async move {
        // A client that skips the proof and speaks smux at once: its frames are taken as a
        // (wrong) proof, it is told so and the connection ends.
        let mut tls = raw_tls(addr, &cert).await;
        tls.write_all(&smux_syn_and_data()).await.unwrap();
        tls.flush().await.unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        assert_eq!(answer, [0u8], "the refusal byte, then the end");
        // A client that sends nothing at all and closes.
        let mut tls = raw_tls(addr, &cert).await;
        tls.shutdown().await.unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        assert!(answer.is_empty(), "{answer:?}");
    }));
    expect_log(&server, "server", "wrong secret");
    expect_log(&server, "server", "after 0 of the 32 bytes");
    target_saw(&count, 0);
}

#[test]
fn a_plaintext_client_is_refused_by_a_tls_server() {
    let rt = runtime();
    let dir = TempDir::new("plainclient");
    let (server, _, count) = counted_tls_server(&rt, &dir, &[]);
    let client = tunnel_client(&server, &[]);
    refused(&rt, client.addr);
    expect_log(&server, "server", "not a TLS client");
    expect_log(&client, "client", "if the server runs with --tls");
    target_saw(&count, 0);
}

#[test]
fn a_tls_client_is_refused_by_a_plaintext_server() {
    let rt = runtime();
    let dir = TempDir::new("plainserver");
    let (target, count) = rt.block_on(counting_echo_target());
    let server = tunnel_server(&target.to_string(), &[]);
    let secret = dir.write("secret", &"cd".repeat(32));
    let fingerprint = format!("sha256:{}", "ef".repeat(32));
    let client = tunnel_client(
        &server,
        &["--fingerprint", &fingerprint, "--secret-file", &secret],
    );
    refused(&rt, client.addr);
    expect_log(
        &server,
        "server",
        "it opened with a TLS handshake, but this server has no TLS",
    );
    expect_log(&client, "client", "without --tls?");
    target_saw(&count, 0);
}

#[test]
fn plaintext_on_a_non_loopback_address_needs_insecure_plaintext() {
    let rt = runtime();
    let (target, count) = rt.block_on(counting_echo_target());
    let t = target.to_string();
    let mut args = vec!["tunnel", "server", "--listen", "0.0.0.0:0", "--target", &t];
    one_line_error(
        &args,
        2,
        &[
            "--listen 0.0.0.0:0",
            "--insecure-plaintext",
            "clear text",
            "--tls",
        ],
    );
    args.push("--insecure-plaintext");
    let server = Proc::rsmux(&args);
    assert!(server.addr.ip().is_unspecified(), "{}", server.addr);
    expect_log(&server, "server", "no TLS and no authentication");
    // It works, for a plaintext client (a Go smux client, say).
    let port = server.addr.port().to_string();
    let client = Proc::rsmux(&[
        "tunnel",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        &format!("127.0.0.1:{port}"),
    ]);
    let addr = client.addr;
    rt.block_on(within(
        Duration::from_secs(20),
        "insecure",
        echo_through(addr, pattern(4, 100_000), Shutdown::AfterWriting),
    ));
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // With TLS no flag is needed.
    let dir = TempDir::new("wildcard");
    let d = dir.path().to_str().unwrap();
    let tls = Proc::rsmux(&[
        "tunnel",
        "server",
        "--tls",
        "--tls-dir",
        d,
        "--listen",
        "0.0.0.0:0",
        "--target",
        &t,
    ]);
    assert!(tls.addr.ip().is_unspecified(), "{}", tls.addr);
    // `--insecure-plaintext` and `--tls` contradict each other.
    one_line_error(
        &[
            "tunnel",
            "server",
            "--tls",
            "--insecure-plaintext",
            "--listen",
            "0.0.0.0:0",
            "--target",
            &t,
        ],
        2,
        &["--insecure-plaintext", "--tls"],
    );
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_generated_certificate_and_secret_are_kept() {
    let rt = runtime();
    let (target, _count) = rt.block_on(counting_echo_target());
    let dir = TempDir::new("keep");
    let tls_dir = dir.path().join("nested").join("rsmux");
    let tls_dir_s = tls_dir.to_str().unwrap().to_string();
    let t = target.to_string();
    let args = [
        "tunnel",
        "server",
        "--tls",
        "--tls-dir",
        &tls_dir_s,
        "--listen",
        "127.0.0.1:0",
        "--target",
        &t,
    ];
    let first = Proc::rsmux(&args);
    let fingerprint = logged_fingerprint(&first);
    expect_log(&first, "server", "self-signed, generated now");
    expect_log(&first, "server", "generated the shared secret");
    // The exact client command line, with the fingerprint.
    expect_log(
        &first,
        "server",
        &format!(
            "rsmux tunnel client --listen 127.0.0.1:{port} --server 127.0.0.1:{port} \
             --fingerprint {fingerprint} --secret-file tunnel-secret",
            port = first.addr.port()
        ),
    );
    drop(first);
    #[cfg(unix)]
    {
        assert_eq!(mode(&tls_dir), 0o700);
        for f in ["tunnel-cert.pem", "tunnel-key.pem", "tunnel-secret"] {
            assert_eq!(mode(&tls_dir.join(f)), 0o600, "{f}");
        }
    }
    let secret = std::fs::read(tls_dir.join("tunnel-secret")).unwrap();
    let second = Proc::rsmux(&args);
    assert_eq!(logged_fingerprint(&second), fingerprint);
    expect_log(&second, "server", "kept from an earlier start");
    assert!(
        !second.stderr().contains("generated"),
        "{}",
        second.stderr()
    );
    assert_eq!(
        std::fs::read(tls_dir.join("tunnel-secret")).unwrap(),
        secret
    );
    // A lone certificate (its key lost) is not silently replaced.
    drop(second);
    std::fs::remove_file(tls_dir.join("tunnel-key.pem")).unwrap();
    one_line_error(&args, 1, &["--tls-dir", "only one of"]);
}

#[test]
fn bad_files_and_values_give_one_line_errors() {
    let dir = TempDir::new("bad");
    let garbage = dir.write("garbage.pem", "not a PEM file\n");
    let truncated = dir.write("truncated.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let missing = dir.file("missing.pem");
    let d = dir.path().to_str().unwrap().to_string();
    let server = |extra: &[&str]| {
        let mut v = vec![
            "tunnel",
            "server",
            "--tls",
            "--tls-dir",
            d.as_str(),
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:1",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let check = |args: Vec<String>, code: i32, needles: &[&str]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        one_line_error(&args, code, needles);
    };
    check(
        server(&["--cert", &garbage, "--key-file", &garbage]),
        1,
        &["--cert", "no certificate"],
    );
    check(
        server(&["--cert", &truncated, "--key-file", &garbage]),
        1,
        &["--cert", "not a valid PEM file"],
    );
    check(
        server(&["--cert", &missing, "--key-file", &garbage]),
        1,
        &["--cert", "cannot read"],
    );
    // A real certificate, but no key.
    let good_dir = TempDir::new("bad-good");
    let gd = good_dir.path().to_str().unwrap();
    {
        // Generates a pair to use.
        let p = Proc::rsmux(&[
            "tunnel",
            "server",
            "--tls",
            "--tls-dir",
            gd,
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:1",
        ]);
        logged_fingerprint(&p);
    }
    let cert = good_dir.file("tunnel-cert.pem");
    check(
        server(&["--cert", &cert, "--key-file", &garbage]),
        1,
        &["--key-file", "no private key"],
    );
    check(server(&["--cert", &cert]), 2, &["--key-file"]);
    let short = dir.write("short-secret", "abcd\n");
    check(
        server(&["--secret-file", &short]),
        1,
        &["--secret-file", "64 hex digits", "found 4 hex digits"],
    );
    check(
        server(&["--secret-file", &missing]),
        1,
        &["--secret-file", "cannot read"],
    );
    // Client side.
    let client = |extra: &[&str]| {
        let mut v = vec![
            "tunnel",
            "client",
            "--listen",
            "127.0.0.1:0",
            "--server",
            "127.0.0.1:1",
        ];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let pin = format!("sha256:{}", "12".repeat(32));
    let secret = good_dir.file("tunnel-secret");
    check(
        client(&["--fingerprint", "sha256:12"]),
        2,
        &["--fingerprint", "64 hex digits"],
    );
    check(
        client(&["--fingerprint", &format!("md5:{}", "12".repeat(16))]),
        2,
        &["--fingerprint", "only sha256"],
    );
    check(
        client(&[
            "--fingerprint",
            &pin,
            "--ca",
            &cert,
            "--secret-file",
            &secret,
        ]),
        2,
        &["--fingerprint", "--ca"],
    );
    check(
        client(&["--fingerprint", &pin, "--secret-file", &short]),
        1,
        &["--secret-file", "64 hex digits"],
    );
    check(
        client(&["--secret-file", &secret]),
        2,
        &["--secret-file needs"],
    );
    check(
        client(&["--ca", &garbage, "--secret-file", &secret]),
        1,
        &["--ca", "no certificate"],
    );
    check(
        client(&["--ca", &missing, "--secret-file", &secret]),
        1,
        &["--ca", "cannot read"],
    );
    check(
        client(&[
            "--ca",
            &cert,
            "--server-name",
            "not a name!",
            "--secret-file",
            &secret,
        ]),
        2,
        &["--server-name"],
    );
    check(
        client(&["--server-name", "x", "--secret-file", &secret]),
        2,
        &["--ca"],
    );
}
