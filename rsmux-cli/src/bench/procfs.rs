//! What the benchmark reads about its child processes from `/proc`: CPU time and resident
//! memory; and the open-files limit the scale workload needs.

use std::time::Duration;

/// Clock ticks per second of `/proc/PID/stat` (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// User + system CPU time of a process so far (all its threads, living and ended), from
/// `/proc/PID/stat` (10 ms resolution); `None` where it cannot be read.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu(&stat).map(|ticks| Duration::from_secs_f64(ticks as f64 / CLK_TCK))
}

/// utime + stime in clock ticks from a `/proc/PID/stat` line. The command name (field 2) is in
/// parentheses and may contain spaces, so fields are counted after its closing parenthesis.
fn parse_cpu(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of a process: now (`VmRSS`) and its peak (`VmHWM`), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rss {
    pub now: u64,
    pub peak: u64,
}

/// The resident memory of a process, from `/proc/PID/status`.
pub fn rss(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss(&status)
}

fn parse_rss(status: &str) -> Option<Rss> {
    let kib = |key: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(key))?;
        let n: u64 = line[key.len()..].split_whitespace().next()?.parse().ok()?;
        Some(n * 1024)
    };
    Some(Rss {
        now: kib("VmRSS:")?,
        peak: kib("VmHWM:")?,
    })
}

/// `struct rlimit` of Linux.
#[repr(C)]
struct RLimit {
    cur: u64,
    max: u64,
}

/// `RLIMIT_NOFILE` on Linux.
const RLIMIT_NOFILE: i32 = 7;

extern "C" {
    fn getrlimit(resource: i32, rlim: *mut RLimit) -> i32;
    fn setrlimit(resource: i32, rlim: *const RLimit) -> i32;
}

/// Raises this process's soft limit on open files to its hard limit (child processes inherit
/// it); returns the soft limit in force afterwards.
#[allow(unsafe_code)] // two libc calls
pub fn raise_fd_limit() -> Option<u64> {
    let mut lim = RLimit { cur: 0, max: 0 };
    // SAFETY: `lim` is a valid, writable `struct rlimit` (two 64-bit fields on Linux).
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.cur < lim.max {
        let want = RLimit {
            cur: lim.max,
            max: lim.max,
        };
        // SAFETY: `want` is a valid `struct rlimit`; setrlimit only reads it.
        if unsafe { setrlimit(RLIMIT_NOFILE, &want) } == 0 {
            return Some(want.cur);
        }
    }
    Some(lim.cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_fields_follow_the_parenthesized_name() {
        let line = "1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(parse_cpu(line), Some(300));
        assert!(cpu_time(std::process::id()).is_some());
    }

    #[test]
    fn rss_of_this_process() {
        let r = rss(std::process::id()).expect("own status");
        assert!(r.now > 0 && r.peak >= r.now, "{r:?}");
        let s = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(
            parse_rss(s),
            Some(Rss {
                now: 1 << 20,
                peak: 2 << 20
            })
        );
    }

    #[test]
    fn fd_limit_is_at_least_what_it_was() {
        assert!(raise_fd_limit().is_some_and(|n| n >= 64));
    }
}
