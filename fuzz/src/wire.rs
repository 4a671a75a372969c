//! What a machine sends, decoded independently of the core (a strict reader here;
//! `command_encoding` also decodes every transmit with `redis-protocol` and checks that the
//! two agree) and checked argument by argument against the lock it was built for.
//!
//! The expected commands are rebuilt here from the raw prefix, name and token bytes and the
//! options, following the documented protocol (`core/src/script.rs`, `core/src/server.rs`):
//! so a name with CR, LF, NUL or invalid UTF-8 that changed a command, split it, or leaked
//! into another argument fails here.

use distlock_core::{
    Duration, Flavor, MAX_TOKEN_LEN, Scripts, ServerInfo, Token, Transmit, Version,
    script::{ACQUIRE, EXTEND, FAIR_ACQUIRE, FAIR_RELEASE, RAISE_FENCE, RELEASE, Script},
};
use redis_protocol::resp2::{decode::decode, types::OwnedFrame};

use crate::setup::{Kind, Setup};

/// One command: its arguments.
pub type Command = Vec<Vec<u8>>;

/// What a command asks, as far as matching its reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// `SET <prefix>{N}:waiting 1 PX <WAITING_MARK_LIFE>`: a plain mutex's waiter marks the
    /// name before an attempt that may be followed by a wait (always `OK`).
    WaitingMark,
    /// `SET key token NX PX ttl`: `OK` taken, nil refused.
    AcquireSet,
    /// `SET key token NX PX ttl GET` (Redis ≥ 7.0, Valkey): nil taken, the holder's token
    /// refused, `WRONGTYPE` a name of another kind.
    AcquireSetGet,
    /// `PTTL key` (pipelined after `SET NX`, with or without `GET`).
    Pttl,
    /// `TYPE key` (pipelined after a plain `SET NX` and `PTTL` once an attempt was refused: a
    /// key of another kind turns the refusal into `WRONGTYPE`; `SET NX GET` says that itself).
    Type,
    /// The acquire script.
    AcquireScript,
    /// The raise-fence script, with the value asked for.
    RaiseFence(u64),
    /// The release script (a release, or an acquire's rollback).
    ReleaseScript,
    /// `DELEX key IFEQ token` or `DELIFEQ key token`.
    ReleaseNative,
    /// The extend script.
    ExtendScript,
    /// `SET key token IFEQ token PX ttl`.
    ExtendNative,
    /// `LPUSH signal 1` (after a native release).
    Lpush,
    /// `LTRIM signal 0 0`.
    Ltrim,
    /// `PEXPIRE signal ms`.
    Pexpire,
    /// `BLPOP signal timeout`.
    Blpop,
    /// `BLPOP <wake list of the attempt's token> timeout`: a fair cycle's block, pipelined
    /// before its script (its reply is not the answer).
    FairBlpop,
    /// The fair acquire script, with its `extra` ms (the cycle's block span).
    FairAcquireScript {
        /// ARGV[3]: how much longer than the ttl a grant sets the key for.
        extra: u64,
    },
    /// The fair release script (a fair release, or a fair acquire's rollback).
    FairReleaseScript,
}

impl Cmd {
    /// Whether the command is an acquire of the lock (either encoding).
    pub fn is_acquire(self) -> bool {
        matches!(
            self,
            Cmd::AcquireSet
                | Cmd::AcquireSetGet
                | Cmd::AcquireScript
                | Cmd::FairAcquireScript { .. }
        )
    }

    /// Whether the command blocks the connection (a `BLPOP`).
    pub fn blocks(self) -> bool {
        matches!(self, Cmd::Blpop | Cmd::FairBlpop)
    }
}

/// Reads `<kind><decimal>\r\n` at the front of `bytes`: the number and the rest.
fn header(bytes: &[u8], kind: u8) -> (usize, &[u8]) {
    assert_eq!(
        bytes.first(),
        Some(&kind),
        "expected {}: {}",
        kind as char,
        bytes.escape_ascii()
    );
    let end = bytes
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or_else(|| panic!("no CRLF: {}", bytes.escape_ascii()));
    let digits = &bytes[1..end];
    assert!(
        !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
        "a bad length: {}",
        bytes.escape_ascii()
    );
    assert!(
        digits == b"0" || digits[0] != b'0',
        "a length with a leading zero"
    );
    let n = std::str::from_utf8(digits)
        .unwrap()
        .parse()
        .expect("a length that fits");
    (n, &bytes[end + 2..])
}

/// Splits a transmit into commands, strictly (arrays of bulk strings, canonical lengths,
/// exact CRLFs, nothing left over). The fast path; [`decode_commands`] is the same with
/// `redis-protocol`, and `command_encoding` checks the two agree on every transmit.
pub fn split_commands(mut bytes: &[u8]) -> Vec<Command> {
    let mut commands = Vec::new();
    while !bytes.is_empty() {
        let (n, mut rest) = header(bytes, b'*');
        assert!(n > 0, "an empty command");
        let mut command = Vec::with_capacity(n);
        for _ in 0..n {
            let (len, after) = header(rest, b'$');
            assert!(after.len() >= len + 2, "a short bulk string");
            assert_eq!(
                &after[len..len + 2],
                b"\r\n",
                "a bulk string without its CRLF"
            );
            command.push(after[..len].to_vec());
            rest = &after[len + 2..];
        }
        commands.push(command);
        bytes = rest;
    }
    assert!(!commands.is_empty(), "an empty transmit");
    commands
}

/// Splits a transmit into commands with `redis-protocol`'s decoder; panics unless it is a
/// sequence of RESP arrays of bulk strings spanning the bytes exactly.
pub fn decode_commands(mut bytes: &[u8]) -> Vec<Command> {
    let mut commands = Vec::new();
    while !bytes.is_empty() {
        let (frame, used) = match decode(bytes) {
            Ok(Some(found)) => found,
            other => panic!(
                "a transmit is not whole RESP commands ({other:?}): {}",
                bytes.escape_ascii()
            ),
        };
        let OwnedFrame::Array(items) = frame else {
            panic!("a command that is not an array: {frame:?}");
        };
        assert!(!items.is_empty(), "an empty command");
        commands.push(
            items
                .into_iter()
                .map(|item| match item {
                    OwnedFrame::BulkString(b) => b,
                    other => panic!("an argument that is not a bulk string: {other:?}"),
                })
                .collect(),
        );
        bytes = &bytes[used..];
    }
    assert!(!commands.is_empty(), "an empty transmit");
    commands
}

fn dec(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// The lock's keys and token, rebuilt from the raw bytes.
struct Expect<'a> {
    setup: &'a Setup,
}

impl Expect<'_> {
    fn key(&self, suffix: &[u8]) -> Vec<u8> {
        [&self.setup.prefix[..], b"{", &self.setup.name, suffix].concat()
    }
    fn lock(&self) -> Vec<u8> {
        self.key(b"}")
    }
    fn fence(&self) -> Vec<u8> {
        self.key(b"}:fence")
    }
    fn holds(&self) -> Vec<u8> {
        self.key(b"}:holds")
    }
    fn signal(&self) -> Vec<u8> {
        self.key(b"}:signal")
    }
    fn queue(&self) -> Vec<u8> {
        self.key(b"}:queue")
    }
    fn waiting(&self) -> Vec<u8> {
        self.key(b"}:waiting")
    }
    fn wake_prefix(&self) -> Vec<u8> {
        self.key(b"}:wake:")
    }
    fn alive_prefix(&self) -> Vec<u8> {
        self.key(b"}:alive:")
    }
    fn token(&self) -> Vec<u8> {
        self.setup.token.as_bytes().to_vec()
    }
    /// `arg`, checked to be one of the token's attempt tokens.
    fn attempt(&self, arg: &[u8]) -> Vec<u8> {
        assert!(
            is_attempt_token(&self.setup.token, arg),
            "token {} is not one {} may write",
            arg.escape_ascii(),
            self.setup.token
        );
        arg.to_vec()
    }
    fn ttl(&self) -> Vec<u8> {
        dec(self.setup.lock.options().ttl.as_millis())
    }
    fn flag(on: bool) -> Vec<u8> {
        if on { b"1".to_vec() } else { b"0".to_vec() }
    }
}

/// Whether `token` is one an acquire with the owner's token `base` may write for an attempt
/// (`Token::for_attempt`'s documented forms): `base` itself, or `<base>.<n>` with `base` cut
/// so the whole fits `MAX_TOKEN_LEN`. Which form an attempt uses is the core's choice; what
/// the harness checks is how they are used: the lease reports what its nodes hold, and no
/// rollback deletes with the lease's token.
pub fn is_attempt_token(base: &Token, token: &[u8]) -> bool {
    let base = base.as_bytes();
    if token == base {
        return true;
    }
    let Some(dot) = token.iter().rposition(|&b| b == b'.') else {
        return false;
    };
    let Some(n) = std::str::from_utf8(&token[dot + 1..])
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    else {
        return false;
    };
    let suffix = n.to_string();
    let keep = base.len().min(MAX_TOKEN_LEN - suffix.len() - 1);
    token == [&base[..keep], b".", suffix.as_bytes()].concat()
}

fn args(list: &[&[u8]]) -> Command {
    list.iter().map(|a| a.to_vec()).collect()
}

/// A script call, checked: `EVALSHA sha` or `EVAL source`, then the keys and `args` more.
fn script_call(cmd: &Command, script: &Script, keys: &[Vec<u8>], rest: &[Vec<u8>]) -> bool {
    let head_ok = match cmd[0].as_slice() {
        b"EVALSHA" => cmd.get(1).is_some_and(|s| s == &script.sha),
        b"EVAL" => cmd.get(1).is_some_and(|s| s == script.source.as_bytes()),
        _ => false,
    };
    if !head_ok {
        return false;
    }
    let mut want: Command = vec![cmd[0].clone(), cmd[1].clone(), dec(keys.len() as u64)];
    want.extend(keys.iter().cloned());
    want.extend(rest.iter().cloned());
    assert_eq!(
        cmd,
        &want,
        "script {} called with the wrong arguments",
        script.sha.escape_ascii()
    );
    true
}

/// Which script a call runs, if any.
fn script_of(cmd: &Command) -> Option<Script> {
    let body = cmd.get(1)?;
    [
        ACQUIRE,
        RELEASE,
        EXTEND,
        RAISE_FENCE,
        FAIR_ACQUIRE,
        FAIR_RELEASE,
    ]
    .into_iter()
    .find(|s| match cmd[0].as_slice() {
        b"EVALSHA" => body == &s.sha,
        b"EVAL" => body == s.source.as_bytes(),
        _ => false,
    })
}

/// Native compare-and-delete: `Some(true)` for `DELEX … IFEQ`, `Some(false)` for `DELIFEQ`.
fn native_delete(server: &ServerInfo) -> Option<bool> {
    match server.flavor {
        Flavor::Valkey if server.version >= Version::new(9, 0, 0) => Some(false),
        Flavor::Redis if server.version >= Version::new(8, 4, 0) => Some(true),
        _ => None,
    }
}

/// `SET … NX … GET` (Redis ≥ 7.0, every Valkey; not assumed of a server not known).
fn has_set_nx_get(server: &ServerInfo) -> bool {
    match server.flavor {
        Flavor::Valkey => true,
        Flavor::Redis => server.version >= Version::new(7, 0, 0),
        _ => false,
    }
}

fn has_set_ifeq(server: &ServerInfo) -> bool {
    match server.flavor {
        Flavor::Valkey => server.version >= Version::new(8, 1, 0),
        Flavor::Redis => server.version >= Version::new(8, 4, 0),
        _ => false,
    }
}

fn fractional_block(server: &ServerInfo) -> bool {
    match server.flavor {
        Flavor::Valkey => true,
        _ => server.version >= Version::new(6, 0, 0),
    }
}

/// Fair mode's block span for request timeout `R`: `R / 2`, at least 1 ms
/// (`core/src/fair.rs`, "A waiter's cycle").
fn fair_block_span(request_timeout: Duration) -> u64 {
    (request_timeout.as_millis() / 2).max(1)
}

/// ARGV[1] of a fair acquire call (after the head, numkeys and six keys).
fn fair_token(cmd: &Command) -> Vec<u8> {
    cmd.get(9).cloned().unwrap_or_default()
}

/// Checks a fair acquire call for attempt token `token`; returns its `extra` ms.
///
/// The liveness it asks for is the documented `R`: the next cycle's block span plus `R / 2`.
fn check_fair_acquire(e: &Expect<'_>, cmd: &Command, token: &[u8]) -> u64 {
    let options = e.setup.lock.options();
    let extra: u64 = cmd
        .get(11)
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a fair acquire without a numeric extra: {cmd:?}"));
    let enqueue = cmd.last().cloned().unwrap_or_default();
    assert!(
        enqueue == b"1" || enqueue == b"0",
        "enqueue {}",
        enqueue.escape_ascii()
    );
    assert!(
        !(e.setup.wait.is_zero() && enqueue == b"1"),
        "a try-lock joins the queue"
    );
    let liveness =
        fair_block_span(options.request_timeout) + options.request_timeout.as_millis() / 2;
    script_call(
        cmd,
        &FAIR_ACQUIRE,
        &[
            e.lock(),
            e.fence(),
            e.holds(),
            e.queue(),
            e.wake_prefix(),
            e.alive_prefix(),
        ],
        &[
            token.to_vec(),
            e.ttl(),
            dec(extra),
            Expect::flag(options.fenced),
            Expect::flag(options.reentrant),
            e.token(),
            dec(liveness),
            enqueue,
        ],
    );
    extra
}

/// What one transmit asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Each command, in order (each gets one reply).
    pub cmds: Vec<Cmd>,
    /// For an acquire or a rollback: the token it writes or deletes.
    pub token: Option<Vec<u8>>,
}

/// Checks one transmit of `setup`'s machine to `tx.node` and says what each command asks.
///
/// Panics on anything the protocol does not send: an unknown command, a wrong argument, a
/// native command the server does not have, a delete without the wake-up signal, a blocking flag
/// on a non-blocking command, a `BLPOP` timeout that would block forever.
pub fn check_transmit(setup: &Setup, tx: &Transmit, bytes: &[u8]) -> Checked {
    assert!(
        tx.node < setup.nodes,
        "a transmit to node {} of {}",
        tx.node,
        setup.nodes
    );
    assert_eq!(tx.len, bytes.len());
    let server = setup.servers[tx.node];
    let options = setup.lock.options();
    let e = Expect { setup };
    let mut commands = split_commands(bytes);
    // The waiting mark comes first, before the attempt it covers, in the same batch.
    let marked = commands[0].get(1) == Some(&e.waiting());
    if marked {
        assert_eq!(
            setup.kind,
            Kind::Acquire,
            "only an acquire marks: {commands:?}"
        );
        assert!(!options.fair, "a fair waiter queues instead of marking");
        assert!(
            options.wake_signal.is_some(),
            "a mark without wake-up signals"
        );
        let life = dec(distlock_core::WAITING_MARK_LIFE.as_millis());
        assert_eq!(
            commands[0],
            args(&[b"SET", &e.waiting(), b"1", b"PX", &life])
        );
        assert!(commands.len() > 1, "a mark with no attempt after it");
        commands.remove(0);
    }
    let verb = commands[0][0].as_slice();
    let kind = setup.kind;
    let scripted = options.fenced || options.reentrant;
    // Under `Scripts::Never` a node not known yet gets the native commands too (its reply
    // tells whether it has them); no script is ever sent.
    let never = options.scripts == Scripts::Never;
    let unknown_native = never && !server.is_known();
    let mut attempt = None;
    let out = match (verb, commands.len()) {
        (b"SET", 1..=3) if commands[0].iter().any(|a| a == b"NX") => {
            assert_eq!(kind, Kind::Acquire, "only an acquire sends SET NX");
            assert!(!options.fair, "a fair lock acquires with the fair script");
            assert!(
                !scripted,
                "a fenced or reentrant acquire must use the script"
            );
            let token = commands[0].get(2).cloned().unwrap_or_default();
            attempt = Some(e.attempt(&token));
            // `SET NX GET` only where the server has it; the plain form anywhere (the core
            // falls back to it when a server refuses the pair).
            let mut set = args(&[b"SET", &e.lock(), &token, b"NX", b"PX", &e.ttl()]);
            let with_get = commands[0].last().is_some_and(|a| a == b"GET");
            if with_get {
                assert!(has_set_nx_get(&server), "SET NX GET sent to {server:?}");
                assert!(
                    commands.len() <= 2,
                    "SET NX GET needs no TYPE: {commands:?}"
                );
                set.push(b"GET".to_vec());
            }
            assert_eq!(commands[0], set);
            match (commands.get(1), commands.get(2)) {
                (Some(pttl), None) if with_get => {
                    assert_eq!(pttl, &args(&[b"PTTL", &e.lock()]));
                    vec![Cmd::AcquireSetGet, Cmd::Pttl]
                }
                _ if with_get => vec![Cmd::AcquireSetGet],
                (Some(pttl), Some(kind)) => {
                    assert_eq!(pttl, &args(&[b"PTTL", &e.lock()]));
                    assert_eq!(kind, &args(&[b"TYPE", &e.lock()]));
                    vec![Cmd::AcquireSet, Cmd::Pttl, Cmd::Type]
                }
                (Some(pttl), None) => {
                    assert_eq!(pttl, &args(&[b"PTTL", &e.lock()]));
                    vec![Cmd::AcquireSet, Cmd::Pttl]
                }
                _ => vec![Cmd::AcquireSet],
            }
        }
        (b"SET", 1) => {
            assert_eq!(kind, Kind::Extend, "only an extend sends SET IFEQ");
            assert!(
                has_set_ifeq(&server) || unknown_native,
                "SET IFEQ sent to {server:?}"
            );
            assert!(!options.reentrant, "a reentrant extend must use the script");
            assert_eq!(
                commands[0],
                args(&[
                    b"SET",
                    &e.lock(),
                    &e.token(),
                    b"IFEQ",
                    &e.token(),
                    b"PX",
                    &e.ttl()
                ])
            );
            vec![Cmd::ExtendNative]
        }
        (b"DELEX" | b"DELIFEQ", n) => {
            assert_ne!(kind, Kind::Extend, "an extend never deletes");
            assert!(
                !options.reentrant,
                "a reentrant release must use the script"
            );
            let token = match kind {
                Kind::Acquire => {
                    let token = commands[0].last().cloned().unwrap_or_default();
                    attempt = Some(e.attempt(&token));
                    token
                }
                _ => e.token(),
            };
            let want = match native_delete(&server) {
                Some(true) => args(&[b"DELEX", &e.lock(), b"IFEQ", &token]),
                Some(false) => args(&[b"DELIFEQ", &e.lock(), &token]),
                None if unknown_native => args(&[b"DELIFEQ", &e.lock(), &token]),
                None => panic!("a native delete sent to {server:?}"),
            };
            assert_eq!(commands[0], want);
            // A release and a rollback both push the wake-up signal: a waiter refused by the
            // key a rollback frees is woken by it, not by its retry cap.
            let signal = options.wake_signal;
            match signal {
                Some(ttl) => {
                    assert_eq!(n, 4, "a delete with signals pushes one: {commands:?}");
                    assert_eq!(commands[1], args(&[b"LPUSH", &e.signal(), b"1"]));
                    assert_eq!(commands[2], args(&[b"LTRIM", &e.signal(), b"0", b"0"]));
                    assert_eq!(
                        commands[3],
                        args(&[b"PEXPIRE", &e.signal(), &dec(ttl.as_millis())])
                    );
                    vec![Cmd::ReleaseNative, Cmd::Lpush, Cmd::Ltrim, Cmd::Pexpire]
                }
                None => {
                    assert_eq!(n, 1, "a delete without signals: {commands:?}");
                    vec![Cmd::ReleaseNative]
                }
            }
        }
        (b"BLPOP", 2) => {
            // A fair cycle after the first: block on the attempt's own wake-up list, then
            // the script, in one batch.
            assert_eq!(kind, Kind::Acquire);
            assert!(options.fair, "a fair cycle without fair mode");
            assert!(
                fractional_block(&server),
                "a fair cycle blocks on {server:?}, which takes whole seconds (it must poll)"
            );
            let blocking = tx
                .blocking
                .expect("a fair cycle's BLPOP must say it blocks");
            let ms = blocking.as_millis();
            assert!(ms >= 1, "a BLPOP for 0 ms");
            assert!(
                ms <= fair_block_span(options.request_timeout),
                "a fair cycle blocks {ms} ms, longer than R / 2"
            );
            let token = fair_token(&commands[1]);
            attempt = Some(e.attempt(&token));
            let timeout = format!("{}.{:03}", ms / 1000, ms % 1000).into_bytes();
            assert_eq!(
                commands[0],
                args(&[b"BLPOP", &[&e.wake_prefix()[..], &token].concat(), &timeout])
            );
            let extra = check_fair_acquire(&e, &commands[1], &token);
            assert_eq!(extra, ms, "a cycle's extra is its block span");
            vec![Cmd::FairBlpop, Cmd::FairAcquireScript { extra }]
        }
        (b"EVALSHA" | b"EVAL", 1) => {
            assert!(!never, "a script under Scripts::Never: {commands:?}");
            let cmd = &commands[0];
            let script = script_of(cmd).unwrap_or_else(|| panic!("an unknown script: {cmd:?}"));
            if script == FAIR_ACQUIRE {
                // The first cycle, a poll (a server without fractional BLPOP timeouts), or
                // the resend by source of a cycle's script after NOSCRIPT — its BLPOP already
                // ran, so it keeps that cycle's extra.
                assert_eq!(kind, Kind::Acquire);
                assert!(options.fair, "the fair script without fair mode");
                let token = fair_token(cmd);
                attempt = Some(e.attempt(&token));
                let extra = check_fair_acquire(&e, cmd, &token);
                if cmd[0] == b"EVALSHA" {
                    assert_eq!(extra, 0, "a cycle without a block has no extra");
                } else {
                    assert!(
                        extra <= fair_block_span(options.request_timeout),
                        "a resent cycle's extra {extra} ms is longer than R / 2"
                    );
                }
                vec![Cmd::FairAcquireScript { extra }]
            } else if script == FAIR_RELEASE {
                assert_ne!(kind, Kind::Extend);
                assert!(options.fair, "the fair release without fair mode");
                let token = match kind {
                    Kind::Acquire => {
                        let token = cmd.get(8).cloned().unwrap_or_default();
                        attempt = Some(e.attempt(&token));
                        token
                    }
                    _ => e.token(),
                };
                script_call(
                    cmd,
                    &FAIR_RELEASE,
                    &[
                        e.lock(),
                        e.holds(),
                        e.queue(),
                        e.wake_prefix(),
                        e.alive_prefix(),
                    ],
                    &[
                        token,
                        Expect::flag(options.reentrant),
                        dec(options.request_timeout.as_millis()),
                    ],
                );
                vec![Cmd::FairReleaseScript]
            } else if script == ACQUIRE {
                assert_eq!(kind, Kind::Acquire);
                assert!(scripted, "a plain acquire must use SET NX");
                // ARGV[1] follows EVAL(SHA), the body, numkeys and the three keys.
                let token = cmd.get(6).cloned().unwrap_or_default();
                attempt = Some(e.attempt(&token));
                let mut argv = vec![
                    token,
                    e.ttl(),
                    Expect::flag(options.fenced),
                    Expect::flag(options.reentrant),
                ];
                // Since per-attempt tokens, ARGV[5] is the owner's token (a reentrant lock
                // is re-entered when it holds that one); the script's doc says which.
                if ACQUIRE.source.contains("ARGV[5]") {
                    argv.push(e.token());
                }
                script_call(cmd, &ACQUIRE, &[e.lock(), e.fence(), e.holds()], &argv);
                vec![Cmd::AcquireScript]
            } else if script == RAISE_FENCE {
                assert_eq!(kind, Kind::Acquire);
                assert!(
                    options.fenced && setup.nodes > 1,
                    "a raise outside fenced Redlock"
                );
                let value = cmd.last().expect("an argument");
                let parsed: u64 = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("a fence that is not a number: {value:?}"));
                assert_eq!(dec(parsed), *value, "a fence not in canonical decimal");
                script_call(cmd, &RAISE_FENCE, &[e.fence()], std::slice::from_ref(value));
                vec![Cmd::RaiseFence(parsed)]
            } else if script == RELEASE {
                assert_ne!(kind, Kind::Extend);
                assert!(!options.fair, "a fair lock releases with the fair script");
                let signal = options.wake_signal.map_or(0, Duration::as_millis);
                let token = match kind {
                    Kind::Acquire => {
                        let token = cmd.get(7).cloned().unwrap_or_default();
                        attempt = Some(e.attempt(&token));
                        token
                    }
                    _ => e.token(),
                };
                // Pushes only while a waiter marked (the fuzzed layouts all have the mark).
                script_call(
                    cmd,
                    &RELEASE,
                    &[e.lock(), e.holds(), e.signal(), e.waiting()],
                    &[
                        token,
                        Expect::flag(options.reentrant),
                        dec(signal),
                        Expect::flag(false),
                    ],
                );
                vec![Cmd::ReleaseScript]
            } else {
                assert_eq!(kind, Kind::Extend);
                script_call(cmd, &EXTEND, &[e.lock(), e.holds()], &[e.token(), e.ttl()]);
                vec![Cmd::ExtendScript]
            }
        }
        (b"BLPOP", 1) => {
            assert_eq!(kind, Kind::Acquire);
            assert!(
                !options.fair,
                "a fair waiter blocks on its own list, with its script"
            );
            assert!(
                options.wake_signal.is_some(),
                "BLPOP without wake-up signals"
            );
            let blocking = tx.blocking.expect("a BLPOP transmit must say it blocks");
            let ms = blocking.as_millis();
            assert!(ms >= 1, "a BLPOP for 0 ms");
            let timeout = if fractional_block(&server) {
                format!("{}.{:03}", ms / 1000, ms % 1000).into_bytes()
            } else {
                dec(ms.div_ceil(1000))
            };
            assert_eq!(commands[0], args(&[b"BLPOP", &e.signal(), &timeout]));
            vec![Cmd::Blpop]
        }
        _ => panic!("an unexpected transmit: {commands:?}"),
    };
    assert_eq!(
        tx.blocking.is_some(),
        out[0].blocks(),
        "only BLPOP blocks: {commands:?} {:?}",
        tx.blocking
    );
    let out = if marked {
        assert!(out[0].is_acquire(), "a mark before {commands:?}");
        [Cmd::WaitingMark].into_iter().chain(out).collect()
    } else {
        out
    };
    Checked {
        cmds: out,
        token: attempt,
    }
}
