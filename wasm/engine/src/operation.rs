//! `machines.operation`: one of the core's lock machines (acquire, release, extend, status,
//! reset, and get-or-compute's fetch and finish) behind one WIT resource, driven by the runtime's loop — one `step` per event, its
//! flat twins (`start`/`feed`/`lose`/`lend`/`tick`, encoded by [`crate::flat`]), or the
//! fine-grained `poll-*`/`handle-*` calls.
//!
//! Invariants:
//! - an extend run for a [`crate::renewal::Renewal`] reports its outcome to that renewal
//!   exactly once — when the runtime reads it, or as a failure when the operation is dropped
//!   unfinished — so the schedule never waits on an extend nobody drives;
//! - nothing is ever sent to an *absent* node — one with no completed handshake when the
//!   operation was built (its protocol is unknown, so bytes framed for a guess could be
//!   misread both ways), or one the runtime reported disconnected in a `step`: the machine
//!   counts such a node as failed instead;
//! - a node lost (or never lent) is present again only by a `connected` event, and only
//!   when it was known when the operation was built, a handshake of it has completed since
//!   the loss, and the session records the protocol the machine frames that node's requests
//!   in; otherwise the event changes nothing. The machine's own retry decides when its next
//!   request goes out (then on the new connection): taking a connection back sends nothing;
//! - a node whose request went a whole request timeout without a reply byte is reported
//!   `silent` with the outcome, and the session hears it (`Session::silent`) once, so a
//!   frozen node costs one operation its request timeout and the next ones nothing;
//! - the flat calls run exactly `step`: an outcome the flat layout does not carry is kept
//!   and handed out once by `poll-outcome`.

use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use distlock_core::{Driven, Duration, ExtendOutcome, Fetched, Instant, Protocol};

use crate::api;
use crate::convert::{lock_error, reset, status};
use crate::flat;
use crate::input::{self, node, node_index};
use crate::machine::{Machine, driven};
use crate::renewal::Schedule;
use crate::session::Shared;

/// The step buffer's first size: room for a lock's requests; a longer one grows it.
pub(crate) const STEP_BUFFER: usize = 1024;

/// `machines.operation`.
pub(crate) struct Operation {
    machine: RefCell<Machine>,
    /// The renewal that asked for this extend, until it has heard the outcome.
    renewal: RefCell<Option<Rc<RefCell<Schedule>>>>,
    /// The latest `now` the runtime passed (time never goes back for one operation).
    last_now: Cell<Instant>,
    /// The session: its request timeout, its step buffer, and whom to tell about a silent
    /// node.
    shared: Rc<RefCell<Shared>>,
    /// Per node, what this operation tracks of its connection (one allocation for all).
    nodes: RefCell<Vec<NodeTrack>>,
    /// `step` gave the outcome out: the operation is over.
    finished: Cell<bool>,
    /// An outcome a flat call ended with but could not encode, until `poll-outcome`.
    kept: RefCell<Option<Result<api::Outcome, api::Error>>>,
}

/// What an operation tracks of one node's connection.
#[derive(Clone, Copy)]
struct NodeTrack {
    /// Whether nothing may be sent to the node (see the module doc).
    absent: bool,
    /// The protocol the machine frames its requests in; `None`: the node was not known when
    /// the operation was built, and stays absent.
    framed: Option<Protocol>,
    /// The session's count of completed handshakes when the node was last reported
    /// disconnected: a new connection must come from a handshake after that.
    lost_after: u64,
    /// Since when a request `step` handed out has gone without a reply byte — counted from
    /// the end of its blocking time for a blocking command (`BLPOP`), whose server rightly
    /// stays silent that long.
    unanswered: Option<Instant>,
}

impl Operation {
    /// `framed`: per node, the protocol `machine` was built to speak to it (`None`: no
    /// handshake had completed, the node is absent).
    pub(crate) fn new(
        machine: Machine,
        renewal: Option<Rc<RefCell<Schedule>>>,
        shared: Rc<RefCell<Shared>>,
        framed: impl Iterator<Item = Option<Protocol>>,
        now: Instant,
    ) -> Operation {
        let nodes = framed
            .map(|framed| NodeTrack {
                absent: framed.is_none(),
                framed,
                lost_after: 0,
                unanswered: None,
            })
            .collect();
        Operation {
            machine: RefCell::new(machine),
            renewal: RefCell::new(renewal),
            last_now: Cell::new(now),
            shared,
            nodes: RefCell::new(nodes),
            finished: Cell::new(false),
            kept: RefCell::new(None),
        }
    }

    /// Runs `write` with the session's step buffer — one per session, reused by every
    /// operation's steps, grown when a request needs more — or, should it be in use, a
    /// fresh one.
    fn with_step_buffer<R>(&self, write: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        match self.shared.try_borrow_mut() {
            Ok(mut shared) => write(&mut shared.step_buffer),
            Err(_) => write(&mut vec![0u8; STEP_BUFFER]),
        }
    }

    /// Hands `take` the next bytes to send to a node that is not absent, and for how long
    /// the command may rightly block, straight from the step buffer; a transmit for an absent
    /// node fails that node's request in the machine instead. `None`: nothing to send.
    /// `take` runs while the session is borrowed for its buffer: it must not borrow the
    /// session (the tracking and the answer it writes are the operation's own).
    fn next_transmit<R>(
        &self,
        at: Instant,
        take: impl FnOnce(usize, &[u8], Option<Duration>) -> R,
    ) -> Option<R> {
        let mut machine = self.machine.borrow_mut();
        self.with_step_buffer(|buf| {
            loop {
                match driven!(&mut *machine, m => m.poll_transmit(at, buf)) {
                    Ok(Some(tx)) => {
                        let absent = self.nodes.borrow().get(tx.node).is_none_or(|t| t.absent);
                        if absent {
                            driven!(&mut *machine, m => m.handle_disconnect(tx.node, at));
                            continue;
                        }
                        let bytes = buf.get(..tx.len).unwrap_or_default();
                        return Some(take(tx.node, bytes, tx.blocking));
                    }
                    Ok(None) => return None,
                    Err(short) => buf.resize(short.required, 0),
                }
            }
        })
    }

    /// `node`'s connection was lost, could not be opened, or is not there: the machine fails
    /// what was in flight on it, and nothing more goes to it until [`Operation::reconnected`].
    fn lost(&self, node: usize, at: Instant) {
        let completed = self.shared.borrow().completed.get(node).copied();
        if let Some(track) = self.nodes.borrow_mut().get_mut(node) {
            track.absent = true;
            // The request that went unanswered went with the connection: a new one starts
            // afresh.
            track.unanswered = None;
            if let Some(completed) = completed {
                track.lost_after = completed;
            }
        }
        driven!(&mut *self.machine.borrow_mut(), m => m.handle_disconnect(node, at));
    }

    /// The runtime lends absent `node` a new connection: taken (the node is present again)
    /// only on the terms of the module doc. The link is clean already — the loss cleared it
    /// and every transmit since failed at once — so the machine's next request for the node
    /// is the connection's first.
    fn reconnected(&self, node: usize) {
        let Some(NodeTrack {
            framed: Some(framed),
            lost_after,
            ..
        }) = self.nodes.borrow().get(node).copied()
        else {
            return;
        };
        let shared = self.shared.borrow();
        let completed = shared.completed.get(node).copied();
        let since_loss = completed.is_some_and(|now| now > lost_after);
        let same_protocol = shared
            .known
            .get(node)
            .copied()
            .flatten()
            .is_some_and(|server| server.protocol == framed);
        drop(shared);
        if !(since_loss && same_protocol) {
            return;
        }
        if let Some(track) = self.nodes.borrow_mut().get_mut(node) {
            track.absent = false;
        }
    }

    /// After the outcome, per node: keep the connection with what it owes, close it when
    /// out of step, or close it as silent (and tell the session) when a request on it went
    /// a whole request timeout without a reply byte.
    fn connections(&self, at: Instant) -> Vec<api::After> {
        let request_timeout = self.shared.borrow().options.request_timeout;
        let nodes = self.nodes.borrow().len();
        (0..nodes)
            .map(|n| {
                let since = self.nodes.borrow().get(n).and_then(|t| t.unanswered);
                let silent =
                    since.is_some_and(|since| at.saturating_since(since) >= request_timeout);
                match api::GuestOperation::handover(self, node_index(n)) {
                    None => api::After::Close,
                    Some(owed) if owed > 0 && silent => {
                        self.shared.borrow_mut().policy.silent(n, at);
                        api::After::Silent
                    }
                    Some(owed) => api::After::Keep(owed),
                }
            })
            .collect()
    }

    fn at(&self, now: api::Instant) -> Instant {
        let at = input::instant(now).max(self.last_now.get());
        self.last_now.set(at);
        at
    }

    /// A step on `events` answered in `layout`: each request written into the answer as the
    /// machine makes it; an outcome the layout cannot carry is kept for `poll-outcome`.
    pub(crate) fn run_flat(
        &self,
        now: api::Instant,
        events: impl IntoIterator<Item = api::NodeEvent>,
        layout: flat::Layout,
    ) -> Vec<u8> {
        let mut answer = flat::Answer::new(layout);
        let result = self.run_with(now, events, |n, bytes| answer.transmit(n, bytes));
        let (bytes, kept) = answer.finish(result);
        if kept.is_some() {
            *self.kept.borrow_mut() = kept;
        }
        bytes
    }

    /// The first step, answered in `layout`: a `disconnect` for every node the runtime lends
    /// no connection (`lent(n)` false).
    pub(crate) fn start_flat(
        &self,
        now: api::Instant,
        lent: impl Fn(usize) -> bool,
        layout: flat::Layout,
    ) -> Vec<u8> {
        let nodes = self.nodes.borrow().len();
        let events = (0..nodes)
            .filter(|&n| !lent(n))
            .map(|n| api::NodeEvent::Disconnect(node_index(n)));
        self.run_flat(now, events, layout)
    }

    /// Whether the outcome has been handed out: given by a step whose layout carries it, or
    /// read with `poll-outcome` (what frees a session-level flat call's slot).
    pub(crate) fn outcome_given(&self) -> bool {
        self.finished.get() && self.kept.borrow().is_none()
    }

    /// Whether a step has ended the operation (its outcome given, or kept for
    /// `poll-outcome`).
    pub(crate) fn finished(&self) -> bool {
        self.finished.get()
    }

    /// Tells the renewal, if any, how its extend ended.
    fn report(&self, outcome: ExtendOutcome) {
        if let Some(schedule) = self.renewal.borrow_mut().take() {
            schedule
                .borrow_mut()
                .handle_extend_outcome(outcome, self.last_now.get());
        }
    }

    /// An extend's outcome, told to the renewal first.
    fn extended(
        &self,
        result: Result<distlock_core::Extended, distlock_core::Error>,
    ) -> Result<api::Outcome, distlock_core::Error> {
        self.report(match &result {
            Ok(extended) => ExtendOutcome::Extended {
                started: extended.started,
                valid_until: extended.valid_until,
            },
            Err(distlock_core::Error::NotHeld) => ExtendOutcome::NotHeld,
            Err(_) => ExtendOutcome::Failed,
        });
        result.map(|extended| {
            api::Outcome::Extended(api::Extended {
                started: input::millis(extended.started),
                valid_until: input::millis(extended.valid_until),
            })
        })
    }
}

/// An acquire's outcome, as the interface carries it.
fn acquired(
    result: Result<distlock_core::Lease, distlock_core::Error>,
) -> Result<api::Outcome, distlock_core::Error> {
    result.map(|lease| {
        api::Outcome::Acquired(api::Lease {
            token: lease.token().as_str().into(),
            fence: lease.fence(),
            started: input::millis(lease.started()),
            valid_until: input::millis(lease.valid_until()),
        })
    })
}

/// A release's outcome, as the interface carries it.
fn released(
    result: Result<distlock_core::Released, distlock_core::Error>,
) -> Result<api::Outcome, distlock_core::Error> {
    result.map(|released| {
        api::Outcome::Released(match released {
            distlock_core::Released::StillHeld { holds } => holds,
            _ => 0,
        })
    })
}

impl Operation {
    /// `step` on `events`, taken one at a time (a flat call's one event needs no list),
    /// each request handed to `sent` (node, bytes) as the machine makes it instead of into
    /// the result's `transmits`.
    fn run_with(
        &self,
        now: api::Instant,
        events: impl IntoIterator<Item = api::NodeEvent>,
        mut sent: impl FnMut(u8, &[u8]),
    ) -> api::StepResult {
        let at = self.at(now);
        let mut result = api::StepResult {
            transmits: Vec::new(),
            timeout: None,
            outcome: None,
            connections: Vec::new(),
        };
        if self.finished.get() {
            return result;
        }
        for event in events {
            match event {
                api::NodeEvent::Data(received) => {
                    let n = node(received.node);
                    if !received.bytes.is_empty()
                        && let Some(track) = self.nodes.borrow_mut().get_mut(n)
                    {
                        track.unanswered = None;
                    }
                    driven!(&mut *self.machine.borrow_mut(), m => m.handle_input(n, &received.bytes, at));
                }
                api::NodeEvent::Disconnect(n) => self.lost(node(n), at),
                api::NodeEvent::Connected(n) => self.reconnected(node(n)),
            }
        }
        let due = driven!(&*self.machine.borrow(), m => m.poll_timeout()).is_some_and(|t| t <= at);
        if due {
            driven!(&mut *self.machine.borrow_mut(), m => m.handle_timeout(at));
        }
        let mut send = |n: usize, bytes: &[u8], blocking: Option<Duration>| {
            if let Some(track) = self.nodes.borrow_mut().get_mut(n) {
                let since = at.saturating_add(blocking.unwrap_or(Duration::ZERO));
                track.unanswered.get_or_insert(since);
            }
            sent(node_index(n), bytes);
        };
        while self.next_transmit(at, &mut send).is_some() {}
        result.outcome = api::GuestOperation::poll_outcome(self);
        if result.outcome.is_some() {
            self.finished.set(true);
            result.connections = self.connections(at);
        } else {
            result.timeout = api::GuestOperation::poll_timeout(self);
        }
        result
    }
}

impl api::GuestOperation for Operation {
    fn step(&self, now: api::Instant, events: Vec<api::NodeEvent>) -> api::StepResult {
        let mut transmits = Vec::new();
        let mut result = self.run_with(now, events, |node, bytes| {
            transmits.push(api::Transmit {
                node,
                bytes: bytes.to_vec(),
            });
        });
        result.transmits = transmits;
        result
    }

    fn start(&self, now: api::Instant, lent: Vec<u8>) -> Vec<u8> {
        let lent = |n| lent.get(n) == Some(&1);
        self.start_flat(now, lent, flat::Layout::Plain)
    }

    fn feed(&self, now: api::Instant, n: u8, bytes: Vec<u8>) -> Vec<u8> {
        let data = api::NodeEvent::Data(api::Received { node: n, bytes });
        self.run_flat(now, [data], flat::Layout::Plain)
    }

    fn lose(&self, now: api::Instant, n: u8) -> Vec<u8> {
        let lost = api::NodeEvent::Disconnect(n);
        self.run_flat(now, [lost], flat::Layout::Plain)
    }

    fn lend(&self, now: api::Instant, n: u8) -> Vec<u8> {
        let lent = api::NodeEvent::Connected(n);
        self.run_flat(now, [lent], flat::Layout::Plain)
    }

    fn tick(&self, now: api::Instant) -> Vec<u8> {
        self.run_flat(now, [], flat::Layout::Plain)
    }

    fn poll_transmit(&self, now: api::Instant) -> Option<api::Transmit> {
        let at = self.at(now);
        self.next_transmit(at, |n, bytes, _| api::Transmit {
            node: node_index(n),
            bytes: bytes.to_vec(),
        })
    }

    fn handle_input(&self, n: u8, bytes: Vec<u8>, now: api::Instant) {
        let at = self.at(now);
        driven!(&mut *self.machine.borrow_mut(), m => m.handle_input(node(n), &bytes, at));
    }

    fn handle_timeout(&self, now: api::Instant) {
        let at = self.at(now);
        driven!(&mut *self.machine.borrow_mut(), m => m.handle_timeout(at));
    }

    fn handle_disconnect(&self, n: u8, now: api::Instant) {
        let at = self.at(now);
        driven!(&mut *self.machine.borrow_mut(), m => m.handle_disconnect(node(n), at));
    }

    fn poll_timeout(&self) -> Option<api::Instant> {
        driven!(&*self.machine.borrow(), m => m.poll_timeout()).map(input::millis)
    }

    fn poll_outcome(&self) -> Option<Result<api::Outcome, api::Error>> {
        if let Some(kept) = self.kept.borrow_mut().take() {
            return Some(kept);
        }
        let mut machine = self.machine.borrow_mut();
        let outcome = match &mut *machine {
            Machine::Acquire(m) => acquired(m.poll_outcome()?),
            Machine::AcquireOne(m) => acquired(m.poll_outcome()?),
            Machine::Release(m) => released(m.poll_outcome()?),
            Machine::ReleaseOne(m) => released(m.poll_outcome()?),
            Machine::Extend(m) => {
                let result = m.poll_outcome()?;
                drop(machine);
                self.extended(result)
            }
            Machine::ExtendOne(m) => {
                let result = m.poll_outcome()?;
                drop(machine);
                self.extended(result)
            }
            Machine::Status(m) => Ok(api::Outcome::Status(status(m.poll_outcome()?))),
            Machine::Reset(m) => Ok(api::Outcome::Reset(reset(m.poll_outcome()?))),
            Machine::GetOrLock(m) => m.poll_outcome()?.and_then(|fetched| match fetched {
                Fetched::Value(value) => Ok(api::Outcome::Fetched(api::Fetched::Value(value))),
                Fetched::Computing(lease) => {
                    Ok(api::Outcome::Fetched(api::Fetched::Computing(api::Lease {
                        token: lease.token().as_str().into(),
                        fence: lease.fence(),
                        started: input::millis(lease.started()),
                        valid_until: input::millis(lease.valid_until()),
                    })))
                }
                // A kind of outcome this engine does not know yet: nothing to hand out.
                _ => Err(distlock_core::Error::Cancelled),
            }),
            Machine::FinishCompute(m) => m.poll_outcome()?.map(api::Outcome::Computed),
        };
        Some(outcome.map_err(lock_error))
    }

    fn cancel(&self, now: api::Instant) {
        let at = self.at(now);
        driven!(&mut *self.machine.borrow_mut(), m => m.cancel(at));
    }

    fn handover(&self, n: u8) -> Option<u32> {
        match &*self.machine.borrow() {
            Machine::Acquire(m) => m.handover(node(n)),
            Machine::AcquireOne(m) => m.handover(node(n)),
            Machine::Release(m) => m.handover(node(n)),
            Machine::ReleaseOne(m) => m.handover(node(n)),
            Machine::Extend(m) => m.handover(node(n)),
            Machine::ExtendOne(m) => m.handover(node(n)),
            Machine::Status(m) => m.owed_replies(node(n)),
            Machine::Reset(m) => m.owed_replies(node(n)),
            Machine::GetOrLock(m) => m.owed_replies(node(n)),
            Machine::FinishCompute(m) => m.owed_replies(node(n)),
        }
    }

    fn discard_replies(&self, n: u8, replies: u32) -> bool {
        match &mut *self.machine.borrow_mut() {
            Machine::Acquire(m) => m.discard_replies(node(n), replies),
            Machine::AcquireOne(m) => m.discard_replies(node(n), replies),
            Machine::Release(m) => m.discard_replies(node(n), replies),
            Machine::ReleaseOne(m) => m.discard_replies(node(n), replies),
            Machine::Extend(m) => m.discard_replies(node(n), replies),
            Machine::ExtendOne(m) => m.discard_replies(node(n), replies),
            // `status`, `reset` and get-or-compute's conversations run on connections that
            // owe nothing.
            Machine::Status(_)
            | Machine::Reset(_)
            | Machine::GetOrLock(_)
            | Machine::FinishCompute(_) => replies == 0,
        }
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        // An extend dropped before its outcome was read failed, for its renewal (which then
        // tries again while the validity lasts). Bookkeeping only: no I/O.
        self.report(ExtendOutcome::Failed);
    }
}
