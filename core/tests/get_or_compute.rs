//! Get-or-compute's machines driven by hand: the exact script calls [`GetOrLock`] and
//! [`FinishCompute`] send, every reply shape in (a value, the lock, a holder's TTL, a
//! wake-up, `NOSCRIPT`, errors, silence, a lost connection) and hostile bytes (typed errors,
//! never a panic), the waiter's block timed by the holder's TTL and the time left, and the
//! set-ups refused before anything is sent.

mod common;

use common::{args, ms, plain, servers, token};
use distlock_core::{
    ConfigError, Driven, Duration, Error, Fetched, FinishCompute, Flavor, GetOrLock, Instant,
    KeyLayout, Lock, LockOptions, MAX_VALUE_LEN, NodeFailure, Protocol, ProtocolError, Scripts,
    ServerErrorKind, ServerInfo, Version, script,
};
use proptest::prelude::*;
use redis_protocol::resp2::{decode::decode, types::OwnedFrame};

type Command = Vec<Vec<u8>>;

fn lock() -> Lock {
    Lock::new(KeyLayout::default(), b"job", LockOptions::default()).unwrap()
}

/// Every transmit, decoded, with its blocking hint.
fn drain(m: &mut impl Driven, now: Instant) -> Vec<(Command, Option<Duration>)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while let Some(tx) = m.poll_transmit(now, &mut buf).unwrap() {
        let (frame, used) = decode(&buf[..tx.len]).unwrap().expect("a whole command");
        assert_eq!(used, tx.len, "one command per transmit");
        let OwnedFrame::Array(items) = frame else {
            panic!("not an array: {frame:?}")
        };
        let command = items
            .into_iter()
            .map(|item| match item {
                OwnedFrame::BulkString(b) => b,
                other => panic!("not a bulk string: {other:?}"),
            })
            .collect();
        out.push((command, tx.blocking));
    }
    out
}

fn one(m: &mut impl Driven, now: Instant) -> (Command, Option<Duration>) {
    let mut sent = drain(m, now);
    assert_eq!(sent.len(), 1, "{sent:?}");
    sent.remove(0)
}

fn get_or_lock_call(by: &str) -> Command {
    let sha = std::str::from_utf8(&script::GET_OR_LOCK.sha).unwrap();
    args(&[
        "EVALSHA",
        sha,
        "3",
        "distlock:{job}:value",
        "distlock:{job}",
        "distlock:{job}:value:waiters",
        by,
        "30000",
        "1000",
    ])
}

/// A Redis 7 node: fractional `BLPOP` timeouts.
fn redis7() -> [ServerInfo; 1] {
    [ServerInfo {
        protocol: Protocol::Resp2,
        flavor: Flavor::Redis,
        version: Version::new(7, 2, 0),
    }]
}

fn fetch(wait: u64) -> GetOrLock {
    GetOrLock::new(
        &lock(),
        token(1),
        &redis7(),
        Duration::from_millis(wait),
        ms(0),
    )
    .unwrap()
}

#[test]
fn a_present_value_is_returned_from_one_script_call() {
    let mut m = fetch(5_000);
    let (sent, blocking) = one(&mut m, ms(0));
    assert_eq!(sent, get_or_lock_call(token(1).as_str()));
    assert_eq!(blocking, None);
    m.handle_input(0, b"*2\r\n:2\r\n$11\r\ncached", ms(1));
    assert_eq!(m.poll_outcome(), None, "a split reply is awaited whole");
    m.handle_input(0, b" data\r\n", ms(1));
    assert_eq!(
        m.poll_outcome(),
        Some(Ok(Fetched::Value(b"cached data".to_vec())))
    );
    assert_eq!(m.owed_replies(0), Some(0));
}

#[test]
fn a_missing_value_gives_the_lock_valid_from_the_script_call() {
    let mut m = fetch(5_000);
    drain(&mut m, ms(10));
    m.handle_input(0, b"*2\r\n:1\r\n:0\r\n", ms(12));
    let Some(Ok(Fetched::Computing(lease))) = m.poll_outcome() else {
        panic!("the lock")
    };
    assert_eq!(lease.token(), &token(1));
    assert_eq!(lease.fence(), None);
    assert_eq!(lease.valid_until(), lock().valid_until(ms(0)));
}

#[test]
fn a_waiter_blocks_for_the_shorter_of_the_holders_ttl_and_the_wait_then_asks_again() {
    let mut m = fetch(5_000);
    drain(&mut m, ms(0));
    // The holder's key lives 1.2 s more: the block ends then at the latest.
    m.handle_input(0, b"*2\r\n:0\r\n:1200\r\n", ms(1));
    let (sent, blocking) = one(&mut m, ms(1));
    assert_eq!(sent, args(&["BLPOP", "distlock:{job}:value:wake", "1.200"]));
    assert_eq!(blocking, Some(Duration::from_millis(1200)));
    // Woken by a store: the script again, which now finds the value.
    m.handle_input(
        0,
        b"*2\r\n$25\r\ndistlock:{job}:value:wake\r\n$1\r\n1\r\n",
        ms(300),
    );
    assert_eq!(one(&mut m, ms(300)).0, get_or_lock_call(token(1).as_str()));
    // Another holder now, whose key outlives the wait: the block ends at the wait's end.
    m.handle_input(0, b"*2\r\n:0\r\n:30000\r\n", ms(301));
    let (sent, blocking) = one(&mut m, ms(301));
    assert_eq!(sent, args(&["BLPOP", "distlock:{job}:value:wake", "4.699"]));
    assert_eq!(blocking, Some(Duration::from_millis(4699)));
    // The block times out (nil): one last look, still computing: the wait ran out.
    m.handle_input(0, b"*-1\r\n", ms(5_000));
    drain(&mut m, ms(5_000));
    m.handle_input(0, b"*2\r\n:0\r\n:25300\r\n", ms(5_001));
    assert_eq!(
        m.poll_outcome(),
        Some(Err(Error::NotAcquired {
            attempts: 3,
            holder_ttl: Some(Duration::from_millis(25_300)),
        }))
    );
}

#[test]
fn a_try_asks_once_and_a_key_without_expiry_is_waited_on_for_the_wait() {
    let mut m = fetch(0);
    drain(&mut m, ms(0));
    m.handle_input(0, b"*2\r\n:0\r\n:-1\r\n", ms(1));
    assert_eq!(
        m.poll_outcome(),
        Some(Err(Error::NotAcquired {
            attempts: 1,
            holder_ttl: None
        }))
    );
    let mut m = fetch(800);
    drain(&mut m, ms(0));
    m.handle_input(0, b"*2\r\n:0\r\n:-1\r\n", ms(0));
    assert_eq!(one(&mut m, ms(0)).1, Some(Duration::from_millis(800)));
}

#[test]
fn a_server_without_fractional_timeouts_blocks_whole_seconds() {
    let old = [ServerInfo {
        version: Version::new(5, 0, 0),
        ..ServerInfo::default()
    }];
    let mut m = GetOrLock::new(&lock(), token(1), &old, Duration::from_secs(5), ms(0)).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"*2\r\n:0\r\n:1200\r\n", ms(0));
    let (sent, blocking) = one(&mut m, ms(0));
    assert_eq!(sent, args(&["BLPOP", "distlock:{job}:value:wake", "2"]));
    assert_eq!(blocking, Some(Duration::from_secs(2)));
}

#[test]
fn noscript_is_answered_by_the_source_once() {
    let mut m = fetch(5_000);
    drain(&mut m, ms(0));
    m.handle_input(0, b"-NOSCRIPT No matching script\r\n", ms(1));
    let (sent, _) = one(&mut m, ms(1));
    assert_eq!(sent[0], b"EVAL");
    assert_eq!(sent[1], script::GET_OR_LOCK.source.as_bytes());
    m.handle_input(0, b"-NOSCRIPT again\r\n", ms(2));
    assert!(matches!(
        m.poll_outcome(),
        Some(Err(Error::Server { node: 0, error })) if error.kind == ServerErrorKind::NoScript
    ));
}

#[test]
fn error_replies_silence_and_lost_connections_are_typed() {
    let mut m = fetch(5_000);
    drain(&mut m, ms(0));
    m.handle_input(0, b"-WRONGTYPE Operation against a key\r\n", ms(1));
    assert!(matches!(
        m.poll_outcome(),
        Some(Err(Error::Server { node: 0, error })) if error.kind == ServerErrorKind::WrongType
    ));

    let mut m = fetch(5_000);
    drain(&mut m, ms(0));
    let deadline = m.poll_timeout().unwrap();
    assert_eq!(deadline, ms(1_000), "one request timeout");
    m.handle_timeout(deadline);
    assert!(matches!(
        m.poll_outcome(),
        Some(Err(Error::QuorumLost {
            last_failure: Some(NodeFailure::Timeout),
            ..
        }))
    ));
    assert_eq!(
        m.owed_replies(0),
        None,
        "the late reply would be out of step"
    );

    let mut m = fetch(5_000);
    drain(&mut m, ms(0));
    m.handle_input(0, b"*2\r\n:0\r\n:9000\r\n", ms(1));
    let (_, blocking) = one(&mut m, ms(1));
    // The block's reply is awaited for the block plus a request timeout.
    assert_eq!(m.poll_timeout(), Some(ms(1 + 4_999 + 1_000)));
    assert_eq!(blocking, Some(Duration::from_millis(4_999)));
    m.handle_disconnect(0, ms(2));
    assert!(matches!(
        m.poll_outcome(),
        Some(Err(Error::QuorumLost {
            last_failure: Some(NodeFailure::Disconnected),
            ..
        }))
    ));
}

#[test]
fn replies_of_the_wrong_shape_are_protocol_errors() {
    let hostile: [&[u8]; 9] = [
        b"*2\r\n:3\r\n:0\r\n",
        b"*2\r\n:1\r\n:7\r\n",
        b"*2\r\n:2\r\n:5\r\n",
        b"*3\r\n:2\r\n$1\r\nv\r\n:0\r\n",
        b":1\r\n",
        b"$2\r\nok\r\n",
        b"+OK\r\n",
        b"*-1\r\n",
        b"*0\r\n",
    ];
    for reply in hostile {
        let mut m = fetch(5_000);
        drain(&mut m, ms(0));
        m.handle_input(0, reply, ms(1));
        assert_eq!(
            m.poll_outcome(),
            Some(Err(Error::Protocol {
                node: 0,
                error: ProtocolError::UnexpectedReply
            })),
            "{}",
            String::from_utf8_lossy(reply)
        );
    }
    let mut m = fetch(5_000);
    drain(&mut m, ms(0));
    m.handle_input(0, b":1\r\n:2\r\n", ms(1));
    assert!(
        matches!(m.poll_outcome(), Some(Err(Error::Protocol { .. }))),
        "an unsolicited reply"
    );
}

proptest! {
    /// Any bytes, in any split, after any of the machine's requests: never a panic, and an
    /// outcome is a value, the lock, or a typed error.
    #[test]
    fn arbitrary_replies_never_panic(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6),
        wait in 0u64..3_000,
    ) {
        let mut m = fetch(wait);
        let mut now = 0;
        for chunk in &chunks {
            drain(&mut m, ms(now));
            m.handle_input(0, chunk, ms(now));
            now += 7;
            if let Some(at) = m.poll_timeout().filter(|_| now % 3 == 0) {
                m.handle_timeout(at);
            }
        }
        let mut finish = FinishCompute::store(&lock(), &token(1), &plain(), b"v", Duration::from_secs(1), ms(0)).unwrap();
        drain(&mut finish, ms(0));
        for chunk in &chunks {
            finish.handle_input(0, chunk, ms(1));
        }
        let _ = (m.poll_outcome(), finish.poll_outcome());
    }
}

#[test]
fn a_store_sends_the_value_and_counts_the_wake_ups() {
    let mut m = FinishCompute::store(
        &lock(),
        &token(1),
        &plain(),
        b"\x00binary\r\n",
        Duration::from_secs(60),
        ms(0),
    )
    .unwrap();
    let (sent, blocking) = one(&mut m, ms(0));
    let sha = std::str::from_utf8(&script::FINISH_COMPUTE.sha).unwrap();
    let mut expected = args(&[
        "EVALSHA",
        sha,
        "4",
        "distlock:{job}",
        "distlock:{job}:value",
        "distlock:{job}:value:waiters",
        "distlock:{job}:value:wake",
        token(1).as_str(),
        "1",
        "",
        "60000",
        "1024",
        "2000",
    ]);
    expected[9] = b"\x00binary\r\n".to_vec();
    assert_eq!(sent, expected);
    assert_eq!(blocking, None);
    m.handle_input(0, b":7\r\n", ms(1));
    assert_eq!(m.poll_outcome(), Some(Ok(7)));

    let mut lost = FinishCompute::store(
        &lock(),
        &token(1),
        &plain(),
        b"v",
        Duration::from_secs(1),
        ms(0),
    )
    .unwrap();
    drain(&mut lost, ms(0));
    lost.handle_input(0, b":-1\r\n", ms(1));
    assert_eq!(lost.poll_outcome(), Some(Err(Error::NotHeld)));

    let mut odd = FinishCompute::store(
        &lock(),
        &token(1),
        &plain(),
        b"v",
        Duration::from_secs(1),
        ms(0),
    )
    .unwrap();
    drain(&mut odd, ms(0));
    odd.handle_input(0, b":-2\r\n", ms(1));
    assert!(matches!(
        odd.poll_outcome(),
        Some(Err(Error::Protocol { .. }))
    ));
}

#[test]
fn giving_up_stores_nothing_and_resends_by_source_after_noscript() {
    let mut m = FinishCompute::abandon(&lock(), &token(1), &plain(), ms(0)).unwrap();
    let (sent, _) = one(&mut m, ms(0));
    assert_eq!(sent[8], b"0", "store off");
    assert_eq!(sent[9], b"", "no value");
    m.handle_input(0, b"-NOSCRIPT No matching script\r\n", ms(1));
    let (again, _) = one(&mut m, ms(1));
    assert_eq!(again[0], b"EVAL");
    assert_eq!(again[1], script::FINISH_COMPUTE.source.as_bytes());
    assert_eq!(&again[3..], &sent[3..]);
    m.handle_input(0, b":1\r\n", ms(2));
    assert_eq!(m.poll_outcome(), Some(Ok(1)));
}

#[test]
fn set_ups_that_cannot_work_are_refused_before_anything_is_sent() {
    let layout = KeyLayout::default();
    let with = |options: LockOptions| Lock::new(layout.clone(), b"job", options).unwrap();
    let refused = [
        with(LockOptions {
            fenced: true,
            ..LockOptions::default()
        }),
        with(LockOptions {
            reentrant: true,
            ..LockOptions::default()
        }),
        with(LockOptions {
            fair: true,
            ..LockOptions::default()
        }),
        with(LockOptions {
            scripts: Scripts::Never,
            ..LockOptions::default()
        }),
        Lock::new(KeyLayout::redis_py(), b"job", LockOptions::default()).unwrap(),
        Lock::semaphore(layout.clone(), b"job", 2, LockOptions::default()).unwrap(),
        Lock::multi(layout.clone(), &[b"a", b"b"], LockOptions::default()).unwrap(),
    ];
    for lock in &refused {
        assert_eq!(
            GetOrLock::new(lock, token(1), &plain(), Duration::ZERO, ms(0)).unwrap_err(),
            ConfigError::ComputeUnsupported,
            "{lock:?}"
        );
        assert_eq!(
            FinishCompute::abandon(lock, &token(1), &plain(), ms(0)).unwrap_err(),
            ConfigError::ComputeUnsupported
        );
    }
    // Redlock: a value stored on a majority is not a value.
    assert_eq!(
        GetOrLock::new(&lock(), token(1), &servers(3), Duration::ZERO, ms(0)).unwrap_err(),
        ConfigError::ComputeUnsupported
    );
    let long = vec![0u8; MAX_VALUE_LEN + 1];
    assert_eq!(
        FinishCompute::store(
            &lock(),
            &token(1),
            &plain(),
            &long,
            Duration::from_secs(1),
            ms(0)
        )
        .unwrap_err(),
        ConfigError::ValueTooLong { len: long.len() }
    );
    assert_eq!(
        FinishCompute::store(&lock(), &token(1), &plain(), b"v", Duration::ZERO, ms(0))
            .unwrap_err(),
        ConfigError::BadTtl
    );
}
