//! A counting global allocator, for measuring memory rather than guessing it.
//!
//! Install it in a test, bench or binary with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: densenet_kernels::alloc_counter::CountingAllocator =
//!     densenet_kernels::alloc_counter::CountingAllocator;
//! ```
//!
//! and read [`snapshot`] around the code under study. The counters are process-wide atomics:
//! bytes live now, the peak of live bytes since the last [`reset_peak`], and the number of
//! allocations and bytes allocated in total. Only the program that installs the allocator sees
//! non-zero counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting every byte that passes through it.
pub struct CountingAllocator;

fn on_alloc(size: usize) {
    let live = LIVE.fetch_add(size as u64, Relaxed) + size as u64;
    PEAK.fetch_max(live, Relaxed);
    ALLOCATIONS.fetch_add(1, Relaxed);
    ALLOCATED.fetch_add(size as u64, Relaxed);
}

fn on_dealloc(size: usize) {
    LIVE.fetch_sub(size as u64, Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's own arguments, so the allocator
// contract is `System`'s; the counters are side effects on atomics only.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        on_dealloc(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            on_dealloc(layout.size());
            on_alloc(new_size);
        }
        p
    }
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocSnapshot {
    /// Bytes allocated and not yet freed.
    pub live_bytes: u64,
    /// The most bytes live at once since the last [`reset_peak`].
    pub peak_bytes: u64,
    /// Allocations made since the process started.
    pub allocations: u64,
    /// Bytes allocated since the process started (frees not subtracted).
    pub allocated_bytes: u64,
}

/// Reads the counters.
pub fn snapshot() -> AllocSnapshot {
    AllocSnapshot {
        live_bytes: LIVE.load(Relaxed),
        peak_bytes: PEAK.load(Relaxed),
        allocations: ALLOCATIONS.load(Relaxed),
        allocated_bytes: ALLOCATED.load(Relaxed),
    }
}

/// Starts a new peak measurement from the bytes live now.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Relaxed), Relaxed);
}

/// A process-wide lock for measurements that must not overlap.
///
/// The counters see every thread of the process, and a test harness runs the tests of one
/// binary on several threads at once: a test measuring "nothing allocated" would count what a
/// neighbour allocates meanwhile. Every test of a binary that measures takes this guard first,
/// so its tests run one at a time. A test that panicked while holding it does not poison it.
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs `f` and returns its result with the allocations it made, the bytes it allocated, and
/// its peak live bytes above what was live when it started.
pub fn measure<R>(f: impl FnOnce() -> R) -> (R, AllocDelta) {
    let before = snapshot();
    reset_peak();
    let r = f();
    let after = snapshot();
    let delta = AllocDelta {
        allocations: after.allocations - before.allocations,
        allocated_bytes: after.allocated_bytes - before.allocated_bytes,
        peak_extra_bytes: after.peak_bytes.saturating_sub(before.live_bytes),
    };
    (r, delta)
}

/// What one measured piece of code allocated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocDelta {
    /// Number of allocations (including reallocations).
    pub allocations: u64,
    /// Bytes requested by those allocations.
    pub allocated_bytes: u64,
    /// Peak live bytes above the bytes live at the start.
    pub peak_extra_bytes: u64,
}
