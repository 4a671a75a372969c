//! The lock machines driven by hand: exact commands out, scripted replies in.
//!
//! Every transmit is decoded with `redis-protocol`'s own decoder, so these tests also check
//! that what the core writes is well-formed RESP (an array of bulk strings per command).

mod common;

use common::{args, busy, drain, lock_with, ms, name_of, plain, refused, servers, token};
use distlock_core::{
    Acquire, Drift, Duration, Error, Extend, Extended, Flavor, LockOptions, NodeFailure, Protocol,
    ProtocolError, Release, Released, RetryPolicy, ServerErrorKind, ServerInfo, Version, script,
};

/// The waiting mark a plain mutex's attempt that may be followed by a wait sends first.
fn mark() -> common::Command {
    args(&["SET", "distlock:{job}:waiting", "1", "PX", "30000"])
}

/// Drains a waiting acquire's first attempt — a `SET NX PX` (`GET`) on every node, no `PTTL` —
/// and refuses it everywhere as a held lock answers it (nil, or the holder's token). What the
/// machine sends next is the retry that asks for the holder's TTL.
fn refuse_first_attempt<const N: usize>(m: &mut Acquire<N>, now: distlock_core::Instant) {
    let sent = drain(m, now);
    assert!(!sent.is_empty());
    for s in &sent {
        assert_eq!(
            s.commands.len(),
            1,
            "the first attempt asks nothing about the holder"
        );
        assert_eq!(name_of(&s.commands[0]), "SET");
        m.handle_input(s.node, &refused(s), now);
    }
    assert_eq!(m.poll_outcome(), None);
    // Over several nodes the attempt may settle before the last node answered: that node
    // is rolled back first, and the retry starts on the driver's next turn, at once.
    if m.poll_timeout() == Some(now) {
        for s in drain(m, now) {
            // By source: its reply is abandoned, so a `NOSCRIPT` would go unread.
            assert_eq!(name_of(&s.commands[0]), "EVAL", "a rollback");
            m.handle_input(s.node, b":-1\r\n", now);
        }
        m.handle_timeout(now);
    }
}

#[test]
fn single_node_acquire_is_set_nx_px_and_validity_subtracts_drift() {
    let lock = lock_with(LockOptions {
        ttl: Duration::from_secs(10),
        ..Default::default()
    });
    let t = token(1);
    let mut m: Acquire<1> =
        Acquire::new(&lock, t.clone(), &plain(), Duration::ZERO, ms(100), 0).unwrap();
    let sent = drain(&mut m, ms(100));
    assert_eq!(sent.len(), 1);
    // A try-lock asks nothing about the holder: no PTTL. The attempt writes its own token.
    assert_eq!(
        sent[0].commands,
        vec![args(&[
            "SET",
            "distlock:{job}",
            t.for_attempt(1, false).as_str(),
            "NX",
            "PX",
            "10000"
        ])]
    );
    assert_eq!(m.poll_outcome(), None);
    assert_eq!(
        m.poll_timeout(),
        Some(ms(100 + 1000)),
        "the reply deadline is the request timeout"
    );
    m.handle_input(0, b"+OK\r\n", ms(104));
    let lease = m.poll_outcome().unwrap().unwrap();
    assert_eq!(lease.token(), &t.for_attempt(1, false));
    assert_eq!(lease.fence(), None);
    assert_eq!(lease.started(), ms(100));
    assert_eq!(lease.valid_until(), ms(100 + 10_000 - 102));
    assert_eq!(m.poll_timeout(), None);
    assert_eq!(m.owed_replies(0), Some(0));
}

#[test]
fn try_lock_on_a_held_lock_fails_at_once() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(1), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"$-1\r\n", ms(1));
    assert_eq!(
        m.poll_outcome(),
        Some(Err(Error::NotAcquired {
            attempts: 1,
            holder_ttl: None
        }))
    );
    assert!(
        drain(&mut m, ms(1)).is_empty(),
        "nothing to roll back: nothing was taken"
    );
}

#[test]
fn replies_split_at_every_byte_still_decide() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(1), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    for b in b"+OK\r\n" {
        assert_eq!(m.poll_outcome(), None);
        m.handle_input(0, &[*b], ms(1));
    }
    assert!(m.poll_outcome().unwrap().is_ok());
}

#[test]
fn a_waiter_blocks_on_the_signal_until_the_holder_key_would_expire() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(2), &plain(), Duration::from_secs(5), ms(0), 0).unwrap();
    refuse_first_attempt(&mut m, ms(0));
    // Refused without the holder's TTL: the next attempt goes at once, and asks for it; it
    // may be followed by a wait, so it marks the name first.
    let sent = drain(&mut m, ms(0));
    assert_eq!(
        sent[0].commands.len(),
        4,
        "the mark, SET NX PX, PTTL and TYPE, pipelined"
    );
    assert_eq!(
        sent[0].commands[0],
        mark(),
        "the mark goes before the attempt"
    );
    assert_eq!(name_of(&sent[0].commands[1]), "SET");
    assert_eq!(sent[0].commands[2], args(&["PTTL", "distlock:{job}"]));
    assert_eq!(sent[0].commands[3], args(&["TYPE", "distlock:{job}"]));
    // Held; the holder's key has 300 ms left.
    m.handle_input(0, b"+OK\r\n$-1\r\n:300\r\n+string\r\n", ms(1));
    assert_eq!(m.poll_outcome(), None);
    let sent = drain(&mut m, ms(1));
    assert_eq!(sent.len(), 1);
    // Fractional timeouts need a known server ≥ 6; unknown servers get whole seconds.
    assert_eq!(
        sent[0].commands,
        vec![args(&["BLPOP", "distlock:{job}:signal", "1"])]
    );
    assert_eq!(sent[0].blocking, Some(Duration::from_millis(301)));
    // The release's signal arrives: try again at once.
    m.handle_input(
        0,
        b"*2\r\n$21\r\ndistlock:{job}:signal\r\n$1\r\n1\r\n",
        ms(50),
    );
    let sent = drain(&mut m, ms(50));
    assert_eq!(sent[0].commands[0], mark(), "a waiter marks every attempt");
    m.handle_input(0, b"+OK\r\n+OK\r\n:-2\r\n+none\r\n", ms(51));
    let lease = m.poll_outcome().unwrap().unwrap();
    assert_eq!(lease.started(), ms(50));
}

#[test]
fn an_uncontended_waiting_acquire_sends_set_nx_px_alone() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(2), &plain(), Duration::from_secs(5), ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].commands.len(), 1, "no PTTL while nobody refused");
    assert_eq!(name_of(&sent[0].commands[0]), "SET");
    m.handle_input(0, b"+OK\r\n", ms(1));
    assert!(m.poll_outcome().unwrap().is_ok(), "one reply settles it");
    assert_eq!(m.owed_replies(0), Some(0));
}

#[test]
fn a_refused_attempt_learns_the_holder_ttl_before_it_waits() {
    let lock = lock_with(LockOptions::default());
    let redis7 = [ServerInfo {
        protocol: Protocol::Resp2,
        flavor: Flavor::Redis,
        version: Version::new(7, 0, 15),
    }];
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(2), &redis7, Duration::from_secs(5), ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    // Redis 7 answers `SET NX GET` with the holder's token when it refuses.
    m.handle_input(0, b"$1\r\nh\r\n", ms(1));
    // No wait is timed without the holder's TTL: the retry goes now, with no timer between.
    // `SET NX GET` answers `WRONGTYPE` itself, so the retry asks no `TYPE`.
    let sent = drain(&mut m, ms(1));
    assert_eq!(sent.len(), 1, "retried at once");
    assert_eq!(
        sent[0].commands,
        vec![
            mark(),
            args(&[
                "SET",
                "distlock:{job}",
                token(2).for_attempt(2, false).as_str(),
                "NX",
                "PX",
                "30000",
                "GET"
            ]),
            args(&["PTTL", "distlock:{job}"])
        ]
    );
    m.handle_input(0, b"+OK\r\n$1\r\nh\r\n:120\r\n", ms(2));
    let sent = drain(&mut m, ms(2));
    assert_eq!(
        sent[0].commands,
        vec![args(&["BLPOP", "distlock:{job}:signal", "0.121"])],
        "the wait ends when the holder's key would expire"
    );
    // A holder that refuses again after the wake-up is asked again: the span is never an
    // earlier round's.
    m.handle_input(0, b"*-1\r\n", ms(123));
    let sent = drain(&mut m, ms(123));
    assert_eq!(sent[0].commands.len(), 3);
    m.handle_input(0, b"+OK\r\n$1\r\nh\r\n:40\r\n", ms(124));
    let sent = drain(&mut m, ms(124));
    assert_eq!(
        sent[0].commands,
        vec![args(&["BLPOP", "distlock:{job}:signal", "0.041"])]
    );
}

#[test]
fn a_script_refusal_is_retried_at_once_with_the_mark_before_the_waiter_blocks() {
    let lock = lock_with(LockOptions {
        reentrant: true,
        ..Default::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(2), &plain(), Duration::from_secs(5), ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(
        sent[0].commands.len(),
        1,
        "the first attempt is the script alone"
    );
    // The script says the holder's TTL, but the attempt carried no mark: a wait now could
    // sleep through a release that pushes nothing. The marked retry goes at once.
    m.handle_input(0, b"*2\r\n:0\r\n:250\r\n", ms(1));
    let sent = drain(&mut m, ms(1));
    assert_eq!(sent[0].commands.len(), 2);
    assert_eq!(sent[0].commands[0], mark());
    assert_eq!(name_of(&sent[0].commands[1]), "EVALSHA");
    assert_eq!(sent[0].commands[1][1], script::ACQUIRE.sha);
    m.handle_input(0, b"+OK\r\n*2\r\n:0\r\n:249\r\n", ms(2));
    let sent = drain(&mut m, ms(2));
    assert_eq!(
        name_of(&sent[0].commands[0]),
        "BLPOP",
        "marked: now it waits"
    );
    assert_eq!(sent[0].blocking, Some(Duration::from_millis(250)));
}

#[test]
fn a_waiter_blocks_no_longer_than_the_retry_cap() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(2), &plain(), Duration::from_secs(60), ms(0), 0).unwrap();
    refuse_first_attempt(&mut m, ms(0));
    drain(&mut m, ms(0));
    // The holder's key lives 30 s more; its release might push no signal.
    m.handle_input(0, b"+OK\r\n$-1\r\n:30000\r\n+string\r\n", ms(1));
    let sent = drain(&mut m, ms(1));
    assert_eq!(sent[0].blocking, Some(Duration::from_millis(500)));
    // The wait times out without a signal: another attempt, not a sleep.
    m.handle_input(0, b"*-1\r\n", ms(501));
    let sent = drain(&mut m, ms(501));
    assert_eq!(sent[0].commands[0], mark());
}

#[test]
fn fractional_block_timeouts_on_servers_that_take_them() {
    let lock = lock_with(LockOptions::default());
    let redis7 = [ServerInfo {
        protocol: Protocol::Resp3,
        flavor: Flavor::Redis,
        version: Version::new(7, 0, 15),
    }];
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        token(2),
        &redis7,
        Duration::from_millis(250),
        ms(0),
        0,
    )
    .unwrap();
    refuse_first_attempt(&mut m, ms(0));
    drain(&mut m, ms(0));
    // RESP3: the holder's token, its TTL (`SET NX GET` needs no `TYPE`).
    m.handle_input(0, b"+OK\r\n$1\r\nh\r\n:9000\r\n", ms(1));
    let sent = drain(&mut m, ms(1));
    // The wait has 249 ms left, less than the holder's 9 s.
    assert_eq!(
        sent[0].commands,
        vec![args(&["BLPOP", "distlock:{job}:signal", "0.249"])]
    );
}

#[test]
fn without_signals_a_waiter_sleeps_and_gives_up_at_its_deadline() {
    let lock = lock_with(LockOptions {
        wake_signal: None,
        ..Default::default()
    });
    let wait = Duration::from_millis(300);
    let mut m: Acquire<1> = Acquire::new(&lock, token(3), &plain(), wait, ms(0), 7).unwrap();
    let mut now = ms(0);
    let mut attempts = 0;
    loop {
        // A refusal that did not say the holder's TTL is retried at once: answer until the
        // machine sends nothing more at this time.
        loop {
            let sent = drain(&mut m, now);
            assert!(sent.iter().all(|s| s.blocking.is_none()));
            let Some(sent) = sent.first() else { break };
            attempts += 1;
            m.handle_input(0, &busy(sent, 60_000), now);
        }
        if let Some(outcome) = m.poll_outcome() {
            assert_eq!(
                outcome,
                Err(Error::NotAcquired {
                    attempts,
                    holder_ttl: Some(Duration::from_secs(60))
                })
            );
            break;
        }
        let next = m.poll_timeout().expect("a sleeping waiter has a timer");
        assert!(next > now, "no spinning: the next attempt is in the future");
        now = next;
        m.handle_timeout(now);
    }
    assert!(
        attempts >= 2,
        "retried within the wait ({attempts} attempts)"
    );
    assert_eq!(
        now,
        ms(300),
        "the last attempt is at the deadline, not after"
    );
}

#[test]
fn fenced_acquire_runs_the_script_and_reports_the_fence() {
    let lock = lock_with(LockOptions {
        fenced: true,
        ..Default::default()
    });
    let t = token(4);
    let mut m: Acquire<1> =
        Acquire::new(&lock, t.clone(), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    let sha = std::str::from_utf8(&script::ACQUIRE.sha).unwrap();
    assert_eq!(
        sent[0].commands,
        vec![args(&[
            "EVALSHA",
            sha,
            "3",
            "distlock:{job}",
            "distlock:{job}:fence",
            "distlock:{job}:holds",
            t.for_attempt(1, false).as_str(),
            "30000",
            "1",
            "0",
            t.as_str()
        ])]
    );
    m.handle_input(0, b"*2\r\n:1\r\n:41\r\n", ms(1));
    assert_eq!(m.poll_outcome().unwrap().unwrap().fence(), Some(41));
}

#[test]
fn noscript_resends_by_eval_and_keeps_using_it() {
    let lock = lock_with(LockOptions {
        fenced: true,
        ..Default::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(4), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(
        0,
        b"-NOSCRIPT No matching script. Please use EVAL.\r\n",
        ms(1),
    );
    assert_eq!(m.poll_outcome(), None, "NOSCRIPT is not an answer");
    let sent = drain(&mut m, ms(1));
    assert_eq!(sent[0].commands[0][0], b"EVAL");
    assert_eq!(sent[0].commands[0][1], script::ACQUIRE.source.as_bytes());
    m.handle_input(0, b"*2\r\n:1\r\n:2\r\n", ms(2));
    assert_eq!(m.poll_outcome().unwrap().unwrap().fence(), Some(2));
}

#[test]
fn reentrant_acquire_counts_holds() {
    let lock = lock_with(LockOptions {
        reentrant: true,
        ..Default::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(5), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(sent[0].commands[0][9], b"1", "the reentrant flag");
    m.handle_input(0, b"*2\r\n:3\r\n:0\r\n", ms(1));
    let lease = m.poll_outcome().unwrap().unwrap();
    assert_eq!(lease.holds(), 3);
    assert_eq!(lease.fence(), None);
}

#[test]
fn a_fenced_grant_without_a_fence_is_a_protocol_error_not_a_lease() {
    let lock = lock_with(LockOptions {
        fenced: true,
        ..Default::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(5), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"*2\r\n:1\r\n:0\r\n", ms(1));
    let outcome = m.poll_outcome().unwrap();
    assert!(
        matches!(
            outcome,
            Err(Error::QuorumLost {
                last_failure: Some(NodeFailure::Protocol(ProtocolError::UnexpectedReply)),
                ..
            })
        ),
        "{outcome:?}"
    );
}

#[test]
fn redlock_wins_with_a_majority() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<3> =
        Acquire::new(&lock, token(6), &servers(3), Duration::ZERO, ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(
        sent.iter().map(|s| s.node).collect::<Vec<_>>(),
        [0, 1, 2],
        "sent to every node"
    );
    m.handle_input(1, b"$-1\r\n", ms(3));
    m.handle_input(0, b"+OK\r\n", ms(4));
    assert_eq!(m.poll_outcome(), None, "one grant of three is not a quorum");
    m.handle_input(2, b"+OK\r\n", ms(5));
    let lease = m.poll_outcome().unwrap().unwrap();
    assert_eq!(lease.valid_until(), ms(30_000 - 302));
}

#[test]
fn redlock_failure_rolls_back_the_minority_it_took() {
    let lock = lock_with(LockOptions::default());
    let t = token(7);
    let mut m: Acquire<3> =
        Acquire::new(&lock, t.clone(), &servers(3), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"+OK\r\n", ms(1));
    m.handle_input(1, b"$-1\r\n", ms(1));
    m.handle_input(2, b"$-1\r\n", ms(2));
    assert_eq!(
        m.poll_outcome(),
        None,
        "the rollback must be sent before the outcome is out"
    );
    let sent = drain(&mut m, ms(2));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].node, 0);
    let release = &sent[0].commands[0];
    // By source: the rollback's reply is abandoned, so a `NOSCRIPT` would go unread.
    assert_eq!(name_of(release), "EVAL");
    assert_eq!(release[1], script::RELEASE.source.as_bytes());
    assert_eq!(
        release[release.len() - 2],
        b"1000",
        "a rollback pushes the wake-up signal: a waiter refused by its key is woken"
    );
    assert_eq!(
        release.last().unwrap(),
        b"0",
        "as a release does: only while a waiter marked"
    );
    assert_eq!(
        m.poll_outcome(),
        Some(Err(Error::NotAcquired {
            attempts: 1,
            holder_ttl: None
        }))
    );
    assert_eq!(m.owed_replies(0), Some(1), "the rollback's reply is owed");
}

#[test]
fn redlock_with_two_of_three_nodes_silent_is_a_quorum_error_in_bounded_time() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<3> =
        Acquire::new(&lock, token(8), &servers(3), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"+OK\r\n", ms(1));
    m.handle_disconnect(1, ms(2));
    assert_eq!(m.poll_timeout(), Some(ms(1000)));
    m.handle_timeout(ms(1000));
    let sent = drain(&mut m, ms(1000));
    // Node 0 granted and node 2 may have: both are rolled back. Node 1 has no connection.
    let mut rolled: Vec<usize> = sent.iter().map(|s| s.node).collect();
    rolled.sort();
    assert_eq!(rolled, [0, 1, 2]);
    let outcome = m.poll_outcome().unwrap();
    assert_eq!(
        outcome,
        Err(Error::QuorumLost {
            granted: 1,
            needed: 2,
            nodes: 3,
            last_failure: Some(NodeFailure::Timeout)
        })
    );
}

/// Found by the host's fault tests (Redlock over five servers, one frozen): an attempt
/// settled early — one node down and two "busy" rule a quorum out before the last two answer
/// — was reported as a lost quorum, though four nodes were up and the lock was simply held.
#[test]
fn redlock_lost_to_a_holder_with_a_node_down_is_contention_not_a_lost_quorum() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<5> =
        Acquire::new(&lock, token(9), &servers(5), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_disconnect(0, ms(1));
    m.handle_input(1, b"$-1\r\n", ms(2));
    m.handle_input(2, b"$-1\r\n", ms(2));
    drain(&mut m, ms(2));
    assert_eq!(
        m.poll_outcome(),
        Some(Err(Error::NotAcquired {
            attempts: 1,
            holder_ttl: None
        }))
    );

    // Three of five down: whatever the other two say, that is a lost quorum.
    let mut m: Acquire<5> =
        Acquire::new(&lock, token(10), &servers(5), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    for node in 0..3 {
        m.handle_disconnect(node, ms(1));
    }
    m.handle_input(4, b"$-1\r\n", ms(2));
    drain(&mut m, ms(2));
    assert!(
        matches!(
            m.poll_outcome(),
            Some(Err(Error::QuorumLost {
                granted: 0,
                needed: 3,
                nodes: 5,
                ..
            }))
        ),
        "three of five nodes down"
    );
}

/// Found against real servers: a Redlock waiter whose majority died while it waited reported
/// "held by another owner" at its deadline (the last attempt's word), though no quorum was
/// left to hold anything. Nodes seen going down between attempts change what it reports.
/// The node a waiter blocks on: the one sent a `BLPOP` (the attempt settled before the last
/// node answered also rolls that node back).
fn blocked_on(sent: &[common::Sent]) -> usize {
    let blocking: Vec<usize> = sent
        .iter()
        .filter(|s| name_of(&s.commands[0]) == "BLPOP")
        .map(|s| s.node)
        .collect();
    assert_eq!(blocking.len(), 1, "blocks on one busy node's signal");
    blocking[0]
}

#[test]
fn a_waiter_whose_majority_dies_mid_wait_reports_a_lost_quorum() {
    let lock = lock_with(LockOptions::default());
    let wait = Duration::from_millis(400);
    let mut m: Acquire<3> = Acquire::new(&lock, token(11), &servers(3), wait, ms(0), 0).unwrap();
    refuse_first_attempt(&mut m, ms(0));
    drain(&mut m, ms(0));
    for node in 0..3 {
        m.handle_input(node, b"+OK\r\n$-1\r\n:30000\r\n+string\r\n", ms(1));
    }
    let waited = blocked_on(&drain(&mut m, ms(1)));
    let others: Vec<usize> = (0..3).filter(|&n| n != waited).collect();
    // One idle node's connection drops: two of three still said "busy", which is contention.
    m.handle_disconnect(others[0], ms(100));
    // The signal wait itself ends, past the deadline: the last attempt's word stands.
    let mut alive = m.clone();
    alive.handle_input(waited, b"*-1\r\n", ms(401));
    drain(&mut alive, ms(401));
    assert!(
        matches!(alive.poll_outcome(), Some(Err(Error::NotAcquired { .. }))),
        "one of three down while two say busy is contention"
    );
    // The second idle node drops too: no majority is left to hold the lock.
    m.handle_disconnect(others[1], ms(200));
    m.handle_input(waited, b"*-1\r\n", ms(401));
    drain(&mut m, ms(401));
    assert!(
        matches!(
            m.poll_outcome(),
            Some(Err(Error::QuorumLost {
                granted: 0,
                needed: 2,
                nodes: 3,
                ..
            }))
        ),
        "two of three down mid-wait"
    );

    // The node waited on is the one that dies (its wait gets no answer), with one idle node.
    let mut m: Acquire<3> = Acquire::new(&lock, token(12), &servers(3), wait, ms(0), 0).unwrap();
    refuse_first_attempt(&mut m, ms(0));
    drain(&mut m, ms(0));
    for node in 0..3 {
        m.handle_input(node, b"+OK\r\n$-1\r\n:30000\r\n+string\r\n", ms(1));
    }
    let waited = blocked_on(&drain(&mut m, ms(1)));
    let idle = (0..3).find(|&n| n != waited).unwrap();
    m.handle_disconnect(idle, ms(100));
    m.handle_disconnect(waited, ms(450));
    drain(&mut m, ms(450));
    assert!(
        matches!(m.poll_outcome(), Some(Err(Error::QuorumLost { .. }))),
        "the waited node and an idle one down"
    );
}

#[test]
fn fenced_redlock_raises_the_counter_on_a_quorum_before_reporting() {
    let lock = lock_with(LockOptions {
        fenced: true,
        ..Default::default()
    });
    let mut m: Acquire<3> =
        Acquire::new(&lock, token(9), &servers(3), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"*2\r\n:1\r\n:5\r\n", ms(1));
    m.handle_input(1, b"*2\r\n:1\r\n:9\r\n", ms(1));
    assert_eq!(m.poll_outcome(), None, "no lease before the raise round");
    let sent = drain(&mut m, ms(1));
    assert_eq!(sent.len(), 3, "raise on every node");
    for s in &sent {
        assert_eq!(s.commands[0][1], script::RAISE_FENCE.sha);
        assert_eq!(
            s.commands[0].last().unwrap(),
            b"9",
            "raise to the largest counter seen"
        );
    }
    // Node 2's first-round reply was stale by now; it arrives and is skipped.
    m.handle_input(2, b"*2\r\n:0\r\n:100\r\n", ms(2));
    m.handle_input(0, b":9\r\n", ms(3));
    assert_eq!(m.poll_outcome(), None);
    m.handle_input(2, b":12\r\n", ms(3));
    assert_eq!(m.poll_outcome().unwrap().unwrap().fence(), Some(9));
}

#[test]
fn a_lease_whose_validity_ran_out_in_flight_is_not_reported() {
    let lock = lock_with(LockOptions {
        ttl: Duration::from_millis(100),
        request_timeout: Duration::from_secs(5),
        ..Default::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(10), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    // 100 ms ttl - 3 ms drift: valid until 97.
    m.handle_input(0, b"+OK\r\n", ms(97));
    let sent = drain(&mut m, ms(97));
    assert_eq!(sent.len(), 1, "the key it took is rolled back");
    assert_eq!(m.poll_outcome(), Some(Err(Error::Expired)));
}

#[test]
fn errors_that_waiting_cannot_fix_surface_at_once() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        token(11),
        &plain(),
        Duration::from_secs(10),
        ms(0),
        0,
    )
    .unwrap();
    drain(&mut m, ms(0));
    m.handle_input(
        0,
        b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n:-1\r\n",
        ms(1),
    );
    match m.poll_outcome() {
        Some(Err(Error::Server { node: 0, error })) => {
            assert_eq!(error.kind, ServerErrorKind::WrongType)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn transient_errors_are_retried_within_the_wait() {
    let lock = lock_with(LockOptions {
        wake_signal: None,
        ..Default::default()
    });
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        token(12),
        &plain(),
        Duration::from_secs(10),
        ms(0),
        0,
    )
    .unwrap();
    drain(&mut m, ms(0));
    m.handle_input(
        0,
        b"-LOADING Redis is loading the dataset in memory\r\n",
        ms(1),
    );
    assert_eq!(m.poll_outcome(), None);
    let at = m.poll_timeout().unwrap();
    m.handle_timeout(at);
    let sent = drain(&mut m, at);
    assert_eq!(name_of(&sent[0].commands[0]), "SET");
    assert_eq!(sent[0].commands.len(), 1, "no refusal yet: no PTTL");
    m.handle_input(0, b"+OK\r\n", at);
    assert!(m.poll_outcome().unwrap().is_ok());
}

#[test]
fn a_late_reply_to_a_timed_out_attempt_never_completes_the_next() {
    let lock = lock_with(LockOptions {
        wake_signal: None,
        ..Default::default()
    });
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        token(13),
        &plain(),
        Duration::from_secs(10),
        ms(0),
        0,
    )
    .unwrap();
    drain(&mut m, ms(0));
    // No reply within the request timeout.
    m.handle_timeout(ms(1000));
    let rollback = drain(&mut m, ms(1000));
    assert_eq!(
        rollback.len(),
        1,
        "the silent node may have granted: roll it back"
    );
    let at = m.poll_timeout().unwrap();
    m.handle_timeout(at);
    let retry = drain(&mut m, at);
    assert_eq!(name_of(&retry[0].commands[0]), "SET");
    // Now the first attempt's two replies (+OK: it did take the key) and the rollback's
    // arrive, then the retry's: only the last pair answers the retry.
    m.handle_input(0, b"+OK\r\n:30000\r\n:1\r\n", at);
    assert_eq!(m.poll_outcome(), None, "stale replies decide nothing");
    m.handle_input(0, b"+OK\r\n$-1\r\n:29000\r\n+string\r\n", at);
    assert_eq!(
        m.poll_outcome(),
        None,
        "the retry's own reply: busy, keep waiting"
    );
}

#[test]
fn every_attempt_writes_its_own_token_and_rolls_back_only_that() {
    let lock = lock_with(LockOptions {
        wake_signal: None,
        ..Default::default()
    });
    let t = token(30);
    let mut m: Acquire<3> = Acquire::new(
        &lock,
        t.clone(),
        &servers(3),
        Duration::from_secs(5),
        ms(0),
        0,
    )
    .unwrap();
    let first = drain(&mut m, ms(0));
    assert_eq!(first[0].commands[0][2], t.for_attempt(1, false).as_bytes());
    // Attempt 1 wins node 0 only: it is rolled back with attempt 1's token.
    m.handle_input(0, b"+OK\r\n", ms(1));
    m.handle_input(1, b"$-1\r\n", ms(1));
    m.handle_input(2, b"$-1\r\n", ms(1));
    let rollback = drain(&mut m, ms(1));
    assert_eq!(rollback.len(), 1);
    assert_eq!(
        rollback[0].commands[0][7],
        t.for_attempt(1, false).as_bytes(),
        "{:?}",
        rollback[0].commands
    );
    // Refused without the holder's TTL: the retry that asks for it follows the rollback
    // at once (on the driver's next turn, so the rollback is not replaced before it goes).
    let at = m.poll_timeout().unwrap();
    assert_eq!(at, ms(1));
    m.handle_timeout(at);
    let second = drain(&mut m, at);
    let second_token = t.for_attempt(2, false);
    for sent in &second {
        assert_eq!(sent.commands[0][2], second_token.as_bytes());
    }
    for node in 0..3 {
        m.handle_input(node, b"+OK\r\n:-2\r\n+none\r\n", at);
    }
    let lease = m.poll_outcome().unwrap().unwrap();
    assert_eq!(
        lease.token(),
        &second_token,
        "the lease carries the winning attempt's token"
    );
}

#[test]
fn push_frames_are_not_replies() {
    let lock = lock_with(LockOptions::default());
    let resp3 = [ServerInfo {
        protocol: Protocol::Resp3,
        ..Default::default()
    }];
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(14), &resp3, Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(
        0,
        b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n+OK\r\n",
        ms(1),
    );
    assert!(m.poll_outcome().unwrap().is_ok());
}

#[test]
fn bytes_nobody_asked_for_desynchronise_the_link() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(15), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"+OK\r\n+OK\r\n", ms(1));
    assert!(m.poll_outcome().unwrap().is_ok());
    assert_eq!(
        m.owed_replies(0),
        None,
        "the connection is out of step: reconnect it"
    );
}

#[test]
fn garbage_is_a_protocol_error() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(16), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"HTTP/1.1 400 Bad Request\r\n", ms(1));
    let outcome = m.poll_outcome().unwrap();
    assert!(
        matches!(
            outcome,
            Err(Error::QuorumLost {
                last_failure: Some(NodeFailure::Protocol(ProtocolError::Malformed)),
                ..
            })
        ),
        "{outcome:?}"
    );
}

#[test]
fn a_huge_declared_length_fails_the_node_at_once() {
    for header in [&b"$9999999999\r\n"[..], b"*2147483647\r\n"] {
        let lock = lock_with(LockOptions::default());
        let mut m: Acquire<1> =
            Acquire::new(&lock, token(16), &plain(), Duration::ZERO, ms(0), 0).unwrap();
        drain(&mut m, ms(0));
        m.handle_input(0, header, ms(1));
        let outcome = m.poll_outcome();
        assert!(
            matches!(
                outcome,
                Some(Err(Error::QuorumLost {
                    last_failure: Some(NodeFailure::Protocol(ProtocolError::FrameTooLarge {
                        capacity: distlock_core::REPLY_CAP
                    })),
                    ..
                }))
            ),
            "{outcome:?}: the header alone proves the reply can never fit"
        );
        assert_eq!(m.owed_replies(0), None, "the connection is out of step");
    }
}

#[test]
fn cancel_rolls_back_what_may_have_been_taken() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<3> =
        Acquire::new(&lock, token(17), &servers(3), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"+OK\r\n", ms(1));
    m.handle_input(1, b"$-1\r\n", ms(1));
    m.cancel(ms(2));
    let nodes: Vec<usize> = drain(&mut m, ms(2)).iter().map(|s| s.node).collect();
    assert_eq!(
        nodes,
        [0, 2],
        "the grant and the silent node; not the busy one"
    );
    assert_eq!(m.poll_outcome(), Some(Err(Error::Cancelled)));
}

#[test]
fn a_short_buffer_is_reported_and_left_untouched() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(18), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    let mut small = [0xAAu8; 8];
    let err = m.poll_transmit(ms(0), &mut small).unwrap_err();
    assert!(err.required > 8);
    assert_eq!(small, [0xAA; 8]);
    let mut buf = vec![0u8; err.required];
    assert_eq!(
        m.poll_transmit(ms(0), &mut buf).unwrap().unwrap().len,
        err.required
    );
}

#[test]
fn node_counts_beyond_capacity_are_refused() {
    let lock = lock_with(LockOptions::default());
    assert!(Acquire::<2>::new(&lock, token(1), &servers(3), Duration::ZERO, ms(0), 0).is_err());
    assert!(Acquire::<2>::new(&lock, token(1), &[], Duration::ZERO, ms(0), 0).is_err());
    // One limit for every driver, whatever capacity a machine is declared with.
    let too_many = servers(distlock_core::MAX_NODES + 1);
    assert!(Acquire::<16>::new(&lock, token(1), &too_many, Duration::ZERO, ms(0), 0).is_err());
    assert!(Release::<16>::new(&lock, token(1), &too_many, ms(0), 0).is_err());
    let most = servers(distlock_core::MAX_NODES);
    assert!(Acquire::<16>::new(&lock, token(1), &most, Duration::ZERO, ms(0), 0).is_ok());
}

// ---- release and extend ----

#[test]
fn release_script_and_its_answers() {
    let lock = lock_with(LockOptions::default());
    let t = token(20);
    for (reply, expected) in [
        (&b":0\r\n"[..], Ok(Released::Free)),
        (b":-1\r\n", Err(Error::NotHeld)),
        (b":2\r\n", Ok(Released::StillHeld { holds: 2 })),
    ] {
        let mut m: Release<1> = Release::new(&lock, t.clone(), &plain(), ms(0), 0).unwrap();
        let sent = drain(&mut m, ms(0));
        assert_eq!(
            sent[0].commands,
            vec![args(&[
                "EVALSHA",
                std::str::from_utf8(&script::RELEASE.sha).unwrap(),
                "4",
                "distlock:{job}",
                "distlock:{job}:holds",
                "distlock:{job}:signal",
                "distlock:{job}:waiting",
                t.as_str(),
                "0",
                "1000",
                // Pushes only while a waiter marked.
                "0"
            ])]
        );
        m.handle_input(0, reply, ms(1));
        assert_eq!(m.poll_outcome(), Some(expected));
    }
}

#[test]
fn release_uses_native_compare_and_delete_where_the_server_has_it() {
    let lock = lock_with(LockOptions::default());
    let t = token(21);
    let valkey9 = [ServerInfo {
        protocol: Protocol::Resp3,
        flavor: Flavor::Valkey,
        version: Version::new(9, 0, 0),
    }];
    let mut m: Release<1> = Release::new(&lock, t.clone(), &valkey9, ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(
        sent[0].commands,
        vec![
            args(&["DELIFEQ", "distlock:{job}", t.as_str()]),
            args(&["LPUSH", "distlock:{job}:signal", "1"]),
            args(&["LTRIM", "distlock:{job}:signal", "0", "0"]),
            args(&["PEXPIRE", "distlock:{job}:signal", "1000"]),
        ]
    );
    m.handle_input(0, b":1\r\n:1\r\n+OK\r\n:1\r\n", ms(1));
    assert_eq!(m.poll_outcome(), Some(Ok(Released::Free)));

    let redis84 = [ServerInfo {
        protocol: Protocol::Resp3,
        flavor: Flavor::Redis,
        version: Version::new(8, 4, 0),
    }];
    let quiet = lock_with(LockOptions {
        wake_signal: None,
        ..Default::default()
    });
    let mut m: Release<1> = Release::new(&quiet, t.clone(), &redis84, ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(
        sent[0].commands,
        vec![args(&["DELEX", "distlock:{job}", "IFEQ", t.as_str()])]
    );
    m.handle_input(0, b":0\r\n", ms(1));
    assert_eq!(m.poll_outcome(), Some(Err(Error::NotHeld)));
}

#[test]
fn an_unknown_native_command_falls_back_to_the_script() {
    let lock = lock_with(LockOptions {
        wake_signal: None,
        ..Default::default()
    });
    let claims_valkey9 = [ServerInfo {
        protocol: Protocol::Resp2,
        flavor: Flavor::Valkey,
        version: Version::new(9, 0, 0),
    }];
    let mut m: Release<1> = Release::new(&lock, token(22), &claims_valkey9, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(
        0,
        b"-ERR unknown command 'DELIFEQ', with args beginning with: \r\n",
        ms(1),
    );
    let sent = drain(&mut m, ms(1));
    assert_eq!(name_of(&sent[0].commands[0]), "EVALSHA");
    m.handle_input(0, b":0\r\n", ms(2));
    assert_eq!(m.poll_outcome(), Some(Ok(Released::Free)));
}

#[test]
fn release_retries_a_loading_node_but_never_a_timed_out_one() {
    let lock = lock_with(LockOptions::default());
    let mut m: Release<1> = Release::new(&lock, token(23), &plain(), ms(0), 1).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"-LOADING loading\r\n", ms(1));
    let at = m.poll_timeout().unwrap();
    assert!(at > ms(1) && at <= ms(1000));
    m.handle_timeout(at);
    assert_eq!(drain(&mut m, at).len(), 1, "asked again");
    m.handle_input(0, b":0\r\n", at);
    assert_eq!(m.poll_outcome(), Some(Ok(Released::Free)));

    let mut m: Release<1> = Release::new(&lock, token(23), &plain(), ms(0), 1).unwrap();
    drain(&mut m, ms(0));
    m.handle_timeout(ms(1000));
    assert!(
        drain(&mut m, ms(1000)).is_empty(),
        "a release that may have run is not repeated"
    );
    assert!(matches!(
        m.poll_outcome(),
        Some(Err(Error::QuorumLost {
            last_failure: Some(NodeFailure::Timeout),
            ..
        }))
    ));
}

#[test]
fn redlock_release_needs_a_majority() {
    let lock = lock_with(LockOptions::default());
    let mut m: Release<3> = Release::new(&lock, token(24), &servers(3), ms(0), 0).unwrap();
    assert_eq!(drain(&mut m, ms(0)).len(), 3);
    m.handle_input(0, b":0\r\n", ms(1));
    m.handle_input(1, b":-1\r\n", ms(1));
    assert_eq!(m.poll_outcome(), None);
    m.handle_input(2, b":0\r\n", ms(1));
    assert_eq!(m.poll_outcome(), Some(Ok(Released::Free)));
}

#[test]
fn extend_native_and_script_and_its_validity() {
    let lock = lock_with(LockOptions {
        ttl: Duration::from_secs(20),
        ..Default::default()
    });
    let t = token(25);
    let valkey81 = [ServerInfo {
        protocol: Protocol::Resp3,
        flavor: Flavor::Valkey,
        version: Version::new(8, 1, 0),
    }];
    let mut m: Extend<1> = Extend::new(&lock, t.clone(), &valkey81, ms(500), 0).unwrap();
    let sent = drain(&mut m, ms(500));
    assert_eq!(
        sent[0].commands,
        vec![args(&[
            "SET",
            "distlock:{job}",
            t.as_str(),
            "IFEQ",
            t.as_str(),
            "PX",
            "20000"
        ])]
    );
    m.handle_input(0, b"+OK\r\n", ms(510));
    assert_eq!(
        m.poll_outcome(),
        Some(Ok(Extended {
            started: ms(500),
            valid_until: ms(500 + 20_000 - 202)
        }))
    );

    let mut m: Extend<1> = Extend::new(&lock, t.clone(), &plain(), ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(sent[0].commands[0][1], script::EXTEND.sha);
    m.handle_input(0, b":0\r\n", ms(1));
    assert_eq!(m.poll_outcome(), Some(Err(Error::NotHeld)));
}

#[test]
fn drift_is_configurable() {
    let lock = lock_with(LockOptions {
        ttl: Duration::from_secs(10),
        drift: Drift {
            per_million: 50_000,
            fixed: Duration::from_millis(10),
        },
        ..Default::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(26), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"+OK\r\n", ms(1));
    assert_eq!(
        m.poll_outcome().unwrap().unwrap().valid_until(),
        ms(10_000 - 510)
    );
}

#[test]
fn retry_policy_attempt_limit_is_honoured() {
    let lock = lock_with(LockOptions {
        wake_signal: None,
        retry: RetryPolicy {
            max_attempts: Some(2),
            ..Default::default()
        },
        ..Default::default()
    });
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        token(27),
        &plain(),
        Duration::from_secs(60),
        ms(0),
        0,
    )
    .unwrap();
    let mut now = ms(0);
    loop {
        loop {
            let sent = drain(&mut m, now);
            if sent.is_empty() {
                break;
            }
            for sent in sent {
                m.handle_input(0, &busy(&sent, 50_000), now);
            }
        }
        if let Some(outcome) = m.poll_outcome() {
            assert_eq!(
                outcome,
                // The second attempt is the last: nothing after it to time, so it does not
                // ask for the holder's TTL either.
                Err(Error::NotAcquired {
                    attempts: 2,
                    holder_ttl: None
                })
            );
            break;
        }
        now = m.poll_timeout().unwrap();
        m.handle_timeout(now);
    }
}

#[test]
fn a_redlock_release_hears_every_node_out_so_slow_nodes_lose_their_key_too() {
    let lock = lock_with(LockOptions::default());
    let mut m: Release<3> = Release::new(&lock, token(28), &servers(3), ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b":0\r\n", ms(1));
    m.handle_input(1, b":0\r\n", ms(1));
    assert_eq!(
        m.poll_outcome(),
        None,
        "a quorum released, but node 2 has not answered yet"
    );
    // Node 2 lost its script cache: the release goes again by EVAL, and is waited for.
    m.handle_input(2, b"-NOSCRIPT No matching script.\r\n", ms(2));
    let sent = drain(&mut m, ms(2));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].node, 2);
    assert_eq!(name_of(&sent[0].commands[0]), "EVAL");
    assert_eq!(m.poll_outcome(), None);
    m.handle_input(2, b":0\r\n", ms(3));
    assert_eq!(m.poll_outcome(), Some(Ok(Released::Free)));
    assert_eq!(m.owed_replies(2), Some(0));
}

#[test]
fn a_redlock_release_does_not_wait_past_a_silent_nodes_deadline() {
    let lock = lock_with(LockOptions::default());
    let mut m: Release<3> = Release::new(&lock, token(29), &servers(3), ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b":0\r\n", ms(1));
    m.handle_input(1, b":0\r\n", ms(1));
    assert_eq!(m.poll_timeout(), Some(ms(1000)));
    m.handle_timeout(ms(1000));
    assert_eq!(m.poll_outcome(), Some(Ok(Released::Free)));
    assert_eq!(
        m.owed_replies(2),
        Some(1),
        "the silent node's reply is still owed"
    );
}

/// A Redlock acquire answers at a quorum; the slow node's connection can go on to the next
/// operation as it is: that machine discards the late reply itself and matches its own.
#[test]
fn a_connection_owing_replies_is_handed_to_the_next_machine() {
    let lock = lock_with(LockOptions::default());
    let t = token(8);
    let mut m: Acquire<3> =
        Acquire::new(&lock, t.clone(), &servers(3), Duration::ZERO, ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    let replies_to_node_2 = sent.iter().find(|s| s.node == 2).unwrap().commands.len() as u32;
    m.handle_input(0, b"+OK\r\n", ms(1));
    m.handle_input(1, b"+OK\r\n", ms(1));
    let lease = m.poll_outcome().unwrap().unwrap();
    assert_eq!(m.owed_replies(2), Some(replies_to_node_2));
    assert_eq!(m.handover(2), Some(replies_to_node_2));
    assert_eq!(m.handover(0), Some(0));

    let mut release: Release<3> =
        Release::new(&lock, lease.token().clone(), &servers(3), ms(2), 0).unwrap();
    assert!(release.discard_replies(2, replies_to_node_2));
    assert!(!release.discard_replies(3, 1), "no such node");
    drain(&mut release, ms(2));
    release.handle_input(0, b":1\r\n", ms(3));
    release.handle_input(1, b":1\r\n", ms(3));
    // The acquire's late grant arrives first, then the release's own answer.
    for _ in 0..replies_to_node_2 {
        release.handle_input(2, b"+OK\r\n", ms(4));
    }
    assert_eq!(
        release.owed_replies(2),
        Some(1),
        "only its own reply is owed now"
    );
    release.handle_input(2, b":1\r\n", ms(4));
    assert!(release.poll_outcome().unwrap().is_ok());
    assert_eq!(release.owed_replies(2), Some(0));
}

/// Half a reply in the machine's buffer cannot be handed on: the next machine would start
/// reading mid-frame. Reconnect instead.
#[test]
fn a_half_read_reply_is_not_handed_over() {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<3> =
        Acquire::new(&lock, token(9), &servers(3), Duration::ZERO, ms(0), 0).unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"+OK\r\n", ms(1));
    m.handle_input(1, b"+OK\r\n", ms(1));
    m.handle_input(2, b"+O", ms(1));
    assert!(m.poll_outcome().unwrap().is_ok());
    assert!(m.owed_replies(2).is_some_and(|n| n > 0));
    assert_eq!(m.handover(2), None);
}

/// A waiting plain mutex refused, then probed: what the `TYPE` says is the outcome.
fn probe_reply_after_refusal<const N: usize>(kind_reply: &[u8]) -> Acquire<N> {
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<N> = Acquire::new(
        &lock,
        token(40),
        &servers(N),
        Duration::from_secs(5),
        ms(0),
        0,
    )
    .unwrap();
    refuse_first_attempt(&mut m, ms(0));
    let probe = drain(&mut m, ms(0));
    assert_eq!(probe.len(), N);
    for sent in &probe {
        assert_eq!(sent.commands[3], args(&["TYPE", "distlock:{job}"]));
        let reply = [&b"+OK\r\n$-1\r\n:20000\r\n"[..], kind_reply].concat();
        m.handle_input(sent.node, &reply, ms(1));
    }
    m
}

#[test]
fn a_mutex_on_a_semaphores_or_read_write_locks_name_fails_with_wrongtype() {
    for (kind, reply) in [("zset", &b"+zset\r\n"[..]), ("hash", b"+hash\r\n")] {
        let mut m = probe_reply_after_refusal::<1>(reply);
        match m.poll_outcome() {
            Some(Err(Error::Server { node: 0, error })) => {
                assert_eq!(error.kind, ServerErrorKind::WrongType, "{kind}");
                assert!(error.message.contains(kind), "{}", error.message);
            }
            other => panic!("{kind}: the mutex must not wait on it: {other:?}"),
        }
        // Nothing was taken, so nothing is rolled back; no wait is queued.
        assert!(drain(&mut m, ms(1)).is_empty());
    }
    // Over three nodes, every node saying so leaves no quorum to wait for.
    // (The attempt settles on two replies; the third node's possible grant is rolled back
    // before the outcome is out.)
    let mut m = probe_reply_after_refusal::<3>(b"+zset\r\n");
    let rollback = drain(&mut m, ms(1));
    assert!(rollback.iter().all(|s| name_of(&s.commands[0]) == "EVAL"));
    match m.poll_outcome() {
        Some(Err(Error::Server { error, .. })) => {
            assert_eq!(error.kind, ServerErrorKind::WrongType)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_held_mutex_or_an_unreadable_kind_still_waits() {
    // A string is a mutex's holder; `none`: it expired between the SET and the TYPE; an
    // error: the ACL user may not run TYPE (unknown is not another kind).
    for reply in [
        &b"+string\r\n"[..],
        b"+none\r\n",
        b"-NOPERM this user has no permissions to run the 'type' command\r\n",
    ] {
        let mut m = probe_reply_after_refusal::<1>(reply);
        assert_eq!(
            m.poll_outcome(),
            None,
            "{:?}",
            String::from_utf8_lossy(reply)
        );
        let wait = drain(&mut m, ms(1));
        assert_eq!(name_of(&wait[0].commands[0]), "BLPOP");
    }
}

/// Servers with `SET NX PX GET` (Redis ≥ 7.0, Valkey).
fn redis7(n: usize) -> Vec<ServerInfo> {
    vec![
        ServerInfo {
            protocol: Protocol::Resp2,
            flavor: Flavor::Redis,
            version: Version::new(7, 0, 15),
        };
        n
    ]
}

const WRONGTYPE: &[u8] = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

#[test]
fn a_try_lock_on_redis_7_is_one_set_nx_get_that_tells_taken_held_and_another_kind_apart() {
    let lock = lock_with(LockOptions::default());
    let t = token(50);
    let try_lock = || Acquire::<1>::new(&lock, t.clone(), &redis7(1), Duration::ZERO, ms(0), 0);
    // Free: nil (no old value) means `NX` set it.
    let mut m = try_lock().unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(
        sent[0].commands,
        vec![args(&[
            "SET",
            "distlock:{job}",
            t.for_attempt(1, false).as_str(),
            "NX",
            "PX",
            "30000",
            "GET"
        ])],
        "one command, no probe"
    );
    m.handle_input(0, b"$-1\r\n", ms(1));
    assert!(matches!(m.poll_outcome(), Some(Ok(_))));
    // Held: the holder's token.
    let mut m = try_lock().unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, b"$6\r\nholder\r\n", ms(1));
    assert!(matches!(
        m.poll_outcome(),
        Some(Err(Error::NotAcquired { attempts: 1, .. }))
    ));
    // A semaphore's or read-write lock's name: the server's own `WRONGTYPE`, at once.
    let mut m = try_lock().unwrap();
    drain(&mut m, ms(0));
    m.handle_input(0, WRONGTYPE, ms(1));
    match m.poll_outcome() {
        Some(Err(Error::Server { node: 0, error })) => {
            assert_eq!(error.kind, ServerErrorKind::WrongType)
        }
        other => panic!("a try-lock must not call another kind of lock held: {other:?}"),
    }
    assert!(
        drain(&mut m, ms(1)).is_empty(),
        "nothing taken, nothing sent"
    );
}

#[test]
fn a_redlock_try_lock_on_redis_7_reports_wrongtype_when_no_quorum_is_a_lock() {
    let lock = lock_with(LockOptions::default());
    let start = || Acquire::<3>::new(&lock, token(51), &redis7(3), Duration::ZERO, ms(0), 0);
    // Every node: another kind. (The attempt settles on two replies; the third node's
    // possible grant is rolled back before the outcome is out.)
    let mut m = start().unwrap();
    for s in drain(&mut m, ms(0)) {
        assert_eq!(s.commands.len(), 1);
        m.handle_input(s.node, WRONGTYPE, ms(1));
    }
    drain(&mut m, ms(1));
    match m.poll_outcome() {
        Some(Err(Error::Server { error, .. })) => {
            assert_eq!(error.kind, ServerErrorKind::WrongType)
        }
        other => panic!("{other:?}"),
    }
    // Two nodes of three: no quorum can be a lock; the one grant is rolled back.
    let mut m = start().unwrap();
    for (s, reply) in drain(&mut m, ms(0))
        .iter()
        .zip([&b"$-1\r\n"[..], WRONGTYPE, WRONGTYPE])
    {
        m.handle_input(s.node, reply, ms(1));
    }
    let rollback = drain(&mut m, ms(1));
    assert_eq!(rollback.len(), 1);
    assert_eq!(
        (rollback[0].node, name_of(&rollback[0].commands[0])),
        (0, "EVAL")
    );
    match m.poll_outcome() {
        Some(Err(Error::Server { error, .. })) => {
            assert_eq!(error.kind, ServerErrorKind::WrongType)
        }
        other => panic!("{other:?}"),
    }
    // One node of three: a quorum of grants is a lock.
    let mut m = start().unwrap();
    for (s, reply) in drain(&mut m, ms(0))
        .iter()
        .zip([WRONGTYPE, b"$-1\r\n", b"$-1\r\n"])
    {
        m.handle_input(s.node, reply, ms(1));
    }
    assert!(matches!(m.poll_outcome(), Some(Ok(_))));
}

#[test]
fn a_server_refusing_set_nx_get_gets_the_plain_set_nx_and_keeps_it() {
    // Claims Redis 7 but answers like Redis 6.2 (`GET` beside `NX` is a syntax error).
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        token(52),
        &redis7(1),
        Duration::from_secs(5),
        ms(0),
        0,
    )
    .unwrap();
    let sent = drain(&mut m, ms(0));
    assert!(common::is_set_get(&sent[0]));
    m.handle_input(0, b"-ERR syntax error\r\n", ms(1));
    assert_eq!(m.poll_outcome(), None, "the refused command set nothing");
    let sent = drain(&mut m, ms(1));
    assert_eq!(sent[0].commands.len(), 1);
    assert!(!common::is_set_get(&sent[0]), "{:?}", sent[0].commands);
    assert_eq!(name_of(&sent[0].commands[0]), "SET");
    // Refused: the retry with the probe is the plain form's, `TYPE` included.
    m.handle_input(0, b"$-1\r\n", ms(2));
    let sent = drain(&mut m, ms(2));
    assert_eq!(sent[0].commands.len(), 4);
    assert!(!common::is_set_get(&sent[0]));
    m.handle_input(0, b"+OK\r\n$-1\r\n:20000\r\n+zset\r\n", ms(3));
    match m.poll_outcome() {
        Some(Err(Error::Server { error, .. })) => {
            assert_eq!(error.kind, ServerErrorKind::WrongType)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_try_lock_on_a_server_without_set_nx_get_still_reads_another_kind_as_held() {
    // The documented gap on servers before Redis 7.0 (and servers not known): one plain
    // `SET NX PX`, whose nil cannot tell a semaphore's name from a held lock.
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(53), &plain(), Duration::ZERO, ms(0), 0).unwrap();
    let sent = drain(&mut m, ms(0));
    assert_eq!(sent[0].commands.len(), 1);
    assert!(!common::is_set_get(&sent[0]));
    m.handle_input(0, b"$-1\r\n", ms(1));
    assert!(matches!(
        m.poll_outcome(),
        Some(Err(Error::NotAcquired { .. }))
    ));
}

// ---- the waiting mark (a release nobody waits for pushes no wake-up) ----

/// Refuses a waiting acquire's first attempt and answers its marked retry with a holder whose
/// key lives `holder_ttl_ms`; returns what the machine sends next.
fn refuse_marked_retry(m: &mut Acquire<1>, holder_ttl_ms: u64) -> Vec<common::Sent> {
    refuse_first_attempt(m, ms(0));
    let retry = drain(m, ms(0));
    assert_eq!(retry[0].commands[0], mark(), "the retry marks first");
    m.handle_input(0, &busy(&retry[0], holder_ttl_ms), ms(1));
    drain(m, ms(1))
}

#[test]
fn a_try_lock_never_marks_even_when_refused() {
    for options in [
        LockOptions::default(),
        LockOptions {
            reentrant: true,
            ..Default::default()
        },
    ] {
        let lock = lock_with(options);
        let mut m: Acquire<1> =
            Acquire::new(&lock, token(1), &plain(), Duration::ZERO, ms(0), 0).unwrap();
        let sent = drain(&mut m, ms(0));
        assert_eq!(sent[0].commands.len(), 1, "{:?}", sent[0].commands);
        assert!(!common::is_marked(&sent[0]));
        let refusal = if name_of(&sent[0].commands[0]) == "EVALSHA" {
            b"*2\r\n:0\r\n:500\r\n".to_vec()
        } else {
            busy(&sent[0], 500)
        };
        m.handle_input(0, &refusal, ms(1));
        assert!(matches!(
            m.poll_outcome(),
            Some(Err(Error::NotAcquired { attempts: 1, .. }))
        ));
        assert!(drain(&mut m, ms(1)).is_empty(), "no marked retry");
    }
}

#[test]
fn a_marked_waiters_span_ends_before_its_mark_would() {
    // A cap long enough that the mark's life, not the cap, bounds the span: with a 14 s
    // request timeout a cycle is the span plus up to 28 s of round trips, so 2 s are left.
    let lock = lock_with(LockOptions {
        request_timeout: Duration::from_secs(14),
        retry: RetryPolicy {
            cap: Duration::from_secs(20),
            ..RetryPolicy::default()
        },
        ..Default::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(2), &plain(), Duration::from_secs(60), ms(0), 0).unwrap();
    let wait = refuse_marked_retry(&mut m, 25_000);
    assert_eq!(name_of(&wait[0].commands[0]), "BLPOP");
    assert_eq!(
        wait[0].blocking,
        Some(
            distlock_core::WAITING_MARK_LIFE
                .saturating_sub(Duration::from_secs(28))
                .min(Duration::from_secs(20))
        )
    );
    assert_eq!(wait[0].blocking, Some(Duration::from_secs(2)));

    // A request timeout of 15 s leaves no span inside the mark's life: the waiter polls.
    let lock = lock_with(LockOptions {
        request_timeout: Duration::from_secs(15),
        retry: RetryPolicy {
            cap: Duration::from_secs(20),
            ..RetryPolicy::default()
        },
        ..Default::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(2), &plain(), Duration::from_secs(60), ms(0), 0).unwrap();
    assert!(refuse_marked_retry(&mut m, 25_000).is_empty(), "no BLPOP");
    let next = m.poll_timeout().expect("a poll is due");
    assert!(next > ms(1), "sleeps a backoff delay");
}

#[test]
fn a_waiter_whose_mark_the_server_refuses_polls_instead_of_blocking() {
    // An ACL that lets the client set the lock's key but not the mark's: a release there
    // pushes nothing for this waiter, so a `BLPOP` could sleep through it for its whole span.
    let lock = lock_with(LockOptions::default());
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(4), &plain(), Duration::from_secs(60), ms(0), 0).unwrap();
    refuse_first_attempt(&mut m, ms(0));
    let retry = drain(&mut m, ms(0));
    assert_eq!(retry[0].commands[0], mark(), "the retry marks first");
    let mut reply = b"-NOPERM No permissions to access a key\r\n".to_vec();
    reply.extend_from_slice(&busy(&retry[0], 25_000)[b"+OK\r\n".len()..]);
    m.handle_input(0, &reply, ms(1));
    assert!(
        drain(&mut m, ms(1)).is_empty(),
        "no BLPOP on an unmarked name"
    );
    let next = m.poll_timeout().expect("a poll is due");
    assert!(
        next > ms(1) && next < ms(25_000),
        "sleeps a backoff delay, not the TTL"
    );

    // The next attempt marks again; once the server takes the mark, the waiter blocks.
    m.handle_timeout(next);
    let again = drain(&mut m, next);
    assert_eq!(again[0].commands[0], mark());
    m.handle_input(0, &busy(&again[0], 25_000), next);
    let wait = drain(&mut m, next);
    assert_eq!(name_of(&wait[0].commands[0]), "BLPOP");
}

#[test]
fn waiters_without_a_wait_signal_or_a_mark_in_their_layout_do_not_mark() {
    // Signals off: nobody blocks, so nobody marks.
    let lock = lock_with(LockOptions {
        wake_signal: None,
        ..Default::default()
    });
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(2), &plain(), Duration::from_secs(5), ms(0), 0).unwrap();
    refuse_first_attempt(&mut m, ms(0));
    let retry = drain(&mut m, ms(0));
    assert!(!common::is_marked(&retry[0]), "{:?}", retry[0].commands);
    assert_eq!(retry[0].commands.len(), 3, "SET NX PX, PTTL, TYPE");

    // python-redis-lock's layout has no mark: its waiters probe as before, and its release
    // always pushes (its own waiters never mark).
    let lock = distlock_core::Lock::new(
        distlock_core::KeyLayout::python_redis_lock(),
        b"job",
        LockOptions::default(),
    )
    .unwrap();
    let mut m: Acquire<1> =
        Acquire::new(&lock, token(2), &plain(), Duration::from_secs(5), ms(0), 0).unwrap();
    refuse_first_attempt(&mut m, ms(0));
    let retry = drain(&mut m, ms(0));
    assert!(!common::is_marked(&retry[0]), "{:?}", retry[0].commands);
    assert_eq!(retry[0].commands.len(), 3);
    let t = token(20);
    let mut release: Release<1> = Release::new(&lock, t.clone(), &plain(), ms(0), 0).unwrap();
    let sent = drain(&mut release, ms(0));
    assert_eq!(
        sent[0].commands,
        vec![args(&[
            "EVALSHA",
            std::str::from_utf8(&script::RELEASE.sha).unwrap(),
            "4",
            "lock:job",
            "distlock-python-redis-lock:job:holds",
            "lock-signal:job",
            // No mark to read: the signal key stands in, and "always" says so.
            "lock-signal:job",
            t.as_str(),
            "0",
            "1000",
            "1"
        ])]
    );
}

/// A release or an extend whose connection is lost mid-request never asks that node again,
/// whatever connection the driver has for it next (the engine lends one after a loss): the
/// compare-and-act may have run, and a second one would call a release that worked "not
/// held". A node that refused with a transient error did not run it, and is asked again
/// after its pause.
#[test]
fn a_ballot_never_repeats_a_request_lost_mid_flight_but_retries_a_refused_one() {
    let lock = lock_with(LockOptions::default());
    let mut m: Release<3> = Release::new(&lock, token(26), &servers(3), ms(0), 1).unwrap();
    assert_eq!(drain(&mut m, ms(0)).len(), 3);
    m.handle_disconnect(0, ms(1)); // lost with the delete in flight
    m.handle_input(1, b"-LOADING loading\r\n", ms(1));
    m.handle_input(2, b":0\r\n", ms(1));
    assert_eq!(m.poll_outcome(), None, "node 1 is still hopeful");
    m.handle_disconnect(1, ms(2)); // lost while it waits for its retry: nothing in flight
    let at = m.poll_timeout().expect("node 1's retry");
    m.handle_timeout(at);
    let asked: Vec<usize> = drain(&mut m, at).iter().map(|sent| sent.node).collect();
    assert_eq!(asked, [1], "only the node that refused is asked again");
    m.handle_input(1, b":0\r\n", at);
    assert_eq!(m.poll_outcome(), Some(Ok(Released::Free)));

    let mut m: Extend<1> = Extend::new(&lock, token(26), &plain(), ms(0), 1).unwrap();
    assert_eq!(drain(&mut m, ms(0)).len(), 1);
    m.handle_disconnect(0, ms(1));
    m.handle_timeout(ms(5_000));
    assert!(
        drain(&mut m, ms(5_000)).is_empty(),
        "the extend is not repeated"
    );
    assert!(matches!(
        m.poll_outcome(),
        Some(Err(Error::QuorumLost {
            last_failure: Some(NodeFailure::Disconnected),
            ..
        }))
    ));
}
