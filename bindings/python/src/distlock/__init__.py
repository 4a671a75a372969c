"""distlock for Python: a distributed lock for Redis and Valkey (one node, or Redlock over
several) on the sans-IO distlock engine component, driven over ``socket``/``selectors``
(``Lock``, ``Semaphore``, ``RWLock``, ``MultiLock``, ``Client``) or ``asyncio``
(``AsyncLock``, ``AsyncSemaphore``, ``AsyncRWLock``, ``AsyncMultiLock``, ``AsyncClient``)."""

from .aio import AsyncClient, AsyncLock, AsyncMultiLock, AsyncRWLock, AsyncSemaphore, async_get_or_compute
from .client import Client, Lease
from .dogpile import get_or_compute
from .errors import InvalidArgument, LockError, LockLost, NotAcquired, ServerError, Unavailable
from .lock import Lock, MultiLock, RWLock, Semaphore, reset

__all__ = [
    "AsyncClient",
    "AsyncLock",
    "AsyncMultiLock",
    "AsyncRWLock",
    "AsyncSemaphore",
    "Client",
    "InvalidArgument",
    "Lease",
    "Lock",
    "LockError",
    "LockLost",
    "MultiLock",
    "NotAcquired",
    "RWLock",
    "Semaphore",
    "ServerError",
    "Unavailable",
    "async_get_or_compute",
    "get_or_compute",
    "reset",
]
