//! The `reply_bytes` input format: a [`SetupChoice`] (13 bytes), then records, each a
//! control byte and its arguments, so that reply bytes appear verbatim in the input and
//! hand-made or captured replies make seeds as they are.
//!
//! Control byte `aaa ff nnn`: `nnn` the node (modulo the node count), `aaa` the action,
//! `ff` its flavour:
//!
//! | action | arguments | does |
//! |---|---|---|
//! | 0, 1 `RAW` | `len`, `len` bytes | queue the bytes, then deliver per `ff` |
//! | 2, 3 `REPLY` | `sel`, `val` | queue [`ReplyKind::from_bytes`] (aimed at the next command), deliver per `ff` |
//! | 4 `DELIVER` | `n` | deliver up to `n` queued bytes (`0`: all) in one read |
//! | 5 `TIME` | `lo`, `hi` | `ff` 0: `+ms`, 1: `+64 ms`, 2: `+4096 ms` steps; 3: `handle_timeout` now |
//! | 6 `RESET` | — | `ff` 0-2: the node's connection is replaced; 3: cancel |
//! | 7 `TIMEOUT` | — | run to the machine's deadline |
//!
//! Delivery `ff` for `RAW`/`REPLY`: 0 all at once, 1 one byte per read, 2 half now, 3 hold.
//! A truncated record reads as zeros, as `arbitrary` does.

use arbitrary::{Arbitrary, Unstructured};
use distlock_core::Duration;

use crate::driver::{Harness, START};
use crate::handshake::{HandshakeHarness, options_from};
use crate::replies::ReplyKind;
use crate::setup::SetupChoice;

/// Bytes of the setup at the start of an input.
pub const SETUP_LEN: usize = 13;

/// Action codes (the top three bits of a control byte).
pub mod action {
    /// Queue raw bytes.
    pub const RAW: u8 = 0;
    /// Queue a structured reply.
    pub const REPLY: u8 = 2;
    /// Deliver queued bytes.
    pub const DELIVER: u8 = 4;
    /// Time passes.
    pub const TIME: u8 = 5;
    /// Replace a connection, or cancel.
    pub const RESET: u8 = 6;
    /// Run to the deadline.
    pub const TIMEOUT: u8 = 7;
}

/// A control byte.
pub const fn ctl(action: u8, flavour: u8, node: u8) -> u8 {
    (action << 5) | ((flavour & 3) << 3) | (node & 7)
}

struct Cursor<'a> {
    data: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self
            .data
            .split_first()
            .map_or((0, &[][..]), |(f, r)| (*f, r));
        self.data = rest;
        first
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (taken, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        taken
    }
}

/// Handshake replies a `REPLY` record chooses by `sel % 8` (captured from redis-server
/// 7.0.15 where marked).
const HANDSHAKE_REPLIES: [&[u8]; 8] = [
    // HELLO 3 (captured).
    b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:6\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n",
    b"+OK\r\n",
    b"$65\r\n# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nos:Linux\r\n\r\n",
    b"-NOPROTO sorry, this protocol version is not supported.\r\n",
    b"-ERR unknown command 'HELLO', with args beginning with: '3' \r\n",
    // Captured.
    b"-NOAUTH Authentication required.\r\n",
    // Captured.
    b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n",
];

/// Runs one `reply_bytes` input.
pub fn run(data: &[u8]) {
    let mut setup_bytes = [0u8; SETUP_LEN];
    let head = &data[..SETUP_LEN.min(data.len())];
    setup_bytes[..head.len()].copy_from_slice(head);
    let choice = SetupChoice::arbitrary(&mut Unstructured::new(&setup_bytes))
        .expect("13 bytes make a setup");
    let mut cursor = Cursor {
        data: &data[head.len()..],
    };
    match choice.setup() {
        Some(setup) => run_machine(Harness::new(setup), &mut cursor),
        None => run_handshake(choice, &mut cursor),
    }
}

fn step(ms: u16, flavour: u8) -> Duration {
    let unit = [1, 64, 4096, 0][usize::from(flavour & 3)];
    Duration::from_millis(u64::from(ms) * unit)
}

fn run_machine(mut h: Harness, c: &mut Cursor<'_>) {
    while !c.data.is_empty() {
        let control = c.byte();
        let (act, flavour, node) = (control >> 5, (control >> 3) & 3, usize::from(control & 7));
        match act {
            0 | 1 => {
                let len = usize::from(c.byte());
                let bytes = c.bytes(len);
                h.push_raw(node, bytes);
                deliver(&mut h, node, flavour);
            }
            2 | 3 => {
                let (sel, val) = (c.byte(), c.byte());
                h.push_reply(node, ReplyKind::from_bytes(sel, val));
                deliver(&mut h, node, flavour);
            }
            action::DELIVER => {
                let n = usize::from(c.byte());
                h.deliver(node, if n == 0 { usize::MAX } else { n });
            }
            action::TIME => {
                let ms = u16::from_le_bytes([c.byte(), c.byte()]);
                if flavour == 3 {
                    h.early_timeout();
                } else {
                    h.advance(step(ms, flavour));
                }
            }
            action::RESET if flavour == 3 => h.cancel(),
            action::RESET => h.reset(node),
            _ => h.run_to_timeout(),
        }
    }
    h.finish();
}

fn deliver(h: &mut Harness, node: usize, flavour: u8) {
    match flavour {
        0 => h.deliver(node, usize::MAX),
        1 => h.deliver_in_pieces(node, 1),
        2 => h.deliver(node, h.pending(node).div_ceil(2)),
        _ => {}
    }
}

fn run_handshake(choice: SetupChoice, c: &mut Cursor<'_>) {
    let options = options_from(choice.flags, b"app", b"s3cret\r\npass", b"distlock worker");
    let mut h = HandshakeHarness::new(options, START);
    while !c.data.is_empty() {
        let control = c.byte();
        let (act, flavour) = (control >> 5, (control >> 3) & 3);
        match act {
            0..=3 => {
                if act < 2 {
                    let len = usize::from(c.byte());
                    let bytes = c.bytes(len);
                    h.push_raw(bytes);
                } else {
                    let (sel, _) = (c.byte(), c.byte());
                    h.push_raw(HANDSHAKE_REPLIES[usize::from(sel % 8)]);
                }
                match flavour {
                    0 => h.deliver(usize::MAX),
                    1 => {
                        while h.pending() > 0 {
                            h.deliver(1);
                        }
                    }
                    2 => h.deliver(h.pending().div_ceil(2)),
                    _ => {}
                }
            }
            action::DELIVER => {
                let n = usize::from(c.byte());
                h.deliver(if n == 0 { usize::MAX } else { n });
            }
            action::TIME => {
                let ms = u16::from_le_bytes([c.byte(), c.byte()]);
                if flavour == 3 {
                    h.early_timeout();
                } else {
                    h.advance(step(ms, flavour));
                }
            }
            action::RESET => h.reset(),
            _ => h.run_to_timeout(),
        }
    }
    h.finish();
}

/// Builds `reply_bytes` inputs (for the seed corpus).
#[derive(Debug, Clone, Default)]
pub struct Writer {
    /// The input so far.
    pub bytes: Vec<u8>,
}

impl Writer {
    /// An input starting with `setup`.
    pub fn new(setup: &SetupChoice) -> Self {
        let mut bytes = vec![
            setup.kind,
            setup.nodes,
            setup.flags,
            setup.ttl,
            setup.timeout,
        ];
        bytes.extend([setup.wait, setup.retry]);
        bytes.extend(setup.servers);
        bytes.push(setup.seed);
        Writer { bytes }
    }
    /// Raw reply bytes for `node` (in records of at most 255 bytes), delivered per `flavour`.
    pub fn raw(mut self, node: u8, flavour: u8, bytes: &[u8]) -> Self {
        let chunks: Vec<&[u8]> = bytes.chunks(255).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            // Only the last chunk is delivered, so a long reply arrives as one read.
            let f = if i + 1 == chunks.len() { flavour } else { 3 };
            self.bytes.push(ctl(action::RAW, f, node));
            self.bytes.push(chunk.len() as u8);
            self.bytes.extend_from_slice(chunk);
        }
        self
    }
    /// A structured reply.
    pub fn reply(mut self, node: u8, flavour: u8, sel: u8, val: u8) -> Self {
        self.bytes
            .extend([ctl(action::REPLY, flavour, node), sel, val]);
        self
    }
    /// Delivers up to `n` queued bytes (0: all).
    pub fn deliver(mut self, node: u8, n: u8) -> Self {
        self.bytes.extend([ctl(action::DELIVER, 0, node), n]);
        self
    }
    /// Time passes by `ms` units of the flavour's step.
    pub fn time(mut self, flavour: u8, ms: u16) -> Self {
        self.bytes.push(ctl(action::TIME, flavour, 0));
        self.bytes.extend(ms.to_le_bytes());
        self
    }
    /// The node's connection is replaced.
    pub fn reset(mut self, node: u8) -> Self {
        self.bytes.push(ctl(action::RESET, 0, node));
        self
    }
    /// The caller cancels.
    pub fn cancel(mut self) -> Self {
        self.bytes.push(ctl(action::RESET, 3, 0));
        self
    }
    /// Runs to the deadline.
    pub fn timeout(mut self) -> Self {
        self.bytes.push(ctl(action::TIMEOUT, 0, 0));
        self
    }
}
