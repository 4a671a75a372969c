//! # distlock-engine
//!
//! The distlock core's machines as a WebAssembly component: the `engine` world of
//! `wit/engine.wit`. It exports `distlock:lock/machines` and imports nothing: the runtime
//! passes the time and entropy in as arguments, owns the sockets, and drives the machines
//! from its own event loop (Node.js, Python `asyncio`), so nothing blocks and no destructor
//! does I/O.
//!
//! Every protocol decision — commands, retries, quorum, fencing, validity, when to connect,
//! when to renew and when a lease is lost — is `distlock-core`'s. This crate only holds the
//! machines behind WIT resources: [`session`] (the node set and the factory of machines),
//! [`handshake`], [`operation`] (running a [`machine`] sized to the session), [`renewal`], the session-level flat calls' name and slot
//! tables ([`slots`]), plus the conversions of time, entropy
//! ([`input`]) and errors ([`convert`]), the flat step encoding ([`flat`]) and its packed
//! form, bytes eight to a `u64` ([`packed`]).
//!
//! Built for `wasm32-wasip2` only, like the `provider` component beside it.
#![no_std]

extern crate alloc;

mod convert;
mod flat;
mod handshake;
mod input;
mod machine;
mod operation;
mod packed;
mod renewal;
#[path = "../../src/rt.rs"]
mod rt;
mod session;
mod slots;
#[path = "../../src/url.rs"]
mod url;

use crate::bindings::exports::distlock::lock::machines as api;

/// The bindings `wit-bindgen` generates for the `engine` world.
#[allow(unsafe_code, missing_docs, unreachable_pub, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "engine",
        generate_all,
    });

    use super::Component;
    export!(Component with_types_in crate::bindings);
}

/// The component's exports.
struct Component;

impl api::Guest for Component {
    type Session = session::Session;
    type Handshake = handshake::Handshake;
    type Operation = operation::Operation;
    type Renewal = renewal::Renewal;

    fn open(options: api::Options, entropy: api::Entropy) -> Result<api::Session, api::Error> {
        session::Session::open(options, &entropy).map(api::Session::new)
    }
}
