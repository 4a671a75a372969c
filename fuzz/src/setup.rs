//! Choosing a lock, its options and its nodes from a few fuzzed bytes.
//!
//! Every choice maps onto a small table of values that matter (a 5 ms TTL that expires
//! mid-operation, a 1 ms request timeout, a server that has `DELEX`, …), so the fuzzer
//! spends its time on replies and events rather than on option values.

use arbitrary::Arbitrary;
use distlock_core::{
    Drift, Duration, Flavor, Jitter, KeyLayout, Lock, LockOptions, Protocol, RetryPolicy, Scripts,
    ServerInfo, Token, Version,
};

/// Which operation a machine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Acquire` (with its rollbacks, waits and fence raises).
    Acquire,
    /// `Release`.
    Release,
    /// `Extend`.
    Extend,
}

/// The fuzzed choices behind a [`Setup`]: one byte each, so an input's first bytes read as
/// a configuration and hand-made seeds stay easy to write.
#[derive(Arbitrary, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetupChoice {
    /// Operation: `kind % 8` indexes [`KINDS`].
    pub kind: u8,
    /// Node count: indexes [`NODES`].
    pub nodes: u8,
    /// Bit 0 fenced, bit 1 reentrant, bit 2 no wake-up signal, bit 3 a 5 ms signal,
    /// bit 4 no clock-drift allowance, bit 5 fair mode (one node only: on more it is off),
    /// bit 6 no scripts (`Scripts::Never`: fencing, re-entry and fair mode off, and a node
    /// known to lack a native command is drawn as one not known yet, whose reply tells).
    pub flags: u8,
    /// TTL: indexes [`TTLS_MS`].
    pub ttl: u8,
    /// Request timeout: indexes [`TIMEOUTS_MS`].
    pub timeout: u8,
    /// How long an acquire waits: indexes [`WAITS_MS`].
    pub wait: u8,
    /// Retry policy: bits 0-1 base, 2-3 cap factor, 4-5 jitter, 6-7 attempt limit.
    pub retry: u8,
    /// One byte per node: bit 0 RESP3, bits 1-2 flavour, bits 3-5 version.
    pub servers: [u8; 5],
    /// Token entropy and jitter seed.
    pub seed: u8,
}

/// Operations by `SetupChoice::kind % 8`; `None` is the handshake (for the targets that
/// fuzz it).
pub const KINDS: [Option<Kind>; 8] = [
    Some(Kind::Acquire),
    Some(Kind::Acquire),
    Some(Kind::Release),
    Some(Kind::Extend),
    None,
    Some(Kind::Acquire),
    Some(Kind::Release),
    Some(Kind::Extend),
];
/// Node counts; Redlock over 3 comes up most.
pub const NODES: [usize; 8] = [1, 3, 1, 3, 5, 2, 4, 3];
/// TTLs in ms: 5 ms leaves 2 ms of validity, so leases expire mid-operation.
pub const TTLS_MS: [u64; 8] = [30_000, 10, 100, 1_000, 5, 250, 60_000, 1 << 44];
/// Request timeouts in ms.
pub const TIMEOUTS_MS: [u64; 8] = [1_000, 1, 50, 500, 5_000, 10, 100, 30_000];
/// Acquire waits in ms (0: a single try).
pub const WAITS_MS: [u64; 8] = [0, 0, 100, 1_000, 5_000, 20, 10_000, 1];
/// Server versions.
pub const VERSIONS: [Version; 8] = [
    Version::new(0, 0, 0),
    Version::new(6, 0, 0),
    Version::new(7, 0, 15),
    Version::new(8, 1, 0),
    Version::new(8, 4, 0),
    Version::new(9, 0, 0),
    Version::new(5, 0, 0),
    Version::new(7, 2, 4),
];

/// One operation to fuzz: the lock, the token, the nodes.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Which machine.
    pub kind: Kind,
    /// How many nodes (1..=5).
    pub nodes: usize,
    /// The key prefix, as raw bytes (the checks rebuild keys from it).
    pub prefix: Vec<u8>,
    /// The lock name, as raw bytes.
    pub name: Vec<u8>,
    /// The lock.
    pub lock: Lock,
    /// The token.
    pub token: Token,
    /// One per node.
    pub servers: Vec<ServerInfo>,
    /// An acquire's wait.
    pub wait: Duration,
    /// Jitter seed.
    pub seed: u64,
}

impl SetupChoice {
    /// The kind, or `None` for the handshake.
    pub fn kind(&self) -> Option<Kind> {
        KINDS[usize::from(self.kind % 8)]
    }

    /// The lock options these choices describe (always valid).
    pub fn options(&self) -> LockOptions {
        let base = [10, 1, 5, 100][usize::from(self.retry & 3)];
        let cap = base * [50, 1, 4, 1000][usize::from((self.retry >> 2) & 3)];
        LockOptions {
            ttl: Duration::from_millis(TTLS_MS[usize::from(self.ttl % 8)]),
            fenced: self.flags & 1 != 0,
            reentrant: self.flags & 2 != 0,
            wake_signal: match self.flags & 0b1100 {
                0 => Some(Duration::from_secs(1)),
                0b1000 | 0b1100 => Some(Duration::from_millis(5)),
                _ => None,
            },
            retry: RetryPolicy {
                base: Duration::from_millis(base),
                cap: Duration::from_millis(cap),
                jitter: [
                    Jitter::Full,
                    Jitter::None,
                    Jitter::Decorrelated,
                    Jitter::Full,
                ][usize::from((self.retry >> 4) & 3)],
                max_attempts: [None, Some(1), Some(3), None][usize::from(self.retry >> 6)],
            },
            request_timeout: Duration::from_millis(TIMEOUTS_MS[usize::from(self.timeout % 8)]),
            drift: if self.flags & 16 != 0 {
                Drift {
                    per_million: 0,
                    fixed: Duration::ZERO,
                }
            } else {
                Drift::default()
            },
            fair: self.flags & 32 != 0,
            scripts: Scripts::Auto,
        }
    }

    /// Node `i`'s server.
    pub fn server(&self, i: usize) -> ServerInfo {
        let b = self.servers[i % 5];
        ServerInfo {
            protocol: if b & 1 != 0 {
                Protocol::Resp3
            } else {
                Protocol::Resp2
            },
            flavor: [
                Flavor::Unknown,
                Flavor::Redis,
                Flavor::Valkey,
                Flavor::Unknown,
            ][usize::from((b >> 1) & 3)],
            version: VERSIONS[usize::from((b >> 3) & 7)],
        }
    }

    /// The setup for lock `job` under the default layout; `None` for the handshake.
    pub fn setup(&self) -> Option<Setup> {
        self.kind().map(|kind| self.setup_as(kind))
    }

    /// The setup with the handshake read as an acquire.
    pub fn machine_setup(&self) -> Setup {
        self.setup_as(self.kind().unwrap_or(Kind::Acquire))
    }

    fn setup_as(&self, kind: Kind) -> Setup {
        let nodes = NODES[usize::from(self.nodes % 8)];
        let name = b"job".to_vec();
        let mut options = self.options();
        // Fair mode is one node's (Redlock waiters use the shared wake-up signal).
        options.fair &= nodes == 1;
        let never = self.flags & 64 != 0;
        if never {
            options.scripts = Scripts::Never;
            options.fenced = false;
            options.reentrant = false;
            options.fair = false;
        }
        let lock = Lock::new(KeyLayout::default(), &name, options)
            .expect("the option tables only hold valid options");
        Setup {
            kind,
            nodes,
            prefix: distlock_core::DEFAULT_PREFIX.to_vec(),
            name,
            lock,
            token: Token::from_entropy([self.seed; 16]),
            servers: (0..nodes)
                .map(|i| {
                    let server = self.server(i);
                    if never && server.missing_for_scriptless().is_some() {
                        ServerInfo {
                            protocol: server.protocol,
                            ..ServerInfo::default()
                        }
                    } else {
                        server
                    }
                })
                .collect(),
            wait: Duration::from_millis(WAITS_MS[usize::from(self.wait % 8)]),
            seed: u64::from(self.seed),
        }
    }
}
