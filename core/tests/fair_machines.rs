//! Fair mode driven by hand: the exact batches a waiter sends, scripted replies in; and the
//! fair scripts run on the model node, step by step.
//!
//! Machine side: the first cycle is the script alone, later ones block on the waiter's own
//! wake-up list; the validity of a grant counts from `min(reply, sent + extra)`; a try-lock
//! never queues; a lost cycle ends the attempt with the fair rollback; fair mode is refused
//! where it cannot work. Script side (the model's faithful re-implementation, which the
//! simulator and `real_redis.rs` check against a real server): a release hands the lock to
//! the first live waiter and wakes only it; dead waiters are skipped; a try-lock never takes
//! a lock live waiters queue for.

mod common;

use common::{Sent, args, drain, lock_with, ms, plain, token};
use distlock_core::{
    Acquire, ConfigError, Duration, Error, Flavor, Instant, KeyLayout, Lock, LockOptions, Protocol,
    Release, ServerInfo, Version, script,
};
use distlock_model::{Exec, ModelNode};
use proptest::prelude::*;

fn fair(options: LockOptions) -> Lock {
    lock_with(LockOptions {
        fair: true,
        ..options
    })
}

fn sha(s: &script::Script) -> Vec<u8> {
    s.sha.to_vec()
}

/// The script call of a sent batch (its last command).
fn script_call(sent: &Sent) -> &Vec<Vec<u8>> {
    sent.commands.last().expect("a command")
}

/// A rollback is the fair release script sent by its source: its reply is abandoned with the
/// attempt, so a `NOSCRIPT` would go unread and leave the key standing.
fn assert_fair_rollback(call: &[Vec<u8>]) {
    assert_eq!(call[0], b"EVAL");
    assert_eq!(call[1], script::FAIR_RELEASE.source.as_bytes());
}

/// ARGV[i] (1-based, as in Lua) of a fair acquire call.
fn argv(call: &[Vec<u8>], i: usize) -> &str {
    std::str::from_utf8(&call[3 + 6 + i - 1]).unwrap()
}

fn granted(holds: u64, fence: u64) -> Vec<u8> {
    format!("*2\r\n:{holds}\r\n:{fence}\r\n").into_bytes()
}

fn busy(ttl: u64) -> Vec<u8> {
    format!("*2\r\n:0\r\n:{ttl}\r\n").into_bytes()
}

fn redis7() -> [ServerInfo; 1] {
    [ServerInfo {
        protocol: Protocol::Resp2,
        flavor: Flavor::Redis,
        version: Version::new(7, 2, 0),
    }]
}

#[test]
fn first_cycle_is_the_script_alone_then_each_blocks_on_its_own_wake_list() {
    let lock = fair(LockOptions {
        ttl: Duration::from_secs(10),
        ..Default::default()
    });
    let t = token(1);
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        t.clone(),
        &redis7(),
        Duration::from_secs(5),
        ms(0),
        0,
    )
    .unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].commands.len(),
        1,
        "no BLPOP before the first script"
    );
    assert_eq!(sent[0].blocking, None);
    let call = script_call(&sent[0]);
    assert_eq!(call[0], b"EVALSHA");
    assert_eq!(call[1], sha(&script::FAIR_ACQUIRE));
    assert_eq!(
        call[2..9],
        args(&[
            "6",
            "distlock:{job}",
            "distlock:{job}:fence",
            "distlock:{job}:holds",
            "distlock:{job}:queue",
            "distlock:{job}:wake:",
            "distlock:{job}:alive:",
        ])[..]
    );
    let attempt = t.for_attempt(1, false);
    assert_eq!(argv(call, 1), attempt.as_str());
    assert_eq!(argv(call, 2), "10000");
    assert_eq!(argv(call, 3), "0", "no extra life without a wait");
    assert_eq!(argv(call, 7), "1000", "liveness R = 1 s");
    assert_eq!(argv(call, 8), "1", "a waiter queues");

    m.handle_input(0, &busy(9000), ms(2));
    let sent = drain(&mut m, ms(2));
    assert_eq!(sent.len(), 1, "the next cycle follows at once");
    assert_eq!(sent[0].blocking, Some(Duration::from_millis(500)));
    let wake = format!("distlock:{{job}}:wake:{}", attempt.as_str());
    assert_eq!(sent[0].commands[0], args(&["BLPOP", &wake, "0.500"]));
    let call = script_call(&sent[0]);
    assert_eq!(
        argv(call, 1),
        attempt.as_str(),
        "the same token keeps its place"
    );
    assert_eq!(argv(call, 3), "500", "the key lives the block span longer");
    assert_eq!(
        m.poll_timeout(),
        Some(ms(2 + 1000 + 500)),
        "the reply deadline covers the block"
    );
}

#[test]
fn a_handed_off_lock_loses_no_validity_to_the_wait() {
    let lock = fair(LockOptions {
        ttl: Duration::from_secs(10),
        ..Default::default()
    });
    let t = token(2);
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        t.clone(),
        &redis7(),
        Duration::from_secs(5),
        ms(0),
        0,
    )
    .unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, &busy(9000), ms(1));
    drain(&mut m, ms(1));
    // Woken 100 ms into the block: BLPOP's element, then the confirm.
    let wake = format!("distlock:{{job}}:wake:{}", t.as_str());
    let reply = [
        format!("*2\r\n${}\r\n{wake}\r\n$1\r\n1\r\n", wake.len()).into_bytes(),
        granted(1, 0),
    ]
    .concat();
    m.handle_input(0, &reply, ms(101));
    let lease = m.poll_outcome().unwrap().unwrap();
    // t0 = min(reply 101, sent 1 + extra 500); drift over ttl + extra: 10.5 s * 1% + 2 ms.
    assert_eq!(lease.started(), ms(101));
    assert_eq!(lease.valid_until(), ms(101 + 10_000 - 107));
    assert_eq!(lease.token(), &t);

    // A reply arriving after the block span counts from sent + extra.
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        t.clone(),
        &redis7(),
        Duration::from_secs(5),
        ms(0),
        0,
    )
    .unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, &busy(9000), ms(1));
    drain(&mut m, ms(1));
    m.handle_input(0, &[b"*-1\r\n".to_vec(), granted(1, 0)].concat(), ms(900));
    let lease = m.poll_outcome().unwrap().unwrap();
    assert_eq!(lease.started(), ms(501));
}

#[test]
fn a_try_lock_never_queues_and_rolls_nothing_back() {
    let lock = fair(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(3), &redis7(), Duration::ZERO, ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(argv(script_call(&sent[0]), 8), "0");
    m.handle_input(0, &busy(0), ms(1));
    assert_eq!(
        m.poll_outcome(),
        Some(Err(Error::NotAcquired {
            attempts: 1,
            holder_ttl: None
        }))
    );
    assert!(drain(&mut m, ms(1)).is_empty());
}

#[test]
fn a_lost_cycle_ends_the_attempt_with_the_fair_rollback() {
    let lock = fair(LockOptions::default());
    let t = token(4);
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        t.clone(),
        &redis7(),
        Duration::from_secs(30),
        ms(0),
        7,
    )
    .unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, &busy(5000), ms(1));
    drain(&mut m, ms(1));
    // No reply within block + request timeout.
    m.handle_timeout(ms(1 + 1500));
    let sent = drain(&mut m, ms(1501));
    assert_eq!(sent.len(), 1);
    let call = script_call(&sent[0]);
    assert_fair_rollback(call);
    assert_eq!(call[3 + 5], t.as_bytes(), "this attempt's token leaves");
    assert_eq!(m.poll_outcome(), None, "the wait goes on");
    let at = m.poll_timeout().expect("a backoff timer");
    m.handle_timeout(at);
    let sent = drain(&mut m, at);
    let call = script_call(&sent[0]);
    assert_eq!(call[1], sha(&script::FAIR_ACQUIRE));
    assert_eq!(
        argv(call, 1),
        t.for_attempt(2, false).as_str(),
        "a new token, at the back of the queue"
    );
    assert_eq!(
        sent[0].commands.len(),
        1,
        "a new attempt starts script-only"
    );
}

#[test]
fn giving_up_or_cancelling_leaves_the_queue() {
    let lock = fair(LockOptions::default());
    let t = token(5);
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        t.clone(),
        &redis7(),
        Duration::from_millis(200),
        ms(0),
        0,
    )
    .unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, &busy(5000), ms(1));
    let sent = drain(&mut m, ms(1));
    assert_eq!(sent[0].blocking, Some(Duration::from_millis(199)));
    m.handle_input(0, &[b"*-1\r\n".to_vec(), busy(4800)].concat(), ms(200));
    let sent = drain(&mut m, ms(200));
    assert_fair_rollback(script_call(&sent[0]));
    assert!(matches!(
        m.poll_outcome(),
        Some(Err(Error::NotAcquired { attempts: 2, .. }))
    ));

    let mut m: Acquire<1> =
        Acquire::new(&lock, t, &redis7(), Duration::from_secs(5), ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.cancel(ms(1));
    let sent = drain(&mut m, ms(1));
    assert_fair_rollback(script_call(&sent[0]));
    assert_eq!(m.poll_outcome(), Some(Err(Error::Cancelled)));
}

#[test]
fn noscript_resends_the_cycle_without_blocking_again() {
    let lock = fair(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(6), &redis7(), Duration::from_secs(5), ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, &busy(5000), ms(1));
    drain(&mut m, ms(1));
    m.handle_input(
        0,
        b"*-1\r\n-NOSCRIPT No matching script. Please use EVAL.\r\n",
        ms(501),
    );
    let sent = drain(&mut m, ms(501));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].commands.len(), 1, "no second BLPOP");
    let call = script_call(&sent[0]);
    assert_eq!(call[0], b"EVAL");
    assert_eq!(
        argv(call, 3),
        "500",
        "the extra life stays: the validity claim holds"
    );
    m.handle_input(0, &granted(1, 0), ms(502));
    let lease = m.poll_outcome().unwrap().unwrap();
    assert_eq!(lease.started(), ms(501));
}

#[test]
fn fair_mode_is_single_node_and_tagged_only() {
    let options = LockOptions {
        fair: true,
        ..Default::default()
    };
    let lock = fair(LockOptions::default());
    let three = vec![ServerInfo::default(); 3];
    assert_eq!(
        Acquire::<3>::new(&lock, token(7), &three, Duration::ZERO, ms(0), 0).err(),
        Some(ConfigError::FairUnsupported)
    );
    assert_eq!(
        Release::<3>::new(&lock, token(7), &three, ms(0), 0).err(),
        Some(ConfigError::FairUnsupported)
    );
    for layout in [KeyLayout::redis_py(), KeyLayout::python_redis_lock()] {
        assert_eq!(
            Lock::new(layout, b"job", options),
            Err(ConfigError::FairUnsupported)
        );
    }
    assert!(Acquire::<1>::new(&lock, token(7), &plain(), Duration::ZERO, ms(0), 0).is_ok());
}

#[test]
fn a_fair_release_is_the_hand_off_script_even_where_native_deletes_exist() {
    let lock = fair(LockOptions::default());
    let valkey9 = [ServerInfo {
        protocol: Protocol::Resp2,
        flavor: Flavor::Valkey,
        version: Version::new(9, 0, 0),
    }];
    let t = token(8);
    let mut m: Release<1> = Release::new(&lock, t.clone(), &valkey9, ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    let call = script_call(&sent[0]);
    assert_eq!(call[1], sha(&script::FAIR_RELEASE));
    assert_eq!(
        call[2..8],
        args(&[
            "5",
            "distlock:{job}",
            "distlock:{job}:holds",
            "distlock:{job}:queue",
            "distlock:{job}:wake:",
            "distlock:{job}:alive:",
        ])[..]
    );
    assert_eq!(call[8], t.as_bytes());
    assert_eq!(call[10], b"1000", "the hand-off cap is R");
}

// ---- the scripts on the model node ----

const LOCK: &str = "distlock:{q}";

fn run(node: &mut ModelNode, words: &[&str], now: u64) -> String {
    let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    match node.execute(&words, Instant::from_millis(now), Protocol::Resp2) {
        Exec::Reply(bytes) => String::from_utf8(bytes).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// A waiter's cycle: the fair acquire script for `who` (liveness 1000 ms).
fn cycle(node: &mut ModelNode, who: &str, enqueue: bool, now: u64) -> String {
    run(
        node,
        &[
            "EVAL",
            script::FAIR_ACQUIRE.source,
            "6",
            LOCK,
            "distlock:{q}:fence",
            "distlock:{q}:holds",
            "distlock:{q}:queue",
            "distlock:{q}:wake:",
            "distlock:{q}:alive:",
            who,
            "10000",
            "0",
            "1",
            "0",
            who,
            "1000",
            if enqueue { "1" } else { "0" },
        ],
        now,
    )
}

fn release(node: &mut ModelNode, who: &str, now: u64) -> String {
    run(
        node,
        &[
            "EVAL",
            script::FAIR_RELEASE.source,
            "5",
            LOCK,
            "distlock:{q}:holds",
            "distlock:{q}:queue",
            "distlock:{q}:wake:",
            "distlock:{q}:alive:",
            who,
            "0",
            "1000",
        ],
        now,
    )
}

fn holder(node: &ModelNode, now: u64) -> Option<String> {
    node.value(LOCK.as_bytes(), Instant::from_millis(now))
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

fn woken(node: &ModelNode, who: &str, now: u64) -> bool {
    node.list_len(
        format!("distlock:{{q}}:wake:{who}").as_bytes(),
        Instant::from_millis(now),
    ) > 0
}

const A: &str = "aaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbb";
const C: &str = "cccccccccccccccc";
const D: &str = "dddddddddddddddd";

#[test]
fn a_release_hands_the_lock_to_the_first_live_waiter_and_wakes_only_it() {
    let mut n = ModelNode::new();
    assert_eq!(cycle(&mut n, A, true, 0), "*2\r\n:1\r\n:1\r\n");
    assert!(cycle(&mut n, B, true, 1).starts_with("*2\r\n:0\r\n"));
    assert!(cycle(&mut n, C, true, 2).starts_with("*2\r\n:0\r\n"));
    assert_eq!(release(&mut n, A, 10), ":0\r\n");
    assert_eq!(holder(&n, 10).as_deref(), Some(B), "handed to the head");
    assert!(
        woken(&n, B, 10) && !woken(&n, C, 10),
        "only the head is woken"
    );
    // The hand-off lease is the head's remaining liveness (1000 ms from t = 1).
    assert_eq!(
        n.expiry(LOCK.as_bytes(), Instant::from_millis(10)),
        Some(Some(Instant::from_millis(1001)))
    );
    // A newcomer's try-lock and C's cycle find it held; B confirms with a full TTL and fence.
    assert!(cycle(&mut n, D, false, 11).starts_with("*2\r\n:0\r\n"));
    assert!(cycle(&mut n, C, true, 12).starts_with("*2\r\n:0\r\n"));
    assert_eq!(cycle(&mut n, B, true, 13), "*2\r\n:1\r\n:2\r\n");
    assert_eq!(
        n.expiry(LOCK.as_bytes(), Instant::from_millis(13)),
        Some(Some(Instant::from_millis(10_013)))
    );
    assert_eq!(
        n.sorted_set(b"distlock:{q}:queue", Instant::from_millis(13)),
        vec![C.as_bytes().to_vec()]
    );
}

#[test]
fn dead_waiters_are_skipped_and_a_dead_hand_off_expires() {
    let mut n = ModelNode::new();
    cycle(&mut n, A, true, 0);
    cycle(&mut n, B, true, 0); // B dies: never cycles again.
    cycle(&mut n, C, true, 600);
    // At 1500 B's liveness (until 1000) is gone, C's (until 1600) is not: C gets it.
    assert_eq!(release(&mut n, A, 1500), ":0\r\n");
    assert_eq!(holder(&n, 1500).as_deref(), Some(C));
    assert!(!woken(&n, B, 1500));

    // Handed to a waiter that dies before confirming: the lease runs out within its
    // liveness, and the next waiter's cycle takes the lock.
    let mut n = ModelNode::new();
    cycle(&mut n, A, true, 0);
    cycle(&mut n, B, true, 0);
    cycle(&mut n, C, true, 100);
    release(&mut n, A, 200);
    assert_eq!(holder(&n, 200).as_deref(), Some(B));
    assert!(cycle(&mut n, C, true, 900).starts_with("*2\r\n:0\r\n"));
    assert_eq!(
        holder(&n, 1001),
        None,
        "B's hand-off ended with its liveness"
    );
    assert_eq!(cycle(&mut n, C, true, 1002), "*2\r\n:1\r\n:2\r\n");
}

#[test]
fn a_try_lock_never_takes_a_lock_live_waiters_queue_for() {
    let mut n = ModelNode::new();
    cycle(&mut n, A, true, 0);
    cycle(&mut n, B, true, 1);
    // A's key is deleted behind the lock's back (a reset): free, but B is live and queued.
    run(&mut n, &["DEL", LOCK], 2);
    assert_eq!(cycle(&mut n, D, false, 3), "*2\r\n:0\r\n:0\r\n");
    assert!(
        n.sorted_set(b"distlock:{q}:queue", Instant::from_millis(3))
            .iter()
            .all(|m| m != D.as_bytes()),
        "a try-lock never joins the queue"
    );
    assert_eq!(cycle(&mut n, B, true, 4), "*2\r\n:1\r\n:2\r\n");
}

proptest! {
    /// Any interleaving of cycles, try-locks, releases and time: the lock is only ever given
    /// (taken or handed) to the first live waiter when waiters are queued, and a try-lock
    /// never wins over a live queued waiter.
    #[test]
    fn the_lock_goes_to_the_first_live_waiter(
        steps in proptest::collection::vec((0u8..4, 0usize..4, 0u64..400), 1..60),
    ) {
        let names = [A, B, C, D];
        let mut n = ModelNode::new();
        let mut now = 0;
        for (kind, who, dt) in steps {
            now += dt;
            let at = Instant::from_millis(now);
            let who = names[who];
            let queue = n.sorted_set(b"distlock:{q}:queue", at);
            // Live: the liveness key exists (what a take checks); a hand-off also needs some
            // of it left to give (its PTTL above zero).
            let alive = |m: &Vec<u8>| {
                let key = [b"distlock:{q}:alive:".as_slice(), m].concat();
                match n.expiry(&key, at) {
                    Some(Some(end)) => kind != 2 || end > at,
                    _ => false,
                }
            };
            // A cycle counts its own token as live; a release first drops its own.
            let live_head = if kind == 2 {
                queue.iter().find(|m| m.as_slice() != who.as_bytes() && alive(m))
            } else {
                queue.iter().find(|m| m.as_slice() == who.as_bytes() || alive(m))
            }
            .cloned();
            let was_free = holder(&n, now).is_none();
            match kind {
                0 | 1 => {
                    let reply = cycle(&mut n, who, kind == 0, now);
                    if reply.starts_with("*2\r\n:1\r\n") && was_free {
                        // A free lock goes to nobody but the first live waiter, if any.
                        if let Some(head) = &live_head {
                            prop_assert_eq!(head.as_slice(), who.as_bytes());
                        }
                    }
                }
                2 => {
                    let before = holder(&n, now);
                    release(&mut n, who, now);
                    if let Some(new) = holder(&n, now).filter(|h| Some(h) != before.as_ref()) {
                        prop_assert_eq!(Some(new.as_bytes().to_vec()), live_head);
                        prop_assert!(woken(&n, &new, now));
                    }
                }
                _ => {}
            }
        }
    }
}

#[test]
fn on_a_server_without_fractional_block_timeouts_a_waiter_polls() {
    let lock = fair(LockOptions::default());
    let t = token(9);
    // Unknown server (no handshake): BLPOP would block whole seconds.
    let mut m: Acquire<1> =
        Acquire::new(&lock, t.clone(), &plain(), Duration::from_secs(5), ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, &busy(4000), ms(1));
    assert!(drain(&mut m, ms(1)).is_empty(), "no BLPOP");
    assert_eq!(m.poll_timeout(), Some(ms(501)), "the next poll, L later");
    m.handle_timeout(ms(501));
    let sent = drain(&mut m, ms(501));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].commands.len(), 1, "the script alone");
    let call = script_call(&sent[0]);
    assert_eq!(argv(call, 1), t.as_str(), "same token, same place");
    assert_eq!(argv(call, 3), "0");
    assert_eq!(argv(call, 7), "1000", "liveness covers the poll delay");
    m.handle_input(0, &granted(1, 0), ms(502));
    assert_eq!(
        m.poll_outcome().unwrap().unwrap().started(),
        ms(501),
        "from the send"
    );
}

#[test]
fn a_grant_that_arrives_too_late_is_handed_on_and_the_wait_goes_on() {
    let lock = fair(LockOptions {
        ttl: Duration::from_millis(100),
        ..Default::default()
    });
    let t = token(10);
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        t.clone(),
        &redis7(),
        Duration::from_secs(5),
        ms(0),
        0,
    )
    .unwrap();
    drain(&mut m, ms(0));
    // Granted, but the reply took longer than the lease lasts.
    m.handle_input(0, &granted(1, 0), ms(150));
    let sent = drain(&mut m, ms(150));
    assert_fair_rollback(script_call(&sent[0]));
    assert_eq!(
        script_call(&sent[0])[8],
        t.as_bytes(),
        "the late grant is rolled back"
    );
    assert_eq!(m.poll_outcome(), None, "the wait goes on");
    let at = m.poll_timeout().expect("a backoff timer");
    m.handle_timeout(at);
    let sent = drain(&mut m, at);
    assert_eq!(
        argv(script_call(&sent[0]), 1),
        t.for_attempt(2, false).as_str()
    );
}
