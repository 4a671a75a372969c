//! The `event_sequence` input: a setup and a list of events, both `arbitrary`-derived (the
//! quinn/rustls shape `(Params, Vec<Op>)`).

use arbitrary::{Arbitrary, Unstructured};
use distlock_core::Duration;

use crate::driver::Harness;
use crate::replies::ReplyKind;
use crate::setup::SetupChoice;

/// How queued bytes reach the machine.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// In one read.
    Whole,
    /// One byte per read.
    Bytewise,
    /// Half now, the rest stays queued.
    Half,
    /// Not yet (a later `Deliver`, or never).
    Hold,
    /// This many bytes now.
    At(u8),
}

/// One thing that happens to a machine.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node replies (aimed at its next unanswered command), delivered per `split`.
    Reply {
        /// Which node (modulo the node count).
        node: u8,
        /// What it says.
        reply: ReplyKind,
        /// How it arrives.
        split: Split,
    },
    /// Queued bytes arrive.
    Deliver {
        /// Which node.
        node: u8,
        /// Up to this many (0: all).
        max: u8,
    },
    /// Up to four raw bytes from a node.
    Garbage {
        /// Which node.
        node: u8,
        /// The bytes.
        bytes: [u8; 4],
        /// How many of them (modulo 5).
        len: u8,
        /// How they arrive.
        split: Split,
    },
    /// Time runs to the machine's deadline.
    Timeout,
    /// Time moves forward by milliseconds.
    Advance {
        /// How far.
        ms: u16,
    },
    /// Time leaps forward by seconds (a suspended process, say).
    Leap {
        /// How far.
        secs: u16,
    },
    /// `handle_timeout` before anything is due.
    EarlyTimeout,
    /// The caller gives up.
    Cancel,
    /// A node's connection is lost and replaced.
    Reset {
        /// Which node.
        node: u8,
    },
}

/// A whole `event_sequence` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInput {
    /// The machine.
    pub setup: SetupChoice,
    /// What happens to it.
    pub events: Vec<Event>,
}

impl<'a> Arbitrary<'a> for EventInput {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let setup = SetupChoice::arbitrary(u)?;
        // Events until the data runs out; a truncated last event is dropped, not the input.
        let mut events = Vec::new();
        for event in u.arbitrary_iter::<Event>()? {
            match event {
                Ok(event) => events.push(event),
                Err(_) => break,
            }
        }
        Ok(EventInput { setup, events })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

fn arrive(h: &mut Harness, node: usize, split: Split) {
    match split {
        Split::Whole => h.deliver(node, usize::MAX),
        Split::Bytewise => h.deliver_in_pieces(node, 1),
        Split::Half => h.deliver(node, h.pending(node).div_ceil(2)),
        Split::Hold => {}
        Split::At(n) => h.deliver(node, usize::from(n)),
    }
}

/// Applies one event.
pub fn apply(h: &mut Harness, event: &Event) {
    match *event {
        Event::Reply { node, reply, split } => {
            let node = usize::from(node) % h.nodes();
            h.push_reply(node, reply);
            arrive(h, node, split);
        }
        Event::Deliver { node, max } => {
            let max = if max == 0 {
                usize::MAX
            } else {
                usize::from(max)
            };
            h.deliver(usize::from(node), max);
        }
        Event::Garbage {
            node,
            bytes,
            len,
            split,
        } => {
            let node = usize::from(node) % h.nodes();
            h.push_raw(node, &bytes[..usize::from(len % 5)]);
            arrive(h, node, split);
        }
        Event::Timeout => h.run_to_timeout(),
        Event::Advance { ms } => h.advance(Duration::from_millis(u64::from(ms))),
        Event::Leap { secs } => h.advance(Duration::from_secs(u64::from(secs))),
        Event::EarlyTimeout => h.early_timeout(),
        Event::Cancel => h.cancel(),
        Event::Reset { node } => h.reset(usize::from(node)),
    }
}

/// Runs one `event_sequence` input: every event, then silence until the outcome.
pub fn run(input: &EventInput) {
    let mut h = Harness::new(input.setup.machine_setup());
    for event in &input.events {
        apply(&mut h, event);
    }
    h.finish();
}
