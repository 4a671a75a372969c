//! Pipelined release over the pool: writes the core's release ([`PipelinedRelease`]) on an
//! idle connection without waiting for the reply, and puts the connection back owing it
//! ([`OwedReply`]), read in the background while the connection is idle (the core's
//! [`ReleaseReader`], in a task of its own: a caller that pipelines a release and then does
//! nothing still hears how it went). The next lock operation that needs the connection
//! claims it from that reader ([`Pool::claim_reading`]) and gets it as it stands between
//! replies — still owing the rest, which its machine reads first (`Machine::owe_release`,
//! in `client.rs`) — so what it sends goes behind the release on the same connection.
//! [`Client::settle_releases`] waits for every owed reply.
//! What the reply means is the core's ([`distlock_core::ReleaseCheck`]); where it is reported
//! is `release_check.rs`.
//!
//! Safety (the core's argument, `distlock_core::PipelinedRelease`): the delete compares the
//! token, so running late it can only delete our own key; until it runs the name stays held,
//! by us. A late delete of our own token only keeps the name held longer; it never lets two
//! holders in.

use std::sync::Arc;

use distlock_core::{Lock, PipelinedRelease, ReleaseCheck, ReleaseReader, ServerInfo, Token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::debug;

use crate::client::Client;
use crate::clock::Clock;
use crate::conn::Conn;
use crate::error::Error;
use crate::pool::{Pool, Reader};
use crate::release_check::{OwedReply, PipelinedReleases};

/// The release script by source, with the longest name and prefix, fits.
const WRITE_BUF: usize = 4096;

impl Client {
    /// Whether `lock` held by `token` can be released pipelined here: a single-node lock of
    /// one name (the core's [`PipelinedRelease::new`]), not on a Redis Cluster (whose
    /// connections route each command by its reply). Nothing is sent.
    pub(crate) fn check_pipelined(&self, lock: &Lock, token: &Token) -> Result<(), Error> {
        let pool = self.pool();
        if pool.has_cluster() {
            return Err(Error::NotOnCluster("a pipelined release"));
        }
        let servers: Vec<ServerInfo> = (0..pool.len()).map(|n| pool.known_server(n)).collect();
        PipelinedRelease::new(lock, token, &servers).map(drop)?;
        Ok(())
    }

    /// Writes the release of `lock` held by `token` on an idle connection and returns without
    /// its reply (see the module doc); call [`Client::check_pipelined`] first. With no idle
    /// connection free to carry it (none yet, or each owes an earlier pipelined release), or
    /// when the write fails, the release runs the normal way and its outcome is returned.
    pub(crate) async fn release_pipelined(&self, lock: &Lock, token: &Token) -> Result<(), Error> {
        let pool = self.pool();
        let Some(mut conn) = pool.take_idle(0, false) else {
            debug!("no idle connection for a pipelined release: releasing the normal way");
            return self.release_lock(lock, token.clone()).await.map(drop);
        };
        let release = PipelinedRelease::new(lock, token, &[conn.server])?;
        let now = pool.clock().now();
        // Most releases fit the stack buffer; one with a long prefix and name may need more.
        let mut stack = [0u8; WRITE_BUF];
        let mut heap = Vec::new();
        let (len, owed) = loop {
            let out: &mut [u8] = if heap.is_empty() {
                &mut stack
            } else {
                &mut heap
            };
            match release.encode(now, out) {
                Ok(encoded) => break encoded,
                Err(short) => heap.resize(short.required, 0),
            }
        };
        let bytes = if heap.is_empty() {
            &stack[..len]
        } else {
            &heap[..len]
        };
        if let Err(e) = conn.stream.write_all(bytes).await {
            // A write to a broken connection delivers nothing: the key is still ours.
            debug!(error = %e, "pipelined release not written; releasing the normal way");
            pool.lost(0);
            drop(conn);
            return self.release_lock(lock, token.clone()).await.map(drop);
        }
        let name = String::from_utf8_lossy(lock.keys().name().as_bytes()).into_owned();
        let reply = self.release_reports().owe(owed, name);
        let reader = pool.start_reading(0);
        tokio::spawn(read_while_idle(Arc::clone(pool), reader, conn, reply));
        Ok(())
    }

    /// How this client's pipelined releases
    /// ([`Guard::release_pipelined`](crate::Guard::release_pipelined)) have been confirmed so
    /// far: pending (reply not read yet), released, not held (the lease had been lost before
    /// the delete ran), unconfirmed (no usable reply: the key goes at its TTL at the latest).
    #[must_use]
    pub fn pipelined_releases(&self) -> PipelinedReleases {
        self.release_reports().snapshot()
    }

    /// Calls `callback` with the deferred confirmation of every later pipelined release, from
    /// the task that reads its reply (the connection's background reader, the next lock
    /// operation on the connection, or [`Client::settle_releases`]): keep it short and
    /// non-blocking. Replaces an earlier one.
    /// Shared by the client's clones.
    pub fn on_release_check(&self, callback: impl Fn(&ReleaseCheck) + Send + Sync + 'static) {
        self.release_reports()
            .set_callback(std::sync::Arc::new(callback));
    }

    /// Reads the replies that idle connections still owe for pipelined releases — each
    /// within its deadline, the lock's request timeout from when it was written — and
    /// reports them ([`Client::pipelined_releases`], [`Client::on_release_check`]), and
    /// returns once every one is. They are read in the background anyway (see
    /// [`Guard::release_pipelined`](crate::Guard::release_pipelined)); call it to wait for
    /// them, before shutting down say: a reply still owed when its connection is dropped is
    /// reported unconfirmed.
    pub async fn settle_releases(&self) {
        let pool = self.pool();
        let clock = pool.clock();
        for node in 0..pool.len() {
            // The background readers' connections, as they stand: reported already, or
            // still owing (read below).
            while let Some(claimed) = pool.claim_reading(node) {
                if let Ok(conn) = claimed.await {
                    pool.checkin(node, conn);
                }
            }
            while let Some(mut conn) = pool.take_owing(node) {
                let Some(mut owed) = conn.owed.take() else {
                    pool.checkin(node, conn);
                    continue;
                };
                // A record without its release was already handed on: dropping both reports
                // it unconfirmed, which is all that can be said.
                let Some(release) = owed.take_release() else {
                    continue;
                };
                let mut reader = ReleaseReader::new(release, conn.server.protocol);
                read_owed(&mut conn, &mut reader, &clock).await;
                if let Some(check) = reader.poll_check() {
                    owed.report(&check);
                }
                // Out of step (stray bytes, the reply late or cut off): closed, not reused.
                if reader.in_step() {
                    pool.checkin(node, conn);
                }
            }
        }
    }
}

/// Reads the reply `conn` owes for a pipelined release while the connection is idle, and
/// reports the core's check of it (`reply`); then puts the connection back in the pool if
/// it is in step. An operation that claims the connection meanwhile gets it as it stands
/// between replies, still owing the rest, which its machine reads first
/// (`Machine::owe_release`); with part of a reply read, once that reply is in.
async fn read_while_idle(pool: Arc<Pool>, reader: Reader, mut conn: Conn, mut reply: OwedReply) {
    // A record without its release cannot be read: dropped, it reports unconfirmed.
    let Some(release) = reply.take_release() else {
        return;
    };
    let clock = pool.clock();
    let mut check = ReleaseReader::new(release, conn.server.protocol);
    let mut claimed = false;
    let mut buf = [0u8; 512];
    while let Some(deadline) = check.poll_timeout() {
        if claimed && let Some(rest) = check.take_owed() {
            reply.restore(rest);
            conn.owed = Some(reply);
            pool.finish_reading(reader, Some(conn));
            return;
        }
        let read = conn.stream.read(&mut buf);
        // Cancelling a read loses no bytes: a claim stops it between two reads.
        tokio::select! {
            biased;
            () = reader.claimed(), if !claimed => claimed = true,
            read = tokio::time::timeout_at(clock.to_tokio(deadline), read) => match read {
                Ok(Ok(0) | Err(_)) => check.handle_disconnect(),
                Ok(Ok(n)) => check.handle_input(&buf[..n]),
                Err(_) => check.handle_timeout(clock.now().max(deadline)),
            },
        }
    }
    if let Some(decided) = check.poll_check() {
        reply.report(&decided);
    }
    // Out of step (stray bytes, the reply late or cut off): closed, not reused.
    let conn = check.in_step().then_some(conn);
    pool.finish_reading(reader, conn);
}

/// Reads `conn` until `reader` has its check: the reply, the connection's end, or the
/// reply's deadline.
async fn read_owed(conn: &mut Conn, reader: &mut ReleaseReader, clock: &Clock) {
    let mut buf = [0u8; 512];
    while let Some(deadline) = reader.poll_timeout() {
        let read = conn.stream.read(&mut buf);
        match tokio::time::timeout_at(clock.to_tokio(deadline), read).await {
            Ok(Ok(0) | Err(_)) => reader.handle_disconnect(),
            Ok(Ok(n)) => reader.handle_input(&buf[..n]),
            Err(_) => reader.handle_timeout(clock.now().max(deadline)),
        }
    }
}
