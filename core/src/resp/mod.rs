//! RESP on the wire: commands out ([`mod@encode`]), replies in ([`mod@decode`]).
//!
//! Commands are always RESP arrays of bulk strings, so any bytes in a name or token (CRLF,
//! NUL, invalid UTF-8) travel as data and can never change the command. Replies are framed by
//! a bounded, iterative scanner before `redis-protocol` decodes them, so a hostile server can
//! neither exhaust memory nor the stack.

// Public to the fuzzer, model and simulator under `fuzzing`; crate-private otherwise.
#![cfg_attr(not(feature = "fuzzing"), allow(unreachable_pub, dead_code))]

pub mod decode;
pub mod encode;

pub use decode::{Framer, Reply, decode, frame_len};
pub use encode::{BufferTooSmall, Sink, encode_into};

/// The RESP version a connection speaks (chosen by `HELLO` during the handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// RESP2: nulls are `$-1`/`*-1`.
    #[default]
    Resp2,
    /// RESP3: typed nulls, maps, booleans, push frames.
    Resp3,
}
