"""Reads the engine's flat step encoding (``wit/engine.wit``, ``operation.feed``): the bytes
that ``start``, ``feed``, ``lose``, ``tick`` and the ``*-started`` constructors return, and its
slotted form (version 2, the slot after the version byte) that the session-level ``*-flat``
calls return.

Owns the layout only; every decision in it is the engine's. The outcome comes back as the
same component values ``operation.step`` would give (``Variant('ok', Variant('acquired',
Record(...)))``), so callers cannot tell the two paths apart; an outcome the layout does not
carry (status, reset, an error) is read with ``poll-outcome``.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import wasmtime.component as wc

from ._engine import split_option

VERSION = 1
SLOTTED = 2  # the session-level flat calls' layout: the slot (u32) after the version byte
KEEP, CLOSE, SILENT = 0, 1, 2

_TRANSMIT = struct.Struct("<BI")
_F64 = struct.Struct("<d")
_U32 = struct.Struct("<I")
_FENCE = struct.Struct("<BQdd")
_SPAN = struct.Struct("<dd")
_AFTER = struct.Struct("<BI")


class Step(NamedTuple):
    """One step's answer: what to send, when to step again, and the outcome once over."""

    transmits: list[tuple[int, bytes]]
    timeout: float | None
    over: bool
    outcome: Any  # a ``result<outcome, error>`` value, once over
    connections: list[tuple[int, int]]  # per node: (KEEP/CLOSE/SILENT, replies owed)


def decode(data: bytes, op: Any) -> Step:
    """``data`` as a :class:`Step`; ``op`` (its ``Handle``) answers ``poll_outcome``."""
    version = data[0] if data else None
    if version == VERSION:
        base = 1
    elif version == SLOTTED:
        base = 5
    else:  # an empty answer: the slot is unknown to the engine
        raise RuntimeError(f"distlock: unknown engine step encoding {version}")
    at, transmits = base + 1, []
    for _ in range(data[base]):
        node, length = _TRANSMIT.unpack_from(data, at)
        at += 5
        transmits.append((node, data[at : at + length]))
        at += length
    if data[at] == 0:
        (timeout,) = _F64.unpack_from(data, at + 1)
        return Step(transmits, None if timeout != timeout else timeout, False, None, [])
    code, at = data[at + 1], at + 2
    if code == 0:
        length = data[at]
        token = data[at + 1 : at + 1 + length].decode("ascii")
        has_fence, fence, started, valid_until = _FENCE.unpack_from(data, at + 1 + length)
        lease = wc.Record()
        lease.__dict__.update({"token": token, "fence": fence if has_fence else None, "started": started, "valid-until": valid_until})
        outcome = wc.Variant("ok", wc.Variant("acquired", lease))
        at += 1 + length + _FENCE.size
    elif code == 1:
        outcome = wc.Variant("ok", wc.Variant("released", _U32.unpack_from(data, at)[0]))
        at += 4
    elif code == 2:
        started, valid_until = _SPAN.unpack_from(data, at)
        span = wc.Record()
        span.__dict__.update({"started": started, "valid-until": valid_until})
        outcome = wc.Variant("ok", wc.Variant("extended", span))
        at += _SPAN.size
    else:
        outcome = split_option(op.poll_outcome())[1]
    connections = [_AFTER.unpack_from(data, at + 1 + 5 * i) for i in range(data[at])]
    return Step(transmits, None, True, outcome, connections)
