//! The reference host's session-level flat calls (`session.register`, `acquire-flat`,
//! `feed-flat`, … in `wit/engine.wit`): the path of the Node and Python hosts' uncontended
//! acquire and release — names registered once, operations addressed by a slot the engine
//! frees — driven over the same sockets and loop as the resource calls, so the conformance
//! tests can hold the slotted path to the same outcomes.
//!
//! [`packed`] runs the same loop over the packed twins (`*-flat-packed`).
//!
//! Every answer is checked against the slot lifetime the WIT promises: the slot an
//! operation's first answer names is the one every later answer names, and once the outcome
//! is handed out the slot answers nothing.

use super::{Conn, Host, api, earliest, entropy, flat, packed};

/// How an operation's byte lists cross: as the flat calls' `list<u8>`, or packed eight bytes
/// to a `u64` (the `*-flat-packed` calls, [`packed`]).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Form {
    Bytes,
    Packed,
}

impl Host {
    /// The name id of `name` (`session.register`).
    pub(crate) fn register(&self, name: &str) -> Result<u32, api::Error> {
        self.sessions()
            .call_register(&mut *self.store.borrow_mut(), self.session, name)
            .expect("no trap")
    }

    /// `session.forget-names`.
    pub(crate) fn forget_names(&self) {
        self.sessions()
            .call_forget_names(&mut *self.store.borrow_mut(), self.session)
            .expect("no trap");
    }

    /// Per node, bit n set where a ready connection owing nothing can be lent (`lent` of the
    /// `*-flat` constructors).
    pub(crate) fn lent_bits(&self) -> u32 {
        self.lent()
            .iter()
            .enumerate()
            .fold(0, |bits, (n, &lent)| bits | u32::from(lent) << n)
    }

    /// `acquire-flat` (wait in ms; 0: one attempt), run to its outcome.
    pub(crate) fn acquire_slotted(
        &mut self,
        name: &str,
        wait_ms: u32,
    ) -> Result<api::Lease, api::Error> {
        self.tend();
        let id = self.register(name)?;
        let (now, lent) = (self.now(), self.lent_bits());
        let first = self
            .sessions()
            .call_acquire_flat(
                &mut *self.store.borrow_mut(),
                self.session,
                id,
                wait_ms,
                now,
                &entropy(),
                lent,
            )
            .expect("no trap")?;
        match self.run_slotted(first, Form::Bytes)? {
            api::Outcome::Acquired(lease) => Ok(lease),
            other => panic!("acquire ended with {other:?}"),
        }
    }

    /// `release-flat`, run to its outcome: the holds left.
    pub(crate) fn release_slotted(&mut self, name: &str, token: &str) -> Result<u32, api::Error> {
        self.tend();
        let id = self.register(name)?;
        let (now, lent) = (self.now(), self.lent_bits());
        let first = self
            .sessions()
            .call_release_flat(
                &mut *self.store.borrow_mut(),
                self.session,
                id,
                token.as_bytes(),
                now,
                &entropy(),
                lent,
            )
            .expect("no trap")?;
        match self.run_slotted(first, Form::Bytes)? {
            api::Outcome::Released(holds) => Ok(holds),
            other => panic!("release ended with {other:?}"),
        }
    }

    /// `extend-flat`, run to its outcome.
    pub(crate) fn extend_slotted(
        &mut self,
        name: &str,
        token: &str,
        ttl_ms: u32,
    ) -> Result<api::Extended, api::Error> {
        self.tend();
        let id = self.register(name)?;
        let (now, lent) = (self.now(), self.lent_bits());
        let first = self
            .sessions()
            .call_extend_flat(
                &mut *self.store.borrow_mut(),
                self.session,
                id,
                token.as_bytes(),
                ttl_ms,
                now,
                &entropy(),
                lent,
            )
            .expect("no trap")?;
        match self.run_slotted(first, Form::Bytes)? {
            api::Outcome::Extended(extended) => Ok(extended),
            other => panic!("extend ended with {other:?}"),
        }
    }

    /// `acquire-flat` with every ready connection lent and nothing driven: the operation's
    /// slot, or why none was given. The caller abandons it (its requests are written to no
    /// socket, so the connections stay in step).
    pub(crate) fn acquire_parked(&mut self, id: u32) -> Result<u32, api::Error> {
        let (now, lent) = (self.now(), self.lent_bits());
        let first = self
            .sessions()
            .call_acquire_flat(
                &mut *self.store.borrow_mut(),
                self.session,
                id,
                60_000,
                now,
                &entropy(),
                lent,
            )
            .expect("no trap")?;
        Ok(flat::decode_slotted(&first).0)
    }

    /// `session.abandon`.
    pub(crate) fn abandon(&self, slot: u32) {
        self.sessions()
            .call_abandon(&mut *self.store.borrow_mut(), self.session, slot)
            .expect("no trap");
    }

    /// `session.tick-flat` on `slot`, as the engine answers it.
    pub(crate) fn tick_slot(&self, slot: u32) -> Vec<u8> {
        let now = self.now();
        self.sessions()
            .call_tick_flat(&mut *self.store.borrow_mut(), self.session, slot, now)
            .expect("no trap")
    }

    /// Drives the operation whose first answer is `first` to its outcome, one `feed-flat`,
    /// `lose-flat`, `lend-flat` or `tick-flat` per event, then does with each connection what the engine
    /// says.
    pub(crate) fn run_slotted(
        &mut self,
        first: Vec<u8>,
        form: Form,
    ) -> Result<api::Outcome, api::Error> {
        let (slot, _) = flat::decode_slotted(&first);
        let mut answer = first;
        let mut events = Vec::new();
        loop {
            let (answered_slot, step) = flat::decode_slotted(&answer);
            assert_eq!(
                answered_slot, slot,
                "every answer names the operation's slot"
            );
            for tx in step.result.transmits {
                let sent = match self.conns.get_mut(usize::from(tx.node)) {
                    Some(Some(Conn::Ready { stream, .. })) => {
                        std::io::Write::write_all(stream, &tx.bytes).is_ok()
                    }
                    _ => false,
                };
                if !sent {
                    events.push(api::NodeEvent::Disconnect(tx.node));
                }
            }
            if step.result.outcome.is_some() || step.outcome_elsewhere {
                if step.outcome_elsewhere {
                    assert!(
                        self.tick_slot(slot).is_empty(),
                        "an operation over steps no more while its outcome waits"
                    );
                }
                let outcome = match step.result.outcome {
                    Some(outcome) => outcome,
                    None => self
                        .sessions()
                        .call_outcome_flat(&mut *self.store.borrow_mut(), self.session, slot)
                        .expect("no trap")
                        .expect("an outcome the layout does not carry waits in its slot"),
                };
                assert!(
                    self.tick_slot(slot).is_empty(),
                    "the slot is freed once its outcome is handed out"
                );
                self.hand_over(&step.result.connections);
                return outcome;
            }
            self.reopen_lost();
            if events.is_empty() {
                let deadline = earliest(step.result.timeout, self.connect_deadline());
                self.wait(deadline, Some(&mut events));
            }
            let now = self.now();
            let sessions = self.sessions();
            let store = &mut *self.store.borrow_mut();
            let (session, event) = (self.session, (!events.is_empty()).then(|| events.remove(0)));
            answer = match (form, event) {
                (Form::Bytes, Some(api::NodeEvent::Data(data))) => {
                    sessions.call_feed_flat(store, session, slot, now, data.node, &data.bytes)
                }
                (Form::Bytes, Some(api::NodeEvent::Disconnect(node))) => {
                    sessions.call_lose_flat(store, session, slot, now, node)
                }
                (Form::Bytes, Some(api::NodeEvent::Connected(node))) => {
                    sessions.call_lend_flat(store, session, slot, now, node)
                }
                (Form::Bytes, None) => sessions.call_tick_flat(store, session, slot, now),
                (Form::Packed, Some(api::NodeEvent::Data(data))) => {
                    let (words, len) = packed::pack(&data.bytes);
                    sessions
                        .call_feed_flat_packed(store, session, slot, now, data.node, &words, len)
                        .map(|answer| packed::unpacked(&answer))
                }
                (Form::Packed, Some(api::NodeEvent::Disconnect(node))) => sessions
                    .call_lose_flat_packed(store, session, slot, now, node)
                    .map(|answer| packed::unpacked(&answer)),
                (Form::Packed, Some(api::NodeEvent::Connected(node))) => sessions
                    .call_lend_flat_packed(store, session, slot, now, node)
                    .map(|answer| packed::unpacked(&answer)),
                (Form::Packed, None) => sessions
                    .call_tick_flat_packed(store, session, slot, now)
                    .map(|answer| packed::unpacked(&answer)),
            }
            .expect("no trap");
        }
    }
}
