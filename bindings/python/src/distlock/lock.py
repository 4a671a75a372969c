"""The API redis-py's ``Lock`` and python-redis-lock's users know: ``Lock(url_or_client, name,
expire=…, timeout=…)`` with ``acquire``/``extend``/``release``/``locked``, ``with`` blocks,
``auto_renewal``, and ``reset``; in the same shape, ``Semaphore(…, limit=N)`` (one of ``N``
permits per holder), ``RWLock(…).read()``/``.write()`` (a read-write lock's two sides) and
``MultiLock(…, names)`` (several names at once, all or nothing).

Owns: turning a URL, a list of URLs, a redis-py client or a ``Client`` into a shared
``Client``, and the libraries' habits (seconds, ``acquire`` returning a bool). A ``Lock``
dropped while held is not released from a finalizer: its key expires after ``expire``.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

from .client import Client, Lease, many_of, millis
from .errors import InvalidArgument, LockError, LockLost, NotAcquired, Unavailable

_clients: dict[tuple, Client] = {}
_clients_lock = threading.Lock()


def urls_of(source: Any) -> list[str]:
    """The node URLs of a URL, a list of URLs, or a redis-py client (its connection pool's
    host, port, db and credentials)."""
    if isinstance(source, str):
        return [source]
    pool = getattr(source, "connection_pool", None)
    if pool is not None:
        kw = pool.connection_kwargs
        if "path" in kw:
            raise InvalidArgument("a redis-py client over a Unix socket is not supported: pass a redis:// URL", "invalid")
        if "ssl_cert_reqs" in kw or getattr(pool.connection_class, "__name__", "") == "SSLConnection":
            raise InvalidArgument("a redis-py client over TLS is not taken as it is: pass a rediss:// URL (and tls_ca)", "invalid")
        from urllib.parse import quote

        user, password = kw.get("username"), kw.get("password")
        auth = f"{quote(user or '', safe='')}:{quote(password, safe='')}@" if password else ""
        return [f"redis://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"]
    if isinstance(source, Iterable):
        return [url for item in source for url in urls_of(item)]
    raise InvalidArgument(f"expected a redis:// URL, a list of them, a redis-py client or a distlock.Client, not {type(source).__name__}", "invalid")


def client_of(source: Any, **options: Any) -> Client:
    """``source`` if it is a ``Client``, else the process's shared ``Client`` for its URLs."""
    if isinstance(source, Client):
        return source
    key = (tuple(urls_of(source)), tuple(sorted(options.items())))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = Client(list(key[0]), **options)
        return client


class Lock:
    """A named lock. ``expire``: seconds the lock lives without an extend (default 30);
    ``timeout``: how long ``with`` (and ``acquire()``) waits for a holder, in seconds (None:
    as long as it takes); ``auto_renewal``: a thread extends the lease on the engine's
    schedule while held; ``layout``: ``redis-py`` or ``python-redis-lock`` to exclude those
    libraries' locks of the same name."""

    def __init__(
        self,
        url_or_client: Any,
        name: str,
        expire: float | None = None,
        timeout: float | None = None,
        *,
        auto_renewal: bool = False,
        fenced: bool = False,
        fair: bool | None = None,
        layout: str | None = None,
        key_prefix: str | None = None,
        request_timeout: float | None = None,
    ) -> None:
        settings = {k: v for k, v in dict(layout=layout, key_prefix=key_prefix, request_timeout=request_timeout).items() if v is not None}
        self.client = client_of(url_or_client, **settings)
        self.name, self.expire, self.timeout = name, expire, timeout
        self.fenced, self.fair, self.auto_renewal = fenced, fair, auto_renewal
        millis(expire, "expire"), millis(timeout, "timeout")
        self._lease: Lease | None = None
        # What a lease of this lock is: the lock (empty), a permit (`limit`) or a hold (`mode`).
        self._shape: dict[str, Any] = {}

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Takes the lock: ``True`` when held, ``False`` when another holds it (after waiting
        up to ``timeout`` seconds, or this lock's ``timeout``, when ``blocking``). Raises
        ``Unavailable`` when too few nodes answer (unknown is never "free")."""
        if self._lease is not None and not self._lease.lost:
            raise LockError(f"lock {self.name!r} is already held by this Lock", "already-acquired")
        if not blocking and timeout is not None:
            raise InvalidArgument("timeout only applies to a blocking acquire", "invalid")
        wait = 0.0 if not blocking else timeout if timeout is not None else self.timeout
        try:
            self._lease = self.client.acquire(
                self.name,
                wait=(2**32 - 1) / 1000 if wait is None else wait,
                ttl=self.expire,
                fenced=self.fenced,
                fair=self.fair,
                auto_renewal=self.auto_renewal,
                **self._shape,
            )
        except NotAcquired:
            return False
        return True

    @property
    def token(self) -> str | None:
        """The lease's secret token while held by this ``Lock``."""
        return self._lease.token if self._lease else None

    @property
    def fence(self) -> int | None:
        """The fencing token of the lease (``fenced=True``)."""
        return self._lease.fence if self._lease else None

    @property
    def lost(self) -> LockLost | None:
        """Set when the renewal found the lease lost: stop acting as the owner."""
        return self._lease.lost if self._lease else None

    def owned(self) -> bool:
        """Whether this ``Lock`` holds a lease that is still valid, as far as it knows."""
        return self._lease is not None and self._lease.validity > 0

    def locked(self) -> bool:
        """Whether anyone holds the lock (for a semaphore or read-write lock: any permit or
        hold), as the nodes say. Raises ``Unavailable`` when too few nodes could be read to
        tell."""
        verdict = self.client.status(self.name).verdict
        if verdict.tag == "unknown":
            raise Unavailable(f"too few nodes could be read to tell whether {self.name!r} is held", "unavailable")
        return verdict.tag in ("held", "shared")

    def extend(self, expire: float | None = None) -> None:
        """Resets the lock's expiry to ``expire`` seconds (default: this lock's ``expire``,
        else the client's TTL). Raises ``LockLost`` when it is no longer held."""
        lease = self._held()
        ttl = expire if expire is not None else self.expire
        if ttl is None:
            ttl = (self.client.ttl or 30_000) / 1000
        lease.extend(ttl)

    def release(self) -> None:
        """Releases the lock. Raises ``LockLost`` when it was no longer held."""
        lease = self._held()
        self._lease = None
        lease.release()

    def _held(self) -> Lease:
        if self._lease is None:
            raise NotAcquired(f"lock {self.name!r} is not held by this Lock", "not-acquired")
        return self._lease

    def __enter__(self) -> Lock:
        if not self.acquire(blocking=True):
            raise NotAcquired(f"lock {self.name!r} is held by another owner (waited {self.timeout} s)", "not-acquired")
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        try:
            self.release()
        except LockLost:
            if kind is None:
                raise  # the block ran past its lease: say so


class Semaphore(Lock):
    """A counting semaphore: ``Lock``'s API, where each holder takes one of ``limit`` permits
    (at most ``limit`` holders at once, each permit a lease with its own expiry and renewal).
    Every client of a semaphore must pass the same ``limit`` while a permit lives (else
    ``ServerError`` of kind ``wrong-limit``); ``limit`` is 1 to the engine's bound (else
    ``InvalidArgument`` of kind ``bad-limit``). One node, the tagged layout; ``fair``: a freed
    permit goes to the first live waiter."""

    def __init__(self, url_or_client: Any, name: str, limit: int, expire: float | None = None, timeout: float | None = None, **options: Any) -> None:
        super().__init__(url_or_client, name, expire, timeout, **options)
        self.limit = limit
        self._shape = {"limit": limit}


class MultiLock(Lock):
    """Several names locked at once, all or nothing, under one token: ``Lock``'s API
    (``with``, ``acquire(blocking=False)``, ``extend``, ``release``, ``token``, ``fence``)
    over the set. A held name takes nothing, and each name is held as a ``Lock`` of it would
    hold it, so the two exclude each other. The engine sorts the names (any order is the same
    lock) and refuses a bad set with ``InvalidArgument``: kind ``no-names``,
    ``too-many-names`` (above 16), ``duplicate-name``, a bad name's kind, or
    ``multi-unsupported`` (a fair client, another layout). ``name`` is the names joined, for
    messages."""

    def __init__(self, url_or_client: Any, names: Iterable[str], expire: float | None = None, timeout: float | None = None, **options: Any) -> None:
        self.names = many_of(names)
        super().__init__(url_or_client, ", ".join(self.names), expire, timeout, **options)
        self._shape = {"names": self.names}

    def locked(self) -> bool:
        """Whether anyone holds any of the names, as the nodes say."""
        return any(Lock(self.client, name).locked() for name in self.names)


class RWLock:
    """A read-write lock: ``with rw.read(): …`` (readers share it, never beside a writer) and
    ``with rw.write(): …`` (one writer, no reader; a waiting writer goes before later
    readers). Each call gives a new ``Lock`` of that side with ``Lock``'s API, so that each
    reader holds its own lease. One node, the tagged layout, never fair (a fair client is
    refused with ``InvalidArgument`` of kind ``rw-lock-unsupported``)."""

    def __init__(self, url_or_client: Any, name: str, expire: float | None = None, timeout: float | None = None, **options: Any) -> None:
        self.name, self.expire, self.timeout, self._options = name, expire, timeout, options
        self.client = Lock(url_or_client, name, expire, timeout, **options).client  # checks the options now

    def read(self) -> Lock:
        """A read hold's ``Lock`` (not taken yet)."""
        return self._side("read")

    def write(self) -> Lock:
        """The write hold's ``Lock`` (not taken yet)."""
        return self._side("write")

    def _side(self, mode: str) -> Lock:
        lock = Lock(self.client, self.name, self.expire, self.timeout, **self._options)
        lock._shape = {"mode": mode}
        return lock


def reset(url_or_client: Any, name: str, **settings: Any) -> int:
    """Force-unlocks ``name`` after a crash, whoever holds it (their renewal reports the loss);
    returns the keys deleted. Raises ``Unavailable`` when a node could not be reset."""
    nodes = client_of(url_or_client, **settings).reset(name)
    failed = [n for n in nodes if not isinstance(n, int)]
    if failed:
        raise Unavailable(f"{len(failed)} of {len(nodes)} nodes could not be reset ({failed[0].tag})", "unavailable", nodes)
    return sum(nodes)
