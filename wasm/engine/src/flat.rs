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

/// `result` in `layout`, written once (a slotted answer is not a copy of a plain one).
/// Returns the outcome when it is one the layout does not carry, for the caller to keep for
/// `poll-outcome`.
pub(crate) fn encode(
    result: api::StepResult,
    layout: Layout,
) -> (Vec<u8>, Option<Result<api::Outcome, api::Error>>) {
    let payload: usize = result.transmits.iter().map(|tx| tx.bytes.len() + 5).sum();
    let mut out = Vec::with_capacity(payload + 64 + result.connections.len() * 5);
    match layout {
        Layout::Plain => out.push(VERSION),
        Layout::Slotted(slot) => {
            out.push(SLOTTED_VERSION);
            out.extend_from_slice(&slot.to_le_bytes());
        }
    }
    // Nodes never exceed `MAX_NODES` and a step sends one request per node at most, far
    // below 256 transmits.
    out.push(u8::try_from(result.transmits.len()).unwrap_or(u8::MAX));
    for tx in result.transmits.iter().take(usize::from(u8::MAX)) {
        out.push(tx.node);
        out.extend_from_slice(
            &u32::try_from(tx.bytes.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(&tx.bytes);
    }
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
