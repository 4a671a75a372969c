"""The same lock operation through each library the benches compare: this package (sync
driver; fair mode as its own row), redis-py's ``Lock`` and python-redis-lock, each with its
defaults except a 30 s expiry. A worker gets its own client (its own connections) from
``Library.connect``; ``try_hold(name, wait_s)`` acquires (waiting up to ``wait_s``, 0: one
try) and returns the release to call, or ``None`` when the lock stayed busy.

redis-py's blocking ``acquire`` polls every 0.1 s (its default ``sleep``); python-redis-lock
waits on a list with ``BLPOP``; this package waits on the engine's wake-up signal."""

from __future__ import annotations

import logging
import uuid
from typing import Callable, Optional

import redis
import redis_lock

import distlock

logging.getLogger("redis_lock").setLevel(logging.ERROR)  # it warns on every busy try

Release = Callable[[], None]
TryHold = Callable[[str, float], Optional[Release]]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _distlock(fair: bool) -> Callable[[str], TryHold]:
    def connect(url: str) -> TryHold:
        client = distlock.Client.connect(url, ttl=30, fair=fair)

        def try_hold(name: str, wait_s: float) -> Optional[Release]:
            try:
                return client.acquire(name, wait=wait_s).release
            except distlock.NotAcquired:
                return None

        return try_hold

    return connect


def _redis_py(url: str) -> TryHold:
    conn = redis.Redis(port=_port(url))

    def try_hold(name: str, wait_s: float) -> Optional[Release]:
        lock = conn.lock(f"bench-redis-py:{name}", timeout=30, blocking=wait_s > 0, blocking_timeout=wait_s or None)
        return lock.release if lock.acquire() else None

    return try_hold


def _python_redis_lock(url: str) -> TryHold:
    conn = redis.Redis(port=_port(url))

    def try_hold(name: str, wait_s: float) -> Optional[Release]:
        lock = redis_lock.Lock(conn, f"bench-prl:{name}", expire=30)
        acquired = lock.acquire(blocking=True, timeout=int(wait_s)) if wait_s else lock.acquire(blocking=False)
        return lock.release if acquired else None

    return try_hold


# (row label, connect); a run tags its names so rows never share a key.
LIBRARIES: list[tuple[str, Callable[[str], TryHold]]] = [
    ("distlock", _distlock(False)),
    ("distlock fair", _distlock(True)),
    ("redis-py Lock", _redis_py),
    ("python-redis-lock", _python_redis_lock),
]


def run_tag() -> str:
    return uuid.uuid4().hex[:8]


def interleave(rows: list, seconds: float, slice_s: float = 0.5) -> None:
    """Runs each row (``row.run(slice_s)``) in turns of ``slice_s`` until each had
    ``seconds``, reversing the order every round: drift in the shared machine's load then
    lands on every row alike (as ``distlock bench`` does)."""
    order = list(rows)
    for _ in range(max(1, round(seconds / slice_s))):
        for row in order:
            row.run(slice_s)
        order.reverse()
