//! WASI for guests and the lock component, with `wasi:io/poll` waits that end when the guest
//! is stopped.
//!
//! wasmtime-wasi's synchronous `poll` and `pollable.block` block the guest's thread until a
//! pollable is ready: a guest sleeping through `wasi:clocks` (`std::thread::sleep`) would sleep
//! through its time limit and through a stop, since epoch interruption only reaches wasm code.
//! This module links wasmtime-wasi as usual, then replaces those two functions with the same
//! waits (wasmtime-wasi's own asynchronous implementation) run through
//! [`super::stop::Halt`]: a stop makes them trap, which ends the guest.
//!
//! Invariant: every other WASI function is wasmtime-wasi's, unchanged.

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::io::poll::{Host as _, HostPollable as _};

use super::state::HostState;

/// The `wasi:io/poll` that wasmtime-wasi links (its version, exactly: the names replaced must
/// be the names defined).
const POLL: &str = "wasi:io/poll@0.2.12";

/// Links WASI (wasmtime-wasi, synchronous) with the interruptible `poll` and `pollable.block`.
pub(crate) fn add_wasi_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    // Only to replace the two functions below; nothing else is defined twice.
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL)?;
    poll.func_wrap(
        "poll",
        |mut cx: StoreContextMut<'_, HostState>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let halt = cx.data().halt();
            let ready = halt.block_on(cx.data_mut().table.poll(pollables))??;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut cx: StoreContextMut<'_, HostState>, (pollable,): (Resource<DynPollable>,)| {
            let halt = cx.data().halt();
            halt.block_on(cx.data_mut().table.block(pollable))??;
            Ok(())
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
