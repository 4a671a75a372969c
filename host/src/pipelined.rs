//! Pipelined release over the pool: writes the core's release ([`PipelinedRelease`]) on an
//! idle connection without waiting for the reply, and puts the connection back owing it
//! ([`OwedReply`]), read in the background while the connection is idle (the core's
//! [`ReleaseReader`], run by the pool's background task, [`Pool::watch_reading`]: a caller
//! that pipelines a release and then does nothing still hears how it went). The next lock operation that needs the connection
//! claims it from that reader ([`Pool::claim_reading`]) and gets it as it stands between
//! replies — still owing the rest, which its machine reads first (`Machine::owe_release`,
//! in `client.rs`) — so what it sends goes behind the release on the same connection.
//! [`Client::settle_releases`] waits for every owed reply.
//! What the reply means is the core's ([`distlock_core::ReleaseCheck`]); where it is reported
//! is `release_check.rs`.
//!
//! **One round trip per pair, no thread woken.** The connection, its reader's state and the
//! record of what it owes live in one shared place ([`IdleRead`]); the background task only
//! reads under its lock, one poll at a time. So a claim takes the connection there and then,
//! between two of the task's polls, and the operation writes at once — it never waits for
//! the task to be scheduled (on another thread: on a loaded machine as long as the round
//! trip the pipelining saves). Only with half a reply in does the claim wait, for the rest
//! of that reply. Nor does a release wake the task, as a rule: it registers the task's waker
//! on the connection itself, so the task runs only if the reply arrives before an operation
//! claims the connection, or at its timer (see [`Pool::watch_reading`]). This relies on one
//! connection's replies coming in the order of its commands: the release was written first,
//! so its reply comes first, whoever reads it.
//!
//! Safety (the core's argument, `distlock_core::PipelinedRelease`): the delete compares the
//! token, so running late it can only delete our own key; until it runs the name stays held,
//! by us. A late delete of our own token only keeps the name held longer; it never lets two
//! holders in.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use distlock_core::{Lock, PipelinedRelease, ReleaseCheck, ReleaseReader, ServerInfo, Token};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;
use tracing::debug;

use crate::client::Client;
use crate::clock::Clock;
use crate::conn::Conn;
use crate::error::Error;
use crate::pool::{BackgroundRead, Claim, Pool};
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
        IdleRead::start(pool, 0, conn, reply);
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
            while let Some(claim) = pool.claim_reading(node) {
                match claim {
                    Claim::Now(conn) => pool.checkin(node, conn),
                    Claim::Later(conn) => {
                        if let Ok(conn) = conn.await {
                            pool.checkin(node, conn);
                        }
                    }
                    Claim::Gone => {}
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
        // A background reader that ended as it was claimed above (found gone) may still be
        // reporting: every report is made before this returns.
        pool.reports_settled().await;
    }
}

/// A connection owing a pipelined release's reply, read in the background while idle: shared
/// by its reader task and the pool, which lends it to an operation that claims it (see the
/// module doc). Every change happens under the one lock, so the connection is read by the
/// task or taken by a claim, never both.
///
/// The pool is not kept here (it keeps this while registered): the task holds it, and the
/// pool passes itself to a claim.
struct IdleRead {
    node: usize,
    /// `None` before the reader is registered with the pool (for the moment
    /// [`IdleRead::start`] takes) and once the connection went to an operation, back to the
    /// pool, or was closed.
    state: Mutex<Option<Reading>>,
}

struct Reading {
    id: u64,
    conn: Conn,
    check: ReleaseReader,
    /// The record of the release, without its `OwedRelease` (in `check`).
    reply: OwedReply,
    /// An operation that claimed the connection with half a reply in.
    claimer: Option<oneshot::Sender<Conn>>,
}

/// What to do once the lock is let go: report the check (a callback runs user code).
#[derive(Default)]
#[must_use]
struct AfterUnlock {
    report: Option<(OwedReply, ReleaseCheck)>,
}

impl AfterUnlock {
    fn run(self, pool: &Pool) {
        if let Some((reply, check)) = self.report {
            reply.report(&check);
            pool.report_finished();
        }
    }
}

impl IdleRead {
    /// Puts `conn`, which owes `reply`, to background reading on `node`: registered with the
    /// pool (claimable from now on) and read by the pool's background task
    /// ([`Pool::watch_reading`]) until the reply is in, its deadline passes or an operation
    /// claims the connection.
    fn start(pool: &Arc<Pool>, node: usize, conn: Conn, mut reply: OwedReply) {
        // A record without its release cannot be read: dropped, it reports unconfirmed.
        let Some(release) = reply.take_release() else {
            return;
        };
        let check = ReleaseReader::new(release, conn.server.protocol);
        let read_state = Arc::new(IdleRead {
            node,
            state: Mutex::new(None),
        });
        let read: Arc<dyn BackgroundRead> = Arc::clone(&read_state) as Arc<dyn BackgroundRead>;
        // The state is complete before the pool lends it to a claim or its task reads it.
        let mut state = read_state.lock();
        let id = pool.start_reading(node, Arc::clone(&read));
        *state = Some(Reading {
            id,
            conn,
            check,
            reply,
            claimer: None,
        });
        drop(state);
        pool.watch_reading(&read);
    }

    fn lock(&self) -> MutexGuard<'_, Option<Reading>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads what has arrived; ready once the reader has ended (the check made, or the
    /// connection claimed).
    fn read_some(&self, pool: &Pool, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.lock();
        let Some(Reading {
            conn,
            check,
            claimer,
            ..
        }) = &mut *state
        else {
            return Poll::Ready(());
        };
        let mut buf = [0u8; 512];
        loop {
            let mut read = ReadBuf::new(&mut buf);
            match Pin::new(&mut conn.stream).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !read.filled().is_empty() => {
                    check.handle_input(read.filled());
                }
                Poll::Ready(_) => check.handle_disconnect(),
            }
            if claimer.is_some()
                && let Some(rest) = check.take_owed()
            {
                // The claimer waited for the reply under way; it reads the rest.
                self.hand_over(pool, &mut state, rest);
                return Poll::Ready(());
            }
            if check.poll_timeout().is_none() {
                let after = self.end(pool, &mut state);
                drop(state);
                after.run(pool);
                return Poll::Ready(());
            }
        }
    }

    /// The reply's deadline passed: a reply not in by then leaves the release unconfirmed.
    fn expire(&self, pool: &Pool, now: distlock_core::Instant) {
        let mut state = self.lock();
        if let Some(Reading { check, .. }) = &mut *state {
            check.handle_timeout(now);
            if check.poll_timeout().is_none() {
                let after = self.end(pool, &mut state);
                drop(state);
                after.run(pool);
            }
        }
    }

    /// Hands the connection, still owing `rest`, to the operation that claimed it meanwhile
    /// (called only when one did).
    fn hand_over(
        &self,
        pool: &Pool,
        state: &mut Option<Reading>,
        rest: distlock_core::OwedRelease,
    ) {
        if let Some(Reading {
            id,
            mut conn,
            mut reply,
            claimer: Some(claimer),
            ..
        }) = state.take()
        {
            reply.restore(rest);
            conn.owed = Some(reply);
            pool.finish_reading(self.node, id, None);
            // The claimer may have gone: the connection then closes, and its record reports
            // the release unconfirmed.
            let _ = claimer.send(conn);
        }
    }

    /// The check is made: the connection goes to a claimer waiting for it or back to the
    /// pool when in step (closed otherwise: stray bytes, the reply late or cut off); the
    /// check is reported once the lock is let go.
    fn end(&self, pool: &Pool, state: &mut Option<Reading>) -> AfterUnlock {
        let Some(Reading {
            id,
            conn,
            mut check,
            reply,
            claimer,
            ..
        }) = state.take()
        else {
            return AfterUnlock::default();
        };
        let in_step = check.in_step();
        let report = check.poll_check().map(|decided| (reply, decided));
        if report.is_some() {
            // Before the reader leaves the pool's list: `settle_releases` then waits for it.
            pool.report_started();
        }
        match (in_step, claimer) {
            (true, Some(claimer)) => {
                pool.finish_reading(self.node, id, None);
                if let Err(conn) = claimer.send(conn) {
                    pool.checkin(self.node, conn);
                }
            }
            (true, None) => pool.finish_reading(self.node, id, Some(conn)),
            (false, _) => pool.finish_reading(self.node, id, None),
        }
        AfterUnlock { report }
    }
}

impl BackgroundRead for IdleRead {
    fn claim(&self, pool: &Pool) -> Claim {
        let mut state = self.lock();
        let Some(Reading { check, claimer, .. }) = &mut *state else {
            return Claim::Gone;
        };
        let Some(rest) = check.take_owed() else {
            // Half a reply is in: the reader hands the connection over once it is all in.
            let (send, receive) = oneshot::channel();
            *claimer = Some(send);
            return Claim::Later(receive);
        };
        let Some(Reading {
            id,
            mut conn,
            mut reply,
            ..
        }) = state.take()
        else {
            return Claim::Gone;
        };
        reply.restore(rest);
        conn.owed = Some(reply);
        pool.finish_reading(self.node, id, None);
        // The pool's background task is not woken: it finds this reader gone on its next run,
        // and the operation's own reads take over the connection's wake-ups.
        Claim::Now(conn)
    }

    fn poll_read(&self, pool: &Pool, cx: &mut Context<'_>) -> Poll<()> {
        self.read_some(pool, cx)
    }

    fn deadline(&self) -> Option<distlock_core::Instant> {
        self.lock()
            .as_ref()
            .and_then(|reading| reading.check.poll_timeout())
    }

    fn time_out(&self, pool: &Pool, now: distlock_core::Instant) {
        self.expire(pool, now);
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim that a lock operation makes takes a connection owing a pipelined release's
    /// reply there and then: on a one-thread runtime, with no await between the release and
    /// the claim, the reader's task has not run — and the claim does not need it to.
    #[tokio::test(flavor = "current_thread")]
    async fn a_claim_takes_the_connection_without_its_reader_task_running() {
        let client = Client::embedded();
        let guard = client.lock("claimed").try_acquire().await.expect("acquire");
        guard.release_pipelined().await.expect("release sent");
        let pool = client.pool();
        let Some(Claim::Now(conn)) = pool.claim_reading(0) else {
            panic!("the connection was not taken at once");
        };
        assert!(conn.owed.is_some(), "it still owes the release's reply");
        assert!(pool.claim_reading(0).is_none(), "lent once");
        pool.checkin(0, conn);
        // The next acquire goes behind the release on that connection and reads its reply.
        let guard = client
            .lock("claimed")
            .try_acquire()
            .await
            .expect("acquire again");
        assert_eq!(client.pipelined_releases().released, 1);
        assert_eq!(client.pipelined_releases().pending, 0);
        guard.release().await.expect("release");
    }
}
