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
    pub(crate) fn next(&mut self) -> Option<u32> {
        if self.go_away {
            return None;
        }
        match self.last.checked_add(2) {
            Some(id) => {
                self.last = id;
                Some(id)
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
        assert_eq!((c.next(), c.next(), c.next()), (Some(3), Some(5), Some(7)));
        let mut s = IdAllocator::new(Role::Server);
        assert_eq!((s.next(), s.next()), (Some(2), Some(4)));
    }

    #[test]
    fn go_away_is_sticky_at_the_top() {
        let mut c = IdAllocator::new(Role::Client);
        c.set_last(u32::MAX - 4);
        assert_eq!(c.next(), Some(u32::MAX - 2));
        assert_eq!(c.next(), Some(u32::MAX)); // 4294967295, the last client id
        assert_eq!(c.next(), None);
        assert_eq!(c.next(), None);
        let mut s = IdAllocator::new(Role::Server);
        s.set_last(u32::MAX - 3);
        assert_eq!(s.next(), Some(u32::MAX - 1)); // 4294967294, the last server id
        assert_eq!(s.next(), None);
    }
}
