//! # Deterministic simulation of the semaphore: never more than `limit` valid permits, and a
//! dead holder's permit free within its TTL
//!
//! The real machines ([`distlock_core::Acquire`], `Release`, `Extend`) of a semaphore
//! ([`distlock_core::Lock::semaphore`]) against one model node ([`distlock_model`]) through a
//! network that delays (up to past the request timeout), loses messages (the connection then
//! breaks, and the client learns it later) and lets requests on a broken connection still run
//! late. Clients take a permit (try or wait), hold it for up to 1.3 × its validity, extend
//! it at times, release it, or crash holding it (never to release). One seed decides
//! everything, so a failure replays with `DISTLOCK_SEM_SEED=<seed>`.
//!
//! ## Properties (checked as the run goes, against true time)
//! - **S1, at most `limit` valid permits**: at no instant do more than `limit` clients
//!   believe a permit valid (a grant, before its `valid_until`).
//! - **S2, reclaim within the TTL**: every acquire the node runs while fewer than `limit`
//!   permit keys of holders live is granted — so a dead holder's permit counts until its key
//!   expires (its TTL after it was taken or last extended) and never after.
//! - **S3, bounded operations**: an acquire ends by its wait plus three request timeouts;
//!   a release or an extend by three request timeouts.
//!
//!
//! ## Fair semaphores (`LockOptions::fair`: fair mode's waiter, the fair semaphore scripts)
//! The same world with every client fair, waiting clients that crash now and then (they stop
//! cycling; the client comes back later as a new process), S1 and S3 as above, and instead
//! of S2 (a free permit is now kept for the live waiter ahead):
//! - **F1, first in first out among live waiters** (as the mutex's property 9) — around every
//!   command the node runs, from the queue, liveness keys and live permits before and after:
//!   a live waiter leaves the queue only with a permit or by its own command; a permit taken
//!   by a waiter's own cycle passes no live waiter queued ahead of it; a permit handed over
//!   by another's command goes to the first live waiter.
//! - **F2, a hand-off is bounded** — a handed permit's key expires within `R` of the hand-off,
//!   and a waiter that never confirms holds it no longer than `R`: a dead waiter stalls the
//!   queue at most `R` (plus one cycle for the next waiter), never a TTL.
//!
//! ## Broken variants (each must be caught)
//! - `IgnoresLimit`: the node takes a permit whatever the count
//!   (`ModelFaults::semaphore_ignores_limit`): S1.
//! - `CountsDeadHolders`: the node counts holders without pruning those whose permit key is
//!   gone (`ModelFaults::semaphore_counts_dead_holders`): S2.
//! - `FairIgnoresQueue`: a fair acquire takes a free permit past live waiters (a newcomer
//!   barging, `ModelFaults::semaphore_fair_ignores_queue`): F1.
//! - `FairHandoffIgnoresLiveness`: the fair release hands a permit to the queue's head live
//!   or not, for good (`ModelFaults::semaphore_handoff_ignores_liveness`): F2.
//!
//! CI runs `SEMAPHORE_RUNS` seeds of the correct protocol (`DISTLOCK_SEM_RUNS` for more) and
//! shows each broken variant caught within `BROKEN_RUNS` seeds.

mod wires;

use distlock_core::{
    Acquire, Duration, Extend, Instant, KeyLayout, Lock, LockOptions, Machine, Operation, Release,
    ServerInfo, SplitMix64, Token, script,
};
use distlock_model::{ModelFaults, ModelNode, Stage};
use wires::{Network, Serves};

const SEMAPHORE_RUNS: u64 = 60;
const BROKEN_RUNS: u64 = 40;
/// Simulated time per run, ms.
const RUN_MS: u64 = 20_000;
const HOLDERS: &[u8] = b"distlock:{sim}";
const PERMITS: &[u8] = b"distlock:{sim}:permit:";
const QUEUE: &[u8] = b"distlock:{sim}:permit-queue";
const ALIVE: &[u8] = b"distlock:{sim}:permit-alive:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Correct,
    IgnoresLimit,
    CountsDeadHolders,
    FairCorrect,
    FairIgnoresQueue,
    FairHandoffIgnoresLiveness,
}

impl Variant {
    fn fair(self) -> bool {
        matches!(
            self,
            Variant::FairCorrect | Variant::FairIgnoresQueue | Variant::FairHandoffIgnoresLiveness
        )
    }
}

/// What a client is doing.
enum Phase {
    Idle {
        until: u64,
    },
    Acquiring {
        m: Box<Acquire<1>>,
        deadline: u64,
    },
    Holding {
        token: Token,
        valid_until: u64,
        release_at: u64,
        extend: Option<(Box<Extend<1>>, u64)>,
        extend_at: Option<u64>,
    },
    Releasing {
        m: Box<Release<1>>,
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
    lock: Lock,
    limit: u32,
    violations: Vec<String>,
    grants: u64,
    /// What the machines are told of the node (fair runs: mostly a server with fractional
    /// `BLPOP` timeouts, so waiters block; else they poll).
    server: ServerInfo,
    /// Fair runs: permits handed over and not confirmed yet, with when.
    handed: Vec<(Vec<u8>, u64)>,
    /// Fair runs: hand-offs seen, and waiters that crashed.
    handoffs: u64,
    waiter_crashes: u64,
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

impl World {
    fn new(seed: u64, variant: Variant) -> World {
        let mut rng = SplitMix64::new(seed);
        let limit = rng.between(1, 4) as u32;
        let clients = limit as usize + rng.between(2, 4) as usize;
        let ttl = rng.between(200, 1500);
        let lock = Lock::semaphore(
            KeyLayout::default(),
            b"sim",
            limit,
            LockOptions {
                ttl: Duration::from_millis(ttl),
                fair: variant.fair(),
                ..LockOptions::default()
            },
        )
        .expect("semaphore");
        let mut node = ModelNode::new();
        node.set_faults(ModelFaults {
            semaphore_ignores_limit: variant == Variant::IgnoresLimit,
            semaphore_counts_dead_holders: variant == Variant::CountsDeadHolders,
            semaphore_fair_ignores_queue: variant == Variant::FairIgnoresQueue,
            semaphore_handoff_ignores_liveness: variant == Variant::FairHandoffIgnoresLiveness,
            ..ModelFaults::default()
        });
        // Scripts cached from the start (this world has no `SCRIPT FLUSH`), so every acquire
        // that reaches the node runs: S2 judges each one.
        for known in distlock_core::SCRIPTS {
            let load: [&[u8]; 3] = [b"SCRIPT", b"LOAD", known.source.as_bytes()];
            let _ = node.execute(&load, at(0), distlock_core::Protocol::Resp2);
        }
        let server = if variant.fair() && rng.between(0, 3) > 0 {
            ServerInfo {
                protocol: distlock_core::Protocol::Resp2,
                flavor: distlock_core::Flavor::Redis,
                version: distlock_core::Version::new(7, 2, 4),
            }
        } else {
            ServerInfo::default()
        };
        let mut world = World {
            variant,
            rng,
            now: 0,
            node,
            wires: Network::new(),
            clients: Vec::new(),
            lock,
            limit,
            violations: Vec::new(),
            grants: 0,
            server,
            handed: Vec::new(),
            handoffs: 0,
            waiter_crashes: 0,
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
                let wait = if self.rng.between(0, 3) == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(self.rng.between(100, 3000))
                };
                let token = self.token();
                let seed = self.rng.next_u64();
                let mut m = Box::new(
                    Acquire::new(&self.lock, token, &[self.server], wait, at(now), seed)
                        .expect("acquire"),
                );
                self.pump(c, &mut *m);
                let request = self.lock.options().request_timeout.as_millis();
                Phase::Acquiring {
                    m,
                    deadline: now + wait.as_millis() + 3 * request,
                }
            }
            Phase::Acquiring { .. } if self.variant.fair() && self.rng.between(0, 4999) == 0 => {
                // A waiter dies: it stops cycling (its queue entry outlives it until its
                // liveness key expires); the client comes back later as a new process.
                self.waiter_crashes += 1;
                self.retire_wire(c);
                Phase::Idle {
                    until: now + self.rng.between(0, 300),
                }
            }
            Phase::Acquiring { mut m, deadline } => {
                self.feed(c, &mut *m);
                match m.poll_outcome() {
                    None if now > deadline => {
                        self.violations.push(format!(
                            "S3: acquire of client {c} still running at {now} ms"
                        ));
                        Phase::Crashed
                    }
                    None => Phase::Acquiring { m, deadline },
                    Some(outcome) => {
                        self.retire_wire(c);
                        match outcome {
                            Ok(lease) => {
                                self.grants += 1;
                                let valid_until = lease.valid_until().as_millis();
                                let span = valid_until.saturating_sub(now);
                                if self.rng.between(0, 9) == 0 {
                                    // Dies holding it: the permit must come back at its TTL.
                                    Phase::Crashed
                                } else {
                                    let release_at = now + self.rng.between(0, span * 13 / 10);
                                    let extend_at =
                                        (self.rng.between(0, 2) == 0).then(|| now + span / 2);
                                    Phase::Holding {
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
                token,
                mut valid_until,
                release_at,
                mut extend,
                mut extend_at,
            } => {
                let request = self.lock.options().request_timeout.as_millis();
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
                                .push(format!("S3: extend of client {c} still running at {now}"));
                        }
                        None => extend = Some((m, deadline)),
                    }
                }
                if extend.is_none() && extend_at.is_some_and(|t| t <= now) && now < valid_until {
                    extend_at = None;
                    let seed = self.rng.next_u64();
                    let mut m = Box::new(
                        Extend::new(&self.lock, token.clone(), &[self.server], at(now), seed)
                            .expect("extend"),
                    );
                    self.pump(c, &mut *m);
                    extend = Some((m, now + 3 * request));
                }
                if extend.is_none() && release_at <= now {
                    self.retire_wire(c);
                    let seed = self.rng.next_u64();
                    let mut m = Box::new(
                        Release::new(&self.lock, token, &[self.server], at(now), seed)
                            .expect("release"),
                    );
                    self.pump(c, &mut *m);
                    Phase::Releasing {
                        m,
                        deadline: now + 3 * request,
                    }
                } else {
                    Phase::Holding {
                        token,
                        valid_until,
                        release_at,
                        extend,
                        extend_at,
                    }
                }
            }
            Phase::Releasing { mut m, deadline } => {
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
                            .push(format!("S3: release of client {c} still running at {now}"));
                        Phase::Crashed
                    }
                    None => Phase::Releasing { m, deadline },
                }
            }
            other => other,
        };
        self.clients[c].phase = next;
    }

    /// S1: clients that believe a permit valid now.
    fn check_limit(&mut self) {
        let now = self.now;
        let believers = self
            .clients
            .iter()
            .filter(|c| matches!(c.phase, Phase::Holding { valid_until, .. } if now < valid_until))
            .count();
        if believers > self.limit as usize {
            self.violations.push(format!(
                "S1: {believers} clients hold a valid permit at {now} ms, limit {}",
                self.limit
            ));
        }
    }

    /// F2: a permit handed over and not confirmed is gone within `R` of the hand-off.
    fn check_handed(&mut self) {
        let now = self.now;
        let request_timeout = self.lock.options().request_timeout.as_millis();
        let node = &self.node;
        self.handed
            .retain(|(token, _)| node.value(&[PERMITS, token].concat(), at(now)).is_some());
        if let Some((token, since)) = self
            .handed
            .iter()
            .find(|(_, since)| now > since + request_timeout)
        {
            self.violations.push(format!(
                "F2: the permit handed to {} at {since} ms is still held, unconfirmed, at {now} ms",
                String::from_utf8_lossy(token)
            ));
        }
    }

    /// Steps the world to its end (or its first violation).
    fn run_to_end(&mut self) {
        // 1 ms steps: every timer in this world is in whole milliseconds.
        while self.now < RUN_MS && self.violations.is_empty() {
            self.serve_node(self.now);
            for c in 0..self.clients.len() {
                self.step_client(c);
            }
            self.check_limit();
            if self.variant.fair() {
                self.check_handed();
            }
            self.now += 1;
        }
    }

    fn run(mut self) -> (Vec<String>, u64) {
        self.run_to_end();
        (self.violations, self.grants)
    }

    /// [`World::run`], also reporting the hand-offs seen and the waiters that crashed.
    fn run_fair(mut self) -> (Vec<String>, u64, u64, u64) {
        self.run_to_end();
        (
            self.violations,
            self.grants,
            self.handoffs,
            self.waiter_crashes,
        )
    }
}

impl Serves for World {
    fn network(&mut self) -> &mut Network {
        &mut self.wires
    }

    fn serve_wire(&mut self, wire: usize) {
        let now = self.now;
        let limit = self.limit as usize;
        let mut out = Vec::new();
        let mut free_before = None;
        let mut violation = None;
        let fair = self.variant.fair();
        let request_timeout = self.lock.options().request_timeout.as_millis();
        let mut fair_before = None;
        let mut handed = Vec::new();
        let mut confirmed = Vec::new();
        let mut server = std::mem::take(&mut self.wires[wire].server);
        self.node
            .serve_observed(&mut server, at(now), &mut out, |stage, node, args| {
                if fair {
                    let own = own_token(args);
                    match stage {
                        Stage::Before => fair_before = Some(FairState::read(node, now)),
                        Stage::After => {
                            let after = FairState::read(node, now);
                            if let Some(before) = fair_before.take() {
                                let found = check_fair(
                                    &before,
                                    &after,
                                    own,
                                    (node, now, request_timeout),
                                    &mut handed,
                                );
                                violation = violation.take().or(found);
                            }
                            if let Some(own) = own
                                && after.holders.iter().any(|h| h.as_slice() == own)
                            {
                                confirmed.push(own.to_vec());
                            }
                        }
                        _ => {}
                    }
                    return;
                }
                let is_acquire = args.len() > 7
                    && (args[1] == script::SEMAPHORE_ACQUIRE.sha
                        || args[1] == script::SEMAPHORE_ACQUIRE.source.as_bytes());
                if !is_acquire {
                    return;
                }
                let live = live_permits(node, now);
                match stage {
                    Stage::Before => free_before = Some(live.len() < limit),
                    Stage::After => {
                        let me = &args[6];
                        if free_before == Some(true) && !live.contains(me) {
                            violation = Some(format!(
                                "S2: acquire by {} refused at {now} ms with a permit free",
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
        self.handoffs += handed.len() as u64;
        self.handed
            .retain(|(token, _)| !confirmed.iter().any(|c| c == token));
        self.handed.extend(handed.into_iter().map(|t| (t, now)));
        self.wires[wire].reply(out, &mut self.rng, now);
    }
}

/// The token a fair semaphore script call acts for (the waiter's own cycle or release).
fn own_token(args: &[Vec<u8>]) -> Option<&[u8]> {
    let script = args.get(1)?;
    let is = |s: &script::Script| script == &s.sha || script == s.source.as_bytes();
    if is(&script::SEMAPHORE_FAIR_ACQUIRE) {
        args.get(9).map(Vec::as_slice)
    } else if is(&script::SEMAPHORE_FAIR_RELEASE) {
        args.get(8).map(Vec::as_slice)
    } else {
        None
    }
}

/// What F1 and F2 compare around a command: the queue in order with each waiter's liveness,
/// and the holders whose permit key lives.
struct FairState {
    queue: Vec<(Vec<u8>, bool)>,
    holders: Vec<Vec<u8>>,
}

impl FairState {
    fn read(node: &ModelNode, now: u64) -> FairState {
        let queue = node
            .sorted_set(QUEUE, at(now))
            .into_iter()
            .map(|w| {
                // Live while its key has time left (PTTL > 0), as the release reads it and
                // as the mutex's property 9 counts it.
                let key = [ALIVE, &w].concat();
                let alive = matches!(node.expiry(&key, at(now)), Some(Some(end)) if end > at(now));
                (w, alive)
            })
            .collect();
        FairState {
            queue,
            holders: live_permits(node, now),
        }
    }

    /// The first live waiter other than `leaving` (a waiter leaves the queue by its own
    /// release before that release hands a permit on).
    fn first_live(&self, leaving: Option<&[u8]>) -> Option<&[u8]> {
        self.queue
            .iter()
            .find(|(w, alive)| *alive && Some(w.as_slice()) != leaving)
            .map(|(w, _)| w.as_slice())
    }
}

/// F1 and F2 for one command: `own` is the token the command acts for, if a fair script's.
/// New hand-offs are added to `handed`.
fn check_fair(
    before: &FairState,
    after: &FairState,
    own: Option<&[u8]>,
    (node, now, request_timeout): (&ModelNode, u64, u64),
    handed: &mut Vec<Vec<u8>>,
) -> Option<String> {
    let name = |t: &[u8]| String::from_utf8_lossy(t).into_owned();
    for (waiter, alive) in &before.queue {
        let stays = after.queue.iter().any(|(w, _)| w == waiter);
        let holds = after.holders.contains(waiter);
        if *alive && !stays && !holds && own != Some(waiter.as_slice()) {
            return Some(format!(
                "F1: live waiter {} left the queue without a permit at {now} ms",
                name(waiter)
            ));
        }
    }
    for holder in after.holders.iter().filter(|h| !before.holders.contains(h)) {
        if own == Some(holder.as_slice()) {
            let ahead = before
                .queue
                .iter()
                .take_while(|(w, _)| w != holder)
                .find(|(_, alive)| *alive);
            if let Some((waiter, _)) = ahead {
                return Some(format!(
                    "F1: {} took a permit past live waiter {} at {now} ms",
                    name(holder),
                    name(waiter)
                ));
            }
            continue;
        }
        let expiry = node.expiry(&[PERMITS, holder].concat(), at(now)).flatten();
        if expiry.is_none_or(|e| e.as_millis() > now + request_timeout) {
            return Some(format!(
                "F2: the permit handed to {} at {now} ms lives past R ({expiry:?})",
                name(holder)
            ));
        }
        if before.first_live(own) != Some(holder.as_slice()) {
            return Some(format!(
                "F1: a permit handed to {} at {now} ms, not to the first live waiter {:?}",
                name(holder),
                before.first_live(own).map(name)
            ));
        }
        handed.push(holder.clone());
    }
    None
}

/// The holders whose permit key lives at `now`, as the acquire script should count them.
fn live_permits(node: &ModelNode, now: u64) -> Vec<Vec<u8>> {
    node.sorted_set(HOLDERS, at(now))
        .into_iter()
        .filter(|m| {
            let mut key = PERMITS.to_vec();
            key.extend_from_slice(m);
            node.value(&key, at(now)).is_some()
        })
        .collect()
}

fn campaign(variant: Variant, runs: u64) -> (Vec<(u64, String)>, u64) {
    let base: u64 = std::env::var("DISTLOCK_SEM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5e3a);
    let mut found = Vec::new();
    let mut grants = 0;
    for seed in base..base + runs {
        let (violations, g) = World::new(seed, variant).run();
        grants += g;
        if let Some(v) = violations.into_iter().next() {
            found.push((seed, v));
        }
    }
    (found, grants)
}

#[test]
fn sem_correct_never_exceeds_the_limit_and_reclaims_within_the_ttl() {
    let runs = std::env::var("DISTLOCK_SEM_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEMAPHORE_RUNS);
    let (found, grants) = campaign(Variant::Correct, runs);
    println!(
        "semaphore simulation: {runs} runs, {grants} permits granted, {} violations",
        found.len()
    );
    assert!(found.is_empty(), "{found:?}");
    assert!(grants > runs * 20, "the runs took permits: {grants}");
}

#[test]
fn sem_a_node_that_ignores_the_limit_is_caught_by_s1() {
    let (found, _) = campaign(Variant::IgnoresLimit, BROKEN_RUNS);
    println!(
        "ignores-limit: caught in {} of {BROKEN_RUNS} runs",
        found.len()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("S1")), "{found:?}");
}

#[test]
fn sem_a_node_that_counts_dead_holders_is_caught_by_s2() {
    let (found, _) = campaign(Variant::CountsDeadHolders, BROKEN_RUNS);
    println!(
        "counts-dead-holders: caught in {} of {BROKEN_RUNS} runs",
        found.len()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("S2")), "{found:?}");
}

fn fair_runs() -> u64 {
    std::env::var("DISTLOCK_SEM_FAIR_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEMAPHORE_RUNS)
}

#[test]
fn sem_fair_never_exceeds_the_limit_serves_live_waiters_in_order_and_bounds_hand_offs() {
    let runs = fair_runs();
    let base: u64 = std::env::var("DISTLOCK_SEM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xfa15);
    let mut grants = 0;
    let mut handoffs = 0;
    let mut crashes = 0;
    let mut found = Vec::new();
    for seed in base..base + runs {
        let world = World::new(seed, Variant::FairCorrect);
        let (violations, g, h, w) = world.run_fair();
        grants += g;
        handoffs += h;
        crashes += w;
        if let Some(v) = violations.into_iter().next() {
            found.push((seed, v));
        }
    }
    println!(
        "fair semaphore simulation: {runs} runs, {grants} permits granted, {handoffs} hand-offs, {crashes} waiters crashed, {} violations",
        found.len()
    );
    assert!(found.is_empty(), "{found:?}");
    assert!(grants > runs * 20, "the runs took permits: {grants}");
    assert!(
        handoffs > runs * 5,
        "the runs handed permits over: {handoffs}"
    );
    assert!(crashes > 0, "waiters crashed: {crashes}");
}

#[test]
fn sem_fair_a_newcomer_barging_past_live_waiters_is_caught_by_f1() {
    let (found, _) = campaign(Variant::FairIgnoresQueue, BROKEN_RUNS);
    println!(
        "fair ignores-queue: caught in {} of {BROKEN_RUNS} runs",
        found.len()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("F1")), "{found:?}");
}

#[test]
fn sem_fair_a_hand_off_without_a_liveness_check_is_caught_by_f2() {
    let (found, _) = campaign(Variant::FairHandoffIgnoresLiveness, BROKEN_RUNS);
    println!(
        "fair hand-off ignores liveness: caught in {} of {BROKEN_RUNS} runs",
        found.len()
    );
    assert!(found.iter().any(|(_, v)| v.starts_with("F2")), "{found:?}");
}
