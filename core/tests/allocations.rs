//! Heap allocations of complete lock operations, and the size of each state machine.
//!
//! Its own test binary because linking `allocation-counter` installs its counting
//! `#[global_allocator]` for the whole binary. The counter is per thread, so libtest's other
//! threads do not disturb a measurement.
//!
//! An operation is counted the way a driver runs it: build the machine, drain
//! `poll_transmit` into a stack buffer, feed each node the exact bytes a Redis server
//! answers, until `poll_outcome` is `Some`. "Built" counts only the drain-and-feed part on a
//! machine built beforehand; "including build" counts `new` too. The lock, token and
//! servers are made before either (a `Lock` is inline storage: building one does not
//! allocate either, checked below).
//!
//! The single-node hot path (the crate doc promises it) and a 5-node Redlock round do not
//! allocate, with or without building the machine. A reply that decodes to a RESP aggregate
//! allocates its items (`Reply::Array` is a `Vec`): a fenced or reentrant acquire's
//! `{holds, fence}` (pinned below), a signalled `BLPOP`, the handshake's `HELLO` map; so does
//! a server error's message (`Box<str>`). None is on a plain lock's hot path.
//!
//! A Redis Cluster node's link (`ClusterLink`, which routes every command of that node) is
//! counted per command: three allocations (its copy of the command, the transmit, the reply
//! held in order), pinned so that decoding or buffering does not creep back in.
//!
//! `machine_sizes_are_bounded` prints each machine's `size_of` (`--nocapture`).

mod common;

use allocation_counter::{AllocationInfo, measure};
use common::{lock_with, ms, token};
use distlock_core::{
    Acquire, Duration, Extend, Extended, Flavor, Handshake, Lock, LockOptions, Machine, Operation,
    Protocol, Release, Released, Scripts, ServerInfo, Token, Version,
};

/// Drains every transmit, then feeds `reply` to each node in order until the outcome.
fn run<Op: Operation, const N: usize>(m: &mut Machine<Op, N>, reply: &[u8]) -> Op::Outcome {
    let mut buf = [0u8; 512];
    while let Some(_tx) = m.poll_transmit(ms(0), &mut buf).unwrap() {}
    for node in 0..m.nodes() {
        m.handle_input(node, reply, ms(1));
        if let Some(outcome) = m.poll_outcome() {
            return outcome;
        }
    }
    panic!("no outcome after every node answered")
}

/// What an operation allocates: (machine built beforehand, machine built inside).
struct Counts {
    built: AllocationInfo,
    including_build: AllocationInfo,
}

fn count<Op: Operation, const N: usize>(
    build: impl Fn() -> Machine<Op, N>,
    reply: &[u8],
    check: impl Fn(Op::Outcome),
) -> Counts {
    // Once outside, so nothing lazily set up on first use is charged to the operation.
    check(run(&mut build(), reply));
    let mut m = build();
    let mut outcome = None;
    let built = measure(|| outcome = Some(run(&mut m, reply)));
    check(outcome.take().unwrap());
    let including_build = measure(|| outcome = Some(run(&mut build(), reply)));
    check(outcome.unwrap());
    Counts {
        built,
        including_build,
    }
}

fn servers<const N: usize>(server: ServerInfo) -> [ServerInfo; N] {
    [server; N]
}

/// A server the handshake found to have the native compare-and-delete and `SET IFEQ`.
fn redis_8_4() -> ServerInfo {
    ServerInfo {
        protocol: Protocol::Resp3,
        flavor: Flavor::Redis,
        version: Version::new(8, 4, 0),
    }
}

fn acquire<const N: usize>(lock: &Lock, token: &Token, server: ServerInfo) -> Counts {
    // How a free lock answers: `OK` to `SET NX PX`, nil (no old value) to `SET NX PX GET`.
    let granted: &[u8] = match (server.has_set_nx_get(), server.protocol) {
        (false, _) => b"+OK\r\n",
        (true, Protocol::Resp3) => b"_\r\n",
        (true, _) => b"$-1\r\n",
    };
    count(
        || {
            Acquire::<N>::new(
                lock,
                token.clone(),
                &servers::<N>(server),
                Duration::ZERO,
                ms(0),
                1,
            )
            .unwrap()
        },
        granted,
        |outcome| assert!(outcome.is_ok(), "{outcome:?}"),
    )
}

fn release<const N: usize>(lock: &Lock, token: &Token, server: ServerInfo, reply: &[u8]) -> Counts {
    count(
        || Release::<N>::new(lock, token.clone(), &servers::<N>(server), ms(0), 1).unwrap(),
        reply,
        |outcome| assert_eq!(outcome, Ok(Released::Free)),
    )
}

fn extend<const N: usize>(lock: &Lock, token: &Token, server: ServerInfo, reply: &[u8]) -> Counts {
    count(
        || Extend::<N>::new(lock, token.clone(), &servers::<N>(server), ms(0), 1).unwrap(),
        reply,
        |outcome: Result<Extended, _>| assert!(outcome.is_ok(), "{outcome:?}"),
    )
}

fn report(name: &str, counts: &Counts) {
    let (b, i) = (&counts.built, &counts.including_build);
    println!(
        "{name:<36} built: {:>2} allocs {:>5} B   including build: {:>2} allocs {:>5} B",
        b.count_total, b.bytes_total, i.count_total, i.bytes_total
    );
}

fn assert_none(name: &str, counts: &Counts) {
    report(name, counts);
    assert_eq!(counts.built.count_total, 0, "{name}: {:?}", counts.built);
    assert_eq!(
        counts.including_build.count_total, 0,
        "{name} (including build): {:?}",
        counts.including_build
    );
}

#[test]
fn plain_lock_operations_do_not_allocate() {
    // The counter is installed and sees this thread (else every zero below is vacuous).
    let boxed = measure(|| drop(std::hint::black_box(Box::new(7u64))));
    assert_eq!((boxed.count_total, boxed.bytes_total), (1, 8));

    let setup = measure(|| {
        let lock = lock_with(LockOptions::default());
        std::hint::black_box(&lock);
    });
    assert_eq!(setup.count_total, 0, "building a Lock: {setup:?}");

    let lock = lock_with(LockOptions::default());
    let t = token(1);
    let unknown = ServerInfo::default();
    // No handshake: `SET NX PX` and the scripts by `EVALSHA`.
    assert_none("acquire, 1 node", &acquire::<1>(&lock, &t, unknown));
    assert_none("acquire, 5 nodes", &acquire::<5>(&lock, &t, unknown));
    assert_none(
        "release, 1 node",
        &release::<1>(&lock, &t, unknown, b":0\r\n"),
    );
    assert_none(
        "release, 5 nodes",
        &release::<5>(&lock, &t, unknown, b":0\r\n"),
    );
    assert_none(
        "extend, 1 node",
        &extend::<1>(&lock, &t, unknown, b":1\r\n"),
    );
    // Redis 8.4: `DELEX IFEQ` pipelined with the signal's `LPUSH`, `LTRIM`, `PEXPIRE`;
    // `SET IFEQ PX`.
    let server = redis_8_4();
    // Redis ≥ 7.0: `SET NX PX GET`, answered nil.
    assert_none(
        "acquire, 1 node, SET NX GET (Redis 8.4)",
        &acquire::<1>(&lock, &t, server),
    );
    assert_none(
        "acquire, 5 nodes, SET NX GET (Redis 8.4)",
        &acquire::<5>(&lock, &t, server),
    );
    assert_none(
        "release, 1 node, native (Redis 8.4)",
        &release::<1>(&lock, &t, server, b":1\r\n:1\r\n+OK\r\n:1\r\n"),
    );
    assert_none(
        "extend, 1 node, native (Redis 8.4)",
        &extend::<1>(&lock, &t, server, b"+OK\r\n"),
    );
    // Scriptless (`Scripts::Never`): the same commands, and the check of the servers'
    // commands at build time allocates nothing either.
    let scriptless = lock_with(LockOptions {
        scripts: Scripts::Never,
        ..LockOptions::default()
    });
    assert_none(
        "acquire, 1 node, scriptless",
        &acquire::<1>(&scriptless, &t, server),
    );
    assert_none(
        "release, 1 node, scriptless",
        &release::<1>(&scriptless, &t, server, b":1\r\n:1\r\n+OK\r\n:1\r\n"),
    );
    assert_none(
        "extend, 1 node, scriptless",
        &extend::<1>(&scriptless, &t, server, b"+OK\r\n"),
    );
}

/// The counter sees the core's own allocations: a fenced acquire's script answers
/// `{holds, fence}`, an array, which is decoded into `Vec`s. The exact count is pinned so a
/// change is noticed (this is not the plain hot path, which allocates nothing).
#[test]
fn an_array_reply_allocates() {
    let lock = lock_with(LockOptions {
        fenced: true,
        ..LockOptions::default()
    });
    let t = token(1);
    let counts = count(
        || {
            Acquire::<1>::new(
                &lock,
                t.clone(),
                &[ServerInfo::default()],
                Duration::ZERO,
                ms(0),
                1,
            )
            .unwrap()
        },
        b"*2\r\n:1\r\n:5\r\n",
        |outcome| assert_eq!(outcome.map(|lease| lease.fence()), Ok(Some(5))),
    );
    report("acquire, 1 node, fenced", &counts);
    // redis-protocol's range frames for the two items, then the `Reply`s borrowing from them.
    assert_eq!(counts.built.count_total, 2, "{:?}", counts.built);
    assert_eq!(counts.including_build.count_total, 2);
}

/// Prints (`--nocapture`) and bounds the size of every machine, so growth is noticed. Most of
/// a lock machine is inline storage: the lock (a name of up to 256 bytes, a prefix of up to
/// 64), the token (up to 64) and, per node, a 512-byte reply framer. The handshake buffers
/// replies up to 16 KiB (`INFO server`, `HELLO`). An acquire also carries fair mode's waiter
/// state (about 190 bytes, its own outcome and backoff among them). Every machine may carry
/// the one pipelined release its connection still owes (48 bytes, beside its links: the
/// bounds of one node were raised for it).
#[test]
fn machine_sizes_are_bounded() {
    use std::mem::size_of;
    let sizes = [
        ("Acquire<1>", size_of::<Acquire<1>>(), 1_950),
        ("Acquire<3>", size_of::<Acquire<3>>(), 3_200),
        ("Acquire<5>", size_of::<Acquire<5>>(), 4_500),
        ("Release<1>", size_of::<Release<1>>(), 1_500),
        ("Release<3>", size_of::<Release<3>>(), 2_750),
        ("Release<5>", size_of::<Release<5>>(), 4_000),
        ("Extend<1>", size_of::<Extend<1>>(), 1_500),
        ("Extend<3>", size_of::<Extend<3>>(), 2_750),
        ("Extend<5>", size_of::<Extend<5>>(), 4_000),
        ("Handshake", size_of::<Handshake>(), 17_000),
    ];
    for (name, size, bound) in sizes {
        println!("size_of::<{name}>() = {size} bytes (bound {bound})");
    }
    for (name, size, bound) in sizes {
        assert!(size <= bound, "{name} grew to {size} bytes (bound {bound})");
    }
}

/// Fair mode, uncontended: the acquire is one `EVALSHA` whose `{holds, fence}` array is its
/// only allocation (as for any script acquire, pinned above); the release, one `EVALSHA`
/// answered by an integer, allocates nothing.
#[test]
fn fair_uncontended_acquire_and_release_allocate_only_the_array_reply() {
    let lock = lock_with(LockOptions {
        fair: true,
        ..LockOptions::default()
    });
    let t = token(1);
    let counts = count(
        || {
            Acquire::<1>::new(
                &lock,
                t.clone(),
                &[ServerInfo::default()],
                Duration::from_secs(5),
                ms(0),
                1,
            )
            .unwrap()
        },
        b"*2\r\n:1\r\n:0\r\n",
        |outcome| assert_eq!(outcome.map(|lease| lease.holds()), Ok(1)),
    );
    report("acquire, 1 node, fair", &counts);
    assert_eq!(counts.built.count_total, 2, "{:?}", counts.built);
    assert_eq!(counts.including_build.count_total, 2);
    assert_none(
        "release, 1 node, fair",
        &release::<1>(&lock, &t, redis_8_4(), b":0\r\n"),
    );
}

/// What a Redis Cluster node adds per command on the driver's side ([`ClusterLink`]):
/// scenario A's pair (`SET NX PX`, `EVALSHA`) written, sent, answered and read. Each command
/// costs three allocations — the link's copy of it (kept to send again after a redirect),
/// the transmit, the reply held until the replies before it are read — and nothing else:
/// the command's arguments are read in place and a reply that is not an error is not
/// decoded.
#[test]
fn a_cluster_link_round_trip_allocates_three_times_per_command() {
    use distlock_core::{ClusterLink, Primary, SlotMap};
    let map = SlotMap::from_slots(
        b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$1\r\nh\r\n:1\r\n",
        Protocol::Resp2,
        "h",
    )
    .unwrap();
    let mut link = ClusterLink::new(
        map,
        Primary::new("h", 9).unwrap(),
        Protocol::Resp2,
        Duration::from_millis(1_000),
        false,
    );
    let acquire: &[u8] = b"*6\r\n$3\r\nSET\r\n$12\r\ndistlock:{a}\r\n$3\r\ntok\r\n$2\r\nNX\r\n$2\r\nPX\r\n$4\r\n1000\r\n";
    let release: &[u8] =
        b"*5\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$12\r\ndistlock:{a}\r\n$3\r\ntok\r\n";
    let pair = |link: &mut ClusterLink| {
        let mut buf = [0u8; 16];
        let mut read = Vec::new();
        for (command, reply) in [(acquire, &b"+OK\r\n"[..]), (release, b":1\r\n")] {
            link.write(command, ms(0)).unwrap();
            let (primary, bytes) = link.poll_transmit().unwrap();
            assert_eq!(bytes, command);
            link.handle_input(&primary, reply, ms(1)).unwrap();
            let n = link.read(&mut buf);
            read.push(buf[..n].to_vec());
        }
        read
    };
    // Once outside: the link's buffers and queues reach their size.
    assert_eq!(pair(&mut link), [b"+OK\r\n".to_vec(), b":1\r\n".to_vec()]);
    let mut read = Vec::with_capacity(20);
    let counted = measure(|| {
        for _ in 0..10 {
            let mut buf = [0u8; 16];
            for (command, reply) in [(acquire, &b"+OK\r\n"[..]), (release, b":1\r\n")] {
                link.write(command, ms(0)).unwrap();
                let (primary, bytes) = link.poll_transmit().unwrap();
                link.handle_input(&primary, reply, ms(1)).unwrap();
                let n = link.read(&mut buf);
                read.push((bytes.len(), n));
            }
        }
    });
    assert_eq!(read.len(), 20);
    assert!(read.iter().all(|&(sent, n)| sent > 0 && n > 0));
    assert!(link.is_idle());
    println!("cluster link, 10 pairs: {counted:?}");
    assert!(
        counted.count_total <= 20 * 3,
        "the cluster link allocates more per command than its three copies: {counted:?}"
    );
}
