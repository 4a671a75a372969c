//! Operator commands: look at a lock (`status`), and force-unlock after a crash (`reset`).
//!
//! They read and delete keys directly (with the core's RESP encoder and decoder) and take no
//! lock decision of their own: which keys are a lock's, what value each must hold and which a
//! reset deletes are the core's ([`KeyLayout::recognise`], [`KeyRole`]); majorities are
//! [`distlock_core::quorum`]; the deadlines are the core's request timeout and reset walk limit.
//!
//! Invariants:
//! - **Unknown is not free.** A node that could not be read (unreachable, silent, a garbage
//!   reply, `NOPERM`, a lock key of another type) is reported with what failed, never as
//!   free; the verdict is "unknown" whenever the nodes that answered cannot decide it.
//! - **Only lock keys are deleted.** A key is deleted only when the layout built it, its role
//!   is one a reset deletes (never the fencing counter), and it holds the value the protocol
//!   writes there; the delete is the core's compare-and-delete script given the value just
//!   read, so a key rewritten between the check and the delete is left alone.
//! - **Bounded.** Every node is asked concurrently and its whole work (connect included) ends
//!   within its deadline; a reset walk stops at its limit and reports how far it got.

use std::time::{Duration, Instant};

use distlock_core::keys::{Keys, RESET_SCAN_COUNT, RESET_WALK_LIMIT};
use distlock_core::resp::{self, Framer, Reply, Sink};
use distlock_core::{KeyLayout, KeyRole, Lock, LockName, LockOptions, ServerError, quorum, script};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::Client;
use crate::clock::to_std;
use crate::conn::Conn;
use crate::error::Error;

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
    },
    /// The node could not be read: unreachable, timed out, a reply that is not RESP, a
    /// refusal (`NOPERM`, `WRONGTYPE`), or a lock key holding something that is no token.
    /// What failed, as text. Such a node says nothing about the lock: it is not free.
    Unreachable(String),
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
    /// even if every unread node had it, unknown otherwise.
    #[must_use]
    pub fn verdict(&self) -> Verdict<'_> {
        let needed = quorum(self.nodes.len());
        if let Some(holder) = self.holder() {
            return Verdict::Held(holder);
        }
        let holders: Vec<&str> = self.holders().collect();
        let most = holders
            .iter()
            .map(|h| holders.iter().filter(|o| *o == h).count())
            .max()
            .unwrap_or(0);
        if most + self.unreadable() < needed {
            Verdict::Free
        } else {
            Verdict::Unknown
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
        self.unreadable() >= quorum(self.nodes.len())
    }

    fn holders(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().filter_map(|n| match n {
            NodeStatus::Answered {
                holder: Some(h), ..
            } => Some(h.as_str()),
            _ => None,
        })
    }

    /// A readable summary: the verdict, then one line per node.
    #[must_use]
    pub fn describe(&self) -> String {
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
                NodeStatus::Answered { holder, ttl, fence } => format!(
                    "node {i} ({endpoint}): {} ttl {} fence {}",
                    holder.as_deref().unwrap_or("free"),
                    ttl.map_or("-".to_owned(), |t| format!("{} ms", t.as_millis())),
                    fence.map_or("-".to_owned(), |f| f.to_string()),
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
    /// `holder`, `ttl_ms` and `fence`, or `error`.
    #[must_use]
    pub fn to_json(&self, name: &str) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let endpoint = self.endpoints.get(i);
                match n {
                    NodeStatus::Answered { holder, ttl, fence } => serde_json::json!({
                        "endpoint": endpoint, "holder": holder,
                        "ttl_ms": ttl.map(|t| t.as_millis() as u64), "fence": fence,
                    }),
                    NodeStatus::Unreachable(e) => {
                        serde_json::json!({ "endpoint": endpoint, "error": e })
                    }
                }
            })
            .collect();
        let state = match self.verdict() {
            Verdict::Held(_) => "held",
            Verdict::Free => "free",
            Verdict::Unknown => "unknown",
        };
        serde_json::json!({
            "name": name, "state": state, "holder": self.holder(),
            "unreadable": self.unreadable(), "nodes": nodes,
        })
    }

    /// The token a majority of nodes agree holds the lock.
    #[must_use]
    pub fn holder(&self) -> Option<&str> {
        let holders: Vec<&str> = self.holders().collect();
        let needed = quorum(self.nodes.len());
        holders
            .iter()
            .copied()
            .find(|h| holders.iter().filter(|o| *o == h).count() >= needed)
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
        self.failed() >= quorum(self.nodes.len())
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

/// A reply as owned values (admin replies are small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Nil,
    Int(i64),
    Text(Vec<u8>),
    List(Vec<Value>),
    Error(Vec<u8>),
}

fn owned(reply: &Reply<'_>) -> Value {
    match reply {
        Reply::Nil => Value::Nil,
        Reply::Integer(i) => Value::Int(*i),
        Reply::Simple(b) | Reply::Bulk(b) => Value::Text(b.to_vec()),
        Reply::Error(e) => Value::Error(e.to_vec()),
        Reply::Array(items) | Reply::Push(items) => Value::List(items.iter().map(owned).collect()),
        _ => Value::Nil,
    }
}

/// Sends one command and reads its reply (a server's error reply is `Value::Error`). Callers
/// bound it: `on_each_node` by the node's deadline, a walk's calls by the request timeout.
pub(crate) async fn command(conn: &mut Conn, args: &[&[u8]]) -> Result<Value, Error> {
    let io = |e: std::io::Error| Error::Connect {
        endpoint: "node".into(),
        source: e,
    };
    let mut out = vec![0u8; 1024];
    let len = loop {
        match resp::encode_into(&mut out, |s: &mut dyn Sink| s.command(args)) {
            Ok(len) => break len,
            Err(short) => out.resize(short.required, 0),
        }
    };
    conn.stream.write_all(&out[..len]).await.map_err(io)?;
    let mut framer: Box<Framer<65536>> = Box::default();
    let mut buf = vec![0u8; 4096];
    loop {
        match framer.next_frame_len() {
            Ok(Some(len)) => {
                let reply = resp::decode(framer.frame(len), conn.server.protocol)
                    .map_err(|e| io(std::io::Error::other(e.to_string())))?;
                if matches!(reply, Reply::Push(_)) {
                    framer.consume(len);
                    continue;
                }
                return Ok(owned(&reply));
            }
            Ok(None) => {}
            Err(e) => return Err(io(std::io::Error::other(e.to_string()))),
        }
        let n = conn.stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            )));
        }
        framer.push(&buf[..n]);
    }
}

/// [`command`] within `limit`.
async fn command_within(conn: &mut Conn, args: &[&[u8]], limit: Duration) -> Result<Value, Error> {
    tokio::time::timeout(limit, command(conn, args))
        .await
        .unwrap_or_else(|_| {
            Err(Error::NodeTimeout {
                endpoint: "node".into(),
                after: limit,
            })
        })
}

fn key(parts: [&[u8]; 4]) -> Vec<u8> {
    parts.concat()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The deadline of one node's part of `status` and `reset --name`, and of each call of a walk:
/// the core's request timeout, as release and extend have.
fn request_timeout() -> Duration {
    to_std(LockOptions::default().request_timeout)
}

/// A server's error reply as the core's typed error.
fn refused(node: usize, message: &[u8]) -> Error {
    Error::Lock(distlock_core::Error::Server {
        node: u8::try_from(node).unwrap_or(u8::MAX),
        error: ServerError::from_message(message),
    })
}

fn unexpected(value: Value) -> Error {
    Error::Connect {
        endpoint: "node".into(),
        source: std::io::Error::other(format!("unexpected reply {value:?}")),
    }
}

/// What one key's reset came to.
enum KeyOutcome {
    /// Deleted (or, dry, would be).
    Deleted,
    /// Left alone, and why.
    LeftAlone(String),
    /// Not there.
    Absent,
}

/// One reset of one node: its layout, whether dry, and the wake-up signal's TTL.
struct Resetter<'a> {
    layout: &'a KeyLayout,
    dry_run: bool,
    signal_ms: Vec<u8>,
    limit: Duration,
}

impl Resetter<'_> {
    /// Resets `key`, the `role` key of lock `name`, when it holds what the protocol writes
    /// there; the delete is the core's compare-and-delete (the release script) given the value
    /// just read. Deleting a lock key also pushes the wake-up signal, as a release does.
    async fn reset_key(
        &self,
        conn: &mut Conn,
        node: usize,
        name: &LockName,
        role: KeyRole,
        key: &[u8],
    ) -> Result<KeyOutcome, Error> {
        let value = match command_within(conn, &[b"GET", key], self.limit).await? {
            Value::Nil => return Ok(KeyOutcome::Absent),
            Value::Text(value) => value,
            Value::Error(e) if e.starts_with(b"WRONGTYPE") => {
                let kind = match command_within(conn, &[b"TYPE", key], self.limit).await {
                    Ok(Value::Text(kind)) => text(&kind),
                    _ => "not a string".into(),
                };
                return Ok(KeyOutcome::LeftAlone(format!(
                    "it is a {kind}, not a string: not a lock key"
                )));
            }
            Value::Error(e) => return Err(refused(node, &e)),
            other => return Err(unexpected(other)),
        };
        if !role.fits(&value) {
            let why = match role {
                KeyRole::Lock => "its value is not a lock token",
                _ => "its value is not a count",
            };
            return Ok(KeyOutcome::LeftAlone(why.into()));
        }
        if self.dry_run {
            return Ok(KeyOutcome::Deleted);
        }
        let keys = Keys::new(self.layout.clone(), name.clone());
        let (holds, signal) = (key_of(keys.holds()), key_of(keys.signal()));
        // The release script's KEYS are lock, holds, signal; for the re-entry count itself the
        // same key stands in for all three (it is deleted, never decremented: not reentrant),
        // and no signal is pushed.
        let (keys, signal_ms): ([&[u8]; 3], &[u8]) = match role {
            KeyRole::Lock => ([key, &holds, &signal], &self.signal_ms),
            _ => ([key, key, key], b"0"),
        };
        let args: [&[u8]; 9] = [
            b"EVAL",
            script::RELEASE.source.as_bytes(),
            b"3",
            keys[0],
            keys[1],
            keys[2],
            &value,
            b"0",
            signal_ms,
        ];
        match command_within(conn, &args, self.limit).await? {
            Value::Int(0) => Ok(KeyOutcome::Deleted),
            Value::Int(_) => Ok(KeyOutcome::LeftAlone(
                "it changed after it was checked".into(),
            )),
            Value::Error(e) if e.starts_with(b"WRONGTYPE") => Ok(KeyOutcome::LeftAlone(
                "it changed type after it was checked".into(),
            )),
            Value::Error(e) => Err(refused(node, &e)),
            other => Err(unexpected(other)),
        }
    }

    fn record(done: &mut ResetDone, key: &[u8], outcome: KeyOutcome) {
        match outcome {
            KeyOutcome::Deleted => done.deleted.push(text(key)),
            KeyOutcome::LeftAlone(why) => done.left_alone.push((text(key), why)),
            KeyOutcome::Absent => {}
        }
    }
}

fn key_of(parts: [&[u8]; 4]) -> Vec<u8> {
    key(parts)
}

fn report<T>(
    results: Vec<(String, Result<T, Error>)>,
    mut f: impl FnMut(T) -> ResetDone,
    dry_run: bool,
) -> ResetReport {
    ResetReport {
        nodes: results
            .into_iter()
            .map(|(endpoint, r)| NodeReset {
                endpoint,
                outcome: r.map(&mut f).map_err(|e| e.to_string()),
            })
            .collect(),
        dry_run,
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

impl Client {
    /// What each node says about the lock `name`: holder token, its key's TTL, the fence.
    /// Nodes are asked concurrently, each within the request timeout; one that could not be
    /// read is [`NodeStatus::Unreachable`] with what failed ([`Status::verdict`]).
    pub async fn status(&self, name: impl AsRef<[u8]>) -> Result<Status, Error> {
        let lock = Lock::new(self.layout().clone(), name.as_ref(), LockOptions::default())?;
        let (lock_key, fence_key) = (key(lock.keys().lock()), key(lock.keys().fence()));
        let results = self
            .pool()
            .on_each_node(request_timeout(), async |node, conn| {
                let holder = match command(conn, &[b"GET", &lock_key]).await? {
                    Value::Nil => None,
                    Value::Text(t) if KeyRole::Lock.fits(&t) => Some(text(&t)),
                    Value::Text(_) => {
                        return Err(Error::NotALock {
                            key: text(&lock_key),
                            why: "it holds a string that is not a lock token",
                        });
                    }
                    Value::Error(e) => return Err(refused(node, &e)),
                    other => return Err(unexpected(other)),
                };
                let ttl = match command(conn, &[b"PTTL", &lock_key]).await? {
                    Value::Int(ms) if ms >= 0 => Some(Duration::from_millis(ms.unsigned_abs())),
                    Value::Int(_) => None,
                    Value::Error(e) => return Err(refused(node, &e)),
                    other => return Err(unexpected(other)),
                };
                let fence = match command(conn, &[b"GET", &fence_key]).await? {
                    Value::Nil => None,
                    Value::Text(t) => {
                        Some(text(&t).parse::<u64>().map_err(|_| Error::NotALock {
                            key: text(&fence_key),
                            why: "the fencing counter is not a number",
                        })?)
                    }
                    Value::Error(e) => return Err(refused(node, &e)),
                    other => return Err(unexpected(other)),
                };
                Ok(NodeStatus::Answered { holder, ttl, fence })
            })
            .await;
        let (endpoints, nodes) = results
            .into_iter()
            .map(|(endpoint, r)| {
                let status = r.unwrap_or_else(|e| NodeStatus::Unreachable(e.to_string()));
                (endpoint, status)
            })
            .unzip();
        Ok(Status { nodes, endpoints })
    }

    /// Force-unlocks `name` on every node, whoever holds it (for operators after a crash):
    /// the lock key and the re-entry count, each only when it holds what the protocol writes
    /// there (a user's key of the same name is left alone). The fencing counter is kept, so
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
        let lock = Lock::new(self.layout().clone(), name.as_ref(), LockOptions::default())?;
        let name = lock.keys().name().clone();
        let resetter = self.resetter(dry_run, request_timeout());
        let keys = [
            (KeyRole::Lock, key(lock.keys().lock())),
            (KeyRole::Holds, key(lock.keys().holds())),
        ];
        let results = self
            .pool()
            .on_each_node(request_timeout(), async |node, conn| {
                let mut done = ResetDone::default();
                for (role, key) in &keys {
                    let outcome = resetter.reset_key(conn, node, &name, *role, key).await?;
                    Resetter::record(&mut done, key, outcome);
                }
                Ok(done)
            })
            .await;
        Ok(report(results, |d| d, dry_run))
    }

    /// Force-unlocks every lock under the key prefix; returns the keys deleted, and fails when
    /// a majority of nodes failed or did not finish. See [`Client::reset_all_report`].
    pub async fn reset_all(&self) -> Result<u64, Error> {
        count(self.reset_all_report(false).await?)
    }

    /// Walks the prefix with `SCAN` (never `KEYS`, which blocks the server;
    /// [`RESET_SCAN_COUNT`] keys a call) and resets every key the layout recognises as a lock
    /// key or re-entry count of some lock, each only when it holds what the protocol writes
    /// there ([`KeyRole::fits`]). Everything else under the prefix — other keys, fencing
    /// counters, wake-up lists (they expire on their own) — is left as it is. Each node's walk
    /// stops at [`RESET_WALK_LIMIT`] and then reports how far it got; each call is bounded by
    /// the request timeout. A dry run deletes nothing and reports what would go.
    ///
    /// Refused before anything is sent with [`Error::NoPrefixToWalk`] under a layout without
    /// a private prefix ([`KeyLayout::prefix`] is `None`: redis-py's and python-redis-lock's),
    /// and with [`Error::EmptyPrefix`] under an empty one (that walk is the whole database).
    pub async fn reset_all_report(&self, dry_run: bool) -> Result<ResetReport, Error> {
        let Some(prefix) = self.layout().prefix() else {
            return Err(Error::NoPrefixToWalk {
                layout: self.layout().name(),
            });
        };
        if prefix.is_empty() {
            return Err(Error::EmptyPrefix);
        }
        let pattern = scan_pattern(prefix);
        let resetter = self.resetter(dry_run, request_timeout());
        let walk_limit = to_std(RESET_WALK_LIMIT);
        let count = RESET_SCAN_COUNT.to_string();
        let results = self
            .pool()
            .on_each_node(walk_limit + request_timeout(), async |node, conn| {
                let started = Instant::now();
                let mut done = ResetDone::default();
                let mut cursor = b"0".to_vec();
                let mut calls = 0u64;
                loop {
                    if started.elapsed() >= walk_limit {
                        done.unfinished = Some(format!(
                            "the walk stopped at its {} s limit after {calls} SCAN calls (cursor {}); run it again",
                            walk_limit.as_secs(),
                            text(&cursor)
                        ));
                        return Ok(done);
                    }
                    let reply = command_within(
                        conn,
                        &[
                            b"SCAN",
                            &cursor,
                            b"MATCH",
                            &pattern,
                            b"COUNT",
                            count.as_bytes(),
                        ],
                        resetter.limit,
                    )
                    .await?;
                    calls += 1;
                    let parts = match reply {
                        Value::List(parts) => parts,
                        Value::Error(e) => return Err(refused(node, &e)),
                        other => return Err(unexpected(other)),
                    };
                    let [Value::Text(next), Value::List(keys)] = parts.as_slice() else {
                        return Err(unexpected(Value::List(parts)));
                    };
                    for found in keys {
                        let Value::Text(found) = found else { continue };
                        let Some((name, role)) = resetter.layout.recognise(found) else {
                            continue;
                        };
                        if !role.is_reset() {
                            continue;
                        }
                        let outcome = resetter.reset_key(conn, node, &name, role, found).await?;
                        Resetter::record(&mut done, found, outcome);
                    }
                    if next.as_slice() == b"0" {
                        return Ok(done);
                    }
                    cursor = next.clone();
                }
            })
            .await;
        Ok(report(results, |d| d, dry_run))
    }

    fn resetter(&self, dry_run: bool, limit: Duration) -> Resetter<'_> {
        Resetter {
            layout: self.layout(),
            dry_run,
            signal_ms: LockOptions::default()
                .wake_signal
                .map_or(1000, |d| d.as_millis())
                .to_string()
                .into_bytes(),
            limit,
        }
    }
}

/// `prefix{*` with the prefix's glob characters escaped, for `SCAN MATCH`: every key that
/// can be a tagged lock key under the prefix.
fn scan_pattern(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 2);
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.extend_from_slice(b"{*");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_escape_globs() {
        assert_eq!(scan_pattern(b"distlock:"), b"distlock:{*");
        assert_eq!(scan_pattern(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\{*");
    }

    fn answered(h: Option<&str>) -> NodeStatus {
        NodeStatus::Answered {
            holder: h.map(Into::into),
            ttl: None,
            fence: None,
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
