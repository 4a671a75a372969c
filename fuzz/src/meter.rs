//! A counting global allocator: how many heap bytes are live, and the peak within a call.
//!
//! The fuzz targets use it to check that the core's memory stays within fixed bounds
//! whatever the input: a call may allocate while it decodes one reply (bounded by the
//! framer's capacity), and a machine may hold a few error messages (each cut at
//! `SERVER_MESSAGE_CAP`), never more.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Counts the bytes requested from (and returned to) the system allocator.
pub struct Meter;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
}

// SAFETY: every method forwards to `System` unchanged; the counters are only bookkeeping.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Meter = Meter;

/// Heap bytes live now.
pub fn live() -> usize {
    LIVE.load(Relaxed)
}

/// Runs `f`; returns its result and the most heap it had live at once beyond what was live
/// before it started.
pub fn peak_of<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = live();
    PEAK.store(before, Relaxed);
    let result = f();
    let peak = PEAK.load(Relaxed).saturating_sub(before);
    (result, peak)
}

/// The heap bytes a value owns, measured by cloning it (the clone allocates exactly what
/// the value holds on the heap).
pub fn heap_of<T: Clone>(value: &T) -> usize {
    let before = live();
    let copy = value.clone();
    let held = live().saturating_sub(before);
    drop(copy);
    held
}
