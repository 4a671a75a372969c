//! A TCP fault proxy: sits between a client and a `redis-server` on loopback and, on command
//! while connections are open, delays, swallows, trickles or cuts the bytes going either way.
//!
//! Each direction of each connection is a reader that stamps what it reads with its due
//! time (now + latency) and a writer that delivers it at that time, at most `n` bytes per
//! interval when dripping. A black-holed direction reads and discards (the sender's writes
//! succeed, the connection stays open, nothing arrives: a partition); an end of stream that
//! arrives while black-holed is held back until the hole closes. The proxy runs on its own
//! small runtime, so a test's runtime being busy or blocked never stalls it.
//!
//! Faults apply to bytes read after the change: what was already read is delivered as
//! decided when it was read.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// Client to server (requests).
    Up,
    /// Server to client (replies).
    Down,
}

/// What happens to one direction's bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    latency: Duration,
    black_hole: bool,
    /// At most this many bytes, then a pause of this long.
    drip: Option<(usize, Duration)>,
}

#[derive(Debug, Default)]
struct Faults {
    up: Shape,
    down: Shape,
    /// New connections are closed as soon as they are accepted.
    refuse: bool,
}

impl Faults {
    fn shape(&mut self, dir: Dir) -> &mut Shape {
        match dir {
            Dir::Up => &mut self.up,
            Dir::Down => &mut self.down,
        }
    }
}

struct Shared {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    /// Bumped on every change of `faults`, so a held-back end of stream can look again.
    changed: watch::Sender<u64>,
    /// Bumped to close every open connection.
    cut: watch::Sender<u64>,
    accepted: AtomicU64,
    open: AtomicUsize,
    /// Bytes read so far going up and down (delivered later or not at all, as the faults
    /// then said).
    read_up: AtomicU64,
    read_down: AtomicU64,
}

impl Shared {
    fn shape(&self, dir: Dir) -> Shape {
        *self.faults.lock().expect("proxy faults").shape(dir)
    }

    fn read_counter(&self, dir: Dir) -> &AtomicU64 {
        match dir {
            Dir::Up => &self.read_up,
            Dir::Down => &self.read_down,
        }
    }

    fn change(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().expect("proxy faults"));
        self.changed.send_modify(|v| *v += 1);
    }
}

/// A fault proxy listening on its own loopback port, forwarding to `upstream`. Dropping it
/// closes everything.
pub(crate) struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// A proxy in front of `127.0.0.1:upstream_port`, passing bytes through untouched.
    pub(crate) fn start(upstream_port: u16) -> Proxy {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind the proxy's port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            faults: Mutex::new(Faults::default()),
            changed: watch::channel(0).0,
            cut: watch::channel(0).0,
            accepted: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            read_up: AtomicU64::new(0),
            read_down: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        runtime.spawn(accept(listener, Arc::clone(&shared)));
        Proxy {
            port,
            shared,
            runtime: Some(runtime),
        }
    }

    /// The port clients connect to.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Delays every chunk going `dir` by `latency`.
    pub(crate) fn latency(&self, dir: Dir, latency: Duration) {
        self.shared.change(|f| f.shape(dir).latency = latency);
    }

    /// Swallows everything going `dir` (on) or lets it through again (off); connections stay
    /// open either way.
    pub(crate) fn black_hole(&self, dir: Dir, on: bool) {
        self.shared.change(|f| f.shape(dir).black_hole = on);
    }

    /// Delivers what goes `dir` `bytes` at a time with a pause of `every` after each piece;
    /// `None`: at full speed.
    pub(crate) fn drip(&self, dir: Dir, drip: Option<(usize, Duration)>) {
        let drip = drip.map(|(bytes, every)| (bytes.max(1), every));
        self.shared.change(|f| f.shape(dir).drip = drip);
    }

    /// Closes new connections as soon as they are accepted (on), or serves them again (off).
    pub(crate) fn refuse(&self, on: bool) {
        self.shared.change(|f| f.refuse = on);
    }

    /// Closes every open connection, both sides (a FIN each way; nothing in flight is
    /// delivered).
    pub(crate) fn drop_all(&self) {
        self.shared.cut.send_modify(|v| *v += 1);
    }

    /// No faults any more (open connections carry on).
    pub(crate) fn heal(&self) {
        self.shared.change(|f| *f = Faults::default());
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }

    /// Bytes read going `dir` so far, over every connection: once a request's bytes are
    /// counted, the faults in force then decide when (and whether) they arrive.
    pub(crate) fn read(&self, dir: Dir) -> u64 {
        self.shared.read_counter(dir).load(Ordering::Acquire)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.drop_all();
        if let Some(runtime) = self.runtime.take() {
            // Does not block: fine inside a test's own runtime.
            runtime.shutdown_background();
        }
    }
}

async fn accept(listener: StdListener, shared: Arc<Shared>) {
    let listener = TcpListener::from_std(listener).expect("the proxy's listener");
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors, say: do not spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        if shared.faults.lock().expect("proxy faults").refuse {
            drop(client);
            continue;
        }
        let cut = shared.cut.subscribe();
        tokio::spawn(connection(client, cut, Arc::clone(&shared)));
    }
}

/// One proxied connection, until both directions ended or it is cut.
async fn connection(client: TcpStream, mut cut: watch::Receiver<u64>, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    shared.open.fetch_add(1, Ordering::Relaxed);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let both = async {
        tokio::join!(
            pipe(client_read, server_write, Dir::Up, &shared),
            pipe(server_read, client_write, Dir::Down, &shared),
        )
    };
    tokio::select! {
        _ = both => {}
        _ = cut.changed() => {}
    }
    shared.open.fetch_sub(1, Ordering::Relaxed);
}

/// One direction: read, stamp, deliver when due, at the drip's pace.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, dir: Dir, shared: &Shared) {
    // `None`: the end of the stream.
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let shape = shared.shape(dir);
            if !shape.black_hole
                && tx
                    .send((Instant::now() + shape.latency, Some(buf[..n].to_vec())))
                    .is_err()
            {
                return;
            }
            // Counted once stamped: a test that sees the count knows these bytes' fate.
            shared
                .read_counter(dir)
                .fetch_add(n as u64, Ordering::AcqRel);
        }
        // A partition carries no FIN either: hold it back until the hole closes.
        let mut changed = shared.changed.subscribe();
        while shared.shape(dir).black_hole {
            if changed.changed().await.is_err() {
                return;
            }
        }
        let _ = tx.send((Instant::now() + shared.shape(dir).latency, None));
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            let Some(chunk) = chunk else { break };
            let mut rest = &chunk[..];
            while !rest.is_empty() {
                let drip = shared.shape(dir).drip;
                let take = drip.map_or(rest.len(), |(n, _)| n.min(rest.len()));
                if to.write_all(&rest[..take]).await.is_err() {
                    return;
                }
                rest = &rest[take..];
                if let Some((_, every)) = drip {
                    tokio::time::sleep(every).await;
                }
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
