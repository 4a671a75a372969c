//! A machine's node capacity `N` changes nothing but its size: over one server, an acquire,
//! release or extend built for one node (`Acquire<1>`, …) and one built for `MAX_NODES`
//! send the same bytes to the same node, ask for the same timeouts, end with the same
//! outcome and owe the same replies after it — whatever the replies, disconnects,
//! cancellations and passing time. Drivers (the engine component) build the one-node machine
//! for one-node sessions on the strength of this.

use distlock_core::{
    Acquire, Duration, Extend, Flavor, Instant, KeyLayout, Lock, LockOptions, MAX_NODES, Machine,
    Operation, Protocol, Release, RetryPolicy, ServerInfo, Token, Version,
};
use proptest::prelude::*;

mod common;

use common::reply_or_noise;

/// What a driver feeds a machine.
#[derive(Debug, Clone)]
enum Event {
    Input(Vec<u8>),
    /// Time passes, then any due timeout is handled.
    Advance(u64),
    Disconnect,
    Cancel,
}

/// What a driver sees of a machine after one event.
#[derive(Debug, PartialEq)]
struct Seen<O> {
    sent: Vec<(usize, Vec<u8>, Option<Duration>)>,
    timeout: Option<Instant>,
    outcome: Option<O>,
    owed: Option<u32>,
    handover: Option<u32>,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => reply_or_noise().prop_map(Event::Input),
        3 => (0u64..2000).prop_map(Event::Advance),
        1 => Just(Event::Disconnect),
        1 => Just(Event::Cancel),
    ]
}

fn server() -> impl Strategy<Value = ServerInfo> {
    (
        prop_oneof![Just(Protocol::Resp2), Just(Protocol::Resp3)],
        prop_oneof![Just(Flavor::Redis), Just(Flavor::Valkey)],
        0u16..10,
    )
        .prop_map(|(protocol, flavor, major)| ServerInfo {
            protocol,
            flavor,
            version: Version::new(major, 0, 0),
        })
}

fn lock() -> impl Strategy<Value = Lock> {
    (
        10u64..60_000,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(1u64..3000),
        1u64..3000,
    )
        .prop_map(|(ttl, fenced, reentrant, fair, signal, request_timeout)| {
            let options = LockOptions {
                ttl: Duration::from_millis(ttl),
                fenced,
                reentrant,
                fair,
                wake_signal: signal.map(Duration::from_millis),
                request_timeout: Duration::from_millis(request_timeout),
                retry: RetryPolicy {
                    base: Duration::from_millis(5),
                    cap: Duration::from_millis(200),
                    ..RetryPolicy::default()
                },
                ..LockOptions::default()
            };
            Lock::new(KeyLayout::default(), b"capacity", options).expect("a valid lock")
        })
}

/// Drives `machine` through `events` (and its own timeouts, a bounded number of them,
/// after them) and records what a driver sees after each.
fn trace<Op: Operation, const N: usize>(
    machine: &mut Machine<Op, N>,
    events: &[Event],
) -> Vec<Seen<Op::Outcome>> {
    let mut now = Instant::from_millis(1000);
    let mut buf = vec![0u8; 8192];
    let mut seen = Vec::new();
    let quiet = core::iter::repeat_n(None, 200);
    for event in events.iter().map(Some).chain(quiet) {
        match event {
            Some(Event::Input(bytes)) => machine.handle_input(0, bytes, now),
            Some(Event::Advance(ms)) => {
                now = now.saturating_add(Duration::from_millis(*ms));
                machine.handle_timeout(now);
            }
            Some(Event::Disconnect) => machine.handle_disconnect(0, now),
            Some(Event::Cancel) => machine.cancel(now),
            None => match machine.poll_timeout() {
                Some(next) => {
                    now = now.max(next);
                    machine.handle_timeout(now);
                }
                None => break,
            },
        }
        let mut sent = Vec::new();
        while let Some(tx) = machine
            .poll_transmit(now, &mut buf)
            .expect("8 KiB holds any lock command")
        {
            sent.push((tx.node, buf[..tx.len].to_vec(), tx.blocking));
        }
        let outcome = machine.poll_outcome();
        let over = outcome.is_some();
        seen.push(Seen {
            sent,
            timeout: machine.poll_timeout(),
            outcome,
            owed: machine.owed_replies(0),
            handover: machine.handover(0),
        });
        if over {
            break;
        }
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn an_acquire_for_one_node_runs_as_one_for_max_nodes(
        lock in lock(),
        server in server(),
        wait in prop_oneof![Just(0u64), 1u64..5000],
        seed in any::<u64>(),
        events in proptest::collection::vec(event(), 0..30),
    ) {
        let token = Token::from_entropy([7; 16]);
        let wait = Duration::from_millis(wait);
        let at = Instant::from_millis(1000);
        let mut one: Acquire<1> = Acquire::new(&lock, token.clone(), &[server], wait, at, seed).unwrap();
        let mut max: Acquire<MAX_NODES> = Acquire::new(&lock, token, &[server], wait, at, seed).unwrap();
        prop_assert_eq!(trace(&mut one, &events), trace(&mut max, &events));
    }

    #[test]
    fn a_release_and_an_extend_for_one_node_run_as_ones_for_max_nodes(
        lock in lock(),
        server in server(),
        seed in any::<u64>(),
        events in proptest::collection::vec(event(), 0..30),
    ) {
        let token = Token::from_entropy([7; 16]);
        let at = Instant::from_millis(1000);
        let mut one: Release<1> = Release::new(&lock, token.clone(), &[server], at, seed).unwrap();
        let mut max: Release<MAX_NODES> = Release::new(&lock, token.clone(), &[server], at, seed).unwrap();
        prop_assert_eq!(trace(&mut one, &events), trace(&mut max, &events));
        let mut one: Extend<1> = Extend::new(&lock, token.clone(), &[server], at, seed).unwrap();
        let mut max: Extend<MAX_NODES> = Extend::new(&lock, token, &[server], at, seed).unwrap();
        prop_assert_eq!(trace(&mut one, &events), trace(&mut max, &events));
    }
}
