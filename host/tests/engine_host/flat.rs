//! The reference host's reader of the engine's flat step encoding (`operation.feed` in
//! `wit/engine.wit`): the bytes back as the `step-result` the same step gives, so the
//! conformance test can hold the flat calls to the record-typed `step`. Layout only.

use super::api;

/// One flat step: the `step-result`, and whether its outcome is one the layout does not
/// carry (status, reset, an error: read with `poll-outcome`).
pub(crate) struct FlatStep {
    pub(crate) result: api::StepResult,
    pub(crate) outcome_elsewhere: bool,
}

/// Reads the slotted layout (the session-level `*-flat` calls' answers: version 2, the
/// slot, then the rest as version 1): the slot and the step.
pub(crate) fn decode_slotted(bytes: &[u8]) -> (u32, FlatStep) {
    assert_eq!(bytes.first(), Some(&2), "slotted flat encoding version");
    let slot = u32::from_le_bytes(bytes[1..5].try_into().unwrap());
    let mut plain = vec![1];
    plain.extend_from_slice(&bytes[5..]);
    (slot, decode(&plain))
}

/// Reads `bytes`; panics on anything the layout does not allow (a test fails then).
pub(crate) fn decode(bytes: &[u8]) -> FlatStep {
    let (step, used) = decode_prefix(bytes);
    assert_eq!(used, bytes.len(), "nothing after the step");
    step
}

/// The length of the slotted step at the start of `bytes` (what follows is not read).
pub(crate) fn slotted_len(bytes: &[u8]) -> usize {
    assert_eq!(bytes.first(), Some(&2), "slotted flat encoding version");
    let mut plain = vec![1];
    plain.extend_from_slice(&bytes[5..]);
    decode_prefix(&plain).1 + 4
}

/// Reads the step at the start of `bytes`, and how many bytes it took.
fn decode_prefix(bytes: &[u8]) -> (FlatStep, usize) {
    let mut at = 0;
    let mut take = |n: usize| {
        let slice = &bytes[at..at + n];
        at += n;
        slice
    };
    assert_eq!(take(1)[0], 1, "flat encoding version");
    let mut result = api::StepResult {
        transmits: Vec::new(),
        timeout: None,
        outcome: None,
        connections: Vec::new(),
    };
    for _ in 0..take(1)[0] {
        let node = take(1)[0];
        let length = u32::from_le_bytes(take(4).try_into().unwrap()) as usize;
        let bytes = take(length).to_vec();
        result.transmits.push(api::Transmit { node, bytes });
    }
    let f64_of = |b: &[u8]| f64::from_le_bytes(b.try_into().unwrap());
    if take(1)[0] == 0 {
        let timeout = f64_of(take(8));
        result.timeout = (!timeout.is_nan()).then_some(timeout);
        let step = FlatStep {
            result,
            outcome_elsewhere: false,
        };
        return (step, at);
    }
    let mut outcome_elsewhere = false;
    result.outcome = match take(1)[0] {
        0 => {
            let length = usize::from(take(1)[0]);
            let token = String::from_utf8(take(length).to_vec()).expect("an ASCII token");
            let has_fence = take(1)[0] == 1;
            let fence = u64::from_le_bytes(take(8).try_into().unwrap());
            Some(Ok(api::Outcome::Acquired(api::Lease {
                token,
                fence: has_fence.then_some(fence),
                started: f64_of(take(8)),
                valid_until: f64_of(take(8)),
            })))
        }
        1 => Some(Ok(api::Outcome::Released(u32::from_le_bytes(
            take(4).try_into().unwrap(),
        )))),
        2 => Some(Ok(api::Outcome::Extended(api::Extended {
            started: f64_of(take(8)),
            valid_until: f64_of(take(8)),
        }))),
        3 => {
            outcome_elsewhere = true;
            None
        }
        code => panic!("unknown outcome code {code}"),
    };
    for _ in 0..take(1)[0] {
        let verdict = take(1)[0];
        let owed = u32::from_le_bytes(take(4).try_into().unwrap());
        result.connections.push(match verdict {
            0 => api::After::Keep(owed),
            1 => api::After::Close,
            2 => api::After::Silent,
            other => panic!("unknown connection verdict {other}"),
        });
    }
    let step = FlatStep {
        result,
        outcome_elsewhere,
    };
    (step, at)
}
