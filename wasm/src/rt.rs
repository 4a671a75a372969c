//! What a `no_std` component needs from its crate: a global allocator (dlmalloc over the
//! linear memory), a panic handler (a trap: the runtime reports it), and `cabi_realloc`, the
//! export through which the runtime allocates guest memory for arguments.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

/// The canonical ABI's allocation entry point: a fresh block when `old_len` is 0, else a
/// resized one. Traps when memory runs out (the runtime's memory limit, say).
///
/// # Safety
/// Called by the runtime only, with `old_ptr`/`old_len`/`align` of a block this allocator
/// handed out (or zero), and a power-of-two `align`.
#[unsafe(no_mangle)]
unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    let ptr = if old_len == 0 {
        if new_len == 0 {
            return align as *mut u8;
        }
        let Ok(layout) = Layout::from_size_align(new_len, align) else {
            core::arch::wasm32::unreachable()
        };
        // SAFETY: `layout` has a non-zero size.
        unsafe { ALLOCATOR.alloc(layout) }
    } else {
        let Ok(layout) = Layout::from_size_align(old_len, align) else {
            core::arch::wasm32::unreachable()
        };
        // SAFETY: the caller passes a block this allocator gave out, with its layout.
        unsafe { ALLOCATOR.realloc(old_ptr, layout, new_len) }
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable()
    }
    ptr
}

/// `memcmp`, which `core` calls for slice comparisons. `wasm32-wasip2` expects it from
/// wasi-libc, which a `no_std` crate does not link; a byte loop is plenty for the short
/// slices the lock compares.
///
/// # Safety
/// `a` and `b` are valid for reads of `n` bytes.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: `i < n`, and both are valid for `n` bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// `bcmp`: `memcmp` when only equality matters (LLVM emits it for `==` on slices).
///
/// # Safety
/// As [`memcmp`].
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's guarantee is `memcmp`'s.
    unsafe { memcmp(a, b, n) }
}
