"""The glue between the engine component and ``asyncio`` streams: the asyncio twin of
``_driver.py``. Every decision is the engine's; this file moves bytes and waits on the event
loop until the earliest deadline a machine names. Nothing blocks the loop.
"""

from __future__ import annotations

import asyncio
import contextlib

from ._engine import Handle, field, now, split_option

IDLE_WAIT_S = 1.0  # a guard only: while anything waits for a reply, a machine names a deadline


class AsyncConn:
    """One stream to one node: its handshake first, then lent to one operation at a time."""

    def __init__(self, pool: AsyncPool, node: int, handshake: Handle) -> None:
        self.pool, self.node, self.hs, self.op = pool, node, handshake, None
        self.owed, self.inbox, self.queued, self.alive, self.failed = 0, [], [], True, False
        self.writer: asyncio.StreamWriter | None = None
        self.wake = asyncio.Event()
        self.task = asyncio.ensure_future(self.serve())

    async def serve(self) -> None:
        ep = self.pool.session.endpoint(self.node)
        try:
            reader, self.writer = await asyncio.open_connection(field(ep, "host"), field(ep, "port"))
        except OSError:
            if self.alive and self.hs:
                self.failed = True
                self.pool.session.connect_failed(self.node, now())
                self.hs.drop()
                self.hs = None
            return self.close()
        self.step()
        with contextlib.suppress(OSError):
            while self.alive and (data := await reader.read(65536)):
                if self.hs:
                    self.hs.handle_input(data, now())
                    self.step()
                elif self.op:
                    self.op.handle_input(self.node, data, now())
                else:
                    self.inbox.append(data)  # owed to the last operation: the next one skips it
                self.wake.set()
        self.close()

    def step(self) -> None:
        while (out := self.hs.poll_transmit()) is not None:
            self.writer.write(out)
        done, error = split_option(self.hs.poll_outcome())
        if not done:
            return
        self.hs.drop()
        self.hs = None
        if error is not None:
            self.failed = True
            return self.close()
        for data in self.queued:
            self.write(data)
        self.queued = []

    def write(self, data: bytes) -> None:
        """An operation's bytes: they wait for the handshake to end."""
        if self.hs:
            self.queued.append(data)
        elif self.writer is not None:
            self.writer.write(data)

    def close(self) -> None:
        if not self.alive:
            return
        self.alive = False
        if self.writer:
            self.writer.close()
        if self.task is not asyncio.current_task():
            self.task.cancel()
        if self.hs:
            self.hs.handle_disconnect(now())
            self.hs.drop()
            self.hs = None
        elif not self.failed:
            self.pool.session.disconnected(self.node, now())
        if self.op:
            self.op.handle_disconnect(self.node, now())
        self.wake.set()


class AsyncPool:
    """The connections of one session, per node; ``run`` drives one operation to its outcome."""

    def __init__(self, session: Handle) -> None:
        self.session, self.connected = session, False
        self.idle: list[list[AsyncConn]] = [[] for _ in range(session.nodes())]

    def open(self, node: int, wake: asyncio.Event) -> AsyncConn | None:
        handshake = self.session.connect(node, now())
        if not handshake:
            return None
        conn = AsyncConn(self, node, Handle(self.session.engine, "handshake", handshake))
        conn.wake = wake
        return conn

    def close(self) -> None:
        for conns in self.idle:
            for conn in conns:
                conn.failed = True
                conn.close()
            conns.clear()

    async def connect(self) -> None:
        """Opens what the session asks for and runs the handshakes until its connect outcome."""
        self.session.handle_timeout(now())
        wake, conns = asyncio.Event(), {}
        while (node := self.session.poll_connect(now())) is not None:
            conns[node] = self.open(node, wake)
        await self.run(None, {n: c for n, c in conns.items() if c}, wake)

    async def run(self, op: Handle | None, conns: dict | None = None, wake: asyncio.Event | None = None):
        """``op``'s outcome; without ``op``, drives ``conns`` until the connect outcome."""
        self.session.handle_timeout(now())
        wake = wake or asyncio.Event()
        if op is not None:
            conns = {}
            for node in range(len(self.idle)):
                conn = self.idle[node].pop() if self.idle[node] else None
                if conn and not op.discard_replies(node, conn.owed):
                    conn.failed = True
                    conn.close()
                    conn = None
                conn = conn or self.open(node, wake)
                if conn:
                    conn.op, conn.wake, conns[node] = op, wake, conn
                    for data in conn.inbox:
                        op.handle_input(node, data, now())
                    conn.inbox = []
        assert conns is not None
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
                machine = op or self.session
                deadline = machine.poll_timeout()
                deadlines = [at for at in [deadline] + [c.hs.poll_timeout() for c in live if c.hs] if at is not None]
                wait = max(0.0, (min(deadlines) - now()) / 1000) if deadlines else IDLE_WAIT_S
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(wake.wait(), min(wait, IDLE_WAIT_S))
                wake.clear()
                t = now()
                for conn in [c for c in conns.values() if c.alive and c.hs]:
                    if (at := conn.hs.poll_timeout()) is not None and at <= t:
                        conn.hs.handle_timeout(t)
                        conn.step()
                if deadline is not None and deadline <= t:
                    machine.handle_timeout(t)
        finally:
            for node, conn in conns.items():
                owed = op.handover(node) if op is not None and conn.alive and not conn.hs else 0
                conn.op = None
                if conn.alive and (owed is None or conn.hs):
                    conn.close()  # out of step with the next operation, or never ready
                elif conn.alive:
                    conn.owed = owed
                    self.idle[node].append(conn)
