//! `distlock:lock/transport` for the lock component: byte streams to the configured nodes,
//! opened by the native API's own connection code ([`Stream::connect`]: TCP, TLS for
//! `rediss://`). Each call blocks the guest's thread, which drives the connections itself on
//! the store's own runtime (`own_runtime.rs`: a reply wakes the guest's thread directly).
//!
//! Invariant: a connection opens only to an endpoint among the adapter's nodes; the
//! component does the Redis handshake (and so authentication) itself. Every wait here ends
//! when the guest is stopped ([`super::stop::Halt`]): the call traps instead of returning.

use std::collections::BTreeMap;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wasmtime::component::{HasSelf, Linker, Resource};

use super::bindings::provider::distlock::lock::transport::{
    self, Arrived, Endpoint, Failed, TransportError,
};
use super::resources::Connection;
use super::state::HostState;
use crate::conn::Stream;

pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    transport::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)
}

fn io_error(e: &io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::BrokenPipe => TransportError::Closed,
        _ => TransportError::Io(e.to_string()),
    }
}

/// What one read gave: bytes, a timeout (empty), or the end.
fn read_result(
    result: Result<io::Result<usize>, tokio::time::error::Elapsed>,
    buf: &[u8],
) -> Result<Vec<u8>, TransportError> {
    match result {
        Err(_elapsed) => Ok(Vec::new()),
        Ok(Ok(0)) => Err(TransportError::Closed),
        Ok(Ok(n)) => Ok(buf[..n].to_vec()),
        Ok(Err(e)) => Err(io_error(&e)),
    }
}

impl transport::HostConnection for HostState {
    fn send(
        &mut self,
        conn: Resource<Connection>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), TransportError>> {
        let halt = self.halt();
        let conn = self.table.get_mut(&conn)?;
        let (stream, runtime) = (&mut conn.stream, &conn.runtime);
        Ok(halt
            .block_on_own(runtime, stream.write_all(&bytes))?
            .map_err(|e| io_error(&e)))
    }

    fn receive(
        &mut self,
        conn: Resource<Connection>,
        max_len: u32,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, TransportError>> {
        let halt = self.halt();
        let conn = self.table.get_mut(&conn)?;
        let runtime = conn.runtime();
        let (stream, buf) = conn.parts(max_len);
        let timeout = Duration::from_millis(timeout_ms);
        // The timer is made inside `block_on`: it needs the runtime's context.
        let result = halt.block_on_own(&runtime, async {
            tokio::time::timeout(timeout, stream.read(buf)).await
        })?;
        Ok(read_result(result, buf))
    }

    fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        // Dropping the stream closes it.
        self.table.delete(conn)?;
        Ok(())
    }
}

impl transport::Host for HostState {
    fn nodes(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.net.nodes.clone())
    }

    fn open(
        &mut self,
        endpoint: Endpoint,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Resource<Connection>, TransportError>> {
        if !self.net.allows(&endpoint.host, endpoint.port, endpoint.tls) {
            return Ok(Err(TransportError::Denied(format!(
                "{}:{} is not one of the nodes this runtime was given",
                endpoint.host, endpoint.port
            ))));
        }
        let target = crate::Endpoint {
            tls: endpoint.tls,
            host: endpoint.host,
            port: endpoint.port,
            username: None,
            password: None,
            database: 0,
            cluster: false,
            more_seeds: Vec::new(),
            sentinel: None,
            sentinel_username: None,
            sentinel_password: None,
        };
        let timeout = Duration::from_millis(timeout_ms);
        let runtime = match self.own_runtime() {
            Ok(runtime) => runtime,
            Err(e) => {
                return Ok(Err(TransportError::Connect(format!(
                    "cannot connect to {target}: no runtime for the connection ({e})"
                ))));
            }
        };
        let net = &self.net;
        let opened = self.halt().block_on_own(&runtime, async {
            tokio::time::timeout(timeout, Stream::connect(&target, &net.connect)).await
        })?;
        let stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Ok(Err(TransportError::Connect(e.to_string()))),
            Err(_) => {
                return Ok(Err(TransportError::Connect(format!(
                    "cannot connect to {target}: timed out"
                ))));
            }
        };
        Ok(Ok(self.table.push(Connection {
            stream,
            buf: Vec::new(),
            runtime,
        })?))
    }

    fn receive_any(
        &mut self,
        connections: Vec<Resource<Connection>>,
        max_len: u32,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Option<Arrived>, Failed>> {
        let halt = self.halt();
        let timeout = Duration::from_millis(timeout_ms);
        let index_of: BTreeMap<u32, u32> = connections
            .iter()
            .enumerate()
            .map(|(i, c)| (c.rep(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let mut conns = Vec::with_capacity(index_of.len());
        for (entry, index) in self.table.iter_entries(index_of) {
            let conn = entry?.downcast_mut::<Connection>().ok_or_else(|| {
                wasmtime::Error::msg("receive-any was given a handle that is not a connection")
            })?;
            conns.push((index, conn));
        }
        // Every connection of a store runs on the store's one runtime.
        let Some(runtime) = conns.first().map(|(_, conn)| conn.runtime()) else {
            // Nothing to read from: a plain wait.
            halt.block_on(async { tokio::time::sleep(timeout).await })?;
            return Ok(Ok(None));
        };
        let reads = conns.into_iter().map(|(index, conn)| {
            Box::pin(async move {
                let (stream, buf) = conn.parts(max_len);
                let result = stream.read(buf).await;
                (index, result.map(|n| buf[..n].to_vec()))
            })
        });
        let reads: Vec<_> = reads.collect();
        let first = halt.block_on_own(&runtime, async {
            tokio::time::timeout(timeout, first_ready(reads)).await
        })?;
        Ok(match first {
            Err(_elapsed) => Ok(None),
            Ok((index, Ok(bytes))) if bytes.is_empty() => Err(Failed {
                index,
                error: TransportError::Closed,
            }),
            Ok((index, Ok(bytes))) => Ok(Some(Arrived { index, bytes })),
            Ok((index, Err(e))) => Err(Failed {
                index,
                error: io_error(&e),
            }),
        })
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
