//! The core's errors and outcomes as the `machines` interface's types. The lock errors are
//! the core's own conversions ([`distlock_core::wit_error_conversions`], the same ones the
//! `provider` component expands for `distlock`); this module adds the handshake's errors and
//! `status` readings (with a semaphore's permits and a read-write lock's holds) and `reset`
//! counts, which only this interface carries.

use alloc::format;
use alloc::string::ToString;
use alloc::vec::Vec;

use distlock_core::{
    Duration, HandshakeError, Inspection, NodeError, Reading, ResetOutcome, Token, Verdict,
};

use crate::api;
use crate::input::node_index;

distlock_core::wit_error_conversions!(crate::bindings::exports::distlock::lock::machines);

/// A failed handshake of node `node` (`shown`: its URL without password).
pub(crate) fn handshake_error(node: usize, shown: &str, error: HandshakeError) -> api::Error {
    let node = node_index(node);
    match error {
        HandshakeError::Auth(error) | HandshakeError::Server(error) => {
            api::Error::Server(api::NodeServerError {
                node,
                error: server_error(error),
            })
        }
        HandshakeError::Protocol(error) => api::Error::Protocol(api::NodeProtocolError {
            node,
            error: protocol_error(error),
        }),
        other => api::Error::Unavailable(format!("{shown}: {other}")),
    }
}

/// What `status` read.
pub(crate) fn status(inspection: Inspection) -> api::Status {
    // The core's verdict, word for word; anything it may add later is no verdict of "free".
    let verdict = match inspection.verdict() {
        Verdict::Held(token) => api::Verdict::Held(token.as_str().to_string()),
        Verdict::Free => api::Verdict::Free,
        Verdict::Shared => api::Verdict::Shared,
        _ => api::Verdict::Unknown,
    };
    let nodes: Vec<_> = inspection
        .nodes
        .into_iter()
        .map(|node| node.map(reading).map_err(read_failure))
        .collect();
    api::Status { verdict, nodes }
}

/// What `reset` did: per node, the keys deleted (saturating; a reset by name deletes at most
/// two), or why the node failed.
pub(crate) fn reset(outcome: ResetOutcome) -> Vec<Result<u32, api::NodeFailure>> {
    outcome
        .nodes
        .into_iter()
        .map(|node| {
            node.map(|done| u32::try_from(done.deleted.len()).unwrap_or(u32::MAX))
                .map_err(read_failure)
        })
        .collect()
}

fn reading(reading: Reading) -> api::Reading {
    api::Reading {
        holder: reading.holder.map(|t| t.as_str().to_string()),
        ttl_ms: reading.ttl.map(distlock_core::wit::millis),
        fence: reading.fence,
        queued: reading.queued,
        permits: reading.permits.map(|permits| api::Permits {
            limit: permits.limit,
            holders: permits.holders.into_iter().map(hold).collect(),
        }),
        rw: reading.rw.map(|holds| api::RwHolds {
            writer: holds.writer.map(hold),
            readers: holds.readers.into_iter().map(hold).collect(),
        }),
    }
}

/// One live permit or read-write hold: its token and how long its key lives.
fn hold((token, ttl): (Token, Option<Duration>)) -> api::Hold {
    api::Hold {
        token: token.as_str().to_string(),
        ttl_ms: ttl.map(distlock_core::wit::millis),
    }
}

/// Why a node could not be read. A key that holds no lock (a user's key of the lock's name)
/// is a reply the lock never gives there: `unexpected-reply`.
fn read_failure(error: NodeError) -> api::NodeFailure {
    match error {
        NodeError::Timeout { .. } => api::NodeFailure::Timeout,
        NodeError::Server(error) => api::NodeFailure::Server(server_error(error)),
        NodeError::Protocol(error) => api::NodeFailure::Protocol(protocol_error(error)),
        NodeError::NotALock { .. } => {
            api::NodeFailure::Protocol(api::ProtocolError::UnexpectedReply)
        }
        _ => api::NodeFailure::Disconnected,
    }
}
