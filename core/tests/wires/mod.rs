//! The simulated network of the primitives' simulators (`semaphore_simulation.rs`,
//! `rwlock_simulation.rs`): one connection per client machine to the one model node, in each
//! direction a one-way delay that is usually a few ms and at times past the request timeout
//! (messages keep their order), and a loss (2 in 1000) that breaks the connection, which the
//! client learns of later. One copy, so both primitives are checked under the same faults.
//!
//! Every draw comes from the world's seeded generator, in a fixed order, so a run replays
//! from its seed.

use std::collections::VecDeque;

use distlock_core::SplitMix64;
use distlock_model::ModelConnection;

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
