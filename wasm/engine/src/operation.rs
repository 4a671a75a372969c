//! `machines.operation`: one of the core's lock machines (acquire, release, extend, status,
//! reset)
//! behind one WIT resource, driven by the runtime's loop.
//!
//! Invariant: an extend run for a [`crate::renewal::Renewal`] reports its outcome to that
//! renewal exactly once — when the runtime reads it, or as a failure when the operation is
//! dropped unfinished — so the schedule never waits on an extend nobody drives.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use distlock_core::{
    Acquire, Driven, Extend, ExtendOutcome, Inspect, Instant, MAX_NODES, Release, Reset,
};

use crate::api;
use crate::convert::{lock_error, reset, status};
use crate::input::{self, node, node_index};
use crate::renewal::Schedule;

/// The machine an operation runs. Boxed: each carries its nodes' reply buffers.
pub(crate) enum Machine {
    Acquire(Box<Acquire<MAX_NODES>>),
    Release(Box<Release<MAX_NODES>>),
    Extend(Box<Extend<MAX_NODES>>),
    Status(Box<Inspect>),
    Reset(Box<Reset>),
}

/// Runs `$body` with `$m` bound to the machine, as a [`Driven`].
macro_rules! driven {
    ($machine:expr, $m:ident => $body:expr) => {
        match $machine {
            Machine::Acquire($m) => $body,
            Machine::Release($m) => $body,
            Machine::Extend($m) => $body,
            Machine::Status($m) => $body,
            Machine::Reset($m) => $body,
        }
    };
}

/// `machines.operation`.
pub(crate) struct Operation {
    machine: RefCell<Machine>,
    /// The renewal that asked for this extend, until it has heard the outcome.
    renewal: RefCell<Option<Rc<RefCell<Schedule>>>>,
    /// The latest `now` the runtime passed (time never goes back for one operation).
    last_now: Cell<Instant>,
    buf: RefCell<Vec<u8>>,
}

impl Operation {
    pub(crate) fn new(
        machine: Machine,
        renewal: Option<Rc<RefCell<Schedule>>>,
        now: Instant,
    ) -> Operation {
        Operation {
            machine: RefCell::new(machine),
            renewal: RefCell::new(renewal),
            last_now: Cell::new(now),
            buf: RefCell::new(vec![0u8; 1024]),
        }
    }

    fn at(&self, now: api::Instant) -> Instant {
        let at = input::instant(now).max(self.last_now.get());
        self.last_now.set(at);
        at
    }

    /// Tells the renewal, if any, how its extend ended.
    fn report(&self, outcome: ExtendOutcome) {
        if let Some(schedule) = self.renewal.borrow_mut().take() {
            schedule
                .borrow_mut()
                .handle_extend_outcome(outcome, self.last_now.get());
        }
    }
}

impl api::GuestOperation for Operation {
    fn poll_transmit(&self, now: api::Instant) -> Option<api::Transmit> {
        let at = self.at(now);
        let mut machine = self.machine.borrow_mut();
        let mut buf = self.buf.borrow_mut();
        loop {
            match driven!(&mut *machine, m => m.poll_transmit(at, &mut buf)) {
                Ok(Some(tx)) => {
                    return Some(api::Transmit {
                        node: node_index(tx.node),
                        bytes: buf.get(..tx.len).map(<[u8]>::to_vec).unwrap_or_default(),
                    });
                }
                Ok(None) => return None,
                Err(short) => buf.resize(short.required, 0),
            }
        }
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
        let mut machine = self.machine.borrow_mut();
        let outcome = match &mut *machine {
            Machine::Acquire(m) => m.poll_outcome()?.map(|lease| {
                api::Outcome::Acquired(api::Lease {
                    token: lease.token().as_str().into(),
                    fence: lease.fence(),
                    started: input::millis(lease.started()),
                    valid_until: input::millis(lease.valid_until()),
                })
            }),
            Machine::Release(m) => m.poll_outcome()?.map(|released| {
                api::Outcome::Released(match released {
                    distlock_core::Released::StillHeld { holds } => holds,
                    _ => 0,
                })
            }),
            Machine::Extend(m) => {
                let result = m.poll_outcome()?;
                drop(machine);
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
            Machine::Status(m) => Ok(api::Outcome::Status(status(m.poll_outcome()?))),
            Machine::Reset(m) => Ok(api::Outcome::Reset(reset(m.poll_outcome()?))),
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
            Machine::Release(m) => m.handover(node(n)),
            Machine::Extend(m) => m.handover(node(n)),
            Machine::Status(m) => m.owed_replies(node(n)),
            Machine::Reset(m) => m.owed_replies(node(n)),
        }
    }

    fn discard_replies(&self, n: u8, replies: u32) -> bool {
        match &mut *self.machine.borrow_mut() {
            Machine::Acquire(m) => m.discard_replies(node(n), replies),
            Machine::Release(m) => m.discard_replies(node(n), replies),
            Machine::Extend(m) => m.discard_replies(node(n), replies),
            // `status` and `reset` run on connections that owe nothing.
            Machine::Status(_) | Machine::Reset(_) => replies == 0,
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
