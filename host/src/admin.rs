//! Operator commands: look at a lock (`status`), and force-unlock after a crash (`reset`).
//!
//! A thin driver: the commands are the core's machines ([`Inspect`], [`Reset`]), which decide
//! what is sent, which keys are a lock's and which a reset deletes, what a reply means, the
//! deadlines and the majorities ([`Inspection::verdict`], [`distlock_core::is_majority`]).
//! This module moves their bytes over the pool's connections ([`crate::drive`]) and turns
//! their outcome into the host's report types, with their text and JSON forms.
//!
//! A [`Status`] carries the core's verdict as decided ([`Status::verdict`]); its text, its
//! JSON `state` and [`Status::holder`] all read that one field, never the nodes again.
//!
//! Invariants (the core's, kept in what is reported):
//! - **Unknown is not free.** A node that could not be read is reported with what failed,
//!   never as free; the verdict is "unknown" whenever the nodes that answered cannot decide it.
//! - **Only lock keys are deleted**, each by compare-and-delete with the value just read.
//! - **Bounded.** Every node is asked concurrently and its whole work (connect included) ends
//!   within the core's deadline; a reset walk stops at its limit and reports how far it got.

use std::sync::Arc;
use std::time::Duration;

use distlock_core::WalkRefused;
use distlock_core::{
    ConfigError, Driven, Inspect, Inspection, LockOptions, Reset, ResetOutcome, ServerInfo,
};

use crate::client::Client;
use crate::clock::to_std;
use crate::drive::{close_out_of_step, drive, return_slots, take_slots};
use crate::error::Error;
use crate::pool::Pool;

/// What the nodes say about a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// What the core decided from every node's reading ([`Inspection::verdict`]): the one
    /// verdict the text ([`Status::describe`]), the JSON `state` ([`Status::to_json`]) and
    /// [`Status::holder`] report.
    pub verdict: Verdict,
    /// Each node's view, in node order.
    pub nodes: Vec<NodeStatus>,
    /// Each node's endpoint, in node order.
    pub endpoints: Vec<String>,
}

/// One node's view of a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeStatus {
    /// The node answered.
    Answered {
        /// The token holding it, if any.
        holder: Option<String>,
        /// How long the holder's key lives.
        ttl: Option<Duration>,
        /// The fencing counter (the last fence handed out).
        fence: Option<u64>,
        /// The waiters queued on the name, as the core counts them
        /// ([`distlock_core::Reading::queued`]): the fair mutex's, the fair semaphore's or the
        /// read-write lock's waiting writers, whichever kind holds it; every kind's when
        /// nobody does. `None` under a key layout without waiters' sets.
        queued: Option<u64>,
        /// The name is a semaphore: its live permits (`holder` is then `None`).
        permits: Option<Permits>,
        /// The name is a read-write lock: its live holds (`holder` is then `None`).
        rw: Option<RwHolds>,
    },
    /// The node could not be read: unreachable, timed out, a reply that is not RESP, a
    /// refusal (`NOPERM`, `WRONGTYPE`), or a lock key holding something that is no token.
    /// What failed, as text. Such a node says nothing about the lock: it is not free.
    Unreachable(String),
}

/// A semaphore's live permits on one node ([`Client::semaphore`](crate::Client::semaphore)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permits {
    /// The limit the permits were taken under.
    pub limit: u32,
    /// Each live permit's token and how long its key lives.
    pub holders: Vec<(String, Option<Duration>)>,
}

/// A read-write lock's live holds on one node ([`Client::read_lock`](crate::Client::read_lock)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RwHolds {
    /// The write hold's token and how long its key lives, if a writer holds it.
    pub writer: Option<(String, Option<Duration>)>,
    /// Each live read hold's token and how long its key lives.
    pub readers: Vec<(String, Option<Duration>)>,
}

/// What a [`Status`] says about the lock as a whole: the core's [`distlock_core::Verdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// A majority of nodes has this token in the lock key.
    Held(String),
    /// A majority of nodes hold a semaphore's live permits or a read-write lock's live holds:
    /// held, perhaps by several ([`Status::permits`], [`Status::rw`] list them).
    Shared,
    /// No token can be on a majority, even counting every node that could not be read.
    Free,
    /// The nodes that answered cannot decide: too many could not be read.
    Unknown,
}

impl Verdict {
    /// The core's verdict, owned. Anything the core may add later is no verdict of "free".
    fn of(verdict: distlock_core::Verdict<&distlock_core::Token>) -> Self {
        match verdict {
            distlock_core::Verdict::Held(token) => Verdict::Held(token.as_str().to_owned()),
            distlock_core::Verdict::Shared => Verdict::Shared,
            distlock_core::Verdict::Free => Verdict::Free,
            _ => Verdict::Unknown,
        }
    }

    /// The JSON `state`: `held` (one token, or shared holds), `free` or `unknown`.
    fn state(&self) -> &'static str {
        match self {
            Verdict::Held(_) | Verdict::Shared => "held",
            Verdict::Free => "free",
            Verdict::Unknown => "unknown",
        }
    }
}

impl Status {
    /// How many nodes could not be read.
    #[must_use]
    pub fn unreadable(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| matches!(n, NodeStatus::Unreachable(_)))
            .count()
    }

    /// Whether a majority of nodes could not be read (the command then exits 69).
    #[must_use]
    pub fn majority_unreadable(&self) -> bool {
        distlock_core::is_majority(self.unreadable(), self.nodes.len())
    }

    /// The name's permits when it is a semaphore (the first node that read them; a
    /// semaphore runs on one node).
    #[must_use]
    pub fn permits(&self) -> Option<&Permits> {
        self.nodes.iter().find_map(|n| match n {
            NodeStatus::Answered {
                permits: Some(p), ..
            } => Some(p),
            _ => None,
        })
    }

    /// The name's holds when it is a read-write lock (the first node that read them; a
    /// read-write lock runs on one node).
    #[must_use]
    pub fn rw(&self) -> Option<&RwHolds> {
        self.nodes.iter().find_map(|n| match n {
            NodeStatus::Answered { rw: Some(h), .. } => Some(h),
            _ => None,
        })
    }

    /// A readable summary: the verdict, then one line per node. Shared holds (a semaphore's
    /// permits, a read-write lock's holds, on a majority) are listed under the verdict
    /// instead, each token with its TTL.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut out = match &self.verdict {
            Verdict::Shared => {
                let mut out = String::new();
                // The waiters the node that read the holds counted (one node: such locks
                // run on one).
                let queued = |shared: fn(&NodeStatus) -> bool| {
                    self.nodes.iter().find(|n| shared(n)).and_then(|n| match n {
                        NodeStatus::Answered { queued, .. } => *queued,
                        NodeStatus::Unreachable(_) => None,
                    })
                };
                if let Some(holds) = self.rw() {
                    let of_rw =
                        |n: &NodeStatus| matches!(n, NodeStatus::Answered { rw: Some(_), .. });
                    push_rw(&mut out, "read-write lock", holds, queued(of_rw));
                } else if let Some(permits) = self.permits() {
                    let of_permits = |n: &NodeStatus| {
                        matches!(
                            n,
                            NodeStatus::Answered {
                                permits: Some(_),
                                ..
                            }
                        )
                    };
                    push_permits(&mut out, "semaphore", permits, queued(of_permits));
                }
                return out;
            }
            Verdict::Held(holder) => format!("held by {holder}\n"),
            Verdict::Free => "not held\n".to_owned(),
            Verdict::Unknown => format!(
                "unknown: {} of {} nodes could not be read, and those that answered cannot decide\n",
                self.unreadable(),
                self.nodes.len()
            ),
        };
        for (i, node) in self.nodes.iter().enumerate() {
            let endpoint = self.endpoints.get(i).map_or("?", String::as_str);
            let at = format!("node {i} ({endpoint})");
            match node {
                // A node's own view of another kind of lock: its holds, not "free".
                NodeStatus::Answered {
                    rw: Some(h),
                    queued,
                    ..
                } => {
                    push_rw(&mut out, &format!("{at}: read-write lock"), h, *queued);
                }
                NodeStatus::Answered {
                    permits: Some(p),
                    queued,
                    ..
                } => push_permits(&mut out, &format!("{at}: semaphore"), p, *queued),
                NodeStatus::Answered {
                    holder,
                    ttl,
                    fence,
                    queued,
                    ..
                } => out.push_str(&format!(
                    "{at}: {} ttl {} fence {}{}\n",
                    holder.as_deref().unwrap_or("free"),
                    ms(ttl),
                    fence.map_or("-".to_owned(), |f| f.to_string()),
                    queued_text(*queued),
                )),
                NodeStatus::Unreachable(e) => {
                    out.push_str(&format!("{at}: could not be read: {e}\n"));
                }
            }
        }
        out
    }

    /// The status as JSON: `state` is the verdict, `held` (one token on a majority, or a
    /// semaphore's or read-write lock's holds on a majority), `free` or `unknown`; each node
    /// has either
    /// `holder`, `ttl_ms`, `fence`, `queued` (the waiters queued on the name, whichever kind
    /// holds it: a fair mutex's, a fair semaphore's, a read-write lock's waiting writers; every
    /// kind's for a free name; null under a layout without waiters' sets),
    /// `permits` (a semaphore's `limit` and `holders`, each `token` and `ttl_ms`; null for a
    /// lock) and `rw` (a read-write lock's `writer` and `readers`, each `token` and `ttl_ms`;
    /// null otherwise), or `error`.
    #[must_use]
    pub fn to_json(&self, name: &str) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let endpoint = self.endpoints.get(i);
                match n {
                    NodeStatus::Answered {
                        holder,
                        ttl,
                        fence,
                        queued,
                        permits,
                        rw,
                    } => serde_json::json!({
                        "endpoint": endpoint, "holder": holder,
                        "ttl_ms": ttl.map(|t| t.as_millis() as u64), "fence": fence,
                        "queued": queued,
                        "permits": permits.as_ref().map(|p| serde_json::json!({
                            "limit": p.limit,
                            "holders": p.holders.iter().map(|(token, ttl)| serde_json::json!({
                                "token": token, "ttl_ms": ttl.map(|t| t.as_millis() as u64),
                            })).collect::<Vec<_>>(),
                        })),
                        "rw": rw.as_ref().map(|h| {
                            let hold = |(token, ttl): &(String, Option<Duration>)| serde_json::json!({
                                "token": token, "ttl_ms": ttl.map(|t| t.as_millis() as u64),
                            });
                            serde_json::json!({
                                "writer": h.writer.as_ref().map(hold),
                                "readers": h.readers.iter().map(hold).collect::<Vec<_>>(),
                            })
                        }),
                    }),
                    NodeStatus::Unreachable(e) => {
                        serde_json::json!({ "endpoint": endpoint, "error": e })
                    }
                }
            })
            .collect();
        serde_json::json!({
            "name": name, "state": self.verdict.state(), "holder": self.holder(),
            "unreadable": self.unreadable(), "nodes": nodes,
        })
    }

    /// The token a majority of nodes agree holds the lock.
    #[must_use]
    pub fn holder(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Held(holder) => Some(holder),
            _ => None,
        }
    }
}

/// A TTL as text: `1500 ms`, or `-` when none.
fn ms(ttl: &Option<Duration>) -> String {
    ttl.map_or("-".to_owned(), |t| format!("{} ms", t.as_millis()))
}

/// `{what}: written by TOKEN ttl …`, `{what}: N readers` (each reader on its own line) or
/// `{what}: not held`.
fn push_rw(out: &mut String, what: &str, holds: &RwHolds, queued: Option<u64>) {
    let queued = queued_text(queued);
    match &holds.writer {
        Some((token, ttl)) => out.push_str(&format!(
            "{what}: written by {token} ttl {}{queued}\n",
            ms(ttl)
        )),
        None if holds.readers.is_empty() => out.push_str(&format!("{what}: not held{queued}\n")),
        None => out.push_str(&format!(
            "{what}: {} readers{queued}\n",
            holds.readers.len()
        )),
    }
    for (token, ttl) in &holds.readers {
        out.push_str(&format!("  reader {token} ttl {}\n", ms(ttl)));
    }
}

/// ` queued N` after a node's line when waiters queue on the name; nothing for none, or
/// under a layout without waiters' sets.
fn queued_text(queued: Option<u64>) -> String {
    queued
        .filter(|&n| n > 0)
        .map_or(String::new(), |n| format!(" queued {n}"))
}

/// `{what}: N of L permits held`, then each holder on its own line.
fn push_permits(out: &mut String, what: &str, permits: &Permits, queued: Option<u64>) {
    out.push_str(&format!(
        "{what}: {} of {} permits held{}\n",
        permits.holders.len(),
        permits.limit,
        queued_text(queued)
    ));
    for (token, ttl) in &permits.holders {
        out.push_str(&format!("  {token} ttl {}\n", ms(ttl)));
    }
}

/// What a reset did (or, dry, would do) on each node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetReport {
    /// Each node's outcome, in node order.
    pub nodes: Vec<NodeReset>,
    /// Whether this was a dry run (nothing deleted; `deleted` lists what would go).
    pub dry_run: bool,
}

/// One node's part of a reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeReset {
    /// The node.
    pub endpoint: String,
    /// What was done, or why the node could not be reset (as text).
    pub outcome: Result<ResetDone, String>,
}

/// What a reset did on one node that answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetDone {
    /// The keys deleted (a dry run: that would be deleted).
    pub deleted: Vec<String>,
    /// Keys shaped like lock keys that were left alone, and why.
    pub left_alone: Vec<(String, String)>,
    /// Set when a walk stopped at its limit before the end: how far it got.
    pub unfinished: Option<String>,
}

impl ResetReport {
    /// Keys deleted over every node (a dry run: that would be).
    #[must_use]
    pub fn deleted(&self) -> u64 {
        self.nodes
            .iter()
            .filter_map(|n| n.outcome.as_ref().ok())
            .map(|d| d.deleted.len() as u64)
            .sum()
    }

    /// Nodes that failed or whose walk did not finish.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| !matches!(&n.outcome, Ok(d) if d.unfinished.is_none()))
            .count()
    }

    /// Whether a majority of nodes failed or did not finish (the command then exits 69).
    #[must_use]
    pub fn majority_failed(&self) -> bool {
        distlock_core::is_majority(self.failed(), self.nodes.len())
    }

    /// One line per key deleted (or, dry, that would be) and per key left alone, then one per
    /// node that failed or did not finish.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for (i, node) in self.nodes.iter().enumerate() {
            let endpoint = &node.endpoint;
            match &node.outcome {
                Ok(done) => {
                    for key in &done.deleted {
                        out.push_str(&format!("node {i} ({endpoint}): {verb} {key}\n"));
                    }
                    for (key, why) in &done.left_alone {
                        out.push_str(&format!("node {i} ({endpoint}): left {key} alone: {why}\n"));
                    }
                    if let Some(how_far) = &done.unfinished {
                        out.push_str(&format!("node {i} ({endpoint}): unfinished: {how_far}\n"));
                    }
                }
                Err(e) => out.push_str(&format!("node {i} ({endpoint}): failed: {e}\n")),
            }
        }
        out
    }

    /// The keys deleted (or, dry, that would be), each once, sorted.
    #[must_use]
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .nodes
            .iter()
            .filter_map(|n| n.outcome.as_ref().ok())
            .flat_map(|d| d.deleted.iter().map(String::as_str))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The host's status of the core's inspection.
fn status_of(inspection: Inspection, endpoints: Vec<String>) -> Status {
    let verdict = Verdict::of(inspection.verdict());
    let nodes = inspection
        .nodes
        .into_iter()
        .map(|node| match node {
            Ok(reading) => NodeStatus::Answered {
                holder: reading.holder.map(|t| t.as_str().to_owned()),
                ttl: reading.ttl.map(to_std),
                fence: reading.fence,
                queued: reading.queued,
                permits: reading.permits.map(|p| Permits {
                    limit: p.limit,
                    holders: p
                        .holders
                        .into_iter()
                        .map(|(token, ttl)| (token.as_str().to_owned(), ttl.map(to_std)))
                        .collect(),
                }),
                rw: reading.rw.map(|h| {
                    let hold =
                        |(token, ttl): (distlock_core::Token, Option<distlock_core::Duration>)| {
                            (token.as_str().to_owned(), ttl.map(to_std))
                        };
                    RwHolds {
                        writer: h.writer.map(hold),
                        readers: h.readers.into_iter().map(hold).collect(),
                    }
                }),
            },
            Err(e) => NodeStatus::Unreachable(e.to_string()),
        })
        .collect();
    Status {
        verdict,
        nodes,
        endpoints,
    }
}

/// The host's report of the core's reset outcome.
pub(crate) fn report_of(
    outcome: ResetOutcome,
    endpoints: Vec<String>,
    dry_run: bool,
) -> ResetReport {
    let nodes = outcome
        .nodes
        .into_iter()
        .zip(endpoints)
        .map(|(node, endpoint)| NodeReset {
            endpoint,
            outcome: node
                .map(|done| ResetDone {
                    deleted: done.deleted.iter().map(|k| text(k)).collect(),
                    left_alone: done
                        .left_alone
                        .iter()
                        .map(|(k, why)| (text(k), why.to_string()))
                        .collect(),
                    unfinished: done.unfinished.map(|u| u.to_string()),
                })
                .map_err(|e| e.to_string()),
        })
        .collect();
    ResetReport { nodes, dry_run }
}

/// The host's error for a walk the core refused before anything was sent.
pub(crate) fn walk_refused(refused: WalkRefused) -> Error {
    match refused {
        WalkRefused::NoPrefix { layout } => Error::NoPrefixToWalk { layout },
        WalkRefused::EmptyPrefix => Error::EmptyPrefix,
        WalkRefused::Config(e) => Error::Config(e),
        _ => Error::Config(ConfigError::BadPrefix),
    }
}

/// The report's count, or the first node's error when a majority failed.
fn count(report: ResetReport) -> Result<u64, Error> {
    if report.majority_failed() {
        let why = report
            .nodes
            .iter()
            .find_map(|n| match &n.outcome {
                Err(e) => Some(e.clone()),
                Ok(d) => d.unfinished.clone(),
            })
            .unwrap_or_default();
        return Err(Error::Connect {
            endpoint: "a majority of nodes".into(),
            source: std::io::Error::other(why),
        });
    }
    Ok(report.deleted())
}

/// Builds an operator machine over the pool's nodes (an idle connection where there is one,
/// else one opened while it runs), drives it to its outcome, and pools again the connections
/// left in step.
pub(crate) async fn run<M: Driven, E>(
    pool: &Arc<Pool>,
    build: impl FnOnce(&[ServerInfo], distlock_core::Instant) -> Result<M, E>,
) -> Result<M::Outcome, E> {
    run_until(pool, build, None).await
}

/// [`run`], with `cancel`: when it completes first, the machine is cancelled and driven to
/// the outcome it then gives (its own rollback, if it has one).
pub(crate) async fn run_until<M: Driven, E>(
    pool: &Arc<Pool>,
    build: impl FnOnce(&[ServerInfo], distlock_core::Instant) -> Result<M, E>,
    cancel: crate::drive::Cancel<'_>,
) -> Result<M::Outcome, E> {
    let (mut slots, servers) = take_slots(pool, false);
    let mut machine = match build(&servers, pool.clock().now()) {
        Ok(machine) => machine,
        Err(e) => {
            // Nothing was sent on them.
            return_slots(pool, slots);
            return Err(e);
        }
    };
    let outcome = drive(&mut machine, &mut slots, &servers, pool, cancel).await;
    close_out_of_step(&machine, &mut slots);
    return_slots(pool, slots);
    Ok(outcome)
}

impl Client {
    /// What each node says about the lock `name`: holder token, its key's TTL, the fence.
    /// Nodes are asked concurrently, each within the request timeout; one that could not be
    /// read is [`NodeStatus::Unreachable`] with what failed ([`Status::verdict`]).
    pub async fn status(&self, name: impl AsRef<[u8]>) -> Result<Status, Error> {
        let lock = self.lock_spec(name.as_ref(), LockOptions::default())?;
        let inspection = run(self.pool(), |servers, now| {
            Inspect::new(&lock, servers, now)
        })
        .await?;
        Ok(status_of(inspection, self.pool().endpoints()))
    }

    /// Force-unlocks `name` on every node, whoever holds it (for operators after a crash):
    /// the lock key and the re-entry count, each only when it holds what the protocol writes
    /// there (a user's key of the same name is left alone), and a fair lock's queue; a
    /// semaphore's or read-write lock's name loses every key but its fencing counter (see
    /// [`distlock_core::RESET_SEMAPHORE_OR_RW`]). The fencing counter is kept, so
    /// fences stay monotonic. Like a release it then pushes a wake-up signal, so waiters
    /// blocked on it — ours, and python-redis-lock's, which may block with no timeout at all —
    /// try at once. Returns the keys deleted; fails when a majority of nodes failed.
    pub async fn reset(&self, name: impl AsRef<[u8]>) -> Result<u64, Error> {
        count(self.reset_report(name, false).await?)
    }

    /// [`Client::reset`] with the whole report: per node, the keys deleted (a dry run: that
    /// would be), those left alone and why, or why the node failed. Each node within the
    /// request timeout.
    pub async fn reset_report(
        &self,
        name: impl AsRef<[u8]>,
        dry_run: bool,
    ) -> Result<ResetReport, Error> {
        let lock = self.lock_spec(name.as_ref(), LockOptions::default())?;
        let outcome = run(self.pool(), |servers, now| {
            Reset::by_name(&lock, servers, dry_run, now)
        })
        .await?;
        Ok(report_of(outcome, self.pool().endpoints(), dry_run))
    }

    /// Force-unlocks every lock under the key prefix; returns the keys deleted, and fails when
    /// a majority of nodes failed or did not finish. See [`Client::reset_all_report`].
    pub async fn reset_all(&self) -> Result<u64, Error> {
        count(self.reset_all_report(false).await?)
    }

    /// Walks the prefix with `SCAN` (never `KEYS`, which blocks the server;
    /// [`distlock_core::RESET_SCAN_COUNT`] keys a call) and resets every key the layout
    /// recognises as a lock key or re-entry count of some lock, each only when it holds what
    /// the protocol writes there ([`distlock_core::KeyRole::fits`]). Everything else under the
    /// prefix — other keys, fencing counters, wake-up lists (they expire on their own) — is
    /// left as it is. Each node's walk stops at [`distlock_core::RESET_WALK_LIMIT`] and
    /// then reports how far it got; each call is bounded by the request timeout. A dry run
    /// deletes nothing and reports what would go ([`distlock_core::Reset`]).
    ///
    /// Refused before anything is sent with [`Error::NoPrefixToWalk`] under a layout without
    /// a private prefix ([`crate::KeyLayout::prefix`] is `None`: redis-py's and
    /// python-redis-lock's), with [`Error::EmptyPrefix`] under an empty one (that walk is
    /// the whole database).
    ///
    /// On a Redis Cluster, every primary of the slot map is walked (a dry run each), and
    /// each lock found is then reset by name through the cluster's routing; a slot without
    /// a primary, or a primary that could not be walked, fails the whole reset with
    /// [`Error::ClusterWalk`] before anything is deleted on any node. Under Redlock with
    /// clusters among the nodes, each cluster is walked so (all of them first), the plain
    /// nodes are walked and reset as without a cluster, and the report has one entry per
    /// node, in node order.
    pub async fn reset_all_report(&self, dry_run: bool) -> Result<ResetReport, Error> {
        if let Some((endpoint, options)) = self.pool().only_cluster() {
            // Boxed: the walk's futures hold slot maps and whole reset machines.
            return Box::pin(self.reset_all_on_cluster(&endpoint, &options, dry_run)).await;
        }
        if let Some((endpoints, options)) = self.pool().with_clusters() {
            return Box::pin(self.reset_all_beside_clusters(endpoints, &options, dry_run)).await;
        }
        let layout = self.layout();
        let outcome = run(self.pool(), |servers, now| {
            Reset::all(layout, &LockOptions::default(), servers, dry_run, now)
        })
        .await
        .map_err(walk_refused)?;
        Ok(report_of(outcome, self.pool().endpoints(), dry_run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use distlock_core::{NodeError, Reading, Token};

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn token(t: &str) -> Token {
        Token::new(t.as_bytes()).unwrap()
    }

    fn free() -> Result<Reading, NodeError> {
        Ok(Reading {
            holder: None,
            ttl: None,
            fence: None,
            queued: None,
            permits: None,
            rw: None,
        })
    }

    fn held(t: &str) -> Result<Reading, NodeError> {
        free().map(|r| Reading {
            holder: Some(token(t)),
            ..r
        })
    }

    fn permits(holders: &[&str]) -> Result<Reading, NodeError> {
        free().map(|r| Reading {
            permits: Some(distlock_core::Permits {
                limit: 2,
                holders: holders.iter().map(|t| (token(t), None)).collect(),
            }),
            ..r
        })
    }

    fn reader(t: &str) -> Result<Reading, NodeError> {
        free().map(|r| Reading {
            rw: Some(distlock_core::RwHolds {
                writer: None,
                readers: vec![(token(t), None)],
            }),
            ..r
        })
    }

    fn unread() -> Result<Reading, NodeError> {
        Err(NodeError::Disconnected)
    }

    /// The host's status of these readings, and what the core decided from them.
    fn status(nodes: Vec<Result<Reading, NodeError>>) -> (Status, Verdict) {
        let inspection = Inspection { nodes };
        let core = Verdict::of(inspection.verdict());
        let endpoints = inspection.nodes.iter().map(|_| "x".into()).collect();
        (status_of(inspection, endpoints), core)
    }

    /// The status reports the core's verdict, and its text, JSON and holder say the same.
    fn says(nodes: Vec<Result<Reading, NodeError>>, want: Verdict, text_starts: &str) -> Status {
        let (s, core) = status(nodes);
        assert_eq!(s.verdict, core, "the core's verdict, carried as decided");
        assert_eq!(s.verdict, want);
        let text = s.describe();
        assert!(text.starts_with(text_starts), "{text}");
        assert_eq!(s.to_json("n")["state"], want.state(), "{text}");
        let holder = match &want {
            Verdict::Held(t) => Some(t.as_str()),
            _ => None,
        };
        assert_eq!(s.holder(), holder);
        assert_eq!(s.to_json("n")["holder"].as_str(), holder);
        s
    }

    #[test]
    fn text_json_and_holder_read_the_cores_one_verdict() {
        says(
            vec![held(A), held(A), free()],
            Verdict::Held(A.into()),
            &format!("held by {A}"),
        );
        says(
            vec![held(A), held(B), unread()],
            Verdict::Unknown,
            "unknown: 1 of 3",
        );
        says(vec![unread()], Verdict::Unknown, "unknown: 1 of 1");
        says(vec![free(), free(), unread()], Verdict::Free, "not held");
        // Shared holds on a majority: held, by the holders listed.
        let s = says(vec![permits(&[A, B])], Verdict::Shared, "semaphore: 2 of 2");
        assert!(s.describe().contains(B));
        says(
            vec![reader(A)],
            Verdict::Shared,
            "read-write lock: 1 readers",
        );
        says(
            vec![reader(A), unread(), free()],
            Verdict::Unknown,
            "unknown: 1 of 3",
        );
    }

    /// A Redlock of three whose name is a semaphore's or a read-write lock's on one node only:
    /// no majority can hold it, so the core says free. The host used to say "held" in JSON
    /// and list the permits as the name's in the text (its own any-node check); now both say
    /// "not held", and the node's own line still shows what it holds.
    #[test]
    fn shared_holds_on_a_minority_are_not_the_names() {
        let s = says(
            vec![permits(&[A]), free(), free()],
            Verdict::Free,
            "not held",
        );
        let text = s.describe();
        assert!(
            text.contains("node 0 (x): semaphore: 1 of 2 permits held"),
            "{text}"
        );
        assert!(text.contains("node 1 (x): free"), "{text}");
        let s = says(vec![reader(A), free(), free()], Verdict::Free, "not held");
        assert!(
            s.describe()
                .contains("node 0 (x): read-write lock: 1 readers"),
            "{}",
            s.describe()
        );
        // A mutex key on one node of three: not held either, in both forms.
        says(vec![held(A), free(), free()], Verdict::Free, "not held");
    }

    /// Every kind's waiters show on its line (a node's; a shared hold's, under the verdict), in
    /// text and JSON alike.
    #[test]
    fn queued_waiters_show_for_every_kind() {
        let queued = |r: Result<Reading, NodeError>, n| {
            r.map(|r| Reading {
                queued: Some(n),
                ..r
            })
        };
        for (reading, line) in [
            (
                queued(held(A), 2),
                format!("node 0 (x): {A} ttl - fence - queued 2"),
            ),
            (
                queued(permits(&[A, B]), 1),
                "semaphore: 2 of 2 permits held queued 1".into(),
            ),
            (
                queued(reader(A), 1),
                "read-write lock: 1 readers queued 1".into(),
            ),
            (
                queued(free(), 3),
                "node 0 (x): free ttl - fence - queued 3".into(),
            ),
        ] {
            let (s, _) = status(vec![reading]);
            let text = s.describe();
            assert!(text.contains(&format!("{line}\n")), "{text}");
            assert!(
                s.to_json("n")["nodes"][0]["queued"].as_u64() > Some(0),
                "{text}"
            );
        }
        // Nobody waiting: nothing said in text, 0 in JSON.
        let (s, _) = status(vec![queued(reader(A), 0)]);
        assert!(s.describe().contains("1 readers\n"), "{}", s.describe());
        assert_eq!(s.to_json("n")["nodes"][0]["queued"], 0);
    }

    #[test]
    fn unknown_is_not_free() {
        let (s, _) = status(vec![unread()]);
        assert!(s.majority_unreadable());
        let (s, _) = status(vec![free(), free(), unread()]);
        assert!(!s.majority_unreadable());
        let (s, _) = status(vec![free(), unread(), unread()]);
        assert_eq!(s.verdict, Verdict::Unknown);
        assert!(s.majority_unreadable());
    }
}
