//! `machines.handshake`: the core's [`distlock_core::Handshake`] for one new connection,
//! reporting its end to the session itself.
//!
//! Invariant: the session hears of every connect it counted as started exactly once —
//! `connected` when the handshake succeeds, `connect-failed` when it fails, times out, its
//! connection closes, or it is dropped unfinished (bookkeeping only: no I/O in the
//! destructor) — so a connect is never left outstanding in the session.

use alloc::format;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use distlock_core::{HandshakeOptions, Instant};

use crate::api;
use crate::convert::handshake_error;
use crate::input::{self, node_index};
use crate::session::Shared;

/// `machines.handshake`.
pub(crate) struct Handshake {
    shared: Rc<RefCell<Shared>>,
    node: usize,
    machine: RefCell<distlock_core::Handshake>,
    /// The outcome, converted and reported to the session, until the runtime takes it.
    outcome: RefCell<Option<Result<(), api::Error>>>,
    /// The session was told how the connect ended.
    reported: Cell<bool>,
    /// The latest `now` the runtime passed: when a drop reports an unfinished connect.
    last_now: Cell<Instant>,
    buf: RefCell<Vec<u8>>,
}

impl Handshake {
    pub(crate) fn new(
        shared: Rc<RefCell<Shared>>,
        node: usize,
        options: HandshakeOptions,
        now: Instant,
    ) -> Handshake {
        Handshake {
            shared,
            node,
            machine: RefCell::new(distlock_core::Handshake::new(options, now)),
            outcome: RefCell::new(None),
            reported: Cell::new(false),
            last_now: Cell::new(now),
            buf: RefCell::new(vec![0u8; 512]),
        }
    }

    fn at(&self, now: api::Instant) -> Instant {
        let at = input::instant(now).max(self.last_now.get());
        self.last_now.set(at);
        at
    }

    /// Takes the core's outcome, if there is one, and tells the session.
    fn settle(&self, now: Instant) {
        if self.reported.get() {
            return;
        }
        let Some(outcome) = self.machine.borrow_mut().poll_outcome() else {
            return;
        };
        let mut shared = self.shared.borrow_mut();
        let converted = match outcome {
            Ok(server) => {
                if let Some(known) = shared.known.get_mut(self.node) {
                    *known = Some(server);
                }
                if let Some(completed) = shared.completed.get_mut(self.node) {
                    *completed = completed.saturating_add(1);
                }
                shared.policy.connected(self.node, now);
                Ok(())
            }
            Err(error) => {
                shared.policy.connect_failed(self.node, now);
                let shown = shared.nodes.get(self.node).map_or("", |n| n.shown.as_str());
                Err(handshake_error(self.node, shown, error))
            }
        };
        self.reported.set(true);
        *self.outcome.borrow_mut() = Some(converted);
    }

    /// Ends the handshake with `error` unless it already ended.
    fn fail(&self, now: Instant, error: api::Error) {
        if self.reported.replace(true) {
            return;
        }
        self.shared
            .borrow_mut()
            .policy
            .connect_failed(self.node, now);
        *self.outcome.borrow_mut() = Some(Err(error));
    }
}

impl api::GuestHandshake for Handshake {
    fn node(&self) -> u8 {
        node_index(self.node)
    }

    fn poll_transmit(&self) -> Option<Vec<u8>> {
        if self.reported.get() {
            return None;
        }
        let mut buf = self.buf.borrow_mut();
        loop {
            match self.machine.borrow_mut().poll_transmit(&mut buf) {
                Ok(Some(len)) => return buf.get(..len).map(<[u8]>::to_vec),
                Ok(None) => return None,
                Err(short) => buf.resize(short.required, 0),
            }
        }
    }

    fn handle_input(&self, bytes: Vec<u8>, now: api::Instant) {
        let at = self.at(now);
        if self.reported.get() {
            return;
        }
        self.machine.borrow_mut().handle_input(&bytes, at);
        self.settle(at);
    }

    fn poll_timeout(&self) -> Option<api::Instant> {
        if self.reported.get() {
            return None;
        }
        self.machine.borrow().poll_timeout().map(input::millis)
    }

    fn handle_timeout(&self, now: api::Instant) {
        let at = self.at(now);
        if self.reported.get() {
            return;
        }
        self.machine.borrow_mut().handle_timeout(at);
        self.settle(at);
    }

    fn handle_disconnect(&self, now: api::Instant) {
        let at = self.at(now);
        let shown = {
            let shared = self.shared.borrow();
            shared
                .nodes
                .get(self.node)
                .map(|n| n.shown.clone())
                .unwrap_or_default()
        };
        let why = format!("cannot connect to {shown}: the server closed the connection");
        self.fail(at, api::Error::Unavailable(why));
    }

    fn poll_outcome(&self) -> Option<Result<(), api::Error>> {
        self.outcome.borrow_mut().take()
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        // Bookkeeping only: the runtime closes the socket.
        if !self.reported.get() {
            let at = self.last_now.get();
            if let Ok(mut shared) = self.shared.try_borrow_mut() {
                shared.policy.connect_failed(self.node, at);
            }
        }
    }
}
