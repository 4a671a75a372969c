"""The blocking client: ``Client`` (one engine instance and its sessions) and ``Lease`` (a held
lock, semaphore permit, read-write hold or set of names, optionally renewed by a thread running the engine's
renewal schedule).

Owns: which session serves which TTL/fencing pair, and the renewal thread's life. Every number
about the protocol (retry delays, renewal times, when a lease is lost) comes from the engine.
A ``Lease`` dropped without ``release()`` is not released from a finalizer (no network I/O in
``__del__``): its key expires at its TTL, and its renewal thread stops once the lease is
collected or lost.
"""

from __future__ import annotations

import ssl
import threading
import weakref
from functools import partial
from typing import Any, Iterable

import wasmtime.component as wc

_Variant = wc.Variant

from ._driver import Pool
from ._engine import MAX_SPAN_MS, Engine, EngineError, Handle, Operation, Record, entropy, field, now, split_option, split_result
from ._slots import Slots
from .errors import InvalidArgument, LockLost, engine_errors, from_engine

LAYOUTS = ("tagged", "redis-py", "python-redis-lock")
# Operations the engine also builds and starts in one call, in a session slot
# (`<method>-flat-packed`).
STARTED = ("acquire", "release", "extend")


class Many(tuple):
    """The names of a multi-name lock, as a lease's shape: the engine's ``…-many`` calls take
    them in place of a name (and sort, bound and check them: a bad set is ``InvalidArgument``
    of kind ``no-names``, ``too-many-names``, ``duplicate-name``, …)."""

    __slots__ = ()


def many_of(names: Iterable[str]) -> Many:
    """``names`` as a multi-name lock's shape; a lone string is refused (it would be taken as
    its characters)."""
    if isinstance(names, (str, bytes)):
        raise InvalidArgument("names must be a list of lock names, not one string", "invalid")
    return Many(names)


def shape_of(limit: int | None, mode: str | None, names: Iterable[str] | None = None) -> Any:
    """The engine's ``shape`` of a semaphore's permit (``limit``) or a read-write lock's hold
    (``mode``: ``read`` or ``write``), or a multi-name lock's set (``names``, a ``Many``);
    ``None`` for the lock itself. The engine checks the values (a limit of 0 or over its
    bound is ``InvalidArgument`` of kind ``bad-limit``)."""
    if limit is None and mode is None and names is None:  # the lock itself: the hot path
        return None
    if sum(x is not None for x in (limit, mode, names)) > 1:
        raise InvalidArgument("a lease is a permit (limit), a read-write hold (mode) or a set of names (names), not several", "invalid")
    if names is not None:
        return many_of(names)
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MAX_SPAN_MS:
            raise InvalidArgument(f"limit must be a whole number of permits, not {limit!r}", "invalid")
        return wc.Variant("semaphore", Record(limit=limit, fair=None))
    if mode is None:
        return None
    if mode not in ("read", "write"):
        raise InvalidArgument(f"mode must be 'read' or 'write', not {mode!r}", "invalid")
    return wc.Variant(mode)


def shaped(method: str, shape: Any, name: str, *rest: Any) -> tuple[Any, ...]:
    """``method``'s name and arguments for a lease of ``shape``: the lock's own call, its
    ``…_shaped`` twin with the shape after the name, or for a set of names its ``…_many``
    twin with the names in place of the name."""
    if shape is None:
        return (method, name, *rest)
    if isinstance(shape, Many):
        return (f"{method}_many", list(shape), *rest)
    return (f"{method}_shaped", name, shape, *rest)


def millis(seconds: float | None, what: str) -> int | None:
    """Seconds (the Python libraries' unit) as the engine's u32 milliseconds."""
    if seconds is None:
        return None
    if not isinstance(seconds, (int, float)) or seconds != seconds or not 0 <= seconds * 1000 <= MAX_SPAN_MS:
        raise InvalidArgument(f"{what} must be between 0 and {MAX_SPAN_MS // 1000} seconds, not {seconds!r}", "invalid")
    return int(seconds * 1000)


class Client:
    """A handle on the lock servers: one engine instance, one session (and connection pool)
    per TTL/fencing/fair triple. Thread-safe; close it to close every connection."""

    pool_class: Any = Pool  # the driver: sockets and selectors

    def __init__(
        self,
        urls: str | Iterable[str],
        *,
        ttl: float | None = None,
        fenced: bool = False,
        fair: bool = False,
        request_timeout: float | None = None,
        key_prefix: str | None = None,
        layout: str | None = None,
        tls_ca: str | None = None,
        no_scripts: bool = False,
    ) -> None:
        """``urls``: ``redis://[user:pass@]host:port[/db]``, ``rediss://`` for TLS (several:
        Redlock). ``ttl`` and ``request_timeout`` in seconds (defaults 30 and 1); ``layout``:
        ``tagged`` (default), ``redis-py`` or ``python-redis-lock`` (share locks with those
        libraries); ``tls_ca``: a CA file to trust for ``rediss://`` (default: the system's);
        ``fair``: waiters queue in arrival order and a release hands the lock to the first live
        waiter (one node, ``tagged`` layout; every client of a lock must use it);
        ``no_scripts``: send no script, for servers that forbid them (acquire ``SET NX PX``,
        extend ``SET … IFEQ``, release ``DELIFEQ``/``DELEX … IFEQ``: Valkey 9.0+, Redis 8.4+;
        no fencing, re-entry or fair mode)."""
        if layout is not None and layout not in LAYOUTS:
            raise InvalidArgument(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}", "invalid")
        self.urls = [urls] if isinstance(urls, str) else list(urls)
        self.ttl, self.fenced, self.fair = millis(ttl, "ttl"), fenced, fair
        self._settings = dict(key_prefix=key_prefix, layout=layout, request_timeout_ms=millis(request_timeout, "request_timeout"), no_scripts=no_scripts)
        self.tls = ssl.create_default_context(cafile=tls_ca) if any(str(u).startswith("rediss://") for u in self.urls) else None
        self.engine = Engine()
        self._pools: dict[tuple[int | None, bool, bool], Pool] = {}
        self._lock, self._connect_lock = threading.Lock(), threading.Lock()
        self.pool(self.ttl, fenced)  # checks the options now

    @classmethod
    def connect(cls, urls: str | Iterable[str], **options: Any) -> Client:
        """A client whose nodes a majority of answered; raises ``Unavailable`` otherwise."""
        client = cls(urls, **options)
        try:
            client.ready(client.pool(client.ttl, client.fenced))
        except BaseException:
            client.close()
            raise
        return client

    def ready(self, pool: Pool) -> None:
        """Connects ``pool``'s session once, before its first machine: machines are built for
        what the handshakes found (RESP version, scripts). Raises ``Unavailable``."""
        if pool.connected:  # set once, never cleared: no lock needed to read it
            return
        with self._connect_lock:
            if not pool.connected:
                pool.connect()
                _, error = split_option(pool.session.connect_outcome())
                if error is not None:
                    raise from_engine(error)
                pool.connected = True

    def pool(self, ttl: int | None, fenced: bool, fair: bool | None = None) -> Pool:
        fair = self.fair if fair is None else fair
        pool = self._pools.get((ttl, fenced, fair))  # a dict read is atomic: the lock only to add
        if pool is not None:
            return pool
        with self._lock:
            pool = self._pools.get((ttl, fenced, fair))
            if pool is None:
                options = Record(nodes=self.urls, ttl_ms=ttl, fenced=fenced, fair=fair, **self._settings)
                with engine_errors():
                    session = Handle(self.engine, "session", self.engine.fallible("open", options, entropy()))
                pool = self._pools[(ttl, fenced, fair)] = self.pool_class(session, self.tls)
                pool.slots = Slots(session)
            return pool

    def run(self, pool: Pool, method: str, *args: Any) -> Any:
        """Builds operation ``method`` on ``pool``'s session and drives it to its outcome."""
        if not pool.connected:
            self.ready(pool)
        try:
            outcome = pool.run(*self.builders(pool, method, args))
        except EngineError as error:
            raise from_engine(error.error) from None
        if outcome.__class__ is _Variant and outcome.tag == "ok":  # what the flat layout gives
            return outcome.payload.payload
        ok, value = split_result(outcome)
        if not ok:
            raise from_engine(value)
        return value.payload

    def builders(self, pool: Any, method: str, args: tuple[Any, ...]) -> tuple[Any, Any]:
        """How ``pool.run`` builds operation ``method``: alone, and (for ``acquire``,
        ``release`` and ``extend``, the hot path) built and started in one engine call, in a
        session slot."""
        # Partials rather than closures: called once per operation, one Python frame less.
        build = partial(_build, self.engine, pool.session, method, args)
        return build, (partial(getattr(pool.slots, method), *args) if method in STARTED else None)

    def acquire_many(self, names: Iterable[str], **options: Any) -> Lease:
        """Acquires every name in ``names`` at once, all or nothing, under one token: one
        lease for the set (extended, renewed and released together; fenced, one fence above
        every name's). A held name takes nothing. ``acquire``'s options but ``fair``,
        ``limit`` and ``mode`` (a set is never fair: ``InvalidArgument`` of kind
        ``multi-unsupported``). A bad set is ``InvalidArgument`` (``no-names``,
        ``too-many-names`` above 16, ``duplicate-name``, a bad name's kind)."""
        names = many_of(names)
        return self.acquire(", ".join(names), names=names, **options)

    def release_many(self, names: Iterable[str], token: str) -> None:
        """Releases every name in ``names`` held by ``token`` (the set, in any order)."""
        self.run(self.pool(self.ttl, self.fenced), *shaped("release", many_of(names), "", token, now(), entropy()))

    def extend_many(self, names: Iterable[str], token: str, ttl: float) -> float:
        """Extends every name in ``names`` held by ``token`` to ``ttl`` seconds from now, all
        or none; returns the new end of validity (monotonic milliseconds)."""
        extended = self.run(self.pool(self.ttl, self.fenced), *shaped("extend", many_of(names), "", token, millis(ttl, "ttl"), now(), entropy()))
        return float(field(extended, "valid_until"))

    def acquire(self, name: str, *, wait: float = 0, ttl: float | None = None, fenced: bool | None = None, fair: bool | None = None, auto_renewal: bool = False, limit: int | None = None, mode: str | None = None, names: Iterable[str] | None = None) -> Lease:
        """Acquires lock ``name``, waiting up to ``wait`` seconds for a holder to let go;
        ``fair``: queue in arrival order (default: the client's). ``limit``: one of ``limit``
        permits of the semaphore ``name`` instead; ``mode`` (``read``/``write``): a hold of
        the read-write lock ``name`` instead (both one node only). Raises ``NotAcquired``,
        ``Unavailable``, ``InvalidArgument``, ``ServerError`` (``wrong-type``: the name is
        another kind of lock; ``wrong-limit``: a permit lives under another limit).
        ``names``: the set of a multi-name lock instead (``name`` only names it in messages;
        see ``acquire_many``)."""
        shape = shape_of(limit, mode, names)
        pool = self.pool(self.ttl if ttl is None else millis(ttl, "ttl"), self.fenced if fenced is None else fenced, fair)
        lease = self.run(pool, *shaped("acquire", shape, name, millis(wait, "wait"), now(), entropy()))
        return Lease(self, pool, name, lease, auto_renewal, shape)

    def release(self, name: str, token: str, *, limit: int | None = None, mode: str | None = None) -> None:
        """Releases lock ``name`` held by ``token`` (from any process that has it); a
        semaphore's permit with ``limit``, a read-write lock's hold with ``mode``."""
        self.run(self.pool(self.ttl, self.fenced), *shaped("release", shape_of(limit, mode), name, token, now(), entropy()))

    def extend(self, name: str, token: str, ttl: float, *, limit: int | None = None, mode: str | None = None) -> float:
        """Extends lock ``name`` held by ``token`` (a permit or hold: ``limit``/``mode`` as
        ``release``) to ``ttl`` seconds from now; returns the new end of validity (monotonic
        milliseconds)."""
        extended = self.run(self.pool(self.ttl, self.fenced), *shaped("extend", shape_of(limit, mode), name, token, millis(ttl, "ttl"), now(), entropy()))
        return float(field(extended, "valid_until"))

    def status(self, name: str) -> Any:
        """What the nodes say about lock ``name``: ``.verdict`` is ``Variant('held', token)``,
        ``Variant('free')``, ``Variant('unknown')`` (too few nodes read: never free) or
        ``Variant('shared')`` (a semaphore's permits or a read-write lock's holds live);
        ``.nodes`` each node's reading (``holder``, ``ttl-ms``, ``fence``, ``queued`` (the
        waiters queued on the name: the fair mutex's, fair semaphore's or waiting writers of
        the kind holding it, every kind's when free), ``permits`` with ``limit`` and
        ``holders``, ``rw`` with ``writer`` and ``readers``)."""
        return self.run(self.pool(self.ttl, self.fenced), "status", name, now())

    def reset(self, name: str) -> list[Any]:
        """Force-unlocks ``name`` (its holder loses it); per node, the keys deleted or why the
        node failed (a ``Variant`` of ``node-failure``)."""
        return [split_result(node)[1] for node in self.run(self.pool(self.ttl, self.fenced), "reset", name, now())]

    def close(self) -> None:
        """Closes every connection. Leases not released expire at their TTL."""
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()
            pool.slots.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _build(engine: Engine, session: Handle, method: str, args: tuple[Any, ...]) -> Operation:
    return Operation(engine, "operation", session.fallible(method, *args))


class Lease:
    """A held lock, semaphore permit, read-write hold or set of names (``shape`` a ``Many``):
    ``token``, ``fence`` (fenced clients; a read hold's is the last write's), ``valid_until``
    (monotonic ms)."""

    __slots__ = ("client", "pool", "name", "shape", "token", "fence", "valid_until", "lost", "_released", "_stop", "_thread", "__weakref__")

    def __init__(self, client: Client, pool: Pool, name: str, lease: Any, auto_renewal: bool, shape: Any = None) -> None:
        self.client, self.pool, self.name, self.shape = client, pool, name, shape
        self.token: str = lease.token
        self.fence: int | None = lease.fence
        self.valid_until: float = getattr(lease, "valid-until")
        self.lost: LockLost | None = None
        self._released = False
        self._stop: threading.Event | None = None  # the renewal thread's, only with one
        self._thread: threading.Thread | None = None
        if auto_renewal:
            self._stop = threading.Event()
            with engine_errors():
                renewal = Handle(client.engine, "renewal", pool.session.fallible(*shaped("renewal", shape, name, lease, entropy())))
            self._thread = threading.Thread(target=_renew, args=(weakref.ref(self), renewal, self._stop), name=f"distlock-renewal:{name}", daemon=True)
            self._thread.start()
            # Collected while held: stop renewing (setting an event, no I/O); the key expires.
            weakref.finalize(self, self._stop.set)

    @property
    def validity(self) -> float:
        """Seconds the holder may still act as the owner (0 once lost or released)."""
        return 0.0 if self.lost or self._released else max(0.0, (self.valid_until - now()) / 1000)

    # Extend and release go through the session the lease was taken on, not the client's
    # default one: a lease taken with `fair=True` must be released by the fair script, which
    # hands the lock to the first waiter (the plain one only deletes it).

    def extend(self, ttl: float) -> None:
        """Extends the lease to ``ttl`` seconds from now. Raises ``LockLost``."""
        extended = self.client.run(self.pool, *shaped("extend", self.shape, self.name, self.token, millis(ttl, "ttl"), now(), entropy()))
        self.valid_until = float(field(extended, "valid_until"))

    def release(self) -> None:
        """Releases the lock. Raises ``LockLost`` when it was no longer held."""
        if self._stop is None:  # no renewal thread: nothing to stop
            self._released = True
        else:
            self.stop_renewal()
        if self.lost:
            raise self.lost
        self.client.run(self.pool, *shaped("release", self.shape, self.name, self.token, now(), entropy()))

    def stop_renewal(self) -> None:
        self._released = True
        if self._stop is not None:
            self._stop.set()
        if self._thread and self._thread is not threading.current_thread():
            self._thread.join()


def _renew(lease_ref: Any, renewal: Handle, stop: threading.Event) -> None:
    """The renewal thread: waits for the schedule's next time (or a stop), runs its events."""
    try:
        while not stop.is_set():
            at = renewal.poll_timeout()
            if at is None or stop.wait(max(0.0, (at - now()) / 1000)):
                return
            renewal.handle_timeout(now())
            while (event := renewal.poll_event(now(), entropy())) is not None:
                lease = lease_ref()
                if lease is None:
                    return  # the lease was dropped: it expires at its TTL
                if isinstance(event, str):  # lost(lost-reason); otherwise extend(operation)
                    lease.lost = LockLost(f"lease of {lease.name} lost ({event})", event)
                    return
                op = Operation(renewal.engine, "operation", event)
                lease.pool.run(lambda op=op: op)  # the renewal hears the extend's outcome itself
                del lease
            lease = lease_ref()
            if lease is not None:
                lease.valid_until = renewal.valid_until()
            del lease
    except Exception as error:  # a renewal that cannot run keeps no lease: say it is lost
        if (lease := lease_ref()) is not None:
            lease.lost = LockLost(f"the renewal of {lease.name} failed: {error!r}", "renewal-failed")
        raise
    finally:
        renewal.drop()
