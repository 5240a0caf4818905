//! Live-heap accounting (`--heap`): a counting global allocator, off by
//! default (one relaxed load per call).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

static HEAP_COUNTING: AtomicBool = AtomicBool::new(false);
static HEAP_LIVE: AtomicIsize = AtomicIsize::new(0);
static HEAP_PEAK: AtomicIsize = AtomicIsize::new(0);

struct CountingAlloc;

impl CountingAlloc {
    fn grew(by: isize) {
        if HEAP_COUNTING.load(Ordering::Relaxed) {
            let now = HEAP_LIVE.fetch_add(by, Ordering::Relaxed) + by;
            HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
        }
    }
    fn shrank(by: isize) {
        if HEAP_COUNTING.load(Ordering::Relaxed) {
            HEAP_LIVE.fetch_sub(by, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; only
// counters are updated around it.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            Self::grew(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            Self::grew(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size() as isize);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            Self::grew(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Turns the counting on (it stays off otherwise).
pub fn enable() {
    HEAP_COUNTING.store(true, Ordering::Relaxed);
}

/// (live, peak since the last reset) heap bytes, when `--heap` is on.
pub fn heap() -> Option<(u64, u64)> {
    HEAP_COUNTING.load(Ordering::Relaxed).then(|| {
        (
            HEAP_LIVE.load(Ordering::Relaxed).max(0) as u64,
            HEAP_PEAK.load(Ordering::Relaxed).max(0) as u64,
        )
    })
}

/// Starts a new peak at the current live heap.
pub fn reset_peak() {
    HEAP_PEAK.store(HEAP_LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Live heap bytes now (0 when counting is off).
pub fn live() -> isize {
    HEAP_LIVE.load(Ordering::Relaxed)
}
