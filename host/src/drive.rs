//! Runs a core machine over real connections: writes what it asks, feeds what arrives,
//! sleeps until its deadline. No lock decision is made here.

use std::io;

use distlock_core::machine::{Machine, Operation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, trace};

use crate::client::Client;
use crate::clock::Clock;
use crate::conn::Conn;

/// Bytes a single read takes.
const READ_CHUNK: usize = 4096;
/// The largest transmit the core produces (an `EVAL` with the longest script and key).
const WRITE_BUF: usize = 4096;

/// What happened while waiting.
enum Wake {
    Read(usize, io::Result<usize>),
    Timer,
}

/// Drives `machine` to its outcome over `conns` (one per node; `None`: no connection).
/// A connection that fails is dropped and reported to the machine as a disconnect; the next
/// time the machine sends to that node, a new connection is opened (the node's reconnect
/// backoff permitting), so a long wait survives a server restart. Connections may still owe
/// replies afterwards (a Redlock round's slower nodes, a rollback's answers): see [`settle`].
pub(crate) async fn drive<Op: Operation, const N: usize>(
    machine: &mut Machine<Op, N>,
    conns: &mut [Option<Conn>],
    client: &Client,
) -> Op::Outcome {
    pump(machine, conns, client, |machine, _| machine.poll_outcome()).await
}

/// Whether every connection still open owes `machine` nothing.
pub(crate) fn in_step<Op: Operation, const N: usize>(
    machine: &Machine<Op, N>,
    conns: &[Option<Conn>],
) -> bool {
    conns
        .iter()
        .enumerate()
        .all(|(node, conn)| conn.is_none() || machine.owed_replies(node) == Some(0))
}

/// After the outcome: reads the replies the connections still owe, so they can be pooled
/// again instead of reopened, for at most `limit` (the machine's own request timeouts end
/// it sooner when a node stays silent). Connections still owing replies at the end are
/// dropped, so a late reply can never reach the next user of a pooled connection.
pub(crate) async fn settle<Op: Operation, const N: usize>(
    machine: &mut Machine<Op, N>,
    conns: &mut [Option<Conn>],
    client: &Client,
    limit: std::time::Duration,
) {
    let _ = tokio::time::timeout(
        limit,
        pump(machine, conns, client, |machine, conns| {
            in_step(machine, conns).then_some(())
        }),
    )
    .await;
    for (node, conn) in conns.iter_mut().enumerate() {
        if conn.is_some() && machine.owed_replies(node) != Some(0) {
            *conn = None;
        }
    }
}

/// Sends what `machine` asks, feeds it what arrives and its deadlines, until `done` gives a
/// value (asked after each round of sends).
async fn pump<Op: Operation, const N: usize, T>(
    machine: &mut Machine<Op, N>,
    conns: &mut [Option<Conn>],
    client: &Client,
    mut done: impl FnMut(&mut Machine<Op, N>, &[Option<Conn>]) -> Option<T>,
) -> T {
    let clock = &client.clock();
    // Most commands fit the stack buffer; an EVAL with a long key may need the heap.
    let mut stack = [0u8; WRITE_BUF];
    let mut heap = Vec::new();
    let mut read_buf = [0u8; READ_CHUNK];
    let mut reads: Vec<Vec<u8>> = if conns.len() > 1 {
        (0..conns.len()).map(|_| vec![0u8; READ_CHUNK]).collect()
    } else {
        Vec::new()
    };
    loop {
        // 1. Everything the machine wants sent, now.
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
            if let Some(slot @ None) = conns.get_mut(tx.node) {
                match client.connect_node(tx.node).await {
                    Ok(conn) => *slot = Some(conn),
                    Err(e) => debug!(node = tx.node, error = %e, "reconnect failed"),
                }
            }
            let written = match conns.get_mut(tx.node).and_then(Option::as_mut) {
                Some(conn) => conn.stream.write_all(&out[..tx.len]).await,
                None => Err(io::Error::new(io::ErrorKind::NotConnected, "no connection")),
            };
            if let Err(e) = written {
                debug!(node = tx.node, error = %e, "write failed");
                if let Some(slot) = conns.get_mut(tx.node) {
                    *slot = None;
                }
                machine.handle_disconnect(tx.node, clock.now());
            }
        }
        if let Some(value) = done(machine, conns) {
            return value;
        }
        // 2. Wait for bytes from any node, or the machine's deadline.
        let deadline = machine.poll_timeout();
        let wake = if let [Some(conn)] = conns {
            // One node (the common case): no boxed futures.
            tokio::select! {
                read = conn.stream.read(&mut read_buf) => Wake::Read(0, read),
                () = sleep_until_deadline(deadline, clock) => Wake::Timer,
            }
        } else {
            let mut pending = Vec::new();
            for ((node, conn), buf) in conns.iter_mut().enumerate().zip(reads.iter_mut()) {
                if let Some(conn) = conn.as_mut() {
                    pending.push(Box::pin(async move {
                        Wake::Read(node, conn.stream.read(buf).await)
                    }));
                }
            }
            let timer = async {
                sleep_until_deadline(deadline, clock).await;
                Wake::Timer
            };
            if pending.is_empty() {
                timer.await
            } else {
                tokio::select! {
                    wake = first_ready(pending) => wake,
                    wake = timer => wake,
                }
            }
        };
        let now = clock.now();
        match wake {
            Wake::Read(node, Ok(n)) if n > 0 => {
                trace!(node, bytes = n, "read");
                let buf = reads.get(node).map_or(&read_buf[..], Vec::as_slice);
                machine.handle_input(node, &buf[..n], now);
            }
            Wake::Read(node, result) => {
                debug!(node, ?result, "connection closed");
                if let Some(slot) = conns.get_mut(node) {
                    *slot = None;
                }
                machine.handle_disconnect(node, now);
            }
            Wake::Timer => machine.handle_timeout(now),
        }
    }
}

/// Sleeps until the machine's deadline. No deadline while waiting for nothing cannot happen
/// in a working machine; a second's sleep guards against a hang all the same.
async fn sleep_until_deadline(deadline: Option<distlock_core::Instant>, clock: &Clock) {
    match deadline {
        Some(at) => tokio::time::sleep_until(clock.to_tokio(at)).await,
        None => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
    }
}

/// The output of whichever future is ready first (reads are cancel-safe, so the others can
/// be dropped).
async fn first_ready<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> F::Output {
    std::future::poll_fn(move |cx| {
        for f in futures.iter_mut() {
            if let std::task::Poll::Ready(out) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready(out);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
