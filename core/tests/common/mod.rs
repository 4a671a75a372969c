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

/// Feeds `replies` (7 ms apart, then 5 s of silence) to a one-node machine of `lock` on
/// `servers` — `which`: 0 an acquire (waiting up to 50 ms), 1 a release, anything else an
/// extend: no panic, and a lease or an extend it reports is one the bytes granted (the
/// scripts' `{1, fence}` or `1`, read as one stream: [`stream_holds`]). Answers whether it
/// ended granted.
pub fn one_machine_on(
    lock: &Lock,
    servers: &[ServerInfo],
    which: u8,
    replies: &[Vec<u8>],
) -> Result<bool, proptest::test_runner::TestCaseError> {
    use distlock_core::{Acquire, Extend, Extended, Release};
    use proptest::prop_assert;
    let mut now = 0;
    macro_rules! feed {
        ($m:expr) => {{
            let _ = drain(&mut $m, ms(now));
            for bytes in replies {
                now += 7;
                $m.handle_input(0, bytes, ms(now));
                $m.handle_timeout(ms(now));
                let _ = drain(&mut $m, ms(now));
            }
            now += 5_000;
            $m.handle_timeout(ms(now));
            $m.poll_outcome()
        }};
    }
    match which {
        0 => {
            let mut m: Acquire<1> =
                Acquire::new(lock, token(6), servers, Duration::from_millis(50), ms(0), 0).unwrap();
            if let Some(Ok(lease)) = feed!(m) {
                prop_assert!(stream_holds(replies, b"*2\r\n:1\r\n"));
                prop_assert!(lease.valid_until() > lease.started());
                return Ok(true);
            }
        }
        1 => {
            let mut m: Release<1> = Release::new(lock, token(6), servers, ms(0), 0).unwrap();
            let _ = feed!(m);
        }
        _ => {
            let mut m: Extend<1> = Extend::new(lock, token(6), servers, ms(0), 0).unwrap();
            if let Some(Ok(Extended { .. })) = feed!(m) {
                prop_assert!(stream_holds(replies, b":1\r\n"));
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A server's reply for a property to feed a machine: mostly one a server could send (grants,
/// refusals, nils in both protocols, the errors a driver meets, pushes, absurd lengths), else
/// noise.
pub fn reply_or_noise() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let replies: Vec<&'static [u8]> = vec![
        b"+OK\r\n",
        b"$-1\r\n",
        b"_\r\n",
        b":0\r\n",
        b":1\r\n",
        b":-1\r\n",
        b":-2\r\n",
        b":1500\r\n",
        b"*2\r\n:1\r\n:7\r\n",
        b"*2\r\n:0\r\n:900\r\n",
        b"*2\r\n:2\r\n:0\r\n",
        b"*-1\r\n",
        b"*2\r\n$1\r\nk\r\n$1\r\n1\r\n",
        b"-NOSCRIPT No matching script\r\n",
        b"-LOADING loading\r\n",
        b"-READONLY replica\r\n",
        b"-BUSY script\r\n",
        b"-WRONGTYPE wrong\r\n",
        b"-MOVED 1 127.0.0.1:7000\r\n",
        b"-NOAUTH auth\r\n",
        b"-ERR unknown command 'DELIFEQ'\r\n",
        b">2\r\n$10\r\ninvalidate\r\n*0\r\n",
        b"%1\r\n+a\r\n:1\r\n",
        b"$99999999999\r\n",
        b"*3000000000\r\n",
    ];
    prop_oneof![
        4 => proptest::sample::select(replies).prop_map(|r| r.to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
    ]
}
