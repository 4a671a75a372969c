//! The replies an operation's slower nodes still owed when it returned (a Redlock acquire
//! returns at a quorum), and the order a later operation on the same lease keeps with them.
//!
//! Those replies are read in the background (`drive::settle`, started by `client.rs`), so
//! the caller has its outcome at once. The requests behind them were written, but a slow
//! node may not have run them yet. A release sent to such a node on another connection can
//! reach the server first — the acquire's `SET` would then land after the delete and keep
//! the name held until its TTL. Commands on different connections are not ordered; a
//! node's reply is what says its request ran. So the core's rule (see
//! `distlock_core::Machine`, step 4) is kept here: **what a later operation of the lease sends
//! to a straggler node is held back until that node's owed replies are read, or given up at
//! the lock's request timeout** (`settle`'s bound, the core's number). Nodes that answered
//! are not held back.
//!
//! Invariant: a [`Stragglers`] names only nodes whose replies were still owed when its
//! operation returned, and its wait ends when the background read ends — with the replies,
//! at the request timeout, or when the task is gone (its sender dropped) — so holding back
//! never waits longer than the core allows a node to stay silent.

use std::sync::Arc;

use distlock_core::ServerInfo;
use tokio::sync::watch;

use crate::drive::Slot;
use crate::error::Error;
use crate::pool::Pool;

/// The nodes an operation still owed replies from when it returned, and when their
/// background read ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stragglers {
    nodes: Vec<usize>,
    /// `true` (or the sender gone) once the background read ended; `None`: nothing owed.
    settled: Option<watch::Receiver<bool>>,
}

/// Told when the background read of the owed replies ends (dropping it says so too).
pub(crate) struct Settled(watch::Sender<bool>);

impl Settled {
    /// The read ended: what waited for it goes on.
    pub(crate) fn done(self) {
        self.0.send_replace(true);
    }
}

impl Stragglers {
    /// `nodes` still owe replies that a background task reads: it calls [`Settled::done`]
    /// when it stops.
    pub(crate) fn owed(nodes: Vec<usize>) -> (Stragglers, Settled) {
        let (tx, rx) = watch::channel(false);
        let stragglers = Stragglers {
            nodes,
            settled: Some(rx),
        };
        (stragglers, Settled(tx))
    }

    /// Whether `node`'s replies were still owed and are not read yet.
    fn unsettled(&self, node: usize) -> bool {
        self.nodes.contains(&node)
            && self
                .settled
                .as_ref()
                .is_some_and(|rx| !*rx.borrow() && rx.has_changed().is_ok())
    }

    /// Waits until the background read ended (at once when nothing was owed).
    async fn settled(mut settled: Option<watch::Receiver<bool>>) {
        if let Some(rx) = settled.as_mut() {
            // An error means the task is gone: nothing more will be read.
            let _ = rx.wait_for(|done| *done).await;
        }
    }

    /// Holds back what a later operation sends to each straggler node whose replies are not
    /// read yet: its slot becomes one "being opened" that opens — on the connection it had,
    /// or a new one — only once the background read ended (see the module doc). The driver
    /// keeps what the machine sends meanwhile and writes it then.
    pub(crate) fn hold_back(&self, pool: &Arc<Pool>, slots: &mut [Slot], servers: &[ServerInfo]) {
        for (node, slot) in slots.iter_mut().enumerate() {
            if !self.unsettled(node) {
                continue;
            }
            let had = std::mem::replace(slot, Slot::Closed);
            let settled = self.settled.clone();
            let pool = Arc::clone(pool);
            let protocol = servers.get(node).map(|s| s.protocol);
            let connect = tokio::spawn(async move {
                Stragglers::settled(settled).await;
                match had {
                    Slot::Ready(conn) => Ok(conn),
                    Slot::Opening { connect, .. } => join(connect).await,
                    // The connection the background read put back, if it is still idle.
                    Slot::Closed => match pool.take_idle(node, false) {
                        Some(conn) => Ok(conn),
                        None => {
                            let protocol = protocol.unwrap_or(distlock_core::Protocol::Resp3);
                            join(pool.open(node, protocol)).await
                        }
                    },
                }
            });
            *slot = Slot::Opening {
                connect,
                pending: Vec::new(),
            };
        }
    }
}

/// The connection a connect task brings.
async fn join(
    connect: tokio::task::JoinHandle<Result<crate::conn::Conn, Error>>,
) -> Result<crate::conn::Conn, Error> {
    connect.await.unwrap_or_else(|e| {
        Err(Error::Connect {
            endpoint: "a straggler node".into(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}
