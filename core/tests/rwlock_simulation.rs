//! # Deterministic simulation of the read-write lock: never a writer beside anyone, a dead
//! holder's hold ends within its TTL, and a waiting writer is not starved by readers
//!
//! The real machines ([`distlock_core::Acquire`], `Release`, `Extend`) of both sides of a
//! read-write lock ([`distlock_core::Lock::rw`]) against one model node ([`distlock_model`])
//! through a network that delays (up to past the request timeout), loses messages (the
//! connection then breaks, and the client learns it later) and lets requests on a broken
//! connection still run late. Clients take a read (two in three) or a write hold (try or
//! wait), hold it for up to 1.3 × its validity, extend it at times, release it, or crash
//! holding it (never to release). One seed decides everything, so a failure replays with
//! `DISTLOCK_RW_SEED=<seed>`.
//!
//! ## Properties (checked as the run goes, against true time)
//! - **W1, exclusion**: at no instant does a client believe a write hold valid (a grant,
//!   before its `valid_until`) while another client believes any hold valid.
//! - **W2, a dead holder's hold ends within its TTL**: every write acquire the node runs while
//!   no writer key and no reader key lives is granted, and every read acquire it runs while
//!   no writer key and no waiting writer's liveness key lives — so a crashed reader (or
//!   writer) blocks others until its key expires (its TTL after it was taken or last
//!   extended) and never after.
//! - **W3, a waiting writer is not starved by readers**: no read is granted while a waiting
//!   writer's liveness key lives. A writer that registered therefore waits for at most the
//!   read holds already there when it registered (one per client, N in all), never for a
//!   stream of new ones; its liveness outlasts its waits between attempts (retry cap plus a
//!   round trip), so it lapses only when an attempt is delayed past that.
//! - **W4, bounded operations**: an acquire ends by its wait plus three request timeouts;
//!   a release or an extend by three request timeouts.
//!
//! ## Broken variants (each must be caught)
//! - `WriteIgnoresReaders`: the node grants a write beside live readers
//!   (`ModelFaults::rw_write_ignores_readers`): W1.
//! - `CountsDeadReaders`: the node's write acquire counts readers without pruning those whose
//!   key is gone (`ModelFaults::rw_write_counts_dead_readers`): W2.
//! - `ReadIgnoresWaitingWriters`: the node's read acquire ignores waiting writers
//!   (`ModelFaults::rw_read_ignores_waiting_writers`): W3.
//!
//! CI runs `RW_RUNS` seeds of the correct protocol (`DISTLOCK_RW_RUNS` for more) and shows
//! each broken variant caught within `BROKEN_RUNS` seeds.

mod wires;

use distlock_core::{
    Acquire, Duration, Extend, Instant, KeyLayout, Lock, LockOptions, Machine, Operation, Release,
    RwMode, ServerInfo, SplitMix64, Token, script,
};
use distlock_model::{ModelFaults, ModelNode, Stage};
use wires::{Network, Serves};

const RW_RUNS: u64 = 60;
const BROKEN_RUNS: u64 = 40;
/// Simulated time per run, ms.
const RUN_MS: u64 = 20_000;
const WRITER: &[u8] = b"distlock:{sim}:writer";
const READERS: &[u8] = b"distlock:{sim}:readers";
const READER: &[u8] = b"distlock:{sim}:reader:";
const WRITERS: &[u8] = b"distlock:{sim}:writers";
const WRITER_ALIVE: &[u8] = b"distlock:{sim}:writer-alive:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Correct,
    WriteIgnoresReaders,
    CountsDeadReaders,
    ReadIgnoresWaitingWriters,
}

/// What a client is doing.
enum Phase {
    Idle {
        until: u64,
    },
    Acquiring {
        m: Box<Acquire<1>>,
        mode: RwMode,
        deadline: u64,
    },
    Holding {
        mode: RwMode,
        token: Token,
        valid_until: u64,
        release_at: u64,
        extend: Option<(Box<Extend<1>>, u64)>,
        extend_at: Option<u64>,
    },
    Releasing {
        m: Box<Release<1>>,
        mode: RwMode,
        deadline: u64,
    },
    Crashed,
}

struct Client {
    phase: Phase,
    wire: usize,
}

struct World {
    variant: Variant,
    rng: SplitMix64,
    now: u64,
    node: ModelNode,
    wires: Network,
    clients: Vec<Client>,
    read: Lock,
    write: Lock,
    violations: Vec<String>,
    /// Read and write holds granted.
    grants: (u64, u64),
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

impl World {
    fn new(seed: u64, variant: Variant) -> World {
        let mut rng = SplitMix64::new(seed);
        let clients = rng.between(3, 7) as usize;
        let ttl = rng.between(200, 1500);
        let options = LockOptions {
            ttl: Duration::from_millis(ttl),
            fenced: true,
            ..LockOptions::default()
        };
        let side = |mode| Lock::rw(KeyLayout::default(), b"sim", mode, options).expect("rw");
        let (read, write) = (side(RwMode::Read), side(RwMode::Write));
        let mut node = ModelNode::new();
        node.set_faults(ModelFaults {
            rw_write_ignores_readers: variant == Variant::WriteIgnoresReaders,
            rw_write_counts_dead_readers: variant == Variant::CountsDeadReaders,
            rw_read_ignores_waiting_writers: variant == Variant::ReadIgnoresWaitingWriters,
            ..ModelFaults::default()
        });
        // Scripts cached from the start (this world has no `SCRIPT FLUSH`), so every acquire
        // that reaches the node runs: W2 and W3 judge each one.
        for known in distlock_core::SCRIPTS {
            let load: [&[u8]; 3] = [b"SCRIPT", b"LOAD", known.source.as_bytes()];
            let _ = node.execute(&load, at(0), distlock_core::Protocol::Resp2);
        }
        let mut world = World {
            variant,
            rng,
            now: 0,
            node,
            wires: Network::new(),
            clients: Vec::new(),
            read,
            write,
            violations: Vec::new(),
            grants: (0, 0),
        };
        for _ in 0..clients {
            let wire = world.wires.open();
            let until = world.rng.between(0, 200);
            world.clients.push(Client {
                phase: Phase::Idle { until },
                wire,
            });
        }
        world
    }

    /// Writes everything a machine has to send on the client's current wire.
    fn pump<O: Operation>(&mut self, c: usize, m: &mut Machine<O, 1>) {
        self.wires
            .pump(self.clients[c].wire, m, &mut self.rng, self.now);
    }

    fn token(&mut self) -> Token {
        let mut entropy = [0u8; 16];
        entropy[..8].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        entropy[8..].copy_from_slice(&self.rng.next_u64().to_le_bytes());
        Token::from_entropy(entropy)
    }

    /// Delivers replies and break notices to client `c`'s machine, then writes what it has
    /// to send.
    fn feed<O: Operation>(&mut self, c: usize, m: &mut Machine<O, 1>) {
        self.wires.feed(&mut self.clients[c].wire, m, self.now);
        self.pump(c, m);
    }

    /// A machine done: a fresh connection for the next one (what it still owes is dropped).
    fn retire_wire(&mut self, c: usize) {
        self.wires.retire(&mut self.clients[c].wire);
    }

    fn step_client(&mut self, c: usize) {
        let now = self.now;
        let phase = std::mem::replace(&mut self.clients[c].phase, Phase::Crashed);
        let next = match phase {
            Phase::Idle { until } if until <= now => {
                let mode = if self.rng.between(0, 2) == 0 {
                    RwMode::Write
                } else {
                    RwMode::Read
                };
                let wait = if self.rng.between(0, 3) == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(self.rng.between(100, 3000))
                };
                let token = self.token();
                let seed = self.rng.next_u64();
                let mut m = Box::new(
                    Acquire::new(
                        self.lock(mode),
                        token,
                        &[ServerInfo::default()],
                        wait,
                        at(now),
                        seed,
                    )
                    .expect("acquire"),
                );
                self.pump(c, &mut *m);
                let request = self.read.options().request_timeout.as_millis();
                Phase::Acquiring {
                    m,
                    mode,
                    deadline: now + wait.as_millis() + 3 * request,
                }
            }
            Phase::Acquiring {
                mut m,
                mode,
                deadline,
            } => {
                self.feed(c, &mut *m);
                match m.poll_outcome() {
                    None if now > deadline => {
                        self.violations.push(format!(
                            "W4: acquire of client {c} still running at {now} ms"
                        ));
                        Phase::Crashed
                    }
                    None => Phase::Acquiring { m, mode, deadline },
                    Some(outcome) => {
                        self.retire_wire(c);
                        match outcome {
                            Ok(lease) => {
                                if mode == RwMode::Write {
                                    self.grants.1 += 1;
                                } else {
                                    self.grants.0 += 1;
                                }
                                let valid_until = lease.valid_until().as_millis();
                                let span = valid_until.saturating_sub(now);
                                if self.rng.between(0, 9) == 0 {
                                    // Dies holding it: the hold must end at its TTL.
                                    Phase::Crashed
                                } else {
                                    let release_at = now + self.rng.between(0, span * 13 / 10);
                                    let extend_at =
                                        (self.rng.between(0, 2) == 0).then(|| now + span / 2);
                                    Phase::Holding {
                                        mode,
                                        token: lease.token().clone(),
                                        valid_until,
                                        release_at,
                                        extend: None,
                                        extend_at,
                                    }
                                }
                            }
                            Err(_) => Phase::Idle {
                                until: now + self.rng.between(0, 300),
                            },
                        }
                    }
                }
            }
            Phase::Holding {
                mode,
                token,
                mut valid_until,
                release_at,
                mut extend,
                mut extend_at,
            } => {
                let request = self.read.options().request_timeout.as_millis();
                if let Some((mut m, deadline)) = extend.take() {
                    self.feed(c, &mut *m);
                    match m.poll_outcome() {
                        Some(Ok(extended)) => {
                            self.retire_wire(c);
                            valid_until = extended.valid_until.as_millis();
                        }
                        Some(Err(_)) => {
                            self.retire_wire(c);
                            // Lost: believe in it no more.
                            valid_until = valid_until.min(now);
                        }
                        None if now > deadline => {
                            self.violations
                                .push(format!("W4: extend of client {c} still running at {now}"));
                        }
                        None => extend = Some((m, deadline)),
                    }
                }
                if extend.is_none() && extend_at.is_some_and(|t| t <= now) && now < valid_until {
                    extend_at = None;
                    let seed = self.rng.next_u64();
                    let mut m = Box::new(
                        Extend::new(
                            self.lock(mode),
                            token.clone(),
                            &[ServerInfo::default()],
                            at(now),
                            seed,
                        )
                        .expect("extend"),
                    );
                    self.pump(c, &mut *m);
                    extend = Some((m, now + 3 * request));
                }
                if extend.is_none() && release_at <= now {
                    self.retire_wire(c);
                    let seed = self.rng.next_u64();
                    let mut m = Box::new(
                        Release::new(
                            self.lock(mode),
                            token,
                            &[ServerInfo::default()],
                            at(now),
                            seed,
                        )
                        .expect("release"),
                    );
                    self.pump(c, &mut *m);
                    Phase::Releasing {
                        m,
                        mode,
                        deadline: now + 3 * request,
                    }
                } else {
                    Phase::Holding {
                        mode,
                        token,
                        valid_until,
                        release_at,
                        extend,
                        extend_at,
                    }
                }
            }
            Phase::Releasing {
                mut m,
                mode,
                deadline,
            } => {
                self.feed(c, &mut *m);
                match m.poll_outcome() {
                    Some(_) => {
                        self.retire_wire(c);
                        Phase::Idle {
                            until: now + self.rng.between(0, 300),
                        }
                    }
                    None if now > deadline => {
                        self.violations
                            .push(format!("W4: release of client {c} still running at {now}"));
                        Phase::Crashed
                    }
                    None => Phase::Releasing { m, mode, deadline },
                }
            }
            other => other,
        };
        self.clients[c].phase = next;
    }

    /// The lock of one side.
    fn lock(&self, mode: RwMode) -> &Lock {
        if mode == RwMode::Write {
            &self.write
        } else {
            &self.read
        }
    }

    /// W1: a client that believes a write hold valid now is the only one that believes any.
    fn check_exclusion(&mut self) {
        let now = self.now;
        let (mut readers, mut writers) = (0, 0);
        for c in &self.clients {
            if let Phase::Holding {
                mode, valid_until, ..
            } = c.phase
                && now < valid_until
            {
                if mode == RwMode::Write {
                    writers += 1;
                } else {
                    readers += 1;
                }
            }
        }
        if writers > 1 || (writers == 1 && readers > 0) {
            self.violations.push(format!(
                "W1: {writers} writers and {readers} readers hold a valid lease at {now} ms"
            ));
        }
    }

    fn run(mut self) -> (Vec<String>, (u64, u64)) {
        // 1 ms steps: every timer in this world is in whole milliseconds.
        while self.now < RUN_MS && self.violations.is_empty() {
            self.serve_node(self.now);
            for c in 0..self.clients.len() {
                self.step_client(c);
            }
            self.check_exclusion();
            self.now += 1;
        }
        let _ = self.variant;
        (self.violations, self.grants)
    }
}

impl Serves for World {
    fn network(&mut self) -> &mut Network {
        &mut self.wires
    }

    fn serve_wire(&mut self, wire: usize) {
        let now = self.now;
        let mut out = Vec::new();
        let mut free_before = None;
        let mut intent_before = false;
        let mut violation = None;
        let mut server = std::mem::take(&mut self.wires[wire].server);
        self.node
            .serve_observed(&mut server, at(now), &mut out, |stage, node, args| {
                let is_acquire = args.len() > 18
                    && (args[1] == script::RW_ACQUIRE.sha
                        || args[1] == script::RW_ACQUIRE.source.as_bytes());
                if !is_acquire {
                    return;
                }
                let (me, write) = (&args[11], args[13] == b"w");
                match stage {
                    Stage::Before => {
                        let writer = node.value(WRITER, at(now)).is_some();
                        let intent = live_members(node, WRITERS, WRITER_ALIVE, now) > 0;
                        let readers = live_members(node, READERS, READER, now);
                        free_before = Some(!writer && if write { readers == 0 } else { !intent });
                        intent_before = intent;
                    }
                    Stage::After => {
                        let got_in = if write {
                            node.value(WRITER, at(now)) == Some(&me[..])
                        } else {
                            node.value(&[READER, &me[..]].concat(), at(now)).is_some()
                        };
                        let side = if write { "write" } else { "read" };
                        if free_before == Some(true) && !got_in {
                            violation = Some(format!(
                                "W2: {side} acquire by {} refused at {now} ms with nothing live in its way",
                                String::from_utf8_lossy(me)
                            ));
                        }
                        if !write && intent_before && got_in {
                            violation = Some(format!(
                                "W3: read by {} granted at {now} ms past a waiting writer",
                                String::from_utf8_lossy(me)
                            ));
                        }
                    }
                    _ => {}
                }
            });
        self.wires[wire].server = server;
        if let Some(v) = violation {
            self.violations.push(v);
        }
        self.wires[wire].reply(out, &mut self.rng, now);
    }
}

/// How many members of the sorted set `set` have a live key `prefix .. member` at `now`.
fn live_members(node: &ModelNode, set: &[u8], prefix: &[u8], now: u64) -> usize {
    node.sorted_set(set, at(now))
        .into_iter()
        .filter(|m| node.value(&[prefix, m].concat(), at(now)).is_some())
        .count()
}

fn campaign(variant: Variant, runs: u64) -> (Vec<(u64, String)>, (u64, u64)) {
    let base: u64 = std::env::var("DISTLOCK_RW_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7e3a);
    let mut found = Vec::new();
    let mut grants = (0, 0);
    for seed in base..base + runs {
        let (violations, (reads, writes)) = World::new(seed, variant).run();
        grants = (grants.0 + reads, grants.1 + writes);
        if let Some(v) = violations.into_iter().next() {
            found.push((seed, v));
        }
    }
    (found, grants)
}

#[test]
fn rw_correct_excludes_ends_dead_holds_within_the_ttl_and_prefers_writers() {
    let runs = std::env::var("DISTLOCK_RW_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(RW_RUNS);
    let (found, (reads, writes)) = campaign(Variant::Correct, runs);
    println!(
        "rw simulation: {runs} runs, {reads} read and {writes} write holds granted, {} violations",
        found.len()
    );
    assert!(found.is_empty(), "{found:?}");
    assert!(
        reads > runs * 10 && writes > runs * 5,
        "the runs took holds: {reads}, {writes}"
    );
}

#[test]
fn rw_a_node_that_writes_beside_readers_is_caught_by_w1() {
    let (found, _) = campaign(Variant::WriteIgnoresReaders, BROKEN_RUNS);
    println!(
        "write-ignores-readers: caught in {} of {BROKEN_RUNS} runs, {} by W1",
        found.len(),
        found.iter().filter(|(_, v)| v.starts_with("W1")).count()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("W1")), "{found:?}");
}

#[test]
fn rw_a_node_that_counts_dead_readers_is_caught_by_w2() {
    let (found, _) = campaign(Variant::CountsDeadReaders, BROKEN_RUNS);
    println!(
        "counts-dead-readers: caught in {} of {BROKEN_RUNS} runs, {} by W2",
        found.len(),
        found.iter().filter(|(_, v)| v.starts_with("W2")).count()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("W2")), "{found:?}");
}

#[test]
fn rw_a_node_that_lets_readers_past_a_waiting_writer_is_caught_by_w3() {
    let (found, _) = campaign(Variant::ReadIgnoresWaitingWriters, BROKEN_RUNS);
    println!(
        "read-ignores-waiting-writers: caught in {} of {BROKEN_RUNS} runs, {} by W3",
        found.len(),
        found.iter().filter(|(_, v)| v.starts_with("W3")).count()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("W3")), "{found:?}");
}
