//! `distlock:lock/transport` for the lock component: byte streams to the configured nodes,
//! opened by the native API's own connection code ([`Stream::connect`]: TCP, TLS for
//! `rediss://`). To the lock component each call blocks; to the host it is an `.await` in
//! the guest's task, so a reply wakes that task on the runtime the guest runs on, with no
//! thread of its own to wake.
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
    async fn send(
        &mut self,
        conn: Resource<Connection>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), TransportError>> {
        let halt = self.halt();
        let stream = &mut self.table.get_mut(&conn)?.stream;
        Ok(halt
            .unless_stopped(stream.write_all(&bytes))
            .await?
            .map_err(|e| io_error(&e)))
    }

    async fn receive(
        &mut self,
        conn: Resource<Connection>,
        max_len: u32,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, TransportError>> {
        let halt = self.halt();
        let (stream, buf) = self.table.get_mut(&conn)?.parts(max_len);
        let timeout = Duration::from_millis(timeout_ms);
        let result = halt
            .unless_stopped(tokio::time::timeout(timeout, stream.read(buf)))
            .await?;
        Ok(read_result(result, buf))
    }

    async fn drop(&mut self, conn: Resource<Connection>) -> wasmtime::Result<()> {
        // Dropping the stream closes it.
        self.table.delete(conn)?;
        Ok(())
    }
}

impl transport::Host for HostState {
    async fn nodes(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self.net.nodes.clone())
    }

    async fn open(
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
        let net = &self.net;
        let opened = self
            .halt()
            .unless_stopped(tokio::time::timeout(
                timeout,
                Stream::connect(&target, &net.connect),
            ))
            .await?;
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
        })?))
    }

    async fn receive_any(
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
        let reads: Vec<_> = conns
            .into_iter()
            .map(|(index, conn)| {
                Box::pin(async move {
                    let (stream, buf) = conn.parts(max_len);
                    let result = stream.read(buf).await;
                    (index, result.map(|n| buf[..n].to_vec()))
                })
            })
            .collect();
        let first = halt
            .unless_stopped(tokio::time::timeout(timeout, first_ready(reads)))
            .await?;
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
/// be dropped); with none, never (the caller's timeout ends the wait).
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
