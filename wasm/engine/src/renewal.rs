//! `machines.renewal`: the core's renewal schedule ([`distlock_core::Renewal`]) of one held
//! lease. When an extend is due it hands the runtime an `operation` to drive; that operation
//! reports its outcome back here ([`crate::operation`]), so the runtime drives renewal with
//! the same loop as every other machine.
//!
//! Invariant: the schedule is the core's — an extend every third of the TTL, its request
//! timeout cut to the validity left, retries while the validity lasts, lost when it runs out
//! or an extend finds another token — and once lost it stays lost.

use alloc::rc::Rc;
use core::cell::RefCell;

use distlock_core::{Instant, LostReason, RenewalEvent, Token};

use crate::api;
use crate::input;
use crate::machine::Machine;
use crate::operation::Operation;
use crate::session::Shared;

/// The core's schedule, shared with the extend operation it asked for.
pub(crate) type Schedule = distlock_core::Renewal;

/// `machines.renewal`.
pub(crate) struct Renewal {
    shared: Rc<RefCell<Shared>>,
    schedule: Rc<RefCell<Schedule>>,
    lock: distlock_core::Lock,
    token: Token,
}

impl Renewal {
    pub(crate) fn new(
        shared: Rc<RefCell<Shared>>,
        lock: distlock_core::Lock,
        token: Token,
        started: Instant,
        valid_until: Instant,
        seed: u64,
    ) -> Renewal {
        let ttl = lock.options().ttl;
        Renewal {
            shared,
            schedule: Rc::new(RefCell::new(Schedule::new(ttl, started, valid_until, seed))),
            lock,
            token,
        }
    }
}

fn lost_reason(reason: LostReason) -> api::LostReason {
    match reason {
        LostReason::NotHeld => api::LostReason::NotHeld,
        _ => api::LostReason::Expired,
    }
}

impl api::GuestRenewal for Renewal {
    fn poll_timeout(&self) -> Option<api::Instant> {
        self.schedule.borrow().poll_timeout().map(input::millis)
    }

    fn handle_timeout(&self, now: api::Instant) {
        self.schedule
            .borrow_mut()
            .handle_timeout(input::instant(now));
    }

    fn poll_event(&self, now: api::Instant, entropy: api::Entropy) -> Option<api::RenewalEvent> {
        // Short entropy leaves the event where it is: nothing changes.
        let seed = input::seed(&entropy).ok()?;
        let at = input::instant(now);
        let event = self.schedule.borrow_mut().poll_event()?;
        match event {
            RenewalEvent::Extend => {
                let lock = self.schedule.borrow().extend_lock(&self.lock, at);
                let built = {
                    let shared = self.shared.borrow();
                    shared
                        .with_servers(|servers| {
                            Machine::extend(&lock, self.token.clone(), servers, at, seed)
                        })
                        .map(|machine| {
                            Operation::new(
                                machine,
                                Some(Rc::clone(&self.schedule)),
                                Rc::clone(&self.shared),
                                shared.framed(),
                                at,
                            )
                        })
                };
                match built {
                    Ok(op) => Some(api::RenewalEvent::Extend(api::Operation::new(op))),
                    Err(_) => {
                        // The lock was built for this session, so this cannot happen; were it
                        // to, the schedule retries while the validity lasts.
                        self.schedule
                            .borrow_mut()
                            .handle_extend_outcome(distlock_core::ExtendOutcome::Failed, at);
                        None
                    }
                }
            }
            RenewalEvent::Lost(reason) => Some(api::RenewalEvent::Lost(lost_reason(reason))),
            _ => None,
        }
    }

    fn valid_until(&self) -> api::Instant {
        input::millis(self.schedule.borrow().valid_until())
    }

    fn lost(&self) -> Option<api::LostReason> {
        self.schedule.borrow().lost().map(lost_reason)
    }
}
