//! A primary watched by Redis Sentinel (`redis+sentinel://`) as one connection: the lock
//! machines and the driver loop see one node, as for a single server.
//!
//! Connecting ([`open`]) runs the core's [`Discovery`]: this module asks the sentinel it
//! names (`SENTINEL get-master-addr-by-name`, no login: the URL's login is the primary's),
//! opens the primary named with the URL's login, TLS and database, asks it `ROLE`, and
//! reports each answer back; the core decides the order, the pause between rounds and when to
//! give up. The connection returned is the primary's, wrapped in a [`SentinelStream`] whose
//! core [`FailoverWatch`] sees every reply: after a `READONLY` (the primary was demoted) the
//! connection reads as closed and is stale, so the driver drops it, it is never pooled
//! again, and the next connect discovers anew. A
//! closed connection (a killed primary) is dropped by the driver as for any server. A
//! failover the sentinels announce is followed sooner: `sentinel_switch.rs` subscribes to
//! `+switch-master` and the pool closes the connections to the old primary (each
//! [`SentinelStream`] knows which primary it goes to), and the next connect asks the
//! announcing sentinel first.
//!
//! Invariants: a lock command reaches a server only after that server's own `ROLE` said
//! `master` on the same connection; discovery ends by the connect timeout
//! ([`ConnectOptions::connect_timeout`]), each sentinel and primary asked within the request
//! timeout ([`ConnectOptions::ready_timeout`]); a primary that refuses the login is that
//! refusal (a typed handshake error), never hidden behind "no primary".

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use distlock_core::{
    Asked, Credentials, Discovery, DiscoveryStep, FailoverWatch, Protocol, ROLE, Role,
    SentinelAnswer, SentinelReplyError, get_master_addr_command, parse_auth_reply,
    parse_primary_address, parse_role, sentinel_auth_command, sentinel_reply_len,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::clock::Clock;
use crate::conn::{Conn, ConnectOptions, Stream};
use crate::endpoint::Endpoint;
use crate::error::Error;

/// Bytes one read of a sentinel's or `ROLE`'s reply takes.
const READ_CHUNK: usize = 4096;

/// A sentinel-discovered primary's connection: its bytes, watched for a failover.
pub(crate) struct SentinelStream {
    inner: Stream,
    watch: FailoverWatch,
    /// The primary's address as the sentinel named it: what a `+switch-master` announcement
    /// is compared with.
    primary: (String, u16),
}

impl SentinelStream {
    /// The primary this connection goes to, as the sentinel named it.
    pub(crate) fn primary(&self) -> (&str, u16) {
        (&self.primary.0, self.primary.1)
    }

    /// Whether the connection must not be used again: the primary was demoted, or the
    /// connection itself is dead or out of step.
    pub(crate) fn is_stale(&self) -> bool {
        self.watch.tripped() || self.inner.is_stale()
    }
}

impl AsyncRead for SentinelStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // A demoted primary's connection ends here, after the reply that showed it was
        // delivered: the driver drops it, counts the node's vote as lost, and the next
        // command's connect discovers the new primary — instead of retrying on a replica.
        if this.watch.tripped() {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            this.watch.observe(&buf.filled()[before..]);
        }
        polled
    }
}

impl AsyncWrite for SentinelStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How checking a named primary ended, when it did not give a connection.
enum Checked {
    /// The discovery goes on with this answer; the text says what happened.
    Next(Asked, String),
    /// A refusal no other sentinel can fix (the login): the connect fails with it.
    Fail(Error),
}

/// The sentinels' own login (`?sentinel_password=`, `&sentinel_username=`), when given.
pub(crate) fn sentinel_login(endpoint: &Endpoint) -> Option<Credentials> {
    endpoint
        .sentinel_password
        .as_ref()
        .map(|password| Credentials {
            username: endpoint
                .sentinel_username
                .as_ref()
                .map(|u| u.as_bytes().to_vec()),
            password: password.as_bytes().to_vec(),
        })
}

/// Finds the primary of the sentinel group `endpoint` names and returns its connection,
/// handshaken for `protocol` and checked by `ROLE`, asking sentinel `preferred` first (the
/// one that announced the last `+switch-master`: it already names the new primary). See the
/// module doc.
pub(crate) async fn open(
    endpoint: &Endpoint,
    options: &ConnectOptions,
    protocol: Protocol,
    clock: &Clock,
    preferred: usize,
) -> Result<Conn, Error> {
    let service = endpoint.sentinel.clone().unwrap_or_default();
    let sentinels = endpoint.seeds();
    let login = sentinel_login(endpoint);
    let budget = distlock_core::Duration::from_millis(options.connect_timeout.as_millis() as u64);
    let mut discovery = Discovery::new(
        sentinels.len(),
        preferred,
        clock.now().saturating_add(budget),
    );
    let mut last = String::from("no sentinel was asked");
    loop {
        let sentinel = match discovery.next(clock.now()) {
            DiscoveryStep::Ask(sentinel) => sentinel,
            // The core's pause between rounds of asks: a failover needs a moment to finish.
            DiscoveryStep::Pause(until) => {
                tokio::time::sleep_until(clock.to_tokio(until)).await;
                continue;
            }
            DiscoveryStep::GiveUp(why) => {
                return Err(Error::Sentinel {
                    endpoint: endpoint.to_string(),
                    why,
                    last,
                });
            }
            _ => {
                return Err(Error::Sentinel {
                    endpoint: endpoint.to_string(),
                    why: distlock_core::DiscoveryError::NoPrimary,
                    last,
                });
            }
        };
        let Some((host, port)) = sentinels.get(sentinel) else {
            discovery.asked(sentinel, Asked::NoAnswer);
            continue;
        };
        let at = endpoint.at(host, *port);
        // Each ask ends by the request timeout and by the discovery's deadline.
        let until = clock
            .to_tokio(discovery.deadline())
            .min(tokio::time::Instant::now() + options.ready_timeout);
        let asking = ask_sentinel(&at, &service, login.as_ref(), options);
        let named = match tokio::time::timeout_at(until, asking).await {
            Err(_) => Err((Asked::NoAnswer, "no answer in time".to_string())),
            Ok(Err(e)) => Err((Asked::NoAnswer, e.to_string())),
            Ok(Ok(Err(SentinelReplyError::Refused(e)))) => {
                Err((Asked::after_refusal(&e), e.to_string()))
            }
            Ok(Ok(Err(e))) => Err((Asked::NoAnswer, e.to_string())),
            Ok(Ok(Ok(SentinelAnswer::UnknownService))) => Err((
                Asked::UnknownService,
                format!("monitors no service '{service}'"),
            )),
            Ok(Ok(Ok(SentinelAnswer::Primary(primary)))) => Ok(primary),
            Ok(Ok(Ok(_))) => Err((Asked::NoAnswer, "an unknown answer".to_string())),
        };
        let primary = match named {
            Ok(primary) => primary,
            Err((how, why)) => {
                last = format!("sentinel {}: {why}", at.address());
                discovery.asked(sentinel, how);
                continue;
            }
        };
        let target = endpoint.primary_at(primary.host(), primary.port());
        let until = clock
            .to_tokio(discovery.deadline())
            .min(tokio::time::Instant::now() + options.ready_timeout);
        let checked =
            match tokio::time::timeout_at(until, check_primary(&target, options, protocol, clock))
                .await
            {
                Ok(Ok(conn)) => {
                    discovery.asked(sentinel, Asked::Verified);
                    return Ok(conn);
                }
                Ok(Err(checked)) => checked,
                Err(_) => Checked::Next(
                    Asked::PrimaryUnreachable,
                    "no answer to connect and ROLE in time".to_string(),
                ),
            };
        match checked {
            Checked::Fail(e) => return Err(e),
            Checked::Next(how, why) => {
                last = format!(
                    "sentinel {} named {}: {why}",
                    at.address(),
                    target.address()
                );
                discovery.asked(sentinel, how);
            }
        }
    }
}

/// Asks one sentinel for `service`'s primary (RESP2), after logging in with `login` when
/// given (the core's `AUTH`, judged before the question is sent).
async fn ask_sentinel(
    sentinel: &Endpoint,
    service: &str,
    login: Option<&Credentials>,
    options: &ConnectOptions,
) -> Result<Result<SentinelAnswer, SentinelReplyError>, Error> {
    let mut stream = Stream::connect(sentinel, options).await?;
    let lost = |source| Error::Connect {
        endpoint: sentinel.to_string(),
        source,
    };
    if let Some(login) = login {
        let reply = exchange(&mut stream, &sentinel_auth_command(login))
            .await
            .map_err(lost)?;
        if let Err(refused) = reply.and_then(|reply| parse_auth_reply(&reply, Protocol::Resp2)) {
            return Ok(Err(refused));
        }
    }
    let reply = exchange(&mut stream, &get_master_addr_command(service))
        .await
        .map_err(lost)?;
    Ok(reply.and_then(|reply| parse_primary_address(&reply, Protocol::Resp2)))
}

/// Opens the primary a sentinel named and checks its `ROLE`.
async fn check_primary(
    target: &Endpoint,
    options: &ConnectOptions,
    protocol: Protocol,
    clock: &Clock,
) -> Result<Conn, Checked> {
    let mut conn = match Conn::open(target, options, protocol, clock).await {
        Ok(conn) => conn,
        Err(e @ Error::Handshake { .. }) => return Err(Checked::Fail(e)),
        Err(e) => return Err(Checked::Next(Asked::PrimaryUnreachable, e.to_string())),
    };
    let reply = match exchange(&mut conn.stream, ROLE).await {
        Ok(reply) => reply,
        Err(e) => return Err(Checked::Next(Asked::PrimaryUnreachable, e.to_string())),
    };
    match reply.and_then(|reply| parse_role(&reply, conn.server.protocol)) {
        Ok(Role::Primary) => Ok(Conn::new(
            Stream::Sentinel(Box::new(SentinelStream {
                inner: conn.stream,
                watch: FailoverWatch::new(),
                primary: (target.host.clone(), target.port),
            })),
            conn.server,
        )),
        Ok(role) => Err(Checked::Next(
            Asked::NotPrimary,
            format!("its ROLE is {role:?}, not master"),
        )),
        Err(SentinelReplyError::Refused(e)) => Err(Checked::Next(
            Asked::RoleRefused,
            format!("ROLE refused: {e}"),
        )),
        Err(e) => Err(Checked::Next(
            Asked::PrimaryUnreachable,
            format!("ROLE: {e}"),
        )),
    }
}

/// Writes `command` and reads its one reply, whole, as the core frames it.
pub(crate) async fn exchange(
    stream: &mut Stream,
    command: &[u8],
) -> io::Result<Result<Vec<u8>, SentinelReplyError>> {
    stream.write_all(command).await?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        match sentinel_reply_len(&reply) {
            Ok(Some(len)) if len == reply.len() => return Ok(Ok(reply)),
            // More than one reply: out of step.
            Ok(Some(_)) => return Ok(Err(SentinelReplyError::Malformed)),
            Err(e) => return Ok(Err(e)),
            Ok(None) => {}
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed before the reply arrived",
            ));
        }
        reply.extend_from_slice(&chunk[..n]);
    }
}
