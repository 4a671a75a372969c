//! # distlock-wasm
//!
//! The distlock core as a WebAssembly component: the `provider` world of `wit/distlock.wit`.
//! It exports `distlock:lock/distlock` (clients and leases) and `distlock:lock/linking`
//! (the same acquires answered with the lease's token, for a host that links applications
//! to it), and imports only
//! `distlock:lock/transport` (byte streams, supplied by the runtime),
//! `wasi:clocks/monotonic-clock` and `wasi:random/random`.
//!
//! Everything the lock decides — commands, retries, quorum, fencing, validity, when to renew
//! a lease and when it is lost — is `distlock-core`'s; this crate is the driver loop of
//! `distlock_core::machine` over blocking `transport` calls ([`driver`]), a lease's renewal
//! schedule ([`Renewal`]) run one `lease.renew` call at a time, get-or-compute's
//! computations ([`compute`]), the conversion of node URLs ([`url`]) and of errors
//! ([`convert`]), and the glue a `no_std` component needs ([`rt`]).
//!
//! Built for `wasm32-wasip2` only (`cargo build --release --target wasm32-wasip2`); the
//! target's linker turns the module into a component.
#![no_std]

extern crate alloc;

mod compute;
mod convert;
mod driver;
mod rt;
mod url;

use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use distlock_core::wit::Shape;
use distlock_core::{
    Acquire, Duration, Extend, ExtendOutcome, Instant, KeyLayout, Lock, LockOptions, LostReason,
    Release, Renewal, RenewalEvent, Token,
};

use crate::bindings::exports::distlock::lock::distlock as api;
use crate::bindings::exports::distlock::lock::linking;
use crate::driver::{MAX_NODES, Servers};

/// The bindings `wit-bindgen` generates for the `provider` world.
#[allow(unsafe_code, missing_docs, unreachable_pub, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "provider",
        generate_all,
    });

    use super::Component;
    export!(Component with_types_in crate::bindings);
}

/// The component's exports.
struct Component;

impl api::Guest for Component {
    type Client = Client;
    type Lease = Lease;
    type Computation = compute::Computation;
}

/// Milliseconds on the runtime's monotonic clock, as the core wants time.
fn now() -> Instant {
    Instant::from_millis(bindings::wasi::clocks::monotonic_clock::now() / 1_000_000)
}

/// What one lock operation draws from the runtime's CSPRNG, in one `wasi:random` call: an
/// acquire needs a token and three jitter seeds (its own retries, the lease's renewal
/// schedule, the lease's release), and one call costs far less than four.
///
/// The token's 16 bytes come fresh from the CSPRNG for every acquire, as before: nothing is
/// kept between operations, so a copy of the component's memory holds no future token.
struct Draw {
    /// Entropy for [`Token::from_entropy`].
    token: [u8; 16],
    /// Retry jitter for the acquire.
    acquire: u64,
    /// Jitter for the lease's [`Renewal`] schedule.
    renewal: u64,
    /// Retry jitter for the lease's release.
    release: u64,
}

impl Draw {
    /// Bytes one draw takes: the token's 16 and three seeds of 8.
    const LEN: usize = 16 + 3 * 8;

    fn new() -> Draw {
        let bytes = bindings::wasi::random::random::get_random_bytes(Draw::LEN as u64);
        let mut all = [0u8; Draw::LEN];
        for (slot, byte) in all.iter_mut().zip(bytes) {
            *slot = byte;
        }
        let seed_at = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(all.get(at..at + 8).unwrap_or(&[0; 8]));
            u64::from_le_bytes(word)
        };
        let mut token = [0u8; 16];
        token.copy_from_slice(all.get(..16).unwrap_or(&[0; 16]));
        Draw {
            token,
            acquire: seed_at(16),
            renewal: seed_at(24),
            release: seed_at(32),
        }
    }
}

/// Random bits for retry jitter (operations other than an acquire: one call each).
fn seed() -> u64 {
    bindings::wasi::random::random::get_random_u64()
}

/// What a client's locks share: the servers and the defaults.
struct Shared {
    servers: Servers,
    layout: KeyLayout,
    options: LockOptions,
    /// Computations the guest dropped unfinished, given up at the client's next call (a
    /// destructor does no network I/O).
    dropped: compute::Dropped,
}

/// `distlock.client`.
struct Client {
    shared: Rc<Shared>,
}

impl api::GuestClient for Client {
    fn open(config: api::Config) -> Result<api::Client, api::Error> {
        let options = distlock_core::wit::LockSettings {
            fenced: config.fenced,
            fair: config.fair,
            no_scripts: config.no_scripts,
            ttl_ms: config.ttl_ms,
            request_timeout_ms: config.request_timeout_ms,
        }
        .options()
        .map_err(convert::config_error)?;
        let layout = match &config.key_prefix {
            Some(prefix) => KeyLayout::tagged(prefix.as_bytes()).map_err(convert::config_error)?,
            None => KeyLayout::default(),
        };
        let nodes = if config.nodes.is_empty() {
            bindings::distlock::lock::transport::nodes()
        } else {
            config.nodes
        };
        options
            .check_setup(&layout, nodes.len())
            .map_err(convert::config_error)?;
        let servers = Servers::connect(&nodes, options.request_timeout)?;
        Ok(api::Client::new(Client {
            shared: Rc::new(Shared {
                servers,
                layout,
                options,
                dropped: compute::Dropped::default(),
            }),
        }))
    }

    fn acquire(&self, name: String, wait_ms: u64) -> Result<api::Lease, api::Error> {
        self.shared.give_up_dropped();
        self.acquire_within(name, Shape::Lock, Duration::from_millis(wait_ms))
            .map(api::Lease::new)
    }

    fn try_acquire(&self, name: String) -> Result<api::Lease, api::Error> {
        self.shared.give_up_dropped();
        self.acquire_within(name, Shape::Lock, Duration::ZERO)
            .map(api::Lease::new)
    }

    fn acquire_shaped(
        &self,
        name: String,
        shape: api::Shape,
        wait_ms: u64,
    ) -> Result<api::Lease, api::Error> {
        self.shared.give_up_dropped();
        self.acquire_within(
            name,
            convert::core_shape(&shape),
            Duration::from_millis(wait_ms),
        )
        .map(api::Lease::new)
    }

    fn acquire_many(&self, names: Vec<String>, wait_ms: u64) -> Result<api::Lease, api::Error> {
        self.shared.give_up_dropped();
        self.acquire_names(&names, Duration::from_millis(wait_ms))
            .map(api::Lease::new)
    }

    fn get_or_lock(&self, name: String, wait_ms: u64) -> Result<api::Fetched, api::Error> {
        self.shared.give_up_dropped();
        compute::get_or_lock(&self.shared, name, Duration::from_millis(wait_ms))
    }
}

/// `linking`: the acquires of `distlock.client`, each answered with its lease's token, so a
/// linking host needs no second call for it.
impl linking::Guest for Component {
    fn acquire_held(
        client: api::ClientBorrow<'_>,
        name: String,
        shape: api::Shape,
        wait_ms: u64,
    ) -> Result<linking::Held, api::Error> {
        let client: &Client = client.get();
        client.shared.give_up_dropped();
        client
            .acquire_within(
                name,
                convert::core_shape(&shape),
                Duration::from_millis(wait_ms),
            )
            .map(Lease::held)
    }

    fn acquire_many_held(
        client: api::ClientBorrow<'_>,
        names: Vec<String>,
        wait_ms: u64,
    ) -> Result<linking::Held, api::Error> {
        let client: &Client = client.get();
        client.shared.give_up_dropped();
        client
            .acquire_names(&names, Duration::from_millis(wait_ms))
            .map(Lease::held)
    }
}

impl Client {
    /// Acquires `shape` on `name`; the lease keeps the core's lock of that shape, so its
    /// extend, renewal and release act on that permit or hold.
    fn acquire_within(
        &self,
        name: String,
        shape: Shape,
        wait: Duration,
    ) -> Result<Lease, api::Error> {
        let shared = &self.shared;
        let lock = shape
            .lock(shared.layout.clone(), name.as_bytes(), shared.options)
            .map_err(convert::config_error)?;
        self.acquire_lock(name, lock, wait)
    }

    /// Acquires every name of `names` at once; the lease is known by the names joined.
    fn acquire_names(&self, names: &[String], wait: Duration) -> Result<Lease, api::Error> {
        let shared = &self.shared;
        let lock = distlock_core::wit::multi_lock(shared.layout.clone(), names, shared.options)
            .map_err(convert::config_error)?;
        self.acquire_lock(names.join(", "), lock, wait)
    }

    /// Acquires `lock` (a lock of one name in some shape, or a set of names), known to the
    /// guest as `name`; the lease keeps the lock, so its extend, renewal and release act on
    /// what was taken.
    fn acquire_lock(&self, name: String, lock: Lock, wait: Duration) -> Result<Lease, api::Error> {
        let shared = &self.shared;
        let draw = Draw::new();
        let token = Token::from_entropy(draw.token);
        let lease = shared
            .servers
            .run(|servers, now| {
                Acquire::<MAX_NODES>::new(&lock, token, servers, wait, now, draw.acquire)
            })?
            .map_err(convert::lock_error)?;
        Ok(Lease::holding(shared, name, lock, &lease, &draw))
    }
}

/// `distlock.lease`.
struct Lease {
    shared: Rc<Shared>,
    name: String,
    lock: Lock,
    token: Token,
    fence: Option<u64>,
    /// Until when the holder may act as the owner: what the latest extend that succeeded
    /// (or the acquire) set; zero once the lease was found lost.
    valid_until: Cell<Instant>,
    /// The core's renewal schedule, driven by `renew` (calls into one instance never
    /// nest, so it is never borrowed twice).
    renewal: RefCell<Renewal>,
    /// Released (or a release was tried): dropping does nothing more.
    released: Cell<bool>,
    /// Retry jitter for the release, drawn with the token ([`Draw`]).
    release_seed: u64,
}

impl api::GuestLease for Lease {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn token(&self) -> String {
        self.token.as_str().to_string()
    }

    fn fence(&self) -> Option<u64> {
        self.fence
    }

    fn validity_ms(&self) -> u64 {
        if self.released.get() {
            return 0;
        }
        self.valid_until.get().saturating_since(now()).as_millis()
    }

    fn extend(&self, ttl_ms: u64) -> Result<u64, api::Error> {
        if self.released.get() {
            return Err(api::Error::NotHeld);
        }
        let lock = self
            .lock
            .with_ttl(Duration::from_millis(ttl_ms))
            .map_err(convert::config_error)?;
        let seed = seed();
        let token = self.token.clone();
        let outcome = self
            .shared
            .servers
            .run(|servers, now| Extend::<MAX_NODES>::new(&lock, token, servers, now, seed))?;
        match outcome {
            Ok(extended) => {
                // The latest extend set the keys' expiry, shorter or longer than before.
                self.valid_until.set(extended.valid_until);
                Ok(extended.valid_until.saturating_since(now()).as_millis())
            }
            Err(error) => {
                if error == distlock_core::Error::NotHeld {
                    self.valid_until.set(Instant::ZERO);
                }
                Err(convert::lock_error(error))
            }
        }
    }

    fn renew(&self) -> Result<u64, api::Error> {
        if self.released.get() {
            return Err(api::Error::NotHeld);
        }
        let Ok(mut schedule) = self.renewal.try_borrow_mut() else {
            return Err(api::Error::Unavailable("re-entered a lease".to_string()));
        };
        schedule.handle_timeout(now());
        while let Some(event) = schedule.poll_event() {
            match event {
                RenewalEvent::Extend => {
                    let outcome = self.extend_for(&schedule);
                    schedule.handle_extend_outcome(outcome, now());
                }
                RenewalEvent::Lost(_) => break,
                _ => {}
            }
        }
        if let Some(reason) = schedule.lost() {
            self.valid_until.set(Instant::ZERO);
            return Err(match reason {
                LostReason::NotHeld => api::Error::NotHeld,
                _ => api::Error::Expired,
            });
        }
        let next = schedule.poll_timeout().unwrap_or_else(now);
        Ok(next.saturating_since(now()).as_millis())
    }

    fn release(&self) -> Result<(), api::Error> {
        if self.released.replace(true) {
            return Err(api::Error::NotHeld);
        }
        self.valid_until.set(Instant::ZERO);
        let seed = self.release_seed;
        let token = self.token.clone();
        let lock = &self.lock;
        self.shared
            .servers
            .run(|servers, now| Release::<MAX_NODES>::new(lock, token, servers, now, seed))?
            .map(|_| ())
            .map_err(convert::lock_error)
    }
}

impl Lease {
    /// `lease` handed to the guest with its token (`linking.held`).
    fn held(lease: Lease) -> linking::Held {
        let token = lease.token.as_str().to_string();
        linking::Held {
            lease: api::Lease::new(lease),
            token,
        }
    }

    /// The lease of `lock` (known to the guest as `name`) that `lease` holds, on the core's
    /// renewal schedule for the client's TTL; `draw` is what its acquire drew (the jitter of
    /// its renewal and release).
    fn holding(
        shared: &Rc<Shared>,
        name: String,
        lock: Lock,
        lease: &distlock_core::Lease,
        draw: &Draw,
    ) -> Lease {
        let renewal = Renewal::new(
            shared.options.ttl,
            lease.started(),
            lease.valid_until(),
            draw.renewal,
        );
        Lease {
            shared: Rc::clone(shared),
            name,
            lock,
            token: lease.token().clone(),
            fence: lease.fence(),
            valid_until: Cell::new(lease.valid_until()),
            renewal: RefCell::new(renewal),
            released: Cell::new(false),
            release_seed: draw.release,
        }
    }

    /// Marks the lease as no longer held (released, ended or found lost): every later call
    /// says so, and dropping it does nothing.
    fn give_up(&self) {
        self.released.set(true);
        self.valid_until.set(Instant::ZERO);
    }

    /// The extend `schedule` asked for: to the client's TTL, answered by the end of the
    /// validity ([`Renewal::extend_lock`]); its outcome, for the schedule.
    fn extend_for(&self, schedule: &Renewal) -> ExtendOutcome {
        let lock = schedule.extend_lock(&self.lock, now());
        let seed = seed();
        let token = self.token.clone();
        let outcome = self
            .shared
            .servers
            .run(|servers, now| Extend::<MAX_NODES>::new(&lock, token, servers, now, seed));
        match outcome {
            Ok(Ok(extended)) => {
                self.valid_until.set(extended.valid_until);
                ExtendOutcome::Extended {
                    started: extended.started,
                    valid_until: extended.valid_until,
                }
            }
            Ok(Err(distlock_core::Error::NotHeld)) => ExtendOutcome::NotHeld,
            // No majority, a server error, or the driver could not run it: the schedule tries
            // again while the validity lasts.
            Ok(Err(_)) | Err(_) => ExtendOutcome::Failed,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.released.get() {
            // Errors are the caller's to see only on an explicit release; the lock then
            // expires at its TTL.
            let _ = api::GuestLease::release(self);
        }
    }
}
