//! Usage errors, help and version of the real binary.

mod common;

use common::rsmux;

/// Runs `rsmux args`, expects exit status 2 and a one-line message on stderr that contains
/// every needle.
fn usage_error<S: AsRef<str>>(args: &[S], needles: &[&str]) {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = rsmux(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "rsmux {args:?}: status {:?}, stderr {err:?}",
        out.status
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "rsmux {args:?}: not one line: {err:?}"
    );
    assert!(err.starts_with("error: "), "rsmux {args:?}: {err:?}");
    for n in needles {
        assert!(err.contains(n), "rsmux {args:?}: {err:?} lacks {n:?}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "rsmux {args:?} wrote to stdout");
}

/// `echo --listen 127.0.0.1:0` plus `extra`.
fn echo_with(extra: &[&str]) -> Vec<String> {
    ["echo", "--listen", "127.0.0.1:0"]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

/// `tunnel client --listen 127.0.0.1:0 --server 127.0.0.1:1` plus `extra`.
fn tunnel_client_with(extra: &[&str]) -> Vec<String> {
    [
        "tunnel",
        "client",
        "--listen",
        "127.0.0.1:0",
        "--server",
        "127.0.0.1:1",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn config_values_checked_by_the_library() {
    usage_error(
        &echo_with(&["--smuxver", "3"]),
        &["--smuxver", "unsupported protocol version"],
    );
    usage_error(
        &echo_with(&["--framesize", "70000"]),
        &["--framesize", "65535"],
    );
    usage_error(&echo_with(&["--framesize", "0"]), &["--framesize"]);
    usage_error(
        &echo_with(&["--keepalive", "10", "--keepalive-timeout", "1"]),
        &["--keepalive-timeout"],
    );
    usage_error(
        &echo_with(&["--streambuf", "8MiB"]),
        &["--streambuf", "--smuxbuf"],
    );
    usage_error(&echo_with(&["--smuxbuf", "3GiB"]), &["--smuxbuf"]);
    usage_error(&echo_with(&["--smuxbuf", "0"]), &["--smuxbuf"]);
    // The same checks on the other subcommands.
    usage_error(
        &[
            "tunnel",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--target",
            "127.0.0.1:1",
            "--smuxver",
            "0",
        ],
        &["--smuxver"],
    );
    usage_error(
        &tunnel_client_with(&["--framesize", "100000"]),
        &["--framesize"],
    );
    usage_error(&["bench", "--smuxver", "9"], &["--smuxver"]);
}

#[test]
fn smuxver_auto_is_for_servers_only() {
    usage_error(
        &tunnel_client_with(&["--smuxver", "auto"]),
        &["--smuxver auto", "only a server"],
    );
    usage_error(
        &echo_with(&["--smuxver", "0"]),
        &["--smuxver", "1, 2 or auto"],
    );
    usage_error(&echo_with(&["--smuxver", "automatic"]), &["--smuxver"]);
}

#[test]
fn malformed_values_name_the_flag() {
    usage_error(&echo_with(&["--smuxbuf", "abc"]), &["--smuxbuf", "abc"]);
    usage_error(&echo_with(&["--streambuf", "12XB"]), &["--streambuf"]);
    usage_error(&echo_with(&["--smuxver", "x"]), &["--smuxver"]);
    usage_error(&echo_with(&["--keepalive", "-1"]), &["--keepalive"]);
    usage_error(&["echo", "--listen", "nonsense"], &["--listen"]);
    usage_error(&["echo"], &["--listen"]);
    usage_error(&echo_with(&["--bogus"]), &["--bogus"]);
    usage_error(
        &["tunnel", "server", "--listen", "127.0.0.1:0"],
        &["--target"],
    );
    usage_error(&tunnel_client_with(&["--conns", "0"]), &["--conns"]);
    usage_error(&["bench", "--seconds", "0"], &["--seconds"]);
    usage_error(&["bench", "--go-peer", "/no/such/file"], &["--go-peer"]);
    usage_error(&["bench", "--plot", "/no/such/dir/x.svg"], &["--plot"]);
    usage_error(&["tunnel"], &["tunnel server"]);
    usage_error::<&str>(&[], &["subcommand"]);
    usage_error(&["frobnicate"], &["frobnicate"]);
}

#[test]
fn sizes_accept_suffixes() {
    // Valid sizes pass parsing and validation; the run then fails (exit 1) because the
    // address cannot be bound, which proves the flags were accepted.
    let out = rsmux(&[
        "echo",
        "--listen",
        "192.0.2.1:1",
        "--smuxbuf",
        "8MiB",
        "--streambuf",
        "64KiB",
        "--framesize",
        "16K",
        "--keepalive",
        "0.5",
        "--keepalive-timeout",
        "2",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on 192.0.2.1:1"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn help_has_examples_and_version_works() {
    for args in [
        vec!["--help"],
        vec!["echo", "--help"],
        vec!["tunnel", "--help"],
        vec!["tunnel", "server", "--help"],
        vec!["tunnel", "client", "--help"],
        vec!["bench", "--help"],
    ] {
        let out = rsmux(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(text.contains("Examples:"), "{args:?}: {text}");
        assert!(text.contains("rsmux "), "{args:?}");
    }
    let out = rsmux(&["echo", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--smuxver",
        "--smuxbuf",
        "--streambuf",
        "--framesize",
        "--keepalive",
        "--keepalive-timeout",
    ] {
        assert!(text.contains(flag), "echo --help lacks {flag}");
    }
    let out = rsmux(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rsmux "));
}
