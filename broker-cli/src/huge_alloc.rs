//! A global allocator for the `broker` binary that keeps a hostile request from aborting the
//! process.
//!
//! The `kafka-protocol` decoders reserve `Vec` capacity from array lengths read off the wire
//! before reading the elements, so a 20-byte frame can claim two billion elements. With the
//! system allocator that reservation fails and Rust aborts the whole broker. Here, allocations
//! of 64 MiB and more are served by anonymous `mmap` with `MAP_NORESERVE`: the kernel reserves
//! address space only, so the claim succeeds, the decoder then fails on the missing bytes, the
//! connection is closed, and the untouched mapping is returned without ever using memory.
//! Genuine large buffers work as usual (pages are committed as they are written).

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mapped lazily.
const HUGE: usize = 64 * 1024 * 1024;
const PAGE: usize = 4096;

pub(crate) struct LazyHugeAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

// SAFETY (why `unsafe` is needed and sound): implementing `GlobalAlloc` is inherently unsafe.
// Small allocations go to `System` unchanged. Huge ones get a fresh private anonymous mapping
// of at least `size` bytes, page-aligned (so any alignment <= 4096 holds), zero-filled by the
// kernel, and are unmapped with the same size in `dealloc`, which Rust calls with the layout
// used at allocation.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for LazyHugeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        }
        // SAFETY: anonymous private mapping, no file descriptor, no fixed address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !is_huge(&layout) {
            // SAFETY: `ptr` came from `System.alloc` with this layout.
            return unsafe { System.dealloc(ptr, layout) };
        }
        // SAFETY: `ptr` is the start of a mapping of `layout.size()` bytes made in `alloc`.
        unsafe {
            libc::munmap(ptr.cast(), layout.size());
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: anonymous mappings are zero-filled.
            unsafe { self.alloc(layout) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }
}
