"""The ``asyncio`` twin of ``client.py``, ``lock.py`` and ``dogpile.py``: ``AsyncClient``, its
leases (renewed by a task on the engine's schedule), ``AsyncLock`` (``async with``),
``AsyncSemaphore``, ``AsyncRWLock``, ``AsyncMultiLock`` and ``async_get_or_compute``. The same
engine, the same decisions; only the driver (``_aio_driver.py``) differs.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import weakref
from typing import Any, Callable

from ._aio_driver import AsyncPool
import wasmtime.component as wc

from ._engine import EngineError, Handle, Operation, entropy, field, now, split_option, split_result
from .client import Client, Lease, many_of, millis, shape_of, shaped
from .dogpile import compute_pool, encoded, split_fetched, stored, waited_for
from .errors import InvalidArgument, LockError, LockLost, NotAcquired, engine_errors, from_engine
from .lock import urls_of

_Variant = wc.Variant


class AsyncClient(Client):
    """``Client`` over asyncio (a protocol per connection); every operation is a coroutine. Use it from one loop."""

    pool_class = AsyncPool

    @classmethod
    async def connect(cls, urls: Any, **options: Any) -> AsyncClient:  # type: ignore[override]
        """A client whose nodes a majority of answered; raises ``Unavailable`` otherwise."""
        client = cls(urls, **options)
        try:
            await client.ready(client.pool(client.ttl, client.fenced))
        except BaseException:
            client.close()
            raise
        return client

    async def ready(self, pool: Any) -> None:  # type: ignore[override]
        if not pool.connected:
            await pool.connect()
            _, error = split_option(pool.session.connect_outcome())
            if error is not None:
                raise from_engine(error)
            pool.connected = True

    async def run(self, pool: Any, method: str, *args: Any) -> Any:  # type: ignore[override]
        if not pool.connected:
            await self.ready(pool)
        try:
            outcome = await pool.run(*self.builders(pool, method, args))
        except EngineError as error:
            raise from_engine(error.error) from None
        if outcome.__class__ is _Variant and outcome.tag == "ok":  # what the flat layout gives
            return outcome.payload.payload
        ok, value = split_result(outcome)
        if not ok:
            raise from_engine(value)
        return value.payload

    async def acquire_many(self, names: Any, **options: Any) -> AsyncLease:  # type: ignore[override]
        names = many_of(names)
        return await self.acquire(", ".join(names), names=names, **options)

    async def release_many(self, names: Any, token: str) -> None:  # type: ignore[override]
        await self.run(self.pool(self.ttl, self.fenced), *shaped("release", many_of(names), "", token, now(), entropy()))

    async def extend_many(self, names: Any, token: str, ttl: float) -> float:  # type: ignore[override]
        extended = await self.run(self.pool(self.ttl, self.fenced), *shaped("extend", many_of(names), "", token, millis(ttl, "ttl"), now(), entropy()))
        return float(field(extended, "valid_until"))

    async def acquire(self, name: str, *, wait: float = 0, ttl: float | None = None, fenced: bool | None = None, fair: bool | None = None, auto_renewal: bool = False, limit: int | None = None, mode: str | None = None, names: Any = None) -> AsyncLease:  # type: ignore[override]
        shape = shape_of(limit, mode, names)
        pool = self.pool(self.ttl if ttl is None else millis(ttl, "ttl"), self.fenced if fenced is None else fenced, fair)
        lease = await self.run(pool, *shaped("acquire", shape, name, millis(wait, "wait"), now(), entropy()))
        return AsyncLease(self, pool, name, lease, auto_renewal, shape)

    async def release(self, name: str, token: str, *, limit: int | None = None, mode: str | None = None) -> None:  # type: ignore[override]
        await self.run(self.pool(self.ttl, self.fenced), *shaped("release", shape_of(limit, mode), name, token, now(), entropy()))

    async def extend(self, name: str, token: str, ttl: float, *, limit: int | None = None, mode: str | None = None) -> float:  # type: ignore[override]
        extended = await self.run(self.pool(self.ttl, self.fenced), *shaped("extend", shape_of(limit, mode), name, token, millis(ttl, "ttl"), now(), entropy()))
        return float(field(extended, "valid_until"))

    async def status(self, name: str) -> Any:  # type: ignore[override]
        return await self.run(self.pool(self.ttl, self.fenced), "status", name, now())

    async def reset(self, name: str) -> list[Any]:  # type: ignore[override]
        return [split_result(n)[1] for n in await self.run(self.pool(self.ttl, self.fenced), "reset", name, now())]


class AsyncLease(Lease):
    """A held lock; with ``auto_renewal`` a task runs the engine's renewal schedule."""

    def __init__(self, client: AsyncClient, pool: Any, name: str, lease: Any, auto_renewal: bool, shape: Any = None) -> None:
        super().__init__(client, pool, name, lease, False, shape)
        self._task: asyncio.Task | None = None
        self._stopped: asyncio.Event | None = None  # the renewal task's, only with one
        if auto_renewal:
            self._stopped = asyncio.Event()
            with engine_errors():
                renewal = Handle(client.engine, "renewal", pool.session.fallible(*shaped("renewal", shape, name, lease, entropy())))
            self._task = asyncio.ensure_future(_renew(weakref.ref(self), renewal, self._stopped))

    @property
    def validity(self) -> float:
        stopped = self._released if self._stopped is None else self._stopped.is_set()
        return 0.0 if self.lost or stopped else max(0.0, (self.valid_until - now()) / 1000)

    async def extend(self, ttl: float) -> None:  # type: ignore[override]
        extended = await self.client.run(self.pool, *shaped("extend", self.shape, self.name, self.token, millis(ttl, "ttl"), now(), entropy()))
        self.valid_until = float(field(extended, "valid_until"))

    async def stop(self) -> None:
        """Stops renewing (no I/O): the lease lives until its TTL unless released."""
        if self._stopped is None:  # no renewal task: nothing to stop
            self._released = True
            return
        self._stopped.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def release(self) -> None:  # type: ignore[override]
        if self._stopped is None:  # no renewal task: no coroutine to await
            self._released = True
        else:
            await self.stop()
        if self.lost:
            raise self.lost
        await self.client.run(self.pool, *shaped("release", self.shape, self.name, self.token, now(), entropy()))  # its own session


async def _renew(lease_ref: Any, renewal: Handle, stopped: asyncio.Event) -> None:
    try:
        while not stopped.is_set():
            at = renewal.poll_timeout()
            if at is None:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopped.wait(), max(0.0, (at - now()) / 1000))
                return
            renewal.handle_timeout(now())
            while (event := renewal.poll_event(now(), entropy())) is not None:
                lease = lease_ref()
                if lease is None:
                    return
                if isinstance(event, str):  # lost(lost-reason); otherwise extend(operation)
                    lease.lost = LockLost(f"lease of {lease.name} lost ({event})", event)
                    return
                op = Operation(renewal.engine, "operation", event)
                await lease.pool.run(lambda op=op: op)
                del lease
            if (lease := lease_ref()) is not None:
                lease.valid_until = renewal.valid_until()
            del lease
    except Exception as error:  # a renewal that cannot run keeps no lease: say it is lost
        if (lease := lease_ref()) is not None:
            lease.lost = LockLost(f"the renewal of {lease.name} failed: {error!r}", "renewal-failed")
        raise
    finally:
        renewal.drop()


_clients: dict[tuple, AsyncClient] = {}


def async_client_of(source: Any, **options: Any) -> AsyncClient:
    if isinstance(source, AsyncClient):
        return source
    key = (tuple(urls_of(source)), tuple(sorted(options.items())), id(asyncio.get_running_loop()))
    client = _clients.get(key)
    if client is None:
        client = _clients[key] = AsyncClient(list(key[0]), **options)
    return client


class AsyncLock:
    """``async with AsyncLock(url_or_client, name, expire=60, timeout=10): …`` — ``Lock``'s
    twin: ``await lock.acquire(blocking=…, timeout=…)``, ``extend``, ``release``, ``locked``."""

    def __init__(self, url_or_client: Any, name: str, expire: float | None = None, timeout: float | None = None, *, auto_renewal: bool = False, fenced: bool = False, fair: bool | None = None, **settings: Any) -> None:
        self._source, self._settings = url_or_client, {k: v for k, v in settings.items() if v is not None}
        self.name, self.expire, self.timeout = name, expire, timeout
        self.fenced, self.fair, self.auto_renewal = fenced, fair, auto_renewal
        millis(expire, "expire"), millis(timeout, "timeout")
        self._lease: AsyncLease | None = None
        self._shape: dict[str, Any] = {}  # as `Lock._shape`: the lock, a permit or a hold

    @property
    def client(self) -> AsyncClient:
        return async_client_of(self._source, **self._settings)

    async def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if self._lease is not None and not self._lease.lost:
            raise LockError(f"lock {self.name!r} is already held by this AsyncLock", "already-acquired")
        if not blocking and timeout is not None:
            from .errors import InvalidArgument

            raise InvalidArgument("timeout only applies to a blocking acquire", "invalid")
        wait = 0.0 if not blocking else timeout if timeout is not None else self.timeout
        try:
            self._lease = await self.client.acquire(self.name, wait=(2**32 - 1) / 1000 if wait is None else wait, ttl=self.expire, fenced=self.fenced, fair=self.fair, auto_renewal=self.auto_renewal, **self._shape)
        except NotAcquired:
            return False
        return True

    @property
    def token(self) -> str | None:
        return self._lease.token if self._lease else None

    @property
    def lost(self) -> LockLost | None:
        return self._lease.lost if self._lease else None

    async def locked(self) -> bool:
        from .errors import Unavailable

        verdict = (await self.client.status(self.name)).verdict
        if verdict.tag == "unknown":
            raise Unavailable(f"too few nodes could be read to tell whether {self.name!r} is held", "unavailable")
        return verdict.tag in ("held", "shared")

    async def extend(self, expire: float | None = None) -> None:
        lease = self._held()
        ttl = expire if expire is not None else self.expire
        await lease.extend(ttl if ttl is not None else (self.client.ttl or 30_000) / 1000)

    async def release(self) -> None:
        lease = self._held()
        self._lease = None
        await lease.release()

    def _held(self) -> AsyncLease:
        if self._lease is None:
            raise NotAcquired(f"lock {self.name!r} is not held by this AsyncLock", "not-acquired")
        return self._lease

    async def __aenter__(self) -> AsyncLock:
        if not await self.acquire(blocking=True):
            raise NotAcquired(f"lock {self.name!r} is held by another owner (waited {self.timeout} s)", "not-acquired")
        return self

    async def __aexit__(self, kind: Any, value: Any, tb: Any) -> None:
        try:
            await self.release()
        except LockLost:
            if kind is None:
                raise


class AsyncSemaphore(AsyncLock):
    """``Semaphore``'s twin: ``async with AsyncSemaphore(url_or_client, name, limit=N): …``."""

    def __init__(self, url_or_client: Any, name: str, limit: int, expire: float | None = None, timeout: float | None = None, **options: Any) -> None:
        super().__init__(url_or_client, name, expire, timeout, **options)
        self.limit = limit
        self._shape = {"limit": limit}


class AsyncMultiLock(AsyncLock):
    """``MultiLock``'s twin: ``async with AsyncMultiLock(url_or_client, ["a", "b"]): …``."""

    def __init__(self, url_or_client: Any, names: Any, expire: float | None = None, timeout: float | None = None, **options: Any) -> None:
        self.names = many_of(names)
        super().__init__(url_or_client, ", ".join(self.names), expire, timeout, **options)
        self._shape = {"names": self.names}

    async def locked(self) -> bool:  # type: ignore[override]
        for name in self.names:
            lock = AsyncLock(self.client, name)
            if await lock.locked():
                return True
        return False


class AsyncRWLock:
    """``RWLock``'s twin: ``async with rw.read(): …``, ``async with rw.write(): …``."""

    def __init__(self, url_or_client: Any, name: str, expire: float | None = None, timeout: float | None = None, **options: Any) -> None:
        self._source, self.name, self.expire, self.timeout, self._options = url_or_client, name, expire, timeout, options
        millis(expire, "expire"), millis(timeout, "timeout")

    def read(self) -> AsyncLock:
        """A read hold's ``AsyncLock`` (not taken yet)."""
        return self._side("read")

    def write(self) -> AsyncLock:
        """The write hold's ``AsyncLock`` (not taken yet)."""
        return self._side("write")

    def _side(self, mode: str) -> AsyncLock:
        lock = AsyncLock(self._source, self.name, self.expire, self.timeout, **self._options)
        lock._shape = {"mode": mode}
        return lock


async def async_get_or_compute(
    url_or_client: Any,
    key: str,
    fn: Callable[[], Any],
    expire: float,
    *,
    wait: float = 60,
    lock_ttl: float | None = None,
    dumps: Callable[[Any], bytes | str] = json.dumps,
    loads: Callable[[bytes], Any] = json.loads,
) -> Any:
    """``get_or_compute``'s twin: ``fn`` may be a coroutine function (or return an awaitable);
    waiters wait without blocking the loop. The same arguments, errors and guarantees."""
    client = async_client_of(url_or_client)
    pool = compute_pool(client, lock_ttl)
    value_ttl, wait_ms = millis(expire, "expire"), millis(wait, "wait")
    with waited_for(key, wait):
        fetched = await client.run(pool, "get_or_lock", key, wait_ms, now(), entropy())
    value, computing = split_fetched(fetched)
    if computing is None:
        return loads(value)
    lease = AsyncLease(client, pool, key, computing, auto_renewal=True)
    try:
        value = fn()
        if inspect.isawaitable(value):
            value = await value
        data = encoded(dumps(value))
    except BaseException:
        await lease.stop()
        await _give_up(client, pool, key, lease.token)
        raise
    await lease.stop()
    try:
        with stored(key):
            await client.run(pool, "finish_compute", key, lease.token, data, value_ttl, now())
    except InvalidArgument:  # refused before anything was sent: the lock is still ours
        await _give_up(client, pool, key, lease.token)
        raise
    return value


async def _give_up(client: AsyncClient, pool: Any, key: str, token: str) -> None:
    """``dogpile.give_up``'s twin."""
    with contextlib.suppress(LockError):
        await client.run(pool, "abandon_compute", key, token, now())
