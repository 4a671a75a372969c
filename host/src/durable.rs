//! Replica-durable leases on the wire: sends the core's `WAIT`/`WAITAOF`
//! ([`distlock_core::Durability`]) on the connection that just took or extended a lease and
//! hands the one reply back to the core to judge. No number here: what to send, how long it
//! may take and what counts as enough are the core's.
//!
//! Invariant: the connection comes back in step (its one reply read) or is reported out of
//! step, so a late reply can never reach the next user of a pooled connection; the wait ends
//! by the lease's validity.

use distlock_core::{Durability, DurableError, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::clock::Clock;
use crate::conn::Conn;

/// Bytes one read takes.
const READ_CHUNK: usize = 512;

/// Asks `conn`'s server to confirm that `durability`'s replicas hold what this connection
/// wrote, for a lease valid until `valid_until`. Returns the core's verdict and whether the
/// connection is still in step (false: drop it).
pub(crate) async fn confirm(
    conn: &mut Conn,
    durability: &Durability,
    valid_until: Instant,
    clock: &Clock,
) -> (Result<(), DurableError>, bool) {
    let (command, deadline) = match durability.command(valid_until, clock.now()) {
        Ok(sent) => sent,
        Err(e) => return (Err(e), true),
    };
    let exchange = async {
        conn.stream.write_all(&command).await?;
        let mut reply = Vec::new();
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match Durability::reply_len(&reply) {
                Ok(Some(len)) if len == reply.len() => return Ok(Ok(reply)),
                Ok(Some(_)) | Err(_) => return Ok(Err(DurableError::Malformed)),
                Ok(None) => {}
            }
            let n = conn.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            reply.extend_from_slice(&chunk[..n]);
        }
    };
    let lost = || DurableError::NotReplicated {
        acknowledged: 0,
        needed: durability.replicas(),
    };
    match tokio::time::timeout_at(clock.to_tokio(deadline), exchange).await {
        Err(_) => (Err(DurableError::Expired), false),
        Ok(Err(_)) => (Err(lost()), false),
        Ok(Ok(Err(e))) => (Err(e), false),
        Ok(Ok(Ok(reply))) => (
            durability.judge(&reply, conn.server.protocol, valid_until, clock.now()),
            true,
        ),
    }
}
