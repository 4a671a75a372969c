//! `distlock-passthrough`: a test guest that imports `distlock:lock/distlock` and exports it
//! again, call for call.
//!
//! The host's conformance suite drives components that export `distlock`. Run against the
//! provider, it tests the provider; run against this guest — linked to the provider, or
//! served natively by the host — it tests the path a guest app's calls take.

#[allow(unsafe_code, missing_docs, unreachable_pub, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../wit",
        inline: "
            package distlock:passthrough;

            world passthrough {
                import distlock:lock/distlock@0.1.0;
                export distlock:lock/distlock@0.1.0;
            }
        ",
        world: "distlock:passthrough/passthrough",
        generate_all,
    });

    use super::Passthrough;
    export!(Passthrough with_types_in crate::bindings);
}

use bindings::distlock::lock::distlock as inner;
use bindings::exports::distlock::lock::distlock as outer;

struct Passthrough;

impl outer::Guest for Passthrough {
    type Client = Client;
    type Lease = Lease;
    type Computation = Computation;
}

struct Client(inner::Client);

impl outer::GuestClient for Client {
    fn open(config: outer::Config) -> Result<outer::Client, outer::Error> {
        let config = inner::Config {
            nodes: config.nodes,
            key_prefix: config.key_prefix,
            ttl_ms: config.ttl_ms,
            fenced: config.fenced,
            request_timeout_ms: config.request_timeout_ms,
            fair: config.fair,
            no_scripts: config.no_scripts,
        };
        let client = inner::Client::open(&config).map_err(error)?;
        Ok(outer::Client::new(Client(client)))
    }

    fn acquire(&self, name: String, wait_ms: u64) -> Result<outer::Lease, outer::Error> {
        let lease = self.0.acquire(&name, wait_ms).map_err(error)?;
        Ok(outer::Lease::new(Lease(lease)))
    }

    fn try_acquire(&self, name: String) -> Result<outer::Lease, outer::Error> {
        let lease = self.0.try_acquire(&name).map_err(error)?;
        Ok(outer::Lease::new(Lease(lease)))
    }

    fn acquire_shaped(
        &self,
        name: String,
        shape: outer::Shape,
        wait_ms: u64,
    ) -> Result<outer::Lease, outer::Error> {
        let shape = match shape {
            outer::Shape::Lock => inner::Shape::Lock,
            outer::Shape::Semaphore(s) => inner::Shape::Semaphore(inner::SemaphoreShape {
                limit: s.limit,
                fair: s.fair,
            }),
            outer::Shape::Read => inner::Shape::Read,
            outer::Shape::Write => inner::Shape::Write,
        };
        let lease = self
            .0
            .acquire_shaped(&name, shape, wait_ms)
            .map_err(error)?;
        Ok(outer::Lease::new(Lease(lease)))
    }

    fn acquire_many(&self, names: Vec<String>, wait_ms: u64) -> Result<outer::Lease, outer::Error> {
        let lease = self.0.acquire_many(&names, wait_ms).map_err(error)?;
        Ok(outer::Lease::new(Lease(lease)))
    }

    fn get_or_lock(&self, name: String, wait_ms: u64) -> Result<outer::Fetched, outer::Error> {
        Ok(match self.0.get_or_lock(&name, wait_ms).map_err(error)? {
            inner::Fetched::Value(value) => outer::Fetched::Value(value),
            inner::Fetched::Computing(computation) => {
                outer::Fetched::Computing(outer::Computation::new(Computation(computation)))
            }
        })
    }
}

/// Dropping it drops the imported computation (given up without network I/O, as the
/// interface says).
struct Computation(inner::Computation);

impl outer::GuestComputation for Computation {
    fn name(&self) -> String {
        self.0.name()
    }

    fn token(&self) -> String {
        self.0.token()
    }

    fn validity_ms(&self) -> u64 {
        self.0.validity_ms()
    }

    fn extend(&self, ttl_ms: u64) -> Result<u64, outer::Error> {
        self.0.extend(ttl_ms).map_err(error)
    }

    fn renew(&self) -> Result<u64, outer::Error> {
        self.0.renew().map_err(error)
    }

    fn store(&self, value: Vec<u8>, value_ttl_ms: u64) -> Result<(), outer::Error> {
        self.0.store(&value, value_ttl_ms).map_err(error)
    }

    fn abandon(&self) -> Result<(), outer::Error> {
        self.0.abandon().map_err(error)
    }
}

/// Dropping it drops the imported lease, which releases the lock.
struct Lease(inner::Lease);

impl outer::GuestLease for Lease {
    fn name(&self) -> String {
        self.0.name()
    }

    fn token(&self) -> String {
        self.0.token()
    }

    fn fence(&self) -> Option<u64> {
        self.0.fence()
    }

    fn validity_ms(&self) -> u64 {
        self.0.validity_ms()
    }

    fn extend(&self, ttl_ms: u64) -> Result<u64, outer::Error> {
        self.0.extend(ttl_ms).map_err(error)
    }

    fn renew(&self) -> Result<u64, outer::Error> {
        self.0.renew().map_err(error)
    }

    fn release(&self) -> Result<(), outer::Error> {
        self.0.release().map_err(error)
    }
}

fn error(e: inner::Error) -> outer::Error {
    match e {
        inner::Error::NotAcquired(n) => outer::Error::NotAcquired(outer::NotAcquired {
            attempts: n.attempts,
            holder_ttl_ms: n.holder_ttl_ms,
        }),
        inner::Error::NotHeld => outer::Error::NotHeld,
        inner::Error::Expired => outer::Error::Expired,
        inner::Error::QuorumLost(q) => outer::Error::QuorumLost(outer::QuorumLost {
            granted: q.granted,
            needed: q.needed,
            nodes: q.nodes,
            last_failure: q.last_failure.map(node_failure),
        }),
        inner::Error::Server(e) => outer::Error::Server(outer::NodeServerError {
            node: e.node,
            error: server_error(e.error),
        }),
        inner::Error::Protocol(e) => outer::Error::Protocol(outer::NodeProtocolError {
            node: e.node,
            error: protocol_error(e.error),
        }),
        inner::Error::Cancelled => outer::Error::Cancelled,
        inner::Error::Invalid(e) => outer::Error::Invalid(outer::ConfigError {
            kind: config_error_kind(e.kind),
            message: e.message,
        }),
        inner::Error::Unavailable(why) => outer::Error::Unavailable(why),
    }
}

fn node_failure(f: inner::NodeFailure) -> outer::NodeFailure {
    match f {
        inner::NodeFailure::Timeout => outer::NodeFailure::Timeout,
        inner::NodeFailure::Disconnected => outer::NodeFailure::Disconnected,
        inner::NodeFailure::Server(e) => outer::NodeFailure::Server(server_error(e)),
        inner::NodeFailure::Protocol(e) => outer::NodeFailure::Protocol(protocol_error(e)),
    }
}

fn server_error(e: inner::ServerError) -> outer::ServerError {
    use inner::ServerErrorKind as I;
    use outer::ServerErrorKind as O;
    let kind = match e.kind {
        I::NoScript => O::NoScript,
        I::ReadOnly => O::ReadOnly,
        I::Loading => O::Loading,
        I::Busy => O::Busy,
        I::TryAgain => O::TryAgain,
        I::NoAuth => O::NoAuth,
        I::NoPerm => O::NoPerm,
        I::WrongType => O::WrongType,
        I::WrongLimit => O::WrongLimit,
        I::Moved => O::Moved,
        I::Ask => O::Ask,
        I::UnknownCommand => O::UnknownCommand,
        I::OutOfMemory => O::OutOfMemory,
        I::Other => O::Other,
    };
    outer::ServerError {
        kind,
        message: e.message,
    }
}

fn protocol_error(e: inner::ProtocolError) -> outer::ProtocolError {
    use inner::ProtocolError as I;
    use outer::ProtocolError as O;
    match e {
        I::Malformed => O::Malformed,
        I::FrameTooLarge => O::FrameTooLarge,
        I::TooDeep => O::TooDeep,
        I::Streamed => O::Streamed,
        I::UnexpectedReply => O::UnexpectedReply,
        I::Unsolicited => O::Unsolicited,
    }
}

fn config_error_kind(k: inner::ConfigErrorKind) -> outer::ConfigErrorKind {
    use inner::ConfigErrorKind as I;
    use outer::ConfigErrorKind as O;
    match k {
        I::EmptyName => O::EmptyName,
        I::NameTooLong => O::NameTooLong,
        I::NameControlByte => O::NameControlByte,
        I::NameStartsWithBrace => O::NameStartsWithBrace,
        I::BadPrefix => O::BadPrefix,
        I::BadToken => O::BadToken,
        I::BadTtl => O::BadTtl,
        I::BadNodeCount => O::BadNodeCount,
        I::BadRetry => O::BadRetry,
        I::DriftExceedsTtl => O::DriftExceedsTtl,
        I::BadUrl => O::BadUrl,
        I::FairUnsupported => O::FairUnsupported,
        I::NeedsScripts => O::NeedsScripts,
        I::MissingNativeCommand => O::MissingNativeCommand,
        I::BadLimit => O::BadLimit,
        I::SemaphoreUnsupported => O::SemaphoreUnsupported,
        I::RwLockUnsupported => O::RwLockUnsupported,
        I::NoNames => O::NoNames,
        I::TooManyNames => O::TooManyNames,
        I::DuplicateName => O::DuplicateName,
        I::MultiUnsupported => O::MultiUnsupported,
        I::ComputeUnsupported => O::ComputeUnsupported,
        I::ValueTooLong => O::ValueTooLong,
        I::Other => O::Other,
    }
}
