//! A reference host of the engine component (`wit/engine.wit`) for the conformance test:
//! the component in wasmtime, plain TCP sockets, and one event loop — what a Node or Python
//! host does, written as the simplest Rust that does it.
//!
//! The loop waits on one channel: a reader thread per socket sends what it reads (or that
//! the socket closed), and `recv_timeout` waits until the earliest deadline any machine
//! names. Every decision — which node to connect, when to retry, what a reply means, when a
//! lease is lost, which connection to close as silent — comes from the engine; this module
//! only moves bytes and reads the clock. Operations are driven by `operation.step`, one call
//! per event — or, on a host made `flat`, by its flat twins (`start`/`feed`/`lose`/`tick`,
//! read by [`flat`], with `acquire`/`release` built and started in one call), the path the
//! Node and Python hosts take; [`slotted`] drives the session-level flat calls (operations
//! addressed by a slot), [`packed`] their packed twins (byte lists as `list<u64>`). One
//! operation runs at a time on a host (a second client is a second host).

#![allow(dead_code)]

mod compute;
mod flat;
mod many;
mod packed;
mod shaped;
mod slotted;

pub(crate) use compute::ComputeFailure;
pub(crate) use shaped::semaphore;

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Config, Store};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "engine",
    additional_derives: [PartialEq],
});

pub(crate) use exports::distlock::lock::machines as api;

/// How long a wait may last when no machine names a deadline (a guard against a wrong guess:
/// while anything waits for a reply, a machine names one).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// What a reader thread saw on one socket.
enum Event {
    Bytes(u64, Vec<u8>),
    Closed(u64),
}

/// One node's connection.
enum Conn {
    /// Its handshake is under way.
    Handshaking {
        id: u64,
        stream: TcpStream,
        handshake: ResourceAny,
    },
    /// Ready for operations; owes `owed` replies to the last operation, and `early` holds
    /// what arrived while no operation ran (fed to the next one, which skips what is owed).
    Ready {
        id: u64,
        stream: TcpStream,
        owed: u32,
        early: Vec<u8>,
    },
}

impl Conn {
    fn id(&self) -> u64 {
        match self {
            Conn::Handshaking { id, .. } | Conn::Ready { id, .. } => *id,
        }
    }
}

/// The engine component, compiled once per test binary.
fn component(engine: &wasmtime::Engine) -> Component {
    Component::new(engine, distlock_host::component::ENGINE_WASM).expect("compile the engine")
}

/// Random bytes for the engine (tokens, jitter).
pub(crate) fn entropy() -> Vec<u8> {
    let mut bytes = vec![0u8; 24];
    getrandom::fill(&mut bytes).expect("OS randomness");
    bytes
}

/// One client: an engine instance, its session and a connection per node.
pub(crate) struct Host {
    /// In a cell: the generated accessors borrow the instance while a call needs the store.
    store: RefCell<Store<()>>,
    machines: EngineWorld,
    session: ResourceAny,
    conns: Vec<Option<Conn>>,
    next_id: u64,
    events: Receiver<Event>,
    sender: Sender<Event>,
    epoch: Instant,
    request_timeout: Duration,
    /// Drive operations through the flat calls instead of `step`.
    flat: bool,
    /// While an operation runs, open a new connection for a node it has none for (when the
    /// session allows) and lend it with `connected` once its handshake ends.
    reconnecting: bool,
    /// Send `connected` for a lost node at once, with no new connection nor handshake: what
    /// the engine must ignore.
    lends_too_early: bool,
}

/// The generated world (`Engine`, not to be confused with `wasmtime::Engine`).
pub(crate) type EngineWorld = Engine;

/// The options for `nodes` with everything else at its default.
pub(crate) fn options(nodes: &[String]) -> api::Options {
    api::Options {
        nodes: nodes.to_vec(),
        key_prefix: None,
        layout: None,
        ttl_ms: None,
        fenced: false,
        request_timeout_ms: None,
        fair: None,
        no_scripts: None,
    }
}

/// An engine instance with no imports: what every [`Host`] and the input checks start from.
pub(crate) fn instantiate() -> (Store<()>, EngineWorld) {
    let engine = wasmtime::Engine::new(&Config::new()).expect("wasmtime engine");
    let component = component(&engine);
    let linker: Linker<()> = Linker::new(&engine);
    let mut store = Store::new(&engine, ());
    let machines = EngineWorld::instantiate(&mut store, &component, &linker)
        .expect("the engine instantiates with no imports");
    (store, machines)
}

impl Host {
    /// Opens a session over `options` and connects until a majority is ready or too few
    /// answered.
    pub(crate) fn connect(options: api::Options) -> Result<Host, api::Error> {
        let request_timeout =
            Duration::from_millis(u64::from(options.request_timeout_ms.unwrap_or(1000)));
        let (mut store, machines) = instantiate();
        let session = machines
            .distlock_lock_machines()
            .call_open(&mut store, &options, &entropy())
            .expect("no trap")?;
        let nodes = options.nodes.len();
        let (sender, events) = channel();
        let mut host = Host {
            store: RefCell::new(store),
            machines,
            session,
            conns: (0..nodes).map(|_| None).collect(),
            next_id: 0,
            events,
            sender,
            epoch: Instant::now(),
            request_timeout,
            flat: false,
            reconnecting: false,
            lends_too_early: false,
        };
        host.tend();
        loop {
            let outcome = host
                .sessions()
                .call_connect_outcome(&mut *host.store.borrow_mut(), host.session)
                .expect("no trap");
            // Like any host whose handshakes progress only while it waits, it waits out the
            // nodes still within their deadline after a majority answered, so the first
            // operation has every node that answers in time.
            let handshaking = host
                .conns
                .iter()
                .any(|c| matches!(c, Some(Conn::Handshaking { .. })));
            match outcome {
                Some(Err(error)) => return Err(error),
                Some(Ok(())) if !handshaking => return Ok(host),
                _ => {}
            }
            let deadline = host.connect_deadline();
            host.wait(deadline, None);
        }
    }

    /// This host, driving its operations through the flat calls (see the module doc).
    pub(crate) fn flat(mut self) -> Host {
        self.flat = true;
        self
    }

    /// This host, lending its operations new connections for the nodes they lost (see
    /// `node-event.connected` in the WIT): what the Node and Python hosts do.
    pub(crate) fn reconnecting(mut self) -> Host {
        self.reconnecting = true;
        self
    }

    /// This host, wrongly sending `connected` right after each `disconnect` (no new
    /// connection, no handshake since the loss): the engine keeps the node out.
    pub(crate) fn lending_too_early(mut self) -> Host {
        self.lends_too_early = true;
        self
    }

    /// On a reconnecting host, while an operation runs: opens a connection to each node
    /// without one, where the session allows now (its backoff decides; nothing is retried
    /// here).
    pub(crate) fn reopen_lost(&mut self) {
        if !self.reconnecting {
            return;
        }
        for node in 0..self.conns.len() {
            if self.conns[node].is_none() {
                self.open(node as u8);
            }
        }
    }

    /// The session's `connect-outcome`.
    pub(crate) fn connect_outcome(&self) -> Option<Result<(), api::Error>> {
        self.sessions()
            .call_connect_outcome(&mut *self.store.borrow_mut(), self.session)
            .expect("no trap")
    }

    fn sessions(&self) -> api::GuestSession<'_> {
        self.machines.distlock_lock_machines().session()
    }

    fn ops(&self) -> api::GuestOperation<'_> {
        self.machines.distlock_lock_machines().operation()
    }

    fn handshakes(&self) -> api::GuestHandshake<'_> {
        self.machines.distlock_lock_machines().handshake()
    }

    fn renewals(&self) -> api::GuestRenewal<'_> {
        self.machines.distlock_lock_machines().renewal()
    }

    /// Milliseconds on this host's monotonic clock.
    pub(crate) fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1000.0
    }

    fn instant_of(&self, ms: f64) -> Instant {
        self.epoch + Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// Handles what the sockets said since the last wait (handshakes progress between
    /// operations too), brings the session up to now and opens every node it names.
    fn tend(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            self.dispatch(event, None);
        }
        let now = self.now();
        self.sessions()
            .call_handle_timeout(&mut *self.store.borrow_mut(), self.session, now)
            .expect("no trap");
        loop {
            let now = self.now();
            let next = self
                .sessions()
                .call_poll_connect(&mut *self.store.borrow_mut(), self.session, now)
                .expect("no trap");
            let Some(node) = next else { break };
            self.open(node);
        }
    }

    /// Opens a socket to `node` and starts its handshake.
    fn open(&mut self, node: u8) {
        let now = self.now();
        let Some(handshake) = self
            .sessions()
            .call_connect(&mut *self.store.borrow_mut(), self.session, node, now)
            .expect("no trap")
        else {
            return;
        };
        let endpoint = self
            .sessions()
            .call_endpoint(&mut *self.store.borrow_mut(), self.session, node)
            .expect("no trap")
            .expect("a node of the session");
        let stream = (endpoint.host.as_str(), endpoint.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .and_then(|addr| TcpStream::connect_timeout(&addr, self.request_timeout).ok());
        let Some(stream) = stream else {
            let now = self.now();
            self.sessions()
                .call_connect_failed(&mut *self.store.borrow_mut(), self.session, node, now)
                .expect("no trap");
            handshake
                .resource_drop(&mut *self.store.borrow_mut())
                .expect("no trap");
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        spawn_reader(&stream, id, self.sender.clone());
        let mut stream = stream;
        while let Some(bytes) = self
            .handshakes()
            .call_poll_transmit(&mut *self.store.borrow_mut(), handshake)
            .expect("no trap")
        {
            let _ = stream.write_all(&bytes);
        }
        self.close(node as usize);
        self.conns[node as usize] = Some(Conn::Handshaking {
            id,
            stream,
            handshake,
        });
    }

    /// Closes `node`'s connection, if any (the reader thread then ends).
    fn close(&mut self, node: usize) {
        match self.conns[node].take() {
            Some(Conn::Handshaking {
                stream, handshake, ..
            }) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                handshake
                    .resource_drop(&mut *self.store.borrow_mut())
                    .expect("no trap");
            }
            Some(Conn::Ready { stream, .. }) => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
            None => {}
        }
    }

    /// The earliest deadline of the session and the handshakes under way.
    fn connect_deadline(&mut self) -> Option<f64> {
        let mut deadline = self
            .sessions()
            .call_poll_timeout(&mut *self.store.borrow_mut(), self.session)
            .expect("no trap");
        let handshakes: Vec<ResourceAny> = self
            .conns
            .iter()
            .filter_map(|c| match c {
                Some(Conn::Handshaking { handshake, .. }) => Some(*handshake),
                _ => None,
            })
            .collect();
        for handshake in handshakes {
            let at = self
                .handshakes()
                .call_poll_timeout(&mut *self.store.borrow_mut(), handshake)
                .expect("no trap");
            deadline = earliest(deadline, at);
        }
        deadline
    }

    /// Waits for one event or until `deadline`, and hands it to the handshakes and the
    /// session; what happened on a ready connection goes to `events` (the running
    /// operation's next step), if any.
    fn wait(&mut self, deadline: Option<f64>, events: Option<&mut Vec<api::NodeEvent>>) {
        let timeout = match deadline {
            Some(at) => self
                .instant_of(at)
                .saturating_duration_since(Instant::now()),
            None => IDLE_WAIT,
        };
        match self.events.recv_timeout(timeout) {
            Ok(event) => self.dispatch(event, events),
            Err(RecvTimeoutError::Timeout) => self.timeouts(events),
            Err(RecvTimeoutError::Disconnected) => unreachable!("the host holds a sender"),
        }
    }

    /// One socket event, to its handshake, the session, or `events`.
    fn dispatch(&mut self, event: Event, events: Option<&mut Vec<api::NodeEvent>>) {
        match event {
            Event::Bytes(id, bytes) => {
                if let Some(node) = self.node_of(id) {
                    self.input(node, bytes, events);
                }
            }
            Event::Closed(id) => {
                if let Some(node) = self.node_of(id) {
                    self.lost(node, events);
                }
            }
        }
    }

    fn node_of(&self, id: u64) -> Option<usize> {
        self.conns
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.id() == id))
    }

    /// Bytes from `node`: to its handshake, or to the operation's next step.
    fn input(&mut self, node: usize, bytes: Vec<u8>, events: Option<&mut Vec<api::NodeEvent>>) {
        let now = self.now();
        match &mut self.conns[node] {
            Some(Conn::Handshaking { handshake, .. }) => {
                let handshake = *handshake;
                self.handshakes()
                    .call_handle_input(&mut *self.store.borrow_mut(), handshake, &bytes, now)
                    .expect("no trap");
                self.settle_handshake(node, events);
            }
            Some(Conn::Ready { early, .. }) => match events {
                Some(events) => events.push(api::NodeEvent::Data(api::Received {
                    node: node as u8,
                    bytes,
                })),
                None => early.extend_from_slice(&bytes),
            },
            None => {}
        }
    }

    /// Sends what `node`'s handshake asks and, once it ended, makes the connection ready (a
    /// node that comes up during an operation joins the next one, or on a reconnecting host
    /// is lent to it: `connected` in `events`) or closes it.
    fn settle_handshake(&mut self, node: usize, events: Option<&mut Vec<api::NodeEvent>>) {
        let Some(Conn::Handshaking {
            handshake, stream, ..
        }) = &mut self.conns[node]
        else {
            return;
        };
        let handshake = *handshake;
        let mut stream = stream.try_clone().expect("clone the socket");
        while let Some(bytes) = self
            .handshakes()
            .call_poll_transmit(&mut *self.store.borrow_mut(), handshake)
            .expect("no trap")
        {
            let _ = stream.write_all(&bytes);
        }
        let outcome = self
            .handshakes()
            .call_poll_outcome(&mut *self.store.borrow_mut(), handshake)
            .expect("no trap");
        match outcome {
            None => {}
            Some(Ok(())) => {
                let Some(Conn::Handshaking { id, stream, .. }) = self.conns[node].take() else {
                    return;
                };
                handshake
                    .resource_drop(&mut *self.store.borrow_mut())
                    .expect("no trap");
                self.conns[node] = Some(Conn::Ready {
                    id,
                    stream,
                    owed: 0,
                    early: Vec::new(),
                });
                if let Some(events) = events.filter(|_| self.reconnecting) {
                    events.push(api::NodeEvent::Connected(node as u8));
                }
            }
            Some(Err(_)) => self.close(node),
        }
    }

    /// `node`'s socket closed.
    fn lost(&mut self, node: usize, events: Option<&mut Vec<api::NodeEvent>>) {
        let now = self.now();
        match &self.conns[node] {
            Some(Conn::Handshaking { handshake, .. }) => {
                let handshake = *handshake;
                self.handshakes()
                    .call_handle_disconnect(&mut *self.store.borrow_mut(), handshake, now)
                    .expect("no trap");
                self.settle_handshake(node, None);
                self.close(node);
            }
            Some(Conn::Ready { .. }) => {
                self.close(node);
                self.sessions()
                    .call_disconnected(&mut *self.store.borrow_mut(), self.session, node as u8, now)
                    .expect("no trap");
                if let Some(events) = events {
                    events.push(api::NodeEvent::Disconnect(node as u8));
                    if self.lends_too_early {
                        events.push(api::NodeEvent::Connected(node as u8));
                    }
                }
            }
            None => {}
        }
    }

    /// A deadline passed: the handshakes and the session check their own (an operation
    /// checks its own in its next step).
    fn timeouts(&mut self, mut events: Option<&mut Vec<api::NodeEvent>>) {
        let now = self.now();
        for node in 0..self.conns.len() {
            if let Some(Conn::Handshaking { handshake, .. }) = &self.conns[node] {
                let handshake = *handshake;
                self.handshakes()
                    .call_handle_timeout(&mut *self.store.borrow_mut(), handshake, now)
                    .expect("no trap");
                self.settle_handshake(node, events.as_deref_mut());
            }
        }
        self.sessions()
            .call_handle_timeout(&mut *self.store.borrow_mut(), self.session, now)
            .expect("no trap");
    }

    /// Drives `op` to its outcome on the ready connections (a node without one, or still
    /// handshaking, is reported disconnected to it), then does with each connection what
    /// the engine says: keep it with what it owes, or close it (out of step, or silent).
    pub(crate) fn run(&mut self, op: ResourceAny) -> Result<api::Outcome, api::Error> {
        self.run_from(op, None)
    }

    /// `run`, where `first` is the first step's flat answer when the operation was built and
    /// started in one call.
    fn run_from(
        &mut self,
        op: ResourceAny,
        mut first: Option<Vec<u8>>,
    ) -> Result<api::Outcome, api::Error> {
        let mut started = first.is_some();
        self.tend();
        let mut events = Vec::new();
        for node in 0..self.conns.len() {
            let (owed, early) = match &mut self.conns[node] {
                Some(Conn::Ready { owed, early, .. }) => (*owed, std::mem::take(early)),
                _ => {
                    events.push(api::NodeEvent::Disconnect(node as u8));
                    continue;
                }
            };
            let taken = owed == 0
                || self
                    .ops()
                    .call_discard_replies(&mut *self.store.borrow_mut(), op, node as u8, owed)
                    .expect("no trap");
            if !taken {
                self.close(node);
                let now = self.now();
                self.sessions()
                    .call_disconnected(&mut *self.store.borrow_mut(), self.session, node as u8, now)
                    .expect("no trap");
                events.push(api::NodeEvent::Disconnect(node as u8));
            } else if !early.is_empty() {
                events.push(api::NodeEvent::Data(api::Received {
                    node: node as u8,
                    bytes: early,
                }));
            }
        }
        let (outcome, connections) = loop {
            let step = self.step(op, &mut events, first.take(), &mut started);
            for tx in step.transmits {
                let sent = match self.conns.get_mut(usize::from(tx.node)) {
                    Some(Some(Conn::Ready { stream, .. })) => stream.write_all(&tx.bytes).is_ok(),
                    _ => false,
                };
                if !sent {
                    events.push(api::NodeEvent::Disconnect(tx.node));
                }
            }
            if let Some(outcome) = step.outcome {
                break (outcome, step.connections);
            }
            self.reopen_lost();
            if events.is_empty() {
                let deadline = earliest(step.timeout, self.connect_deadline());
                self.wait(deadline, Some(&mut events));
            }
        };
        self.hand_over(&connections);
        op.resource_drop(&mut *self.store.borrow_mut())
            .expect("no trap");
        outcome
    }

    /// Per node, 1 where a ready connection owing nothing can be lent to the next operation
    /// (what `*-started` takes): such a node needs no `discard-replies` first.
    fn lent(&self) -> Vec<u8> {
        self.conns
            .iter()
            .map(|c| {
                u8::from(matches!(c, Some(Conn::Ready { owed: 0, early, .. }) if early.is_empty()))
            })
            .collect()
    }

    /// One step with `events` (emptied): `step`, or on a `flat` host the flat calls — the
    /// first step's answer `first` if given, else `start` for the first step, one `feed` or
    /// `lose` per event, `tick` with none — their answers merged into one `step-result`.
    fn step(
        &mut self,
        op: ResourceAny,
        events: &mut Vec<api::NodeEvent>,
        first: Option<Vec<u8>>,
        started: &mut bool,
    ) -> api::StepResult {
        let now = self.now();
        if !self.flat {
            let step = self
                .ops()
                .call_step(&mut *self.store.borrow_mut(), op, now, events)
                .expect("no trap");
            events.clear();
            return step;
        }
        let mut answers = Vec::new();
        if let Some(first) = first {
            answers.push(first);
        }
        let ops = self.ops();
        let store = &mut *self.store.borrow_mut();
        if !std::mem::replace(started, true) {
            // The first step: the nodes reported disconnected so far get no connection.
            let lent: Vec<u8> = (0..self.conns.len())
                .map(|n| u8::from(!events.contains(&api::NodeEvent::Disconnect(n as u8))))
                .collect();
            events.retain(|e| !matches!(e, api::NodeEvent::Disconnect(_)));
            answers.push(
                ops.call_start(&mut *store, op, now, &lent)
                    .expect("no trap"),
            );
        }
        for event in events.drain(..) {
            answers.push(
                match event {
                    api::NodeEvent::Data(data) => {
                        ops.call_feed(&mut *store, op, now, data.node, &data.bytes)
                    }
                    api::NodeEvent::Disconnect(node) => ops.call_lose(&mut *store, op, now, node),
                    api::NodeEvent::Connected(node) => ops.call_lend(&mut *store, op, now, node),
                }
                .expect("no trap"),
            );
        }
        if answers.is_empty() {
            answers.push(ops.call_tick(&mut *store, op, now).expect("no trap"));
        }
        let mut merged = api::StepResult {
            transmits: Vec::new(),
            timeout: None,
            outcome: None,
            connections: Vec::new(),
        };
        for answer in answers {
            let step = flat::decode(&answer);
            merged.transmits.extend(step.result.transmits);
            merged.timeout = step.result.timeout;
            if step.result.outcome.is_some() || step.outcome_elsewhere {
                merged.outcome = match step.result.outcome {
                    Some(outcome) => Some(outcome),
                    None => ops.call_poll_outcome(&mut *store, op).expect("no trap"),
                };
                merged.connections = step.result.connections;
                break; // the operation is over: later calls answer nothing
            }
        }
        merged
    }

    /// After an outcome: each ready connection keeps what it owes, or is closed — out of
    /// step (the session hears `disconnected`), or silent (the engine told the session).
    fn hand_over(&mut self, connections: &[api::After]) {
        for (node, after) in connections.iter().enumerate() {
            let Some(Conn::Ready { owed, .. }) = &mut self.conns[node] else {
                continue;
            };
            match after {
                api::After::Keep(n) => *owed = *n,
                api::After::Silent => self.close(node),
                api::After::Close => {
                    self.close(node);
                    let now = self.now();
                    self.sessions()
                        .call_disconnected(
                            &mut *self.store.borrow_mut(),
                            self.session,
                            node as u8,
                            now,
                        )
                        .expect("no trap");
                }
            }
        }
    }

    /// `acquire` (wait in ms; 0: one attempt), run to its outcome.
    pub(crate) fn acquire(&mut self, name: &str, wait_ms: u32) -> Result<api::Lease, api::Error> {
        let now = self.now();
        if self.flat {
            self.tend();
            let lent = self.lent();
            let (op, first) = self
                .sessions()
                .call_acquire_started(
                    &mut *self.store.borrow_mut(),
                    self.session,
                    name,
                    wait_ms,
                    now,
                    &entropy(),
                    &lent,
                )
                .expect("no trap")?;
            return match self.run_from(op, Some(first))? {
                api::Outcome::Acquired(lease) => Ok(lease),
                other => panic!("acquire ended with {other:?}"),
            };
        }
        let op = self
            .sessions()
            .call_acquire(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                wait_ms,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Acquired(lease) => Ok(lease),
            other => panic!("acquire ended with {other:?}"),
        }
    }

    /// `try-acquire`, run to its outcome.
    pub(crate) fn try_acquire(&mut self, name: &str) -> Result<api::Lease, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_try_acquire(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Acquired(lease) => Ok(lease),
            other => panic!("try-acquire ended with {other:?}"),
        }
    }

    /// `release`, run to its outcome: the holds left.
    pub(crate) fn release(&mut self, name: &str, token: &str) -> Result<u32, api::Error> {
        let now = self.now();
        if self.flat {
            self.tend();
            let lent = self.lent();
            let (op, first) = self
                .sessions()
                .call_release_started(
                    &mut *self.store.borrow_mut(),
                    self.session,
                    name,
                    token,
                    now,
                    &entropy(),
                    &lent,
                )
                .expect("no trap")?;
            return match self.run_from(op, Some(first))? {
                api::Outcome::Released(holds) => Ok(holds),
                other => panic!("release ended with {other:?}"),
            };
        }
        let op = self
            .sessions()
            .call_release(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                token,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Released(holds) => Ok(holds),
            other => panic!("release ended with {other:?}"),
        }
    }

    /// `extend`, run to its outcome.
    pub(crate) fn extend(
        &mut self,
        name: &str,
        token: &str,
        ttl_ms: u32,
    ) -> Result<api::Extended, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_extend(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                token,
                ttl_ms,
                now,
                &entropy(),
            )
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Extended(extended) => Ok(extended),
            other => panic!("extend ended with {other:?}"),
        }
    }

    /// `status`, run to its outcome.
    pub(crate) fn status(&mut self, name: &str) -> Result<api::Status, api::Error> {
        let now = self.now();
        let op = self
            .sessions()
            .call_status(&mut *self.store.borrow_mut(), self.session, name, now)
            .expect("no trap")?;
        match self.run(op)? {
            api::Outcome::Status(status) => Ok(status),
            other => panic!("status ended with {other:?}"),
        }
    }

    /// The renewal schedule of `lease` on lock `name`.
    pub(crate) fn renewal(
        &mut self,
        name: &str,
        lease: &api::Lease,
    ) -> Result<ResourceAny, api::Error> {
        self.sessions()
            .call_renewal(
                &mut *self.store.borrow_mut(),
                self.session,
                name,
                lease,
                &entropy(),
            )
            .expect("no trap")
    }

    /// Runs `renewal` until `stop` says so or the lease is lost: waits for its deadline,
    /// drives each extend it asks for. Returns why the lease was lost, if it was.
    pub(crate) fn renew_until(
        &mut self,
        renewal: ResourceAny,
        mut stop: impl FnMut(&mut Host, f64) -> bool,
    ) -> Option<api::LostReason> {
        loop {
            let now = self.now();
            self.renewals()
                .call_handle_timeout(&mut *self.store.borrow_mut(), renewal, now)
                .expect("no trap");
            let event = self
                .renewals()
                .call_poll_event(&mut *self.store.borrow_mut(), renewal, now, &entropy())
                .expect("no trap");
            match event {
                Some(api::RenewalEvent::Lost(reason)) => return Some(reason),
                Some(api::RenewalEvent::Extend(op)) => {
                    let _ = self.run(op);
                }
                None => {}
            }
            let valid_until = self
                .renewals()
                .call_valid_until(&mut *self.store.borrow_mut(), renewal)
                .expect("no trap");
            if stop(self, valid_until) {
                return None;
            }
            let deadline = self
                .renewals()
                .call_poll_timeout(&mut *self.store.borrow_mut(), renewal)
                .expect("no trap");
            let deadline = earliest(deadline, self.connect_deadline());
            self.wait(deadline, None);
        }
    }
}

fn earliest(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A thread that reads `stream` until it closes and sends what it reads, tagged with `id`.
fn spawn_reader(stream: &TcpStream, id: u64, sender: Sender<Event>) {
    let mut stream = stream.try_clone().expect("clone the socket");
    thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = sender.send(Event::Closed(id));
                    return;
                }
                Ok(n) => {
                    if sender.send(Event::Bytes(id, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

impl Drop for Host {
    fn drop(&mut self) {
        for node in 0..self.conns.len() {
            self.close(node);
        }
    }
}
