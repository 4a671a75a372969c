//! The flat encoding of a step's result (`operation.start`/`feed`/`lose`/`lend`/`tick`, the
//! `*-started` constructors, and in its slotted form the session-level `*-flat` calls): the
//! bytes `wit/engine.wit` documents, for runtimes where converting component values costs
//! more than the step itself.
//!
//! Owns the layout only; what a step does is [`crate::operation`]'s. Invariants: every
//! encoding starts with its layout's version ([`VERSION`], or [`SLOTTED_VERSION`] and the
//! slot); an outcome the layout has no fields for (status,
//! reset, an error) is code [`OUTCOME_OTHER`], and its caller keeps the value for
//! `poll-outcome`, so nothing is lost by going flat.

use alloc::vec::Vec;

use crate::api;

/// The layout's version: the first byte.
pub(crate) const VERSION: u8 = 1;
/// The session-level flat calls' layout (`acquire-flat`, `feed-flat`, …): [`VERSION`]'s,
/// with the operation's `u32` slot right after the version byte.
pub(crate) const SLOTTED_VERSION: u8 = 2;

const PENDING: u8 = 0;
const OVER: u8 = 1;

const OUTCOME_ACQUIRED: u8 = 0;
const OUTCOME_RELEASED: u8 = 1;
const OUTCOME_EXTENDED: u8 = 2;
/// An outcome read with `poll-outcome` instead.
const OUTCOME_OTHER: u8 = 3;

const KEEP: u8 = 0;
const CLOSE: u8 = 1;
const SILENT: u8 = 2;

/// Which layout a step is encoded in: an operation's own ([`VERSION`]), or a session-level
/// flat call's ([`SLOTTED_VERSION`] and the operation's slot, then the same fields).
#[derive(Clone, Copy)]
pub(crate) enum Layout {
    Plain,
    Slotted(u32),
}

/// A flat answer being written: its header, then each transmit as the step hands it out
/// (straight from the session's step buffer), then the rest of the step by [`Answer::finish`].
pub(crate) struct Answer {
    out: Vec<u8>,
    /// Where the transmit count is, and the count so far.
    count_at: usize,
    count: u8,
}

impl Answer {
    /// An answer in `layout`, no transmits yet.
    pub(crate) fn new(layout: Layout) -> Answer {
        // Room for a step's usual requests and its outcome, so most answers never grow.
        let mut out = Vec::with_capacity(256);
        match layout {
            Layout::Plain => out.push(VERSION),
            Layout::Slotted(slot) => {
                out.push(SLOTTED_VERSION);
                out.extend_from_slice(&slot.to_le_bytes());
            }
        }
        let count_at = out.len();
        out.push(0);
        Answer {
            out,
            count_at,
            count: 0,
        }
    }

    /// One transmit. Nodes never exceed `MAX_NODES` and a step sends one request per node
    /// at most, far below the 255 the count holds: past them, a transmit is left out.
    pub(crate) fn transmit(&mut self, node: u8, bytes: &[u8]) {
        let Some(count) = self.count.checked_add(1) else {
            return;
        };
        self.count = count;
        if let Some(slot) = self.out.get_mut(self.count_at) {
            *slot = count;
        }
        self.out.push(node);
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.out.extend_from_slice(&len.to_le_bytes());
        self.out.extend_from_slice(bytes);
    }

    /// The rest of `result` (its `transmits` were handed to [`Answer::transmit`]). Returns
    /// the outcome when it is one the layout does not carry, for the caller to keep for
    /// `poll-outcome`.
    pub(crate) fn finish(
        self,
        result: api::StepResult,
    ) -> (Vec<u8>, Option<Result<api::Outcome, api::Error>>) {
        let mut out = self.out;
        let Some(outcome) = result.outcome else {
            out.push(PENDING);
            out.extend_from_slice(&result.timeout.unwrap_or(f64::NAN).to_le_bytes());
            return (out, None);
        };
        out.push(OVER);
        let kept = match outcome {
            Ok(api::Outcome::Acquired(lease)) => {
                out.push(OUTCOME_ACQUIRED);
                // A token is 16 to 64 bytes (the interface's `lease` doc).
                let token = lease.token.as_bytes();
                let token = token.get(..usize::from(u8::MAX)).unwrap_or(token);
                out.push(u8::try_from(token.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(token);
                out.push(u8::from(lease.fence.is_some()));
                out.extend_from_slice(&lease.fence.unwrap_or(0).to_le_bytes());
                out.extend_from_slice(&lease.started.to_le_bytes());
                out.extend_from_slice(&lease.valid_until.to_le_bytes());
                None
            }
            Ok(api::Outcome::Released(holds)) => {
                out.push(OUTCOME_RELEASED);
                out.extend_from_slice(&holds.to_le_bytes());
                None
            }
            Ok(api::Outcome::Extended(extended)) => {
                out.push(OUTCOME_EXTENDED);
                out.extend_from_slice(&extended.started.to_le_bytes());
                out.extend_from_slice(&extended.valid_until.to_le_bytes());
                None
            }
            other => {
                out.push(OUTCOME_OTHER);
                Some(other)
            }
        };
        out.push(u8::try_from(result.connections.len()).unwrap_or(u8::MAX));
        for after in &result.connections {
            let (verdict, owed) = match after {
                api::After::Keep(owed) => (KEEP, *owed),
                api::After::Close => (CLOSE, 0),
                api::After::Silent => (SILENT, 0),
            };
            out.push(verdict);
            out.extend_from_slice(&owed.to_le_bytes());
        }
        (out, kept)
    }
}
