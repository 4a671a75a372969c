//! Fair semaphores driven by hand: the exact batches a fair waiter and a fair release send
//! for a semaphore (fair mode's cycle with the semaphore's fair scripts), hostile replies in;
//! and the two fair semaphore scripts on the model node, step by step: arrival order among
//! live waiters, no barging past a live waiter, a freed permit handed to the first live
//! waiter and counted against the limit, dead waiters skipped, a dead waiter's hand-off gone
//! within its liveness.

mod common;

use common::{Sent, args, drain, ms, one_machine_on, token};
use distlock_core::{
    Acquire, Duration, Error, Flavor, Instant, KeyLayout, Lock, LockOptions, Protocol, Release,
    Released, ServerInfo, Version, script,
};
use distlock_model::{Exec, ModelNode};
use proptest::prelude::*;

fn fair_semaphore(limit: u32, options: LockOptions) -> Lock {
    Lock::semaphore(
        KeyLayout::default(),
        b"job",
        limit,
        LockOptions {
            fair: true,
            ..options
        },
    )
    .unwrap()
}

/// A Valkey 9 node: fractional `BLPOP` timeouts, so a busy cycle is followed by a blocking one.
fn valkey9() -> [ServerInfo; 1] {
    [ServerInfo {
        protocol: Protocol::Resp2,
        flavor: Flavor::Valkey,
        version: Version::new(9, 0, 0),
    }]
}

fn only_batch(sent: &[Sent]) -> &Sent {
    assert_eq!(sent.len(), 1, "{sent:?}");
    &sent[0]
}

#[test]
fn a_fair_waiter_runs_the_fair_semaphore_script_then_blocks_on_its_own_list() {
    let lock = fair_semaphore(
        2,
        LockOptions {
            ttl: Duration::from_secs(10),
            fenced: true,
            ..Default::default()
        },
    );
    let t = token(1);
    let mine = t.for_attempt(1, false);
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        t.clone(),
        &valkey9(),
        Duration::from_secs(5),
        ms(0),
        0,
    )
    .unwrap();
    let sent = drain(&mut m, ms(0));
    let first = only_batch(&sent);
    assert_eq!(
        first.commands.len(),
        1,
        "the first cycle is the script alone"
    );
    let call = &first.commands[0];
    assert_eq!(call[0], b"EVALSHA");
    assert_eq!(call[1], script::SEMAPHORE_FAIR_ACQUIRE.sha);
    assert_eq!(
        call[2..9],
        args(&[
            "6",
            "distlock:{job}",
            "distlock:{job}:fence",
            "distlock:{job}:permit:",
            "distlock:{job}:permit-queue",
            "distlock:{job}:permit-wake:",
            "distlock:{job}:permit-alive:",
        ])[..]
    );
    assert_eq!(call[9], mine.as_bytes());
    // ttl, extra (no block yet), limit, fenced, liveness (R), enqueue.
    assert_eq!(call[10..], args(&["10000", "0", "2", "1", "1000", "1"])[..]);
    // Busy: the next cycle blocks R/2 on this waiter's own list, then runs the script with
    // the block span added to the permit's life.
    m.handle_input(0, b"*2\r\n:0\r\n:250\r\n", ms(2));
    let sent = drain(&mut m, ms(2));
    let cycle = only_batch(&sent);
    assert_eq!(cycle.blocking, Some(Duration::from_millis(500)));
    let mut wake = b"distlock:{job}:permit-wake:".to_vec();
    wake.extend_from_slice(mine.as_bytes());
    assert_eq!(cycle.commands[0][..2], [b"BLPOP".to_vec(), wake][..]);
    assert_eq!(cycle.commands[0][2], b"0.500");
    assert_eq!(cycle.commands[1][1], script::SEMAPHORE_FAIR_ACQUIRE.sha);
    assert_eq!(cycle.commands[1][10..12], args(&["10000", "500"])[..]);
    // Woken by a hand-off at 40 ms: the script confirms the permit.
    m.handle_input(
        0,
        b"*2\r\n$4\r\nwake\r\n$1\r\n1\r\n*2\r\n:1\r\n:9\r\n",
        ms(40),
    );
    let lease = m.poll_outcome().unwrap().unwrap();
    assert_eq!(lease.token(), &mine);
    assert_eq!(lease.fence(), Some(9));
    // t0 = the reply (40 ms, before sent + extra): the wait cost no validity.
    assert_eq!(lease.started(), ms(40));
    assert!(lease.valid_until() > ms(40 + 9_000));
}

#[test]
fn a_fair_release_runs_the_fair_semaphore_release_with_the_hand_off_cap() {
    let lock = fair_semaphore(4, LockOptions::default());
    let t = token(3);
    let mut release: Release<1> = Release::new(&lock, t.clone(), &valkey9(), ms(0), 0).unwrap();
    let sent = drain(&mut release, ms(0));
    let batch = only_batch(&sent);
    assert_eq!(batch.commands.len(), 1);
    let call = &batch.commands[0];
    assert_eq!(call[1], script::SEMAPHORE_FAIR_RELEASE.sha);
    assert_eq!(
        call[2..8],
        args(&[
            "5",
            "distlock:{job}",
            "distlock:{job}:permit:",
            "distlock:{job}:permit-queue",
            "distlock:{job}:permit-wake:",
            "distlock:{job}:permit-alive:",
        ])[..]
    );
    assert_eq!(call[8], t.as_bytes());
    // limit, hand-off cap (R).
    assert_eq!(call[9..], args(&["4", "1000"])[..]);
    release.handle_input(0, b":0\r\n", ms(1));
    assert_eq!(release.poll_outcome(), Some(Ok(Released::Free)));
}

#[test]
fn a_waiter_whose_wait_runs_out_leaves_the_queue_through_the_fair_release() {
    let lock = fair_semaphore(1, LockOptions::default());
    let t = token(4);
    let mut m: Acquire<1> = Acquire::new(
        &lock,
        t.clone(),
        &valkey9(),
        Duration::from_millis(100),
        ms(0),
        0,
    )
    .unwrap();
    let _ = drain(&mut m, ms(0));
    m.handle_input(0, b"*2\r\n:0\r\n:900\r\n", ms(1));
    let _ = drain(&mut m, ms(1));
    // The blocking cycle ends busy after the wait: roll back (a permit handed over meanwhile
    // goes on to the next waiter) and report the refusal.
    m.handle_input(0, b"*-1\r\n*2\r\n:0\r\n:800\r\n", ms(101));
    let sent = drain(&mut m, ms(101));
    let call = &only_batch(&sent).commands[0];
    // By source or by digest, as the link decides after the blocked batch.
    assert!(
        call[1] == script::SEMAPHORE_FAIR_RELEASE.sha
            || call[1] == script::SEMAPHORE_FAIR_RELEASE.source.as_bytes()
    );
    assert_eq!(call[8], t.for_attempt(1, false).as_bytes());
    assert!(matches!(
        m.poll_outcome(),
        Some(Err(Error::NotAcquired { .. }))
    ));
}

/// Feeds `replies` to a fair semaphore's acquire (or, `releasing`, its release): no panic,
/// and a lease it reports is one the bytes granted. Answers whether it ended with a lease.
fn fair_semaphore_machine_on(replies: &[Vec<u8>], releasing: bool) -> Result<bool, TestCaseError> {
    let lock = fair_semaphore(3, LockOptions::default());
    one_machine_on(&lock, &valkey9(), u8::from(releasing), replies)
}

proptest! {
    /// Whatever bytes come back, a fair semaphore's waiter never panics, and a lease it
    /// reports is one the bytes granted.
    #[test]
    fn no_reply_panics_a_fair_semaphore_waiter(
        replies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..6),
        releasing in any::<bool>(),
    ) {
        fair_semaphore_machine_on(&replies, releasing)?;
    }
}

/// The property's oracle reads the replies as one stream: a grant cut in two (or after an
/// empty piece) is still a grant. Looking piece by piece, as it once did, failed here.
#[test]
fn a_grant_cut_across_pieces_is_a_grant_the_bytes_gave() {
    let acquire: Vec<Vec<u8>> = vec![b"".to_vec(), b"*2\r\n:".to_vec(), b"1\r\n:7\r\n".to_vec()];
    assert!(
        !acquire
            .iter()
            .any(|r| r.windows(8).any(|w| w == b"*2\r\n:1\r\n"))
    );
    let ended = fair_semaphore_machine_on(&acquire, false);
    assert!(matches!(ended, Ok(true)), "{ended:?}");
}

// ---- the fair semaphore scripts on the model node ----

const HOLDERS: &str = "distlock:{job}";
const PERMITS: &str = "distlock:{job}:permit:";
const QUEUE: &str = "distlock:{job}:permit-queue";
const WAKE: &str = "distlock:{job}:permit-wake:";
const ALIVE: &str = "distlock:{job}:permit-alive:";

fn run(node: &mut ModelNode, words: &[&str], now: u64) -> String {
    let words: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    match node.execute(&words, Instant::from_millis(now), Protocol::Resp2) {
        Exec::Reply(bytes) => String::from_utf8(bytes).unwrap(),
        other => panic!("{other:?}"),
    }
}

/// One fair cycle's script for `who` (ttl 1000 ms, no extra, limit `limit`, fenced).
fn cycle(
    node: &mut ModelNode,
    who: &str,
    limit: u32,
    liveness: u64,
    enqueue: bool,
    now: u64,
) -> String {
    let (limit, liveness) = (limit.to_string(), liveness.to_string());
    run(
        node,
        &[
            "EVAL",
            script::SEMAPHORE_FAIR_ACQUIRE.source,
            "6",
            HOLDERS,
            "distlock:{job}:fence",
            PERMITS,
            QUEUE,
            WAKE,
            ALIVE,
            who,
            "1000",
            "0",
            &limit,
            "1",
            &liveness,
            if enqueue { "1" } else { "0" },
        ],
        now,
    )
}

/// The fair release of `who` (hand-off cap 300 ms).
fn release(node: &mut ModelNode, who: &str, limit: u32, now: u64) -> String {
    let limit = limit.to_string();
    run(
        node,
        &[
            "EVAL",
            script::SEMAPHORE_FAIR_RELEASE.source,
            "5",
            HOLDERS,
            PERMITS,
            QUEUE,
            WAKE,
            ALIVE,
            who,
            &limit,
            "300",
        ],
        now,
    )
}

fn granted(fence: u64) -> String {
    format!("*2\r\n:1\r\n:{fence}\r\n")
}

fn queue(node: &ModelNode, now: u64) -> Vec<String> {
    node.sorted_set(QUEUE.as_bytes(), ms(now))
        .into_iter()
        .map(|m| String::from_utf8(m).unwrap())
        .collect()
}

fn holders(node: &ModelNode, now: u64) -> Vec<String> {
    node.sorted_set(HOLDERS.as_bytes(), ms(now))
        .into_iter()
        .map(|m| String::from_utf8(m).unwrap())
        .collect()
}

fn key(prefix: &str, who: &str) -> Vec<u8> {
    format!("{prefix}{who}").into_bytes()
}

#[test]
fn freed_permits_go_to_live_waiters_in_arrival_order_and_newcomers_wait_behind() {
    let mut n = ModelNode::new();
    assert_eq!(cycle(&mut n, "a", 1, 1000, true, 0), granted(1));
    assert_eq!(cycle(&mut n, "b", 1, 1000, true, 1), "*2\r\n:0\r\n:999\r\n");
    assert_eq!(cycle(&mut n, "c", 1, 1000, true, 2), "*2\r\n:0\r\n:998\r\n");
    assert_eq!(queue(&n, 2), ["b", "c"]);
    // a's release hands the permit to b: b's permit key (for min(liveness, cap)), b among
    // the holders, b out of the queue, one push on b's own list; c is not woken.
    assert_eq!(release(&mut n, "a", 1, 10), ":0\r\n");
    assert_eq!(holders(&n, 10), ["b"]);
    assert_eq!(queue(&n, 10), ["c"]);
    assert_eq!(n.expiry(&key(PERMITS, "b"), ms(10)), Some(Some(ms(310))));
    assert_eq!(n.list_len(&key(WAKE, "b"), ms(10)), 1);
    assert_eq!(n.list_len(&key(WAKE, "c"), ms(10)), 0);
    // A newcomer's try finds the permit counted: refused, and it does not queue.
    assert_eq!(
        cycle(&mut n, "d", 1, 1000, false, 11),
        "*2\r\n:0\r\n:299\r\n"
    );
    assert_eq!(queue(&n, 11), ["c"]);
    // b confirms on its cycle: its permit now lives the full ttl.
    assert_eq!(cycle(&mut n, "b", 1, 1000, true, 12), granted(2));
    assert_eq!(n.expiry(&key(PERMITS, "b"), ms(12)), Some(Some(ms(1012))));
    assert_eq!(release(&mut n, "b", 1, 20), ":0\r\n");
    assert_eq!(holders(&n, 20), ["c"]);
    assert_eq!(cycle(&mut n, "c", 1, 1000, true, 21), granted(3));
    assert!(queue(&n, 21).is_empty());
}

#[test]
fn a_permit_freed_by_expiry_is_kept_for_the_live_waiter_ahead_not_a_newcomer() {
    let mut n = ModelNode::new();
    assert_eq!(cycle(&mut n, "a", 2, 1000, true, 0), granted(1));
    assert_eq!(cycle(&mut n, "b", 2, 1000, true, 0), granted(2));
    assert_eq!(cycle(&mut n, "w", 2, 5000, true, 1), "*2\r\n:0\r\n:999\r\n");
    // a dies: its permit key expires at 1000 ms with nobody to hand it on.
    assert_eq!(
        cycle(&mut n, "new", 2, 5000, true, 1100),
        "*2\r\n:0\r\n:0\r\n"
    );
    assert_eq!(queue(&n, 1100), ["w", "new"]);
    assert_eq!(cycle(&mut n, "w", 2, 5000, true, 1101), granted(3));
    assert_eq!(queue(&n, 1101), ["new"]);
}

#[test]
fn dead_waiters_are_skipped_and_a_dead_waiters_hand_off_runs_out_within_its_liveness() {
    let mut n = ModelNode::new();
    assert_eq!(cycle(&mut n, "a", 1, 1000, true, 0), granted(1));
    // b stops cycling (liveness 50 ms), c lives 200 ms, d 1000 ms.
    cycle(&mut n, "b", 1, 50, true, 1);
    cycle(&mut n, "c", 1, 200, true, 2);
    cycle(&mut n, "d", 1, 1000, true, 3);
    // At 100 ms b is dead: the release skips it and hands to c, for c's remaining liveness.
    assert_eq!(release(&mut n, "a", 1, 100), ":0\r\n");
    assert_eq!(holders(&n, 100), ["c"]);
    assert_eq!(queue(&n, 100), ["d"]);
    assert_eq!(n.expiry(&key(PERMITS, "c"), ms(100)), Some(Some(ms(202))));
    // c dies before confirming: the handed permit is gone at 202 ms and d, the next live
    // waiter, takes it on its next cycle.
    assert_eq!(
        cycle(&mut n, "d", 1, 1000, true, 150),
        "*2\r\n:0\r\n:52\r\n"
    );
    assert_eq!(cycle(&mut n, "d", 1, 1000, true, 203), granted(2));
    assert_eq!(holders(&n, 203), ["d"]);
}

#[test]
fn a_waiter_that_gives_up_leaves_the_queue_and_hands_a_permit_handed_to_it_on() {
    let mut n = ModelNode::new();
    assert_eq!(cycle(&mut n, "a", 1, 1000, true, 0), granted(1));
    cycle(&mut n, "b", 1, 1000, true, 1);
    cycle(&mut n, "c", 1, 1000, true, 2);
    assert_eq!(release(&mut n, "a", 1, 10), ":0\r\n");
    assert_eq!(holders(&n, 10), ["b"]);
    // b gives up (its rollback is the fair release with its attempt token): the permit it
    // was handed goes on to c.
    assert_eq!(release(&mut n, "b", 1, 11), ":0\r\n");
    assert_eq!(holders(&n, 11), ["c"]);
    assert!(queue(&n, 11).is_empty());
    assert!(n.value(&key(ALIVE, "b"), ms(11)).is_none());
    // A release by a token that holds nothing still hands a free permit on.
    assert_eq!(release(&mut n, "c", 1, 12), ":0\r\n");
    assert_eq!(release(&mut n, "zz", 1, 13), ":-1\r\n");
}
