//! A Redis Cluster node (`redis+cluster://`) as one connection: the lock machines and the
//! driver loop see one node, whose bytes this module carries to the cluster's primaries.
//!
//! Connecting ([`open`]) reads the slot map through the first seed node that answers
//! (`CLUSTER SHARDS`, or `CLUSTER SLOTS` on a server before 7.0); the connection is then a
//! [`ClusterStream`] over the core's [`ClusterLink`], which decides where each command goes
//! and what a redirect means. This module only opens the connections the link names (lazily,
//! with the endpoint's login and TLS, the seed's RESP version), writes what it says and feeds
//! it what arrives. A `MOVED` updates the link's map for that slot and has the link read the
//! whole map again from the slot's new owner.
//!
//! Invariants: a primary's connection that fails, closes while it owes replies, or sends
//! something that is not a reply ends the whole stream with an I/O error — the driver drops
//! it and the lock machine counts the node as failed, as for a single server; nothing owed
//! is ever silently lost. Only connections that owe replies are read; one that closes or
//! says something while it owes nothing is found by the pool's probe when the stream is
//! next taken ([`ClusterStream::is_stale`]), before a command is written on it. An idle
//! stream is pooled only when every command it carried was answered.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use distlock_core::{
    CLUSTER_SHARDS, CLUSTER_SLOTS, ClusterLink, Primary, Protocol, SLOT_MAP_REPLY_CAP, SlotMap,
    SlotMapError,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::clock::Clock;
use crate::conn::{Conn, ConnectOptions, Stream};
use crate::endpoint::Endpoint;
use crate::error::Error;

/// Bytes one read from a primary takes.
const READ_CHUNK: usize = 4096;

type Connecting = Pin<Box<dyn Future<Output = Result<Conn, Error>> + Send>>;

/// One primary's connection, and the bytes waiting to be written to it.
enum PrimaryConn {
    Opening(Connecting),
    Ready(Conn),
}

struct ToPrimary {
    primary: Primary,
    conn: PrimaryConn,
    out: Vec<u8>,
}

/// A cluster as one connection's byte stream. See the module doc.
pub(crate) struct ClusterStream {
    link: ClusterLink,
    /// The cluster's URL: the login and TLS every primary is opened with.
    endpoint: Endpoint,
    options: ConnectOptions,
    protocol: Protocol,
    clock: Clock,
    primaries: Vec<ToPrimary>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// Connects to the cluster `endpoint` names: the slot map through the first seed that
/// answers (in the order given), that seed's connection kept for commands without keys.
/// `request_timeout` bounds each command's redirects.
pub(crate) async fn open(
    endpoint: &Endpoint,
    options: &ConnectOptions,
    protocol: Protocol,
    clock: &Clock,
) -> Result<Conn, Error> {
    let mut last = None;
    for (host, port) in endpoint.seeds() {
        let seed = endpoint.at(&host, port);
        match discover(&seed, options, protocol, clock).await {
            Ok((conn, map)) => {
                let Some(seed_primary) = Primary::new(&host, port) else {
                    last = Some(Error::BadUrl {
                        url: endpoint.to_string(),
                        why: format!("the host '{host}' is too long"),
                    });
                    continue;
                };
                let server = conn.server;
                let request_timeout =
                    distlock_core::Duration::from_millis(options.ready_timeout.as_millis() as u64);
                let link = ClusterLink::new(
                    map,
                    seed_primary.clone(),
                    server.protocol,
                    request_timeout,
                    endpoint.tls,
                );
                let stream = ClusterStream {
                    link,
                    endpoint: endpoint.clone(),
                    options: options.clone(),
                    protocol: server.protocol,
                    clock: *clock,
                    primaries: vec![ToPrimary {
                        primary: seed_primary,
                        conn: PrimaryConn::Ready(conn),
                        out: Vec::new(),
                    }],
                    timer: None,
                };
                return Ok(Conn::new(Stream::Cluster(Box::new(stream)), server));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(Error::BadUrl {
        url: endpoint.to_string(),
        why: "no seed nodes".into(),
    }))
}

/// Reads the cluster's slot map through the first seed of `endpoint` that answers (in the
/// order given), as [`open`] does, and closes that connection.
pub(crate) async fn read_map(
    endpoint: &Endpoint,
    options: &ConnectOptions,
    clock: &Clock,
) -> Result<Box<SlotMap>, Error> {
    let mut last = None;
    for (host, port) in endpoint.seeds() {
        let seed = endpoint.at(&host, port);
        match Box::pin(discover(&seed, options, Protocol::Resp3, clock)).await {
            Ok((_, map)) => return Ok(Box::new(map)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(Error::BadUrl {
        url: endpoint.to_string(),
        why: "no seed nodes".into(),
    }))
}

/// Opens `seed` and reads the slot map from it.
async fn discover(
    seed: &Endpoint,
    options: &ConnectOptions,
    protocol: Protocol,
    clock: &Clock,
) -> Result<(Conn, SlotMap), Error> {
    let mut conn = Box::pin(Conn::open(seed, options, protocol, clock)).await?;
    let read = async {
        let shards = ask(&mut conn, CLUSTER_SHARDS, |frame, protocol| {
            SlotMap::from_shards(frame, protocol, &seed.host, seed.tls)
        })
        .await?;
        match shards {
            // Before 7.0: `ERR unknown subcommand 'SHARDS'`.
            Err(SlotMapError::Refused(e))
                if e.kind == distlock_core::ServerErrorKind::UnknownCommand =>
            {
                ask(&mut conn, CLUSTER_SLOTS, |frame, protocol| {
                    SlotMap::from_slots(frame, protocol, &seed.host)
                })
                .await
            }
            other => Ok(other),
        }
    };
    let map = match tokio::time::timeout(options.connect_timeout, read).await {
        Ok(Ok(Ok(map))) => map,
        Ok(Ok(Err(why))) => {
            return Err(Error::ClusterMap {
                endpoint: seed.to_string(),
                why,
            });
        }
        Ok(Err(source)) => {
            return Err(Error::Connect {
                endpoint: seed.to_string(),
                source,
            });
        }
        Err(_) => {
            return Err(Error::Connect {
                endpoint: seed.to_string(),
                source: io::Error::new(io::ErrorKind::TimedOut, "the slot map did not arrive"),
            });
        }
    };
    Ok((conn, map))
}

/// Sends `command` on `conn` and reads its one reply (at most [`SLOT_MAP_REPLY_CAP`] bytes)
/// into `parse`.
async fn ask(
    conn: &mut Conn,
    command: &[u8],
    parse: impl Fn(&[u8], Protocol) -> Result<SlotMap, SlotMapError>,
) -> io::Result<Result<SlotMap, SlotMapError>> {
    conn.stream.write_all(command).await?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        match distlock_core::slot_map_reply_len(&reply) {
            Ok(Some(len)) if len == reply.len() => {
                return Ok(parse(&reply, conn.server.protocol));
            }
            // More than one reply: the connection is out of step.
            Ok(Some(_)) | Err(_) => return Ok(Err(SlotMapError::Malformed)),
            Ok(None) if reply.len() > SLOT_MAP_REPLY_CAP => {
                return Ok(Err(SlotMapError::Malformed));
            }
            Ok(None) => {}
        }
        let n = conn.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the seed node closed the connection before the slot map arrived",
            ));
        }
        reply.extend_from_slice(&chunk[..n]);
    }
}

impl ClusterStream {
    /// Whether an idle stream must not be pooled: a command is still unanswered, or a
    /// primary's connection is dead or out of step (it closed, or said something, while it
    /// owed nothing). Each connection's probe is [`Conn::is_stale`]'s: free (no system call)
    /// while the runtime has seen nothing arrive on it, which is the usual case — so a
    /// stream over several primaries costs a checkout no more reads than one node does.
    /// A dead connection drops the whole stream, not only that connection: a primary that
    /// is gone may have failed over, and the next stream reads the slot map again.
    pub(crate) fn is_stale(&self) -> bool {
        !self.link.is_idle()
            || self.primaries.iter().any(|p| match &p.conn {
                PrimaryConn::Ready(conn) => conn.is_stale(),
                PrimaryConn::Opening(_) => false,
            })
    }

    /// The connection to `primary`, opened when there is none.
    fn to(&mut self, primary: Primary) -> &mut ToPrimary {
        if let Some(index) = self.primaries.iter().position(|p| p.primary == primary) {
            return &mut self.primaries[index];
        }
        let endpoint = self.endpoint.at(primary.host(), primary.port());
        let (options, protocol, clock) = (self.options.clone(), self.protocol, self.clock);
        let connect: Connecting =
            Box::pin(async move { Conn::open(&endpoint, &options, protocol, &clock).await });
        self.primaries.push(ToPrimary {
            primary,
            conn: PrimaryConn::Opening(connect),
            out: Vec::new(),
        });
        let last = self.primaries.len() - 1;
        &mut self.primaries[last]
    }

    /// Hands the link's sends to their primaries' connections (opened when there is none)
    /// and writes what each open one takes now. What a connection does not take yet stays in
    /// its buffer for [`ClusterStream::pump`].
    fn send(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while let Some((primary, bytes)) = self.link.poll_transmit() {
            self.to(primary).out.extend_from_slice(&bytes);
        }
        for to in &mut self.primaries {
            if let PrimaryConn::Ready(conn) = &mut to.conn {
                write_out(&to.primary, conn, &mut to.out, cx)?;
            }
        }
        Ok(())
    }

    /// Does everything that can be done now: hands the link's sends to their connections,
    /// finishes opening connections, writes, reads into the link and runs its timer — until
    /// nothing more can be done (every poll that returned `Pending` has registered `cx`),
    /// or, with `until_readable`, as soon as the link has reply bytes for the reader (the
    /// caller returns them and is polled again for the rest).
    ///
    /// A pass goes round again only when it changed what the next pass would do: a
    /// connection opened, bytes read, the timer fired. A write that went through changes
    /// nothing for the others, so it costs no second pass.
    fn pump(&mut self, cx: &mut Context<'_>, until_readable: bool) -> io::Result<()> {
        loop {
            let mut again = false;
            while let Some((primary, bytes)) = self.link.poll_transmit() {
                self.to(primary).out.extend_from_slice(&bytes);
            }
            for to in &mut self.primaries {
                if let PrimaryConn::Opening(connect) = &mut to.conn {
                    match connect.as_mut().poll(cx) {
                        Poll::Ready(Ok(conn)) => {
                            to.conn = PrimaryConn::Ready(conn);
                            again = true;
                        }
                        Poll::Ready(Err(e)) => {
                            return Err(io::Error::new(
                                io::ErrorKind::NotConnected,
                                format!("cluster primary {}: {e}", to.primary),
                            ));
                        }
                        Poll::Pending => continue,
                    }
                }
                let PrimaryConn::Ready(conn) = &mut to.conn else {
                    continue;
                };
                write_out(&to.primary, conn, &mut to.out, cx)?;
                // A connection owed nothing has nothing to say, so it is not read (nor its
                // waker registered) on every pass. Whatever it does say while idle — its
                // close, stray bytes — is readable when the stream is next taken from the
                // pool, whose probe drops the stream for it ([`ClusterStream::is_stale`]).
                if !self.link.owes(&to.primary) {
                    continue;
                }
                let mut chunk = [0u8; READ_CHUNK];
                let mut read = ReadBuf::new(&mut chunk);
                match Pin::new(&mut conn.stream).poll_read(cx, &mut read) {
                    Poll::Ready(Ok(())) if read.filled().is_empty() => {
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("cluster primary {} closed the connection", to.primary),
                        ));
                    }
                    Poll::Ready(Ok(())) => {
                        self.link
                            .handle_input(&to.primary, read.filled(), self.clock.now())
                            .map_err(|e| {
                                io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    format!("cluster primary {}: {e}", to.primary),
                                )
                            })?;
                        again = true;
                        if until_readable && self.link.readable() > 0 {
                            break;
                        }
                    }
                    Poll::Ready(Err(e)) => return Err(primary_error(&to.primary, e)),
                    Poll::Pending => {}
                }
            }
            if until_readable && self.link.readable() > 0 {
                return Ok(());
            }
            if let Some(at) = self.link.poll_timeout() {
                let now = self.clock.now();
                if now >= at {
                    self.link.handle_timeout(now);
                    self.timer = None;
                    again = true;
                } else {
                    let until = self.clock.to_tokio(at);
                    let timer = self
                        .timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
                    timer.as_mut().reset(until);
                    if timer.as_mut().poll(cx).is_ready() {
                        again = true;
                    }
                }
            }
            if !again {
                return Ok(());
            }
        }
    }
}

/// Writes what `out` holds to `primary`'s connection, as far as it takes it now (a
/// connection that takes nothing more has registered `cx`).
fn write_out(
    primary: &Primary,
    conn: &mut Conn,
    out: &mut Vec<u8>,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    let mut written = 0;
    while written < out.len() {
        match Pin::new(&mut conn.stream).poll_write(cx, &out[written..]) {
            Poll::Ready(Ok(0)) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("cluster primary {primary} took no bytes"),
                ));
            }
            Poll::Ready(Ok(n)) => written += n,
            Poll::Ready(Err(e)) => return Err(primary_error(primary, e)),
            Poll::Pending => break,
        }
    }
    out.drain(..written);
    Ok(())
}

fn primary_error(primary: &Primary, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cluster primary {primary}: {e}"))
}

impl AsyncRead for ClusterStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Replies already here are handed out without touching a socket.
        if this.link.readable() == 0 {
            this.pump(cx, true)?;
            if this.link.readable() == 0 {
                return Poll::Pending;
            }
        }
        let n = this.link.read(buf.initialize_unfilled());
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClusterStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.link
            .write(buf, this.clock.now())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        // Sent at once; the reads (and whatever the sockets did not take) wait for the
        // reader's poll, which is next: a write needs no pass over every primary.
        this.send(cx)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.pump(cx, false)?;
        if this.primaries.iter().all(|p| p.out.is_empty()) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        for to in &mut this.primaries {
            if let PrimaryConn::Ready(conn) = &mut to.conn {
                let _ = Pin::new(&mut conn.stream).poll_shutdown(cx);
            }
        }
        Poll::Ready(Ok(()))
    }
}
