//! `machines.session`: one client's node set — the core's [`distlock_core::Session`] (which
//! node to connect and when), what each node's last handshake found, the lock defaults — and
//! the factory of every machine over those nodes.
//!
//! Invariant: a machine is built from the session's settings and the servers its handshakes
//! found, never from numbers of this crate's own. A call refused for its input changes
//! nothing.

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use distlock_core::{
    ConnectOutcome, Credentials, Duration, FinishCompute, GetOrLock, HandshakeOptions, Inspect,
    Instant, KeyLayout, Lock, LockOptions, MAX_NODES, Protocol, Reset, ServerInfo, SessionOptions,
    Token, quorum, wit::Shape,
};

use crate::api;
use crate::convert::config_error;
use crate::handshake::Handshake;
use crate::input::{self, node, node_index};
use crate::machine::Machine;
use crate::operation::{Operation, STEP_BUFFER};
use crate::renewal::Renewal;
use crate::slots::Slots;
use crate::{flat, packed, url};

/// One node: where it is and how to log in.
pub(crate) struct Node {
    /// The URL with any password hidden, for messages.
    pub(crate) shown: String,
    pub(crate) endpoint: api::Endpoint,
    pub(crate) handshake: HandshakeOptions,
}

/// What a session's machines share.
pub(crate) struct Shared {
    pub(crate) policy: distlock_core::Session<MAX_NODES>,
    pub(crate) nodes: Vec<Node>,
    /// What each node's last completed handshake found: what machines are built for.
    /// `None`: no handshake of the node has completed, so its protocol is not known.
    pub(crate) known: Vec<Option<ServerInfo>>,
    /// Per node, how many of its handshakes have completed: an operation that lost the node
    /// takes a new connection only after one more has (see [`crate::operation`]).
    pub(crate) completed: Vec<u64>,
    pub(crate) layout: KeyLayout,
    pub(crate) options: LockOptions,
    /// The buffer every operation's step writes its requests into, one per session
    /// ([`crate::operation`]): reused, so a step allocates none.
    pub(crate) step_buffer: Vec<u8>,
}

impl Shared {
    /// `name` under the session's layout and defaults.
    pub(crate) fn lock(&self, name: &str) -> Result<Lock, api::Error> {
        self.lock_shaped(name, Shape::Lock)
    }

    /// `name` in `shape` (a mutex, a semaphore's permit, a read-write lock's side) under the
    /// session's layout and defaults: the core's constructor for that shape decides.
    pub(crate) fn lock_shaped(&self, name: &str, shape: Shape) -> Result<Lock, api::Error> {
        shape
            .lock(self.layout.clone(), name.as_bytes(), self.options)
            .map_err(config_error)
    }

    /// The multi-name lock of every name in `names` under the session's layout and
    /// defaults: the core sorts, bounds and refuses the set.
    pub(crate) fn lock_many(&self, names: &[String]) -> Result<Lock, api::Error> {
        distlock_core::wit::multi_lock(self.layout.clone(), names, self.options)
            .map_err(config_error)
    }

    /// Runs `build` on the servers a machine is built for, in node order (a node not known
    /// yet as the default: the machine never talks to it, see [`Shared::framed`]) — listed
    /// on the stack, as a session has at most [`MAX_NODES`].
    pub(crate) fn with_servers<R>(&self, build: impl FnOnce(&[ServerInfo]) -> R) -> R {
        let mut servers = [ServerInfo::default(); MAX_NODES];
        for (server, known) in servers.iter_mut().zip(&self.known) {
            *server = known.unwrap_or_default();
        }
        build(servers.get(..self.known.len()).unwrap_or(&servers))
    }

    /// Per node, the protocol a machine built now frames its requests in; `None` where no
    /// handshake has completed: such a machine leaves the node out.
    pub(crate) fn framed(&self) -> impl Iterator<Item = Option<Protocol>> + '_ {
        self.known.iter().map(|k| k.map(|k| k.protocol))
    }

    /// Refuses to build a machine while fewer than a majority of the nodes have completed
    /// a handshake: it could not reach a quorum of nodes whose protocol is known.
    fn check_known(&self) -> Result<(), api::Error> {
        let nodes = self.known.len();
        let known = self.known.iter().filter(|k| k.is_some()).count();
        let needed = quorum(nodes);
        if known >= needed {
            return Ok(());
        }
        Err(api::Error::Unavailable(format!(
            "not connected yet: {known} of {nodes} Redis nodes have completed a handshake and \
             a quorum needs {needed} (connect first, and wait for connect-outcome)"
        )))
    }
}

/// `machines.session`.
pub(crate) struct Session {
    shared: Rc<RefCell<Shared>>,
    /// The session-level flat calls' names and operations in flight.
    slots: RefCell<Slots>,
}

impl Session {
    /// Checks `options` and parses every URL; opens nothing.
    pub(crate) fn open(options: api::Options, entropy: &[u8]) -> Result<Session, api::Error> {
        let seed = input::seed(entropy)?;
        let lock_options = distlock_core::wit::LockSettings {
            fenced: options.fenced,
            fair: options.fair,
            no_scripts: options.no_scripts,
            ttl_ms: options.ttl_ms.map(u64::from),
            request_timeout_ms: options.request_timeout_ms.map(u64::from),
        }
        .options()
        .map_err(config_error)?;
        let layout = layout(options.layout, options.key_prefix.as_deref())?;
        lock_options
            .check_setup(&layout, options.nodes.len())
            .map_err(config_error)?;
        let request_timeout = lock_options.request_timeout;
        let policy = distlock_core::Session::<MAX_NODES>::new(
            options.nodes.len(),
            SessionOptions::new(request_timeout),
            seed,
        )
        .map_err(config_error)?;
        let nodes = options
            .nodes
            .iter()
            .map(|text| parse_node(text, request_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Session {
            shared: Rc::new(RefCell::new(Shared {
                policy,
                known: nodes.iter().map(|_| None).collect(),
                completed: nodes.iter().map(|_| 0).collect(),
                nodes,
                layout,
                options: lock_options,
                step_buffer: vec![0; STEP_BUFFER],
            })),
            slots: RefCell::new(Slots::new()),
        })
    }

    /// Builds a machine from the shared settings and the servers the handshakes found, at
    /// `now`, after bringing the session up to `now`.
    fn build(
        &self,
        make: impl FnOnce(&Shared, &[ServerInfo]) -> Result<Machine, api::Error>,
        now: Instant,
    ) -> Result<api::Operation, api::Error> {
        self.build_operation(make, now).map(api::Operation::new)
    }

    /// [`Session::build`]'s operation, before it becomes a resource (or a slot's).
    fn build_operation(
        &self,
        make: impl FnOnce(&Shared, &[ServerInfo]) -> Result<Machine, api::Error>,
        now: Instant,
    ) -> Result<Operation, api::Error> {
        let shared = self.shared.borrow();
        // Input errors first: bad input is `invalid` whatever the connections.
        let machine = shared.with_servers(|servers| make(&shared, servers))?;
        shared.check_known()?;
        let op = Operation::new(machine, None, Rc::clone(&self.shared), shared.framed(), now);
        drop(shared);
        self.shared.borrow_mut().policy.handle_timeout(now);
        Ok(op)
    }

    /// A session-level flat constructor: the operation `make` builds for the lock of
    /// `name_id`, put in a slot and started with the connections `lent` lends it.
    fn start_in_slot(
        &self,
        name_id: u32,
        make: impl FnOnce(&Lock, &[ServerInfo], Instant) -> Result<Machine, api::Error>,
        now: api::Instant,
        lent: u32,
    ) -> Result<Vec<u8>, api::Error> {
        let at = input::instant(now);
        // The registered lock is read in place (building touches the session, not the slots).
        let slots = self.slots.borrow();
        let lock = slots.lock(name_id)?;
        let op = self.build_operation(|_, servers| make(lock, servers, at), at)?;
        drop(slots);
        let slot = self.slots.borrow_mut().insert(op)?;
        let lent = |n: usize| n < 32 && (lent >> n) & 1 == 1;
        Ok(self.in_slot(slot, |op, layout| op.start_flat(now, lent, layout)))
    }

    /// Runs one flat step on the operation in `slot` and answers it in the slotted layout,
    /// freeing the slot once the outcome is handed out; an unknown slot, or one whose
    /// operation is over, answers nothing.
    fn in_slot(
        &self,
        slot: u32,
        step: impl FnOnce(&Operation, flat::Layout) -> Vec<u8>,
    ) -> Vec<u8> {
        let slots = self.slots.borrow();
        // Over and waiting for `outcome-flat`: nothing more to step, as for an unknown slot.
        let Some(op) = slots.get(slot).filter(|op| !op.finished()) else {
            return Vec::new();
        };
        let answer = step(op, flat::Layout::Slotted(slot));
        let over = op.outcome_given();
        drop(slots);
        if over {
            let done = self.slots.borrow_mut().remove(slot);
            drop(done);
        }
        answer
    }
}

/// One URL as a node, its handshake bounded by the request timeout (the session's connect
/// deadline).
fn parse_node(text: &str, request_timeout: Duration) -> Result<Node, api::Error> {
    let parsed = url::parse(text).map_err(|why| {
        api::Error::Invalid(api::ConfigError {
            kind: api::ConfigErrorKind::BadUrl,
            message: format!(
                "bad Redis URL {}: {why} (expected redis://[user:pass@]host:port[/db] or rediss://…)",
                url::redact(text)
            ),
        })
    })?;
    let credentials = parsed.password.map(|password| Credentials {
        username: parsed.username.map(String::into_bytes),
        password: password.into_bytes(),
    });
    Ok(Node {
        shown: url::redact(text),
        endpoint: api::Endpoint {
            host: parsed.host,
            port: parsed.port,
            tls: parsed.tls,
        },
        handshake: HandshakeOptions {
            credentials,
            client_name: Some(b"distlock-engine".to_vec()),
            database: parsed.database,
            timeout: request_timeout,
            ..HandshakeOptions::default()
        },
    })
}

/// The key layout the options name; a prefix belongs to the tagged layout only.
fn layout(layout: Option<api::KeyLayout>, prefix: Option<&str>) -> Result<KeyLayout, api::Error> {
    match (layout.unwrap_or(api::KeyLayout::Tagged), prefix) {
        (api::KeyLayout::Tagged, Some(prefix)) => {
            KeyLayout::tagged(prefix.as_bytes()).map_err(config_error)
        }
        (api::KeyLayout::Tagged, None) => Ok(KeyLayout::default()),
        (_, Some(_)) => Err(api::Error::Invalid(api::ConfigError {
            kind: api::ConfigErrorKind::BadPrefix,
            message: "a key prefix applies to the tagged layout only".into(),
        })),
        (api::KeyLayout::RedisPy, None) => Ok(KeyLayout::redis_py()),
        (api::KeyLayout::PythonRedisLock, None) => Ok(KeyLayout::python_redis_lock()),
    }
}

/// A `…-started` call's answer: the operation built, and its first step's flat record (the
/// transmits it has for the connections `lent` lends it).
fn started(op: api::Operation, now: api::Instant, lent: &[u8]) -> (api::Operation, Vec<u8>) {
    let lent = |n| lent.get(n) == Some(&1);
    let first = op
        .get::<Operation>()
        .start_flat(now, lent, flat::Layout::Plain);
    (op, first)
}

/// A token the caller passed in.
fn token(text: &str) -> Result<Token, api::Error> {
    Token::new(text.as_bytes()).map_err(config_error)
}

impl api::GuestSession for Session {
    fn nodes(&self) -> u8 {
        node_index(self.shared.borrow().nodes.len())
    }

    fn endpoint(&self, n: u8) -> Option<api::Endpoint> {
        let shared = self.shared.borrow();
        shared.nodes.get(node(n)).map(|spec| spec.endpoint.clone())
    }

    fn shown(&self, n: u8) -> Option<String> {
        let shared = self.shared.borrow();
        shared.nodes.get(node(n)).map(|spec| spec.shown.clone())
    }

    fn poll_connect(&self, now: api::Instant) -> Option<u8> {
        let shared = self.shared.borrow();
        shared
            .policy
            .poll_connect(input::instant(now))
            .map(node_index)
    }

    fn connect(&self, n: u8, now: api::Instant) -> Option<api::Handshake> {
        let at = input::instant(now);
        let mut shared = self.shared.borrow_mut();
        let spec = shared.nodes.get(node(n))?;
        let options = spec.handshake.clone();
        if !shared.policy.may_connect(node(n), at) {
            return None;
        }
        shared.policy.connect_started(node(n), at);
        drop(shared);
        Some(api::Handshake::new(Handshake::new(
            Rc::clone(&self.shared),
            node(n),
            options,
            at,
        )))
    }

    fn connect_failed(&self, n: u8, now: api::Instant) {
        let mut shared = self.shared.borrow_mut();
        shared.policy.connect_failed(node(n), input::instant(now));
    }

    fn disconnected(&self, n: u8, now: api::Instant) {
        let mut shared = self.shared.borrow_mut();
        shared.policy.disconnected(node(n), input::instant(now));
    }

    fn silent(&self, n: u8, now: api::Instant) {
        let mut shared = self.shared.borrow_mut();
        shared.policy.silent(node(n), input::instant(now));
    }

    fn poll_timeout(&self) -> Option<api::Instant> {
        self.shared
            .borrow()
            .policy
            .poll_timeout()
            .map(input::millis)
    }

    fn handle_timeout(&self, now: api::Instant) {
        let mut shared = self.shared.borrow_mut();
        shared.policy.handle_timeout(input::instant(now));
    }

    fn ready(&self) -> u8 {
        node_index(self.shared.borrow().policy.ready())
    }

    fn connect_outcome(&self) -> Option<Result<(), api::Error>> {
        let shared = self.shared.borrow();
        match shared.policy.connect_outcome()? {
            // The nodes still within their connect deadline are waited for, so the first
            // operation (built only for nodes whose handshake completed) has every node that
            // answers in time.
            ConnectOutcome::Ready if shared.policy.any_connecting() => None,
            ConnectOutcome::TooFew {
                ready,
                nodes,
                needed,
            } => Some(Err(api::Error::Unavailable(format!(
                "only {ready} of {nodes} Redis nodes are reachable; a quorum needs {needed}"
            )))),
            _ => Some(Ok(())),
        }
    }

    fn acquire(
        &self,
        name: String,
        wait_ms: u32,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        self.acquire_shaped(name, api::Shape::Lock, wait_ms, now, entropy)
    }

    fn acquire_started(
        &self,
        name: String,
        wait_ms: u32,
        now: api::Instant,
        entropy: api::Entropy,
        lent: Vec<u8>,
    ) -> Result<(api::Operation, Vec<u8>), api::Error> {
        Ok(started(
            self.acquire(name, wait_ms, now, entropy)?,
            now,
            &lent,
        ))
    }

    fn release_started(
        &self,
        name: String,
        token: String,
        now: api::Instant,
        entropy: api::Entropy,
        lent: Vec<u8>,
    ) -> Result<(api::Operation, Vec<u8>), api::Error> {
        Ok(started(
            self.release(name, token, now, entropy)?,
            now,
            &lent,
        ))
    }

    fn try_acquire(
        &self,
        name: String,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        self.acquire(name, 0, now, entropy)
    }

    fn release(
        &self,
        name: String,
        token_text: String,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        self.release_shaped(name, api::Shape::Lock, token_text, now, entropy)
    }

    fn extend(
        &self,
        name: String,
        token_text: String,
        ttl_ms: u32,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        self.extend_shaped(name, api::Shape::Lock, token_text, ttl_ms, now, entropy)
    }

    fn status(&self, name: String, now: api::Instant) -> Result<api::Operation, api::Error> {
        let at = input::instant(now);
        self.build(
            |shared, servers| {
                let lock = shared.lock(&name)?;
                Inspect::new(&lock, servers, at)
                    .map(|m| Machine::Status(alloc::boxed::Box::new(m)))
                    .map_err(config_error)
            },
            at,
        )
    }

    fn reset(&self, name: String, now: api::Instant) -> Result<api::Operation, api::Error> {
        let at = input::instant(now);
        self.build(
            |shared, servers| {
                let lock = shared.lock(&name)?;
                Reset::by_name(&lock, servers, false, at)
                    .map(|m| Machine::Reset(alloc::boxed::Box::new(m)))
                    .map_err(config_error)
            },
            at,
        )
    }

    fn register(&self, name: String) -> Result<u32, api::Error> {
        let lock = self.shared.borrow().lock(&name)?;
        self.slots.borrow_mut().register(&name, lock)
    }

    fn forget_names(&self) {
        self.slots.borrow_mut().forget_names();
    }

    fn acquire_flat(
        &self,
        name_id: u32,
        wait_ms: u32,
        now: api::Instant,
        entropy: api::Entropy,
        lent: u32,
    ) -> Result<Vec<u8>, api::Error> {
        let make = |lock: &Lock, servers: &[ServerInfo], at: Instant| {
            let (token, seed) = input::token_and_seed(&entropy)?;
            let token = Token::from_entropy(token);
            Machine::acquire(lock, token, servers, input::span(wait_ms), at, seed)
                .map_err(config_error)
        };
        self.start_in_slot(name_id, make, now, lent)
    }

    fn release_flat(
        &self,
        name_id: u32,
        token_bytes: Vec<u8>,
        now: api::Instant,
        entropy: api::Entropy,
        lent: u32,
    ) -> Result<Vec<u8>, api::Error> {
        let make = |lock: &Lock, servers: &[ServerInfo], at: Instant| {
            let token = Token::new(&token_bytes).map_err(config_error)?;
            let seed = input::seed(&entropy)?;
            Machine::release(lock, token, servers, at, seed).map_err(config_error)
        };
        self.start_in_slot(name_id, make, now, lent)
    }

    fn extend_flat(
        &self,
        name_id: u32,
        token_bytes: Vec<u8>,
        ttl_ms: u32,
        now: api::Instant,
        entropy: api::Entropy,
        lent: u32,
    ) -> Result<Vec<u8>, api::Error> {
        let make = |lock: &Lock, servers: &[ServerInfo], at: Instant| {
            let lock = lock.with_ttl(input::span(ttl_ms)).map_err(config_error)?;
            let token = Token::new(&token_bytes).map_err(config_error)?;
            let seed = input::seed(&entropy)?;
            Machine::extend(&lock, token, servers, at, seed).map_err(config_error)
        };
        self.start_in_slot(name_id, make, now, lent)
    }

    fn feed_flat(&self, slot: u32, now: api::Instant, n: u8, bytes: Vec<u8>) -> Vec<u8> {
        let data = api::NodeEvent::Data(api::Received { node: n, bytes });
        self.in_slot(slot, |op, layout| op.run_flat(now, [data], layout))
    }

    fn lose_flat(&self, slot: u32, now: api::Instant, n: u8) -> Vec<u8> {
        let lost = api::NodeEvent::Disconnect(n);
        self.in_slot(slot, |op, layout| op.run_flat(now, [lost], layout))
    }

    fn lend_flat(&self, slot: u32, now: api::Instant, n: u8) -> Vec<u8> {
        let lent = api::NodeEvent::Connected(n);
        self.in_slot(slot, |op, layout| op.run_flat(now, [lent], layout))
    }

    fn tick_flat(&self, slot: u32, now: api::Instant) -> Vec<u8> {
        self.in_slot(slot, |op, layout| op.run_flat(now, [], layout))
    }

    fn cancel_flat(&self, slot: u32, now: api::Instant) {
        if let Some(op) = self.slots.borrow().get(slot) {
            api::GuestOperation::cancel(op, now);
        }
    }

    fn outcome_flat(&self, slot: u32) -> Option<Result<api::Outcome, api::Error>> {
        let slots = self.slots.borrow();
        let op = slots.get(slot).filter(|op| op.finished())?;
        let outcome = api::GuestOperation::poll_outcome(op)?;
        drop(slots);
        let done = self.slots.borrow_mut().remove(slot);
        drop(done);
        Some(outcome)
    }

    fn abandon(&self, slot: u32) {
        let done = self.slots.borrow_mut().remove(slot);
        drop(done);
    }

    fn acquire_flat_packed(
        &self,
        name_id: u32,
        wait_ms: u32,
        now: api::Instant,
        entropy: Vec<u64>,
        lent: u32,
    ) -> Result<Vec<u64>, api::Error> {
        let entropy = packed::all_bytes(&entropy);
        self.acquire_flat(name_id, wait_ms, now, entropy, lent)
            .map(|answer| packed::pack(&answer))
    }

    fn release_flat_packed(
        &self,
        name_id: u32,
        token: Vec<u64>,
        token_len: u32,
        now: api::Instant,
        entropy: Vec<u64>,
        lent: u32,
    ) -> Result<Vec<u64>, api::Error> {
        let token = packed::unpack_arg(&token, token_len, "token")?;
        let entropy = packed::all_bytes(&entropy);
        self.release_flat(name_id, token, now, entropy, lent)
            .map(|answer| packed::pack(&answer))
    }

    fn extend_flat_packed(
        &self,
        name_id: u32,
        token: Vec<u64>,
        token_len: u32,
        ttl_ms: u32,
        now: api::Instant,
        entropy: Vec<u64>,
        lent: u32,
    ) -> Result<Vec<u64>, api::Error> {
        let token = packed::unpack_arg(&token, token_len, "token")?;
        let entropy = packed::all_bytes(&entropy);
        self.extend_flat(name_id, token, ttl_ms, now, entropy, lent)
            .map(|answer| packed::pack(&answer))
    }

    fn feed_flat_packed(
        &self,
        slot: u32,
        now: api::Instant,
        n: u8,
        bytes: Vec<u64>,
        bytes_len: u32,
    ) -> Vec<u64> {
        // A length past the words: refused as an unknown slot is, nothing fed.
        packed::unpack(&bytes, bytes_len)
            .map(|bytes| packed::pack(&self.feed_flat(slot, now, n, bytes)))
            .unwrap_or_default()
    }

    fn lose_flat_packed(&self, slot: u32, now: api::Instant, n: u8) -> Vec<u64> {
        packed::pack(&self.lose_flat(slot, now, n))
    }

    fn lend_flat_packed(&self, slot: u32, now: api::Instant, n: u8) -> Vec<u64> {
        packed::pack(&self.lend_flat(slot, now, n))
    }

    fn tick_flat_packed(&self, slot: u32, now: api::Instant) -> Vec<u64> {
        packed::pack(&self.tick_flat(slot, now))
    }

    fn renewal(
        &self,
        name: String,
        lease: api::Lease,
        entropy: api::Entropy,
    ) -> Result<api::Renewal, api::Error> {
        self.renewal_shaped(name, api::Shape::Lock, lease, entropy)
    }

    fn acquire_shaped(
        &self,
        name: String,
        shape: api::Shape,
        wait_ms: u32,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        let lock = |shared: &Shared| shared.lock_shaped(&name, input::core_shape(&shape));
        self.acquire_of(lock, wait_ms, now, &entropy)
    }

    fn release_shaped(
        &self,
        name: String,
        shape: api::Shape,
        token_text: String,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        let lock = |shared: &Shared| shared.lock_shaped(&name, input::core_shape(&shape));
        self.release_of(lock, &token_text, now, &entropy)
    }

    fn extend_shaped(
        &self,
        name: String,
        shape: api::Shape,
        token_text: String,
        ttl_ms: u32,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        let lock = |shared: &Shared| shared.lock_shaped(&name, input::core_shape(&shape));
        self.extend_of(lock, &token_text, ttl_ms, now, &entropy)
    }

    fn renewal_shaped(
        &self,
        name: String,
        shape: api::Shape,
        lease: api::Lease,
        entropy: api::Entropy,
    ) -> Result<api::Renewal, api::Error> {
        let lock = |shared: &Shared| shared.lock_shaped(&name, input::core_shape(&shape));
        self.renewal_of(lock, &lease, &entropy)
    }

    fn acquire_many(
        &self,
        names: Vec<String>,
        wait_ms: u32,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        let lock = |shared: &Shared| shared.lock_many(&names);
        self.acquire_of(lock, wait_ms, now, &entropy)
    }

    fn release_many(
        &self,
        names: Vec<String>,
        token_text: String,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        let lock = |shared: &Shared| shared.lock_many(&names);
        self.release_of(lock, &token_text, now, &entropy)
    }

    fn extend_many(
        &self,
        names: Vec<String>,
        token_text: String,
        ttl_ms: u32,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        let lock = |shared: &Shared| shared.lock_many(&names);
        self.extend_of(lock, &token_text, ttl_ms, now, &entropy)
    }

    fn renewal_many(
        &self,
        names: Vec<String>,
        lease: api::Lease,
        entropy: api::Entropy,
    ) -> Result<api::Renewal, api::Error> {
        let lock = |shared: &Shared| shared.lock_many(&names);
        self.renewal_of(lock, &lease, &entropy)
    }

    fn get_or_lock(
        &self,
        name: String,
        wait_ms: u32,
        now: api::Instant,
        entropy: api::Entropy,
    ) -> Result<api::Operation, api::Error> {
        let at = input::instant(now);
        self.build(
            |shared, servers| {
                let lock = shared.lock(&name)?;
                let (token, _) = input::token_and_seed(&entropy)?;
                let token = Token::from_entropy(token);
                GetOrLock::new(&lock, token, servers, input::span(wait_ms), at)
                    .map(|m| Machine::GetOrLock(alloc::boxed::Box::new(m)))
                    .map_err(config_error)
            },
            at,
        )
    }

    fn finish_compute(
        &self,
        name: String,
        token_text: String,
        value: Vec<u8>,
        value_ttl_ms: u32,
        now: api::Instant,
    ) -> Result<api::Operation, api::Error> {
        let at = input::instant(now);
        self.build(
            |shared, servers| {
                let lock = shared.lock(&name)?;
                let token = token(&token_text)?;
                let ttl = input::span(value_ttl_ms);
                FinishCompute::store(&lock, &token, servers, &value, ttl, at)
                    .map(|m| Machine::FinishCompute(alloc::boxed::Box::new(m)))
                    .map_err(config_error)
            },
            at,
        )
    }

    fn abandon_compute(
        &self,
        name: String,
        token_text: String,
        now: api::Instant,
    ) -> Result<api::Operation, api::Error> {
        let at = input::instant(now);
        self.build(
            |shared, servers| {
                let lock = shared.lock(&name)?;
                let token = token(&token_text)?;
                FinishCompute::abandon(&lock, &token, servers, at)
                    .map(|m| Machine::FinishCompute(alloc::boxed::Box::new(m)))
                    .map_err(config_error)
            },
            at,
        )
    }
}

/// The resource constructors for any lock: `lock` makes it from the session's settings (a
/// shape on one name, or a set of names), the core's machine does the rest. The lock is
/// made first, so a refused name or set is `invalid` whatever the connections.
impl Session {
    fn acquire_of(
        &self,
        lock: impl FnOnce(&Shared) -> Result<Lock, api::Error>,
        wait_ms: u32,
        now: api::Instant,
        entropy: &[u8],
    ) -> Result<api::Operation, api::Error> {
        let at = input::instant(now);
        self.build(
            |shared, servers| {
                let lock = lock(shared)?;
                let (token, seed) = input::token_and_seed(entropy)?;
                let token = Token::from_entropy(token);
                let wait = input::span(wait_ms);
                Machine::acquire(&lock, token, servers, wait, at, seed).map_err(config_error)
            },
            at,
        )
    }

    fn release_of(
        &self,
        lock: impl FnOnce(&Shared) -> Result<Lock, api::Error>,
        token_text: &str,
        now: api::Instant,
        entropy: &[u8],
    ) -> Result<api::Operation, api::Error> {
        let at = input::instant(now);
        self.build(
            |shared, servers| {
                let lock = lock(shared)?;
                let token = token(token_text)?;
                let seed = input::seed(entropy)?;
                Machine::release(&lock, token, servers, at, seed).map_err(config_error)
            },
            at,
        )
    }

    fn extend_of(
        &self,
        lock: impl FnOnce(&Shared) -> Result<Lock, api::Error>,
        token_text: &str,
        ttl_ms: u32,
        now: api::Instant,
        entropy: &[u8],
    ) -> Result<api::Operation, api::Error> {
        let at = input::instant(now);
        self.build(
            |shared, servers| {
                let lock = lock(shared)?
                    .with_ttl(input::span(ttl_ms))
                    .map_err(config_error)?;
                let token = token(token_text)?;
                let seed = input::seed(entropy)?;
                Machine::extend(&lock, token, servers, at, seed).map_err(config_error)
            },
            at,
        )
    }

    fn renewal_of(
        &self,
        lock: impl FnOnce(&Shared) -> Result<Lock, api::Error>,
        lease: &api::Lease,
        entropy: &[u8],
    ) -> Result<api::Renewal, api::Error> {
        let shared = self.shared.borrow();
        let lock = lock(&shared)?;
        let token = token(&lease.token)?;
        let seed = input::seed(entropy)?;
        let renewal = Renewal::new(
            Rc::clone(&self.shared),
            lock,
            token,
            input::instant(lease.started),
            input::instant(lease.valid_until),
            seed,
        );
        Ok(api::Renewal::new(renewal))
    }
}
