//! WASI for guests and the lock component, with `wasi:io/poll` waits that end when the guest
//! is stopped.
//!
//! wasmtime-wasi's `poll` and `pollable.block` wait until a pollable is ready: a guest
//! sleeping through `wasi:clocks` (`std::thread::sleep`) would sleep through its time limit
//! and through a stop, since epoch interruption only reaches wasm code. This module links
//! wasmtime-wasi (asynchronous: a guest's wait is an `.await` in its task) as usual, then
//! replaces those two functions with the same waits run through
//! [`super::stop::Halt::unless_stopped`]: a stop makes them trap, which ends the guest.
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

/// Links WASI (wasmtime-wasi, asynchronous) with the interruptible `poll` and
/// `pollable.block`.
pub(crate) fn add_wasi_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    // Only to replace the two functions below; nothing else is defined twice.
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL)?;
    poll.func_wrap_async(
        "poll",
        |mut cx: StoreContextMut<'_, HostState>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            Box::new(async move {
                let halt = cx.data().halt();
                let ready = halt
                    .unless_stopped(cx.data_mut().table.poll(pollables))
                    .await??;
                Ok((ready,))
            })
        },
    )?;
    poll.func_wrap_async(
        "[method]pollable.block",
        |mut cx: StoreContextMut<'_, HostState>, (pollable,): (Resource<DynPollable>,)| {
            Box::new(async move {
                let halt = cx.data().halt();
                halt.unless_stopped(cx.data_mut().table.block(pollable))
                    .await??;
                Ok(())
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
