//! Replies the fuzzers choose by meaning ("grant it", "LOADING", "a push frame") and the
//! harness encodes for the command they will answer, so well-formed grants are one choice
//! away while raw bytes still cover everything else.

use arbitrary::Arbitrary;
use distlock_core::Protocol;

use crate::wire::Cmd;

/// A server error reply by class.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `NOSCRIPT`: resend by `EVAL`.
    NoScript,
    /// `READONLY` (transient).
    ReadOnly,
    /// `LOADING` (transient).
    Loading,
    /// `BUSY` (transient).
    Busy,
    /// `TRYAGAIN` (transient).
    TryAgain,
    /// `MOVED` (fatal).
    Moved,
    /// `WRONGTYPE` (fatal).
    WrongType,
    /// `NOAUTH` (fatal).
    NoAuth,
    /// `ERR unknown command` (native commands fall back to scripts).
    UnknownCommand,
    /// `OOM`.
    OutOfMemory,
    /// `ERR` something else.
    Other,
    /// A RESP3 blob error `!…` carrying `NOSCRIPT`.
    BlobNoScript,
}

impl ErrorKind {
    /// Every kind, for byte-coded choices.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::NoScript,
        ErrorKind::ReadOnly,
        ErrorKind::Loading,
        ErrorKind::Busy,
        ErrorKind::TryAgain,
        ErrorKind::Moved,
        ErrorKind::WrongType,
        ErrorKind::NoAuth,
        ErrorKind::UnknownCommand,
        ErrorKind::OutOfMemory,
        ErrorKind::Other,
        ErrorKind::BlobNoScript,
    ];
}

/// A well-formed reply of a shape no lock command returns, or an edge of one that does.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Odd {
    /// `+OK`.
    Ok,
    /// `$-1`.
    NilBulk,
    /// `*-1`.
    NilArray,
    /// `_` (RESP3 null; not RESP2).
    Null3,
    /// `*0`.
    EmptyArray,
    /// `$2\r\nOK`.
    BulkOk,
    /// `#t`.
    True,
    /// `,1.5`.
    Double,
    /// `(1`.
    BigNumber,
    /// `%1 +a :1`.
    Map,
    /// `~2 :1 :1`.
    Set,
    /// `=7 txt:1`.
    Verbatim,
    /// Arrays nested 9 deep (refused as too deep).
    Deep,
    /// A bulk string longer than a link buffers.
    Huge,
    /// A streamed string `$?` (refused).
    Streamed,
    /// `*3 :1 :1 :1`.
    Triple,
    /// `*2 +1 +1` (strings, not integers).
    StringPair,
}

impl Odd {
    /// Every kind, for byte-coded choices.
    pub const ALL: [Odd; 17] = [
        Odd::Ok,
        Odd::NilBulk,
        Odd::NilArray,
        Odd::Null3,
        Odd::EmptyArray,
        Odd::BulkOk,
        Odd::True,
        Odd::Double,
        Odd::BigNumber,
        Odd::Map,
        Odd::Set,
        Odd::Verbatim,
        Odd::Deep,
        Odd::Huge,
        Odd::Streamed,
        Odd::Triple,
        Odd::StringPair,
    ];
}

/// What a structured reply says, encoded for the command it will answer.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// The reply that means yes: granted, released, extended, raised, woken.
    Success,
    /// The reply that means no: held by another, not held, no signal.
    Refuse,
    /// A server error.
    Error(ErrorKind),
    /// A RESP3 push frame (`invalidate`), out of band: it answers nothing.
    Push,
    /// `Success` behind a RESP3 attribute (`|1 …`), which the decoder drops.
    AttributedSuccess,
    /// No, with the other protocol's nulls (`_` on RESP2, `$-1` on RESP3).
    OtherProtocol,
    /// An odd reply.
    Odd(Odd),
    /// `:n`.
    Int(i64),
    /// `*2 :a :b`.
    Pair(i64, i64),
}

/// Per-node server state the replies keep consistent: the fencing counter.
#[derive(Debug, Clone, Default)]
pub struct ServerState {
    /// The node's fencing counter.
    pub fence: u64,
}

fn null(protocol: Protocol, array: bool) -> Vec<u8> {
    match (protocol, array) {
        (Protocol::Resp3, _) => b"_\r\n".to_vec(),
        (_, true) => b"*-1\r\n".to_vec(),
        _ => b"$-1\r\n".to_vec(),
    }
}

fn int(n: i64) -> Vec<u8> {
    format!(":{n}\r\n").into_bytes()
}

fn pair(a: i64, b: i64) -> Vec<u8> {
    format!("*2\r\n:{a}\r\n:{b}\r\n").into_bytes()
}

fn bulk(b: &[u8]) -> Vec<u8> {
    [format!("${}\r\n", b.len()).as_bytes(), b, b"\r\n"].concat()
}

fn other(protocol: Protocol) -> Protocol {
    match protocol {
        Protocol::Resp3 => Protocol::Resp2,
        _ => Protocol::Resp3,
    }
}

/// Encodes `kind` as the reply to `target` (the command it will answer, if any) on a
/// connection speaking `protocol`. `fenced` says whether grants carry a fence; `signal` is
/// the wake-up list's key (`BLPOP` replies name it).
pub fn encode(
    kind: ReplyKind,
    target: Option<Cmd>,
    protocol: Protocol,
    fenced: bool,
    signal: &[u8],
    state: &mut ServerState,
) -> Vec<u8> {
    match kind {
        ReplyKind::Success => success(target, protocol, fenced, signal, state),
        ReplyKind::Refuse => refuse(target, protocol),
        ReplyKind::OtherProtocol => refuse(target, other(protocol)),
        ReplyKind::AttributedSuccess => {
            let mut out = b"|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n".to_vec();
            out.extend(success(target, protocol, fenced, signal, state));
            out
        }
        ReplyKind::Error(e) => error(e),
        ReplyKind::Push => b">2\r\n$10\r\ninvalidate\r\n*1\r\n$14\r\ndistlock:{job}\r\n".to_vec(),
        ReplyKind::Int(n) => int(n),
        ReplyKind::Pair(a, b) => pair(a, b),
        ReplyKind::Odd(odd) => match odd {
            Odd::Ok => b"+OK\r\n".to_vec(),
            Odd::NilBulk => b"$-1\r\n".to_vec(),
            Odd::NilArray => b"*-1\r\n".to_vec(),
            Odd::Null3 => b"_\r\n".to_vec(),
            Odd::EmptyArray => b"*0\r\n".to_vec(),
            Odd::BulkOk => b"$2\r\nOK\r\n".to_vec(),
            Odd::True => b"#t\r\n".to_vec(),
            Odd::Double => b",1.5\r\n".to_vec(),
            Odd::BigNumber => b"(1\r\n".to_vec(),
            Odd::Map => b"%1\r\n+a\r\n:1\r\n".to_vec(),
            Odd::Set => b"~2\r\n:1\r\n:1\r\n".to_vec(),
            Odd::Verbatim => b"=5\r\ntxt:1\r\n".to_vec(),
            Odd::Deep => [&b"*1\r\n".repeat(9)[..], b":1\r\n"].concat(),
            Odd::Huge => bulk(&[b'x'; 600]),
            Odd::Streamed => b"$?\r\n;1\r\nx\r\n;0\r\n".to_vec(),
            Odd::Triple => b"*3\r\n:1\r\n:1\r\n:1\r\n".to_vec(),
            Odd::StringPair => b"*2\r\n+1\r\n+1\r\n".to_vec(),
        },
    }
}

fn success(
    target: Option<Cmd>,
    protocol: Protocol,
    fenced: bool,
    signal: &[u8],
    state: &mut ServerState,
) -> Vec<u8> {
    match target {
        Some(Cmd::AcquireSet | Cmd::ExtendNative | Cmd::Ltrim | Cmd::WaitingMark) | None => {
            b"+OK\r\n".to_vec()
        }
        // No old value: taken.
        Some(Cmd::AcquireSetGet) => null(protocol, false),
        Some(Cmd::Pttl) => int(1500),
        Some(Cmd::Type) => b"+string\r\n".to_vec(),
        Some(Cmd::AcquireScript | Cmd::FairAcquireScript { .. }) => {
            let fence = if fenced {
                state.fence = state.fence.saturating_add(1);
                state.fence
            } else {
                0
            };
            pair(1, i64::try_from(fence).unwrap_or(i64::MAX))
        }
        Some(Cmd::RaiseFence(v)) => {
            state.fence = state.fence.max(v);
            int(i64::try_from(state.fence).unwrap_or(i64::MAX))
        }
        Some(Cmd::ReleaseScript | Cmd::FairReleaseScript) => int(0),
        Some(Cmd::ReleaseNative | Cmd::ExtendScript | Cmd::Lpush | Cmd::Pexpire) => int(1),
        // A fair cycle's BLPOP names the waiter's own list; its reply is not the answer, so
        // the signal key stands in for it.
        Some(Cmd::Blpop | Cmd::FairBlpop) => [&b"*2\r\n"[..], &bulk(signal), &bulk(b"1")].concat(),
    }
}

fn refuse(target: Option<Cmd>, protocol: Protocol) -> Vec<u8> {
    match target {
        Some(Cmd::AcquireSet | Cmd::ExtendNative) | None => null(protocol, false),
        // A plain `SET` is never refused.
        Some(Cmd::WaitingMark) => b"+OK\r\n".to_vec(),
        Some(Cmd::Blpop | Cmd::FairBlpop) => null(protocol, true),
        // The holder's token.
        Some(Cmd::AcquireSetGet) => bulk(b"holder"),
        Some(Cmd::Pttl) => int(-2),
        // A name of another kind (a semaphore's sorted set): the refusal becomes WRONGTYPE.
        Some(Cmd::Type) => b"+zset\r\n".to_vec(),
        Some(Cmd::AcquireScript | Cmd::FairAcquireScript { .. }) => pair(0, 900),
        Some(Cmd::RaiseFence(_)) => int(0),
        Some(Cmd::ReleaseScript | Cmd::FairReleaseScript) => int(-1),
        Some(Cmd::ReleaseNative | Cmd::ExtendScript | Cmd::Lpush | Cmd::Pexpire) => int(0),
        Some(Cmd::Ltrim) => b"-ERR no such key\r\n".to_vec(),
    }
}

fn error(kind: ErrorKind) -> Vec<u8> {
    let text: &[u8] = match kind {
        ErrorKind::NoScript => b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        ErrorKind::ReadOnly => b"-READONLY You can't write against a read only replica.\r\n",
        ErrorKind::Loading => b"-LOADING Redis is loading the dataset in memory\r\n",
        ErrorKind::Busy => b"-BUSY Redis is busy running a script.\r\n",
        ErrorKind::TryAgain => b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n",
        ErrorKind::Moved => b"-MOVED 3999 127.0.0.1:6381\r\n",
        ErrorKind::WrongType => {
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        }
        ErrorKind::NoAuth => b"-NOAUTH Authentication required.\r\n",
        ErrorKind::UnknownCommand => {
            b"-ERR unknown command 'DELEX', with args beginning with: 'distlock:{job}' \r\n"
        }
        ErrorKind::OutOfMemory => b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
        ErrorKind::Other => b"-ERR syntax error\r\n",
        ErrorKind::BlobNoScript => b"!21\r\nNOSCRIPT No such script\r\n",
    };
    text.to_vec()
}

/// Edge integers for byte-coded choices.
pub const EDGE_INTS: [i64; 8] = [0, 1, -1, -2, i64::MAX, i64::MIN, 1 << 32, 30_000];

impl ReplyKind {
    /// The structured reply a selector byte and a value byte choose (the `reply_bytes`
    /// encoding; `event_sequence` derives its choices with `arbitrary` instead).
    pub fn from_bytes(sel: u8, val: u8) -> ReplyKind {
        match sel % 16 {
            0..=3 | 15 => ReplyKind::Success,
            4 | 5 => ReplyKind::Refuse,
            6 => ReplyKind::Error(ErrorKind::ALL[usize::from(val) % ErrorKind::ALL.len()]),
            7 => ReplyKind::Push,
            8 => ReplyKind::AttributedSuccess,
            9 => ReplyKind::OtherProtocol,
            10 => ReplyKind::Odd(Odd::ALL[usize::from(val) % Odd::ALL.len()]),
            11 => ReplyKind::Int(i64::from(val as i8)),
            12 => ReplyKind::Int(EDGE_INTS[usize::from(val % 8)]),
            13 => ReplyKind::Pair(1, EDGE_INTS[usize::from(val % 8)]),
            _ => ReplyKind::Pair(i64::from((val >> 4) as i8 - 2), i64::from(val & 15)),
        }
    }
}
