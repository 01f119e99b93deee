//! Read and write deadlines of streams, kept apart from the stream table so that a stream
//! without deadlines pays nothing for them, and ordered so the next one is found at once.

use std::{
    collections::{BTreeSet, HashMap},
    time::Instant,
};

use super::ids::StreamId;

/// Which operation a deadline bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Dir {
    Read = 0,
    Write = 1,
}

#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    by_stream: HashMap<StreamId, [Option<Instant>; 2]>,
    queue: BTreeSet<(Instant, StreamId, Dir)>,
}

impl Deadlines {
    /// Replaces the `dir` deadline of stream `id`.
    pub(crate) fn set(&mut self, id: StreamId, dir: Dir, deadline: Option<Instant>) {
        let slots = self.by_stream.entry(id).or_default();
        if let Some(old) = std::mem::replace(&mut slots[dir as usize], deadline) {
            self.queue.remove(&(old, id, dir));
        }
        if let Some(d) = deadline {
            self.queue.insert((d, id, dir));
        }
        if slots.iter().all(Option::is_none) {
            self.by_stream.remove(&id);
        }
    }

    /// Whether the `dir` deadline of stream `id` is set and not after `now`.
    pub(crate) fn passed(&self, id: StreamId, dir: Dir, now: Instant) -> bool {
        self.by_stream
            .get(&id)
            .and_then(|s| s[dir as usize])
            .is_some_and(|d| d <= now)
    }

    /// Forgets both deadlines of stream `id`.
    pub(crate) fn remove_stream(&mut self, id: StreamId) {
        self.set(id, Dir::Read, None);
        self.set(id, Dir::Write, None);
    }

    /// The earliest deadline that has not fired yet.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.queue.first().map(|d| d.0)
    }

    /// Takes the next deadline due at `now` off the timer queue (it stays in force).
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(StreamId, Dir)> {
        let &(at, id, dir) = self.queue.first()?;
        if at > now {
            return None;
        }
        self.queue.pop_first();
        Some((id, dir))
    }

    pub(crate) fn clear(&mut self) {
        *self = Deadlines::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fire_in_order_and_stay_in_force() {
        let t0 = Instant::now();
        let mut d = Deadlines::default();
        d.set(
            StreamId::new(3),
            Dir::Read,
            Some(t0 + Duration::from_secs(2)),
        );
        d.set(
            StreamId::new(5),
            Dir::Write,
            Some(t0 + Duration::from_secs(1)),
        );
        d.set(
            StreamId::new(3),
            Dir::Read,
            Some(t0 + Duration::from_secs(3)),
        ); // moved later
        assert_eq!(d.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            d.pop_expired(t0 + Duration::from_secs(2)),
            Some((StreamId::new(5), Dir::Write))
        );
        assert_eq!(d.pop_expired(t0 + Duration::from_secs(2)), None);
        assert!(d.passed(StreamId::new(5), Dir::Write, t0 + Duration::from_secs(2)));
        assert!(!d.passed(StreamId::new(3), Dir::Read, t0 + Duration::from_secs(2)));
        d.remove_stream(StreamId::new(3));
        d.remove_stream(StreamId::new(5));
        assert_eq!(d.next(), None);
        assert!(d.by_stream.is_empty());
    }
}
