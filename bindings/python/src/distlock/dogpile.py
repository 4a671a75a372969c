"""The dogpile helper (python-redis-lock's Django pattern) on the engine's get-or-compute
(``wit/engine.wit``: ``get-or-lock``, ``finish-compute``, ``abandon-compute``): when a cached
value is missing, one caller computes it under the name's lock while the others wait for the
*value*, not for the lock — a waiter gets the stored value without ever taking the lock.

Owns: running ``fn`` (and its serialisation) between the engine's calls, with the
computation's lease renewed on the engine's schedule meanwhile, and giving the computation up
when ``fn`` fails. Every decision (who computes, how a waiter waits and for how long, what is
stored where, the bounds) is the engine's; ``aio.async_get_or_compute`` is the asyncio twin.

The value lives at the engine's value key of ``key`` (``distlock:{key}:value`` with the
default prefix), not at ``key`` itself.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any, Callable

from ._engine import entropy, now
from .client import Client, Lease, millis
from .errors import InvalidArgument, LockError, LockLost, NotAcquired
from .lock import client_of


def compute_pool(client: Client, lock_ttl: float | None) -> Any:
    """The session a computation's lock lives in: the client's, with ``lock_ttl`` (seconds)
    as its TTL when given. A fenced or fair client is refused by the engine
    (``InvalidArgument`` of kind ``compute-unsupported``)."""
    return client.pool(client.ttl if lock_ttl is None else millis(lock_ttl, "lock_ttl"), client.fenced)


def split_fetched(fetched: Any) -> tuple[bytes | None, Any]:
    """The engine's ``fetched`` as ``(value, None)`` or ``(None, lease)``. wasmtime hands a
    variant whose cases it can tell apart by type over as the payload alone (``bytes`` for
    ``value``, a ``Record`` for ``computing``), else as a ``Variant``."""
    tag = getattr(fetched, "tag", None)
    if tag is not None:
        return (fetched.payload, None) if tag == "value" else (None, fetched.payload)
    if isinstance(fetched, (bytes, bytearray)):
        return bytes(fetched), None
    return None, fetched


def encoded(data: bytes | str) -> bytes:
    """What ``dumps`` made, as the bytes to store."""
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raise InvalidArgument(f"dumps must return bytes or str, not {type(data).__name__}", "invalid")


def get_or_compute(
    client: Any,
    key: str,
    fn: Callable[[], Any],
    expire: float,
    *,
    wait: float = 60,
    lock_ttl: float | None = None,
    dumps: Callable[[Any], bytes | str] = json.dumps,
    loads: Callable[[bytes], Any] = json.loads,
) -> Any:
    """The value cached under ``key``, computing it with ``fn`` and caching it for ``expire``
    seconds when missing. ``client``: a ``distlock.Client``, a URL, or a redis-py client (its
    host, port, db and credentials; one node: a value on a majority is not a value).

    Exactly one caller at a time runs ``fn``, under the lock ``key`` (its TTL ``lock_ttl``
    seconds, default the client's, renewed while ``fn`` runs); the others wait up to ``wait``
    seconds for its value, woken by its store. When ``fn`` raises, the lock is given up, one
    waiter computes next, and the exception propagates here.

    Raises ``NotAcquired`` when the wait ran out while another caller computed, ``LockLost``
    when the computation's lock was lost while ``fn`` ran (nothing was stored: another caller
    may be computing), ``InvalidArgument`` (kind ``compute-unsupported``: several nodes, a
    fenced or fair client, another key layout, no scripts; ``value-too-long``: a value over the
    engine's bound; ``bad-ttl``: ``expire`` of 0), ``Unavailable``, ``ServerError``."""
    client = client_of(client)
    pool = compute_pool(client, lock_ttl)
    value_ttl, wait_ms = millis(expire, "expire"), millis(wait, "wait")
    with waited_for(key, wait):
        fetched = client.run(pool, "get_or_lock", key, wait_ms, now(), entropy())
    value, computing = split_fetched(fetched)
    if computing is None:
        return loads(value)
    lease = Lease(client, pool, key, computing, auto_renewal=True)
    try:
        value = fn()
        data = encoded(dumps(value))
    except BaseException:
        lease.stop_renewal()
        give_up(client, pool, key, lease.token)
        raise
    lease.stop_renewal()
    try:
        with stored(key):
            client.run(pool, "finish_compute", key, lease.token, data, value_ttl, now())
    except InvalidArgument:  # refused before anything was sent: the lock is still ours
        give_up(client, pool, key, lease.token)
        raise
    return value


@contextlib.contextmanager
def waited_for(key: str, wait: float) -> Any:
    """A wait that ran out, said as the value's (the engine says it of the lock)."""
    try:
        yield
    except NotAcquired as error:
        raise NotAcquired(f"the value of {key!r} was not computed within {wait} s (another caller is computing it)", error.code, error.detail) from None


@contextlib.contextmanager
def stored(key: str) -> Any:
    """A store refused for a lost lock, said as the computation's."""
    try:
        yield
    except LockLost as error:
        raise LockLost(f"the computation's lock of {key!r} was lost while computing; the value was not stored", error.code, error.detail) from None


def give_up(client: Client, pool: Any, key: str, token: str) -> None:
    """Gives a failed computation's lock up, waking one waiter; a failure here leaves the lock
    to expire at its TTL, when the waiters take over anyway (the caller's error matters more)."""
    with contextlib.suppress(LockError):
        client.run(pool, "abandon_compute", key, token, now())
