//! A global allocator that counts heap growth over a window, for the benchmarks' memory figures
//! (bytes per queued task, per idle activation). Included with `#[path]` by each benchmark that
//! reports memory.
//!
//! It counts only while a [`Window`] is open. Counting every allocation all the time put a shared
//! atomic add on every `malloc` and `free` of every thread: a cost the product's own binary does not
//! pay, which showed in the throughput figures taken in the same process (about 6% of the CPU of the
//! 1,000-actor row went to the two counting functions). A window's growth is exact all the same: the
//! live heap grows by what is allocated in the window less what is freed in it, whenever the freed
//! block was allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts heap growth while a window is open.
struct Counting;

/// Bytes allocated less bytes freed while windows were open (wrapping: frees may come first).
static COUNTED: AtomicUsize = AtomicUsize::new(0);
/// Windows open now.
static WINDOWS: AtomicUsize = AtomicUsize::new(0);

fn counting() -> bool {
    WINDOWS.load(Ordering::Relaxed) != 0
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            COUNTED.fetch_add(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            COUNTED.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            COUNTED.fetch_add(new_size, Ordering::Relaxed);
            COUNTED.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A span of time over which heap growth is counted; counting stops when the last window closes.
pub struct Window {
    start: usize,
}

impl Window {
    /// Opens a window: heap growth is counted from now.
    pub fn open() -> Window {
        WINDOWS.fetch_add(1, Ordering::SeqCst);
        Window { start: COUNTED.load(Ordering::SeqCst) }
    }

    /// Heap bytes the process grew by since the window opened (negative if it shrank).
    pub fn growth(&self) -> isize {
        COUNTED.load(Ordering::SeqCst).wrapping_sub(self.start) as isize
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        WINDOWS.fetch_sub(1, Ordering::SeqCst);
    }
}
