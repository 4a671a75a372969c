"""distlock for Python: a distributed lock for Redis and Valkey (one node, or Redlock over
several) on the sans-IO distlock engine component, driven over ``socket``/``selectors``
(``Lock``, ``Semaphore``, ``RWLock``, ``Client``) or ``asyncio`` (``AsyncLock``,
``AsyncSemaphore``, ``AsyncRWLock``, ``AsyncClient``)."""

from .aio import AsyncClient, AsyncLock, AsyncRWLock, AsyncSemaphore
from .client import Client, Lease
from .dogpile import get_or_compute
from .errors import InvalidArgument, LockError, LockLost, NotAcquired, ServerError, Unavailable
from .lock import Lock, RWLock, Semaphore, reset

__all__ = [
    "AsyncClient",
    "AsyncLock",
    "AsyncRWLock",
    "AsyncSemaphore",
    "Client",
    "InvalidArgument",
    "Lease",
    "Lock",
    "LockError",
    "LockLost",
    "NotAcquired",
    "RWLock",
    "Semaphore",
    "ServerError",
    "Unavailable",
    "get_or_compute",
    "reset",
]
