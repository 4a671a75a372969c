"""The typed errors of the Python API, one class per way a lock call can fail, made from the
engine's ``error`` variant (``wit/engine.wit``). ``code`` is the engine's case
(``not-acquired``, ``quorum-lost``, …) and ``detail`` its payload, as the engine gave it.
"""

from __future__ import annotations

from typing import Any

from ._engine import EngineError, field


class LockError(Exception):
    """Any distlock failure."""

    def __init__(self, message: str, code: str = "", detail: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class NotAcquired(LockError):
    """The lock is held by another owner and the wait ran out."""


class LockLost(LockError):
    """The lease no longer holds the lock (expired, released, or reset): stop acting as owner."""


class Unavailable(LockError):
    """Too few nodes answered for a majority (down, frozen, unreachable)."""


class InvalidArgument(LockError, ValueError):
    """A name, TTL, URL or option is unusable; nothing was sent."""

    @property
    def kind(self) -> str:
        """The engine's ``config-error-kind`` (``empty-name``, ``bad-ttl``, …)."""
        return str(field(self.detail, "kind")) if self.detail is not None else "other"


class ServerError(LockError):
    """A server refused a command or broke the protocol (``WRONGTYPE``, ``NOPERM``, not RESP)."""


def from_engine(error: Any) -> LockError:
    """The engine's ``error`` value (a ``Variant``) as one of the classes above."""
    tag, val = error.tag, error.payload
    if tag == "not-acquired":
        return NotAcquired(f"the lock is held by another owner ({field(val, 'attempts')} attempts)", tag, val)
    if tag == "not-held":
        return LockLost("the lease no longer holds the lock", tag, val)
    if tag == "expired":
        return LockLost("the lease's validity ran out", tag, val)
    if tag == "quorum-lost":
        granted, needed, nodes = (field(val, k) for k in ("granted", "needed", "nodes"))
        return Unavailable(f"{granted} of {nodes} nodes granted; a majority needs {needed}", tag, val)
    if tag == "unavailable":
        return Unavailable(str(val), tag, val)
    if tag == "invalid":
        return InvalidArgument(str(field(val, "message")), tag, val)
    if tag == "server":
        return ServerError(f"node {field(val, 'node')}: {field(field(val, 'error'), 'message')}", tag, val)
    if tag == "protocol":
        return ServerError(f"node {field(val, 'node')} broke the protocol ({field(val, 'error')})", tag, val)
    return LockError(f"distlock: {tag}", tag, val)


class engine_errors:
    """``with engine_errors(): …`` turns an ``EngineError`` into its typed error."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if isinstance(value, EngineError):
            raise from_engine(value.error) from None
