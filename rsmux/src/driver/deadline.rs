//! What the deadline setters accept: an instant on either clock, a duration from now, or
//! `None` to clear.

use std::time::{Duration, Instant};

use super::now;

/// A deadline for [`Stream::set_read_deadline`](crate::Stream::set_read_deadline) and the
/// other setters: a [`std::time::Instant`], a [`tokio::time::Instant`], a [`Duration`] from
/// now, or an `Option<tokio::time::Instant>` (`None` clears the deadline).
///
/// Deadlines are kept on tokio's clock, which is std's unless a test paused it
/// (`tokio::time::pause`): there, durations and tokio instants follow the paused clock.
pub trait IntoDeadline: sealed::Sealed {
    /// The deadline as an instant, `None` for none.
    fn into_deadline(self) -> Option<Instant>;
}

impl IntoDeadline for Instant {
    fn into_deadline(self) -> Option<Instant> {
        Some(self)
    }
}

impl IntoDeadline for tokio::time::Instant {
    fn into_deadline(self) -> Option<Instant> {
        Some(self.into_std())
    }
}

impl IntoDeadline for Duration {
    /// `self` from now; a duration too long to represent means no deadline.
    fn into_deadline(self) -> Option<Instant> {
        now().checked_add(self)
    }
}

/// `None` clears the deadline. (One `Option` form only, so a bare `None` needs no type.)
impl IntoDeadline for Option<tokio::time::Instant> {
    fn into_deadline(self) -> Option<Instant> {
        self.map(tokio::time::Instant::into_std)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for std::time::Instant {}
    impl Sealed for tokio::time::Instant {}
    impl Sealed for std::time::Duration {}
    impl Sealed for Option<tokio::time::Instant> {}
}
