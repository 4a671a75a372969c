//! The core's errors as the `distlock` interface's `error` variant: case for case, with the
//! core's own message where a person reads it. The conversions are the core's
//! ([`distlock_core::wit_error_conversions`]), expanded for this crate's bindings; the host's
//! native driver expands the same ones for its own. Also the interface's `shape` as the
//! core's [`distlock_core::wit::Shape`], whose constructor then decides.

distlock_core::wit_error_conversions!(crate::bindings::exports::distlock::lock::distlock);

distlock_core::wit_shape_conversion!(crate::bindings::exports::distlock::lock::distlock);
