//! The embedded in-process store: the core's model Redis node behind in-process pipes, so
//! the demo and single-process programs lock with the same protocol and semantics (TTLs,
//! scripts, wake-up signals) and no server. **Single process only**: no other process can
//! see it.
//!
//! Each connection is a `tokio::io::duplex` pipe; a task per connection reads requests,
//! runs them on the shared node under a mutex, and writes the replies. A blocked `BLPOP`
//! waits for another connection's command (a change notification) or its timeout.

use std::pin::pin;
use std::sync::{Arc, Mutex};

use distlock_core::HandshakeOptions;
use distlock_core::Protocol;
use distlock_model::{ModelConnection, ModelNode};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::Notify;

use crate::clock::Clock;
use crate::conn::{Conn, HandshakeFailure, Stream};
use crate::error::Error;

/// Pipe buffer per direction.
const PIPE_BYTES: usize = 64 * 1024;

/// The shared store.
#[derive(Clone)]
pub(crate) struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    node: Mutex<ModelNode>,
    /// Signalled after every command, so blocked pops look again.
    changed: Notify,
}

impl Store {
    pub(crate) fn new() -> Store {
        Store {
            shared: Arc::new(Shared {
                node: Mutex::new(ModelNode::new()),
                changed: Notify::new(),
            }),
        }
    }

    /// A new connection to the store, handshake done.
    pub(crate) async fn connect(&self, protocol: Protocol, clock: &Clock) -> Result<Conn, Error> {
        let (client, server) = tokio::io::duplex(PIPE_BYTES);
        tokio::spawn(serve(Arc::clone(&self.shared), server, *clock));
        let options = HandshakeOptions {
            resp3: protocol == Protocol::Resp3,
            ..HandshakeOptions::default()
        };
        Conn::handshake(Stream::Pipe(client), options, clock)
            .await
            .map_err(|e| match e {
                HandshakeFailure::Io(source) => Error::Connect {
                    endpoint: "embedded store".into(),
                    source,
                },
                HandshakeFailure::Refused(source) => Error::Handshake {
                    endpoint: "embedded store".into(),
                    source,
                },
            })
    }
}

/// One connection's server side.
async fn serve(shared: Arc<Shared>, mut pipe: DuplexStream, clock: Clock) {
    let mut conn = ModelConnection::new();
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::new();
    loop {
        // Listen for changes before looking, so a push right after the look still wakes us.
        let mut changed = pin!(shared.changed.notified());
        changed.as_mut().enable();
        let ran = {
            let Ok(mut node) = shared.node.lock() else {
                return;
            };
            let before = conn.buffered();
            node.serve(&mut conn, clock.now(), &mut out);
            before != conn.buffered() || !out.is_empty()
        };
        if ran {
            shared.changed.notify_waiters();
        }
        if !out.is_empty() {
            if pipe.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if conn.is_closed() {
            return;
        }
        let blocked_until = conn.blocked_until();
        let timeout = async {
            match blocked_until {
                Some(Some(at)) => tokio::time::sleep_until(clock.to_tokio(at)).await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            read = pipe.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => conn.receive(&buf[..n]),
            },
            () = &mut changed, if blocked_until.is_some() => {}
            () = timeout => {}
        }
    }
}
