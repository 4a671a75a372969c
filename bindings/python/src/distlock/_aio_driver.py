"""The glue between the engine component and ``asyncio`` (a protocol per connection): the
asyncio twin of ``_driver.py``. Every decision is the engine's; this file moves bytes and waits on the event
loop until the earliest deadline a machine names. Nothing blocks the loop. An operation is
driven by the engine's flat calls, one per event, as in ``_driver.py``.

A one-node pool without TLS whose pooled connection is quiet runs its slot operations on a
hot path (``AsyncPool._run_alone``): no per-operation dict, list copy or wake object, the one
future awaited per reply set straight from ``data_received``, and a timer per connection that
is re-armed only when a deadline comes earlier than the one it already holds (an early ring
just waits again: the engine is ticked only at its deadline). Handshakes, TLS, several nodes
and connections owing replies take the general loop (``_run_any``).

While an operation has no connection to a node (it lost it, or had none), each of its steps
asks the session for a new one (``AsyncPool.reopen``: the session says when) and lends it once
its handshake ends (``lend``), as in ``_driver.py``; on the hot path the new connection's
handshake is awaited by the general wait (``_wait``), which runs its deadline.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from . import _flat
from ._engine import Handle, field, now, on_event, split_option

IDLE_WAIT_S = 1.0  # a guard only: while anything waits for a reply, a machine names a deadline
IDLE_WAIT_MS = IDLE_WAIT_S * 1000
ONE_NODE_LENT = b"\x01"  # `lent` of a one-node session whose connection is lent


class Wake:
    """What an operation (or the pool's connect) awaits: set by a connection when it reads
    bytes or is lost. ``asyncio.Event`` with ``wait_for`` would start a task and a timer
    handle per wait; this is one future and one timer."""

    __slots__ = ("is_set", "_future")

    def __init__(self) -> None:
        self.is_set = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        self.is_set = True
        _resolve_pending(self._future)

    def clear(self) -> None:
        self.is_set = False

    async def wait(self, timeout_s: float) -> None:
        """Until set (returns at once if it is) or ``timeout_s`` seconds."""
        if self.is_set:
            return
        loop = asyncio.get_running_loop()
        future = self._future = loop.create_future()
        timer = loop.call_later(timeout_s, _resolve_pending, future)
        try:
            await future
        finally:
            timer.cancel()
            self._future = None


class Alarm(Wake):
    """A connection's wake for the hot path, kept with it: ``set`` by the connection when it
    reads bytes or is lost; ``wait_until`` awaits one future and re-arms the connection's one
    timer only when asked for an earlier time than it holds. A timer left from an earlier
    operation may ring first: ``wait_until`` then returns early and its caller waits again
    (it checks the clock), so a wait never ends later than asked and never creates a timer
    per operation."""

    __slots__ = ("_timer", "_timer_at")

    def __init__(self) -> None:
        super().__init__()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def _ring(self) -> None:
        self._timer = None
        _resolve_pending(self._future)

    async def wait_until(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        """Until set, ``at`` (``loop.time()``) or an earlier timer's ring."""
        if self.is_set:
            return
        timer = self._timer
        if timer is None or self._timer_at > at:
            if timer is not None:
                timer.cancel()
            self._timer, self._timer_at = loop.call_at(at, self._ring), at
        future = self._future = loop.create_future()
        try:
            await future
        finally:
            self._future = None

    def stop(self) -> None:
        """Cancels the timer (the connection is closed)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _current_task() -> asyncio.Task[Any] | None:
    """The running task, or None when called outside the loop (``close`` may be)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _resolve_pending(future: asyncio.Future[None] | None) -> None:
    """Resolves ``future`` unless there is none or it is already done."""
    if future is not None and not future.done():
        future.set_result(None)


class AsyncConn(asyncio.Protocol):
    """One connection to one node: its handshake first, then lent to one operation at a time.
    Bytes arrive through ``data_received`` (the loop calls it; no reading task per
    connection); a task only opens the connection."""

    def __init__(self, pool: AsyncPool, node: int, handshake: Handle, wake: Wake) -> None:
        self.pool, self.node, self.hs, self.wake = pool, node, handshake, wake
        self.events: list[Any] | None = None  # the borrowing operation's next step's events
        self.owed, self.inbox, self.queued, self.alive, self.failed = 0, [], [], True, False
        self.transport: asyncio.Transport | None = None
        self.alarm = Alarm()  # the hot path's wake (``AsyncPool._run_alone``)
        self.task = asyncio.ensure_future(self.open())

    async def open(self) -> None:
        ep = self.pool.session.endpoint(self.node)
        try:
            host, tls = field(ep, "host"), self.pool.tls if field(ep, "tls") else None
            loop = asyncio.get_running_loop()
            await loop.create_connection(lambda: self, host, field(ep, "port"), ssl=tls, server_hostname=host if tls else None)
        except OSError:
            if self.alive and self.hs:
                self.failed = True
                self.pool.session.connect_failed(self.node, now())
                self.hs.drop()
                self.hs = None
            return self.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.alive:  # closed while connecting
            transport.close()
            return
        self.step()

    def data_received(self, data: bytes) -> None:
        if not self.alive:
            return
        if self.hs:
            self.hs.handle_input(data, now())
            self.step()
        elif self.events is not None:
            self.events.append((self.node, data))
        else:
            self.inbox.append(data)  # owed to the last operation: the next one skips it
        self.wake.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def step(self) -> None:
        while (out := self.hs.poll_transmit()) is not None:
            self.transport.write(out)  # type: ignore[union-attr]
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
        if self.events is not None:  # node-event `connected`: lent to the running operation
            self.events.append(~self.node)

    def quiet(self) -> bool:
        """Connected, handshake over, nothing read while idle: only a reply to wait for."""
        return self.alive and self.transport is not None and not (self.hs or self.inbox or self.queued)

    def write(self, data: bytes) -> None:
        """An operation's bytes: they wait for the handshake to end."""
        if self.hs:
            self.queued.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if not self.alive:
            return
        self.alive = False
        if self.transport is not None:
            self.transport.close()
        if not self.task.done() and self.task is not _current_task():
            self.task.cancel()
        if self.hs:
            self.hs.handle_disconnect(now())
            self.hs.drop()
            self.hs = None
        elif not self.failed:
            self.pool.session.disconnected(self.node, now())
        if self.events is not None:
            self.events.append(self.node)  # node-event `disconnect`
        self.alarm.stop()
        self.wake.set()


class AsyncPool:
    """The connections of one session, per node; ``run`` drives one operation to its outcome."""

    def __init__(self, session: Handle, tls: ssl.SSLContext | None = None) -> None:
        self.session, self.tls, self.connected = session, tls, False
        self.idle: list[list[AsyncConn]] = [[] for _ in range(session.nodes())]

    def open(self, node: int, wake: Wake) -> AsyncConn | None:
        handshake = self.session.connect(node, now())
        return handshake and AsyncConn(self, node, Handle(self.session.engine, "handshake", handshake), wake)

    def reopen(self, lost: set[int], conns: dict[int, AsyncConn], events: list[Any], wake: Wake) -> None:
        """Opens a connection for each node in ``lost`` (the running operation has none there)
        that the session allows now, into ``conns``; each appends ``~node`` to ``events`` when
        its handshake ends (lent: node-event ``connected``). A node the session holds back
        (its backoff) stays in ``lost``, asked for again at the operation's next step."""
        for node in list(lost):
            fresh = self.open(node, wake)
            if fresh is not None and fresh.alive:
                fresh.events, conns[node] = events, fresh
                lost.discard(node)

    def take_idle(self, node: int) -> AsyncConn | None:
        """An idle connection to ``node`` fit to lend, or None. One the server closed while it
        was idle (a restart, ``CLIENT KILL``, its idle timeout) is closed already: the loop
        ran its ``connection_lost``; it is passed over, and the caller opens a new one."""
        idle = self.idle[node]
        while idle:
            conn = idle.pop()
            if conn.alive:
                return conn
        return None

    def close(self) -> None:
        for conns in self.idle:
            for conn in conns:
                conn.failed = True
                conn.close()
            conns.clear()

    async def connect(self) -> None:
        """Opens what the session asks for and runs the handshakes until its connect outcome."""
        self.session.handle_timeout(now())
        wake, conns = Wake(), []
        while (node := self.session.poll_connect(now())) is not None:
            if conn := self.open(node, wake):
                conns.append(conn)
        while not split_option(self.session.connect_outcome())[0]:
            await _wait(wake, conns, self.session.poll_timeout())
            self.session.handle_timeout(now())
        for conn in conns:
            self.idle[conn.node].append(conn) if conn.alive and not conn.hs else conn.close()

    def run(self, build: Any, started: Any = None) -> Any:
        """``Pool.run`` of ``_driver.py`` on the event loop: an awaitable that builds an
        operation, drives it to its outcome (a ``result<outcome, error>`` value) and drops it.
        A plain function choosing the coroutine, so the hot path awaits one coroutine, not two."""
        if started is not None and len(self.idle) == 1 and self.tls is None:
            idle = self.idle[0]
            if idle and idle[-1].owed == 0 and idle[-1].quiet():
                return self._run_alone(build, started)
        return self._run_any(build, started)

    async def _run_alone(self, build: Any, started: Any) -> Any:
        """``run``'s hot path: one node without TLS, its pooled connection quiet and owing
        nothing, the operation built and started in one engine call (in a session slot the
        engine frees with the outcome). The loop of ``_run_any`` without its per-node
        bookkeeping: write what a step says, await the connection's alarm until bytes arrive
        or the step's deadline, hand the engine what happened. Cancelled while waiting, the
        connection is closed (its late reply cannot reach another operation) and the slot
        abandoned, as on the general path. The connection is taken here, not in ``run``: a
        coroutine never awaited then holds none."""
        idle = self.idle[0]
        if not (idle and idle[-1].owed == 0 and idle[-1].quiet()):  # changed since `run` looked
            return await self._run_any(build, started)
        conn = idle.pop()
        events: list[Any] = []
        alarm = conn.alarm
        conn.events, conn.wake = events, alarm  # type: ignore[assignment]
        alarm.clear()
        loop = asyncio.get_running_loop()
        op, after = None, None
        try:
            op, raw = started(ONE_NODE_LENT)
            transmits, timeout, over, outcome, connections = _flat.decode(raw, op)
            while True:
                for _, data in transmits:
                    conn.write(data)
                if over:
                    after = connections
                    return outcome
                t = now()
                if not events:
                    if conn.transport is not None and not conn.hs:
                        limit = t + IDLE_WAIT_MS if timeout is None or timeout - t > IDLE_WAIT_MS else timeout
                        while not events and limit > t:  # an early ring (an older timer's) waits again
                            await alarm.wait_until(loop, loop.time() + (limit - t) / 1000)
                            alarm.clear()
                            t = now()
                    else:  # a new connection in its handshake: the general wait runs its deadline
                        await _wait(alarm, (conn,), timeout)
                        t = now()
                if events:
                    event = events.pop(0)
                    if event.__class__ is int:
                        raw = op.lose(t, event) if event >= 0 else op.lend(t, ~event)
                    else:
                        raw = op.feed(t, *event)
                else:
                    raw = op.tick(t)
                transmits, timeout, over, outcome, connections = _flat.decode(raw, op)
                if not conn.alive and not over:  # lost: a new one where the session allows
                    replaced = {0: conn}
                    self.reopen({0}, replaced, events, alarm)
                    conn = replaced[0]
        finally:
            conn.events = None
            if op is None and conn.alive:  # never built: lent back as it was
                self.idle[0].append(conn)
            elif conn.alive and after is not None and after[0][0] == _flat.KEEP:
                conn.owed = after[0][1]
                self.idle[0].append(conn)
            else:  # out of step, silent (the session backs the node off), or cancelled
                conn.close()
            if op is not None and after is None:  # did not end: its slot is abandoned
                op.drop()

    async def _run_any(self, build: Any, started: Any = None) -> Any:
        """``run`` over any number of nodes, connections still connecting, owing replies, in
        their handshake or over TLS."""
        wake, conns = Wake(), {}
        events: list[Any] = []  # (node, bytes) read, a node lost, or ~node lent; the connections append
        lent = bytearray(len(self.idle))
        owing = False
        for node in range(len(self.idle)):
            conn = self.take_idle(node)
            conn = conn or self.open(node, wake)
            if conn and conn.alive:
                conn.events, conn.wake, conns[node], lent[node] = events, wake, conn, 1
                owing = owing or conn.owed > 0
        op, after = None, None
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
                        if (fresh := self.open(node, wake)) and fresh.alive:
                            fresh.events, conns[node], lent[node] = events, fresh, 1
                first = op.start(now(), bytes(lent))
            for node, conn in conns.items():  # read while idle: owed to the last operation
                events[:0] = [(node, data) for data in conn.inbox]
                conn.inbox = []
            step = _flat.decode(first, op)
            lost = {node for node, given in enumerate(lent) if not given}
            while True:
                for node, data in step.transmits:
                    conns[node].write(data)
                if step.over:
                    after = step.connections
                    return step.outcome
                if lost:
                    self.reopen(lost, conns, events, wake)
                if not events:
                    await _wait(wake, conns.values(), step.timeout)
                if events:
                    event = events.pop(0)
                    if event.__class__ is int and event >= 0:
                        lost.add(event)
                    raw = on_event(op, event)
                else:
                    raw = op.tick(now())
                step = _flat.decode(raw, op)
        finally:
            for node, conn in conns.items():
                conn.events = None
                if op is None and conn.alive and not conn.hs:  # never built: lent back as it was
                    self.idle[node].append(conn)
                elif conn.alive and after is not None and after[node][0] == _flat.KEEP:
                    conn.owed = after[node][1]
                    self.idle[node].append(conn)
                else:  # out of step, silent (the session backs the node off), or cancelled
                    conn.close()
            if op is not None and not (after is not None and op.engine_frees):  # a slot over is freed
                op.drop()


async def _wait(wake: Wake, conns: Any, deadline: float | None) -> None:
    """Until a connection wakes the loop or the earliest deadline (the machine's, or a
    handshake's); then runs the handshakes' timeouts."""
    live = [c for c in conns if c.alive]
    deadlines = [at for at in [deadline] + [c.hs.poll_timeout() for c in live if c.hs] if at is not None]
    wait = max(0.0, (min(deadlines) - now()) / 1000) if deadlines else IDLE_WAIT_S
    await wake.wait(min(wait, IDLE_WAIT_S))
    wake.clear()
    t = now()
    for conn in [c for c in live if c.alive and c.hs]:
        if (at := conn.hs.poll_timeout()) is not None and at <= t:
            conn.hs.handle_timeout(t)
            conn.step()
