//! Writes `event_sequence` and `command_encoding` inputs in `arbitrary`'s format, for the
//! seed corpus
//! (`examples/make_seeds.rs`). A test decodes what it writes, so a change of format in
//! `arbitrary` or in the event types shows up as a failing test, not as useless seeds.
//!
//! `arbitrary` 1.x reads: integers little-endian; `bool` from a byte's low bit; an enum
//! variant from a `u32` `x` as `(x * variants) >> 32`; an `Option` and each `Vec` element
//! behind a "continue" `bool`; arrays and structs field by field.

use crate::encoding::{EncodingParams, TokenChoice};
use crate::events::{Event, EventInput, Split};
use crate::replies::{ErrorKind, Odd, ReplyKind};
use crate::setup::SetupChoice;

/// `arbitrary`'s encoding of variant `index` of an enum with `count` variants.
fn tag(out: &mut Vec<u8>, index: usize, count: usize) {
    let x = ((index as u64) << 32).div_ceil(count as u64);
    out.extend((x as u32).to_le_bytes());
}

fn setup(out: &mut Vec<u8>, s: &SetupChoice) {
    out.extend([s.kind, s.nodes, s.flags, s.ttl, s.timeout, s.wait, s.retry]);
    out.extend(s.servers);
    out.push(s.seed);
}

fn split(out: &mut Vec<u8>, s: Split) {
    match s {
        Split::Whole => tag(out, 0, 5),
        Split::Bytewise => tag(out, 1, 5),
        Split::Half => tag(out, 2, 5),
        Split::Hold => tag(out, 3, 5),
        Split::At(n) => {
            tag(out, 4, 5);
            out.push(n);
        }
    }
}

fn reply(out: &mut Vec<u8>, r: ReplyKind) {
    match r {
        ReplyKind::Success => tag(out, 0, 9),
        ReplyKind::Refuse => tag(out, 1, 9),
        ReplyKind::Error(e) => {
            tag(out, 2, 9);
            let i = ErrorKind::ALL.iter().position(|k| *k == e).expect("listed");
            tag(out, i, ErrorKind::ALL.len());
        }
        ReplyKind::Push => tag(out, 3, 9),
        ReplyKind::AttributedSuccess => tag(out, 4, 9),
        ReplyKind::OtherProtocol => tag(out, 5, 9),
        ReplyKind::Odd(o) => {
            tag(out, 6, 9);
            let i = Odd::ALL.iter().position(|k| *k == o).expect("listed");
            tag(out, i, Odd::ALL.len());
        }
        ReplyKind::Int(n) => {
            tag(out, 7, 9);
            out.extend(n.to_le_bytes());
        }
        ReplyKind::Pair(a, b) => {
            tag(out, 8, 9);
            out.extend(a.to_le_bytes());
            out.extend(b.to_le_bytes());
        }
    }
}

fn event(out: &mut Vec<u8>, e: &Event) {
    const N: usize = 9;
    match *e {
        Event::Reply {
            node,
            reply: r,
            split: s,
        } => {
            tag(out, 0, N);
            out.push(node);
            reply(out, r);
            split(out, s);
        }
        Event::Deliver { node, max } => {
            tag(out, 1, N);
            out.extend([node, max]);
        }
        Event::Garbage {
            node,
            bytes,
            len,
            split: s,
        } => {
            tag(out, 2, N);
            out.push(node);
            out.extend(bytes);
            out.push(len);
            split(out, s);
        }
        Event::Timeout => tag(out, 3, N),
        Event::Advance { ms } => {
            tag(out, 4, N);
            out.extend(ms.to_le_bytes());
        }
        Event::Leap { secs } => {
            tag(out, 5, N);
            out.extend(secs.to_le_bytes());
        }
        Event::EarlyTimeout => tag(out, 6, N),
        Event::Cancel => tag(out, 7, N),
        Event::Reset { node } => {
            tag(out, 8, N);
            out.push(node);
        }
    }
}

/// The bytes `arbitrary` reads back as `input`.
pub fn encode_events(input: &EventInput) -> Vec<u8> {
    let mut out = Vec::new();
    setup(&mut out, &input.setup);
    for e in &input.events {
        out.push(1);
        event(&mut out, e);
    }
    out.push(0);
    out
}

/// The bytes `arbitrary` reads back as `params`, followed by the variable part `tail`
/// (name, prefix, token, user, password, client name, raw arguments, cut by `params.lens`).
pub fn encode_encoding(params: &EncodingParams, tail: &[u8]) -> Vec<u8> {
    let p = params;
    let mut out = Vec::new();
    setup(&mut out, &p.setup);
    out.extend(p.ttl.to_le_bytes());
    out.extend(p.per_million.to_le_bytes());
    out.extend(p.fixed.to_le_bytes());
    out.extend(p.request_timeout.to_le_bytes());
    match p.wake_signal {
        Some(ms) => {
            out.push(1);
            out.extend(ms.to_le_bytes());
        }
        None => out.push(0),
    }
    out.extend(p.retry_base.to_le_bytes());
    out.extend(p.retry_cap.to_le_bytes());
    match p.max_attempts {
        Some(n) => out.extend([1, n]),
        None => out.push(0),
    }
    out.extend([u8::from(p.fenced), u8::from(p.reentrant)]);
    match p.token {
        TokenChoice::Entropy(bytes) => {
            tag(&mut out, 0, 2);
            out.extend(bytes);
        }
        TokenChoice::Given => tag(&mut out, 1, 2),
    }
    out.extend(p.lens);
    out.push(p.handshake);
    out.extend(p.short.to_le_bytes());
    for r in p.replies {
        reply(&mut out, r);
    }
    out.extend_from_slice(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::{Arbitrary, Unstructured};

    #[test]
    fn written_inputs_read_back() {
        let mut events = vec![
            Event::Timeout,
            Event::Advance { ms: 513 },
            Event::Leap { secs: 9 },
            Event::EarlyTimeout,
            Event::Cancel,
            Event::Reset { node: 2 },
            Event::Deliver { node: 1, max: 7 },
            Event::Garbage {
                node: 4,
                bytes: *b"\r\n$-",
                len: 3,
                split: Split::At(2),
            },
        ];
        let kinds = [
            ReplyKind::Success,
            ReplyKind::Refuse,
            ReplyKind::Push,
            ReplyKind::AttributedSuccess,
            ReplyKind::OtherProtocol,
            ReplyKind::Int(-7),
            ReplyKind::Pair(i64::MIN, 3),
        ];
        let all = kinds
            .into_iter()
            .chain(ErrorKind::ALL.map(ReplyKind::Error))
            .chain(Odd::ALL.map(ReplyKind::Odd));
        for (i, r) in all.enumerate() {
            let split = [
                Split::Whole,
                Split::Bytewise,
                Split::Half,
                Split::Hold,
                Split::At(9),
            ][i % 5];
            events.push(Event::Reply {
                node: i as u8,
                reply: r,
                split,
            });
        }
        let input = EventInput {
            setup: SetupChoice {
                kind: 1,
                nodes: 2,
                flags: 3,
                ttl: 4,
                timeout: 5,
                wait: 6,
                retry: 7,
                servers: [8, 9, 10, 11, 12],
                seed: 13,
            },
            events,
        };
        let bytes = encode_events(&input);
        let back = EventInput::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        assert_eq!(back, input);
    }

    #[test]
    fn written_encoding_inputs_read_back() {
        for (token, wake_signal, max_attempts) in [
            (TokenChoice::Entropy([7; 16]), Some(1000), None),
            (TokenChoice::Given, None, Some(3)),
        ] {
            let params = EncodingParams {
                setup: SetupChoice {
                    kind: 3,
                    nodes: 1,
                    servers: [1, 2, 3, 4, 5],
                    ..SetupChoice::default()
                },
                ttl: 30_000,
                per_million: 500,
                fixed: 2,
                request_timeout: 1000,
                wake_signal,
                retry_base: 10,
                retry_cap: 500,
                max_attempts,
                fenced: true,
                reentrant: false,
                token,
                lens: [1, 2, 3, 4, 5, 6, 7],
                handshake: 9,
                short: 300,
                replies: [
                    ReplyKind::Success,
                    ReplyKind::Error(ErrorKind::Moved),
                    ReplyKind::Odd(Odd::Deep),
                    ReplyKind::Int(5),
                    ReplyKind::Pair(1, 2),
                    ReplyKind::Refuse,
                ],
            };
            let tail = b"name\r\n{x}";
            let bytes = encode_encoding(&params, tail);
            let mut u = Unstructured::new(&bytes);
            assert_eq!(EncodingParams::arbitrary(&mut u).unwrap(), params);
            assert_eq!(u.take_rest(), tail);
        }
    }
}
