//! Operator commands: look at a lock, and force-unlock after a crash. These read and delete
//! keys directly (with the core's RESP encoder and decoder); they take no lock decisions.

use std::time::Duration;

use distlock_core::resp::{self, Framer, Reply, Sink};
use distlock_core::{Lock, LockOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::Client;
use crate::conn::Conn;
use crate::error::Error;

/// What the nodes say about a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The holder's token on each node (`None`: free there; an error text when unreachable).
    pub nodes: Vec<NodeStatus>,
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
    /// The node could not be asked.
    Unreachable(String),
}

impl Status {
    /// A readable, one line per node summary.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut out = match self.holder() {
            Some(holder) => format!("held by {holder}\n"),
            None => "not held (by a majority)\n".to_owned(),
        };
        for (i, node) in self.nodes.iter().enumerate() {
            let line = match node {
                NodeStatus::Answered { holder, ttl, fence } => format!(
                    "node {i}: {} ttl {} fence {}",
                    holder.as_deref().unwrap_or("free"),
                    ttl.map_or("-".to_owned(), |t| format!("{} ms", t.as_millis())),
                    fence.map_or("-".to_owned(), |f| f.to_string()),
                ),
                NodeStatus::Unreachable(e) => format!("node {i}: unreachable: {e}"),
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    /// The status as JSON.
    #[must_use]
    pub fn to_json(&self, name: &str) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .map(|n| match n {
                NodeStatus::Answered { holder, ttl, fence } => serde_json::json!({
                    "holder": holder, "ttl_ms": ttl.map(|t| t.as_millis() as u64), "fence": fence,
                }),
                NodeStatus::Unreachable(e) => serde_json::json!({ "error": e }),
            })
            .collect();
        serde_json::json!({ "name": name, "holder": self.holder(), "nodes": nodes })
    }

    /// The token a majority of nodes agree holds the lock.
    #[must_use]
    pub fn holder(&self) -> Option<&str> {
        let holders: Vec<&str> = self
            .nodes
            .iter()
            .filter_map(|n| match n {
                NodeStatus::Answered {
                    holder: Some(h), ..
                } => Some(h.as_str()),
                _ => None,
            })
            .collect();
        let needed = distlock_core::quorum(self.nodes.len());
        holders
            .iter()
            .copied()
            .find(|h| holders.iter().filter(|o| *o == h).count() >= needed)
    }
}

/// A reply as owned values (admin replies are small).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Nil,
    Int(i64),
    Text(Vec<u8>),
    List(Vec<Value>),
    Error(String),
}

fn owned(reply: &Reply<'_>) -> Value {
    match reply {
        Reply::Nil => Value::Nil,
        Reply::Integer(i) => Value::Int(*i),
        Reply::Simple(b) | Reply::Bulk(b) => Value::Text(b.to_vec()),
        Reply::Error(e) => Value::Error(String::from_utf8_lossy(e).into_owned()),
        Reply::Array(items) | Reply::Push(items) => Value::List(items.iter().map(owned).collect()),
        _ => Value::Nil,
    }
}

/// Sends one command and reads its reply.
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
        let n = tokio::time::timeout(Duration::from_secs(5), conn.stream.read(&mut buf))
            .await
            .map_err(|_| {
                io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no reply",
                ))
            })?
            .map_err(io)?;
        if n == 0 {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            )));
        }
        framer.push(&buf[..n]);
    }
}

fn key(parts: [&[u8]; 4]) -> Vec<u8> {
    parts.concat()
}

impl Client {
    /// What each node says about the lock `name`: holder token, its key's TTL, the fence.
    pub async fn status(&self, name: impl AsRef<[u8]>) -> Result<Status, Error> {
        let lock = Lock::new(self.layout().clone(), name.as_ref(), LockOptions::default())?;
        let (lock_key, fence_key) = (key(lock.keys().lock()), key(lock.keys().fence()));
        let results = self
            .on_each_node(async |conn| {
                let holder = command(conn, &[b"GET", &lock_key]).await?;
                let ttl = command(conn, &[b"PTTL", &lock_key]).await?;
                let fence = command(conn, &[b"GET", &fence_key]).await?;
                Ok(NodeStatus::Answered {
                    holder: match holder {
                        Value::Text(t) => Some(String::from_utf8_lossy(&t).into_owned()),
                        _ => None,
                    },
                    ttl: match ttl {
                        Value::Int(ms) if ms >= 0 => Some(Duration::from_millis(ms.unsigned_abs())),
                        _ => None,
                    },
                    fence: match fence {
                        Value::Text(t) => String::from_utf8_lossy(&t).parse().ok(),
                        _ => None,
                    },
                })
            })
            .await;
        let nodes = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| NodeStatus::Unreachable(e.to_string())))
            .collect();
        Ok(Status { nodes })
    }

    /// Force-unlocks `name` on every node, whoever holds it (for operators after a crash).
    /// The fencing counter is kept, so fences stay monotonic. Like a release it then pushes a
    /// wake-up signal, so waiters blocked on it — ours, and python-redis-lock's, which may
    /// block with no timeout at all — try at once. Returns the keys deleted.
    pub async fn reset(&self, name: impl AsRef<[u8]>) -> Result<u64, Error> {
        let lock = Lock::new(self.layout().clone(), name.as_ref(), LockOptions::default())?;
        let keys = [
            key(lock.keys().lock()),
            key(lock.keys().holds()),
            key(lock.keys().signal()),
        ];
        let signal = key(lock.keys().signal());
        let signal_ms = LockOptions::default()
            .wake_signal
            .map_or(1000, |d| d.as_millis())
            .to_string();
        let results = self
            .on_each_node(async |conn| {
                let mut args: Vec<&[u8]> = vec![b"DEL"];
                args.extend(keys.iter().map(Vec::as_slice));
                let deleted = match command(conn, &args).await? {
                    Value::Int(n) => n.unsigned_abs(),
                    other => return Err(unexpected(other)),
                };
                // What python-redis-lock's own reset does after the delete; a wake-up is a
                // hint only, so a lost one just leaves waiters to their timeouts.
                command(conn, &[b"LPUSH", &signal, b"1"]).await?;
                command(conn, &[b"PEXPIRE", &signal, signal_ms.as_bytes()]).await?;
                Ok(deleted)
            })
            .await;
        sum(results)
    }

    /// Force-unlocks every lock under the key prefix: walks the prefix with `SCAN` (never
    /// `KEYS`, which blocks the server) and deletes all but the fencing counters.
    ///
    /// Refused with [`Error::NoPrefixToWalk`], before anything is sent, under a layout
    /// without a private prefix ([`distlock_core::KeyLayout::prefix`] is `None`: redis-py's
    /// and python-redis-lock's).
    pub async fn reset_all(&self) -> Result<u64, Error> {
        let Some(prefix) = self.layout().prefix() else {
            return Err(Error::NoPrefixToWalk {
                layout: self.layout().name(),
            });
        };
        let pattern = glob_escape(prefix);
        let results = self
            .on_each_node(async |conn| {
                let mut cursor = b"0".to_vec();
                let mut deleted = 0u64;
                loop {
                    let reply = command(
                        conn,
                        &[b"SCAN", &cursor, b"MATCH", &pattern, b"COUNT", b"500"],
                    )
                    .await?;
                    let Value::List(parts) = reply else {
                        return Err(unexpected(reply));
                    };
                    let [Value::Text(next), Value::List(keys)] = parts.as_slice() else {
                        return Err(unexpected(Value::List(parts)));
                    };
                    let doomed: Vec<&[u8]> = keys
                        .iter()
                        .filter_map(|k| match k {
                            Value::Text(k) if !k.ends_with(b":fence") => Some(k.as_slice()),
                            _ => None,
                        })
                        .collect();
                    if !doomed.is_empty() {
                        let mut args: Vec<&[u8]> = vec![b"DEL"];
                        args.extend(doomed);
                        if let Value::Int(n) = command(conn, &args).await? {
                            deleted += n.unsigned_abs();
                        }
                    }
                    if next.as_slice() == b"0" {
                        return Ok(deleted);
                    }
                    cursor = next.clone();
                }
            })
            .await;
        sum(results)
    }
}

fn unexpected(value: Value) -> Error {
    Error::Connect {
        endpoint: "node".into(),
        source: std::io::Error::other(format!("unexpected reply {value:?}")),
    }
}

fn sum(results: Vec<Result<u64, Error>>) -> Result<u64, Error> {
    let mut total = 0;
    let mut last_error = None;
    for r in results {
        match r {
            Ok(n) => total += n,
            Err(e) => last_error = Some(e),
        }
    }
    match (total, last_error) {
        (0, Some(e)) => Err(e),
        (n, _) => Ok(n),
    }
}

/// `prefix*` with the prefix's glob characters escaped, for `SCAN MATCH`.
fn glob_escape(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 1);
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'*');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_patterns_escape_globs() {
        assert_eq!(glob_escape(b"distlock:"), b"distlock:*");
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\*");
    }

    #[test]
    fn holder_needs_a_majority() {
        let answered = |h: Option<&str>| NodeStatus::Answered {
            holder: h.map(Into::into),
            ttl: None,
            fence: None,
        };
        let s = Status {
            nodes: vec![answered(Some("a")), answered(Some("a")), answered(None)],
        };
        assert_eq!(s.holder(), Some("a"));
        let s = Status {
            nodes: vec![
                answered(Some("a")),
                answered(Some("b")),
                NodeStatus::Unreachable("x".into()),
            ],
        };
        assert_eq!(s.holder(), None);
    }
}
