//! Helpers the core's integration tests share: decoding what a machine sends.
#![allow(dead_code)] // each test file uses a different subset
#![allow(unreachable_pub)] // shared by the test crates, not a public API

use distlock_core::{
    Duration, Instant, KeyLayout, Lock, LockOptions, Machine, Operation, ServerInfo, Token,
};
use redis_protocol::resp2::{decode::decode, types::OwnedFrame};

pub fn ms(n: u64) -> Instant {
    Instant::from_millis(n)
}

pub fn lock_with(options: LockOptions) -> Lock {
    Lock::new(KeyLayout::default(), b"job", options).unwrap()
}

pub fn token(byte: u8) -> Token {
    Token::from_entropy([byte; 16])
}

pub fn plain() -> [ServerInfo; 1] {
    [ServerInfo::default()]
}

pub fn servers(n: usize) -> Vec<ServerInfo> {
    vec![ServerInfo::default(); n]
}

/// One command as its arguments.
pub type Command = Vec<Vec<u8>>;

/// A write the machine asked for, decoded.
#[derive(Debug)]
pub struct Sent {
    pub node: usize,
    pub commands: Vec<Command>,
    pub blocking: Option<Duration>,
}

/// Drains every transmit, decoding each into commands.
pub fn drain<Op: Operation, const N: usize>(m: &mut Machine<Op, N>, now: Instant) -> Vec<Sent> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    while let Some(tx) = m.poll_transmit(now, &mut buf).unwrap() {
        let mut bytes = &buf[..tx.len];
        let mut commands = Vec::new();
        while !bytes.is_empty() {
            let (frame, used) = decode(bytes).unwrap().expect("a whole command");
            let OwnedFrame::Array(items) = frame else {
                panic!("not an array: {frame:?}")
            };
            commands.push(
                items
                    .into_iter()
                    .map(|item| match item {
                        OwnedFrame::BulkString(b) => b,
                        other => panic!("not a bulk string: {other:?}"),
                    })
                    .collect(),
            );
            bytes = &bytes[used..];
        }
        out.push(Sent {
            node: tx.node,
            commands,
            blocking: tx.blocking,
        });
    }
    out
}

/// A "held by another token" reply for a sent acquire: nil to a plain `SET NX`, the
/// holder's token to `SET NX GET`, plus the PTTL (and, to a plain `SET NX`, the TYPE: a
/// mutex's key, a string) when the batch asked for them.
pub fn busy(sent: &Sent, holder_ttl_ms: u64) -> Vec<u8> {
    let mut reply = refused(sent);
    let attempt = attempt_of(sent);
    if attempt.len() > 1 {
        reply.extend_from_slice(format!(":{holder_ttl_ms}\r\n").as_bytes());
    }
    if attempt.len() > 2 {
        reply.extend_from_slice(b"+string\r\n");
    }
    reply
}

/// Whether a sent acquire starts with the name's waiting mark (`SET <key>:waiting 1 PX ms`),
/// as a plain mutex's attempt that may be followed by a wait does.
pub fn is_marked(sent: &Sent) -> bool {
    sent.commands.first().is_some_and(|c| {
        c.len() == 5 && c[0] == b"SET" && c[1].ends_with(b":waiting") && c[2] == b"1"
    })
}

/// A sent acquire's commands after its waiting mark (all of them when it has none).
pub fn attempt_of(sent: &Sent) -> &[Command] {
    &sent.commands[usize::from(is_marked(sent))..]
}

/// Whether a sent acquire's `SET NX` is the `SET NX PX GET` spelling.
pub fn is_set_get(sent: &Sent) -> bool {
    attempt_of(sent)[0].last().is_some_and(|a| a == b"GET")
}

/// How a held lock refuses the sent acquire's `SET NX`: nil, or (`SET NX GET`) the holder's
/// token; after the waiting mark's `OK` when the attempt carries one.
pub fn refused(sent: &Sent) -> Vec<u8> {
    let mut reply = if is_marked(sent) {
        b"+OK\r\n".to_vec()
    } else {
        Vec::new()
    };
    if is_set_get(sent) {
        reply.extend_from_slice(b"$6\r\nholder\r\n");
    } else {
        reply.extend_from_slice(b"$-1\r\n");
    }
    reply
}

pub fn args(list: &[&str]) -> Command {
    list.iter().map(|s| s.as_bytes().to_vec()).collect()
}

pub fn name_of(cmd: &Command) -> &str {
    std::str::from_utf8(&cmd[0]).unwrap()
}

/// Whether `reply` arrived in `pieces`, the bytes one node sent, read as the one stream the
/// machine reads: a piece may be empty, hold several replies, or end in the middle of one, so
/// no single piece need hold the reply whole (a property's oracle that looks piece by piece
/// misses a reply cut in two).
pub fn stream_holds(pieces: &[Vec<u8>], reply: &[u8]) -> bool {
    pieces.concat().windows(reply.len()).any(|w| w == reply)
}
