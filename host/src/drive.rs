//! Runs a core machine over real connections: writes what it asks, feeds what arrives,
//! sleeps until its deadline. Any [`Driven`] machine — a lock operation, or an operator
//! command's (`status`, `reset`) — goes through the same loop. No lock decision is made here.
//!
//! Opening a connection is part of a request's time, not something an operation waits for
//! before it starts: a node without a connection gets one opened in a task of its own, what
//! the machine sends it meanwhile is held back until it is open, and the machine's own
//! request timeout is what gives up on a node that does not answer — so a node whose
//! handshake hangs (a frozen server, a partition) costs the operation that node's vote, never
//! more time than the machine allows.
//!
//! The driver works on the node pool ([`Pool`]), never on the client: the pool opens
//! connections, reads the clock and takes back the connections left in step
//! ([`return_slots`]), so the client depends on the driver and not the other way round.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use distlock_core::{Driven, Protocol, ServerInfo};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::task::JoinHandle;
use tracing::{debug, trace};

use crate::clock::Clock;
use crate::conn::Conn;
use crate::error::Error;
use crate::pool::Pool;

/// Room for a transmit without the heap: a lock command (`SET … NX PX`, an `EVALSHA` with its
/// keys and token) is a few hundred bytes at most; a longer one (an `EVAL` with a script's
/// source, a long name) goes to the heap. Small, because the buffer lives in the operation's
/// future, which every level that awaits it copies whole.
const WRITE_BUF: usize = 512;

/// One node's connection, as the driver sees it.
pub(crate) enum Slot {
    /// Open and handshaken.
    Ready(Conn),
    /// Being opened (by [`Pool::open`]); what the machine sent meanwhile waits in
    /// `pending`, to be written once it is open.
    Opening {
        connect: JoinHandle<Result<Conn, Error>>,
        pending: Vec<u8>,
    },
    /// No connection: opened when the machine next sends to the node.
    Closed,
}

/// What happened while waiting.
enum Wake {
    Read(usize, io::Result<usize>),
    Opened(usize, Result<Conn, Error>),
    Timer,
    /// The caller's cancel future completed.
    Cancel,
}

/// A caller's request to give an operation up: when it completes, the machine is cancelled
/// (an acquire rolls back what it may have taken) and driven to its outcome.
pub(crate) type Cancel<'a> = Option<Pin<Box<dyn Future<Output = ()> + Send + 'a>>>;

/// Drives `machine` to its outcome over `slots` (one per node). `servers` is what the
/// machine was built with: a connection opened for node `i` must speak
/// `servers[i].protocol`, the RESP version the machine reads that node's replies in.
///
/// A connection that fails, or that the machine reports out of step, is dropped and reported
/// to the machine as a disconnect; the next time the machine sends to that node a new one is
/// opened (the node's reconnect backoff permitting), so a long wait survives a server restart.
/// Connections may still owe replies afterwards (a Redlock round's slower nodes, a
/// rollback's answers): see [`settle`].
///
/// When `cancel` completes first, the machine is cancelled between two waits — never in the
/// middle of a write, so no connection is left holding half a command — and driven on until
/// its outcome (the rollback sent).
pub(crate) async fn drive<M: Driven>(
    machine: &mut M,
    slots: &mut [Slot],
    servers: &[ServerInfo],
    pool: &Arc<Pool>,
    cancel: Cancel<'_>,
) -> M::Outcome {
    pump(machine, slots, servers, pool, cancel, |machine, _| {
        machine.poll_outcome()
    })
    .await
}

/// One slot per node for the next operation: an idle connection where the pool has one,
/// else none (opened while the machine runs), and for each node the server the machine is to
/// be built for — the connection's, or what the node's last handshake learned. `owing`: the
/// operation is a lock machine, which can take a connection that owes a pipelined release's
/// reply (it must be told: `Machine::owe_release`).
pub(crate) fn take_slots(pool: &Pool, owing: bool) -> (Vec<Slot>, Vec<ServerInfo>) {
    let mut slots = Vec::with_capacity(pool.len());
    let mut servers = Vec::with_capacity(pool.len());
    for node in 0..pool.len() {
        match pool.take_idle(node, owing) {
            Some(conn) => {
                servers.push(conn.server);
                slots.push(Slot::Ready(conn));
            }
            None => {
                servers.push(pool.known_server(node));
                slots.push(Slot::Closed);
            }
        }
    }
    (slots, servers)
}

/// Whether no connection owes `machine` anything: every open one is in step, and none still
/// opening has requests of its to carry.
pub(crate) fn in_step<M: Driven>(machine: &M, slots: &[Slot]) -> bool {
    slots.iter().enumerate().all(|(node, slot)| match slot {
        Slot::Closed => true,
        Slot::Ready(_) | Slot::Opening { .. } => machine.owed_replies(node) == Some(0),
    })
}

/// After the outcome: reads the replies the connections still owe, so they can be pooled
/// again instead of reopened, for at most the lock's `request_timeout` — the core's rule for
/// how long a node may stay silent (replies the machine abandoned carry no deadline of their
/// own; those it still awaits end sooner at theirs). Open connections still owing replies at the end are
/// dropped, so a late reply can never reach the next user of a pooled connection;
/// connections still opening are left to finish in their tasks (see [`Pool::open`]).
pub(crate) async fn settle<M: Driven>(
    machine: &mut M,
    slots: &mut [Slot],
    servers: &[ServerInfo],
    pool: &Arc<Pool>,
    request_timeout: distlock_core::Duration,
) {
    let limit = crate::clock::to_std(request_timeout);
    let _ = tokio::time::timeout(
        limit,
        pump(machine, slots, servers, pool, None, |machine, slots| {
            in_step(machine, slots).then_some(())
        }),
    )
    .await;
    close_out_of_step(machine, slots);
}

/// Drops the open connections that still owe `machine` replies (or are out of step), so a
/// late reply can never reach the next user of a pooled connection.
pub(crate) fn close_out_of_step<M: Driven>(machine: &M, slots: &mut [Slot]) {
    for (node, slot) in slots.iter_mut().enumerate() {
        if !matches!(slot, Slot::Closed) && machine.owed_replies(node) != Some(0) {
            *slot = Slot::Closed;
        }
    }
}

/// Puts an operation's connections back in the pool (those still opening once open): only
/// those in step, so call it after [`drive`] or [`settle`] left every open one so.
pub(crate) fn return_slots(pool: &Arc<Pool>, slots: Vec<Slot>) {
    for (node, slot) in slots.into_iter().enumerate() {
        match slot {
            Slot::Ready(conn) => pool.checkin(node, conn),
            // Nothing was written on it: it joins the pool clean once open.
            Slot::Opening { connect, .. } => {
                let pool = Arc::clone(pool);
                tokio::spawn(async move {
                    if let Ok(Ok(conn)) = connect.await {
                        pool.checkin(node, conn);
                    }
                });
            }
            Slot::Closed => {}
        }
    }
}

/// Sends what `machine` asks, feeds it what arrives, opens connections and honours its
/// deadlines, until `done` gives a value (asked after each round of sends).
async fn pump<M: Driven, T>(
    machine: &mut M,
    slots: &mut [Slot],
    servers: &[ServerInfo],
    pool: &Arc<Pool>,
    mut cancel: Cancel<'_>,
    mut done: impl FnMut(&mut M, &[Slot]) -> Option<T>,
) -> T {
    let clock = &pool.clock();
    // Most commands fit the stack buffer; an EVAL with a long key may need the heap. Replies
    // are read into the connection's own buffer (`Conn::read_buf`).
    let mut stack = [0u8; WRITE_BUF];
    let mut heap = Vec::new();
    loop {
        // 1. Everything the machine wants sent, now (or as soon as its connection is open).
        loop {
            let now = clock.now();
            let out: &mut [u8] = if heap.is_empty() {
                &mut stack
            } else {
                &mut heap
            };
            let tx = match machine.poll_transmit(now, out) {
                Ok(Some(tx)) => tx,
                Ok(None) => break,
                Err(short) => {
                    heap.resize(short.required, 0);
                    continue;
                }
            };
            let bytes = &out[..tx.len];
            let Some(slot) = slots.get_mut(tx.node) else {
                machine.handle_disconnect(tx.node, now);
                continue;
            };
            match slot {
                Slot::Ready(conn) => {
                    if let Err(e) = conn.stream.write_all(bytes).await {
                        debug!(node = tx.node, error = %e, "write failed");
                        *slot = Slot::Closed;
                        pool.lost(tx.node);
                        machine.handle_disconnect(tx.node, clock.now());
                    }
                }
                Slot::Opening { pending, .. } => pending.extend_from_slice(bytes),
                Slot::Closed => {
                    let protocol = servers.get(tx.node).map_or(Protocol::Resp3, |s| s.protocol);
                    *slot = Slot::Opening {
                        connect: pool.open(tx.node, protocol),
                        pending: bytes.to_vec(),
                    };
                }
            }
        }
        if let Some(value) = done(machine, slots) {
            return value;
        }
        // 2. Wait for bytes from a node, a connection to open, or the machine's deadline.
        let wake = wait(slots, machine.poll_timeout(), &mut cancel, clock).await;
        let now = clock.now();
        match wake {
            Wake::Read(node, Ok(n)) if n > 0 => {
                trace!(node, bytes = n, "read");
                if let Some(Slot::Ready(conn)) = slots.get(node) {
                    machine.handle_input(node, &conn.read_buf[..n], now);
                }
                if machine.owed_replies(node).is_none() {
                    // Out of step: the machine takes nothing more from this connection.
                    debug!(node, "connection out of step; replacing it");
                    close(slots, node);
                    machine.handle_disconnect(node, now);
                }
            }
            Wake::Read(node, result) => {
                debug!(node, ?result, "connection closed");
                close(slots, node);
                pool.lost(node);
                machine.handle_disconnect(node, now);
            }
            Wake::Opened(node, result) => {
                let Some(slot) = slots.get_mut(node) else {
                    continue;
                };
                let pending = match std::mem::replace(slot, Slot::Closed) {
                    Slot::Opening { pending, .. } => pending,
                    _ => Vec::new(),
                };
                let expected = servers.get(node).map_or(Protocol::Resp3, |s| s.protocol);
                let written = match result {
                    Ok(mut conn) if conn.server.protocol == expected => {
                        match conn.stream.write_all(&pending).await {
                            Ok(()) => {
                                *slot = Slot::Ready(conn);
                                Ok(())
                            }
                            Err(e) => Err(e.to_string()),
                        }
                    }
                    Ok(conn) => {
                        // The server would not speak the protocol this machine reads (it
                        // lost RESP3 over a restart, say): no use here, fine for the next.
                        let got = conn.server.protocol;
                        pool.checkin(node, conn);
                        Err(format!(
                            "the new connection speaks {got:?}, not {expected:?}"
                        ))
                    }
                    Err(e) => Err(e.to_string()),
                };
                if let Err(why) = written {
                    debug!(node, %why, "connection not opened");
                    machine.handle_disconnect(node, clock.now());
                }
            }
            Wake::Timer => machine.handle_timeout(now),
            Wake::Cancel => {
                debug!("operation cancelled by the caller");
                machine.cancel(now);
            }
        }
    }
}

fn close(slots: &mut [Slot], node: usize) {
    if let Some(slot) = slots.get_mut(node) {
        *slot = Slot::Closed;
    }
}

/// Waits for the first of: bytes on a ready connection (read into its `read_buf`), a connection
/// opening (or failing to), the caller's cancel (taken, once), the deadline. Reads are
/// preferred over the timer, so a reply that is there is used even when its deadline has
/// just passed.
async fn wait(
    slots: &mut [Slot],
    deadline: Option<distlock_core::Instant>,
    cancel: &mut Cancel<'_>,
    clock: &Clock,
) -> Wake {
    let timer = sleep_until_deadline(deadline, clock);
    let mut timer = std::pin::pin!(timer);
    std::future::poll_fn(|cx| {
        for (node, slot) in slots.iter_mut().enumerate() {
            match slot {
                Slot::Ready(conn) => {
                    let mut read = ReadBuf::new(&mut conn.read_buf);
                    if let Poll::Ready(result) = Pin::new(&mut conn.stream).poll_read(cx, &mut read)
                    {
                        let n = read.filled().len();
                        return Poll::Ready(Wake::Read(node, result.map(|()| n)));
                    }
                }
                Slot::Opening { connect, .. } => {
                    if let Poll::Ready(joined) = Pin::new(connect).poll(cx) {
                        let result = joined.unwrap_or_else(|e| {
                            Err(Error::Connect {
                                endpoint: format!("node {node}"),
                                source: io::Error::other(e.to_string()),
                            })
                        });
                        return Poll::Ready(Wake::Opened(node, result));
                    }
                }
                Slot::Closed => {}
            }
        }
        if let Some(request) = cancel.as_mut()
            && request.as_mut().poll(cx).is_ready()
        {
            *cancel = None;
            return Poll::Ready(Wake::Cancel);
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Wake::Timer),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Sleeps until the machine's deadline. No deadline while waiting for nothing cannot happen
/// in a working machine; a second's sleep guards against a hang all the same.
async fn sleep_until_deadline(deadline: Option<distlock_core::Instant>, clock: &Clock) {
    match deadline {
        Some(at) => tokio::time::sleep_until(clock.to_tokio(at)).await,
        None => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
    }
}
