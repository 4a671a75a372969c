//! # Deterministic simulation: mutual exclusion, fencing and renewal under faults
//!
//! A lock that ever lets two holders in is worse than no lock, so this simulator drives the
//! real `distlock-core` machines — the same [`distlock_core::Acquire`], `Release`, `Extend`,
//! `Handshake` and renewal schedule ([`distlock_core::Renewal`]) the host drives — against model Redis nodes ([`distlock_model`])
//! through a faulty network, with drifting and pausing clocks, in the spirit of
//! FoundationDB's simulator and TigerBeetle's VOPR. One seed decides everything; a failing
//! run replays exactly, event for event (`sim_same_params_same_run`).
//!
//! ## Running it
//!
//! - **CI** (`cargo test --workspace`, no flags): `sim_budget_*` run 100 proptest cases (and
//!   `sim_budget_one_node_fair` 30 fair ones) of
//!   ≥ 2,000 lock operations each — **≥ 200,000 operations** over 1, 3 and 5 nodes, every fault
//!   below, replays included — plus the tests that prove broken variants are caught and the
//!   documented limits. The core is built with `opt-level = 2` in test builds (root
//!   `Cargo.toml`), so the file takes seconds of CPU, not minutes. `DISTLOCK_SIM_SEED=<n>`
//!   draws other cases.
//! - **A failure** prints the violated property, the params, a one-line replay command and
//!   the last events of the trace (true time, then the actor's own clock), e.g.
//!   `[  88409.041ms] n2<c0#369 @556078ms: DELIFEQ {sim} e0e7fe0d…`.
//! - **Replay**: `DISTLOCK_SIM_REPLAY='<params>' cargo test -p distlock-core --test simulation
//!   -- --exact sim_replay --nocapture` prints the full trace (`DISTLOCK_SIM_TRACE=<n>`: the last
//!   n events).
//! - **Campaign**: `DISTLOCK_SIM_OPS=20000000 cargo test -p distlock-core --release --
//!   --ignored sim_campaign --nocapture` runs random cases on every core until that many
//!   operations, then prints runs, total ops, ops/s and violations found (each with its replay
//!   command). `DISTLOCK_SIM_THREADS`, `DISTLOCK_SIM_SEED`; `DISTLOCK_SIM_REPLAYS=1` adds the
//!   replay faults (which found the core bug below, now fixed).
//!
//! ## The world
//!
//! - **Nodes**: [`distlock_model::ModelNode`], each drawn from Redis 5.0 (no `HELLO`,
//!   RESP2, whole-second `BLPOP`), 6.2, 7.2, 8.4 (`DELEX`, `SET IFEQ`), Valkey 8.1 (`SET IFEQ`)
//!   and 9.0 (`DELIFEQ`), so every encoding path of the core runs. Faults: crash-restart
//!   (volatile keys lost, fence counters kept as with AOF; the node stays down until every key
//!   it held would have expired on its own clock — Redlock's delayed restart — then maybe
//!   `LOADING` for up to 500 ms), `SCRIPT FLUSH` (`NOSCRIPT`, then `EVAL`), `READONLY` spells.
//! - **Network**: one TCP connection per client and node, FIFO per direction; latency from
//!   20 µs to 5 ms, spikes of up to three request timeouts (so replies arrive after the client
//!   gave up, and messages reorder across connections); loss breaks the connection (both ends
//!   learn it later, as TCP does); partitions cut off a node or a client for up to 3 s, holding
//!   its messages until they heal (retransmission) or breaking the connection (keepalive).
//!   Two *replay* faults are off in CI, because the core does not survive them today (see
//!   "Core bug"): duplicated requests (a stray copy executed later, at-least-once delivery) and
//!   half-open connections (a connection the client gave up on still delivers the requests
//!   already on their way).
//! - **Clocks**: every client and node has its own origin and a fixed rate within ±ρ of true
//!   time (ρ up to 1%). Clients pause (GC, VM) for up to 3 s; a pause may fall between checking
//!   the validity and writing to the protected resource.
//! - **Clients** (2 to 16) drive the machines as the host does: a handshake per connection,
//!   machines built from what it learned, reconnects decided by the core's node-set
//!   [`distlock_core::Session`] (options from the client's request timeout, jitter seeded
//!   from the world's generator), driven as the lock component drives it: each connect is
//!   reported started, then ended once — `connected` when its handshake completes,
//!   `connect_failed` when the handshake fails or the connection breaks before it completes,
//!   `disconnected` when a ready connection is lost or falls out of step; `handle_timeout`
//!   runs whenever the client acts (its next tick includes `poll_timeout`), a handshake the
//!   session gave up on (past the request timeout) is closed, and every node `poll_connect`
//!   names is opened (a lost node at once, a failed one after its jittered pause); the first
//!   connects end when `any_connecting` is false. A connection's owed replies either
//!   discarded by the client before it is reused (odd-numbered clients, as the simulator's own
//!   reader) or handed to the next machine to discard itself (even-numbered clients,
//!   `Machine::handover` / `discard_replies`, as the lock component does; a `discard_replies`
//!   that discards nothing fails every budget test). Each loops: acquire (a try-lock, or a wait of up to 4 TTLs) →
//!   critical section (mostly inside the validity, sometimes to its end or past it) with writes
//!   to a protected resource → maybe extend → release. A third of the holders instead hold one
//!   to three TTLs under a [`distlock_core::Renewal`], driven as the host's watchdog drives it
//!   (`renew` in `host/src/client.rs`): an `Extend` event runs an extend machine over the same
//!   network and its outcome goes back to `handle_extend_outcome`; the schedule's
//!   `poll_timeout` wakes the client, also while an extend is out (the host races the extend
//!   against the validity's end); on `Lost` the client stops acting as the holder, gives up
//!   the extend it awaited and releases. Such a holder writes only while the schedule has not
//!   reported `Lost` and its own clock is before `valid_until()`. Policies are drawn per client: TTL 20 ms
//!   to 5 s, request timeout 20–300 ms, retry base/cap/jitter, wake-up signal or polling,
//!   reentrant or not; fencing per run. The drift allowance is what the deployment's clocks
//!   need: `per_million = max(1%, 2ρ)` plus 2 ms (two clocks within ±ρ drift 2ρ apart).
//! - **Drain**: after the run's operations the faults stop, and every client takes the lock
//!   once more, with a wait long enough for what is still healing, the rest of a renewing
//!   holder's critical section, plus everyone's turn.
//!
//! ## The properties, and how each is checked
//!
//! 1. **Mutual exclusion** — a client believes a lease valid from its acquire outcome until
//!    its own clock reaches `valid_until` (or an extend's), or until it starts releasing. At
//!    each acquire or extend outcome, no other client's belief may extend past that instant of
//!    true time.
//! 2. **Fencing** — the claim of [`distlock_core::acquire`]: a lease's fence exceeds the fence
//!    of every lease reported before its winning attempt started (the earliest true instant
//!    its client's clock showed `lease.started()`), across crashes, since the counters survive.
//!    End to end, a fencing resource (accepts a write whose fence is at least the largest seen)
//!    never accepts a write of an older lease after a newer lease wrote.
//! 3. **Owner-only** — around every command a node runs: if the lock key held token X before
//!    and its value or expiry differ after, X must be one of the command's arguments. So no
//!    release, rollback or extend with a stale or foreign token removes or prolongs a lease.
//! 4. **Liveness** — after the faults stop, every client's final acquire succeeds within its
//!    bounded wait and the run ends; `sim_without_faults_every_client_acquires` checks 16
//!    clients on 1, 3 and 5 nodes without faults. Renewal: on a healthy network (no fault
//!    but clock drift, round trips ≤ 2 ms) a schedule that reports `Lost` is a violation
//!    (`sim_without_faults_renewing_holders_keep_their_leases`).
//! 5. **No panics, no stuck machines** — a panic anywhere is a violation; every machine has its
//!    outcome by its deadline on the client's clock (acquire: wait + 2 request timeouts;
//!    release, extend: 2 request timeouts); a machine without an outcome always has a timeout
//!    to wait for; a reply beyond what `owed_replies` announced is a violation.
//! 6. **Lost before validity ends** — a renewing holder never believes in its lease past the
//!    instant the servers stop holding it for its token on a majority (the keys expire, or
//!    another token takes them): so `Lost` comes before anyone else could take the lock. The
//!    simulator reads the nodes' keys: a majority holds the lease until the quorum-th latest
//!    expiry (in true time, through each node's clock) among the nodes holding its token; a
//!    node that is down keeps the key it crashed with until that key's expiry, since nobody
//!    can take the lock there and the delayed restart outlasts it. Checked whenever a node
//!    runs a command and whenever the holder's belief changes (acquire, renewal): the belief
//!    must not end later. Between those instants keys only expire on their own, so no instant
//!    escapes; and a belief is what the client acts on even if every later message is lost,
//!    so one that outlasts the keys is a second holder in waiting, whether or not someone
//!    else got in this time.
//! 7. **Connects as the session allows** — a client opens a connection only when its
//!    session allows one (`may_connect`: never while the node backs off, never beside a
//!    connect still under way) and the node has none open; every connect reported started is
//!    answered by exactly one end: after every client step, the connects reported started and
//!    not ended, the session's `outstanding` count and the handshakes under way (one or none
//!    per node) agree, and no end is reported for a connect never started. Checked on every
//!    connect and after every step; `sim_catches_reconnects_that_ignore_the_session` shows a
//!    client that reconnects a failed node on its own is caught.
//! 8. **No lost wake-up** (`sim/wakeup.rs`, its own healthy world: no faults, 1–3 ms
//!    one-way latency, holders that sometimes crash and leave their key to expire) — while
//!    the lock is free (a quorum of nodes has no key) and a waiter is blocked on a wake-up
//!    list, an attempt reaches a node or a waiter is woken within one round trip on one node
//!    (7 ms), within the retry cap over several (a waiter watches one node's list; a lock
//!    freed by a rollback elsewhere is noticed at the end of its span). `sim_no_lost_wakeup`
//!    (1, 3, 5 nodes; 2–12 clients), the broken variant `sim_catches_releases_that_push_no_signal`
//!    (one client releases without a signal: caught), the waiting mark's broken variants
//!    `sim_catches_waiters_that_do_not_mark_and_releases_that_ignore_the_mark` (a server that
//!    drops the waiter's mark, so its attempts run unmarked; a release that skips the push
//!    without looking at the mark: both caught), the limits
//!    `limit_redlock_waiters_watch_one_node` and `limit_mixed_ttls_time_waits_by_an_earlier_holder`
//!    (holders with different TTLs on one lock: a waiter's span is timed by the holder that
//!    refused it). Campaign: `DISTLOCK_SIM_OPS=200000 cargo test -p distlock-core --test
//!    simulation -- --ignored sim_wakeup_campaign --nocapture`: 334 runs, 200,400 leases,
//!    443,528 frees with waiters checked, zero violations.
//! 9. **Fair mode, first in first out among live waiters** (one-node runs with `fair=1`: every
//!    client's lock is fair, and one waiting client at a time crashes — stops for 2 to 4
//!    request timeouts or a second more — now and then) — around every command the node
//!    runs, from its queue (`{sim}:queue`) and liveness keys before and after: a live waiter
//!    leaves the queue only with the lock or by its own command; a hand-off goes only to a
//!    live waiter; when the lock changes hands it goes to the first live waiter (a waiter's
//!    own cycle counting itself live). Properties 1–5 hold in these runs as in any other.
//! 10. **Fair mode, no lost wake-up, bounded stall** — on a healthy network, after every
//!     command: while a live waiter queues and no *confirmed* holder has the lock (it is free,
//!     or handed to a waiter that has not confirmed), the gap closes within one cycle
//!     (`R / 2`), or within `2 R` while a crashed waiter may still stand in the queue (both
//!     for the longest `R` of the run, plus 2% and 10 ms). Observed: 0.27 ms at most without
//!     a crash (one round trip: the hand-off wakes the waiter at once), 284 ms after one
//!     (`sim_fair_without_faults_serves_every_waiter_in_order`).
//! 11. **A confirmed release stays released** — around every command a node runs: if the
//!     lock key afterwards holds a token it did not hold before, no release of that token
//!     has returned confirmed. A Redlock acquire returns at a quorum with a slower node's
//!     `SET` still on its way; the release to that node goes behind it on the same
//!     connection (`Machine::handover` / `discard_replies`, or the replies discarded by the
//!     connection's reader first), so the `SET` never lands after the delete and keeps the
//!     name held until its TTL. Checked in runs without the replay faults (a half-open
//!     connection's request may land after a later one over a new connection: a liveness
//!     cost the documented limits already name); the host keeps the same order
//!     (`host/src/straggler.rs`, `host/tests/faults_slow.rs`).
//!
//! ## Where the properties hold
//!
//! Under everything above except the replay faults: the CI budget (202,790 operations in 100
//! runs with the session driving reconnects, every property, zero violations) and campaigns (2,471 runs, 5,002,956 operations in 190 s on two
//! threads of a shared machine, 26,320 ops/s, zero violations). With renewing holders, the
//! session driving reconnects and faults that stop at the drain
//! (`DISTLOCK_SIM_OPS=10000000 DISTLOCK_SIM_THREADS=1`, release, on a machine busy with a CI
//! run): **4,934 runs, 10,001,001 operations in 743 s, 13,460 ops/s, zero violations** of
//! every property, 6 and 7 included.
//!
//! Earlier, one liveness failure (property 4, `seed=14726277675834894422,nodes=5,loss=17`)
//! came from the drain itself: message loss and duplication went on after "the faults stop",
//! and seven final acquires on five nodes split their votes while rollbacks that could not be
//! sent over broken connections left keys for a TTL. Loss, duplication and latency spikes now
//! stop at the drain as documented (the same 2,000,000-operation campaign that found it: 987
//! runs, zero violations). The drain's wait also covers one reconnect pause
//! ([`distlock_core::RECONNECT`]'s cap, 2 s): a node that failed just before the faults
//! stopped is tried again only after it.
//!
//! Driving the session found a core bug (fixed in `core/src/session.rs`, unit test
//! `a_node_tried_again_after_its_pause_is_connecting`): a node tried again after its pause
//! was still reported backing off, so a driver that closes the handshakes the session gave up
//! on (the lock component does) closed the new one at once, and a node that had failed once
//! never came back — the first CI budget runs failed property 4 (a one-node run acquired
//! nothing after the faults healed).
//!
//! ## Where they cannot hold, and the simulation result that shows it
//!
//! Each row is a test that asserts the simulator finds the failure (results at the time of
//! writing; every failure prints its replay command).
//!
//! | Condition | What breaks | Test | Result |
//! |---|---|---|---|
//! | Validity without the drift term (`Drift { per_million: 0, fixed: 0 }`), clocks ±0.2–1% | mutual exclusion | `sim_catches_validity_without_the_drift_term` | caught in run 3: two clients both valid for 0.55 ms over 5 nodes |
//! | Redlock's default allowance (1% + 2 ms) with clocks ±1% each (2% apart) | mutual exclusion | `limit_default_drift_does_not_cover_one_percent_clocks` | caught in run 23: both valid for 7.8 ms over 3 nodes |
//! | A node restarts at once without its keys (no delayed restart) | mutual exclusion | `limit_restart_without_delay_breaks_mutual_exclusion` | caught in run 1: both valid for 56.5 ms |
//! | A node loses its fence counters in a restart (no AOF) | fence order | `limit_lost_fence_counters_break_the_fence_order` | caught in run 1: a lease with fence 1 after a lease with fence 1 |
//! | A client pause (or slow write) longer than the remaining validity, without fencing | the protected resource | `limit_pauses_without_fencing_let_stale_writes_in` | 155 of 3,100 writes in 10 runs arrived after a newer lease wrote and were accepted; with fencing, the same pauses: 101 of 2,404 refused, none accepted out of order |
//! | A server whose compare-and-delete ignores the token | owner-only (then mutual exclusion) | `sim_catches_release_without_the_token_check` | caught in run 1, 6 ms in |
//! | A server whose compare-and-extend ignores the token | owner-only | `sim_catches_extend_without_the_token_check` | caught in run 1 |
//! | A renewal driver that ignores `Lost` and acts until its own deadline (last validity + one renewal period) | lost before validity ends | `sim_catches_renewal_that_ignores_lost` | caught in run 1, at the first renewing acquire: believes until t=1,092 ms, keys expire on a majority at t=831 ms |
//! | A renewal schedule run on validities without the drift term (`started + ttl`), clocks ±0.2–1% | lost before validity ends | `sim_catches_renewal_without_the_drift_term` | caught in run 1: the keys expire on a majority 7.0 ms before the holder stops |
//! | A client that reconnects a failed node at once, ignoring the session's pause | connects as the session allows | `sim_catches_reconnects_that_ignore_the_session` | caught in run 1: a connect to a node backing off |
//! | Fair mode: a release that hands the lock to the queue's head without checking its liveness, for good | fair: first in first out among live waiters | `sim_catches_handoff_without_liveness` | caught in run 1: handed to a crashed waiter |
//! | Fair mode: a release that wakes the head without setting the lock to it | fair: first in first out among live waiters | `sim_catches_wake_before_handoff` | caught in run 1: a live waiter taken out of the queue without the lock |
//! | A driver that sends the release over a new connection while a slow node still owes the acquire's `SET` reply on the old one | a confirmed release stays released (11) | `sim_catches_a_release_sent_beside_a_slow_nodes_set` | caught in run 2: the slow node's `SET NX` landed after the release had returned |
//! | Requests replayed late (duplicates, half-open connections) | held since the fix below | `late_rollbacks_cannot_delete_a_later_attempts_key`, and the CI budget (replays on) | was: 12 of 30 runs broke mutual exclusion |
//!
//! Pauses alone do not break property 1 as defined (a paused client's belief still ends at
//! its validity deadline); what they break is the resource, unless it checks fences. Not
//! simulated: nested re-entry (reentrant locks are used, never re-entered), replicas and
//! failover lag (only `READONLY` spells), clocks that jump, authentication and TLS.
//!
//! ## Core bug found by the simulator (fixed)
//!
//! **Was: every attempt of one acquire uses the same token, so a failed attempt's rollback that
//! reaches a node late deletes the key of a later, winning attempt.** The rollback is a
//! compare-and-delete by token, and the token cannot tell attempts apart. On one connection
//! FIFO keeps the rollback ahead of the next attempt; but when the driver replaces a broken
//! connection, requests still on their way over the old one (a half-open connection — the
//! client gave up, the server has not noticed; or commands queued behind a blocked `BLPOP`)
//! run after the new connection's, and so does a duplicated request. No duplication is needed:
//! `seed=17073770981488390148,nodes=3,clients=3,ops=2000,fenced=1,variant=correct,drift=8049,
//! latency=2905,spikes=30,loss=20,dup=0,late=1000,partitions=0,crashes=0,flushes=9614,
//! readonly=0,pauses=0,pause_max=2171` (reentrant, fenced; client 2, token `3d7a4396…`):
//!
//! ```text
//! [108726.369ms] c2>n2: EVALSHA <acquire> …          attempt k on connection #446
//! [108726.369ms] network: connection 446 half-open: requests in flight still reach n2
//! [108809.372ms] c2>n2: EVALSHA <release> … 3d7a4396… 1 0   rollback of attempt k, also on #446
//! [108823.372ms] c2 connects to n2 (#448)
//! [109018.119ms] n2<c2#448: EVALSHA <acquire> … 3d7a4396…  replies *2 :1 :868   the winning attempt
//! [109099.377ms] c2: ACQUIRED lease #261 fence 868, valid until t=109695.404ms
//! [109240.053ms] n2<c2#446: EVALSHA <release> … 3d7a4396… 1 0  replies :0   the old rollback: key gone
//! [109420.516ms] c1: ACQUIRED lease #262 fence 874 — both valid for 275 ms
//! ```
//!
//! The simulator found it in 12 of 30 runs with replay faults on. **Fixed** in the core:
//! each attempt now writes its own token (`Token::for_attempt`) and reports the winning one
//! in the lease, so a rollback can only ever delete its own attempt's key; a replayed acquire
//! only leaves a key nobody holds, which expires (a liveness cost, not a safety one).
//! `late_rollbacks_cannot_delete_a_later_attempts_key` replays the same 30 runs, and the CI
//! budget now runs with replay faults on.

mod sim;

use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant as WallClock;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use sim::{Faults, Params, Property, Report, TRACE_TAIL, Variant};

// ---------------------------------------------------------------------------------------
// Strategies: proptest draws the seed and the fault settings (and shrinks them: fewer
// clients, fewer faults, lower rates, when a run fails).
// ---------------------------------------------------------------------------------------

/// Fault settings; each fault is off in about half the runs. `replays`: also deliver
/// requests again late (duplicates, half-open connections), which the protocol does not
/// survive today (see "Core bug" in the module doc).
fn faults(replays: bool) -> impl Strategy<Value = Faults> {
    let replay = move |high: u32| {
        if replays {
            prop_oneof![Just(0u32), 1u32..high].boxed()
        } else {
            Just(0u32).boxed()
        }
    };
    (
        (
            prop_oneof![Just(0u32), 1u32..=10_000],
            200u32..5_000,
            prop_oneof![Just(0u32), 1u32..30],
            prop_oneof![Just(0u32), 1u32..20],
            replay(20),
            replay(1000),
        ),
        (
            prop_oneof![Just(0u32), 500u32..20_000],
            prop_oneof![Just(0u32), 1_000u32..30_000],
            prop_oneof![Just(0u32), 200u32..10_000],
            prop_oneof![Just(0u32), 500u32..20_000],
            prop_oneof![Just(0u32), 200u32..10_000],
            1u32..3_000,
        ),
    )
        .prop_map(
            |(
                (drift_ppm, latency_us, spikes, loss, dup, late),
                (partitions, crashes, flushes, readonly, pauses, pause_max),
            )| Faults {
                drift_ppm,
                latency_us,
                spikes,
                loss,
                dup,
                late,
                partitions,
                crashes,
                flushes,
                readonly,
                pauses,
                pause_max,
            },
        )
}

fn params(
    nodes: impl Strategy<Value = usize>,
    ops: u64,
    variant: Variant,
    replays: bool,
) -> impl Strategy<Value = Params> {
    (
        any::<u64>(),
        nodes,
        2usize..=16,
        any::<bool>(),
        faults(replays),
    )
        .prop_map(move |(seed, nodes, clients, fenced, faults)| Params {
            seed,
            nodes,
            clients,
            ops,
            fenced,
            // Fair runs are drawn on their own (`fair_params`), so these draws stay as they were;
            // so are scriptless ones (`budget`).
            fair: false,
            scriptless: false,
            pipelined: false,
            variant,
            faults,
        })
}

fn any_nodes() -> impl Strategy<Value = usize> {
    prop_oneof![Just(1usize), Just(3), Just(5)]
}

/// Fair runs: one node, every client's lock fair, waiters crashing now and then.
fn fair_params(ops: u64, variant: Variant, replays: bool) -> impl Strategy<Value = Params> {
    with(params(Just(1usize), ops, variant, replays), |p| {
        p.fair = true
    })
}

/// The proptest seed: fixed, so CI runs the same cases every time; `DISTLOCK_SIM_SEED`
/// explores others.
fn base_seed(default: u64) -> u64 {
    std::env::var("DISTLOCK_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn runner(seed: u64, cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    })
}

/// A failing run, as proptest reports it: the violation, the params, the replay command and
/// the trace's tail (a second, traced run of the same params: runs are deterministic).
fn failure(report: &Report) -> String {
    let traced = sim::run(&report.params, true);
    traced.describe(TRACE_TAIL)
}

// ---------------------------------------------------------------------------------------
// The CI budget: ≥ 200,000 lock operations over 1, 3 and 5 nodes, every fault, replays
// (duplicated requests, half-open connections) included.
// ---------------------------------------------------------------------------------------

/// Operations per run before the faults heal (each run then drains: a few dozen more).
const OPS_PER_RUN: u64 = 2_000;

/// Runs `cases` proptest cases over `nodes` (fair ones with `fair`); every property must hold
/// in every run.
fn budget(name: &str, nodes: impl Strategy<Value = usize>, cases: u32, seed: u64, fair: bool) {
    budget_of(name, nodes, cases, seed, move |p| p.fair = fair);
}

/// [`budget`] over runs that `shape` changes (fair, scriptless).
fn budget_of(
    name: &str,
    nodes: impl Strategy<Value = usize>,
    cases: u32,
    seed: u64,
    shape: impl Fn(&mut Params) + Copy + 'static,
) {
    let (fair, pipelined) = {
        let mut probe = Params::decode("").unwrap();
        shape(&mut probe);
        (probe.fair, probe.pipelined)
    };
    let started = WallClock::now();
    let ops = Cell::new(0u64);
    let runs = Cell::new(0u64);
    let leases = Cell::new(0u64);
    // Renewing holds, their successful renewals, and holds whose schedule reported `Lost`.
    let renewing = Cell::new((0u64, 0u64, 0u64));
    // Fair runs: hand-offs and crashed waiters.
    let fair_counts = Cell::new((0u64, 0u64));
    // Pipelined runs: releases written, then checked released, not held, unconfirmed.
    let pipelined_counts = Cell::new([0u64; 4]);
    let strategy = with(params(nodes, OPS_PER_RUN, Variant::Correct, true), shape);
    let result = runner(base_seed(seed), cases).run(&strategy, |p| {
        let report = sim::run(&p, false);
        ops.set(ops.get() + report.ops);
        runs.set(runs.get() + 1);
        leases.set(leases.get() + report.stats.leases);
        let (holds, renewals, lost) = renewing.get();
        renewing.set((
            holds + report.stats.renewing_holds,
            renewals + report.stats.renewals,
            lost + report.stats.renewals_lost,
        ));
        let (handoffs, crashes) = fair_counts.get();
        fair_counts.set((
            handoffs + report.stats.handoffs,
            crashes + report.stats.waiter_crashes,
        ));
        let mut counts = pipelined_counts.get();
        let stats = &report.stats;
        for (count, more) in counts.iter_mut().zip([
            stats.pipelined_releases,
            stats.pipelined_released,
            stats.pipelined_not_held,
            stats.pipelined_unconfirmed,
        ]) {
            *count += more;
        }
        pipelined_counts.set(counts);
        match &report.violation {
            None => Ok(()),
            Some(_) => Err(TestCaseError::fail(failure(&report))),
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let (holds, renewals, lost) = renewing.get();
    println!(
        "{name}: {} runs, {} lock operations in {secs:.1} s ({:.0} ops/s); {} leases, {holds} of them renewing: {renewals} renewals, {lost} lost",
        runs.get(),
        ops.get(),
        ops.get() as f64 / secs,
        leases.get()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    if fair {
        let (handoffs, crashes) = fair_counts.get();
        println!("{name}: {handoffs} hand-offs, {crashes} waiters crashed");
        assert!(handoffs > 0 && crashes > 0, "{name}: fair mode barely ran");
    }
    if pipelined {
        let [sent, released, not_held, unconfirmed] = pipelined_counts.get();
        println!(
            "{name}: {sent} pipelined releases: {released} checked released, {not_held} not held, {unconfirmed} unconfirmed"
        );
        // Each check is counted once, and no release is checked twice.
        assert!(
            released + not_held + unconfirmed <= sent,
            "{name}: more checks than releases"
        );
        assert!(
            released > 0 && unconfirmed > 0,
            "{name}: pipelined release barely ran"
        );
    }
    // The renewal schedule ran, both ways: leases kept past their TTL, and leases lost to
    // the faults (each checked by property 6).
    assert!(renewals > holds && lost > 0, "{name}: renewal barely ran");
    assert!(
        ops.get() >= u64::from(cases) * OPS_PER_RUN,
        "{name}: only {} operations",
        ops.get()
    );
}

#[test]
fn sim_budget_one_node() {
    budget("one node", Just(1usize), 50, 0xd157_0001, false);
}

#[test]
fn sim_budget_three_nodes() {
    budget("three nodes", Just(3usize), 30, 0xd157_0003, false);
}

#[test]
fn sim_budget_five_nodes() {
    budget("five nodes", Just(5usize), 20, 0xd157_0005, false);
}

/// Pipelined release on one node under the whole fault mix: half the clients release
/// without waiting for the reply, and the next machine on the connection reads and checks
/// it. Exclusion and every other property hold: a late delete of our own token only keeps
/// the name held longer.
#[test]
fn sim_budget_one_node_pipelined() {
    budget_of("one node, pipelined", Just(1usize), 30, 0xd157_7e1e, |p| {
        p.pipelined = true;
    });
}

/// Fair mode under the whole fault mix, crashed waiters included: exclusion, fence order
/// and every other property, plus first in first out among live waiters (property 9).
#[test]
fn sim_budget_one_node_fair() {
    budget("one node, fair", Just(1usize), 30, 0xd157_fa1e, true);
}

/// Scriptless locks (`Scripts::Never`: `SET NX PX`, `SET … IFEQ`, `DELIFEQ` / `DELEX … IFEQ`
/// with the signal's non-atomic pipeline) on servers with no scripting at all, under the
/// whole fault mix: every property holds (fencing aside: a scriptless lock has none).
#[test]
fn sim_budget_scriptless() {
    budget_of("scriptless", any_nodes(), 30, 0xd157_5c01, |p| {
        p.scriptless = true;
        p.fenced = false;
    });
}

/// Fair mode on a healthy network (clocks drifting within the allowance), with waiters
/// crashing: every client, up to 14, is served; no live waiter is passed over (property 9);
/// the lock is never without a confirmed holder for more than one cycle while a live waiter
/// queues, or `2 R` after a waiter crashed (property 10).
#[test]
fn sim_fair_without_faults_serves_every_waiter_in_order() {
    let (mut handoffs, mut crashes, mut gap, mut gap_crashed) = (0, 0, 0, 0);
    for i in 0..6u64 {
        let p = Params {
            seed: 0xfa1e_0000 + i,
            nodes: 1,
            clients: 4 + 2 * i as usize,
            ops: 2_000,
            fenced: i % 2 == 0,
            fair: true,
            scriptless: false,
            pipelined: false,
            variant: Variant::Correct,
            faults: Faults {
                drift_ppm: 3_000,
                ..Faults::NONE
            },
        };
        let report = sim::run(&p, false);
        assert!(report.violation.is_none(), "{}", failure(&report));
        assert_eq!(
            report.stats.final_acquires,
            p.clients as u64,
            "{}",
            report.describe(0)
        );
        handoffs += report.stats.handoffs;
        crashes += report.stats.waiter_crashes;
        gap = gap.max(report.stats.longest_gap_us);
        gap_crashed = gap_crashed.max(report.stats.longest_gap_after_crash_us);
    }
    println!(
        "fair, healthy: {handoffs} hand-offs, {crashes} waiters crashed; longest stall with a live waiter queued: {gap} µs, {gap_crashed} µs after a crash"
    );
    assert!(
        handoffs > 100 && crashes > 10,
        "{handoffs} hand-offs, {crashes} crashes"
    );
}

/// Property 4 without faults: every client, up to 16 of them, acquires.
#[test]
fn sim_without_faults_every_client_acquires() {
    for (i, nodes) in [1usize, 3, 5].into_iter().enumerate() {
        let p = Params {
            seed: 0x11fe + i as u64,
            nodes,
            clients: 16,
            ops: 1_000,
            fenced: i != 1,
            fair: false,
            scriptless: false,
            pipelined: false,
            variant: Variant::Correct,
            faults: Faults::NONE,
        };
        let report = sim::run(&p, false);
        assert!(report.violation.is_none(), "{}", failure(&report));
        assert_eq!(report.stats.final_acquires, 16, "{}", report.describe(0));
        assert!(report.stats.leases > 16, "{}", report.describe(0));
    }
}

/// Property 4's renewal clause and property 6 without faults: holders that renew (a third
/// of them) keep their leases one to three TTLs long, over clocks drifting within the
/// allowance, and never believe past the servers' keys.
#[test]
fn sim_without_faults_renewing_holders_keep_their_leases() {
    let (mut holds, mut renewals) = (0, 0);
    for (i, nodes) in [1usize, 3, 5].into_iter().enumerate() {
        let p = Params {
            seed: 0x04e4_e0a1 + i as u64,
            nodes,
            clients: 4,
            ops: 3_000,
            fenced: i != 1,
            fair: false,
            scriptless: false,
            pipelined: false,
            variant: Variant::Correct,
            faults: Faults {
                drift_ppm: 5_000,
                ..Faults::NONE
            },
        };
        let report = sim::run(&p, false);
        assert!(report.violation.is_none(), "{}", failure(&report));
        let stats = report.stats;
        println!(
            "{nodes} nodes: {} leases, {} renewing, {} renewals, {} lost",
            stats.leases, stats.renewing_holds, stats.renewals, stats.renewals_lost
        );
        assert!(stats.renewing_holds > 0, "{}", report.describe(0));
        assert_eq!(stats.renewals_lost, 0, "{}", report.describe(0));
        holds += stats.renewing_holds;
        renewals += stats.renewals;
    }
    // Held one to three TTLs, renewed every third of one: several renewals per hold.
    assert!(
        holds >= 20 && renewals >= 2 * holds,
        "{holds} holds, {renewals} renewals"
    );
}

// ---------------------------------------------------------------------------------------
// Broken variants: the simulator must catch each.
// ---------------------------------------------------------------------------------------

/// Runs up to `limit` runs of `strategy` and returns the first that violates `property`.
fn hunt(
    strategy: impl Strategy<Value = Params>,
    seed: u64,
    limit: u32,
    property: Property,
) -> (Report, u32) {
    let mut runner = runner(seed, limit);
    for i in 1..=limit {
        let p = strategy.new_tree(&mut runner).expect("params").current();
        let report = sim::run(&p, false);
        match &report.violation {
            Some(v) if v.property == property => return (report, i),
            Some(other) => panic!(
                "expected a {} violation, got {}:\n{}",
                property.name(),
                other.property.name(),
                failure(&report)
            ),
            None => {}
        }
    }
    panic!("{limit} runs found no {} violation", property.name());
}

/// Overrides some params of every run (the fault settings a variant needs to show).
fn with(
    strategy: impl Strategy<Value = Params>,
    f: impl Fn(&mut Params) + Clone + 'static,
) -> impl Strategy<Value = Params> {
    strategy.prop_map(move |mut p| {
        f(&mut p);
        p
    })
}

fn caught(name: &str, report: &Report, runs: u32) {
    println!("{name}: caught in run {runs}\n{}", report.describe(0));
}

/// Validity without the drift term (`Drift { per_million: 0, fixed: 0 }`) while clocks
/// drift by up to ±0.2%–1%: a holder still believes in its lease after the nodes' keys
/// expired and another client took them.
#[test]
fn sim_catches_validity_without_the_drift_term() {
    let strategy = with(params(any_nodes(), 1_000, Variant::ZeroDrift, false), |p| {
        p.faults.crashes = 0;
        p.faults.partitions = 0;
    });
    let (report, runs) = hunt(strategy, 0xd21f7, 40, Property::MutualExclusion);
    caught("validity without the drift term", &report, runs);
}

/// A server whose compare-and-delete ignores the token.
#[test]
fn sim_catches_release_without_the_token_check() {
    let strategy = params(any_nodes(), 1_000, Variant::BrokenRelease, false);
    let (report, runs) = hunt(strategy, 0xb40c, 10, Property::OwnerOnly);
    caught("release without the token check", &report, runs);
}

/// A server whose compare-and-extend ignores the token.
#[test]
fn sim_catches_extend_without_the_token_check() {
    let strategy = params(any_nodes(), 1_000, Variant::BrokenExtend, false);
    let (report, runs) = hunt(strategy, 0xe07e, 10, Property::OwnerOnly);
    caught("extend without the token check", &report, runs);
}

/// A renewal driver that ignores `Lost` and acts until its own deadline (the last validity
/// plus one renewal period of slack): it believes past the moment the servers' keys expire.
#[test]
fn sim_catches_renewal_that_ignores_lost() {
    let strategy = params(any_nodes(), 1_000, Variant::RenewalIgnoresLost, false);
    let (report, runs) = hunt(strategy, 0x1057, 10, Property::LostBeforeValidityEnds);
    caught("renewal that ignores Lost", &report, runs);
}

/// A renewal schedule run on validities without the drift term (`started + ttl`), while
/// clocks drift: servers whose clocks run fast let the keys expire before the holder stops.
#[test]
fn sim_catches_renewal_without_the_drift_term() {
    let strategy = with(
        params(any_nodes(), 1_000, Variant::RenewalWithoutDrift, false),
        |p| p.faults.drift_ppm = p.faults.drift_ppm.max(2_000),
    );
    let (report, runs) = hunt(strategy, 0xd21f8, 20, Property::LostBeforeValidityEnds);
    caught("renewal without the drift term", &report, runs);
}

/// Fair mode on a server whose release hands the lock to the queue's head whether or not it
/// is live (and for good): the first hand-off to a crashed waiter breaks property 9. On a
/// healthy network, so that a lost rollback (which would leave such a lock held forever,
/// breaking liveness first) does not hide it.
#[test]
fn sim_catches_handoff_without_liveness() {
    let strategy = with(
        fair_params(1_000, Variant::HandoffWithoutLiveness, false),
        |p| {
            p.faults = Faults {
                drift_ppm: p.faults.drift_ppm,
                ..Faults::NONE
            }
        },
    );
    let (report, runs) = hunt(strategy, 0xfa1ed, 20, Property::FairQueue);
    caught("hand-off without liveness", &report, runs);
}

/// Fair mode on a server whose release wakes the head without setting the lock to it: the
/// woken waiter finds the lock free but has lost its place (property 9).
#[test]
fn sim_catches_wake_before_handoff() {
    let strategy = fair_params(1_000, Variant::WakeBeforeHandoff, false);
    let (report, runs) = hunt(strategy, 0xfa1ee, 10, Property::FairQueue);
    caught("wake before hand-off", &report, runs);
}

/// A client that reconnects a failed node at once, on its own, instead of waiting out the
/// session's reconnect pause: property 7 catches the first such connect.
#[test]
fn sim_catches_reconnects_that_ignore_the_session() {
    let strategy = params(any_nodes(), 1_000, Variant::ReconnectIgnoresSession, false);
    let (report, runs) = hunt(strategy, 0x5e55, 10, Property::Session);
    caught("reconnects that ignore the session", &report, runs);
}

/// A driver that sends the release over a new connection while the acquire's replies from a
/// slow node are still owed on the old one (the host's bug before `host/src/straggler.rs`):
/// the slow node's `SET` lands after the delete, and property 11 catches it.
#[test]
fn sim_catches_a_release_sent_beside_a_slow_nodes_set() {
    let strategy = with(
        params(Just(3usize), 1_000, Variant::ReleaseBesideStragglers, false),
        |p| p.faults.spikes = p.faults.spikes.max(20),
    );
    let (report, runs) = hunt(strategy, 0x5710, 30, Property::ReleasedStaysReleased);
    caught("a release sent beside a slow node's SET", &report, runs);
}

// ---------------------------------------------------------------------------------------
// Documented limits: where the properties cannot hold, shown by the simulator.
// ---------------------------------------------------------------------------------------

/// Redlock's default allowance (1% + 2 ms) covers clocks within ±0.5% of each other's rate,
/// not ±1% each.
#[test]
fn limit_default_drift_does_not_cover_one_percent_clocks() {
    let strategy = with(
        params(any_nodes(), 1_000, Variant::WideClocksDefaultDrift, false),
        |p| {
            p.faults.crashes = 0;
            p.faults.partitions = 0;
        },
    );
    let (report, runs) = hunt(strategy, 0x1fc, 60, Property::MutualExclusion);
    caught("±1% clocks with the default drift allowance", &report, runs);
}

/// A node that restarts at once without its volatile keys hands the lock out again.
#[test]
fn limit_restart_without_delay_breaks_mutual_exclusion() {
    let strategy = with(
        params(any_nodes(), 1_000, Variant::ImmediateRestart, false),
        |p| p.faults.crashes = 2_000,
    );
    let (report, runs) = hunt(strategy, 0x4e57, 20, Property::MutualExclusion);
    caught("restart without delay", &report, runs);
}

/// Fence counters lost in a restart (no AOF) start again from 1.
#[test]
fn limit_lost_fence_counters_break_the_fence_order() {
    let strategy = with(
        params(any_nodes(), 1_000, Variant::LostFenceCounter, false),
        |p| {
            p.faults.crashes = 2_000;
            p.fenced = true;
        },
    );
    let (report, runs) = hunt(strategy, 0xfe9ce, 20, Property::FenceOrder);
    caught("fence counters lost in a restart", &report, runs);
}

/// A client that pauses between checking its validity and writing writes after its lease
/// ended, after the next holder wrote: an unfenced resource takes the stale write, a fencing
/// resource refuses it.
#[test]
fn limit_pauses_without_fencing_let_stale_writes_in() {
    let pausing = |variant| {
        with(params(any_nodes(), 1_000, variant, false), |p| {
            p.clients = p.clients.max(4);
            p.faults.pauses = 1_000;
            p.faults.pause_max = 3_000;
        })
    };
    let mut unfenced = runner(0x9a05e, 20);
    let (mut stale, mut writes, mut runs) = (0, 0, 0);
    let strategy = pausing(Variant::UnfencedPauses);
    while runs < 10 {
        runs += 1;
        let p = strategy.new_tree(&mut unfenced).expect("params").current();
        let report = sim::run(&p, false);
        assert!(report.violation.is_none(), "{}", failure(&report));
        stale += report.stats.stale_writes;
        writes += report.stats.resource_writes;
        if report.stats.stale_writes > 0 && stale == report.stats.stale_writes {
            println!("unfenced pauses, e.g.:\n{}", report.describe(0));
        }
    }
    println!(
        "unfenced, pausing clients: {stale} of {writes} writes in {runs} runs landed after a newer lease wrote, and were accepted"
    );
    assert!(stale > 0, "no stale write in {runs} runs");
    // The same pauses against a fencing resource: every stale write is refused.
    let strategy = with(pausing(Variant::Correct), |p| p.fenced = true);
    let mut fenced = runner(0x9a05e, 20);
    let (mut rejected, mut writes) = (0, 0);
    for _ in 0..runs {
        let p = strategy.new_tree(&mut fenced).expect("params").current();
        let report = sim::run(&p, false);
        assert!(report.violation.is_none(), "{}", failure(&report));
        rejected += report.stats.rejected_writes;
        writes += report.stats.resource_writes;
    }
    println!(
        "fenced, same pauses: {rejected} of {writes} writes refused as stale, none accepted out of order"
    );
    assert!(rejected > 0);
}

// ---------------------------------------------------------------------------------------
// Core bug found by the simulator (see the module doc): kept failing until fixed.
// ---------------------------------------------------------------------------------------

/// Runs that deliver requests late: half-open connections and duplicates, over 3 nodes
/// with lossy links and latency spikes — where a failed attempt's rollback can run after a
/// later attempt of the same acquire won.
fn replay_hunt() -> impl Strategy<Value = Params> {
    with(params(Just(3usize), 2_000, Variant::Correct, true), |p| {
        p.clients = p.clients.clamp(3, 8);
        p.faults = Faults {
            spikes: 30,
            loss: 20,
            late: 1_000,
            dup: 20,
            partitions: 0,
            crashes: 0,
            pauses: 0,
            ..p.faults
        };
    })
}

/// The bug the simulator found (see "Core bug" above), fixed by per-attempt tokens: the
/// same replay-fault runs that broke mutual exclusion now hold.
#[test]
fn late_rollbacks_cannot_delete_a_later_attempts_key() {
    let strategy = replay_hunt();
    let mut runner = runner(0x5ea1e, 30);
    for _ in 0..30 {
        let p = strategy.new_tree(&mut runner).expect("params").current();
        let report = sim::run(&p, false);
        assert!(report.violation.is_none(), "{}", failure(&report));
    }
}

// ---------------------------------------------------------------------------------------
// The harness itself.
// ---------------------------------------------------------------------------------------

/// One seed decides everything: the same params give the same run, event for event.
#[test]
fn sim_same_params_same_run() {
    let p = Params::decode("seed=12018367438526635858,nodes=3,clients=10,drift=5835,latency=3583,dup=6,late=100,loss=5,spikes=5,flushes=9363,readonly=3000").expect("params");
    let p = Params {
        ops: 300,
        faults: Faults {
            crashes: 3_000,
            partitions: 2_000,
            pauses: 1_000,
            ..p.faults
        },
        ..p
    };
    let (a, b) = (sim::run(&p, true), sim::run(&p, true));
    assert!(!a.trace.is_empty());
    assert_eq!(a.trace, b.trace);
    assert_eq!((a.ops, a.sim_us, a.stats), (b.ops, b.sim_us, b.stats));
}

#[test]
fn sim_params_round_trip() {
    let strategy = params(any_nodes(), 1234, Variant::Correct, true);
    let mut runner = runner(1, 10);
    for variant in Variant::ALL {
        let p = Params {
            variant,
            ..strategy.new_tree(&mut runner).expect("params").current()
        };
        assert_eq!(Params::decode(&p.encode()), Ok(p));
    }
    assert!(Params::decode("nodes=2").is_err());
    assert!(Params::decode("colour=blue").is_err());
}

/// Replays one run with its full trace:
/// `DISTLOCK_SIM_REPLAY='<params>' cargo test -p distlock-core --test simulation -- --exact sim_replay --nocapture`
/// (`DISTLOCK_SIM_TRACE=<n>` shows the last n events; all by default). Does nothing without
/// `DISTLOCK_SIM_REPLAY`.
#[test]
fn sim_replay() {
    let Ok(text) = std::env::var("DISTLOCK_SIM_REPLAY") else {
        return;
    };
    let p = Params::decode(&text).expect("DISTLOCK_SIM_REPLAY");
    let report = sim::run(&p, true);
    let tail = std::env::var("DISTLOCK_SIM_TRACE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    println!("{}", report.describe(tail));
    if report.violation.is_none() {
        println!("no violation");
    }
}

/// The long campaign:
/// `DISTLOCK_SIM_OPS=20000000 cargo test -p distlock-core --release -- --ignored sim_campaign --nocapture`
///
/// Settings: `DISTLOCK_SIM_OPS` (lock operations, default 2,000,000), `DISTLOCK_SIM_THREADS`
/// (default: every core), `DISTLOCK_SIM_SEED` (where the seeds start), `DISTLOCK_SIM_REPLAYS=1`
/// (also duplicate requests and leave connections half-open: finds the core bug),
/// `DISTLOCK_SIM_FAIR=1` (every run one node, fair; otherwise half the one-node runs are).
/// Prints ops/s, total ops and every violation with its replay command; fails if any.
#[test]
#[ignore = "long: run on demand"]
fn sim_campaign() {
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let target = env("DISTLOCK_SIM_OPS").unwrap_or(2_000_000);
    let threads = env("DISTLOCK_SIM_THREADS")
        .map(|n| n as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let seed = env("DISTLOCK_SIM_SEED").unwrap_or(0xca4a_1619);
    let replays = std::env::var("DISTLOCK_SIM_REPLAYS").is_ok_and(|v| v == "1");
    let fair_only = std::env::var("DISTLOCK_SIM_FAIR").is_ok_and(|v| v == "1");
    let ops = AtomicU64::new(0);
    let runs = AtomicU64::new(0);
    let violations: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    let started = WallClock::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (ops, runs, violations) = (&ops, &runs, &violations);
            scope.spawn(move || {
                // Half the one-node runs are fair; with DISTLOCK_SIM_FAIR=1, every run.
                let strategy = with(
                    params(any_nodes(), OPS_PER_RUN, Variant::Correct, replays),
                    move |p| {
                        if fair_only {
                            p.nodes = 1;
                        }
                        p.fair = p.nodes == 1 && (fair_only || p.seed % 2 == 0);
                    },
                );
                let mut runner = runner(seed.wrapping_add(t as u64), 1);
                while ops.load(Ordering::Relaxed) < target {
                    let p = strategy.new_tree(&mut runner).expect("params").current();
                    let report = sim::run(&p, false);
                    ops.fetch_add(report.ops, Ordering::Relaxed);
                    let n = runs.fetch_add(1, Ordering::Relaxed) + 1;
                    if report.violation.is_some() {
                        println!("{}", report.describe(0));
                        violations.lock().expect("lock").push(report);
                    }
                    if n % 500 == 0 {
                        let secs = started.elapsed().as_secs_f64();
                        let done = ops.load(Ordering::Relaxed);
                        println!("… {n} runs, {done} ops, {:.0} ops/s", done as f64 / secs);
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64();
    let ops = ops.into_inner();
    let violations = violations.into_inner().expect("lock");
    println!(
        "sim_campaign: {} runs, {ops} lock operations in {secs:.1} s on {threads} threads: {:.0} ops/s; violations found: {}{}",
        runs.into_inner(),
        ops as f64 / secs,
        violations.len(),
        match (replays, fair_only) {
            (true, true) => " (fair, with replays)",
            (true, false) => " (with replays)",
            (false, true) => " (fair)",
            (false, false) => "",
        }
    );
    assert!(
        violations.is_empty(),
        "{} violations (above)",
        violations.len()
    );
}

// ---------------------------------------------------------------------------------------
// Property 8, no lost wake-up (`sim/wakeup.rs`): on a healthy network, a node's waiters are
// never left blocked on a free lock key for longer than one round trip.
// ---------------------------------------------------------------------------------------

fn wake_params(seed: u64, nodes: usize, clients: usize, silent: usize) -> sim::wakeup::WakeParams {
    sim::wakeup::WakeParams {
        seed,
        nodes,
        clients,
        acquisitions: 600,
        mixed_ttls: false,
        silent_releasers: silent,
        faults: distlock_model::ModelFaults::default(),
    }
}

/// 1, 3 and 5 nodes, 2 to 12 clients: on one node every release and expiry with waiters
/// blocked is followed within a round trip by a wake-up or an attempt; over several nodes
/// within the retry cap (see `sim::wakeup::bound_ms`).
#[test]
fn sim_no_lost_wakeup() {
    let seed = base_seed(0x3a4e_0001);
    let mut checked = 0;
    for (i, nodes) in [1usize, 3, 5].into_iter().enumerate() {
        for clients in [2usize, 4, 8, 12] {
            let p = wake_params(
                seed.wrapping_add(i as u64 * 16 + clients as u64),
                nodes,
                clients,
                0,
            );
            let report = sim::wakeup::run(&p);
            assert_eq!(report.violation, None, "{p:?}");
            assert!(report.leases >= 500, "{report:?}");
            assert!(report.abandoned > 0, "expiries were exercised: {report:?}");
            if clients > 2 {
                assert!(report.woken_by_signal > 0, "{report:?}");
                // The waiters' marks were there for the releases that woke them.
                assert!(report.releases_marked > 0, "{report:?}");
            }
            checked += report.freed_with_waiters;
        }
    }
    assert!(checked > 1_000, "the property was checked {checked} times");
}

/// Over several nodes a waiter watches one node: a lock freed by a competitor's rollback
/// elsewhere is noticed only when its wait span ends. The limit, measured: runs where the
/// lock stayed free and unwatched for longer than one round trip, and the longest such gap.
#[test]
fn limit_redlock_waiters_watch_one_node() {
    let seed = base_seed(0x3a4e_0003);
    let round_trip = sim::wakeup::bound_ms(1);
    let (mut late_runs, mut longest) = (0, 0);
    for i in 0..12u64 {
        let p = wake_params(seed.wrapping_add(i), 3, 4 + (i as usize % 3) * 4, 0);
        let report = sim::wakeup::run(&p);
        assert_eq!(report.violation, None, "{p:?}");
        late_runs += u32::from(report.longest_unattended_ms > round_trip);
        longest = longest.max(report.longest_unattended_ms);
    }
    println!(
        "limit_redlock_waiters_watch_one_node: {late_runs} of 12 runs over 3 nodes left a free \
         lock unwatched past one round trip ({round_trip} ms); the longest: {longest} ms"
    );
    assert!(
        longest <= sim::wakeup::bound_ms(3),
        "never past the cap: {longest} ms"
    );
}

/// One node, holders with different TTLs on one lock: a waiter's span is timed by the
/// holder that refused it; a later holder with a shorter TTL that crashes leaves its key to
/// expire, unsignalled, before that span ends. The limit, measured; never past the cap.
#[test]
fn limit_mixed_ttls_time_waits_by_an_earlier_holder() {
    let seed = base_seed(0x3a4e_0004);
    let round_trip = sim::wakeup::bound_ms(1);
    let (mut late_runs, mut longest) = (0, 0);
    for i in 0..12u64 {
        let p = sim::wakeup::WakeParams {
            mixed_ttls: true,
            ..wake_params(seed.wrapping_add(i), 1, 4 + (i as usize % 3) * 4, 0)
        };
        let report = sim::wakeup::run(&p);
        late_runs += u32::from(report.violation.is_some());
        longest = longest.max(report.longest_unattended_ms);
    }
    println!(
        "limit_mixed_ttls_time_waits_by_an_earlier_holder: {late_runs} of 12 runs left a free \
         lock unwatched past one round trip ({round_trip} ms); the longest: {longest} ms"
    );
    assert!(
        longest <= sim::wakeup::bound_ms(3),
        "never past the cap: {longest} ms"
    );
}

/// Wake-up worlds of `p` from its seed on, one seed after another, until one reports a
/// violation: that violation, which must be a lost wake-up. A broken variant shows in most
/// worlds, not in every one (a silent releaser must win the lock while others block; over
/// 60 seeds it did in 35 to 43 of them), so the checker is asked to catch it within
/// [`WAKE_HUNT_RUNS`] worlds rather than in the one world of a fixed seed, which only a lucky
/// default seed passed.
fn hunt_lost_wakeup(p: sim::wakeup::WakeParams) -> String {
    for k in 0..WAKE_HUNT_RUNS {
        let run = sim::wakeup::WakeParams {
            seed: p.seed.wrapping_add(k),
            ..p
        };
        if let Some(violation) = sim::wakeup::run(&run).violation {
            assert!(violation.contains("lost wake-up"), "{violation}");
            return violation;
        }
    }
    panic!("{WAKE_HUNT_RUNS} worlds from {p:?} caught no lost wake-up");
}

/// How many worlds a broken wake-up variant gets to show itself in: at the lowest rate
/// measured (35 of 60), all of them miss about once in 30,000 hunts.
const WAKE_HUNT_RUNS: u64 = 12;

/// The broken variant: one client releases without pushing a wake-up signal (signals off, or
/// another library). Its releases leave the others blocked on a free lock until their wait
/// span runs out: the checker must see it.
#[test]
fn sim_catches_releases_that_push_no_signal() {
    let seed = base_seed(0x3a4e_0002);
    for clients in [3usize, 4, 8] {
        hunt_lost_wakeup(wake_params(seed, 1, clients, 1));
    }
}

/// The broken variants of the waiting mark, each caught: the waiter's mark never lands (its
/// attempt runs unmarked, as when a waiter marks after its attempt or only from a later
/// wait), and a release that skips the push without looking at the mark.
#[test]
fn sim_catches_waiters_that_do_not_mark_and_releases_that_ignore_the_mark() {
    let seed = base_seed(0x3a4e_0005);
    let broken = [
        distlock_model::ModelFaults {
            waiting_mark_lost: true,
            ..Default::default()
        },
        distlock_model::ModelFaults {
            release_ignores_waiting_mark: true,
            ..Default::default()
        },
    ];
    for faults in broken {
        for clients in [3usize, 4, 8] {
            hunt_lost_wakeup(sim::wakeup::WakeParams {
                faults,
                ..wake_params(seed, 1, clients, 0)
            });
        }
    }
}

/// A wake-up campaign: random worlds until `DISTLOCK_SIM_OPS` leases (default 200,000).
#[test]
#[ignore = "a campaign: run with --ignored"]
fn sim_wakeup_campaign() {
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let target = env("DISTLOCK_SIM_OPS").unwrap_or(200_000);
    let mut rng = distlock_core::SplitMix64::new(env("DISTLOCK_SIM_SEED").unwrap_or(0x3a4e));
    let started = WallClock::now();
    let (mut leases, mut runs, mut checked, mut longest) = (0, 0, 0, 0);
    while leases < target {
        let nodes = [1usize, 3, 5][rng.between(0, 2) as usize];
        let clients = rng.between(2, 16) as usize;
        let p = wake_params(rng.next_u64(), nodes, clients, 0);
        let report = sim::wakeup::run(&p);
        assert_eq!(report.violation, None, "{p:?}");
        leases += report.leases;
        checked += report.freed_with_waiters;
        longest = longest.max(report.longest_unattended_ms);
        runs += 1;
    }
    println!(
        "sim_wakeup_campaign: {runs} runs, {leases} leases, {checked} frees with waiters checked, \
         longest unattended {longest} ms (bound {} ms over several nodes), {:.1} s, zero violations",
        sim::wakeup::bound_ms(3),
        started.elapsed().as_secs_f64()
    );
}
