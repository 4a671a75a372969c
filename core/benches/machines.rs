//! Micro-benchmarks of the lock machines: the CPU cost of one complete operation, with no
//! network and no clock.
//!
//! Inside the timed loop, per iteration: build the machine (`Acquire::new`, `Release::new`,
//! `Extend::new`, which copy the lock and take the token), drain `poll_transmit` into a
//! 512-byte buffer (encoding every command), feed each node in order the exact bytes a Redis
//! server answers (framing, decoding, matching the reply, the operation's decision), calling
//! `poll_outcome` after each, until it yields the outcome; drop the machine. The outcome (a
//! `Lease`, `Released`, `Extended`) goes back to criterion, which drops it untimed.
//!
//! Outside it: the `Lock` (name, layout, options), the token, the server list, the buffer and
//! the clock readings, made once; the token is cloned for each iteration by criterion's batch
//! setup (`iter_batched`), which is not timed. Each operation is run once before timing and its outcome
//! checked, so a bench that silently measures a failure path cannot pass.
//!
//! The servers are `ServerInfo::default()` (no handshake: `SET NX PX`, and the release and
//! extend scripts by `EVALSHA`; RESP2), plus one node of Redis 8.4 for the native `DELEX
//! IFEQ` and `SET IFEQ` paths (RESP3, as its handshake would choose). A 5-node acquire ends at its quorum: the third `+OK`; the two later
//! replies are the driver's to discard. A release hears every node out, so all five answer.
//!
//! Bench ids: `acquire/1-node`, `acquire/5-nodes`, `release/1-node`, `release/5-nodes`,
//! `release/1-node-redis-8.4`, `extend/1-node`, `extend/1-node-redis-8.4`.
//!
//! Run: `cargo bench -p distlock-core --bench machines -- --measurement-time 5`.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main};
use distlock_core::{
    Acquire, Duration, Error, Extend, Flavor, Instant, KeyLayout, Lock, LockOptions, Machine,
    Operation, Protocol, Release, ServerInfo, Token, Version,
};

/// When the machine is built and its requests go out.
const SENT: Instant = Instant::from_millis(1_000);
/// When the replies arrive.
const ANSWERED: Instant = Instant::from_millis(1_001);

/// Drains the machine's transmits, then feeds `reply` to each node in turn until the outcome.
fn run<Op: Operation, const N: usize>(
    mut m: Machine<Op, N>,
    reply: &[u8],
    buf: &mut [u8],
) -> Option<Op::Outcome> {
    while let Ok(Some(tx)) = m.poll_transmit(SENT, buf) {
        black_box(buf.get(..tx.len));
    }
    for node in 0..m.nodes() {
        m.handle_input(node, reply, ANSWERED);
        if let Some(outcome) = m.poll_outcome() {
            return Some(outcome);
        }
    }
    None
}

/// What every bench shares, made once.
struct Setup {
    lock: Lock,
    token: Token,
}

impl Setup {
    fn new() -> Self {
        Setup {
            lock: Lock::new(KeyLayout::default(), b"invoices", LockOptions::default())
                .expect("a valid lock"),
            token: Token::from_entropy([0x5a; 16]),
        }
    }

    fn acquire_with<const N: usize>(&self, token: Token, servers: &[ServerInfo]) -> Acquire<N> {
        Acquire::new(&self.lock, token, servers, Duration::ZERO, SENT, 1).expect("builds")
    }

    fn release_with<const N: usize>(&self, token: Token, servers: &[ServerInfo]) -> Release<N> {
        Release::new(&self.lock, token, servers, SENT, 1).expect("builds")
    }

    fn extend_with<const N: usize>(&self, token: Token, servers: &[ServerInfo]) -> Extend<N> {
        Extend::new(&self.lock, token, servers, SENT, 1).expect("builds")
    }
}

/// A server the handshake found to be Redis 8.4 (native compare-and-delete, `SET IFEQ`).
const REDIS_8_4: ServerInfo = ServerInfo {
    protocol: Protocol::Resp3,
    flavor: Flavor::Redis,
    version: Version::new(8, 4, 0),
};

/// One bench: `build` makes the machine from a fresh token (timed), `run` completes it.
fn bench<T: std::fmt::Debug, Op: Operation<Outcome = Result<T, Error>>, const N: usize>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    setup: &Setup,
    build: impl Fn(&Setup, Token) -> Machine<Op, N>,
    reply: &[u8],
) {
    let mut buf = [0u8; 512];
    let outcome = run(build(setup, setup.token.clone()), reply, &mut buf);
    assert!(
        outcome.as_ref().is_some_and(Result::is_ok),
        "{name}: the canned replies must succeed, got {outcome:?}"
    );
    group.bench_function(name, |b| {
        b.iter_batched(
            || setup.token.clone(),
            |token| run(build(black_box(setup), token), black_box(reply), &mut buf),
            BatchSize::SmallInput,
        );
    });
}

fn machines(c: &mut Criterion) {
    let setup = Setup::new();
    let unknown = ServerInfo::default();
    let one = [unknown];
    let five = [unknown; 5];
    let native = [REDIS_8_4];

    let mut acquire = c.benchmark_group("acquire");
    // `SET key token NX PX 30000` → `+OK`.
    let build = |s: &Setup, t| s.acquire_with::<1>(t, &one);
    bench(&mut acquire, "1-node", &setup, build, b"+OK\r\n");
    let build = |s: &Setup, t| s.acquire_with::<5>(t, &five);
    bench(&mut acquire, "5-nodes", &setup, build, b"+OK\r\n");
    acquire.finish();

    let mut release = c.benchmark_group("release");
    // `EVALSHA <release> 3 lock holds signal token 0 1000` → `:0` (released, no holds left).
    let build = |s: &Setup, t| s.release_with::<1>(t, &one);
    bench(&mut release, "1-node", &setup, build, b":0\r\n");
    let build = |s: &Setup, t| s.release_with::<5>(t, &five);
    bench(&mut release, "5-nodes", &setup, build, b":0\r\n");
    // `DELEX key IFEQ token`, then the wake-up signal's `LPUSH`, `LTRIM`, `PEXPIRE`, pipelined.
    let build = |s: &Setup, t| s.release_with::<1>(t, &native);
    let replies = b":1\r\n:1\r\n+OK\r\n:1\r\n";
    bench(&mut release, "1-node-redis-8.4", &setup, build, replies);
    release.finish();

    let mut extend = c.benchmark_group("extend");
    // `EVALSHA <extend> 2 lock holds token 30000` → `:1`.
    let build = |s: &Setup, t| s.extend_with::<1>(t, &one);
    bench(&mut extend, "1-node", &setup, build, b":1\r\n");
    // `SET key token IFEQ token PX 30000` → `+OK`.
    let build = |s: &Setup, t| s.extend_with::<1>(t, &native);
    bench(&mut extend, "1-node-redis-8.4", &setup, build, b"+OK\r\n");
    extend.finish();
}

criterion_group!(benches, machines);
criterion_main!(benches);
