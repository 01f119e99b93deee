//! Child processes for tests: killed and reaped when dropped, stdout captured line by line and
//! stderr as text, both awaitable (blocking or async) with a time limit.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    process::{Command, Output, Stdio},
    sync::{Arc, Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

/// What a child printed so far.
#[derive(Default)]
struct Captured {
    stdout: Vec<String>,
    stderr: String,
    stdout_closed: bool,
    stderr_closed: bool,
}

/// Output shared between the reader threads and the [`Child`].
#[derive(Default)]
struct Shared {
    captured: Mutex<Captured>,
    /// Wakes blocking waiters on every change.
    changed: Condvar,
    /// Wakes async waiters on every change.
    notify: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Captured> {
        self.captured.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Captured)) {
        f(&mut self.lock());
        self.changed.notify_all();
        self.notify.notify_waiters();
    }

    /// Blocks until `check` returns `Some` or `limit` has passed.
    fn wait_for<T>(
        &self,
        limit: Duration,
        mut check: impl FnMut(&Captured) -> Option<T>,
    ) -> Option<T> {
        let end = Instant::now() + limit;
        let mut guard = self.lock();
        loop {
            if let Some(v) = check(&guard) {
                return Some(v);
            }
            let left = end.checked_duration_since(Instant::now())?;
            guard = self
                .changed
                .wait_timeout(guard, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// A running child process with stdin closed, stdout and stderr captured. Killed (and reaped)
/// when dropped; if the test is failing then, its stderr is printed.
pub struct Child {
    child: std::process::Child,
    desc: String,
    shared: Arc<Shared>,
    /// Index of the stdout line [`Child::next_line`] returns next.
    next: usize,
}

impl Child {
    /// Starts `program args`.
    pub fn spawn(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Child {
        let mut cmd = Command::new(program);
        cmd.args(args);
        Child::spawn_command(cmd)
    }

    /// Starts `cmd` (its stdin, stdout and stderr settings are replaced).
    pub fn spawn_command(mut cmd: Command) -> Child {
        let desc = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
        let shared = Arc::new(Shared::default());
        let stdout = child.stdout.take().expect("piped stdout");
        let out = shared.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                out.update(|c| c.stdout.push(line));
            }
            out.update(|c| c.stdout_closed = true);
        });
        let mut stderr = child.stderr.take().expect("piped stderr");
        let err = shared.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                err.update(|c| c.stderr.push_str(&text));
            }
            err.update(|c| c.stderr_closed = true);
        });
        Child {
            child,
            desc,
            shared,
            next: 0,
        }
    }

    /// The command line, for messages.
    pub fn desc(&self) -> &str {
        &self.desc
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.shared.lock().stderr.clone()
    }

    /// Every stdout line so far (whether or not [`Child::next_line`] returned it).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.shared.lock().stdout.clone()
    }

    /// Waits (blocking, at most `limit`) until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str, limit: Duration) -> bool {
        self.shared
            .wait_for(limit, |c| c.stderr.contains(needle).then_some(()))
            .is_some()
    }

    /// Waits (blocking, at most `limit`) until stderr contains `needle` at least `count`
    /// times; whether it did.
    pub fn wait_stderr_count(&self, needle: &str, count: usize, limit: Duration) -> bool {
        self.shared
            .wait_for(limit, |c| {
                (c.stderr.matches(needle).count() >= count).then_some(())
            })
            .is_some()
    }

    /// Waits (blocking, at most `limit`) for a stdout line starting with `prefix`, returning
    /// the rest of it; `None` on timeout or when stdout closed without one.
    pub fn wait_stdout_prefix(&self, prefix: &str, limit: Duration) -> Option<String> {
        self.shared
            .wait_for(limit, |c| {
                let found = c
                    .stdout
                    .iter()
                    .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string));
                match found {
                    Some(rest) => Some(Some(rest)),
                    None if c.stdout_closed => Some(None),
                    None => None,
                }
            })
            .flatten()
    }

    /// Waits (blocking, at most `limit`) for the `listening on ADDR` line every server of this
    /// workspace prints, and returns ADDR. Panics, with stderr, if there is none.
    pub fn listening_addr(&self, limit: Duration) -> SocketAddr {
        let line = self.wait_stdout_prefix("listening on ", limit);
        let line = line.unwrap_or_else(|| {
            panic!(
                "{} did not print 'listening on' within {limit:?}; stderr: {}",
                self.desc,
                self.stderr()
            )
        });
        line.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{}: bad listening address {line:?}: {e}", self.desc))
    }

    /// The next stdout line not returned before, waiting (async) at most `wait`; `None` on
    /// timeout or at the end of stdout.
    pub async fn next_line(&mut self, wait: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let c = self.shared.lock();
                if let Some(line) = c.stdout.get(self.next) {
                    self.next += 1;
                    return Some(line.clone());
                }
                if c.stdout_closed {
                    return None;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Waits (async, at most `wait`) for a stdout line starting with `prefix`; lines before it
    /// are skipped. Panics on timeout or when the child's stdout ends first.
    pub async fn expect_line(&mut self, prefix: &str, wait: Duration) -> String {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_line(left).await {
                Some(l) if l.starts_with(prefix) => return l,
                Some(_) => continue,
                None if self.shared.lock().stdout_closed => {
                    panic!("{}: exited before printing {prefix:?}", self.desc)
                }
                None => panic!(
                    "{}: no line starting with {prefix:?} within {wait:?}",
                    self.desc
                ),
            }
        }
    }

    /// Stdout lines not returned before (does not wait).
    pub fn lines_so_far(&mut self) -> Vec<String> {
        let c = self.shared.lock();
        let lines = c.stdout[self.next.min(c.stdout.len())..].to_vec();
        self.next = c.stdout.len();
        lines
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal by name (`TERM`, `INT`, ...) with `kill -SIG pid`.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the process to exit (at most `limit`), returning its exit code (`None` on
    /// timeout or when a signal ended it).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut code = None;
        crate::time::poll_until(limit, Duration::from_millis(10), || {
            match self.child.try_wait() {
                Ok(Some(st)) => {
                    code = st.code();
                    true
                }
                Ok(None) => false,
                Err(e) => panic!("{}: waiting: {e}", self.desc),
            }
        });
        if code.is_some() {
            // Everything it printed is captured before the caller looks (the reader threads
            // may still be behind the exit); a grandchild holding the pipes open is given up on.
            let _ = self.shared.wait_for(Duration::from_secs(5), |c| {
                (c.stderr_closed && c.stdout_closed).then_some(())
            });
        }
        code
    }

    /// Kills the process and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- stderr of {} ---\n{}", self.desc, self.stderr());
        }
    }
}

/// Runs `program args` to completion with stdin closed, killing it and panicking after
/// `limit`; returns its status and output.
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str], limit: Duration) -> Output {
    let program = program.as_ref();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program:?}: {e}"));
    // Drain the pipes in threads so a chatty child cannot block.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let mut status = None;
    crate::time::poll_until(limit, Duration::from_millis(10), || {
        status = child.try_wait().expect("waiting for a child");
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{program:?} {args:?} did not finish within {limit:?}");
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_collects_output_and_status() {
        let out = run(
            "sh",
            &["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(10),
        );
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    #[should_panic(expected = "did not finish within")]
    fn run_kills_a_child_past_its_limit() {
        run("sleep", &["30"], Duration::from_millis(100));
    }

    #[test]
    fn a_child_is_read_line_by_line_and_waited_for() {
        let mut c = Child::spawn(
            "sh",
            &[
                "-c",
                "echo first; echo 'listening on 127.0.0.1:9'; echo oops >&2; read x",
            ],
        );
        assert_eq!(
            c.listening_addr(Duration::from_secs(10)),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(c.wait_stderr("oops", Duration::from_secs(10)));
        assert!(c.wait_stderr_count("oops", 1, Duration::from_secs(10)));
        assert!(!c.wait_stderr_count("oops", 2, Duration::from_millis(10)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(
                c.expect_line("listening", Duration::from_secs(10)).await,
                "listening on 127.0.0.1:9"
            );
            // stdin is closed: `read` fails and the shell exits; stdout ends.
            assert_eq!(c.next_line(Duration::from_secs(10)).await, None);
        });
        assert_eq!(c.wait_exit(Duration::from_secs(10)), Some(1));
        assert!(!c.is_running());
        assert_eq!(c.lines_so_far(), Vec::<String>::new());
        assert_eq!(c.stdout_lines().len(), 2);
    }

    #[test]
    fn a_signal_ends_a_child() {
        let mut c = Child::spawn("sleep", &["30"]);
        c.signal("TERM");
        assert_eq!(c.wait_exit(Duration::from_secs(10)), None);
        assert!(!c.is_running());
    }
}
