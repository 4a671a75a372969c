//! The `cluster_routing` target's input and checks: a slot map read from arbitrary bytes
//! (`CLUSTER SHARDS` or `CLUSTER SLOTS`, RESP2 or RESP3), then a [`ClusterLink`] over a
//! well-formed map fed arbitrary writes, arbitrary bytes from its primaries (redirects chosen
//! by meaning among them) and time steps.
//!
//! Invariants, checked after every call: no panic; a map read from any bytes routes every
//! slot to one of the primaries it names, or to none; the link hands back only whole RESP
//! frames, never more replies than commands written, and asks for a timeout only while a
//! command waits out a `TRYAGAIN`; once it reports an error it is dropped, as a driver does.

use arbitrary::{Arbitrary, Unstructured};
use distlock_core::resp::frame_len;
use distlock_core::{ClusterLink, Duration, Instant, Primary, Protocol, SLOTS, SlotMap};

/// What happens to the link.
#[derive(Debug, Arbitrary)]
pub enum Op {
    /// A `GET` of this key, written in up to two pieces.
    Get { key: Vec<u8>, split: u8 },
    /// Arbitrary bytes written as if by a lock machine.
    Write(Vec<u8>),
    /// Arbitrary bytes from primary `port % 4 + 7000` (7003 is unknown to the map).
    Input { port: u8, bytes: Vec<u8> },
    /// A redirect from the primary that owes the oldest reply.
    Redirect { kind: u8, slot: u16, port: u8 },
    /// The clock moves on by this many milliseconds and the timeout is handled.
    Tick(u16),
}

/// The target's input.
#[derive(Debug, Arbitrary)]
pub struct Input {
    /// Bytes read as a slot map.
    pub map_bytes: Vec<u8>,
    /// `CLUSTER SHARDS` (else `CLUSTER SLOTS`), RESP3 (else RESP2), TLS ports.
    pub shards: bool,
    pub resp3: bool,
    pub tls: bool,
    /// What happens to the link.
    pub ops: Vec<Op>,
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let protocol = if input.resp3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    };
    let read = if input.shards {
        SlotMap::from_shards(&input.map_bytes, protocol, "seed", input.tls)
    } else {
        SlotMap::from_slots(&input.map_bytes, protocol, "seed")
    };
    if let Ok(map) = read {
        for slot in 0..SLOTS {
            if let Ok(owner) = map.owner(slot) {
                assert!(map.primaries().contains(owner), "slot {slot}: {owner}");
            }
        }
        assert!(map.served() <= usize::from(SLOTS));
    }
    drive_link(protocol, input.ops);
}

/// Three primaries at 7000..7002 with a third of the slots each.
fn three_primaries() -> SlotMap {
    let reply = b"*3\r\n\
        *3\r\n:0\r\n:5460\r\n*2\r\n$1\r\nh\r\n:7000\r\n\
        *3\r\n:5461\r\n:10922\r\n*2\r\n$1\r\nh\r\n:7001\r\n\
        *3\r\n:10923\r\n:16383\r\n*2\r\n$1\r\nh\r\n:7002\r\n";
    SlotMap::from_slots(reply, Protocol::Resp2, "h").expect("a well-formed map")
}

fn drive_link(protocol: Protocol, ops: Vec<Op>) {
    let seed = Primary::new("h", 7000).expect("a host");
    let mut link = ClusterLink::new(
        three_primaries(),
        seed,
        protocol,
        Duration::from_millis(1000),
        false,
    );
    let mut now = Instant::from_millis(0);
    let mut written = 0usize;
    let mut replies = 0usize;
    let mut received = Vec::new();
    // The primary each transmit went to, oldest first: where redirects come from.
    let mut sent_to: Vec<Primary> = Vec::new();
    for op in ops {
        let ok = match op {
            Op::Get { key, split } => {
                let mut command = format!("*2\r\n$3\r\nGET\r\n${}\r\n", key.len()).into_bytes();
                command.extend_from_slice(&key);
                command.extend_from_slice(b"\r\n");
                let at = usize::from(split).min(command.len());
                written += 1;
                link.write(&command[..at], now).is_ok() && link.write(&command[at..], now).is_ok()
            }
            Op::Write(bytes) => {
                // Whole frames in these bytes are commands too (when they route).
                written += count_frames(&bytes);
                link.write(&bytes, now).is_ok()
            }
            Op::Input { port, bytes } => {
                let from = Primary::new("h", 7000 + u16::from(port % 4)).expect("a host");
                link.handle_input(&from, &bytes, now).is_ok()
            }
            Op::Redirect { kind, slot, port } => {
                let Some(from) = sent_to.first().cloned() else {
                    continue;
                };
                sent_to.remove(0);
                let to = 7000 + u16::from(port % 4);
                let slot = slot % (SLOTS + 2);
                let reply = match kind % 4 {
                    0 => format!("-MOVED {slot} h:{to}\r\n"),
                    1 => format!("-ASK {slot} h:{to}\r\n"),
                    2 => "-TRYAGAIN Multiple keys request during rehashing of slot\r\n".into(),
                    _ => "+OK\r\n".into(),
                };
                link.handle_input(&from, reply.as_bytes(), now).is_ok()
            }
            Op::Tick(ms) => {
                now = now.saturating_add(Duration::from_millis(u64::from(ms)));
                link.handle_timeout(now);
                true
            }
        };
        if !ok {
            // A driver drops a link that reported an error.
            return;
        }
        while let Some((to, bytes)) = link.poll_transmit() {
            assert!(!bytes.is_empty());
            sent_to.push(to);
        }
        let mut buf = [0u8; 97];
        loop {
            let n = link.read(&mut buf);
            if n == 0 {
                break;
            }
            received.extend_from_slice(&buf[..n]);
        }
        // Only whole frames come back.
        while !received.is_empty() {
            match frame_len(&received) {
                Ok(Some(len)) => {
                    received.drain(..len);
                    replies += 1;
                }
                other => panic!("the link handed back a part frame or garbage: {other:?}"),
            }
        }
        assert!(
            replies <= written,
            "{replies} replies to {written} commands"
        );
        if let Some(at) = link.poll_timeout() {
            assert!(at <= now.saturating_add(distlock_core::TRY_AGAIN_DELAY));
        }
    }
}

/// Whole RESP frames at the front of `bytes`.
fn count_frames(bytes: &[u8]) -> usize {
    let mut rest = bytes;
    let mut frames = 0;
    while let Ok(Some(len)) = frame_len(rest) {
        if len == 0 {
            break;
        }
        rest = &rest[len..];
        frames += 1;
    }
    frames
}
