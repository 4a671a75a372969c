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

# Steps and outcome values built without their Python-level constructors (a decode runs once
# per engine call): ``Step`` through ``tuple.__new__`` (what its generated ``__new__`` calls),
# ``Record`` and ``Variant`` (a plain dataclass: no ``__post_init__``, not frozen; wasmtime is
# pinned, see ``pyproject.toml``) with their attributes set directly.
_new_step = tuple.__new__
_new = object.__new__
_Record, _Variant = wc.Record, wc.Variant


class Step(NamedTuple):
    """One step's answer: what to send, when to step again, and the outcome once over."""

    transmits: list[tuple[int, bytes]]
    timeout: float | None
    over: bool
    outcome: Any  # a ``result<outcome, error>`` value, once over
    connections: list[tuple[int, int]]  # per node: (KEEP/CLOSE/SILENT, replies owed)


def _variant(tag: str, payload: Any) -> Any:
    """``wc.Variant(tag, payload)``."""
    variant = _new(_Variant)
    variant.tag, variant.payload = tag, payload
    return variant


def _record(fields: dict[str, Any]) -> Any:
    """A ``wc.Record`` with ``fields``."""
    record = _new(_Record)
    record.__dict__ = fields
    return record


def decode(data: bytes, op: Any) -> Step:
    """``data`` as a :class:`Step`; ``op`` (its ``Handle``) answers ``poll_outcome``."""
    version = data[0] if data else None
    if version == SLOTTED:
        base = 5
    elif version == VERSION:
        base = 1
    else:  # an empty answer: the slot is unknown to the engine
        raise RuntimeError(f"distlock: unknown engine step encoding {version}")
    at, count = base + 1, data[base]
    if count == 1:  # the usual step: one command to one node
        node, length = _TRANSMIT.unpack_from(data, at)
        at += 5 + length
        transmits = [(node, data[at - length : at])]
    else:
        transmits = []
        for _ in range(count):
            node, length = _TRANSMIT.unpack_from(data, at)
            at += 5
            transmits.append((node, data[at : at + length]))
            at += length
    if data[at] == 0:
        (timeout,) = _F64.unpack_from(data, at + 1)
        return _new_step(Step, (transmits, None if timeout != timeout else timeout, False, None, []))
    code, at = data[at + 1], at + 2
    if code == 0:
        length = data[at]
        token = data[at + 1 : at + 1 + length].decode("ascii")
        has_fence, fence, started, valid_until = _FENCE.unpack_from(data, at + 1 + length)
        lease = _new(_Record)
        lease.__dict__ = {"token": token, "fence": fence if has_fence else None, "started": started, "valid-until": valid_until}
        outcome = _variant("ok", _variant("acquired", lease))
        at += 1 + length + _FENCE.size
    elif code == 1:
        outcome = _variant("ok", _variant("released", _U32.unpack_from(data, at)[0]))
        at += 4
    elif code == 2:
        started, valid_until = _SPAN.unpack_from(data, at)
        outcome = _variant("ok", _variant("extended", _record({"started": started, "valid-until": valid_until})))
        at += _SPAN.size
    else:
        outcome = split_option(op.poll_outcome())[1]
    count = data[at]
    if count == 1:  # one node: no comprehension
        connections = [_AFTER.unpack_from(data, at + 1)]
    else:
        connections = [_AFTER.unpack_from(data, at + 1 + 5 * i) for i in range(count)]
    return _new_step(Step, (transmits, None, True, outcome, connections))
