"""The glue between the engine component and ``socket`` + ``selectors``: sockets, the clock and
the wait for the next deadline. Every decision (which node to connect, retries, quorum, what a
reply means, which connection to close) is the engine's; this file only moves bytes and
honours the deadlines the machines name. A call blocks its thread; several threads may run
operations on one pool at once (each operation borrows its own connections).

An operation is driven by the engine's flat calls (``_flat.py``): one call per event — the
first step (``start``, or built and started in one call in a session slot by the packed
``acquire-flat``, ``release-flat`` or ``extend-flat``, ``_slots.py``), bytes read (``feed``), a
connection lost (``lose``), a new one lent in its place (``lend``), a deadline (``tick``) — each
bringing back what to send, the next deadline and, at the end, what to do with each connection.

While an operation has no connection to a node (it lost it, or had none), each of its steps
asks the session for a new one (``Pool.reopen``: the session says when, during a node's backoff
it says no) and lends it once its handshake ends; the engine decides whether to use it, and
its own retry when to send on it. So a waiting acquire outlives a server closing its
connection (``CLIENT KILL``, a restart, an idle timeout).
"""

from __future__ import annotations

import errno
import math
import select
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from typing import Any

from . import _flat
from ._engine import Handle, field, now, on_event, split_option

IDLE_WAIT_S = 1.0  # a guard only: while anything waits for a reply, a machine names a deadline
ONE_NODE_LENT = b"\x01"  # `lent` of a one-node session whose connection is lent
_raw_recv = socket.socket.recv  # the TCP bytes under TLS too (``SSLSocket.recv`` takes no flags)
R, W = selectors.EVENT_READ, selectors.EVENT_WRITE


class Conn:
    """One socket to one node: its handshake first, then lent to one operation at a time."""

    def __init__(self, pool: Pool, node: int, handshake: Handle) -> None:
        self.pool, self.node, self.hs = pool, node, handshake
        self.events: list[Any] | None = None  # the borrowing operation's next step's events
        self.owed, self.out, self.queued, self.alive, self.failed = 0, b"", [], True, False
        ep = pool.session.endpoint(node)
        self.host, self.tls = field(ep, "host"), pool.tls if field(ep, "tls") else None
        self.want = 0  # while a TLS handshake runs: the event it waits for (R or W)
        self.poller: Any = None  # `wait_alone`'s, made once and kept with the socket
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(self.host, field(ep, "port"), type=socket.SOCK_STREAM)[0]
            self.sock = socket.socket(family, kind, proto)
            self.fd = self.sock.fileno()
            self.sock.setblocking(False)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connecting = self.sock.connect_ex(addr) in (errno.EINPROGRESS, errno.EWOULDBLOCK)
        except OSError:
            self.connecting = False
        if not self.connecting:
            self.connect_failed()

    def connect_failed(self) -> None:
        self.failed = True
        self.pool.session.connect_failed(self.node, now())
        self.close()

    def mask(self) -> int:
        """What to wait for: the TLS handshake's need, or reads (and writes while connecting or
        with bytes left to send)."""
        return self.want or R | (W if self.connecting or self.out else 0)

    def ready(self, mask: int) -> None:
        """The selector says the socket can be read or written (``mask``)."""
        if mask & W and self.connecting:
            self.connecting = False
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return self.connect_failed()
            if self.tls:
                self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host, do_handshake_on_connect=False)
                self.want = W
            else:
                self.step()
        if self.want:
            return self.tls_handshake()
        if mask & W and self.alive:
            self.send(b"")
        if mask & R and self.alive:
            self.read()

    def read(self) -> None:
        """Reads what the socket holds: to the handshake, else to the borrowing operation's
        events; a closed or broken socket is closed (and reported as lost)."""
        try:
            data = self.sock.recv(65536)
            while self.tls and self.sock.pending():  # decrypted already: no socket event follows
                data += self.sock.recv(65536)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return
        except OSError:
            data = b""
        if not data:
            return self.close()
        if self.hs:
            self.hs.handle_input(data, now())
            self.step()
        elif self.events is not None:
            self.events.append((self.node, data))

    def quiet(self) -> bool:
        """Connected, handshakes over and nothing left to send: only a reply to wait for."""
        return self.alive and not (self.hs or self.connecting or self.want or self.out)

    def stale(self) -> bool:
        """Whether this idle connection must not be lent: the server closed it (a restart,
        ``CLIENT KILL``, its idle timeout) or, owing nothing, it holds stray bytes. One
        non-blocking peek at the socket's TCP bytes; a connection owing replies is readable
        once they are in, so only a close counts for it (its reader finds the rest out). One
        still in its handshake (opened for an operation that ended first) is not stale: its
        handshake reads what is there."""
        if self.hs:
            return False
        try:
            data = _raw_recv(self.sock, 1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        return not data or self.owed == 0

    def wait_alone(self, deadline: float | None) -> bytes | None:
        """The wait of an operation on this one quiet connection: until a reply or
        ``deadline``, on a ``poll`` kept with the socket, so no selector is set up per
        operation. One ``poll`` (it answers at once when the reply is there already), then
        one ``recv``. Returns what a plain socket read (the caller hands it to the engine);
        anything else (TLS, a closed socket, a handshake's bytes) goes through ``read`` to the
        operation's events, and ``None`` comes back, as at the deadline."""
        poller = self.poller
        if poller is None:
            poller = self.poller = select.poll()
            poller.register(self.fd, select.POLLIN)
        wait = IDLE_WAIT_S * 1000 if deadline is None else min(max(0.0, deadline - now()), IDLE_WAIT_S * 1000)
        if not poller.poll(math.ceil(wait)):
            return None
        if self.tls or self.hs:
            self.read()
            return None
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if data:
            return data
        self.close()  # reported as lost in the operation's events
        return None

    def tls_handshake(self) -> None:
        """One round of the TLS handshake; when it is done, the engine's handshake starts."""
        try:
            self.sock.do_handshake()
        except ssl.SSLWantReadError:
            self.want = R
            return
        except ssl.SSLWantWriteError:
            self.want = W
            return
        except OSError:  # a certificate refused, the connection reset
            return self.connect_failed()
        self.want = 0
        self.step()

    def step(self) -> None:
        """Sends what the handshake asks; at its end the socket is ready or closed."""
        while (out := self.hs.poll_transmit()) is not None:
            self.send(out)
        done, error = split_option(self.hs.poll_outcome())
        if not done:
            return
        self.hs.drop()
        self.hs = None
        if error is not None:  # some(err)
            self.failed = True
            return self.close()
        for data in self.queued:
            self.send(data)
        self.queued = []
        if self.events is not None:  # node-event `connected`: lent to the running operation
            self.events.append(~self.node)

    def write(self, data: bytes) -> None:
        """An operation's bytes: they wait for the handshake to end."""
        self.queued.append(data) if self.hs else self.send(data)

    def send(self, data: bytes) -> None:
        """Sends ``data`` after what is left to send; what the socket does not take now is
        kept for its next writable event."""
        out = self.out + data if self.out else data
        self.out = b""
        try:
            if out and not self.connecting and not self.want:
                sent = self.sock.send(out)
                out = out[sent:] if sent < len(out) else b""
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except OSError:
            return self.close()
        self.out = out

    def close(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self.sock.close() if hasattr(self, "sock") else None
        if self.hs:
            self.hs.handle_disconnect(now())
            self.hs.drop()
            self.hs = None
        elif not self.failed:
            self.pool.session.disconnected(self.node, now())
        if self.events is not None:
            self.events.append(self.node)  # node-event `disconnect`


class Pool:
    """The connections of one session, per node; ``run`` drives one operation to its outcome."""

    def __init__(self, session: Handle, tls: ssl.SSLContext | None = None) -> None:
        self.session, self.tls, self.lock, self.connected = session, tls, threading.Lock(), False
        self.idle: list[list[Conn]] = [[] for _ in range(session.nodes())]
        # Operations over and not yet dropped: the next operation drops them while its first
        # reply is on its way (a drop is an engine call, ~3 µs, off the caller's path).
        self.spent: deque[Any] = deque()

    def open(self, node: int) -> Conn | None:
        handshake = self.session.connect(node, now())
        return handshake and Conn(self, node, Handle(self.session.engine, "handshake", handshake))

    def reopen(self, lost: set[int], conns: dict[int, Conn], events: list[Any]) -> None:
        """Opens a connection for each node in ``lost`` (the running operation has none there)
        that the session allows now, into ``conns``; each appends ``~node`` to ``events`` when
        its handshake ends (lent: node-event ``connected``). A node the session holds back
        (its backoff) stays in ``lost``, asked for again at the operation's next step."""
        for node in list(lost):
            fresh = self.open(node)
            if fresh is not None and fresh.alive:
                fresh.events, conns[node] = events, fresh
                lost.discard(node)

    def take_idle(self, node: int) -> Conn | None:
        """An idle connection to ``node`` fit to lend, or None. A stale one (``Conn.stale``)
        is closed on the way: not a session event, as the server closing an idle connection
        says nothing of whether the node answers now (the next connect finds out)."""
        while True:
            with self.lock:
                conn = self.idle[node].pop() if self.idle[node] else None
            if conn is None or not conn.stale():
                return conn
            conn.failed = True
            conn.close()

    def drop_spent(self) -> None:
        spent = self.spent
        while spent:
            try:
                op = spent.popleft()  # atomic: another thread may drain too
            except IndexError:
                return
            op.drop()

    def close(self) -> None:
        self.drop_spent()
        with self.lock:
            for conns in self.idle:
                for conn in conns:
                    conn.failed = True
                    conn.close()
                conns.clear()

    def keep(self, conn: Conn, owed: int) -> None:
        conn.events, conn.owed = None, owed
        with self.lock:
            self.idle[conn.node].append(conn)

    def connect(self) -> None:
        """Opens what the session asks for and runs the handshakes until its connect outcome."""
        self.session.handle_timeout(now())
        conns = {}
        while (node := self.session.poll_connect(now())) is not None:
            if conn := self.open(node):
                conns[node] = conn
        with _Waiter() as waiter:
            while not split_option(self.session.connect_outcome())[0]:
                waiter.wait(conns.values(), self.session.poll_timeout())
                self.session.handle_timeout(now())
        for conn in conns.values():
            self.keep(conn, 0) if conn.alive and not conn.hs else conn.close()

    def run(self, build: Any, started: Any = None) -> Any:
        """Builds an operation (``build()``: its ``Handle``) and drives it to its outcome (a
        ``result<outcome, error>`` value), dropping it at the end (on one quiet connection:
        in ``spent``, dropped during the next operation's first wait or ``close``). ``started(lent)``, where
        given, builds it and takes its first step in one engine call: the fast path, used
        unless a pooled connection still owes an earlier operation replies."""
        if started is not None and len(self.idle) == 1:
            conn = self.take_idle(0)
            if conn is not None:
                if conn.owed == 0 and conn.quiet():
                    return self._run_alone(conn, started)
                self.keep(conn, conn.owed)  # not the hot path's: the general one takes it again
        return self._run_any(build, started)

    def _run_alone(self, conn: Conn, started: Any) -> Any:
        """``run``'s hot path: one node, its pooled connection quiet and owing nothing, the
        operation built and started in one engine call (in a session slot, which the engine
        frees with the outcome). The same loop as ``_run_any`` without its per-node
        bookkeeping: send what a step says, wait on the connection's own ``poll`` for the
        reply or the step's deadline, hand the engine what happened."""
        events: list[Any] = []
        conn.events = events
        op, after, waiter = None, None, None
        try:
            op, raw = started(ONE_NODE_LENT)
            transmits, timeout, over, outcome, connections = _flat.decode(raw, op)
            while True:
                for _, data in transmits:
                    conn.send(data)
                if over:
                    after = connections
                    return outcome
                if not events:
                    if waiter is None and conn.quiet():
                        if self.spent:  # dropped while the reply is on its way
                            self.drop_spent()
                        data = conn.wait_alone(timeout)
                        if data is not None:  # the reply: straight to the engine
                            transmits, timeout, over, outcome, connections = _flat.decode(op.feed(now(), 0, data), op)
                            continue
                    else:  # a send left bytes over, or the connection closed
                        waiter = waiter or _Waiter().__enter__()
                        waiter.wait((conn,), timeout)
                raw = on_event(op, events.pop(0)) if events else op.tick(now())
                transmits, timeout, over, outcome, connections = _flat.decode(raw, op)
                if not conn.alive and not over:  # lost: a new one where the session allows
                    replaced = {0: conn}
                    self.reopen({0}, replaced, events)
                    conn = replaced[0]
        finally:
            if waiter is not None:
                waiter.__exit__()
            conn.events = None
            if op is None and conn.alive:  # never built: lent back as it was
                self.keep(conn, 0)
            elif conn.alive and after is not None and after[0][0] == _flat.KEEP:
                self.keep(conn, after[0][1])
            else:  # out of step, silent (the session backs the node off), or interrupted
                conn.close()
            if op is not None and after is None:  # did not end: its slot is abandoned
                op.drop()
            if self.spent:
                self.drop_spent()

    def _run_any(self, build: Any, started: Any = None) -> Any:
        """``run`` over any number of nodes, connections still connecting, owing replies or in
        their handshake."""
        conns: dict[int, Conn] = {}
        events: list[Any] = []  # (node, bytes) read, a node lost, or ~node lent; the connections append
        lent = bytearray(len(self.idle))
        owing = False
        for node in range(len(self.idle)):
            conn = self.take_idle(node) or self.open(node)
            if conn and conn.alive:
                conn.events, conns[node], lent[node] = events, conn, 1
                owing = owing or conn.owed > 0
        op, after, waiter, alone = None, None, None, None
        try:
            if started is not None and not owing:
                op, first = started(bytes(lent))
            else:
                op = build()
                for node, conn in list(conns.items()):
                    if conn.owed and not op.discard_replies(node, conn.owed):
                        conn.events, conn.failed = None, True
                        conn.close()  # cannot skip what it owes (a status): another connection
                        del conns[node]
                        lent[node] = 0
                        if (fresh := self.open(node)) and fresh.alive:
                            fresh.events, conns[node], lent[node] = events, fresh, 1
                first = op.start(now(), bytes(lent))
            step = _flat.decode(first, op)
            lost = {node for node, given in enumerate(lent) if not given}
            alone = next(iter(conns.values())) if len(conns) == 1 else None
            while True:
                for node, data in step.transmits:
                    conns[node].write(data)
                if step.over:
                    after = step.connections
                    return step.outcome
                if lost:
                    self.reopen(lost, conns, events)
                if not events:
                    if alone is not None and waiter is None and alone.quiet():
                        if self.spent:  # dropped while the reply is on its way
                            self.drop_spent()
                        if (data := alone.wait_alone(step.timeout)) is not None:
                            events.append((alone.node, data))
                    else:  # several nodes, or a connection still connecting or sending
                        waiter = waiter or _Waiter().__enter__()
                        waiter.wait(conns.values(), step.timeout)
                if events:
                    event = events.pop(0)
                    if event.__class__ is int and event >= 0:
                        lost.add(event)
                    raw = on_event(op, event)
                else:
                    raw = op.tick(now())
                step = _flat.decode(raw, op)
        finally:
            if waiter is not None:
                waiter.__exit__()
            for node, conn in conns.items():
                conn.events = None
                if op is None and conn.alive and not conn.hs:  # never built: lent back as it was
                    self.keep(conn, conn.owed)
                elif conn.alive and after is not None and after[node][0] == _flat.KEEP:
                    self.keep(conn, after[node][1])
                else:  # out of step, silent (the session backs the node off), or interrupted
                    conn.close()
            self.drop_spent()  # what this operation's wait had no time for (a reply at once)
            if op is not None and not (after is not None and op.engine_frees):  # a slot over is freed
                if alone is None or waiter is not None or after is None:  # not the hot path
                    op.drop()
                else:
                    self.spent.append(op)


class _Waiter:
    """One selector for one loop: waits until a socket is ready or the earliest deadline (the
    machine's, or a handshake's), and runs the handshakes' timeouts."""

    def __enter__(self) -> _Waiter:
        self.sel, self.masks = selectors.PollSelector(), {}  # no fd to open per loop, unlike epoll
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sel.close()

    def wait(self, conns: Any, deadline: float | None) -> None:
        for conn in [c for c in self.masks if not c.alive]:  # first: a new socket may reuse its fd
            self.sel.unregister(conn.fd)
            del self.masks[conn]
        live = [c for c in conns if c.alive]
        for conn in live:  # by fd: wrapping a socket in TLS keeps the fd, not the object
            mask = conn.mask()
            if self.masks.get(conn) != mask:
                (self.sel.modify if conn in self.masks else self.sel.register)(conn.fd, mask, conn)
                self.masks[conn] = mask
        deadlines = [at for at in [deadline] + [c.hs.poll_timeout() for c in live if c.hs] if at is not None]
        wait = min(max(0.0, (min(deadlines) - now()) / 1000) if deadlines else IDLE_WAIT_S, IDLE_WAIT_S)
        if self.masks:
            for key, mask in self.sel.select(wait):
                key.data.ready(mask)
        else:
            time.sleep(wait)  # no socket to wait on: the next deadline is all there is
        t = now()
        for conn in [c for c in live if c.alive and c.hs]:
            if (at := conn.hs.poll_timeout()) is not None and at <= t:
                conn.hs.handle_timeout(t)
                conn.step()
