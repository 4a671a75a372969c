//! Writes the committed seed corpus, `fuzz/corpus/<target>/<name>`:
//! `cargo run --example make_seeds` (from `fuzz/`). Replies marked "captured" were read off
//! a real `redis-server` 7.0.15 (RESP2 and RESP3 connections, a replica, a server with
//! `requirepass`); the rest are hand-made.

use std::path::Path;

use distlock_fuzz::encoding::{EncodingParams, TokenChoice};
use distlock_fuzz::events::{Event, EventInput, Split};
use distlock_fuzz::records::Writer;
use distlock_fuzz::replies::{ErrorKind, ReplyKind};
use distlock_fuzz::seeds::{encode_encoding, encode_events};
use distlock_fuzz::setup::SetupChoice;

// ---- captured from redis-server 7.0.15 ----
// A probed attempt's batch: `SET NX PX`, `PTTL`, `TYPE`.
const SET_NX_PTTL_OK: &[u8] = b"+OK\r\n:30000\r\n+string\r\n";
const SET_NX_PTTL_BUSY: &[u8] = b"$-1\r\n:29499\r\n+string\r\n";
const NOSCRIPT: &[u8] = b"-NOSCRIPT No matching script. Please use EVAL.\r\n";
const EVAL_ACQUIRE_FENCED: &[u8] = b"*2\r\n:1\r\n:1\r\n";
const EVAL_ACQUIRE_BUSY: &[u8] = b"*2\r\n:0\r\n:29549\r\n";
const EVAL_ACQUIRE_REENTER: &[u8] = b"*2\r\n:2\r\n:0\r\n";
const EVAL_RAISE_FENCE: &[u8] = b":7\r\n";
const EVAL_EXTEND_YES: &[u8] = b":1\r\n";
const EVAL_EXTEND_NO: &[u8] = b":0\r\n";
const EVAL_RELEASE_NOT_HELD: &[u8] = b":-1\r\n";
const EVAL_RELEASE_YES: &[u8] = b":0\r\n";
const EVAL_RELEASE_STILL_HELD: &[u8] = b":1\r\n";
const BLPOP_WOKEN: &[u8] = b"*2\r\n$21\r\ndistlock:{job}:signal\r\n$1\r\n1\r\n";
const BLPOP_TIMEOUT: &[u8] = b"*-1\r\n";
const DELEX_UNKNOWN: &[u8] = b"-ERR unknown command 'DELEX', with args beginning with: 'distlock:{job}' 'IFEQ' '0123456789abcdef0123456789abcdef' \r\n:1\r\n+OK\r\n:1\r\n";
const DELIFEQ_UNKNOWN: &[u8] = b"-ERR unknown command 'DELIFEQ', with args beginning with: 'distlock:{job}' '0123456789abcdef0123456789abcdef' \r\n";
const SET_IFEQ_SYNTAX: &[u8] = b"-ERR syntax error\r\n";
const WRONGTYPE: &[u8] = b"-WRONGTYPE Operation against a key holding the wrong kind of value script: ea2e40ee4c9d98215cb6d67ba777b9375b6116ba, on @user_script:1.\r\n";
const HELLO3: &[u8] = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:6\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
const RESP3_SET_NX_BUSY: &[u8] = b"_\r\n:29500\r\n";
const RESP3_BLPOP_TIMEOUT: &[u8] = b"_\r\n";
const RESP3_PUSH_THEN_PTTL: &[u8] =
    b">2\r\n$10\r\ninvalidate\r\n*1\r\n$14\r\ndistlock:{job}\r\n:-1\r\n";
const HELLO_NOAUTH: &[u8] = b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n";
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
const REPLICA_READONLY: &[u8] =
    b"-READONLY You can't write against a read only replica.\r\n:-1\r\n";
const INFO_SERVER: &[u8] = b"$578\r\n# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:ae4d7c971a948f0\r\nredis_mode:standalone\r\nos:Linux 6.18.44-fc-v595 x86_64\r\narch_bits:64\r\nmonotonic_clock:POSIX clock_gettime\r\nmultiplexing_api:epoll\r\natomicvar_api:c11-builtin\r\ngcc_version:12.2.0\r\nprocess_id:16934\r\nprocess_supervised:no\r\nrun_id:6e2f5d0b9cdbb7c84d5ed33a1ee2e2d1f8cf1f19\r\ntcp_port:16391\r\nserver_time_usec:1763917523123456\r\nuptime_in_seconds:1\r\nuptime_in_days:0\r\nhz:10\r\nconfigured_hz:10\r\nlru_clock:6004915\r\nexecutable:/usr/bin/redis-server\r\nconfig_file:\r\nio_threads_active:0\r\n\r\n";

// Server bytes of `SetupChoice::servers`: bit 0 RESP3, bits 1-2 flavour, bits 3-5 version.
const REDIS_7: u8 = 2 | (2 << 3);
const REDIS_7_RESP3: u8 = REDIS_7 | 1;
const REDIS_8_4: u8 = 2 | (4 << 3);
const REDIS_5: u8 = 2 | (6 << 3);
const VALKEY_8_1: u8 = 4 | (3 << 3);
const VALKEY_9: u8 = 4 | (5 << 3);

/// A setup: `kind` 0 acquire / 2 release / 3 extend / 4 handshake, `nodes` index (0: 1,
/// 1: 3, 4: 5), option `flags`, `wait` index, one server for every node.
fn setup(kind: u8, nodes: u8, flags: u8, wait: u8, server: u8) -> SetupChoice {
    SetupChoice {
        kind,
        nodes,
        flags,
        wait,
        servers: [server; 5],
        seed: 0x5a,
        ..SetupChoice::default()
    }
}

const FENCED: u8 = 1;
const REENTRANT: u8 = 2;
const NO_SIGNAL: u8 = 4;
const FAIR: u8 = 32;
const NO_SCRIPTS: u8 = 64;
const WAIT_1S: u8 = 3;
const WAIT_5S: u8 = 4;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("writable corpus directory");
}

fn reply_bytes(dir: &Path) {
    let one = |flags, wait, server| Writer::new(&setup(0, 0, flags, wait, server));
    let seeds: Vec<(&str, Writer)> = vec![
        ("acquire-set-ok", one(0, 0, REDIS_7).raw(0, 0, b"+OK\r\n")),
        (
            "acquire-busy-blpop-woken-then-ok",
            one(0, WAIT_1S, REDIS_7)
                .raw(0, 0, SET_NX_PTTL_BUSY)
                .raw(0, 0, BLPOP_WOKEN)
                .raw(0, 0, SET_NX_PTTL_OK),
        ),
        (
            "acquire-busy-blpop-timeout-then-ok-bytewise",
            one(0, WAIT_1S, REDIS_7)
                .raw(0, 1, SET_NX_PTTL_BUSY)
                .raw(0, 2, BLPOP_TIMEOUT)
                .deliver(0, 0)
                .raw(0, 1, SET_NX_PTTL_OK),
        ),
        (
            "acquire-busy-poll-without-signal",
            one(NO_SIGNAL, WAIT_1S, REDIS_7)
                .raw(0, 0, SET_NX_PTTL_BUSY)
                .timeout()
                .raw(0, 0, SET_NX_PTTL_OK),
        ),
        (
            "acquire-fenced-noscript-eval",
            one(FENCED, 0, REDIS_7)
                .raw(0, 0, NOSCRIPT)
                .raw(0, 0, EVAL_ACQUIRE_FENCED),
        ),
        (
            "acquire-reentrant-reenter",
            one(REENTRANT, 0, REDIS_7).raw(0, 0, EVAL_ACQUIRE_REENTER),
        ),
        (
            "acquire-fenced-busy",
            one(FENCED, 0, REDIS_7).raw(0, 0, EVAL_ACQUIRE_BUSY),
        ),
        (
            "acquire-wrongtype",
            one(FENCED, 0, REDIS_7).raw(0, 0, WRONGTYPE),
        ),
        (
            "acquire-replica-readonly-then-ok",
            one(0, WAIT_1S, REDIS_7)
                .raw(0, 0, REPLICA_READONLY)
                .timeout()
                .raw(0, 0, SET_NX_PTTL_OK),
        ),
        (
            "acquire-resp3-busy-blpop-null-then-ok",
            one(0, WAIT_1S, REDIS_7_RESP3)
                .raw(0, 0, RESP3_SET_NX_BUSY)
                .raw(0, 0, RESP3_BLPOP_TIMEOUT)
                .raw(0, 0, b"+OK\r\n:30000\r\n"),
        ),
        (
            "acquire-resp3-push-before-reply",
            one(0, WAIT_1S, REDIS_7_RESP3).raw(0, 0, RESP3_PUSH_THEN_PTTL),
        ),
        (
            "redlock3-fenced-grant-and-raise",
            Writer::new(&setup(0, 1, FENCED, 0, REDIS_7))
                .raw(0, 0, EVAL_ACQUIRE_FENCED)
                .reply(1, 0, 0, 0)
                .reply(2, 0, 0, 0)
                .raw(0, 0, EVAL_RAISE_FENCE)
                .reply(1, 0, 0, 0)
                .reply(2, 0, 0, 0),
        ),
        (
            "redlock3-one-slow-split",
            Writer::new(&setup(0, 1, 0, 0, REDIS_7))
                .raw(0, 1, b"+OK\r\n")
                .raw(1, 2, b"+OK\r\n")
                .time(0, 400)
                .deliver(1, 0)
                .timeout(),
        ),
        (
            "redlock3-quorum-lost-rollback",
            Writer::new(&setup(0, 1, 0, 0, REDIS_7))
                .raw(0, 0, b"+OK\r\n")
                .raw(1, 0, b"$-1\r\n")
                .raw(2, 0, b"-MOVED 3999 127.0.0.1:6381\r\n")
                .raw(0, 0, EVAL_RELEASE_YES),
        ),
        (
            "redlock5-mixed",
            Writer::new(&setup(0, 4, 0, WAIT_5S, REDIS_7))
                .reply(0, 0, 0, 0)
                .reply(1, 1, 4, 0)
                .reply(2, 0, 6, 1)
                .reply(3, 0, 0, 0)
                .time(1, 20)
                .reply(4, 0, 0, 0)
                .timeout(),
        ),
        (
            "acquire-cancel-then-stale-reply",
            Writer::new(&setup(0, 1, 0, 0, REDIS_7))
                .raw(0, 0, b"+OK\r\n")
                .cancel()
                .raw(1, 0, b"+OK\r\n")
                .raw(1, 0, EVAL_RELEASE_YES)
                .reset(2),
        ),
        (
            "acquire-leap-past-validity",
            Writer::new(&setup(0, 1, 0, 0, REDIS_7))
                .raw(0, 0, b"+OK\r\n")
                .time(2, 60)
                .raw(1, 0, b"+OK\r\n"),
        ),
        (
            "acquire-hostile-lengths",
            one(0, 0, REDIS_7).raw(0, 0, b"*3000000000\r\n$99999999999\r\n"),
        ),
        (
            "acquire-too-deep",
            one(0, 0, REDIS_7_RESP3).raw(
                0,
                0,
                b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            ),
        ),
        (
            "acquire-streamed-and-attribute",
            one(0, 0, REDIS_7_RESP3).raw(0, 0, b"|1\r\n+a\r\n:1\r\n+OK\r\n$?\r\n;1\r\nx\r\n;0\r\n"),
        ),
        (
            "release-script-yes",
            Writer::new(&setup(2, 0, 0, 0, REDIS_7)).raw(0, 0, EVAL_RELEASE_YES),
        ),
        (
            "release-script-not-held",
            Writer::new(&setup(2, 0, 0, 0, REDIS_7)).raw(0, 0, EVAL_RELEASE_NOT_HELD),
        ),
        (
            "release-reentrant-still-held",
            Writer::new(&setup(2, 0, REENTRANT, 0, REDIS_7)).raw(0, 0, EVAL_RELEASE_STILL_HELD),
        ),
        (
            "release-delex-unknown-then-script",
            Writer::new(&setup(2, 0, 0, 0, REDIS_8_4))
                .raw(0, 0, DELEX_UNKNOWN)
                .raw(0, 0, NOSCRIPT)
                .raw(0, 0, EVAL_RELEASE_YES),
        ),
        (
            "release-delifeq-unknown-then-script",
            Writer::new(&setup(2, 0, NO_SIGNAL, 0, VALKEY_9))
                .raw(0, 0, DELIFEQ_UNKNOWN)
                .raw(0, 0, EVAL_RELEASE_YES),
        ),
        (
            "release3-loading-retry",
            Writer::new(&setup(2, 1, 0, 0, REDIS_7))
                .reply(0, 0, 6, 2)
                .reply(1, 0, 0, 0)
                .timeout()
                .reply(0, 0, 0, 0)
                .reply(2, 0, 0, 0),
        ),
        (
            "extend-script-yes",
            Writer::new(&setup(3, 0, 0, 0, REDIS_7)).raw(0, 0, EVAL_EXTEND_YES),
        ),
        (
            "extend-script-no",
            Writer::new(&setup(3, 0, 0, 0, REDIS_7)).raw(0, 0, EVAL_EXTEND_NO),
        ),
        (
            "extend-native-syntax-error",
            Writer::new(&setup(3, 0, 0, 0, VALKEY_8_1)).raw(0, 0, SET_IFEQ_SYNTAX),
        ),
        (
            "extend3-native-ok-and-nil",
            Writer::new(&setup(3, 1, 0, 0, VALKEY_8_1))
                .raw(0, 0, b"+OK\r\n")
                .raw(1, 0, b"$-1\r\n")
                .raw(2, 0, b"+OK\r\n"),
        ),
        (
            "handshake-hello3",
            Writer::new(&setup(4, 0, 64, 0, 0)).raw(0, 0, HELLO3),
        ),
        (
            "handshake-hello3-loads",
            Writer::new(&setup(4, 0, 0, 0, 0))
                .raw(0, 0, HELLO3)
                .raw(0, 0, b"$40\r\n0123456789012345678901234567890123456789\r\n")
                .raw(0, 0, b"-NOPERM no SCRIPT for you\r\n$1\r\nx\r\n$1\r\ny\r\n"),
        ),
        (
            "handshake-hello-noauth",
            Writer::new(&setup(4, 0, 1, 0, 0)).raw(0, 0, HELLO_NOAUTH),
        ),
        (
            "handshake-legacy-wrongpass",
            Writer::new(&setup(4, 0, 1 | 2 | 32, 0, 0)).raw(0, 0, WRONGPASS),
        ),
        (
            "handshake-legacy-info-select",
            Writer::new(&setup(4, 0, 4 | 16 | 32 | 64, 0, 0))
                .raw(0, 0, b"+OK\r\n")
                .raw(0, 2, INFO_SERVER)
                .deliver(0, 0)
                .raw(0, 0, b"+OK\r\n"),
        ),
        (
            "handshake-hello-unknown-fallback",
            Writer::new(&setup(4, 0, 64, 0, 0))
                .raw(
                    0,
                    0,
                    b"-ERR unknown command 'HELLO', with args beginning with: '3' \r\n",
                )
                .raw(0, 0, INFO_SERVER),
        ),
        (
            "handshake-timeout",
            Writer::new(&setup(4, 0, 64, 0, 0)).time(0, 20).timeout(),
        ),
    ];
    for (name, w) in seeds {
        write(dir, name, &w.bytes);
    }
}

fn reply(node: u8, reply: ReplyKind) -> Event {
    Event::Reply {
        node,
        reply,
        split: Split::Whole,
    }
}

fn event_sequence(dir: &Path) {
    use ReplyKind::*;
    let s = |kind, nodes, flags, wait, server| setup(kind, nodes, flags, wait, server);
    let seeds: Vec<(&str, SetupChoice, Vec<Event>)> = vec![
        (
            "redlock3-grant",
            s(0, 1, 0, 0, REDIS_7),
            vec![reply(0, Success), reply(1, Success), reply(2, Success)],
        ),
        (
            "redlock3-fenced-grant-raise",
            s(0, 1, FENCED, 0, REDIS_7),
            (0..6).map(|i| reply(i % 3, Success)).collect(),
        ),
        (
            "acquire-busy-blpop-grant",
            s(0, 0, 0, WAIT_1S, REDIS_7),
            vec![reply(0, Refuse), reply(0, Success), reply(0, Success)],
        ),
        (
            "acquire-fenced-noscript-eval",
            s(0, 0, FENCED, 0, REDIS_7),
            vec![reply(0, Error(ErrorKind::NoScript)), reply(0, Success)],
        ),
        (
            "release3-readonly-retry",
            s(2, 1, 0, 0, REDIS_7),
            vec![
                reply(0, Error(ErrorKind::ReadOnly)),
                reply(1, Success),
                Event::Timeout,
                reply(0, Success),
                reply(2, Success),
            ],
        ),
        (
            "extend3-loading-leap",
            s(3, 1, 0, 0, REDIS_7),
            vec![
                reply(0, Error(ErrorKind::Loading)),
                Event::Leap { secs: 2 },
                reply(1, Success),
                reply(2, Refuse),
            ],
        ),
        (
            "redlock3-moved",
            s(0, 1, 0, 0, REDIS_7),
            vec![
                reply(0, Error(ErrorKind::Moved)),
                reply(1, Error(ErrorKind::Moved)),
                reply(2, Success),
            ],
        ),
        (
            "redlock3-reset-and-late-grant",
            s(0, 1, 0, WAIT_1S, REDIS_7),
            vec![
                reply(0, Success),
                Event::Reply {
                    node: 1,
                    reply: Success,
                    split: Split::Hold,
                },
                Event::Reset { node: 1 },
                Event::Deliver { node: 1, max: 0 },
                Event::Timeout,
                reply(1, Success),
                reply(2, Success),
            ],
        ),
        (
            "acquire-cancel",
            s(0, 1, 0, WAIT_5S, REDIS_7),
            vec![reply(0, Success), Event::Cancel, reply(1, Success)],
        ),
        (
            "redlock5-resp3-push-attribute",
            s(0, 4, 0, 0, REDIS_7_RESP3),
            vec![
                reply(0, Push),
                reply(0, AttributedSuccess),
                reply(1, Success),
                reply(2, OtherProtocol),
                reply(3, Success),
                reply(4, ReplyKind::Odd(distlock_fuzz::replies::Odd::Deep)),
            ],
        ),
        (
            "release-native-unknown-fallback",
            s(2, 0, 0, 0, REDIS_8_4),
            vec![
                reply(0, Error(ErrorKind::UnknownCommand)),
                reply(0, Success),
                reply(0, Success),
                reply(0, Success),
                reply(0, Error(ErrorKind::NoScript)),
                reply(0, Success),
            ],
        ),
        (
            "acquire-timeout-then-stale-grant",
            s(0, 0, 0, WAIT_1S, REDIS_7),
            vec![
                Event::Timeout,
                reply(0, Success),
                Event::Advance { ms: 30 },
                reply(0, Success),
                reply(0, Success),
            ],
        ),
        (
            "acquire-split-bytewise",
            s(0, 1, FENCED, 0, REDIS_7),
            vec![
                Event::Reply {
                    node: 0,
                    reply: Success,
                    split: Split::Bytewise,
                },
                Event::Reply {
                    node: 1,
                    reply: Success,
                    split: Split::At(3),
                },
                Event::Deliver { node: 1, max: 0 },
                Event::Garbage {
                    node: 2,
                    bytes: *b"\r\n$-",
                    len: 4,
                    split: Split::Whole,
                },
            ],
        ),
        (
            // Finding 2's shape: NOSCRIPT and another reply in one read.
            "finding2-noscript-then-more-in-one-read",
            s(0, 0, FENCED, 0, REDIS_7),
            vec![
                Event::Reply {
                    node: 0,
                    reply: Error(ErrorKind::NoScript),
                    split: Split::Hold,
                },
                reply(0, Success),
            ],
        ),
        (
            // A fair waiter: the first cycle is busy, the next one blocks on its own list,
            // is woken and confirms the hand-off.
            "fair-busy-then-handed-over",
            s(0, 0, FAIR | FENCED, WAIT_1S, REDIS_7),
            vec![reply(0, Refuse), reply(0, Success), reply(0, Success)],
        ),
        (
            // A fair cycle's reply lost: the attempt is rolled back by the fair release and
            // the next attempt queues again.
            "fair-cycle-lost-then-rollback",
            s(0, 0, FAIR, WAIT_5S, REDIS_7),
            vec![
                reply(0, Refuse),
                Event::Timeout,
                Event::Reset { node: 0 },
                reply(0, Success),
                Event::Timeout,
                reply(0, Success),
            ],
        ),
        (
            "fair-release",
            s(2, 0, FAIR, 0, REDIS_7),
            vec![reply(0, Error(ErrorKind::NoScript)), reply(0, Success)],
        ),
        (
            // No scripts on Valkey 9: a busy SET NX, the wake-up, the grant.
            "no-scripts-valkey9-busy-woken-grant",
            s(0, 0, NO_SCRIPTS, WAIT_1S, VALKEY_9),
            vec![reply(0, Refuse), reply(0, Success), reply(0, Success)],
        ),
        (
            // DELIFEQ and the wake-up signal's LPUSH, LTRIM, PEXPIRE in one pipeline.
            "no-scripts-valkey9-release",
            s(2, 0, NO_SCRIPTS, 0, VALKEY_9),
            vec![reply(0, Success); 4],
        ),
        (
            "no-scripts-valkey9-extend",
            s(3, 1, NO_SCRIPTS, 0, VALKEY_9),
            (0..3).map(|i| reply(i, Success)).collect(),
        ),
        (
            // A server not known yet, without scripts: the native delete is refused as an
            // unknown command, which is the answer (no fallback to a script).
            "no-scripts-unknown-server-release-refused",
            s(2, 0, NO_SCRIPTS, 0, 0),
            vec![reply(0, Error(ErrorKind::UnknownCommand))],
        ),
    ];
    for (name, setup, events) in seeds {
        write(dir, name, &encode_events(&EventInput { setup, events }));
    }
}

struct Tail<'a> {
    name: &'a [u8],
    prefix: &'a [u8],
    token: &'a [u8],
    user: &'a [u8],
    password: &'a [u8],
    client: &'a [u8],
    raw: &'a [u8],
}

fn params(setup: SetupChoice, tail: &Tail<'_>, handshake: u8) -> EncodingParams {
    EncodingParams {
        setup,
        ttl: 30_000,
        per_million: 500,
        fixed: 2,
        request_timeout: 1000,
        wake_signal: Some(1000),
        retry_base: 10,
        retry_cap: 500,
        max_attempts: None,
        fenced: false,
        reentrant: false,
        token: TokenChoice::Entropy(*b"0123456789abcdef"),
        lens: [
            (tail.name.len() / 2) as u8,
            tail.prefix.len() as u8,
            tail.token.len() as u8,
            tail.user.len() as u8,
            tail.password.len() as u8,
            tail.client.len() as u8,
            7,
        ],
        handshake,
        short: 37,
        replies: [ReplyKind::Success; 6],
    }
}

fn encoded(p: &EncodingParams, t: &Tail<'_>) -> Vec<u8> {
    let tail = [
        t.name, t.prefix, t.token, t.user, t.password, t.client, t.raw,
    ]
    .concat();
    encode_encoding(p, &tail)
}

fn command_encoding(dir: &Path) {
    let plain = Tail {
        name: b"jobs",
        prefix: b"distlock:",
        token: b"",
        user: b"app",
        password: b"secret",
        client: b"worker-1",
        raw: b"SET\r\nkey\r\nvalue",
    };
    let hostile = Tail {
        name: b"a\xff\xfe{x}:\"' y",
        prefix: b"app/\xc3\xa9:",
        token: b"tok-0123456789ABCDEFghij~!@#$%^&*()",
        user: b"u\r\nser",
        password: b"pa\r\n*1\r\n$4\r\nPING\r\nss",
        client: b"name with spaces\x00",
        raw: b"*1\r\n$4\r\nPING\r\n\x00\xff",
    };
    let crlf_name = Tail {
        name: b"ab\r\n*1\r\n",
        ..plain
    };
    let brace_name = Tail {
        name: b"}x",
        ..plain
    };
    let long_name = [b'n'; 256];
    let long_prefix = [b'p'; 64];
    let long = Tail {
        name: &long_name,
        prefix: &long_prefix,
        token: &[b'T'; 64],
        ..hostile
    };
    let bad_prefix = Tail {
        prefix: b"x{y}",
        ..plain
    };
    let seeds: Vec<(&str, EncodingParams, &Tail<'_>)> = vec![
        (
            "plain-acquire",
            params(setup(0, 0, 0, 0, REDIS_7), &plain, 0),
            &plain,
        ),
        (
            "hostile-bytes-redlock3-fenced-reentrant",
            EncodingParams {
                fenced: true,
                reentrant: true,
                token: TokenChoice::Given,
                replies: [
                    ReplyKind::Error(ErrorKind::NoScript),
                    ReplyKind::Success,
                    ReplyKind::Success,
                    ReplyKind::Success,
                    ReplyKind::Success,
                    ReplyKind::Success,
                ],
                ..params(setup(0, 1, 0, 0, REDIS_7), &hostile, 1 | 2 | 4 | 24)
            },
            &hostile,
        ),
        (
            "hostile-bytes-legacy-handshake",
            params(setup(2, 0, 0, 0, REDIS_7), &hostile, 1 | 2 | 4 | 16 | 32),
            &hostile,
        ),
        (
            "name-with-crlf-refused",
            params(setup(0, 0, 0, 0, REDIS_7), &crlf_name, 0),
            &crlf_name,
        ),
        (
            "name-brace-refused",
            params(setup(0, 0, 0, 0, REDIS_7), &brace_name, 0),
            &brace_name,
        ),
        (
            "prefix-brace-refused",
            params(setup(0, 0, 0, 0, REDIS_7), &bad_prefix, 0),
            &bad_prefix,
        ),
        (
            "longest-name-prefix-token",
            EncodingParams {
                token: TokenChoice::Given,
                ..params(setup(3, 0, 0, 0, VALKEY_8_1), &long, 5)
            },
            &long,
        ),
        (
            "release-valkey9-delifeq-signal",
            params(setup(2, 1, 0, 0, VALKEY_9), &hostile, 0),
            &hostile,
        ),
        (
            "release-redis84-delex-unknown",
            EncodingParams {
                replies: [
                    ReplyKind::Error(ErrorKind::UnknownCommand),
                    ReplyKind::Success,
                    ReplyKind::Success,
                    ReplyKind::Success,
                    ReplyKind::Success,
                    ReplyKind::Success,
                ],
                ..params(setup(2, 0, 0, 0, REDIS_8_4), &plain, 0)
            },
            &plain,
        ),
        (
            "acquire-busy-blpop-whole-seconds",
            EncodingParams {
                replies: [
                    ReplyKind::Refuse,
                    ReplyKind::Success,
                    ReplyKind::Success,
                    ReplyKind::Success,
                    ReplyKind::Success,
                    ReplyKind::Success,
                ],
                ..params(setup(0, 0, 0, WAIT_5S, REDIS_5), &plain, 0)
            },
            &plain,
        ),
        (
            "ttl-zero-refused",
            EncodingParams {
                ttl: 0,
                ..params(setup(0, 0, 0, 0, REDIS_7), &plain, 0)
            },
            &plain,
        ),
        (
            "drift-exceeds-ttl-refused",
            EncodingParams {
                ttl: 10,
                fixed: 10,
                ..params(setup(0, 0, 0, 0, REDIS_7), &plain, 0)
            },
            &plain,
        ),
        (
            "signal-zero-refused",
            EncodingParams {
                wake_signal: Some(0),
                ..params(setup(0, 0, 0, 0, REDIS_7), &plain, 0)
            },
            &plain,
        ),
    ];
    for (name, p, tail) in seeds {
        write(dir, name, &encoded(&p, tail));
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, make) in [
        ("reply_bytes", reply_bytes as fn(&Path)),
        ("event_sequence", event_sequence),
        ("command_encoding", command_encoding),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("creatable corpus directory");
        make(&dir);
    }
}
