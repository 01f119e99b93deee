//! Local stream-id allocation (SPEC §2): client 3, 5, 7, …; server 2, 4, 6, …; a sticky
//! go-away once the next id would wrap.

/// Which end of the connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opens odd stream ids (Go's `smux.Client`).
    Client,
    /// Opens even stream ids (Go's `smux.Server`).
    Server,
}

/// A stream's id: the STREAMID field of its frames (SPEC §2). Clients open odd ids, servers
/// even ones; an id is never reused while a handle to its stream exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(u32);

impl StreamId {
    /// The stream with this id on the wire.
    pub const fn new(id: u32) -> StreamId {
        StreamId(id)
    }

    /// The id on the wire.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// Which end opened (or may open) the stream: odd ids are the client's, even ones the
    /// server's.
    pub const fn opener(self) -> Role {
        if self.0 % 2 == 1 {
            Role::Client
        } else {
            Role::Server
        }
    }
}

impl From<u32> for StreamId {
    fn from(id: u32) -> StreamId {
        StreamId(id)
    }
}

impl From<StreamId> for u32 {
    fn from(id: StreamId) -> u32 {
        id.0
    }
}

impl PartialEq<u32> for StreamId {
    fn eq(&self, other: &u32) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Allocates ids for locally opened streams.
#[derive(Debug)]
pub(crate) struct IdAllocator {
    last: u32,
    go_away: bool,
}

impl IdAllocator {
    pub(crate) fn new(role: Role) -> IdAllocator {
        IdAllocator {
            last: match role {
                Role::Client => 1,
                Role::Server => 0,
            },
            go_away: false,
        }
    }

    /// The next id, or `None` once the id space is exhausted (and forever after).
    pub(crate) fn next(&mut self) -> Option<StreamId> {
        if self.go_away {
            return None;
        }
        match self.last.checked_add(2) {
            Some(id) => {
                self.last = id;
                Some(StreamId(id))
            }
            None => {
                self.go_away = true;
                None
            }
        }
    }

    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn set_last(&mut self, last: u32) {
        self.last = last;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_ids_like_go() {
        let mut c = IdAllocator::new(Role::Client);
        let id = |n| Some(StreamId(n));
        assert_eq!((c.next(), c.next(), c.next()), (id(3), id(5), id(7)));
        assert_eq!(c.next().unwrap().opener(), Role::Client);
        let mut s = IdAllocator::new(Role::Server);
        assert_eq!((s.next(), s.next()), (id(2), id(4)));
        assert_eq!(s.next().unwrap().opener(), Role::Server);
    }

    #[test]
    fn go_away_is_sticky_at_the_top() {
        let mut c = IdAllocator::new(Role::Client);
        c.set_last(u32::MAX - 4);
        assert_eq!(c.next(), Some(StreamId(u32::MAX - 2)));
        assert_eq!(c.next(), Some(StreamId(u32::MAX))); // 4294967295, the last client id
        assert_eq!(c.next(), None);
        assert_eq!(c.next(), None);
        let mut s = IdAllocator::new(Role::Server);
        s.set_last(u32::MAX - 3);
        assert_eq!(s.next(), Some(StreamId(u32::MAX - 1))); // 4294967294, the last server id
        assert_eq!(s.next(), None);
    }
}
