//! One connection to one node: TCP, TLS, or an in-process pipe to the embedded store; opened
//! with the core's [`Handshake`] so the lock machines know the server.
//!
//! This module moves bytes and nothing else: what to send and what a reply means is the
//! core's business.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use distlock_core::HandshakeOptions;
use distlock_core::{Credentials, Handshake, Protocol, ServerInfo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, pki_types::ServerName};

use crate::clock::Clock;
use crate::cluster::ClusterStream;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::release_check::OwedReply;
use crate::sentinel::SentinelStream;

/// The bytes underneath a connection.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// An in-process pipe to the embedded store.
    Pipe(DuplexStream),
    /// A Redis Cluster, carried to its primaries (`redis+cluster://`).
    Cluster(Box<ClusterStream>),
    /// A primary found through Redis Sentinel, watched for a failover
    /// (`redis+sentinel://`).
    Sentinel(Box<SentinelStream>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Pipe(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Cluster(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Sentinel(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Pipe(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Cluster(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Sentinel(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Pipe(s) => Pin::new(s).poll_flush(cx),
            Stream::Cluster(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Sentinel(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Pipe(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Cluster(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Sentinel(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// TLS settings for `rediss://` nodes.
#[derive(Clone)]
pub struct TlsSettings {
    pub(crate) config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsSettings")
    }
}

impl TlsSettings {
    /// Trust the system's CA store.
    pub fn system() -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        Self::with_roots(roots, None)
    }

    /// Trust the CA certificates in this PEM file, and present a client certificate and key
    /// (PEM) when given.
    pub fn from_pem_files(
        ca: &std::path::Path,
        client: Option<(&std::path::Path, &std::path::Path)>,
    ) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for cert in
            CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
        {
            roots
                .add(cert.map_err(|e| format!("{}: {e}", ca.display()))?)
                .map_err(|e| e.to_string())?;
        }
        let client = match client {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| format!("{}: {e}", cert.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("{}: {e}", key.display()))?;
                Some((chain, key))
            }
            None => None,
        };
        Self::with_roots(roots, client)
    }

    fn with_roots(
        roots: rustls::RootCertStore,
        client: Option<(
            Vec<rustls::pki_types::CertificateDer<'static>>,
            rustls::pki_types::PrivateKeyDer<'static>,
        )>,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match client {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?,
            None => builder.with_no_client_auth(),
        };
        Ok(TlsSettings {
            config: Arc::new(config),
        })
    }
}

/// How to open connections.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// How long connecting waits for nodes to answer before going on with those that did:
    /// [`Client::connect_with`](crate::Client::connect_with) is ready once a quorum answered
    /// and fails with the nodes still silent after this; a node whose connects have gone
    /// unanswered this long backs off (the core's `Session`) before it is tried again.
    /// Default: the lock's request timeout (`LockOptions::default().request_timeout`, 1 s),
    /// so a node that does not answer costs connecting what it costs an operation: its vote,
    /// not more time.
    pub ready_timeout: Duration,
    /// TCP connect plus handshake of one connection, at most (default 5 s). Nothing waits
    /// for this long: a connect still under way after `ready_timeout` goes on in the
    /// background, and its connection joins the pool if the node answers in time.
    pub connect_timeout: Duration,
    /// TLS for `rediss://` nodes; the system CA store when `None`.
    pub tls: Option<TlsSettings>,
    /// `CLIENT SETNAME`.
    pub client_name: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            ready_timeout: crate::clock::to_std(
                distlock_core::LockOptions::default().request_timeout,
            ),
            // A host number, not the core's: how long a socket and its handshake may take in
            // the background is the driver's budget; no operation waits for it.
            connect_timeout: Duration::from_secs(5),
            tls: None,
            client_name: Some("distlock".into()),
        }
    }
}

/// Bytes one read of an operation's replies takes (`drive.rs`).
const READ_CHUNK: usize = 4096;

/// A connection that has done its handshake.
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    pub(crate) server: ServerInfo,
    /// The reply of a pipelined release written on it and not read yet: the next reader of
    /// the connection takes it first (see `release_check.rs`).
    pub(crate) owed: Option<OwedReply>,
    /// Where an operation reads this connection's replies into (`drive.rs`): made once with
    /// the connection, so an operation neither zeroes a buffer of its own nor carries one in
    /// its future (every future level that awaits it copies it whole).
    pub(crate) read_buf: Box<[u8]>,
}

impl Stream {
    /// Whether an idle connection's stream is dead or out of step: an idle connection owes nothing, so
    /// anything readable (an EOF after a server restart, stray bytes) means it must go.
    ///
    /// Free while nothing arrived: tokio's `try_read` answers `WouldBlock` without a system
    /// call when its reactor has recorded no readiness for the socket, and reads only once
    /// the reactor was woken by something (the kernel queues a peer's close on the socket
    /// and wakes the reactor as it does). BENCHMARKS.md ("The cluster path's checkout
    /// probe") counts the system calls.
    pub(crate) fn is_stale(&self) -> bool {
        let tcp = match self {
            Stream::Tcp(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
            Stream::Pipe(_) => return false,
            Stream::Cluster(cluster) => return cluster.is_stale(),
            Stream::Sentinel(sentinel) => return sentinel.is_stale(),
        };
        let mut probe = [0u8; 1];
        !matches!(tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Opens TCP to `endpoint`, with TLS for `rediss://`, and no handshake: what
    /// [`Conn::open`] and the wasm adapter's `transport` share.
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        options: &ConnectOptions,
    ) -> Result<Stream, Error> {
        let name = endpoint.to_string();
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|source| Error::Connect {
                endpoint: name.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let stream = if endpoint.tls {
            let settings = match &options.tls {
                Some(s) => s.clone(),
                None => TlsSettings::system().map_err(|why| Error::Tls {
                    endpoint: name.clone(),
                    why,
                })?,
            };
            let server_name =
                ServerName::try_from(endpoint.host.clone()).map_err(|e| Error::Tls {
                    endpoint: name.clone(),
                    why: e.to_string(),
                })?;
            let tls = TlsConnector::from(settings.config)
                .connect(server_name, tcp)
                .await
                .map_err(|e| Error::Tls {
                    endpoint: name.clone(),
                    why: e.to_string(),
                })?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Tcp(tcp)
        };
        Ok(stream)
    }
}

impl Conn {
    /// A handshaken connection on `stream` to `server`, owing nothing.
    pub(crate) fn new(stream: Stream, server: ServerInfo) -> Conn {
        Conn {
            stream,
            server,
            owed: None,
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// Whether an idle connection is dead or out of step: an idle connection owes nothing, so
    /// anything readable (an EOF after a server restart, stray bytes) means it must go.
    pub(crate) fn is_stale(&self) -> bool {
        self.stream.is_stale()
    }

    /// The primary a sentinel-discovered connection goes to; `None` for any other.
    pub(crate) fn sentinel_primary(&self) -> Option<(&str, u16)> {
        match &self.stream {
            Stream::Sentinel(sentinel) => Some(sentinel.primary()),
            _ => None,
        }
    }

    /// Opens and handshakes a connection to `endpoint`, asking for `protocol` (a server
    /// without RESP3 gives RESP2 whatever is asked; `conn.server.protocol` says which).
    pub(crate) async fn open(
        endpoint: &Endpoint,
        options: &ConnectOptions,
        protocol: Protocol,
        clock: &Clock,
    ) -> Result<Conn, Error> {
        if endpoint.cluster {
            // Each seed and primary is opened, bounded, by this function.
            return Box::pin(crate::cluster::open(endpoint, options, protocol, clock)).await;
        }
        if endpoint.sentinel.is_some() {
            // The sentinels are asked, and the primary opened and checked, by this function.
            return Box::pin(crate::sentinel::open(endpoint, options, protocol, clock, 0)).await;
        }
        let name = endpoint.to_string();
        let work = async {
            let stream = Stream::connect(endpoint, options).await?;
            let credentials = endpoint.password.as_ref().map(|password| Credentials {
                username: endpoint.username.as_ref().map(|u| u.clone().into_bytes()),
                password: password.clone().into_bytes(),
            });
            let handshake = HandshakeOptions {
                credentials,
                client_name: options.client_name.as_ref().map(|n| n.clone().into_bytes()),
                database: endpoint.database,
                resp3: protocol == Protocol::Resp3,
                timeout: distlock_core::Duration::from_millis(
                    options.connect_timeout.as_millis() as u64
                ),
                // Scripts load on first use (NOSCRIPT, then EVAL): the cache is the
                // server's, and a lock on native commands needs none.
                load_scripts: false,
            };
            Conn::handshake(stream, handshake, clock)
                .await
                .map_err(|e| match e {
                    HandshakeFailure::Io(source) => Error::Connect {
                        endpoint: name.clone(),
                        source,
                    },
                    HandshakeFailure::Refused(source) => Error::Handshake {
                        endpoint: name.clone(),
                        source,
                    },
                })
        };
        match tokio::time::timeout(options.connect_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                endpoint: name,
                source: io::Error::new(io::ErrorKind::TimedOut, "connect and handshake timed out"),
            }),
        }
    }

    /// Runs the core's handshake over `stream`.
    pub(crate) async fn handshake(
        mut stream: Stream,
        options: HandshakeOptions,
        clock: &Clock,
    ) -> Result<Conn, HandshakeFailure> {
        let mut machine = Handshake::new(options, clock.now());
        let mut buf = vec![0u8; 4096];
        loop {
            while let Some(len) = machine.poll_transmit(&mut buf).map_err(|e| {
                HandshakeFailure::Io(io::Error::other(format!("handshake encoding: {e}")))
            })? {
                stream
                    .write_all(&buf[..len])
                    .await
                    .map_err(HandshakeFailure::Io)?;
            }
            if let Some(outcome) = machine.poll_outcome() {
                return outcome
                    .map(|server| Conn::new(stream, server))
                    .map_err(HandshakeFailure::Refused);
            }
            let n = stream.read(&mut buf).await.map_err(HandshakeFailure::Io)?;
            if n == 0 {
                return Err(HandshakeFailure::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the handshake",
                )));
            }
            machine.handle_input(&buf[..n], clock.now());
        }
    }
}

/// Why a handshake did not complete.
pub(crate) enum HandshakeFailure {
    Io(io::Error),
    Refused(distlock_core::HandshakeError),
}
