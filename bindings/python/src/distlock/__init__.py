"""distlock for Python: a distributed lock for Redis and Valkey (one node, or Redlock over
several) on the sans-IO distlock engine component, driven over ``socket``/``selectors``
(``Lock``, ``Client``) or ``asyncio`` (``AsyncLock``, ``AsyncClient``)."""

from .aio import AsyncClient, AsyncLock
from .client import Client, Lease
from .dogpile import get_or_compute
from .errors import InvalidArgument, LockError, LockLost, NotAcquired, ServerError, Unavailable
from .lock import Lock, reset

__all__ = [
    "AsyncClient",
    "AsyncLock",
    "Client",
    "InvalidArgument",
    "Lease",
    "Lock",
    "LockError",
    "LockLost",
    "NotAcquired",
    "ServerError",
    "Unavailable",
    "get_or_compute",
    "reset",
]
