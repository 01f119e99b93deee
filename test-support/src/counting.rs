//! A global allocator that counts live and peak heap bytes, for memory assertions. A test
//! binary installs it with
//! `#[global_allocator] static A: rsmux_test_support::counting::Counting = rsmux_test_support::counting::Counting;`.
//!
//! The counts cover the whole process: with `cargo test` the tests of one binary run as threads
//! of one process, so tests that measure must hold one lock for their whole run (each such test
//! binary has its own `SERIAL` lock, and every test in it takes it).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, AtomicUsize, Ordering},
};

/// The system allocator plus live, peak and allocation counters.
pub struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            let size = layout.size() as isize;
            let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
}

/// Heap bytes allocated and not yet freed, whole process (0 unless [`Counting`] is installed).
pub fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Highest `live()` since the last `reset_peak()`.
pub fn peak() -> isize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new peak measurement from the current live bytes.
pub fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

/// Allocations made so far, whole process (a reallocation counts as one).
pub fn allocations() -> usize {
    ALLOCS.load(Ordering::Relaxed)
}
