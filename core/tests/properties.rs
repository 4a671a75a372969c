//! Property tests of the lock machines: encoding, robustness, and reply matching.

mod common;

use std::collections::VecDeque;

use common::{Command, Sent, drain, ms, reply_or_noise};
use distlock_core::{
    Acquire, ConfigError, Drift, Duration, Error, Extend, Flavor, Instant, KeyLayout, Lock,
    LockOptions, Machine, Operation, Protocol, Release, RetryPolicy, ServerInfo, Token, Version,
    quorum,
};
use proptest::prelude::*;

fn server_strategy() -> impl Strategy<Value = ServerInfo> {
    (
        prop_oneof![Just(Protocol::Resp2), Just(Protocol::Resp3)],
        prop_oneof![
            Just(Flavor::Redis),
            Just(Flavor::Valkey),
            Just(Flavor::Unknown)
        ],
        (0u16..12, 0u16..6, 0u16..3),
    )
        .prop_map(|(protocol, flavor, (a, b, c))| ServerInfo {
            protocol,
            flavor,
            version: Version::new(a, b, c),
        })
}

fn options_strategy() -> impl Strategy<Value = LockOptions> {
    (
        1u64..100_000,
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(1u64..5000),
        1u64..3000,
    )
        .prop_map(
            |(ttl, fenced, reentrant, signal, request_timeout)| LockOptions {
                ttl: Duration::from_millis(ttl.max(10)),
                fenced,
                reentrant,
                wake_signal: signal.map(Duration::from_millis),
                request_timeout: Duration::from_millis(request_timeout),
                ..LockOptions::default()
            },
        )
}

/// Any bytes a user might pick for a name, braces and high bytes included.
fn name_strategy() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(b'{'),
            Just(b'}'),
            Just(b'\r'),
            Just(b'\n'),
            Just(0u8),
            any::<u8>()
        ],
        0..300,
    )
}

fn key(prefix: &[u8], name: &[u8], suffix: &[u8]) -> Vec<u8> {
    [prefix, b"{", name, suffix].concat()
}

/// Every argument of every command a machine sends, checked against what was asked for.
fn check_commands(sent: &[Sent], prefix: &[u8], name: &[u8], token: &Token, options: &LockOptions) {
    let lock_key = key(prefix, name, b"}");
    let known_keys = [
        lock_key.clone(),
        key(prefix, name, b"}:fence"),
        key(prefix, name, b"}:holds"),
        key(prefix, name, b"}:signal"),
        key(prefix, name, b"}:waiting"),
    ];
    let mark_life = distlock_core::WAITING_MARK_LIFE
        .as_millis()
        .to_string()
        .into_bytes();
    let ttl = options.ttl.as_millis().to_string().into_bytes();
    // What the first acquire attempt writes (the token itself on a plain lock); release and
    // extend carry the token as given.
    let attempt = token.for_attempt(1, options.reentrant);
    let tokens = [token.as_bytes(), attempt.as_bytes()];
    for command in sent.iter().flat_map(|s| &s.commands) {
        let verb = std::str::from_utf8(&command[0]).unwrap();
        match verb {
            // A waiter's mark: `SET <waiting> 1 PX <mark life>`, before its attempt.
            "SET" if command[1] == known_keys[4] => {
                let mark: Vec<&[u8]> = command[2..].iter().map(Vec::as_slice).collect();
                assert_eq!(mark, [b"1".as_slice(), b"PX", &mark_life]);
            }
            "SET" => {
                assert_eq!(command[1], lock_key);
                assert!(tokens.contains(&command[2].as_slice()));
                // `SET key token NX PX ttl`, with `GET` last where the server has `NX GET`.
                let px = command.iter().position(|a| a.as_slice() == b"PX");
                let px = px.expect("a SET with a PX");
                assert_eq!(command[px + 1], ttl);
                let rest: Vec<&[u8]> = command[px + 2..].iter().map(Vec::as_slice).collect();
                assert!(rest.is_empty() || rest == [b"GET".as_slice()], "{rest:?}");
            }
            "EVALSHA" | "EVAL" => {
                let keys: usize = std::str::from_utf8(&command[2]).unwrap().parse().unwrap();
                for k in &command[3..3 + keys] {
                    assert!(known_keys.contains(k), "unexpected key {k:?}");
                }
                // A token travels as its own argument, intact.
                if command.len() > 3 + keys && command[3 + keys].len() >= 16 {
                    assert!(tokens.contains(&command[3 + keys].as_slice()));
                }
            }
            "DELIFEQ" | "DELEX" | "PTTL" => assert_eq!(command[1], lock_key),
            "LPUSH" | "LTRIM" | "PEXPIRE" | "BLPOP" => assert_eq!(command[1], known_keys[3]),
            other => panic!("unexpected command {other}: {command:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Every command decodes (with redis-protocol's decoder, in `drain`) to exactly the
    /// arguments asked for, whatever bytes the name holds; names that cannot be keys are
    /// refused with a typed error before anything is sent.
    #[test]
    fn commands_carry_exactly_their_arguments(
        name in name_strategy(),
        prefix in proptest::collection::vec(0x20u8..0x7f, 0..20),
        token_entropy: [u8; 16],
        options in options_strategy(),
        server in server_strategy(),
        nodes in 1usize..=5,
        wait in prop_oneof![Just(0u64), 1u64..10_000],
    ) {
        let layout = match KeyLayout::tagged(&prefix) {
            Ok(layout) => layout,
            Err(e) => {
                prop_assert_eq!(e, ConfigError::BadPrefix);
                prop_assert!(prefix.iter().any(|&b| b == b'{' || b == b'}'), "refused a prefix without braces");
                return Ok(());
            }
        };
        let lock = match Lock::new(layout, &name, options) {
            Ok(lock) => lock,
            Err(e) => {
                prop_assert!(matches!(
                    e,
                    ConfigError::EmptyName | ConfigError::NameTooLong { .. } | ConfigError::NameControlByte { .. }
                        | ConfigError::NameStartsWithBrace | ConfigError::DriftExceedsTtl
                ), "{e:?}");
                return Ok(());
            }
        };
        let token = Token::from_entropy(token_entropy);
        let servers = vec![server; nodes];
        let now = ms(5);
        let mut acquire: Acquire<5> = Acquire::new(&lock, token.clone(), &servers, Duration::from_millis(wait), now, 1).unwrap();
        let sent = drain(&mut acquire, now);
        prop_assert_eq!(sent.len(), nodes);
        check_commands(&sent, &prefix, &name, &token, &options);
        let mut release: Release<5> = Release::new(&lock, token.clone(), &servers, now, 1).unwrap();
        check_commands(&drain(&mut release, now), &prefix, &name, &token, &options);
        let mut extend: Extend<5> = Extend::new(&lock, token.clone(), &servers, now, 1).unwrap();
        check_commands(&drain(&mut extend, now), &prefix, &name, &token, &options);
    }
}

// ---- robustness: arbitrary bytes and events ----

#[derive(Debug, Clone)]
enum Event {
    /// Bytes from a node: a piece of a plausible reply, or noise.
    Input(usize, Vec<u8>),
    /// Time passes (then any due timeout is handled).
    Advance(u64),
    Disconnect(usize),
    Cancel,
}

fn event_strategy(nodes: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (0..nodes, reply_or_noise(), any::<usize>()).prop_map(|(n, bytes, cut)| {
            // Sometimes only part of it: the rest may come in a later event, or never.
            let cut = if bytes.is_empty() { 0 } else { cut % (bytes.len() + 1) };
            let bytes = if cut == 0 { bytes } else { bytes[..cut].to_vec() };
            Event::Input(n, bytes)
        }),
        3 => (0u64..2000).prop_map(Event::Advance),
        1 => (0..nodes).prop_map(Event::Disconnect),
        1 => Just(Event::Cancel),
    ]
}

/// Applies events, then lets time run with no more input: the machine must end, in time.
fn run_events<Op: Operation, const N: usize>(
    m: &mut Machine<Op, N>,
    events: &[Event],
    start: Instant,
    bound: Duration,
) -> (Op::Outcome, Instant)
where
    Op::Outcome: std::fmt::Debug,
{
    let mut now = start;
    let mut buf = vec![0u8; 8192];
    let drain_all = |m: &mut Machine<Op, N>, now, buf: &mut Vec<u8>| {
        while m
            .poll_transmit(now, buf)
            .expect("8 KiB holds any lock command")
            .is_some()
        {}
    };
    drain_all(m, now, &mut buf);
    for event in events {
        match event {
            Event::Input(node, bytes) => m.handle_input(*node, bytes, now),
            Event::Advance(d) => {
                now = now.saturating_add(Duration::from_millis(*d));
                m.handle_timeout(now);
            }
            Event::Disconnect(node) => m.handle_disconnect(*node, now),
            Event::Cancel => m.cancel(now),
        }
        drain_all(m, now, &mut buf);
        if let Some(outcome) = m.poll_outcome() {
            return (outcome, now);
        }
    }
    for _ in 0..100_000 {
        drain_all(m, now, &mut buf);
        if let Some(outcome) = m.poll_outcome() {
            assert!(
                now <= start.saturating_add(bound),
                "ended at {now:?}, after the bound {bound:?} from {start:?}"
            );
            return (outcome, now);
        }
        let next = m
            .poll_timeout()
            .expect("a machine without an outcome must have a deadline");
        now = now.max(next);
        m.handle_timeout(now);
    }
    panic!("no outcome after 100000 timeouts: the machine is stuck");
}

fn robustness_options() -> impl Strategy<Value = (LockOptions, u64)> {
    (options_strategy(), prop_oneof![Just(0u64), 1u64..5000]).prop_map(|(mut o, wait)| {
        o.retry = RetryPolicy {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(200),
            ..o.retry
        };
        o.drift = Drift::default();
        (o, wait)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// No bytes and no order of events panic an acquire, and every acquire ends by
    /// `wait + 2 × request_timeout` once its nodes fall silent.
    #[test]
    fn acquire_survives_anything_and_always_ends(
        (options, wait) in robustness_options(),
        server in server_strategy(),
        events in proptest::collection::vec(event_strategy(3), 0..40),
    ) {
        let lock = Lock::new(KeyLayout::default(), b"p", options).unwrap();
        let start = ms(1000);
        let mut m: Acquire<3> =
            Acquire::new(&lock, Token::from_entropy([1; 16]), &[server; 3], Duration::from_millis(wait), start, 9).unwrap();
        let bound = Duration::from_millis(wait).saturating_add(options.request_timeout.saturating_mul(2));
        let (outcome, at) = run_events(&mut m, &events, start, bound);
        if let Ok(lease) = outcome {
            // A lease is never valid longer than ttl - drift from its attempt's start.
            prop_assert!(lease.valid_until() <= lock.valid_until(lease.started()));
            prop_assert!(lease.started() >= start && lease.started() <= at);
            prop_assert!(at < lease.valid_until());
        }
    }

    /// The same for release and extend.
    #[test]
    fn release_and_extend_survive_anything_and_always_end(
        (options, _) in robustness_options(),
        server in server_strategy(),
        events in proptest::collection::vec(event_strategy(3), 0..40),
    ) {
        let lock = Lock::new(KeyLayout::default(), b"p", options).unwrap();
        let start = ms(1000);
        let bound = options.request_timeout.saturating_mul(2);
        let mut release: Release<3> = Release::new(&lock, Token::from_entropy([1; 16]), &[server; 3], start, 9).unwrap();
        let (released, _) = run_events(&mut release, &events, start, bound);
        // Random replies may say anything; a release ends with a value either way.
        let _ = released;
        let mut extend: Extend<3> = Extend::new(&lock, Token::from_entropy([1; 16]), &[server; 3], start, 9).unwrap();
        let (outcome, _) = run_events(&mut extend, &events, start, bound);
        if let Ok(extended) = outcome {
            prop_assert!(extended.valid_until <= lock.valid_until(start));
        }
    }
}

// ---- reply matching under delay, loss of patience and retries ----

/// A reply due at an instant; for an acquire, which one it answers and whether it grants.
type Delivery = (Instant, Vec<u8>, Option<(u64, bool)>);

/// A node that answers every request in order, each after its own delay, with a scripted
/// answer: grant or busy for acquires. Replies may arrive long after the machine gave up.
struct SlowNode {
    queue: VecDeque<Delivery>,
    latest_acquire: u64,
    latest_granted_delivered: bool,
    ready_at: Instant,
}

fn reply_for(command_batch: &[Command], grant: bool, blpop_ms: u64) -> (Vec<u8>, bool, u64) {
    let verb = std::str::from_utf8(&command_batch[0][0]).unwrap();
    match verb {
        "SET" => {
            let mut bytes = if grant {
                b"+OK\r\n".to_vec()
            } else {
                b"$-1\r\n".to_vec()
            };
            if command_batch.len() == 2 {
                bytes.extend_from_slice(b":400\r\n");
            }
            (bytes, true, 0)
        }
        "BLPOP" => (b"*-1\r\n".to_vec(), false, blpop_ms),
        // Rollback: a compare-and-delete.
        _ => (b":0\r\n".to_vec(), false, 0),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// An acquire reports a lease only when a quorum of nodes granted *its current attempt*;
    /// a late grant that answers an attempt it gave up on never counts.
    #[test]
    fn a_reply_for_one_request_never_completes_another(
        nodes in prop_oneof![Just(1usize), Just(3), Just(5)],
        decisions in proptest::collection::vec((any::<bool>(), 0u64..1500), 1..200),
        signal: bool,
    ) {
        let options = LockOptions {
            ttl: Duration::from_secs(10),
            wake_signal: signal.then_some(Duration::from_secs(1)),
            request_timeout: Duration::from_millis(500),
            ..LockOptions::default()
        };
        let lock = Lock::new(KeyLayout::default(), b"m", options).unwrap();
        let start = ms(0);
        let mut m: Acquire<5> =
            Acquire::new(&lock, Token::from_entropy([3; 16]), &vec![ServerInfo::default(); nodes], Duration::from_secs(5), start, 4)
                .unwrap();
        let mut sim: Vec<SlowNode> = (0..nodes)
            .map(|_| SlowNode { queue: VecDeque::new(), latest_acquire: 0, latest_granted_delivered: false, ready_at: start })
            .collect();
        let mut script = decisions.iter().cycle();
        let mut acquire_ids = 0u64;
        let mut now = start;
        let mut last_attempt_sent = start;
        let outcome = loop {
            for sent in drain(&mut m, now) {
                let (grant, delay) = *script.next().unwrap();
                let (bytes, is_acquire, block) = reply_for(&sent.commands, grant, delay.min(300));
                let node = &mut sim[sent.node];
                let tag = if is_acquire {
                    acquire_ids += 1;
                    node.latest_acquire = acquire_ids;
                    node.latest_granted_delivered = false;
                    last_attempt_sent = now;
                    Some((acquire_ids, grant))
                } else {
                    None
                };
                // In order: never before the previous reply on this connection.
                let at = now.saturating_add(Duration::from_millis(delay + block)).max(node.ready_at);
                node.ready_at = at;
                node.queue.push_back((at, bytes, tag));
            }
            if let Some(outcome) = m.poll_outcome() {
                break outcome;
            }
            let next_reply = sim.iter().filter_map(|n| n.queue.front().map(|q| q.0)).min();
            let next = match (m.poll_timeout(), next_reply) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).expect("something must be pending"),
            };
            now = now.max(next);
            let mut delivered = false;
            for (i, node) in sim.iter_mut().enumerate() {
                if node.queue.front().is_some_and(|q| q.0 <= now) {
                    let (_, bytes, tag) = node.queue.pop_front().unwrap();
                    if let Some((id, grant)) = tag
                        && id == node.latest_acquire
                    {
                        node.latest_granted_delivered = grant;
                    }
                    m.handle_input(i, &bytes, now);
                    delivered = true;
                    break;
                }
            }
            if !delivered {
                m.handle_timeout(now);
            }
            prop_assert!(now < ms(60_000), "runaway");
        };
        match outcome {
            Ok(lease) => {
                let granted = sim.iter().filter(|n| n.latest_granted_delivered).count();
                prop_assert!(granted >= quorum(nodes), "lease with only {granted} current grants of {nodes}");
                prop_assert_eq!(lease.started(), last_attempt_sent);
            }
            Err(Error::NotAcquired { .. } | Error::QuorumLost { .. } | Error::Expired) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }
}

/// One step a renewal driver can take: time passes to some point, and an extend that is out
/// ends one way or another.
#[derive(Debug, Clone)]
enum RenewalStep {
    Advance(u64),
    Extended { took: u64, ttl_left: u64 },
    Failed,
    NotHeld,
}

fn renewal_step() -> impl Strategy<Value = RenewalStep> {
    prop_oneof![
        (0u64..20_000).prop_map(RenewalStep::Advance),
        (0u64..2_000, 0u64..40_000)
            .prop_map(|(took, ttl_left)| RenewalStep::Extended { took, ttl_left }),
        Just(RenewalStep::Failed),
        Just(RenewalStep::NotHeld),
    ]
}

proptest! {
    /// Whatever the driver and the servers do, the renewal schedule never asks to act past
    /// the validity, never reports a loss before the validity ends unless another token holds
    /// the lock, never moves the validity back, and once lost stays lost.
    #[test]
    fn renewal_schedule_keeps_its_invariants(
        ttl in 1u64..60_000,
        seed in any::<u64>(),
        steps in proptest::collection::vec(renewal_step(), 0..60),
    ) {
        use distlock_core::{ExtendOutcome, LostReason, Renewal, RenewalEvent};
        let ttl = Duration::from_millis(ttl);
        let mut now = ms(0);
        let mut r = Renewal::new(ttl, now, ms(0).saturating_add(ttl), seed);
        let mut extending = false;
        let mut lost = None;
        for step in steps {
            let before = r.valid_until();
            match step {
                RenewalStep::Advance(by) => {
                    let target = now.saturating_add(Duration::from_millis(by));
                    // A driver wakes at each deadline on the way (or late, at the target).
                    while let Some(at) = r.poll_timeout() {
                        if lost.is_none() {
                            prop_assert!(at <= r.valid_until(), "deadline past the validity");
                        }
                        let at = at.max(now);
                        if at > target { break; }
                        now = at;
                        r.handle_timeout(now);
                        match r.poll_event() {
                            Some(RenewalEvent::Extend) => extending = true,
                            Some(RenewalEvent::Lost(reason)) => {
                                prop_assert!(lost.is_none(), "lost twice");
                                prop_assert_eq!(reason, LostReason::Expired);
                                prop_assert!(now >= r.valid_until(), "expired early");
                                lost = Some(reason);
                            }
                            None => {
                                if r.poll_timeout() == Some(at) { break; }
                            }
                            Some(other) => prop_assert!(false, "unknown event {:?}", other),
                        }
                        if extending { break; }
                    }
                    now = now.max(target);
                }
                RenewalStep::Extended { took, ttl_left } => {
                    let started = now;
                    now = now.saturating_add(Duration::from_millis(took));
                    let until = started.saturating_add(Duration::from_millis(ttl_left));
                    r.handle_extend_outcome(ExtendOutcome::Extended { started, valid_until: until }, now);
                    extending = false;
                }
                RenewalStep::Failed => {
                    r.handle_extend_outcome(ExtendOutcome::Failed, now);
                    extending = false;
                }
                RenewalStep::NotHeld => {
                    let was_extending = extending && lost.is_none();
                    r.handle_extend_outcome(ExtendOutcome::NotHeld, now);
                    if was_extending {
                        prop_assert_eq!(r.poll_event(), Some(RenewalEvent::Lost(LostReason::NotHeld)));
                        lost = Some(LostReason::NotHeld);
                    }
                    extending = false;
                }
            }
            prop_assert!(r.valid_until() >= before, "validity moved back");
            if lost.is_some() {
                prop_assert_eq!(r.poll_timeout(), None);
                prop_assert_eq!(r.lost(), lost);
            }
        }
    }
}
