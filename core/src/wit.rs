//! What the WIT interfaces (`wit/distlock.wit`, `wit/engine.wit`) carry, written once for
//! every crate that implements them: the core's errors as their `error` variant, case for
//! case, and their lock settings (the `distlock` interface's `config`, the engine's
//! `options`) as [`LockOptions`], with the defaults and the checks in one place
//! ([`LockSettings`]), and which kind of lock a call takes ([`Shape`]: a mutex, a
//! semaphore's permit, a read-write lock's side) with the one constructor for each, and a
//! multi-name lock's set ([`multi_lock`]).
//!
//! Two crates implement that interface: the lock component (`wasm/`, bindings from
//! wit-bindgen) and the host's native driver (`host/src/component/native.rs`, bindings from
//! wasmtime). Their generated types have the same names and shapes but are different Rust
//! types, so a function cannot serve both; [`wit_error_conversions!`](crate::wit_error_conversions) expands the same
//! conversion functions next to each set of bindings instead. A change to the core's errors
//! or to the WIT then fails to compile in both places at once, never in one only. The same
//! holds for a lock's `shape` ([`wit_shape_conversion!`](crate::wit_shape_conversion)).

use crate::{ConfigError, KeyLayout, Lock, LockOptions, RwMode, Scripts};

/// Expands, in the calling module, the conversions from the core's errors to the WIT
/// `distlock` interface's types found at the given module path:
/// `lock_error(Error) -> Error`, `config_error(ConfigError) -> Error`, and the helpers they
/// use (`node_failure`, `server_error`, `protocol_error`). A core error kind the WIT does not
/// name becomes its `unavailable` (lock errors) or `other` (kinds) case, in words.
///
/// ```ignore
/// distlock_core::wit_error_conversions!(crate::bindings::exports::distlock::lock::distlock);
/// ```
#[macro_export]
macro_rules! wit_error_conversions {
    ($($api:ident)::+) => {
        /// A lock operation's error, case for case.
        pub(crate) fn lock_error(error: $crate::Error) -> $($api)::+::Error {
            use $($api)::+ as api;
            use $crate::Error as E;
            match error {
                E::NotAcquired { attempts, holder_ttl } => {
                    api::Error::NotAcquired(api::NotAcquired {
                        attempts,
                        holder_ttl_ms: holder_ttl.map($crate::wit::millis),
                    })
                }
                E::NotHeld => api::Error::NotHeld,
                E::Expired => api::Error::Expired,
                E::QuorumLost { granted, needed, nodes, last_failure } => {
                    api::Error::QuorumLost(api::QuorumLost {
                        granted,
                        needed,
                        nodes,
                        last_failure: last_failure.map(node_failure),
                    })
                }
                E::Server { node, error } => api::Error::Server(api::NodeServerError {
                    node,
                    error: server_error(error),
                }),
                E::Protocol { node, error } => api::Error::Protocol(api::NodeProtocolError {
                    node,
                    error: protocol_error(error),
                }),
                E::Cancelled => api::Error::Cancelled,
                // A kind the interface does not name yet: say it in words.
                other => api::Error::Unavailable($crate::wit::message(&other)),
            }
        }

        /// A setting the core refused.
        pub(crate) fn config_error(error: $crate::ConfigError) -> $($api)::+::Error {
            use $($api)::+ as api;
            use $crate::ConfigError as C;
            use api::ConfigErrorKind as K;
            let kind = match error {
                C::EmptyName => K::EmptyName,
                C::NameTooLong { .. } => K::NameTooLong,
                C::NameControlByte { .. } => K::NameControlByte,
                C::NameStartsWithBrace => K::NameStartsWithBrace,
                C::BadPrefix => K::BadPrefix,
                C::BadToken => K::BadToken,
                C::BadTtl => K::BadTtl,
                C::BadNodeCount { .. } => K::BadNodeCount,
                C::BadRetry => K::BadRetry,
                C::DriftExceedsTtl => K::DriftExceedsTtl,
                C::FairUnsupported => K::FairUnsupported,
                C::NeedsScripts { .. } => K::NeedsScripts,
                C::MissingNativeCommand { .. } => K::MissingNativeCommand,
                C::BadLimit { .. } => K::BadLimit,
                C::SemaphoreUnsupported => K::SemaphoreUnsupported,
                C::RwLockUnsupported => K::RwLockUnsupported,
                C::NoNames => K::NoNames,
                C::TooManyNames { .. } => K::TooManyNames,
                C::DuplicateName { .. } => K::DuplicateName,
                C::MultiUnsupported => K::MultiUnsupported,
                C::ComputeUnsupported => K::ComputeUnsupported,
                C::ValueTooLong { .. } => K::ValueTooLong,
                _ => K::Other,
            };
            api::Error::Invalid(api::ConfigError {
                kind,
                message: $crate::wit::message(&error),
            })
        }

        fn node_failure(failure: $crate::NodeFailure) -> $($api)::+::NodeFailure {
            use $($api)::+ as api;
            use $crate::NodeFailure as F;
            match failure {
                F::Timeout => api::NodeFailure::Timeout,
                F::Server(error) => api::NodeFailure::Server(server_error(error)),
                F::Protocol(error) => api::NodeFailure::Protocol(protocol_error(error)),
                // `Disconnected`, and kinds the interface does not name yet.
                _ => api::NodeFailure::Disconnected,
            }
        }

        fn server_error(error: $crate::ServerError) -> $($api)::+::ServerError {
            use $($api)::+ as api;
            use $crate::ServerErrorKind as S;
            use api::ServerErrorKind as K;
            let kind = match error.kind {
                S::NoScript => K::NoScript,
                S::ReadOnly => K::ReadOnly,
                S::Loading => K::Loading,
                S::Busy => K::Busy,
                S::TryAgain => K::TryAgain,
                S::NoAuth => K::NoAuth,
                S::NoPerm => K::NoPerm,
                S::WrongType => K::WrongType,
                S::WrongLimit => K::WrongLimit,
                S::Moved => K::Moved,
                S::Ask => K::Ask,
                S::UnknownCommand => K::UnknownCommand,
                S::OutOfMemory => K::OutOfMemory,
                _ => K::Other,
            };
            api::ServerError {
                kind,
                message: error.message.into(),
            }
        }

        fn protocol_error(error: $crate::ProtocolError) -> $($api)::+::ProtocolError {
            use $($api)::+ as api;
            use $crate::ProtocolError as P;
            match error {
                P::Malformed => api::ProtocolError::Malformed,
                P::FrameTooLarge { .. } => api::ProtocolError::FrameTooLarge,
                P::TooDeep => api::ProtocolError::TooDeep,
                P::Streamed => api::ProtocolError::Streamed,
                P::Unsolicited => api::ProtocolError::Unsolicited,
                _ => api::ProtocolError::UnexpectedReply,
            }
        }
    };
}

/// Expands, in the calling module, `core_shape(&Shape) -> wit::Shape`: the `shape` variant
/// of the WIT interface at the given module path (the engine's `machines`, or `distlock`) as
/// the core's [`Shape`], case for case. For the same reason as [`wit_error_conversions!`]:
/// each implementation has its own generated `Shape` type, and a change to the WIT then fails
/// to compile in every one of them at once.
///
/// ```ignore
/// distlock_core::wit_shape_conversion!(crate::bindings::exports::distlock::lock::distlock);
/// ```
#[macro_export]
macro_rules! wit_shape_conversion {
    ($($api:ident)::+) => {
        /// The interface's `shape` as the core's, whose constructor then decides.
        pub(crate) fn core_shape(shape: &$($api)::+::Shape) -> $crate::wit::Shape {
            use $($api)::+::Shape as S;
            use $crate::wit::Shape;
            match shape {
                S::Lock => Shape::Lock,
                S::Semaphore(semaphore) => Shape::Semaphore {
                    limit: semaphore.limit,
                    fair: semaphore.fair,
                },
                S::Read => Shape::Read,
                S::Write => Shape::Write,
            }
        }
    };
}

/// A client's lock settings as the WIT records carry them (`distlock.config`,
/// `machines.options`): each implementation copies its generated record into this, and
/// [`LockSettings::options`] makes the [`LockOptions`] — so the lock component, the engine
/// and the host's native driver cannot differ in a default or a check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockSettings {
    /// `fenced`.
    pub fenced: bool,
    /// `fair`: `none` is off.
    pub fair: Option<bool>,
    /// `no-scripts`: `none` is off ([`Scripts::Auto`]); `true` is [`Scripts::Never`].
    pub no_scripts: Option<bool>,
    /// `ttl-ms`: `none` is the default lease ([`LockOptions::default`]).
    pub ttl_ms: Option<u64>,
    /// `request-timeout-ms`: `none` is the default request timeout.
    pub request_timeout_ms: Option<u64>,
}

impl LockSettings {
    /// The lock options these settings give, checked ([`LockOptions::validate`]).
    ///
    /// # Errors
    /// The [`ConfigError`] of the first setting that is refused.
    pub fn options(&self) -> Result<LockOptions, ConfigError> {
        let mut options = LockOptions {
            fenced: self.fenced,
            fair: self.fair.unwrap_or(false),
            scripts: if self.no_scripts.unwrap_or(false) {
                Scripts::Never
            } else {
                Scripts::Auto
            },
            ..LockOptions::default()
        };
        if let Some(ttl) = self.ttl_ms {
            options.ttl = crate::Duration::from_millis(ttl);
        }
        if let Some(timeout) = self.request_timeout_ms {
            options.request_timeout = crate::Duration::from_millis(timeout);
        }
        options.validate()?;
        Ok(options)
    }
}

/// Which kind of lock an interface call takes (the engine's `shape` variant): every
/// implementation copies its generated value into this, and [`Shape::lock`] makes the core's
/// [`Lock`], so that the lock component, the engine and the host's native driver cannot
/// differ in which constructor a shape means or in what its options become (a driver with
/// a builder of its own, the host's, takes [`Shape::options`], [`Shape::limit`] and
/// [`Shape::rw_mode`] instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shape {
    /// A mutex ([`Lock::new`]).
    Lock,
    /// One of `limit` permits of a counting semaphore ([`Lock::semaphore`]); `fair`:
    /// `none` is the client's fair mode.
    Semaphore {
        /// How many permits the semaphore has.
        limit: u32,
        /// Fair mode for this semaphore; `None`: the client's.
        fair: Option<bool>,
    },
    /// A shared hold of a read-write lock ([`Lock::rw`], [`RwMode::Read`]).
    Read,
    /// The exclusive hold of a read-write lock ([`Lock::rw`], [`RwMode::Write`]).
    Write,
}

impl Shape {
    /// The lock `name` in this shape under `layout`, with the client's `options`.
    ///
    /// # Errors
    /// The constructor's [`ConfigError`]: a bad name, [`ConfigError::BadLimit`],
    /// [`ConfigError::SemaphoreUnsupported`], [`ConfigError::RwLockUnsupported`], … Nothing
    /// is sent before it.
    pub fn lock(
        self,
        layout: KeyLayout,
        name: &[u8],
        options: LockOptions,
    ) -> Result<Lock, ConfigError> {
        let options = self.options(options);
        match (self.limit(), self.rw_mode()) {
            (Some(limit), _) => Lock::semaphore(layout, name, limit, options),
            (None, Some(mode)) => Lock::rw(layout, name, mode, options),
            (None, None) => Lock::new(layout, name, options),
        }
    }

    /// The client's `options` as this shape takes them: a semaphore's own fair mode, where
    /// it names one, replaces the client's.
    #[must_use]
    pub fn options(self, options: LockOptions) -> LockOptions {
        match self {
            Shape::Semaphore {
                fair: Some(fair), ..
            } => LockOptions { fair, ..options },
            _ => options,
        }
    }

    /// A semaphore's permit count; `None` for the other shapes.
    #[must_use]
    pub fn limit(self) -> Option<u32> {
        match self {
            Shape::Semaphore { limit, .. } => Some(limit),
            _ => None,
        }
    }

    /// A read-write lock's side; `None` for the other shapes.
    #[must_use]
    pub fn rw_mode(self) -> Option<RwMode> {
        match self {
            Shape::Read => Some(RwMode::Read),
            Shape::Write => Some(RwMode::Write),
            _ => None,
        }
    }
}

/// The multi-name lock of every name in `names` under `layout` (the interfaces'
/// `…-many` calls), with the client's `options`: [`Lock::multi`] decides, so every
/// implementation sorts, bounds and refuses a set the same way.
///
/// # Errors
/// [`Lock::multi`]'s [`ConfigError`]: [`ConfigError::NoNames`],
/// [`ConfigError::TooManyNames`], [`ConfigError::DuplicateName`], a bad name,
/// [`ConfigError::MultiUnsupported`], [`ConfigError::NeedsScripts`]. Nothing is sent before
/// it.
pub fn multi_lock<N: AsRef<[u8]>>(
    layout: KeyLayout,
    names: &[N],
    options: LockOptions,
) -> Result<Lock, ConfigError> {
    let names: alloc::vec::Vec<&[u8]> = names.iter().map(AsRef::as_ref).collect();
    Lock::multi(layout, &names, options)
}

/// A span as an interface's milliseconds: `u64` in `distlock`, `u32` (saturating) in
/// `machines`, whose numbers a JavaScript number must carry exactly.
#[doc(hidden)]
pub fn millis<T: FromMillis>(span: crate::Duration) -> T {
    T::from_millis(span.as_millis())
}

/// The integer types an interface carries milliseconds in (see [`millis`]).
#[doc(hidden)]
pub trait FromMillis {
    /// `ms`, saturating at the type's largest value.
    fn from_millis(ms: u64) -> Self;
}

impl FromMillis for u64 {
    fn from_millis(ms: u64) -> Self {
        ms
    }
}

impl FromMillis for u32 {
    fn from_millis(ms: u64) -> Self {
        u32::try_from(ms).unwrap_or(u32::MAX)
    }
}

/// An error's message as the interface's `string` (for [`wit_error_conversions!`](crate::wit_error_conversions): the
/// calling crates differ in whether `ToString` is in their prelude).
#[doc(hidden)]
pub fn message(error: &impl core::fmt::Display) -> alloc::string::String {
    alloc::string::ToString::to_string(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_PERMITS;

    #[test]
    fn a_set_of_names_is_the_cores_multi_name_lock() {
        let layout = KeyLayout::default();
        let options = LockOptions::default();
        let set = multi_lock(layout.clone(), &["b", "a"], options).unwrap();
        assert!(set.is_multi());
        let sorted: alloc::vec::Vec<&[u8]> = set
            .every_name()
            .iter()
            .map(|keys| keys.name().as_bytes())
            .collect();
        assert_eq!(sorted, [b"a".as_slice(), b"b".as_slice()]);
        let none: [&str; 0] = [];
        assert_eq!(
            multi_lock(layout.clone(), &none, options),
            Err(ConfigError::NoNames)
        );
        assert_eq!(
            multi_lock(layout, &["a", "b", "a"], options),
            Err(ConfigError::DuplicateName {
                first: 0,
                second: 2
            })
        );
    }

    #[test]
    fn each_shape_makes_its_constructors_lock() {
        let layout = KeyLayout::default();
        let options = LockOptions::default();
        let mutex = Shape::Lock.lock(layout.clone(), b"jobs", options).unwrap();
        assert_eq!((mutex.limit(), mutex.rw_mode()), (None, None));
        let permit = Shape::Semaphore {
            limit: 3,
            fair: None,
        }
        .lock(layout.clone(), b"jobs", options)
        .unwrap();
        assert_eq!(permit.limit(), Some(3));
        assert!(!permit.options().fair, "none: the client's fair mode (off)");
        let fair = LockOptions {
            fair: true,
            ..options
        };
        let inherited = Shape::Semaphore {
            limit: 3,
            fair: None,
        }
        .lock(layout.clone(), b"jobs", fair)
        .unwrap();
        assert!(
            inherited.options().fair,
            "none: the client's fair mode (on)"
        );
        let overridden = Shape::Semaphore {
            limit: 3,
            fair: Some(false),
        }
        .lock(layout.clone(), b"jobs", fair)
        .unwrap();
        assert!(!overridden.options().fair);
        for (shape, mode) in [(Shape::Read, RwMode::Read), (Shape::Write, RwMode::Write)] {
            let side = shape.lock(layout.clone(), b"doc", options).unwrap();
            assert_eq!(side.rw_mode(), Some(mode));
            assert_eq!(
                shape.lock(layout.clone(), b"doc", fair),
                Err(ConfigError::RwLockUnsupported)
            );
        }
        for limit in [0, MAX_PERMITS + 1] {
            assert_eq!(
                Shape::Semaphore { limit, fair: None }.lock(layout.clone(), b"jobs", options),
                Err(ConfigError::BadLimit { limit })
            );
        }
    }
}
