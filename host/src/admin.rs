//! Operator commands: look at a lock (`status`), and force-unlock after a crash (`reset`).
//!
//! A thin driver: the commands are the core's machines ([`Inspect`], [`Reset`]), which decide
//! what is sent, which keys are a lock's and which a reset deletes, what a reply means, the
//! deadlines and the majorities ([`distlock_core::verdict`],
//! [`distlock_core::is_majority`]). This module moves their bytes over the pool's
//! connections ([`crate::drive`]) and turns their outcome into the host's report types, with
//! their text and JSON forms.
//!
//! Invariants (the core's, kept in what is reported):
//! - **Unknown is not free.** A node that could not be read is reported with what failed,
//!   never as free; the verdict is "unknown" whenever the nodes that answered cannot decide it.
//! - **Only lock keys are deleted**, each by compare-and-delete with the value just read.
//! - **Bounded.** Every node is asked concurrently and its whole work (connect included) ends
//!   within the core's deadline; a reset walk stops at its limit and reports how far it got.

use std::sync::Arc;
use std::time::Duration;

use distlock_core::{
    ConfigError, Driven, Inspect, Inspection, LockOptions, Reset, ResetOutcome, ServerInfo,
};
use distlock_core::{Seen, WalkRefused};

use crate::client::Client;
use crate::clock::to_std;
use crate::drive::{close_out_of_step, drive, return_slots, take_slots};
use crate::error::Error;
use crate::pool::Pool;

/// What the nodes say about a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
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
        /// Fair mode's queued waiters; `None` under a key layout without a queue.
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

/// What a [`Status`] says about the lock as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// A majority of nodes has this token in the lock key.
    Held(&'a str),
    /// No token can be on a majority, even counting every node that could not be read.
    Free,
    /// The nodes that answered cannot decide: too many could not be read.
    Unknown,
}

impl Status {
    /// The verdict: held by a token on a majority, free when no token can have a majority
    /// even if every unread node had it, unknown otherwise (the core's
    /// [`distlock_core::verdict`]). A semaphore with live permits or a read-write lock with
    /// live holds is unknown here, never free: its holders are in [`Status::permits`] and
    /// [`Status::rw`].
    #[must_use]
    pub fn verdict(&self) -> Verdict<'_> {
        let seen = self.nodes.iter().map(|n| match n {
            NodeStatus::Answered {
                holder: Some(h), ..
            } => Seen::Holder(h.as_str()),
            // A held semaphore or read-write lock is never "free" (its holders are in
            // `Status::permits` / `Status::rw`), as in the core's `Inspection::verdict`.
            NodeStatus::Answered {
                permits: Some(p), ..
            } if !p.holders.is_empty() => Seen::Unread,
            NodeStatus::Answered { rw: Some(h), .. }
                if h.writer.is_some() || !h.readers.is_empty() =>
            {
                Seen::Unread
            }
            NodeStatus::Answered { holder: None, .. } => Seen::Free,
            NodeStatus::Unreachable(_) => Seen::Unread,
        });
        match distlock_core::verdict(seen) {
            distlock_core::Verdict::Held(holder) => Verdict::Held(holder),
            distlock_core::Verdict::Free => Verdict::Free,
            // Anything the core may add later is no verdict of "free".
            _ => Verdict::Unknown,
        }
    }

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

    /// A readable summary: the verdict, then one line per node.
    #[must_use]
    pub fn describe(&self) -> String {
        let ms = |ttl: &Option<Duration>| {
            ttl.map_or("-".to_owned(), |t| format!("{} ms", t.as_millis()))
        };
        if let Some(holds) = self.rw() {
            let mut out = match &holds.writer {
                Some((token, ttl)) => {
                    format!("read-write lock: written by {token} ttl {}\n", ms(ttl))
                }
                None if holds.readers.is_empty() => "read-write lock: not held\n".to_owned(),
                None => format!("read-write lock: {} readers\n", holds.readers.len()),
            };
            for (token, ttl) in &holds.readers {
                out.push_str(&format!("  reader {token} ttl {}\n", ms(ttl)));
            }
            return out;
        }
        if let Some(permits) = self.permits() {
            let mut out = format!(
                "semaphore: {} of {} permits held\n",
                permits.holders.len(),
                permits.limit
            );
            for (token, ttl) in &permits.holders {
                let ttl = ttl.map_or("-".to_owned(), |t| format!("{} ms", t.as_millis()));
                out.push_str(&format!("  {token} ttl {ttl}\n"));
            }
            return out;
        }
        let mut out = match self.verdict() {
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
            let line = match node {
                NodeStatus::Answered {
                    holder,
                    ttl,
                    fence,
                    queued,
                    ..
                } => format!(
                    "node {i} ({endpoint}): {} ttl {} fence {}{}",
                    holder.as_deref().unwrap_or("free"),
                    ttl.map_or("-".to_owned(), |t| format!("{} ms", t.as_millis())),
                    fence.map_or("-".to_owned(), |f| f.to_string()),
                    // Only fair mode queues: say nothing of an empty or absent queue.
                    queued
                        .filter(|&n| n > 0)
                        .map_or(String::new(), |n| format!(" queued {n}")),
                ),
                NodeStatus::Unreachable(e) => {
                    format!("node {i} ({endpoint}): could not be read: {e}")
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// The status as JSON: `state` is `held`, `free` or `unknown`; each node has either
    /// `holder`, `ttl_ms`, `fence`, `queued` (fair mode's waiters; null without a queue),
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
        let rw_held = self
            .rw()
            .is_some_and(|h| h.writer.is_some() || !h.readers.is_empty());
        let state = match (self.permits(), self.verdict()) {
            _ if rw_held => "held",
            (Some(p), _) if !p.holders.is_empty() => "held",
            (_, Verdict::Held(_)) => "held",
            (_, Verdict::Free) => "free",
            (_, Verdict::Unknown) => "unknown",
        };
        serde_json::json!({
            "name": name, "state": state, "holder": self.holder(),
            "unreadable": self.unreadable(), "nodes": nodes,
        })
    }

    /// The token a majority of nodes agree holds the lock.
    #[must_use]
    pub fn holder(&self) -> Option<&str> {
        match self.verdict() {
            Verdict::Held(holder) => Some(holder),
            Verdict::Free | Verdict::Unknown => None,
        }
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
    Status { nodes, endpoints }
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

    fn answered(h: Option<&str>) -> NodeStatus {
        NodeStatus::Answered {
            holder: h.map(Into::into),
            ttl: None,
            fence: None,
            queued: None,
            permits: None,
            rw: None,
        }
    }

    fn status(nodes: Vec<NodeStatus>) -> Status {
        Status {
            endpoints: nodes.iter().map(|_| "x".into()).collect(),
            nodes,
        }
    }

    #[test]
    fn holder_needs_a_majority() {
        let s = status(vec![
            answered(Some("a")),
            answered(Some("a")),
            answered(None),
        ]);
        assert_eq!(s.verdict(), Verdict::Held("a"));
        let s = status(vec![
            answered(Some("a")),
            answered(Some("b")),
            NodeStatus::Unreachable("x".into()),
        ]);
        assert_eq!(s.holder(), None);
        assert_eq!(s.verdict(), Verdict::Unknown, "the unread node may hold a");
    }

    #[test]
    fn a_held_read_write_lock_is_never_free() {
        let read = NodeStatus::Answered {
            holder: None,
            ttl: None,
            fence: None,
            queued: None,
            permits: None,
            rw: Some(RwHolds {
                writer: None,
                readers: vec![("r".into(), None)],
            }),
        };
        assert_eq!(status(vec![read]).verdict(), Verdict::Unknown);
    }

    #[test]
    fn unknown_is_not_free() {
        let unread = || NodeStatus::Unreachable("x".into());
        assert_eq!(status(vec![unread()]).verdict(), Verdict::Unknown);
        assert!(status(vec![unread()]).majority_unreadable());
        assert_eq!(status(vec![answered(None)]).verdict(), Verdict::Free);
        // One of three unread, two free: no token can reach 2.
        let s = status(vec![answered(None), answered(None), unread()]);
        assert_eq!(s.verdict(), Verdict::Free);
        assert!(!s.majority_unreadable());
        // One free, one unread of three... plus one holding: the unread one decides.
        let s = status(vec![answered(Some("a")), answered(None), unread()]);
        assert_eq!(s.verdict(), Verdict::Unknown);
        let s = status(vec![answered(None), unread(), unread()]);
        assert_eq!(s.verdict(), Verdict::Unknown);
        assert!(s.majority_unreadable());
    }
}
