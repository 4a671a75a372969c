"""The dogpile helper (python-redis-lock's Django pattern): when a cached value is missing, one
caller computes it under a lock while the others wait for the value, not to compute it
again themselves.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from .errors import NotAcquired
from .lock import Lock


def get_or_compute(
    client: Any,
    key: str,
    fn: Callable[[], Any],
    expire: float,
    *,
    wait: float = 60,
    dumps: Callable[[Any], bytes | str] = json.dumps,
    loads: Callable[[bytes], Any] = json.loads,
) -> Any:
    """The value cached at ``key`` in ``client`` (a redis-py client), computing it with ``fn``
    and caching it for ``expire`` seconds when missing. Only the caller that takes the lock
    ``key`` runs ``fn``; the others wait (up to ``wait`` seconds) for its release and read the
    value it stored. Raises ``NotAcquired`` when the computation outlasts ``wait``."""
    cached = client.get(key)
    if cached is not None:
        return loads(cached)
    lock = Lock(client, f"dogpile:{key}", expire=max(expire, 1), auto_renewal=True)
    while True:
        if lock.acquire(blocking=False):
            try:
                cached = client.get(key)  # computed while this caller was deciding
                if cached is not None:
                    return loads(cached)
                value = fn()
                client.set(key, dumps(value), px=int(expire * 1000))
                return value
            finally:
                lock.release()
        # Another caller computes: wait for its release (woken by it, not by polling), then
        # read what it stored.
        if not lock.acquire(blocking=True, timeout=wait):
            raise NotAcquired(f"the value of {key!r} was not computed within {wait} s", "not-acquired")
        lock.release()
        cached = client.get(key)
        if cached is not None:
            return loads(cached)
