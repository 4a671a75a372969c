//! The core's errors as the `distlock` interface's `error` variant: case for case, with the
//! core's own message where a person reads it.

use alloc::string::ToString;

use distlock_core::{ConfigError, Error, NodeFailure, ProtocolError, ServerError, ServerErrorKind};

use crate::api;

/// A lock operation's error.
pub(crate) fn lock_error(error: Error) -> api::Error {
    match error {
        Error::NotAcquired {
            attempts,
            holder_ttl,
        } => api::Error::NotAcquired(api::NotAcquired {
            attempts,
            holder_ttl_ms: holder_ttl.map(|t| t.as_millis()),
        }),
        Error::NotHeld => api::Error::NotHeld,
        Error::Expired => api::Error::Expired,
        Error::QuorumLost {
            granted,
            needed,
            nodes,
            last_failure,
        } => api::Error::QuorumLost(api::QuorumLost {
            granted,
            needed,
            nodes,
            last_failure: last_failure.map(node_failure),
        }),
        Error::Server { node, error } => api::Error::Server(api::NodeServerError {
            node,
            error: server_error(error),
        }),
        Error::Protocol { node, error } => api::Error::Protocol(api::NodeProtocolError {
            node,
            error: protocol_error(error),
        }),
        Error::Cancelled => api::Error::Cancelled,
        // A kind this crate does not know yet: say it in words.
        other => api::Error::Unavailable(other.to_string()),
    }
}

/// A setting the core refused.
pub(crate) fn config_error(error: ConfigError) -> api::Error {
    use api::ConfigErrorKind as K;
    let kind = match error {
        ConfigError::EmptyName => K::EmptyName,
        ConfigError::NameTooLong { .. } => K::NameTooLong,
        ConfigError::NameControlByte { .. } => K::NameControlByte,
        ConfigError::NameStartsWithBrace => K::NameStartsWithBrace,
        ConfigError::BadPrefix => K::BadPrefix,
        ConfigError::BadToken => K::BadToken,
        ConfigError::BadTtl => K::BadTtl,
        ConfigError::BadNodeCount { .. } => K::BadNodeCount,
        ConfigError::BadRetry => K::BadRetry,
        ConfigError::DriftExceedsTtl => K::DriftExceedsTtl,
        _ => K::Other,
    };
    api::Error::Invalid(api::ConfigError {
        kind,
        message: error.to_string(),
    })
}

fn node_failure(failure: NodeFailure) -> api::NodeFailure {
    match failure {
        NodeFailure::Timeout => api::NodeFailure::Timeout,
        NodeFailure::Server(error) => api::NodeFailure::Server(server_error(error)),
        NodeFailure::Protocol(error) => api::NodeFailure::Protocol(protocol_error(error)),
        // `Disconnected`, and kinds this crate does not know yet.
        _ => api::NodeFailure::Disconnected,
    }
}

fn server_error(error: ServerError) -> api::ServerError {
    use api::ServerErrorKind as K;
    let kind = match error.kind {
        ServerErrorKind::NoScript => K::NoScript,
        ServerErrorKind::ReadOnly => K::ReadOnly,
        ServerErrorKind::Loading => K::Loading,
        ServerErrorKind::Busy => K::Busy,
        ServerErrorKind::TryAgain => K::TryAgain,
        ServerErrorKind::NoAuth => K::NoAuth,
        ServerErrorKind::NoPerm => K::NoPerm,
        ServerErrorKind::WrongType => K::WrongType,
        ServerErrorKind::Moved => K::Moved,
        ServerErrorKind::Ask => K::Ask,
        ServerErrorKind::UnknownCommand => K::UnknownCommand,
        ServerErrorKind::OutOfMemory => K::OutOfMemory,
        _ => K::Other,
    };
    api::ServerError {
        kind,
        message: error.message.into(),
    }
}

fn protocol_error(error: ProtocolError) -> api::ProtocolError {
    use api::ProtocolError as P;
    match error {
        ProtocolError::Malformed => P::Malformed,
        ProtocolError::FrameTooLarge { .. } => P::FrameTooLarge,
        ProtocolError::TooDeep => P::TooDeep,
        ProtocolError::Streamed => P::Streamed,
        ProtocolError::Unsolicited => P::Unsolicited,
        _ => P::UnexpectedReply,
    }
}
