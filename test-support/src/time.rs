//! Time limits: a test that hangs fails with a message instead of stalling the run.

use std::{
    future::Future,
    time::{Duration, Instant},
};

/// Awaits `fut`, panicking with `what` if it takes longer than `limit`.
pub async fn within<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: timed out after {limit:?}"),
    }
}

/// Checks `cond` every `every` until it holds (true) or `limit` has passed (false), for state
/// outside the test's control (another process, the kernel) that nothing signals.
pub fn poll_until(limit: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[should_panic(expected = "stuck: timed out after 10ms")]
    async fn within_names_what_timed_out() {
        within(
            Duration::from_millis(10),
            "stuck",
            std::future::pending::<()>(),
        )
        .await;
    }

    #[test]
    fn poll_until_sees_a_condition_and_gives_up_on_one_that_never_holds() {
        let mut n = 0;
        assert!(poll_until(Duration::from_secs(5), Duration::ZERO, || {
            n += 1;
            n == 3
        }));
        assert!(!poll_until(
            Duration::from_millis(5),
            Duration::from_millis(1),
            || false
        ));
    }
}
