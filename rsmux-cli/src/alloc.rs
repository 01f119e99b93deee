//! A global allocator that counts live heap bytes, so `rsmux bench` can measure what an idle
//! stream costs. It wraps the system allocator; the count is one relaxed atomic add per call.
//!
//! Installed only with the non-default cargo feature `bench-alloc` (`cargo run --release -p
//! rsmux-cli --features bench-alloc -- bench`): the shipped binary's echo server and tunnel do
//! not pay for it, and without it the bench reports the idle-stream figure as n/a.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
};

/// Whether this build installs [`Counting`] as the global allocator.
pub const INSTALLED: bool = cfg!(feature = "bench-alloc");

/// The system allocator plus a live-bytes counter.
#[cfg_attr(not(feature = "bench-alloc"), allow(dead_code))]
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Heap bytes currently allocated by this process (requested sizes, not allocator overhead);
/// `None` when the counting allocator is not installed.
pub fn live_bytes() -> Option<usize> {
    INSTALLED.then(|| LIVE.load(Relaxed))
}

#[allow(unsafe_code)]
// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc`
// contract; the counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (all our allocations are).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                LIVE.fetch_add(new_size - layout.size(), Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw counter, whatever `INSTALLED` claims: it moves only if `Counting` really is the
    /// global allocator of this (test) binary, which has the same `#[global_allocator]` lines
    /// as the `rsmux` binary.
    fn counter() -> usize {
        LIVE.load(Relaxed)
    }

    #[test]
    #[cfg(feature = "bench-alloc")]
    fn counts_a_large_allocation() {
        let before = counter();
        let v = vec![1u8; 8 << 20];
        let during = counter();
        drop(v);
        // Other test threads allocate too; 8 MiB dwarfs them.
        assert!(during >= before + (7 << 20), "{before} {during}");
        assert!(live_bytes().is_some());
    }

    /// The default build (what `cargo install` ships) has no counting allocator: nothing
    /// counts allocations, and the bench reports the figure as unavailable.
    #[test]
    #[cfg(not(feature = "bench-alloc"))]
    fn the_default_build_installs_no_counting_allocator() {
        let v = std::hint::black_box(vec![1u8; 8 << 20]);
        assert_eq!(counter(), 0, "a counting allocator is installed");
        drop(v);
        assert_eq!(live_bytes(), None);
    }
}
