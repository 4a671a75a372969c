//! The lock as a WebAssembly component, against real `redis-server` processes.
//!
//! - The lock component is a real component whose imports and exports are what
//!   `wit/distlock.wit` says (read with `wasmparser`).
//! - One conformance suite runs against four paths: the native driver ([`Client`]), the lock
//!   component over the host's `transport`, and a guest (which re-exports `distlock`) served
//!   by a linked lock component or natively.
//! - Guests and native clients exclude each other on one lock (same keys, same protocol): a
//!   shared counter file, incremented racily under the lock, ends exact.
//! - `lease.renew` on the three component paths: a guest renewing when due keeps its lease
//!   past the TTL; with its node frozen it is told `expired` within the validity, before the
//!   key could expire.
//! - A guest that traps, runs away or eats memory while holding a lease is stopped with a
//!   clear report, its lease is released, and the adapter keeps serving.
//! - An instance holding open connections drops cleanly anywhere, even inside async code.
//! - The lock component refuses to serve nodes that need routing (a Redis Cluster, a Sentinel
//!   group), typed and before anything is sent; such guests are served natively. A guest
//!   reaches only the configured nodes, served either way (a cluster named by its seeds in
//!   any order is the configured one).
//! - The adapter's key settings (prefix or layout, no-scripts) hold for every guest client,
//!   served either way; what the lock component cannot keep is refused for it, typed.
//! - The per-acquire cost of the component paths next to the native one (printed).
//! - Semaphores and read-write locks (`client.acquire-shaped`) on every path, in the suite.
//! - Get-or-compute for guest apps (`client.get-or-lock`, `computation`): `component_compute`.

mod component_compute;
mod support;

use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use distlock_host::component::{
    Adapter, AdapterError, AdapterOptions, COUNTER_WASM, CallError, ClientHandle, Ended, Guest,
    LeaseHandle, Limits, LockInstance, PASSTHROUGH_WASM, PROVIDER_WASM, RunOptions, Serve, wit,
};
use distlock_host::{Client, Guard, KeyLayout, LockOptions};
use support::cluster::Cluster;
use support::{RedisServer, lock_key, require_redis, unique_name};

// ---------------------------------------------------------------------------------------
// Shared fixtures: one runtime, one compiled adapter per test binary.
// ---------------------------------------------------------------------------------------

struct Shared {
    runtime: tokio::runtime::Runtime,
    adapter: Adapter,
    counter: Guest,
    passthrough: Guest,
}

/// The runtime and the compiled components, made once (compiling is the slow part).
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let started = Instant::now();
        let adapter =
            Adapter::new(AdapterOptions::default(), runtime.handle().clone()).expect("adapter");
        let counter = adapter
            .load(COUNTER_WASM)
            .expect("compile the counter guest");
        let passthrough = adapter
            .load(PASSTHROUGH_WASM)
            .expect("compile the passthrough guest");
        eprintln!(
            "compiled the lock component and two guests in {:?}",
            started.elapsed()
        );
        Shared {
            runtime,
            adapter,
            counter,
            passthrough,
        }
    })
}

/// The shared adapter, serving `server`.
fn adapter_for(server: &RedisServer) -> Adapter {
    adapter_over(std::slice::from_ref(server))
}

/// The shared adapter, serving `servers` (Redlock when more than one).
fn adapter_over(servers: &[RedisServer]) -> Adapter {
    let shared = shared();
    let options = AdapterOptions {
        nodes: servers.iter().map(RedisServer::url).collect(),
        ..AdapterOptions::default()
    };
    shared
        .adapter
        .configure(options, shared.runtime.handle().clone())
        .expect("adapter for the servers")
}

// ---------------------------------------------------------------------------------------
// The component is one.
// ---------------------------------------------------------------------------------------

/// The top-level import and export names of a component (after validating it).
fn interface_names(wasm: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut validator = wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
    validator.validate_all(wasm).expect("a valid component");
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload.expect("parse") {
            wasmparser::Payload::Version { encoding, .. } => {
                if depth == 0 {
                    assert_eq!(
                        encoding,
                        wasmparser::Encoding::Component,
                        "a component, not a core module"
                    );
                }
                depth += 1;
            }
            wasmparser::Payload::End(_) => depth -= 1,
            wasmparser::Payload::ComponentImportSection(section) if depth == 1 => {
                for import in section {
                    imports.push(import.expect("import").name.name.to_owned());
                }
            }
            wasmparser::Payload::ComponentExportSection(section) if depth == 1 => {
                for export in section {
                    exports.push(export.expect("export").name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    (imports, exports)
}

#[test]
fn the_lock_component_imports_only_transport_clocks_and_random() {
    let (mut imports, exports) = interface_names(PROVIDER_WASM);
    imports.sort();
    eprintln!(
        "lock component: {} bytes; imports {imports:?}; exports {exports:?}",
        PROVIDER_WASM.len()
    );
    assert_eq!(
        imports,
        [
            "distlock:lock/transport@0.1.0",
            "wasi:clocks/monotonic-clock@0.2.12",
            "wasi:random/random@0.2.12"
        ]
    );
    assert_eq!(
        exports,
        [
            "distlock:lock/distlock@0.1.0",
            "distlock:lock/linking@0.1.0"
        ]
    );
    assert!(
        PROVIDER_WASM.len() < 400 * 1024,
        "the lock component grew to {} bytes",
        PROVIDER_WASM.len()
    );
}

#[test]
fn the_example_app_imports_distlock_and_is_a_command() {
    let (imports, exports) = interface_names(COUNTER_WASM);
    assert!(
        imports.iter().any(|i| i == "distlock:lock/distlock@0.1.0"),
        "{imports:?}"
    );
    assert!(
        !imports
            .iter()
            .any(|i| i.starts_with("distlock:lock/transport")),
        "{imports:?}"
    );
    assert!(
        exports.iter().any(|e| e.starts_with("wasi:cli/run@")),
        "{exports:?}"
    );
    let (imports, exports) = interface_names(PASSTHROUGH_WASM);
    assert!(
        imports.iter().any(|i| i == "distlock:lock/distlock@0.1.0"),
        "{imports:?}"
    );
    assert_eq!(exports, ["distlock:lock/distlock@0.1.0"]);
}

// ---------------------------------------------------------------------------------------
// The conformance suite, and the four paths it runs on.
// ---------------------------------------------------------------------------------------

/// What the suite tells apart.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    NotAcquired {
        attempts: u32,
    },
    NotHeld,
    Invalid,
    /// A node refused with `WRONGTYPE`: the name holds another kind of lock.
    WrongType,
    Unavailable,
    Other(String),
}

/// How a suite client is set up.
#[derive(Debug, Clone, Default)]
struct Settings {
    /// Empty: the adapter's nodes (the server's URL for the native path).
    nodes: Vec<String>,
    prefix: Option<String>,
    ttl: Option<Duration>,
    fenced: bool,
}

/// One lock client, whichever path it takes.
trait Locks {
    type Lease;
    fn acquire(&mut self, name: &str, wait: Duration) -> Result<Self::Lease, Kind>;
    fn try_acquire(&mut self, name: &str) -> Result<Self::Lease, Kind>;
    /// A semaphore's permit or a read-write lock's hold (`wait` zero: one attempt).
    fn acquire_shaped(
        &mut self,
        name: &str,
        shape: wit::Shape,
        wait: Duration,
    ) -> Result<Self::Lease, Kind>;
    /// Every name at once, all or nothing (`wait` zero: one attempt).
    fn acquire_many(&mut self, names: &[String], wait: Duration) -> Result<Self::Lease, Kind>;
    fn name(&mut self, lease: &Self::Lease) -> String;
    fn token(&mut self, lease: &Self::Lease) -> String;
    fn fence(&mut self, lease: &Self::Lease) -> Option<u64>;
    fn validity(&mut self, lease: &Self::Lease) -> Duration;
    fn extend(&mut self, lease: &Self::Lease, ttl: Duration) -> Result<Duration, Kind>;
    fn release(&mut self, lease: &Self::Lease) -> Result<(), Kind>;
    fn drop_lease(&mut self, lease: Self::Lease);
}

/// Opens clients of one path.
trait Path {
    type Locks: Locks;
    fn open(&self, settings: Settings) -> Result<Self::Locks, Kind>;
}

/// The suite. `server` is what the clients use; names are fresh per run.
fn conformance<P: Path>(path: &P, server: &RedisServer) {
    let ttl = Duration::from_secs(10);
    let settings = Settings {
        ttl: Some(ttl),
        ..Settings::default()
    };
    let mut a = path.open(settings.clone()).expect("open a");
    let mut b = path.open(settings.clone()).expect("open b");

    // Exclusion, tokens, validity, release, drop.
    let name = unique_name("conformance");
    let held = a.try_acquire(&name).expect("a free lock is acquired");
    let token = a.token(&held);
    assert_eq!(token.len(), 32, "{token}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{token}");
    assert_eq!(a.name(&held), name);
    assert_eq!(a.fence(&held), None, "unfenced");
    let validity = a.validity(&held);
    assert!(
        validity > Duration::from_secs(9) && validity <= ttl,
        "{validity:?}"
    );
    // The same keys as every other path: `distlock:{name}` holds the token.
    assert_eq!(
        server.raw().ok(&["GET", &lock_key(&name)]).text(),
        Some(token.clone())
    );
    assert!(
        matches!(b.try_acquire(&name), Err(Kind::NotAcquired { attempts: 1 })),
        "a held lock is refused"
    );
    a.release(&held).expect("release");
    assert_eq!(
        server.raw().ok(&["EXISTS", &lock_key(&name)]).int(),
        Some(0)
    );
    assert_eq!(a.release(&held), Err(Kind::NotHeld), "a second release");
    assert_eq!(
        a.extend(&held, ttl),
        Err(Kind::NotHeld),
        "extend after release"
    );
    assert_eq!(a.validity(&held), Duration::ZERO, "validity after release");
    a.drop_lease(held);
    let by_b = b.try_acquire(&name).expect("free again");
    assert!(matches!(
        a.try_acquire(&name),
        Err(Kind::NotAcquired { .. })
    ));
    b.drop_lease(by_b);
    let again = a.try_acquire(&name).expect("dropping a lease releases it");
    a.drop_lease(again);

    // Extend.
    let name = unique_name("extend");
    let held = a.try_acquire(&name).expect("acquire");
    let validity = a.extend(&held, Duration::from_secs(60)).expect("extend");
    assert!(validity > Duration::from_secs(55), "{validity:?}");
    let pttl = server
        .raw()
        .ok(&["PTTL", &lock_key(&name)])
        .int()
        .unwrap_or(0);
    assert!(pttl > 55_000, "the key lives {pttl} ms after the extend");
    a.release(&held).expect("release");
    a.drop_lease(held);

    // Waiting: for a holder that lets its lease expire, and running out of wait.
    let short = Settings {
        ttl: Some(Duration::from_millis(300)),
        ..Settings::default()
    };
    let mut expiring = path.open(short).expect("open");
    let name = unique_name("wait");
    let held = expiring.try_acquire(&name).expect("acquire");
    let started = Instant::now();
    let got = b
        .acquire(&name, Duration::from_secs(5))
        .expect("acquired once the holder's key expired");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_secs(4),
        "waited {waited:?}"
    );
    let started = Instant::now();
    match a.acquire(&name, Duration::from_millis(300)) {
        Err(Kind::NotAcquired { attempts }) => assert!(attempts >= 1),
        other => panic!("expected not-acquired, got {:?}", other.map(|_| ())),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "gave up after {:?}",
        started.elapsed()
    );
    b.release(&got).expect("release");
    b.drop_lease(got);
    expiring.drop_lease(held);

    // Fencing: each holder's fence is larger.
    let mut fenced = path
        .open(Settings {
            fenced: true,
            ..settings.clone()
        })
        .expect("open fenced");
    let name = unique_name("fenced");
    let first = fenced.try_acquire(&name).expect("acquire");
    let f1 = fenced.fence(&first).expect("a fence");
    fenced.release(&first).expect("release");
    let second = fenced.try_acquire(&name).expect("acquire");
    let f2 = fenced.fence(&second).expect("a fence");
    assert!(f2 > f1, "fences {f1} then {f2}");
    fenced.drop_lease(first);
    fenced.drop_lease(second);

    // A key prefix.
    let mut prefixed = path
        .open(Settings {
            prefix: Some("suite:".into()),
            ..settings.clone()
        })
        .expect("open");
    let name = unique_name("prefixed");
    let held = prefixed.try_acquire(&name).expect("acquire");
    let token = prefixed.token(&held);
    assert_eq!(
        server
            .raw()
            .ok(&["GET", &format!("suite:{{{name}}}")])
            .text(),
        Some(token)
    );
    prefixed.drop_lease(held);

    shapes(&mut a, &mut b, server);
    many(&mut a, &mut b, server);

    // Refusals: bad names, bad settings, unreachable nodes.
    assert_eq!(a.try_acquire("").err(), Some(Kind::Invalid), "empty name");
    assert_eq!(
        a.try_acquire("a\r\nb").err(),
        Some(Kind::Invalid),
        "control bytes"
    );
    assert_eq!(
        path.open(Settings {
            prefix: Some("a{b".into()),
            ..settings.clone()
        })
        .err(),
        Some(Kind::Invalid)
    );
    assert_eq!(
        path.open(Settings {
            ttl: Some(Duration::ZERO),
            ..settings.clone()
        })
        .err(),
        Some(Kind::Invalid)
    );
    assert_eq!(
        path.open(Settings {
            nodes: vec!["http://x".into()],
            ..settings.clone()
        })
        .err(),
        Some(Kind::Invalid)
    );
    assert_eq!(
        path.open(Settings {
            nodes: vec!["redis://127.0.0.1:1".into()],
            ..settings
        })
        .err(),
        Some(Kind::Unavailable)
    );
}

/// One of `limit` permits of a semaphore, the client's fair mode.
fn permits(limit: u32) -> wit::Shape {
    wit::Shape::Semaphore(wit::SemaphoreShape { limit, fair: None })
}

/// The suite's semaphores and read-write locks (`client.acquire-shaped`): the limit is never
/// exceeded and a released permit admits the next holder; readers share and a writer
/// excludes readers and writers; each lease's extend acts on its own key; bad input is
/// refused before anything is written.
fn shapes<L: Locks>(a: &mut L, b: &mut L, server: &RedisServer) {
    let none = Duration::ZERO;
    let name = unique_name("semaphore");
    let first = a.acquire_shaped(&name, permits(2), none).expect("a permit");
    let second = b
        .acquire_shaped(&name, permits(2), none)
        .expect("a second permit");
    let (t1, t2) = (a.token(&first), b.token(&second));
    assert_ne!(t1, t2);
    let permit_key = |token: &str| format!("{}:permit:{token}", lock_key(&name));
    assert!(
        matches!(
            a.acquire_shaped(&name, permits(2), none),
            Err(Kind::NotAcquired { attempts: 1 })
        ),
        "a third holder of two permits"
    );
    let validity = a
        .extend(&first, Duration::from_secs(60))
        .expect("extend a permit");
    assert!(validity > Duration::from_secs(55), "{validity:?}");
    let pttl = |key: &str| server.raw().ok(&["PTTL", key]).int().unwrap_or(-2);
    assert!(
        pttl(&permit_key(&t1)) > 55_000,
        "the permit's own key was extended"
    );
    b.release(&second).expect("release a permit");
    assert_eq!(pttl(&permit_key(&t2)), -2, "its key is gone");
    let third = b
        .acquire_shaped(&name, permits(2), Duration::from_secs(5))
        .expect("the released permit admits the next holder");
    a.release(&first).expect("release");
    b.release(&third).expect("release");
    a.drop_lease(first);
    for lease in [second, third] {
        b.drop_lease(lease);
    }

    let name = unique_name("rw");
    let r1 = a
        .acquire_shaped(&name, wit::Shape::Read, none)
        .expect("a read hold");
    let r2 = b
        .acquire_shaped(&name, wit::Shape::Read, none)
        .expect("readers share");
    assert!(
        matches!(
            a.acquire_shaped(&name, wit::Shape::Write, none),
            Err(Kind::NotAcquired { .. })
        ),
        "a writer beside readers"
    );
    a.release(&r1).expect("release a read hold");
    b.release(&r2).expect("release a read hold");
    let w = a
        .acquire_shaped(&name, wit::Shape::Write, none)
        .expect("a write hold");
    assert_eq!(
        server
            .raw()
            .ok(&["GET", &format!("{}:writer", lock_key(&name))])
            .text(),
        Some(a.token(&w))
    );
    for shape in [wit::Shape::Read, wit::Shape::Write] {
        assert!(
            matches!(
                b.acquire_shaped(&name, shape, none),
                Err(Kind::NotAcquired { .. })
            ),
            "{shape:?} beside a writer"
        );
    }
    a.release(&w).expect("release the write hold");
    for lease in [r1, w] {
        a.drop_lease(lease);
    }
    b.drop_lease(r2);

    let name = unique_name("shapes-bad");
    for limit in [0, distlock_core::MAX_PERMITS + 1] {
        assert_eq!(
            a.acquire_shaped(&name, permits(limit), none).err(),
            Some(Kind::Invalid),
            "limit {limit}"
        );
    }
    assert_eq!(
        server.raw().ok(&["EXISTS", &lock_key(&name)]).int(),
        Some(0)
    );
    let mutex = a.try_acquire(&name).expect("a lock");
    assert_eq!(
        b.acquire_shaped(&name, permits(2), none).err(),
        Some(Kind::WrongType),
        "a semaphore on a lock's name"
    );
    a.drop_lease(mutex);
}

/// The suite's multi-name locks (`client.acquire-many`): a set with one held name takes
/// nothing; the set holds every name under one token and excludes overlapping sets and locks
/// of its names; its extend moves every name's expiry and its release frees them all; a bad
/// set is refused before anything is written.
fn many<L: Locks>(a: &mut L, b: &mut L, server: &RedisServer) {
    let none = Duration::ZERO;
    let base = unique_name("many");
    let [x, y, z] = ["x", "y", "z"].map(|n| format!("{base}-{n}"));
    let value = |name: &str| server.raw().ok(&["GET", &lock_key(name)]).text();
    let plain = b.acquire(&y, none).expect("a lock of y");
    assert!(
        matches!(
            a.acquire_many(&[x.clone(), y.clone()], none),
            Err(Kind::NotAcquired { .. })
        ),
        "y is held"
    );
    assert_eq!(value(&x), None, "a held name takes nothing");
    b.release(&plain).expect("release y");

    let set = a
        .acquire_many(&[y.clone(), x.clone()], none)
        .expect("the set");
    let token = a.token(&set);
    for name in [&x, &y] {
        assert_eq!(value(name).as_deref(), Some(token.as_str()), "{name}");
    }
    assert!(matches!(
        b.acquire_many(&[y.clone(), z.clone()], none),
        Err(Kind::NotAcquired { .. })
    ));
    assert_eq!(value(&z), None);
    assert!(matches!(b.try_acquire(&x), Err(Kind::NotAcquired { .. })));
    a.extend(&set, Duration::from_secs(60))
        .expect("extend the set");
    for name in [&x, &y] {
        let pttl = server.raw().ok(&["PTTL", &lock_key(name)]).int();
        assert!(pttl.is_some_and(|ms| ms > 30_000), "{name}: {pttl:?}");
    }
    a.release(&set).expect("release the set");
    for name in [&x, &y] {
        assert_eq!(value(name), None, "{name} released");
    }
    let other = b
        .acquire_many(&[y.clone(), z.clone()], none)
        .expect("the overlapping set, now free");
    b.drop_lease(other);

    for bad in [
        vec![],
        vec![x.clone(), x.clone()],
        vec![x.clone(), String::new()],
    ] {
        assert_eq!(
            a.acquire_many(&bad, none).err(),
            Some(Kind::Invalid),
            "{bad:?}"
        );
    }
    assert_eq!(value(&x), None, "nothing written");
}

// The native driver.

struct NativePath<'a> {
    runtime: &'a tokio::runtime::Runtime,
    url: String,
}

struct NativeLocks<'a> {
    runtime: &'a tokio::runtime::Runtime,
    client: Client,
    options: LockOptions,
}

fn native_kind(e: distlock_host::Error) -> Kind {
    match e {
        distlock_host::Error::Lock(distlock_core::Error::NotAcquired { attempts, .. }) => {
            Kind::NotAcquired { attempts }
        }
        distlock_host::Error::Lock(distlock_core::Error::NotHeld) => Kind::NotHeld,
        distlock_host::Error::Lock(distlock_core::Error::Server { error, .. })
            if error.kind == distlock_core::ServerErrorKind::WrongType =>
        {
            Kind::WrongType
        }
        distlock_host::Error::Config(_) | distlock_host::Error::BadUrl { .. } => Kind::Invalid,
        distlock_host::Error::Connect { .. } | distlock_host::Error::TooFewNodes { .. } => {
            Kind::Unavailable
        }
        other => Kind::Other(other.to_string()),
    }
}

impl<'a> Path for NativePath<'a> {
    type Locks = NativeLocks<'a>;

    fn open(&self, settings: Settings) -> Result<NativeLocks<'a>, Kind> {
        let mut options = LockOptions {
            fenced: settings.fenced,
            ..LockOptions::default()
        };
        if let Some(ttl) = settings.ttl {
            options.ttl = distlock_core::Duration::from_millis(ttl.as_millis() as u64);
        }
        options.validate().map_err(|_| Kind::Invalid)?;
        let layout = match &settings.prefix {
            Some(p) => KeyLayout::tagged(p.as_bytes()).map_err(|_| Kind::Invalid)?,
            None => KeyLayout::default(),
        };
        let nodes = if settings.nodes.is_empty() {
            vec![self.url.clone()]
        } else {
            settings.nodes
        };
        let client = self
            .runtime
            .block_on(Client::connect_with(
                nodes,
                distlock_host::ConnectOptions::default(),
                layout,
            ))
            .map_err(native_kind)?;
        Ok(NativeLocks {
            runtime: self.runtime,
            client,
            options,
        })
    }
}

impl Locks for NativeLocks<'_> {
    type Lease = std::cell::RefCell<Option<Guard>>;

    fn acquire(&mut self, name: &str, wait: Duration) -> Result<Self::Lease, Kind> {
        let builder = self.client.lock(name).options(self.options).wait(wait);
        let guard = self
            .runtime
            .block_on(builder.acquire())
            .map_err(native_kind)?;
        Ok(std::cell::RefCell::new(Some(guard)))
    }

    fn try_acquire(&mut self, name: &str) -> Result<Self::Lease, Kind> {
        let builder = self.client.lock(name).options(self.options);
        let guard = self
            .runtime
            .block_on(builder.try_acquire())
            .map_err(native_kind)?;
        Ok(std::cell::RefCell::new(Some(guard)))
    }

    fn acquire_shaped(
        &mut self,
        name: &str,
        shape: wit::Shape,
        wait: Duration,
    ) -> Result<Self::Lease, Kind> {
        // The Rust API's own calls for each shape, as a user writes them.
        let builder = match shape {
            wit::Shape::Lock => self.client.lock(name),
            wit::Shape::Semaphore(semaphore) => self.client.semaphore(name, semaphore.limit),
            wit::Shape::Read => self.client.read_lock(name),
            wit::Shape::Write => self.client.write_lock(name),
        };
        let builder = builder.options(self.options).wait(wait);
        let guard = self
            .runtime
            .block_on(builder.acquire())
            .map_err(native_kind)?;
        Ok(std::cell::RefCell::new(Some(guard)))
    }

    fn acquire_many(&mut self, names: &[String], wait: Duration) -> Result<Self::Lease, Kind> {
        let builder = self
            .client
            .lock_many(names)
            .options(self.options)
            .wait(wait);
        let guard = self
            .runtime
            .block_on(builder.acquire())
            .map_err(native_kind)?;
        Ok(std::cell::RefCell::new(Some(guard)))
    }

    fn name(&mut self, lease: &Self::Lease) -> String {
        String::from_utf8_lossy(lease.borrow().as_ref().expect("held").name()).into_owned()
    }

    fn token(&mut self, lease: &Self::Lease) -> String {
        lease.borrow().as_ref().expect("held").token().to_owned()
    }

    fn fence(&mut self, lease: &Self::Lease) -> Option<u64> {
        lease.borrow().as_ref().expect("held").fence()
    }

    fn validity(&mut self, lease: &Self::Lease) -> Duration {
        lease
            .borrow()
            .as_ref()
            .map_or(Duration::ZERO, Guard::validity)
    }

    fn extend(&mut self, lease: &Self::Lease, ttl: Duration) -> Result<Duration, Kind> {
        let lease = lease.borrow();
        let guard = lease.as_ref().ok_or(Kind::NotHeld)?;
        self.runtime
            .block_on(guard.extend(ttl))
            .map_err(native_kind)
    }

    fn release(&mut self, lease: &Self::Lease) -> Result<(), Kind> {
        let guard = lease.borrow_mut().take().ok_or(Kind::NotHeld)?;
        self.runtime
            .block_on(guard.release())
            .map(|_| ())
            .map_err(native_kind)
    }

    fn drop_lease(&mut self, lease: Self::Lease) {
        if let Some(guard) = lease.into_inner() {
            let _ = self.runtime.block_on(guard.release());
        }
    }
}

// A component that exports `distlock`: the lock component, or the passthrough guest.

struct ComponentPath {
    /// A store per `open`, as separate processes would have.
    make: Box<dyn Fn() -> LockInstance>,
}

struct ComponentLocks {
    instance: LockInstance,
    client: ClientHandle,
}

fn component_kind(e: CallError) -> Kind {
    match e {
        CallError::Lock(wit::Error::NotAcquired(n)) => Kind::NotAcquired {
            attempts: n.attempts,
        },
        CallError::Lock(wit::Error::NotHeld) => Kind::NotHeld,
        CallError::Lock(wit::Error::Invalid(_)) => Kind::Invalid,
        CallError::Lock(wit::Error::Unavailable(_)) => Kind::Unavailable,
        CallError::Lock(wit::Error::Server(refused))
            if refused.error.kind == wit::ServerErrorKind::WrongType =>
        {
            Kind::WrongType
        }
        other => Kind::Other(other.to_string()),
    }
}

impl Path for ComponentPath {
    type Locks = ComponentLocks;

    fn open(&self, settings: Settings) -> Result<ComponentLocks, Kind> {
        let mut instance = (self.make)();
        let config = wit::Config {
            nodes: settings.nodes,
            key_prefix: settings.prefix,
            ttl_ms: settings.ttl.map(|t| t.as_millis() as u64),
            fenced: settings.fenced,
            request_timeout_ms: None,
            fair: None,
            no_scripts: None,
        };
        let client = instance.open(&config).map_err(component_kind)?;
        Ok(ComponentLocks { instance, client })
    }
}

impl Locks for ComponentLocks {
    type Lease = LeaseHandle;

    fn acquire(&mut self, name: &str, wait: Duration) -> Result<LeaseHandle, Kind> {
        self.instance
            .acquire(&self.client, name, wait)
            .map_err(component_kind)
    }

    fn try_acquire(&mut self, name: &str) -> Result<LeaseHandle, Kind> {
        self.instance
            .try_acquire(&self.client, name)
            .map_err(component_kind)
    }

    fn acquire_shaped(
        &mut self,
        name: &str,
        shape: wit::Shape,
        wait: Duration,
    ) -> Result<LeaseHandle, Kind> {
        self.instance
            .acquire_shaped(&self.client, name, shape, wait)
            .map_err(component_kind)
    }

    fn acquire_many(&mut self, names: &[String], wait: Duration) -> Result<LeaseHandle, Kind> {
        self.instance
            .acquire_many(&self.client, names, wait)
            .map_err(component_kind)
    }

    fn name(&mut self, lease: &LeaseHandle) -> String {
        self.instance.name(lease).expect("name")
    }

    fn token(&mut self, lease: &LeaseHandle) -> String {
        self.instance.token(lease).expect("token")
    }

    fn fence(&mut self, lease: &LeaseHandle) -> Option<u64> {
        self.instance.fence(lease).expect("fence")
    }

    fn validity(&mut self, lease: &LeaseHandle) -> Duration {
        self.instance.validity(lease).expect("validity")
    }

    fn extend(&mut self, lease: &LeaseHandle, ttl: Duration) -> Result<Duration, Kind> {
        self.instance.extend(lease, ttl).map_err(component_kind)
    }

    fn release(&mut self, lease: &LeaseHandle) -> Result<(), Kind> {
        self.instance.release(lease).map_err(component_kind)
    }

    fn drop_lease(&mut self, lease: LeaseHandle) {
        self.instance.drop_lease(lease).expect("drop");
    }
}

#[test]
fn conformance_native_driver() {
    require_redis!();
    let server = RedisServer::start();
    conformance(
        &NativePath {
            runtime: &shared().runtime,
            url: server.url(),
        },
        &server,
    );
}

#[test]
fn conformance_lock_component_over_the_host_transport() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let path = ComponentPath {
        make: Box::new(move || adapter.lock_component(Limits::default()).expect("instance")),
    };
    conformance(&path, &server);
}

#[test]
fn conformance_guest_linked_to_the_lock_component() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let guest = shared().passthrough.clone();
    let path = ComponentPath {
        make: Box::new(move || {
            adapter
                .guest_exports(&guest, Serve::Linked, Limits::default())
                .expect("instance")
        }),
    };
    conformance(&path, &server);
}

#[test]
fn conformance_guest_served_natively() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let guest = shared().passthrough.clone();
    let path = ComponentPath {
        make: Box::new(move || {
            adapter
                .guest_exports(&guest, Serve::Native, Limits::default())
                .expect("instance")
        }),
    };
    conformance(&path, &server);
}

/// Redlock over three nodes through the lock component: every node holds the token, one lost
/// node leaves a majority, two do not (and the error says so).
#[test]
fn lock_component_runs_redlock_over_three_nodes() {
    require_redis!();
    let mut servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let adapter = adapter_over(&servers);
    let config = |fenced| wit::Config {
        nodes: vec![],
        key_prefix: None,
        ttl_ms: None,
        fenced,
        request_timeout_ms: None,
        fair: None,
        no_scripts: None,
    };
    let mut instance = adapter.lock_component(Limits::default()).expect("instance");
    let client = instance.open(&config(true)).expect("open");
    let name = unique_name("redlock");
    let lease = instance
        .try_acquire(&client, &name)
        .expect("acquire on three nodes");
    let token = instance.token(&lease).expect("token");
    let first_fence = instance.fence(&lease).expect("fence").expect("fenced");
    // The acquire returns at a quorum: a third node still loading the script (`NOSCRIPT`,
    // then `EVAL`) may not have the key yet, and need not.
    let holding = servers
        .iter()
        .filter(|s| s.raw().ok(&["GET", &lock_key(&name)]).text() == Some(token.clone()))
        .count();
    assert!(holding >= 2, "a majority holds the lease ({holding} of 3)");
    instance.release(&lease).expect("release");
    instance.drop_lease(lease).expect("drop");

    servers[2].stop();
    let lease = instance
        .try_acquire(&client, &name)
        .expect("two of three nodes are a majority");
    assert!(instance.fence(&lease).expect("fence").expect("fenced") > first_fence);
    instance.release(&lease).expect("release on the majority");
    instance.drop_lease(lease).expect("drop");

    servers[1].stop();
    match instance.try_acquire(&client, &name) {
        // Decided as soon as two nodes failed, whether or not the third's grant was in.
        Err(CallError::Lock(wit::Error::QuorumLost(q))) => {
            assert!(q.granted <= 1 && (q.needed, q.nodes) == (2, 3), "{q:?}")
        }
        other => panic!("expected quorum-lost, got {:?}", other.map(|_| ())),
    }
}

/// Nodes that went down come back: after two of three servers died (quorum lost) and were
/// restarted, the lock component reconnects them once the core's session lets it — a node
/// that failed is backed off, then retried, never given up on — even when every operation
/// is a try-acquire that ends at once (the returning nodes' handshakes are read between
/// operations).
#[test]
fn lock_component_takes_back_nodes_that_return() {
    require_redis!();
    let mut servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let adapter = adapter_over(&servers);
    let mut instance = adapter.lock_component(Limits::default()).expect("instance");
    let client = instance
        .open(&wit::Config {
            nodes: vec![],
            key_prefix: None,
            ttl_ms: None,
            fenced: false,
            request_timeout_ms: None,
            fair: None,
            no_scripts: None,
        })
        .expect("open");
    let name = unique_name("return");
    servers[1].stop();
    servers[2].stop();
    // Fail a few times, so both nodes are backing off with a grown pause.
    for _ in 0..3 {
        assert!(
            instance.try_acquire(&client, &name).is_err(),
            "one node of three is no majority"
        );
    }
    servers[1].restart();
    servers[2].restart();
    // The reconnect pause is at most 2 s (the core's RECONNECT cap); allow several.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let lease = loop {
        match instance.try_acquire(&client, &name) {
            Ok(lease) => break lease,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the restarted nodes never came back: {e:?}"
            ),
        }
    };
    let token = instance.token(&lease).expect("token");
    let holding = servers
        .iter()
        .filter(|s| s.raw().ok(&["GET", &lock_key(&name)]).text() == Some(token.clone()))
        .count();
    assert!(holding >= 2, "a majority holds the lease ({holding} of 3)");
    instance.release(&lease).expect("release");
    instance.drop_lease(lease).expect("drop");
}

/// A Redlock round answers at a quorum; the lock component hands the slower node's
/// connection to the next operation (which discards the late reply) instead of reconnecting:
/// a hundred rounds over three servers open a handful of connections, not one per round.
#[test]
fn lock_component_keeps_its_redlock_connections() {
    require_redis!();
    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let adapter = adapter_over(&servers);
    let connections = || -> u64 { servers.iter().map(RedisServer::connections_received).sum() };
    let mut instance = adapter.lock_component(Limits::default()).expect("instance");
    let client = instance
        .open(&wit::Config {
            nodes: vec![],
            key_prefix: None,
            ttl_ms: None,
            fenced: false,
            request_timeout_ms: None,
            fair: None,
            no_scripts: None,
        })
        .expect("open");
    let name = unique_name("keep");
    let before = connections();
    const ROUNDS: u64 = 100;
    for _ in 0..ROUNDS {
        let lease = instance.try_acquire(&client, &name).expect("free lock");
        instance.release(&lease).expect("release");
        instance.drop_lease(lease).expect("drop");
    }
    // Each `raw()` in `connections` is one connection per server, counted too.
    let opened = connections() - before;
    assert!(
        opened <= 3 * 2,
        "{ROUNDS} Redlock rounds opened {opened} connections over 3 servers"
    );
    for server in &servers {
        assert_eq!(
            server.raw().ok(&["EXISTS", &lock_key(&name)]).int(),
            Some(0)
        );
    }
}

/// A store's `transport` connections run on a runtime of the store's own, driven by the
/// thread that calls it. An instance holding open connections can still be dropped anywhere
/// a Rust value can — here inside a task of another runtime, where dropping a runtime the
/// ordinary way panics — and its connections close.
#[test]
fn an_instance_with_open_connections_drops_inside_async_code() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let connected = || server.info_number("clients", "connected_clients");
    let before = connected();
    let mut instance = adapter.lock_component(Limits::default()).expect("instance");
    let client = instance
        .open(&config_with_ttl(Duration::from_secs(30)))
        .expect("open");
    let name = unique_name("drop-async");
    let lease = instance.try_acquire(&client, &name).expect("free lock");
    instance.release(&lease).expect("release");
    instance.drop_lease(lease).expect("drop");
    assert!(connected() > before, "the instance holds no connection");
    let dropped = shared()
        .runtime
        .block_on(async move { tokio::spawn(async move { drop(instance) }).await });
    assert!(
        dropped.is_ok(),
        "dropping the instance inside a task panicked"
    );
    support::wait_for(
        "the instance's connection to close",
        Duration::from_secs(5),
        || (connected() == before).then_some(()),
    );
}

/// A Redis Cluster or Sentinel group among the nodes needs routing the lock component does
/// not do: every way of asking it to serve is refused with `AdapterError::Routed` (naming the
/// node without its password) before anything is sent — the listener standing in for the
/// node is never connected to — while a guest served natively is not refused. Plain nodes
/// need no routing.
#[test]
fn the_lock_component_refuses_nodes_that_need_routing() {
    let shared = shared();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("address").port();
    let plain = AdapterOptions {
        nodes: vec![format!("redis://127.0.0.1:{port}")],
        ..AdapterOptions::default()
    };
    let plain = shared
        .adapter
        .configure(plain, shared.runtime.handle().clone())
        .expect("adapter");
    assert_eq!(plain.routed_node(), None);
    for url in [
        format!("redis+cluster://user:secret@127.0.0.1:{port}"),
        format!("redis+sentinel://user:secret@127.0.0.1:{port}/mymaster"),
    ] {
        let options = AdapterOptions {
            nodes: vec![format!("redis://127.0.0.1:{port}"), url.clone()],
            ..AdapterOptions::default()
        };
        let adapter = shared
            .adapter
            .configure(options, shared.runtime.handle().clone())
            .expect("adapter");
        let shown = url.replace("secret", "***");
        assert_eq!(adapter.routed_node().as_deref(), Some(shown.as_str()));
        let refused = |what: &str, e: AdapterError| {
            let message = e.to_string();
            assert!(
                matches!(&e, AdapterError::Routed { node } if *node == shown),
                "{url}, {what}: {e:?}"
            );
            assert!(
                message.contains("serve the guest natively") && !message.contains("secret"),
                "{url}, {what}: {message}"
            );
        };
        refused(
            "lock_component",
            adapter
                .lock_component(Limits::default())
                .map(|_| ())
                .expect_err("refused"),
        );
        refused(
            "guest_exports",
            adapter
                .guest_exports(&shared.passthrough, Serve::Linked, Limits::default())
                .map(|_| ())
                .expect_err("refused"),
        );
        let mut options = RunOptions::args(["counter", "count", "n", "/nowhere", "1"]);
        options.inherit_stdio = false;
        refused(
            "run",
            adapter
                .run(&shared.counter, &options)
                .map(|_| ())
                .expect_err("refused"),
        );
        // Natively the same guest is not refused (its exports are instantiated; nothing is
        // called, so nothing connects).
        adapter
            .guest_exports(&shared.passthrough, Serve::Native, Limits::default())
            .map(|_| ())
            .expect("a guest served natively");
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "something connected to the node"
    );
}

/// A guest reaches the configured nodes and nothing else, served either way: a client it
/// opens naming another node (a listener standing in for a server nobody configured) fails
/// `unavailable` — natively at `open`, saying the node is not one of those given — and the
/// listener is never connected to; naming the configured node works.
#[test]
fn a_guest_reaches_only_the_configured_nodes() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let other = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().expect("address").port()
    );
    for serve in [Serve::Linked, Serve::Native] {
        let mut instance = adapter
            .guest_exports(&shared().passthrough, serve, Limits::default())
            .expect("instance");
        let config = |nodes: Vec<String>| wit::Config {
            nodes,
            ..config_with_ttl(Duration::from_secs(30))
        };
        let name = unique_name("unconfigured");
        let refused = instance
            .open(&config(vec![other.clone()]))
            .and_then(|client| instance.try_acquire(&client, &name).map(|_| ()));
        let error = refused.expect_err("a node nobody configured");
        match (serve, error.lock_error()) {
            (Serve::Native, Some(wit::Error::Unavailable(why))) => assert!(
                why.contains("not one of the nodes this runtime was given"),
                "{serve:?}: {why}"
            ),
            (Serve::Native, _) => panic!("{serve:?}: {error:?}"),
            (_, lock) => assert!(lock.is_some(), "{serve:?}: {error:?}"),
        }
        let client = instance
            .open(&config(vec![server.url()]))
            .expect("the configured node");
        let lease = instance.try_acquire(&client, &name).expect("acquire");
        instance.release(&lease).expect("release");
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a guest connected to a node nobody configured"
    );
}

/// A guest names a cluster the runtime was given by its seeds in any order, or some of them:
/// the same cluster, served natively, and the lock lands on it. A seed nobody configured
/// among them is refused at `open` (`unavailable`), and the listener standing in for it is
/// never connected to.
#[test]
fn a_guest_names_a_configured_cluster_by_its_seeds_in_any_order() {
    require_redis!();
    let cluster = Cluster::start(3);
    let shared = shared();
    let options = AdapterOptions {
        nodes: vec![cluster.url(&[0, 1, 2])],
        ..AdapterOptions::default()
    };
    let adapter = shared
        .adapter
        .configure(options, shared.runtime.handle().clone())
        .expect("adapter");
    let mut instance = adapter
        .guest_exports(&shared.passthrough, Serve::Native, Limits::default())
        .expect("instance");
    let config = |nodes: Vec<String>| wit::Config {
        nodes,
        ..config_with_ttl(Duration::from_secs(30))
    };
    for seeds in [&[2, 0, 1][..], &[1, 2, 0], &[1]] {
        let name = unique_name("seed-order");
        let client = instance
            .open(&config(vec![cluster.url(seeds)]))
            .unwrap_or_else(|e| panic!("seeds {seeds:?}: {e:?}"));
        let lease = instance.try_acquire(&client, &name).expect("acquire");
        let token = instance.token(&lease).expect("token");
        let key = lock_key(&name);
        let owner = cluster.owner(cluster.slot(&key), 0);
        assert_eq!(
            cluster.nodes[owner].raw().ok(&["GET", &key]).text(),
            Some(token),
            "seeds {seeds:?}: the lock is not on the slot's owner"
        );
        instance.release(&lease).expect("release");
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("address").port();
    let with_stranger = format!("{},127.0.0.1:{port}", cluster.url(&[1, 0]));
    match instance.open(&config(vec![with_stranger.clone()])) {
        Err(e) => match e.lock_error() {
            Some(wit::Error::Unavailable(why)) => assert!(
                why.contains("not one of the nodes this runtime was given"),
                "{why}"
            ),
            _ => panic!("{with_stranger}: {e:?}"),
        },
        Ok(_) => panic!("{with_stranger}: opened with a seed nobody configured"),
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a guest connected to a seed nobody configured"
    );
}

/// The `invalid` kind of a refused call, or a panic saying what came instead.
fn invalid_kind<T>(what: &str, result: Result<T, CallError>) -> wit::ConfigErrorKind {
    match result.map(|_| ()) {
        Err(e) => match e.lock_error() {
            Some(wit::Error::Invalid(invalid)) => invalid.kind,
            _ => panic!("{what}: {e:?}"),
        },
        Ok(()) => panic!("{what}: accepted"),
    }
}

/// The adapter's key settings hold for every client a guest opens, served either way, and
/// for the lock component called from Rust: its prefix is what an unset `key-prefix` means
/// (the lock lands under it) and another prefix is refused (`bad-prefix`); its no-scripts
/// mode is what an unset `no-scripts` means (a fair lock, which needs scripts, is refused)
/// and asking for scripts is refused (`needs-scripts`). A Python library's layout is served
/// natively (the lock lands under its key) and refused for the lock component, typed.
#[test]
fn the_adapters_key_settings_hold_for_every_guest_client() {
    require_redis!();
    let server = RedisServer::start();
    let shared = shared();
    let configure = |layout: Option<KeyLayout>, no_scripts: bool| {
        let options = AdapterOptions {
            nodes: vec![server.url()],
            layout,
            no_scripts,
            ..AdapterOptions::default()
        };
        shared
            .adapter
            .configure(options, shared.runtime.handle().clone())
            .expect("adapter")
    };
    let config = || config_with_ttl(Duration::from_secs(30));
    let prefixed = configure(Some(KeyLayout::tagged(b"team-b:").expect("prefix")), false);
    let scriptless = configure(None, true);
    let instances = |adapter: &Adapter| {
        vec![
            (
                "linked",
                adapter
                    .guest_exports(&shared.passthrough, Serve::Linked, Limits::default())
                    .expect("instance"),
            ),
            (
                "native",
                adapter
                    .guest_exports(&shared.passthrough, Serve::Native, Limits::default())
                    .expect("instance"),
            ),
            (
                "lock component",
                adapter.lock_component(Limits::default()).expect("instance"),
            ),
        ]
    };
    for (label, mut instance) in instances(&prefixed) {
        let name = unique_name("runtime-prefix");
        let client = instance.open(&config()).expect("open");
        let lease = instance.try_acquire(&client, &name).expect("acquire");
        let token = instance.token(&lease).expect("token");
        assert_eq!(
            server
                .raw()
                .ok(&["GET", &format!("team-b:{{{name}}}")])
                .text(),
            Some(token),
            "{label}: not under the runtime's prefix"
        );
        assert_eq!(
            server.raw().ok(&["EXISTS", &lock_key(&name)]).int(),
            Some(0),
            "{label}: under the default prefix too"
        );
        instance.release(&lease).expect("release");
        let other = wit::Config {
            key_prefix: Some("other:".into()),
            ..config()
        };
        assert_eq!(
            invalid_kind(label, instance.open(&other)),
            wit::ConfigErrorKind::BadPrefix,
            "{label}"
        );
    }
    for (label, mut instance) in instances(&scriptless) {
        let fair = wit::Config {
            fair: Some(true),
            ..config()
        };
        assert_eq!(
            invalid_kind(label, instance.open(&fair)),
            wit::ConfigErrorKind::NeedsScripts,
            "{label}: a fair lock under no scripts"
        );
        let scripts = wit::Config {
            no_scripts: Some(false),
            ..config()
        };
        assert_eq!(
            invalid_kind(label, instance.open(&scripts)),
            wit::ConfigErrorKind::NeedsScripts,
            "{label}: scripts asked for"
        );
    }
    let python = configure(Some(KeyLayout::python_redis_lock()), false);
    assert!(
        matches!(
            python.guest_exports(&shared.passthrough, Serve::Linked, Limits::default()),
            Err(AdapterError::NeedsNative {
                setting: "layout",
                ..
            })
        ),
        "a linked guest under python-redis-lock's layout"
    );
    assert!(matches!(
        python.lock_component(Limits::default()),
        Err(AdapterError::NeedsNative { .. })
    ));
    let mut native = python
        .guest_exports(&shared.passthrough, Serve::Native, Limits::default())
        .expect("instance");
    let name = unique_name("runtime-layout");
    let client = native.open(&config()).expect("open");
    let lease = native.try_acquire(&client, &name).expect("acquire");
    let token = native.token(&lease).expect("token");
    assert_eq!(
        server.raw().ok(&["GET", &format!("lock:{name}")]).text(),
        Some(token),
        "not under python-redis-lock's key"
    );
    native.release(&lease).expect("release");
}

// ---------------------------------------------------------------------------------------
// Guests and native clients on one lock.
// ---------------------------------------------------------------------------------------

/// The racy read–sleep–write the counter guest does, natively.
fn increment(file: &std::path::Path) {
    let seen: u64 = std::fs::read_to_string(file)
        .expect("read")
        .trim()
        .parse()
        .expect("a number");
    thread::sleep(Duration::from_millis(1));
    std::fs::write(file, (seen + 1).to_string()).expect("write");
}

#[test]
fn guests_and_native_clients_exclude_each_other() {
    require_redis!();
    const GUESTS: usize = 4;
    const NATIVE: usize = 4;
    const ROUNDS: u64 = 25;
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let name = unique_name("counter");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("counter");
    std::fs::write(&file, "0").expect("write");
    let started = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..GUESTS {
        let (adapter, name, dir) = (adapter.clone(), name.clone(), dir.path().to_path_buf());
        threads.push(thread::spawn(move || {
            let mut options = RunOptions::args([
                "distlock-counter",
                "count",
                &name,
                "/data/counter",
                &ROUNDS.to_string(),
                "1",
            ]);
            options.dirs.push((dir, "/data".into()));
            let report = adapter
                .run(&shared().counter, &options)
                .expect("run the guest");
            assert_eq!(
                report,
                distlock_host::component::RunReport {
                    ended: Ended::Exited(0),
                    leases_released: 0,
                    leases_not_released: Vec::new(),
                }
            );
        }));
    }
    for _ in 0..NATIVE {
        let (url, name, file) = (server.url(), name.clone(), file.clone());
        threads.push(thread::spawn(move || {
            let runtime = &shared().runtime;
            let client = runtime.block_on(Client::connect([url])).expect("connect");
            for _ in 0..ROUNDS {
                let lock = client
                    .lock(&name)
                    .ttl(Duration::from_secs(10))
                    .wait(Duration::from_secs(30));
                let guard = runtime.block_on(lock.acquire()).expect("acquire");
                increment(&file);
                runtime.block_on(guard.release()).expect("release");
            }
        }));
    }
    for t in threads {
        t.join().expect("a worker panicked");
    }
    let count: u64 = std::fs::read_to_string(&file)
        .expect("read")
        .trim()
        .parse()
        .expect("a number");
    eprintln!(
        "{} increments by {GUESTS} guests and {NATIVE} native clients in {:?}",
        count,
        started.elapsed()
    );
    assert_eq!(
        count,
        (GUESTS + NATIVE) as u64 * ROUNDS,
        "lost updates: the paths did not exclude each other"
    );
}

// ---------------------------------------------------------------------------------------
// Renewal: a guest without threads keeps its lease by calling `lease.renew` when due.
// ---------------------------------------------------------------------------------------

/// The three ways a guest's `lease.renew` is served.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// The lock component itself, over the host's `transport`.
    Component,
    /// A guest linked to the lock component.
    Linked,
    /// A guest served by the native driver.
    Native,
}

const VIAS: [Via; 3] = [Via::Component, Via::Linked, Via::Native];

impl Via {
    fn instance(self, adapter: &Adapter) -> LockInstance {
        let serve = match self {
            Via::Component => return adapter.lock_component(Limits::default()).expect("instance"),
            Via::Linked => Serve::Linked,
            Via::Native => Serve::Native,
        };
        adapter
            .guest_exports(&shared().passthrough, serve, Limits::default())
            .expect("instance")
    }
}

fn config_with_ttl(ttl: Duration) -> wit::Config {
    wit::Config {
        nodes: vec![],
        key_prefix: None,
        ttl_ms: Some(ttl.as_millis() as u64),
        fenced: false,
        request_timeout_ms: None,
        fair: None,
        no_scripts: None,
    }
}

/// Lock commands the server ran (`SET` for an acquire, a script for an extend).
fn lock_commands(server: &RedisServer) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    ["set", "evalsha", "eval"]
        .iter()
        .map(|c| support::command_calls(&stats, c))
        .sum()
}

/// A guest that calls `renew` when it says keeps its lease through three TTLs; a call that
/// is not due sends nothing; a lock reset by an operator is reported `not-held` at the next
/// renewal, and the lease stays lost.
#[test]
fn a_renewing_guest_keeps_its_lease_past_the_ttl() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let ttl = Duration::from_millis(600);
    for via in VIAS {
        let mut instance = via.instance(&adapter);

        // Just acquired: nothing is due, nothing is sent. With a 60 s TTL, so that a slow
        // machine between the acquire and the call cannot make the first renewal due.
        let long_ttl = Duration::from_secs(60);
        let patient = instance.open(&config_with_ttl(long_ttl)).expect("open");
        let quiet = instance
            .try_acquire(&patient, &unique_name("renew-not-due"))
            .expect("acquire");
        let sent = lock_commands(&server);
        let due = instance.renew(&quiet).expect("renew");
        assert!(
            due > Duration::ZERO && due <= long_ttl / 3,
            "{via:?}: first renewal due in {due:?}"
        );
        assert_eq!(
            lock_commands(&server),
            sent,
            "{via:?}: a call not due sent something"
        );
        instance.release(&quiet).expect("release");

        let client = instance.open(&config_with_ttl(ttl)).expect("open");
        let name = unique_name("renew");
        let lease = instance.try_acquire(&client, &name).expect("acquire");
        let token = instance.token(&lease).expect("token");
        let due = instance.renew(&lease).expect("renew");
        assert!(due <= ttl / 3, "{via:?}: first renewal due in {due:?}");

        // A manual extend to a longer TTL does not move the schedule: the next renewal
        // brings the lease back to the client's TTL, and the validity says so (a validity
        // kept at the longer extend's would outlive the key).
        let long = instance.extend(&lease, 10 * ttl).expect("extend");
        assert!(long > 5 * ttl, "{via:?}: {long:?}");
        thread::sleep(due);
        instance.renew(&lease).expect("renew");
        let validity = instance.validity(&lease).expect("validity");
        let pttl = server
            .raw()
            .ok(&["PTTL", &lock_key(&name)])
            .int()
            .unwrap_or(0);
        assert!(
            validity <= ttl && pttl <= ttl.as_millis() as i64,
            "{via:?}: after the renewal the validity is {validity:?}, the key lives {pttl} ms"
        );
        let sent = lock_commands(&server);

        // The guest's loop: work, then renew when due.
        let started = Instant::now();
        while started.elapsed() < 3 * ttl {
            let due = instance
                .renew(&lease)
                .unwrap_or_else(|e| panic!("{via:?}: a renewing guest lost its lease: {e}"));
            assert!(due <= ttl / 3, "{via:?}: next renewal due in {due:?}");
            assert!(
                instance.validity(&lease).expect("validity") > Duration::ZERO,
                "{via:?}"
            );
            thread::sleep(due);
        }
        let extends = lock_commands(&server) - sent;
        assert!(extends >= 6, "{via:?}: {extends} extends in three TTLs");
        assert_eq!(
            server.raw().ok(&["GET", &lock_key(&name)]).text(),
            Some(token.clone()),
            "{via:?}: the lease outlived its TTL three times over"
        );
        let mut other = Via::Component.instance(&adapter);
        let other_client = other.open(&config_with_ttl(ttl)).expect("open");
        assert!(
            matches!(
                other.try_acquire(&other_client, &name),
                Err(CallError::Lock(wit::Error::NotAcquired(_)))
            ),
            "{via:?}: another client took a renewed lock"
        );

        // An operator resets the lock: the next renewal finds it gone, within a period.
        server.raw().ok(&["DEL", &lock_key(&name)]);
        let reset = Instant::now();
        let lost = loop {
            match instance.renew(&lease) {
                Ok(due) => thread::sleep(due),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(lost.lock_error(), Some(wit::Error::NotHeld)),
            "{via:?}: {lost}"
        );
        assert!(
            reset.elapsed() < ttl,
            "{via:?}: noticed after {:?}",
            reset.elapsed()
        );
        assert_eq!(instance.validity(&lease).expect("validity"), Duration::ZERO);
        assert!(
            matches!(
                instance.renew(&lease).map_err(|e| e.lock_error().cloned()),
                Err(Some(wit::Error::NotHeld))
            ),
            "{via:?}: a lost lease stays lost"
        );
        instance.drop_lease(lease).expect("drop");
        instance.drop_client(client).expect("drop");
    }
}

/// With its only node frozen (SIGSTOP), a guest renewing on schedule is told `expired` no
/// earlier than its validity ends (the schedule retries while it lasts) and before the key
/// could expire on the server, so before anyone else could take the lock; no `renew` before
/// that says the lease is held after the key could have expired.
///
/// Two request timeouts: the default (1 s: extends fail and are retried within the
/// validity), and one longer than the validity left at the first renewal (5 s of a 6 s TTL:
/// the blocked extend is cut short at the validity's end, or `expired` would come a second
/// after the key could expire).
fn frozen_node_renewal_reports_lost_within_the_validity(via: Via) {
    thread::scope(|s| {
        for request_timeout in [None, Some(Duration::from_secs(5))] {
            s.spawn(move || frozen_node_renewal(via, request_timeout));
        }
    });
}

fn frozen_node_renewal(via: Via, request_timeout: Option<Duration>) {
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    // The drift allowance (1% + 2 ms) is the gap between the validity's end and the key's
    // expiry: the margin by which "lost" must come, whatever the machine's load.
    let ttl = Duration::from_secs(6);
    let mut instance = via.instance(&adapter);
    let config = wit::Config {
        request_timeout_ms: request_timeout.map(|t| t.as_millis() as u64),
        fair: None,
        no_scripts: None,
        ..config_with_ttl(ttl)
    };
    let client = instance.open(&config).expect("open");
    let name = unique_name("frozen-renew");
    let before_acquire = Instant::now();
    let lease = instance.try_acquire(&client, &name).expect("acquire");
    // The key cannot expire before this: it was set after the acquire started.
    let key_expiry = before_acquire + ttl;
    let measured = Instant::now();
    let validity = instance.validity(&lease).expect("validity");
    server.pause();

    let what = format!("{via:?}, request timeout {request_timeout:?}");
    let mut calls = 0;
    let (lost, lost_at) = loop {
        match instance.renew(&lease) {
            Ok(due) => {
                let at = Instant::now();
                assert!(
                    at < key_expiry,
                    "{what}: renew said the lease was held {:?} after the key could expire",
                    at - key_expiry
                );
                calls += 1;
                thread::sleep(due);
            }
            Err(e) => break (e, Instant::now()),
        }
    };
    server.resume();
    assert!(
        matches!(lost.lock_error(), Some(wit::Error::Expired)),
        "{what}: {lost}"
    );
    assert!(
        lost_at < key_expiry,
        "{what}: lost reported {:?} after the key could expire",
        lost_at - key_expiry
    );
    assert!(
        lost_at + Duration::from_millis(5) >= measured + validity,
        "{what}: lost reported {:?} before the validity ended",
        (measured + validity) - lost_at
    );
    if request_timeout.is_none() {
        // The call that found the first renewal not due yet, the first failed extend, and
        // at least one retry.
        assert!(calls >= 3, "{what}: only {calls} calls were needed");
    }
    assert_eq!(instance.validity(&lease).expect("validity"), Duration::ZERO);
    assert!(
        matches!(
            instance.renew(&lease).map_err(|e| e.lock_error().cloned()),
            Err(Some(wit::Error::Expired))
        ),
        "{what}: a lost lease stays lost"
    );
    instance.drop_lease(lease).expect("drop");
}

#[test]
fn frozen_node_renewal_reports_lost_within_the_validity_lock_component() {
    require_redis!();
    frozen_node_renewal_reports_lost_within_the_validity(Via::Component);
}

#[test]
fn frozen_node_renewal_reports_lost_within_the_validity_linked_guest() {
    require_redis!();
    frozen_node_renewal_reports_lost_within_the_validity(Via::Linked);
}

#[test]
fn frozen_node_renewal_reports_lost_within_the_validity_native_guest() {
    require_redis!();
    frozen_node_renewal_reports_lost_within_the_validity(Via::Native);
}

// ---------------------------------------------------------------------------------------
// Guests that fail while holding a lease.
// ---------------------------------------------------------------------------------------

/// Runs the counter guest in `mode` on `name` under `limits`; returns the report and how long
/// the run took.
fn run_failing(
    adapter: &Adapter,
    mode: &str,
    name: &str,
    serve: Serve,
    limits: Limits,
) -> distlock_host::component::RunReport {
    let mut options = RunOptions::args(["distlock-counter", mode, name]);
    options.serve = serve;
    options.limits = limits;
    // The trap's panic message is expected; keep it out of the test output.
    options.inherit_stdio = false;
    adapter
        .run(&shared().counter, &options)
        .expect("run the guest")
}

/// Waits (bounded) until `command` answers the integer `want` on `server`.
fn answers(server: &RedisServer, command: &[&str], want: i64, what: &str) {
    support::wait_for(what, Duration::from_secs(30), || {
        (server.raw().ok(command).int() == Some(want)).then_some(())
    });
}

/// The lock is free at once (not after its 10 s TTL), and the adapter still serves guests.
fn assert_released_and_serving(adapter: &Adapter, server: &RedisServer, name: &str) {
    assert_eq!(
        server.raw().ok(&["EXISTS", &lock_key(name)]).int(),
        Some(0),
        "the lease was not released"
    );
    let mut instance = adapter
        .lock_component(Limits::default())
        .expect("a new instance");
    let client = instance
        .open(&wit::Config {
            nodes: vec![],
            key_prefix: None,
            ttl_ms: None,
            fenced: false,
            request_timeout_ms: None,
            fair: None,
            no_scripts: None,
        })
        .expect("open");
    let lease = instance
        .try_acquire(&client, name)
        .expect("the lock is free and the host still serves");
    instance.drop_lease(lease).expect("drop");
}

#[test]
fn a_guest_that_traps_while_holding_a_lease_has_it_released() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    for serve in [Serve::Linked, Serve::Native] {
        let name = unique_name("trap");
        let report = run_failing(&adapter, "trap", &name, serve, Limits::default());
        assert!(
            matches!(report.ended, Ended::Trapped(_)),
            "{serve:?}: {:?}",
            report.ended
        );
        assert_eq!(report.leases_released, 1, "{serve:?}");
        assert_released_and_serving(&adapter, &server, &name);
    }
}

#[test]
fn a_guest_that_traps_while_holding_a_permit_has_it_released() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    for serve in [Serve::Linked, Serve::Native] {
        let name = unique_name("trap-permit");
        let report = run_failing(&adapter, "trap-permit", &name, serve, Limits::default());
        assert!(
            matches!(report.ended, Ended::Trapped(_)),
            "{serve:?}: {:?}",
            report.ended
        );
        assert_eq!(report.leases_released, 1, "{serve:?}");
        // The permit (its key and its place among the holders) is gone at once, not at its
        // TTL: the host released it as a permit, not as a lock.
        assert_eq!(
            server.raw().ok(&["ZCARD", &lock_key(&name)]).int(),
            Some(0),
            "{serve:?}: the permit was not released"
        );
        let keys = server
            .raw()
            .ok(&["KEYS", &format!("{}:permit:*", lock_key(&name))]);
        assert!(
            matches!(&keys, support::Reply::Array(Some(left)) if left.is_empty()),
            "{serve:?}: permit keys left: {keys:?}"
        );
    }
}

#[test]
fn a_guest_that_traps_while_holding_a_set_of_names_has_it_released() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    for serve in [Serve::Linked, Serve::Native] {
        let name = unique_name("trap-many");
        let report = run_failing(&adapter, "trap-many", &name, serve, Limits::default());
        assert!(
            matches!(report.ended, Ended::Trapped(_)),
            "{serve:?}: {:?}",
            report.ended
        );
        assert_eq!(report.leases_released, 1, "{serve:?}");
        // Every name is free at once, not at its TTL: the host released the set as a set.
        for each in [format!("{name}:a"), format!("{name}:b")] {
            assert_eq!(
                server.raw().ok(&["EXISTS", &lock_key(&each)]).int(),
                Some(0),
                "{serve:?}: {each} was not released"
            );
        }
    }
}

#[test]
fn a_guest_that_traps_while_holding_a_fair_lock_has_it_handed_to_the_first_waiter() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    for serve in [Serve::Linked, Serve::Native] {
        let name = unique_name("trap-fair");
        let dir = tempfile::tempdir().expect("temp dir");
        let guest = {
            let (adapter, name, dir) = (adapter.clone(), name.clone(), dir.path().to_path_buf());
            thread::spawn(move || {
                let mut options =
                    RunOptions::args(["distlock-counter", "trap-fair", &name, "/data/go"]);
                options.dirs.push((dir, "/data".into()));
                options.serve = serve;
                options.inherit_stdio = false;
                adapter
                    .run(&shared().counter, &options)
                    .expect("run the guest")
            })
        };
        answers(
            &server,
            &["EXISTS", &lock_key(&name)],
            1,
            "the guest to take the lock",
        );
        let waiter = {
            let (url, name) = (server.url(), name.clone());
            thread::spawn(move || {
                let runtime = &shared().runtime;
                let client = runtime.block_on(Client::connect([url])).expect("connect");
                let lock = client
                    .lock(&name)
                    .fair(true)
                    .ttl(Duration::from_secs(10))
                    .wait(Duration::from_secs(30));
                runtime
                    .block_on(lock.acquire())
                    .expect("the waiter acquires")
            })
        };
        let queue = format!("{}:queue", lock_key(&name));
        answers(&server, &["ZCARD", &queue], 1, "the waiter to queue");
        std::fs::write(dir.path().join("go"), "").expect("signal the guest");
        let report = guest.join().expect("the guest thread");
        assert!(
            matches!(report.ended, Ended::Trapped(_)),
            "{serve:?}: {:?}",
            report.ended
        );
        assert_eq!(report.leases_released, 1, "{serve:?}");
        // The host's release was the fair one: it set the key to the queued waiter's token
        // before it returned. A plain release would have deleted it and left the waiter
        // blocked on its own wake-up list until its next cycle.
        let handed = server.raw().ok(&["GET", &lock_key(&name)]);
        let guard = waiter.join().expect("the waiter thread");
        assert_eq!(
            handed.text().as_deref(),
            Some(guard.token()),
            "{serve:?}: the lock was not handed to the queued waiter"
        );
        shared()
            .runtime
            .block_on(guard.release())
            .expect("the waiter releases");
    }
}

#[test]
fn a_runaway_guest_is_stopped_and_its_lease_released() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let limit = Duration::from_secs(1);
    for serve in [Serve::Linked, Serve::Native] {
        let name = unique_name("spin");
        let started = Instant::now();
        let report = run_failing(
            &adapter,
            "spin",
            &name,
            serve,
            Limits {
                time: Some(limit),
                ..Limits::default()
            },
        );
        assert_eq!(report.ended, Ended::TimeLimit(limit), "{serve:?}");
        assert!(
            started.elapsed() < limit + Duration::from_secs(5),
            "stopped after {:?}",
            started.elapsed()
        );
        assert_eq!(report.leases_released, 1, "{serve:?}");
        assert!(
            report.ended.to_string().contains("time limit"),
            "{}",
            report.ended
        );
        assert_released_and_serving(&adapter, &server, &name);
    }
}

#[test]
fn a_guest_that_eats_memory_is_stopped_and_its_lease_released() {
    require_redis!();
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let limit = 32 << 20;
    for serve in [Serve::Linked, Serve::Native] {
        let name = unique_name("hog");
        let report = run_failing(
            &adapter,
            "hog",
            &name,
            serve,
            Limits {
                memory: limit,
                ..Limits::default()
            },
        );
        assert_eq!(report.ended, Ended::MemoryLimit(limit), "{serve:?}");
        assert_eq!(report.leases_released, 1, "{serve:?}");
        assert!(
            report.ended.to_string().contains("32 MiB"),
            "{}",
            report.ended
        );
        assert_released_and_serving(&adapter, &server, &name);
    }
}

// ---------------------------------------------------------------------------------------
// What a component path costs.
// ---------------------------------------------------------------------------------------

/// Mean time of one uncontended try-acquire + release (+ drop) on each path, same server,
/// same run, interleaved so that noise hits all alike. Printed; asserted only loosely.
#[test]
fn per_acquire_overhead() {
    require_redis!();
    const ROUNDS: u32 = 300;
    let server = RedisServer::start();
    let adapter = adapter_for(&server);
    let runtime = &shared().runtime;
    let name = unique_name("overhead");
    let native = runtime
        .block_on(Client::connect([server.url()]))
        .expect("connect");
    let config = wit::Config {
        nodes: vec![],
        key_prefix: None,
        ttl_ms: None,
        fenced: false,
        request_timeout_ms: None,
        fair: None,
        no_scripts: None,
    };
    let mut provider = adapter.lock_component(Limits::default()).expect("instance");
    let provider_client = provider.open(&config).expect("open");
    let mut linked = adapter
        .guest_exports(&shared().passthrough, Serve::Linked, Limits::default())
        .expect("instance");
    let linked_client = linked.open(&config).expect("open");

    let native_round = || {
        let guard = runtime
            .block_on(native.lock(&name).try_acquire())
            .expect("acquire");
        runtime.block_on(guard.release()).expect("release");
    };
    let component_round = |instance: &mut LockInstance, client: &ClientHandle| {
        let lease = instance.try_acquire(client, &name).expect("acquire");
        instance.release(&lease).expect("release");
        instance.drop_lease(lease).expect("drop");
    };
    // Warm up connections and caches.
    for _ in 0..20 {
        native_round();
        component_round(&mut provider, &provider_client);
        component_round(&mut linked, &linked_client);
    }
    let mut totals = [Duration::ZERO; 3];
    for _ in 0..ROUNDS {
        let t = Instant::now();
        native_round();
        totals[0] += t.elapsed();
        let t = Instant::now();
        component_round(&mut provider, &provider_client);
        totals[1] += t.elapsed();
        let t = Instant::now();
        component_round(&mut linked, &linked_client);
        totals[2] += t.elapsed();
    }
    let [native_us, provider_us, linked_us] =
        totals.map(|t| t.as_secs_f64() * 1e6 / f64::from(ROUNDS));
    eprintln!(
        "per try-acquire + release, {ROUNDS} rounds: native {native_us:.1} µs; lock component {provider_us:.1} µs \
         ({:+.1} µs); guest linked to it {linked_us:.1} µs ({:+.1} µs)",
        provider_us - native_us,
        linked_us - native_us
    );
    // One call with no I/O, a string copied out: `lease.token`. Into the lock component
    // (one crossing), and into the guest (guest → host → lock component's record: two).
    const CALLS: u32 = 2000;
    let lease = provider
        .try_acquire(&provider_client, &name)
        .expect("acquire");
    let t = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(provider.token(&lease).expect("token"));
    }
    let direct_call = t.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS);
    provider.drop_lease(lease).expect("drop");
    let lease = linked.try_acquire(&linked_client, &name).expect("acquire");
    let t = Instant::now();
    for _ in 0..CALLS {
        std::hint::black_box(linked.token(&lease).expect("token"));
    }
    let linked_call = t.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS);
    linked.drop_lease(lease).expect("drop");
    eprintln!(
        "lease.token, {CALLS} calls: into the lock component {direct_call:.2} µs; into a guest that asks the \
         host {linked_call:.2} µs"
    );
    // Loose: a component path should not cost several times the round trips themselves.
    assert!(
        provider_us < native_us * 5.0 + 500.0,
        "lock component: {provider_us:.1} µs vs native {native_us:.1} µs"
    );
}

/// `config.fair` reaches the lock component's core: a waiter queues in fair mode's queue
/// (which a non-fair waiter never writes) and gets the lock from the holder's release; over
/// three nodes `open` is refused with the kind `fair-unsupported`.
#[test]
fn the_lock_component_takes_fair_mode_from_its_config() {
    require_redis!();
    let servers = [
        RedisServer::start(),
        RedisServer::start(),
        RedisServer::start(),
    ];
    let adapter = adapter_over(&servers);
    let fair = |nodes: Vec<String>| wit::Config {
        nodes,
        key_prefix: None,
        ttl_ms: None,
        fenced: false,
        request_timeout_ms: None,
        fair: Some(true),
        no_scripts: None,
    };
    let mut redlock = adapter.lock_component(Limits::default()).expect("instance");
    match redlock.open(&fair(vec![])) {
        Err(CallError::Lock(wit::Error::Invalid(e))) => {
            assert_eq!(e.kind, wit::ConfigErrorKind::FairUnsupported, "{e:?}");
        }
        other => panic!("expected fair-unsupported, got {:?}", other.map(|_| ())),
    }

    let one = vec![servers[0].url()];
    let name = unique_name("component-fair");
    let mut holder = adapter.lock_component(Limits::default()).expect("instance");
    let holder_client = holder.open(&fair(one.clone())).expect("open");
    let lease = holder
        .try_acquire(&holder_client, &name)
        .expect("free lock");
    let waiter = {
        let (adapter, one, name) = (adapter.clone(), one.clone(), name.clone());
        thread::spawn(move || {
            let mut waiter = adapter.lock_component(Limits::default()).expect("instance");
            let client = waiter.open(&fair(one)).expect("open");
            let lease = waiter
                .acquire(&client, &name, Duration::from_secs(20))
                .expect("the waiter is handed the lock");
            let token = waiter.token(&lease).expect("token");
            waiter.release(&lease).expect("release");
            waiter.drop_lease(lease).expect("drop");
            token
        })
    };
    let queue = format!("{}:queue", lock_key(&name));
    support::wait_for("the waiter to queue", Duration::from_secs(10), || {
        (servers[0].raw().ok(&["ZCARD", &queue]).int() == Some(1)).then_some(())
    });
    let holder_token = holder.token(&lease).expect("token");
    holder.release(&lease).expect("release");
    holder.drop_lease(lease).expect("drop");
    let waiter_token = waiter.join().expect("the waiter thread");
    assert_ne!(waiter_token, holder_token);
    assert_eq!(
        servers[0].raw().ok(&["EXISTS", &lock_key(&name)]).int(),
        Some(0)
    );
}

/// `config.no-scripts` reaches the lock component's core: with fencing it is refused
/// (`needs-scripts`); on Redis 7.0, which lacks the native commands, the first lock call is
/// refused naming the missing one (`missing-native-command`); on Valkey 9.1, as a user whose
/// ACL forbids every script, a lock is taken, refused to another and released with no script.
#[test]
fn the_lock_component_takes_no_scripts_from_its_config() {
    require_redis!();
    support::require_valkey!();
    let servers = [RedisServer::start(), RedisServer::start_valkey_with(&[])];
    let (redis, valkey) = (&servers[0], &servers[1]);
    valkey.raw().ok(&[
        "ACL",
        "SETUSER",
        "app",
        "on",
        ">pw",
        "~*",
        "+@all",
        "-@scripting",
    ]);
    let adapter = adapter_over(&servers);
    let scriptless = |url: String, fenced: bool| wit::Config {
        nodes: vec![url],
        key_prefix: None,
        ttl_ms: None,
        fenced,
        request_timeout_ms: None,
        fair: None,
        no_scripts: Some(true),
    };
    let invalid_kind = |result: Result<_, CallError>| match result {
        Err(CallError::Lock(wit::Error::Invalid(e))) => e.kind,
        Err(other) => panic!("expected an invalid error, got {other:?}"),
        Ok(_) => panic!("expected an invalid error, got a success"),
    };

    let mut instance = adapter.lock_component(Limits::default()).expect("instance");
    assert_eq!(
        invalid_kind(instance.open(&scriptless(redis.url(), true)).map(|_| ())),
        wit::ConfigErrorKind::NeedsScripts
    );
    let on_redis = instance
        .open(&scriptless(redis.url(), false))
        .expect("open");
    assert_eq!(
        invalid_kind(
            instance
                .try_acquire(&on_redis, &unique_name("component-no-scripts"))
                .map(|_| ())
        ),
        wit::ConfigErrorKind::MissingNativeCommand
    );

    let url = format!("redis://app:pw@127.0.0.1:{}", valkey.port());
    let name = unique_name("component-no-scripts");
    let client = instance
        .open(&scriptless(url.clone(), false))
        .expect("open");
    let lease = instance.try_acquire(&client, &name).expect("SET NX PX");
    let mut other = adapter.lock_component(Limits::default()).expect("instance");
    let other_client = other.open(&scriptless(url, false)).expect("open");
    match other.try_acquire(&other_client, &name) {
        Err(CallError::Lock(wit::Error::NotAcquired(_))) => {}
        other => panic!("expected not-acquired, got {:?}", other.map(|_| ())),
    }
    instance.release(&lease).expect("DELIFEQ");
    instance.drop_lease(lease).expect("drop");
    let stats = valkey.raw().ok(&["INFO", "commandstats"]).text().unwrap();
    assert_eq!(support::command_calls(&stats, "delifeq"), 1, "{stats}");
    assert_eq!(
        support::command_calls(&stats, "eval") + support::command_calls(&stats, "evalsha"),
        0,
        "{stats}"
    );
}
