"""The glue between the engine component and ``socket`` + ``selectors``: sockets, the clock and
the wait for the next deadline. Every decision (which node to connect, retries, quorum, what a
reply means) is the engine's; this file only moves bytes and honours the deadlines the
machines name. A call blocks its thread; several threads may run operations on one pool at
once (each operation borrows its own connections).
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time

from ._engine import Handle, field, now, split_option

IDLE_WAIT_S = 1.0  # a guard only: while anything waits for a reply, a machine names a deadline
R, W = selectors.EVENT_READ, selectors.EVENT_WRITE


class Conn:
    """One socket to one node: its handshake first, then lent to one operation at a time."""

    def __init__(self, pool: Pool, node: int, handshake: Handle) -> None:
        self.pool, self.node, self.hs, self.op = pool, node, handshake, None
        self.owed, self.out, self.queued, self.alive, self.failed = 0, b"", [], True, False
        ep = pool.session.endpoint(node)
        try:
            family, kind, proto, _, addr = socket.getaddrinfo(field(ep, "host"), field(ep, "port"), type=socket.SOCK_STREAM)[0]
            self.sock = socket.socket(family, kind, proto)
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

    def events(self, mask: int) -> None:
        if mask & W and self.connecting:
            self.connecting = False
            if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                return self.connect_failed()
            self.step()
        if mask & W and self.alive:
            self.send(b"")
        if mask & R and self.alive:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                return self.close()
            if self.hs:
                self.hs.handle_input(data, now())
                self.step()
            elif self.op:
                self.op.handle_input(self.node, data, now())

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

    def write(self, data: bytes) -> None:
        """An operation's bytes: they wait for the handshake to end."""
        self.queued.append(data) if self.hs else self.send(data)

    def send(self, data: bytes) -> None:
        self.out += data
        try:
            if self.out and not self.connecting:
                self.out = self.out[self.sock.send(self.out) :]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.close()

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
        if self.op:
            self.op.handle_disconnect(self.node, now())


class Pool:
    """The connections of one session, per node; ``run`` drives one operation to its outcome."""

    def __init__(self, session: Handle) -> None:
        self.session, self.lock, self.connected = session, threading.Lock(), False
        self.idle: list[list[Conn]] = [[] for _ in range(session.nodes())]

    def open(self, node: int) -> Conn | None:
        handshake = self.session.connect(node, now())
        return handshake and Conn(self, node, Handle(self.session.engine, "handshake", handshake))

    def close(self) -> None:
        with self.lock:
            for conns in self.idle:
                for conn in conns:
                    conn.failed = True
                    conn.close()
                conns.clear()

    def connect(self) -> None:
        """Opens what the session asks for and runs the handshakes until its connect outcome."""
        self.session.handle_timeout(now())
        conns = {}
        while (node := self.session.poll_connect(now())) is not None:
            conns[node] = self.open(node)
        self.run(None, {n: c for n, c in conns.items() if c})

    def run(self, op: Handle | None, conns: dict[int, Conn] | None = None):
        """``op``'s outcome; without ``op``, drives ``conns`` until the connect outcome."""
        self.session.handle_timeout(now())
        if op is not None:
            conns = {}
            for node in range(len(self.idle)):
                with self.lock:
                    conn = self.idle[node].pop() if self.idle[node] else None
                if conn and not op.discard_replies(node, conn.owed):
                    conn.failed = True
                    conn.close()
                    conn = None
                conn = conn or self.open(node)
                if conn:
                    conn.op, conns[node] = op, conn
        assert conns is not None
        sel, masks = selectors.DefaultSelector(), {}
        try:
            while True:
                if op is not None:
                    while (tx := op.poll_transmit(now())) is not None:
                        conn = conns.get(tx.node)
                        conn.write(tx.bytes) if conn and conn.alive else op.handle_disconnect(tx.node, now())
                    if (outcome := op.poll_outcome()) is not None:
                        return outcome
                elif split_option(self.session.connect_outcome())[0]:
                    return None
                live = [c for c in conns.values() if c.alive]
                for conn in live:
                    mask = R | (W if conn.connecting or conn.out else 0)
                    if masks.get(conn) != mask:
                        (sel.modify if conn in masks else sel.register)(conn.sock, mask, conn)
                        masks[conn] = mask
                for conn in [c for c in masks if not c.alive]:
                    sel.unregister(conn.sock)
                    del masks[conn]
                machine = op or self.session
                deadline = machine.poll_timeout()
                deadlines = [at for at in [deadline] + [c.hs.poll_timeout() for c in live if c.hs] if at is not None]
                wait = min(max(0.0, (min(deadlines) - now()) / 1000) if deadlines else IDLE_WAIT_S, IDLE_WAIT_S)
                if masks:
                    for key, mask in sel.select(wait):
                        key.data.events(mask)
                else:
                    time.sleep(wait)  # no socket to wait on: the next deadline is all there is
                t = now()
                for conn in [c for c in conns.values() if c.alive and c.hs]:
                    if (at := conn.hs.poll_timeout()) is not None and at <= t:
                        conn.hs.handle_timeout(t)
                        conn.step()
                if deadline is not None and deadline <= t:
                    machine.handle_timeout(t)
        finally:
            sel.close()
            for node, conn in conns.items():
                owed = op.handover(node) if op is not None and conn.alive and not conn.hs else 0
                conn.op = None
                if conn.alive and (owed is None or conn.hs):
                    conn.close()  # out of step with the next operation, or never ready
                elif conn.alive:
                    conn.owed = owed
                    with self.lock:
                        self.idle[node].append(conn)
