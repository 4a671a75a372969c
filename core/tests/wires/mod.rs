//! The simulated network of the one-node simulators (`semaphore_simulation.rs`,
//! `rwlock_simulation.rs`, `get_or_compute_simulation.rs`, `mixed_kinds_simulation.rs`): one
//! connection per client machine to the one model node, in each direction a one-way delay that
//! is usually a few ms and at times past the request timeout (messages keep their order), and a
//! loss (2 in 1000) that breaks the connection, which the client learns of later. One copy, so
//! every primitive is checked under the same faults and driven the same way: a machine's
//! bytes go out ([`Network::pump`]), replies and break notices come in ([`Network::feed`]), a
//! finished machine's connection is dropped ([`Network::retire`]), and the node runs what
//! reached it ([`Serves::serve_node`]).
//!
//! Every draw comes from the world's seeded generator, in a fixed order, so a run replays
//! from its seed.

use std::collections::VecDeque;
use std::ops::{Index, IndexMut};

use distlock_core::{Driven, Instant, SplitMix64};
use distlock_model::ModelConnection;

/// Every connection of a run, by index; a client keeps the index of its current one. A
/// broken or retired connection stays (its late requests may still run on the node).
pub(crate) struct Network {
    wires: Vec<Wire>,
    /// Where a machine writes its next command.
    buf: Vec<u8>,
}

impl Network {
    /// A network with no connection yet.
    pub(crate) fn new() -> Network {
        Network {
            wires: Vec::new(),
            buf: vec![0; 8192],
        }
    }

    /// Opens a connection; its index.
    pub(crate) fn open(&mut self) -> usize {
        self.wires.push(Wire::new());
        self.wires.len() - 1
    }

    /// How many connections were ever opened.
    pub(crate) fn len(&self) -> usize {
        self.wires.len()
    }

    /// Writes everything `m` has to send on `wire`; whether the last write blocks (a
    /// `BLPOP`), `None` when there was nothing to send.
    pub(crate) fn pump(
        &mut self,
        wire: usize,
        m: &mut impl Driven,
        rng: &mut SplitMix64,
        now: u64,
    ) -> Option<bool> {
        let mut blocking = None;
        while let Some(tx) = m
            .poll_transmit(Instant::from_millis(now), &mut self.buf)
            .expect("an 8 KiB buffer holds every command of the simulators")
        {
            self.wires[wire].send(self.buf[..tx.len].to_vec(), rng, now);
            blocking = Some(tx.blocking.is_some());
        }
        blocking
    }

    /// Hands `m` the replies that reached the client on `*wire` by `now`, then the break
    /// notice if it is due (`*wire` becomes a fresh connection for what comes next; the old
    /// one's requests may still run), then the time; whether any reply came.
    pub(crate) fn feed(&mut self, wire: &mut usize, m: &mut impl Driven, now: u64) -> bool {
        let at = Instant::from_millis(now);
        let mut replied = false;
        while let Some((_, bytes)) = self.wires[*wire].to_client.pop_front_if(|(t, _)| *t <= now) {
            m.handle_input(0, &bytes, at);
            replied = true;
        }
        if self.wires[*wire].notice_at.is_some_and(|t| t <= now) {
            self.wires[*wire].notice_at = None;
            *wire = self.open();
            m.handle_disconnect(0, at);
        }
        m.handle_timeout(at);
        replied
    }

    /// A machine done: `*wire` becomes a fresh connection for the next one; what the old one
    /// still owes the client is dropped.
    pub(crate) fn retire(&mut self, wire: &mut usize) {
        let old = &mut self.wires[*wire];
        old.broken = true;
        old.to_client.clear();
        *wire = self.open();
    }
}

impl Index<usize> for Network {
    type Output = Wire;

    fn index(&self, wire: usize) -> &Wire {
        &self.wires[wire]
    }
}

impl IndexMut<usize> for Network {
    fn index_mut(&mut self, wire: usize) -> &mut Wire {
        &mut self.wires[wire]
    }
}

/// A simulator's node side: it runs one connection's commands its own way (observing what it
/// checks); the order in which connections are served is the same for all.
pub(crate) trait Serves {
    /// The run's connections.
    fn network(&mut self) -> &mut Network;

    /// Runs what reached the node on `wire` (or a blocked pop that may now finish) and sends
    /// the replies back.
    fn serve_wire(&mut self, wire: usize);

    /// Runs what reached the node by `now`, and every blocked pop that can finish.
    fn serve_node(&mut self, now: u64) {
        for wire in 0..self.network().len() {
            let has_input = self.network()[wire].deliver(now);
            if has_input || self.network()[wire].server.is_blocked() {
                self.serve_wire(wire);
            }
        }
        // A push may unblock a pop on any connection.
        for wire in 0..self.network().len() {
            if self.network()[wire].server.is_blocked() {
                self.serve_wire(wire);
            }
        }
    }
}

/// One client–node connection: bytes on their way in each direction, with delivery times.
pub(crate) struct Wire {
    pub(crate) server: ModelConnection,
    pub(crate) to_node: VecDeque<(u64, Vec<u8>)>,
    pub(crate) to_client: VecDeque<(u64, Vec<u8>)>,
    /// Broken: replies are dropped; requests already on their way still run (late).
    pub(crate) broken: bool,
    /// When the client learns the break (then the machine hears of it).
    pub(crate) notice_at: Option<u64>,
}

impl Wire {
    /// A fresh connection.
    pub(crate) fn new() -> Wire {
        Wire {
            server: ModelConnection::new(),
            to_node: VecDeque::new(),
            to_client: VecDeque::new(),
            broken: false,
            notice_at: None,
        }
    }

    /// Sends `bytes` towards the node, unless the connection is broken or this message is
    /// lost (which breaks it).
    pub(crate) fn send(&mut self, bytes: Vec<u8>, rng: &mut SplitMix64, now: u64) {
        if self.broken || self.lose(rng, now) {
            return;
        }
        let delay = latency(rng);
        let when = self.to_node.back().map_or(0, |(t, _)| *t).max(now + delay);
        self.to_node.push_back((when, bytes));
    }

    /// Sends the node's `bytes` back to the client, as [`Wire::send`] does (nothing for none).
    pub(crate) fn reply(&mut self, bytes: Vec<u8>, rng: &mut SplitMix64, now: u64) {
        if bytes.is_empty() || self.broken || self.lose(rng, now) {
            return;
        }
        let delay = latency(rng);
        let when = self
            .to_client
            .back()
            .map_or(0, |(t, _)| *t)
            .max(now + delay);
        self.to_client.push_back((when, bytes));
    }

    /// Hands the node's connection what reached it by `now`; whether anything did.
    pub(crate) fn deliver(&mut self, now: u64) -> bool {
        let mut any = false;
        while let Some((_, bytes)) = self.to_node.pop_front_if(|(t, _)| *t <= now) {
            self.server.receive(&bytes);
            any = true;
        }
        any
    }

    /// A message lost (2 in 1000): the connection breaks, the client learns it later.
    fn lose(&mut self, rng: &mut SplitMix64, now: u64) -> bool {
        if rng.between(0, 999) < 2 {
            self.broken = true;
            self.notice_at = Some(now + rng.between(1, 300));
            return true;
        }
        false
    }
}

/// A one-way delay: usually a few ms, at times past the request timeout.
fn latency(rng: &mut SplitMix64) -> u64 {
    if rng.between(0, 99) == 0 {
        rng.between(500, 2500)
    } else {
        rng.between(0, 4)
    }
}
