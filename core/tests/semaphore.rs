//! Semaphores driven by hand: the exact script calls each machine sends for a semaphore,
//! scripted and hostile replies in; and the semaphore scripts run on the model node (the
//! faithful re-implementation that `real_redis.rs` checks against a real server), step by
//! step: a permit per token up to the limit, reclaim at the permit key's expiry, one wake-up
//! per release, the limit and the kind of the name enforced.

mod common;

use common::{Sent, args, drain, ms, one_machine_on, token};
use distlock_core::{
    Acquire, ConfigError, Duration, Error, Extend, Flavor, Instant, KeyLayout, Lock, LockOptions,
    MAX_PERMITS, Protocol, Release, Released, ServerErrorKind, ServerInfo, Version, script,
};
use distlock_model::{Exec, ModelNode};
use proptest::prelude::*;

fn semaphore(limit: u32, options: LockOptions) -> Lock {
    Lock::semaphore(KeyLayout::default(), b"job", limit, options).unwrap()
}

/// A Valkey 9 node: it has every native compare command, so only the semaphore's choice
/// makes a request a script.
fn valkey9() -> [ServerInfo; 1] {
    [ServerInfo {
        protocol: Protocol::Resp2,
        flavor: Flavor::Valkey,
        version: Version::new(9, 0, 0),
    }]
}

fn only_call(sent: &[Sent]) -> &Vec<Vec<u8>> {
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].commands.len(), 1, "{sent:?}");
    &sent[0].commands[0]
}

#[test]
fn an_acquire_is_the_semaphore_script_with_the_limit_and_a_grant_is_a_lease() {
    let lock = semaphore(
        3,
        LockOptions {
            ttl: Duration::from_secs(10),
            fenced: true,
            ..Default::default()
        },
    );
    let t = token(1);
    let mut m: Acquire<1> =
        Acquire::new(&lock, t.clone(), &valkey9(), Duration::ZERO, ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    let call = only_call(&sent);
    assert_eq!(call[0], b"EVALSHA");
    assert_eq!(call[1], script::SEMAPHORE_ACQUIRE.sha);
    assert_eq!(
        call[2..6],
        args(&[
            "3",
            "distlock:{job}",
            "distlock:{job}:fence",
            "distlock:{job}:permit:"
        ])[..]
    );
    assert_eq!(call[6], t.for_attempt(1, false).as_bytes());
    assert_eq!(call[7..10], args(&["10000", "3", "1"])[..]);
    m.handle_input(0, b"*2\r\n:1\r\n:42\r\n", ms(5));
    let lease = m.poll_outcome().unwrap().unwrap();
    assert_eq!(lease.fence(), Some(42));
    assert_eq!(lease.token(), &t.for_attempt(1, false));
    assert_eq!(lease.valid_until(), ms(10_000 - 102));
}

#[test]
fn a_refused_acquire_waits_on_the_signal_until_the_soonest_permit_expires() {
    let lock = semaphore(2, LockOptions::default());
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        token(2),
        &valkey9(),
        Duration::from_secs(5),
        ms(0),
        0,
    )
    .unwrap();
    let _ = drain(&mut m, ms(0));
    // Both permits taken; the sooner one expires in 250 ms.
    m.handle_input(0, b"*2\r\n:0\r\n:250\r\n", ms(1));
    let sent = drain(&mut m, ms(1));
    let call = only_call(&sent);
    assert_eq!(
        call[..2],
        args(&["BLPOP", "distlock:{job}:permit-signal"])[..]
    );
    assert_eq!(call[2], b"0.251", "blocks until the soonest permit is gone");
    assert_eq!(sent[0].blocking, Some(Duration::from_millis(251)));
    // Woken: a full attempt follows, the same script again.
    m.handle_input(0, b"*2\r\n$14\r\ndistlock:{job}\r\n$1\r\n1\r\n", ms(100));
    let sent = drain(&mut m, ms(100));
    assert_eq!(only_call(&sent)[1], script::SEMAPHORE_ACQUIRE.sha);
}

#[test]
fn release_and_extend_are_the_semaphore_scripts_even_where_native_commands_exist() {
    let lock = semaphore(4, LockOptions::default());
    let t = token(3);
    let mut release: Release<1> = Release::new(&lock, t.clone(), &valkey9(), ms(0), 0).unwrap();
    let sent = drain(&mut release, ms(0));
    let call = only_call(&sent);
    assert_eq!(call[1], script::SEMAPHORE_RELEASE.sha);
    assert_eq!(
        call[2..6],
        args(&[
            "3",
            "distlock:{job}",
            "distlock:{job}:permit:",
            "distlock:{job}:permit-signal"
        ])[..]
    );
    assert_eq!(call[6], t.as_bytes());
    assert_eq!(call[7..9], args(&["1000", "4"])[..]);
    release.handle_input(0, b":0\r\n", ms(1));
    assert_eq!(release.poll_outcome(), Some(Ok(Released::Free)));

    let mut extend: Extend<1> = Extend::new(&lock, t.clone(), &valkey9(), ms(0), 0).unwrap();
    let sent = drain(&mut extend, ms(0));
    let call = only_call(&sent);
    assert_eq!(call[1], script::SEMAPHORE_EXTEND.sha);
    assert_eq!(
        call[2..5],
        args(&["2", "distlock:{job}", "distlock:{job}:permit:"])[..]
    );
    assert_eq!(call[5..7], [t.as_bytes().to_vec(), b"30000".to_vec()][..]);
    extend.handle_input(0, b":0\r\n", ms(1));
    assert_eq!(extend.poll_outcome(), Some(Err(Error::NotHeld)));
}

#[test]
fn another_limit_or_a_mutex_name_ends_the_acquire_at_once_with_a_typed_error() {
    let lock = semaphore(2, LockOptions::default());
    for (reply, kind) in [
        (
            &b"-WRONGLIMIT semaphore permits were taken with limit 3\r\n"[..],
            ServerErrorKind::WrongLimit,
        ),
        (
            b"-WRONGTYPE lock key: the name holds a string, not a semaphore\r\n",
            ServerErrorKind::WrongType,
        ),
    ] {
        let mut m: Acquire<1> = Acquire::new(
            &lock,
            token(4),
            &valkey9(),
            Duration::from_secs(60),
            ms(0),
            0,
        )
        .unwrap();
        let _ = drain(&mut m, ms(0));
        m.handle_input(0, reply, ms(1));
        match m.poll_outcome() {
            Some(Err(Error::Server { error, .. })) => assert_eq!(error.kind, kind),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_semaphore_is_refused_over_several_nodes_before_anything_is_sent() {
    let lock = semaphore(2, LockOptions::default());
    let three = vec![ServerInfo::default(); 3];
    assert_eq!(
        Acquire::<3>::new(&lock, token(5), &three, Duration::ZERO, ms(0), 0).err(),
        Some(ConfigError::SemaphoreUnsupported)
    );
    assert_eq!(
        Release::<3>::new(&lock, token(5), &three, ms(0), 0).err(),
        Some(ConfigError::SemaphoreUnsupported)
    );
    for limit in [0, MAX_PERMITS + 1] {
        assert_eq!(
            Lock::semaphore(KeyLayout::default(), b"job", limit, LockOptions::default()),
            Err(ConfigError::BadLimit { limit })
        );
    }
}

/// Feeds `replies` to one machine of a semaphore (`which`: 0 an acquire, 1 a release, 2 an
/// extend): no panic, and an outcome that is a lease (or an extend) is one the bytes granted.
/// Answers whether it ended granted.
fn semaphore_machine_on(replies: &[Vec<u8>], which: u8) -> Result<bool, TestCaseError> {
    one_machine_on(
        &semaphore(3, LockOptions::default()),
        &valkey9(),
        which,
        replies,
    )
}

proptest! {
    /// Whatever bytes come back, no machine of a semaphore panics, and an outcome that is a
    /// lease is one the bytes granted.
    #[test]
    fn no_reply_panics_a_semaphore_machine(
        replies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
        which in 0u8..3,
    ) {
        semaphore_machine_on(&replies, which)?;
    }
}

/// The property's oracle reads the replies as one stream: a grant cut in two (or after an
/// empty piece) is still a grant. Looking piece by piece, as it once did, failed here.
#[test]
fn a_grant_cut_across_pieces_is_a_grant_the_bytes_gave() {
    let cut = |pieces: &[&[u8]]| pieces.iter().map(|p| p.to_vec()).collect::<Vec<_>>();
    let acquire = cut(&[b"", b"*2\r\n", b":1\r\n:7\r\n"]);
    assert!(!acquire.iter().any(|r| r.starts_with(b"*2\r\n:1\r\n")));
    let ended = semaphore_machine_on(&acquire, 0);
    assert!(matches!(ended, Ok(true)), "{ended:?}");
    let extend = cut(&[b":", b"1\r\n"]);
    assert!(!extend.iter().any(|r| r.starts_with(b":1\r\n")));
    let ended = semaphore_machine_on(&extend, 2);
    assert!(matches!(ended, Ok(true)), "{ended:?}");
}

// ---- the scripts on the model node ----

const HOLDERS: &str = "distlock:{job}";
const PERMITS: &str = "distlock:{job}:permit:";
const SIGNAL: &str = "distlock:{job}:permit-signal";

fn run(node: &mut ModelNode, words: &[&str], now: u64) -> String {
    let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    match node.execute(&words, Instant::from_millis(now), Protocol::Resp2) {
        Exec::Reply(bytes) => String::from_utf8(bytes).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn acquire(node: &mut ModelNode, who: &str, limit: u32, ttl: u64, now: u64) -> String {
    let (ttl, limit) = (ttl.to_string(), limit.to_string());
    run(
        node,
        &[
            "EVAL",
            script::SEMAPHORE_ACQUIRE.source,
            "3",
            HOLDERS,
            "distlock:{job}:fence",
            PERMITS,
            who,
            &ttl,
            &limit,
            "1",
        ],
        now,
    )
}

fn release(node: &mut ModelNode, who: &str, limit: u32, now: u64) -> String {
    let limit = limit.to_string();
    run(
        node,
        &[
            "EVAL",
            script::SEMAPHORE_RELEASE.source,
            "3",
            HOLDERS,
            PERMITS,
            SIGNAL,
            who,
            "1000",
            &limit,
        ],
        now,
    )
}

fn extend(node: &mut ModelNode, who: &str, ttl: u64, now: u64) -> String {
    let ttl = ttl.to_string();
    run(
        node,
        &[
            "EVAL",
            script::SEMAPHORE_EXTEND.source,
            "2",
            HOLDERS,
            PERMITS,
            who,
            &ttl,
        ],
        now,
    )
}

fn granted(fence: u64) -> String {
    format!("*2\r\n:1\r\n:{fence}\r\n")
}

#[test]
fn permits_go_to_the_first_limit_tokens_and_a_release_frees_one_and_wakes_one() {
    let mut n = ModelNode::new();
    assert_eq!(
        acquire(&mut n, "token-a-0000000001", 2, 1000, 0),
        granted(1)
    );
    assert_eq!(
        acquire(&mut n, "token-b-0000000001", 2, 500, 10),
        granted(2)
    );
    // Full: the answer carries the soonest permit's remaining time (b's, 500 - 10 ms on).
    assert_eq!(
        acquire(&mut n, "token-c-0000000001", 2, 1000, 20),
        "*2\r\n:0\r\n:490\r\n"
    );
    assert_eq!(release(&mut n, "token-a-0000000001", 2, 30), ":0\r\n");
    assert_eq!(n.list_len(SIGNAL.as_bytes(), ms(30)), 1, "one wake-up");
    assert_eq!(release(&mut n, "token-a-0000000001", 2, 31), ":-1\r\n");
    assert_eq!(n.list_len(SIGNAL.as_bytes(), ms(31)), 1, "none for nothing");
    assert_eq!(
        acquire(&mut n, "token-c-0000000001", 2, 1000, 40),
        granted(3)
    );
    // Releases faster than wake-ups are each kept, up to the limit.
    assert_eq!(release(&mut n, "token-b-0000000001", 2, 50), ":0\r\n");
    assert_eq!(release(&mut n, "token-c-0000000001", 2, 51), ":0\r\n");
    assert_eq!(n.list_len(SIGNAL.as_bytes(), ms(51)), 2);
    assert!(n.sorted_set(HOLDERS.as_bytes(), ms(51)).is_empty());
}

#[test]
fn a_dead_holders_permit_is_free_the_moment_its_key_expires() {
    let mut n = ModelNode::new();
    assert_eq!(acquire(&mut n, "token-a-0000000001", 1, 100, 0), granted(1));
    // The key lives up to and including 100 ms: still counted then.
    assert_eq!(
        acquire(&mut n, "token-b-0000000001", 1, 100, 100),
        "*2\r\n:0\r\n:0\r\n"
    );
    assert_eq!(
        acquire(&mut n, "token-b-0000000001", 1, 100, 101),
        granted(2)
    );
    assert_eq!(
        n.sorted_set(HOLDERS.as_bytes(), ms(101)),
        vec![b"token-b-0000000001".to_vec()],
        "the dead holder left the set"
    );
    // An extend moves the permit's expiry, and only its own token's.
    assert_eq!(extend(&mut n, "token-b-0000000001", 1000, 150), ":1\r\n");
    assert_eq!(extend(&mut n, "token-a-0000000001", 1000, 150), ":0\r\n");
    assert_eq!(
        acquire(&mut n, "token-c-0000000001", 1, 100, 1100),
        "*2\r\n:0\r\n:50\r\n"
    );
    // The set outlives every permit it names.
    assert!(n.expiry(HOLDERS.as_bytes(), ms(1150)).is_some());
    assert_eq!(extend(&mut n, "token-b-0000000001", 1000, 1151), ":0\r\n");
}

#[test]
fn another_limit_is_refused_while_a_permit_lives_and_a_mutex_name_always() {
    let mut n = ModelNode::new();
    assert_eq!(acquire(&mut n, "token-a-0000000001", 2, 100, 0), granted(1));
    assert_eq!(
        acquire(&mut n, "token-b-0000000001", 3, 100, 10),
        "-WRONGLIMIT semaphore permits were taken with limit 2\r\n"
    );
    // Once the permit is gone, a new limit starts.
    assert_eq!(
        acquire(&mut n, "token-b-0000000001", 3, 100, 101),
        granted(2)
    );

    let mut m = ModelNode::new();
    assert_eq!(
        run(&mut m, &["SET", HOLDERS, "someone", "PX", "1000"], 0),
        "+OK\r\n"
    );
    let wrong = "-WRONGTYPE lock key: the name holds a string, not a semaphore\r\n";
    assert_eq!(acquire(&mut m, "token-a-0000000001", 2, 100, 1), wrong);
    assert_eq!(release(&mut m, "token-a-0000000001", 2, 1), wrong);
    assert_eq!(extend(&mut m, "token-a-0000000001", 100, 1), wrong);
    assert_eq!(
        m.value(HOLDERS.as_bytes(), ms(1)),
        Some(&b"someone"[..]),
        "untouched"
    );
}

proptest! {
    /// Any interleaving of acquires, releases, extends and time: the set never names more
    /// than `limit` live permits, every live permit key is in the set, and an acquire is
    /// refused only when `limit` permit keys live.
    #[test]
    fn the_scripts_never_give_out_more_than_the_limit(
        limit in 1u32..4,
        steps in proptest::collection::vec((0u8..3, 0usize..6, 0u64..120, 1u64..300), 1..80),
    ) {
        let mut n = ModelNode::new();
        let mut now = 0;
        let who = |i: usize| format!("token-{i}-0000000001");
        for (op, i, pause, ttl) in steps {
            now += pause;
            let live = |n: &ModelNode, now: u64| -> usize {
                (0..6).filter(|&j| n.value(format!("{PERMITS}{}", who(j)).as_bytes(), ms(now)).is_some()).count()
            };
            match op {
                0 => {
                    let before = live(&n, now);
                    let reply = acquire(&mut n, &who(i), limit, ttl, now);
                    if reply.starts_with("*2\r\n:0\r\n") {
                        prop_assert!(before >= limit as usize, "refused with {before} of {limit} live");
                    } else {
                        prop_assert!(reply.starts_with("*2\r\n:1\r\n"), "{reply}");
                    }
                }
                1 => { let _ = release(&mut n, &who(i), limit, now); }
                _ => { let _ = extend(&mut n, &who(i), ttl, now); }
            }
            prop_assert!(live(&n, now) <= limit as usize);
            let members = n.sorted_set(HOLDERS.as_bytes(), ms(now));
            for j in 0..6 {
                if n.value(format!("{PERMITS}{}", who(j)).as_bytes(), ms(now)).is_some() {
                    prop_assert!(members.contains(&who(j).into_bytes()), "uncounted permit");
                }
            }
        }
    }
}
