"""The engine's session-level flat calls in their packed form (``wit/engine.wit``:
``session.register``, ``acquire-flat-packed``, ``release-flat-packed``, ``extend-flat-packed``,
``feed-flat-packed``, ``lose-flat-packed``, ``lend-flat-packed``, …): an uncontended acquire and
its release in four component calls with only scalars and bytes crossing — the lock name registered once (a ``u32`` name id), the
operation addressed by a slot number the engine frees itself once its outcome is handed out
(no resource to drop), and every byte list packed eight bytes to a ``u64``, so
``wasmtime.component``, which converts a list one element at a time, converts an eighth of
the values.

Owns: one session's name ids (registered on first use, forgotten all at once when the
engine's table is full), the exports' arguments kept lowered between calls (``_lowered.py``),
and a :class:`Slot` per operation with the same calls as ``_engine.Operation`` (``feed``,
``lose``, ``lend``, ``tick``, ``poll_outcome``, ``drop``), so the drivers run either alike.
Every decision is the engine's; this only packs bytes.

Invariants: calls are made under the engine's lock; the one answer value every call reuses
holds the last answer (or nothing, marked moved out) until wasmtime frees it as it writes the
next one over it, so nothing here frees an answer it reads (``close`` frees the last); a slot is abandoned (``drop``) only when
its operation did not end (the engine frees it with its outcome otherwise); a name id is used
only on the session that registered it; a packed byte list goes with its exact length.
"""

from __future__ import annotations

import ctypes
import struct
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component._enter import enter_wasm

from ._engine import EngineError, Handle, field, split_result
from ._lowered import KIND, LIST_HEAD, PAYLOAD, VAL, VAL_SIZE, Args, moved_out, read_words, scalar_run, words_at

_RESOURCE_KIND = ffi.WASMTIME_COMPONENT_RESOURCE
_val_delete = ffi.wasmtime_component_val_delete
_byref = ctypes.byref
_addressof = ctypes.addressof
_from_le = int.from_bytes
_ERROR = ctypes.POINTER(ffi.wasmtime_error_t)
# `wasmtime_component_func_call` taking every pointer as an address kept from the start:
# wasmtime's own prototype type-checks and converts six arguments per call, ~2 µs of a ~5 µs
# call. The addresses are of values this module keeps alive (see ``Slots``).
_func_call_at = ctypes.CFUNCTYPE(
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t
)(("wasmtime_component_func_call", ffi.dll))
# A `result`'s payload (`wasmtime_component_valresult_t`): is it ok, and its value's address.
_RESULT_HEAD = struct.Struct("@?P")
_LIST_HEAD_FROM = LIST_HEAD.unpack_from
_U32_VALUE = struct.Struct("=I")  # a u32 value's payload
_read = getattr(ctypes, "_string_at", ctypes.string_at)  # (address, size): string_at without its wrapper

# The exports called with kept arguments, how many each takes (the session first), and which of
# them are scalars written together (the first's index and their `struct` codes): one
# ``pack_into`` a run instead of a ctypes attribute per kind and payload.
_HOT = {
    "acquire-flat-packed": (6, [(1, "IId"), (5, "I")]),  # name id, wait, now; entropy; lent
    "release-flat-packed": (7, [(1, "I"), (3, "Id"), (6, "I")]),  # name id; token; its length, now; entropy; lent
    "extend-flat-packed": (8, [(1, "I"), (3, "IId"), (7, "I")]),  # name id; token; its length, ttl, now; entropy; lent
    "feed-flat-packed": (6, [(1, "IdB"), (5, "I")]),  # slot, now, node; bytes; their length
    "lose-flat-packed": (4, [(1, "IdB")]),  # slot, now, node
    "lend-flat-packed": (4, [(1, "IdB")]),  # slot, now, node
    "tick-flat-packed": (3, [(1, "Id")]),  # slot, now
    "register": (2, []),  # name (a string, lowered again only when it changes)
}
_U32, _F64, _U8 = KIND["I"], KIND["d"], KIND["B"]


class _Export:
    """One hot export: its function's address, its kept arguments (``args``, and the address
    ``args_at`` of their C values) and the ``struct`` of each scalar run, by its first index."""

    __slots__ = ("func", "func_at", "args", "args_at", "runs")

    def __init__(self, func: Any, n: int, runs: list[tuple[int, str]]) -> None:
        self.func, self.func_at = func, _addressof(func.func._func)
        self.args = Args(n)
        self.args_at = _addressof(self.args.vals)
        self.runs = {first: scalar_run(codes) for first, codes in runs}


class Slots:
    """The session-level flat calls of one session (``session``, its ``Handle``)."""

    def __init__(self, session: Handle) -> None:
        self.session, self.engine = session, session.engine
        self.lock = self.engine.lock
        self.ids: dict[str, int] = {}
        self._self = VAL()  # the session's handle, lowered once; freed with the session
        self._self.kind = _RESOURCE_KIND
        self._self.of.resource = ffi.wasmtime_component_resource_any_clone(session.resource.ptr())
        # The raw call's addresses: the store's context (the engine keeps it for the store's
        # life), one answer value reused by every call (read before the engine's lock is let
        # go, and freed by wasmtime as it writes the next answer over it), and per export its
        # function and its kept arguments.
        self._context_at = ctypes.cast(self.engine.context, ctypes.c_void_p).value
        self._result = VAL()
        self._result_at = _addressof(self._result)
        # The answer's payload: a step call's list<u64>, or a constructor's result<list<u64>, error>;
        # read through a view of the answer value's own bytes (no ctypes call).
        self._answer = memoryview((ctypes.c_ubyte * VAL_SIZE).from_address(self._result_at)).cast("B")
        self._calls: dict[str, _Export] = {}
        for method, (n, runs) in _HOT.items():
            export = self._calls[method] = _Export(self.engine._func(f"[method]session.{method}"), n, runs)
            export.args.handle(0, self._self)
        self._acquire, self._release, self._extend = (self._calls[f"{m}-flat-packed"] for m in ("acquire", "release", "extend"))
        self._feed, self._lose, self._lend, self._tick = (self._calls[f"{m}-flat-packed"] for m in ("feed", "lose", "lend", "tick"))

    def name_id(self, name: str) -> int:
        """``name``'s id, registered on first use; a full table is emptied once and tried again
        (operations in flight keep their lock); a refused name leaves the table alone. Raises
        ``EngineError`` for a bad name."""
        known = self.ids.get(name)
        if known is not None:
            return known
        with self.lock:
            try:
                id_ = self._register(name)
            except EngineError as refused:
                # The engine checks the name first and says a full table with an ``invalid``
                # error of kind ``other``, which no name's own refusal has (``wit/engine.wit``,
                # ``register``): any other refusal is the name's, and the names registered stay.
                error = refused.error
                if error.tag != "invalid" or str(field(error.payload, "kind")) != "other":
                    raise
                self.session.forget_names()
                self.ids.clear()
                id_ = self._register(name)
            self.ids[name] = id_
            return id_

    def _register(self, name: str) -> int:
        """``register`` by the raw call (a new name costs one, ~40 µs through the generic
        conversions: a workload over many names pays it once a name): the id, or raises
        ``EngineError``."""
        export = self._calls["register"]
        export.args.string(1, name)
        self._call_at(export.func_at, export.args_at, 2)
        is_ok, value_at = _RESULT_HEAD.unpack_from(self._answer, PAYLOAD)
        if not is_ok:
            _, error = split_result(export.func.result.convert_from_c(self._result))
            moved_out(self._result)  # the conversion took what it held
            raise EngineError(error)
        return _U32_VALUE.unpack(_read(value_at + PAYLOAD, _U32_VALUE.size))[0]

    def _call(self, method: str) -> Any:
        """Calls ``method`` with the arguments its caller wrote into its ``Args``; the answer
        as a C value, the one every call reuses: read before the engine's lock is let go, left
        in place (the next call's answer frees it as wasmtime writes over it)."""
        export = self._calls[method]
        self._call_at(export.func_at, export.args_at, export.args.n)
        return self._result

    def _call_at(self, func_at: int, args_at: int, n: int) -> None:
        error = _func_call_at(func_at, self._context_at, args_at, n, self._result_at, 1)
        if error:
            _trap(error)

    def _started(self, export: _Export) -> tuple[Slot, bytes]:
        """Runs a ``*-flat-packed`` constructor (its arguments written): its slot and first
        step, or raises ``EngineError`` (refused: nothing was built, nothing changed)."""
        self._call_at(export.func_at, export.args_at, export.args.n)
        is_ok, value_at = _RESULT_HEAD.unpack_from(self._answer, PAYLOAD)
        if not is_ok:
            _, error = split_result(export.func.result.convert_from_c(self._result))
            moved_out(self._result)  # the conversion took what it held
            raise EngineError(error)
        first = read_words(value_at + PAYLOAD)
        return Slot(self, _from_le(first[1:5], "little")), first

    def acquire(self, name: str, wait_ms: int, now_ms: float, entropy: bytes, lent: bytes) -> tuple[Slot, bytes]:
        """``acquire-flat-packed``: the operation's slot and its first step (slotted layout)."""
        export = self._acquire
        with self.lock:  # with the id: no other thread forgets it in between
            name_id = self.ids.get(name)
            if name_id is None:
                name_id = self.name_id(name)
            args, runs = export.args, export.runs
            runs[1].pack_into(args.vals, VAL_SIZE, _U32, name_id, _U32, wait_ms, _F64, now_ms)
            args.words(4, entropy)
            runs[5].pack_into(args.vals, 5 * VAL_SIZE, _U32, _bits(lent))
            return self._started(export)

    def release(self, name: str, token: str, now_ms: float, entropy: bytes, lent: bytes) -> tuple[Slot, bytes]:
        """``release-flat-packed``: the operation's slot and its first step (slotted layout)."""
        export = self._release
        with self.lock:
            name_id = self.ids.get(name)
            if name_id is None:
                name_id = self.name_id(name)
            args, runs = export.args, export.runs
            data = token.encode("ascii")
            runs[1].pack_into(args.vals, VAL_SIZE, _U32, name_id)
            args.words(2, data)
            runs[3].pack_into(args.vals, 3 * VAL_SIZE, _U32, len(data), _F64, now_ms)
            args.words(5, entropy)
            runs[6].pack_into(args.vals, 6 * VAL_SIZE, _U32, _bits(lent))
            return self._started(export)

    def extend(self, name: str, token: str, ttl_ms: int, now_ms: float, entropy: bytes, lent: bytes) -> tuple[Slot, bytes]:
        """``extend-flat-packed``: the operation's slot and its first step (slotted layout)."""
        export = self._extend
        with self.lock:
            name_id = self.ids.get(name)
            if name_id is None:
                name_id = self.name_id(name)
            args, runs = export.args, export.runs
            data = token.encode("ascii")
            runs[1].pack_into(args.vals, VAL_SIZE, _U32, name_id)
            args.words(2, data)
            runs[3].pack_into(args.vals, 3 * VAL_SIZE, _U32, len(data), _U32, ttl_ms, _F64, now_ms)
            args.words(6, entropy)
            runs[7].pack_into(args.vals, 7 * VAL_SIZE, _U32, _bits(lent))
            return self._started(export)

    def feed(self, slot: int, now_ms: float, node: int, data: bytes) -> bytes:
        export = self._feed
        with self.lock:
            args = export.args
            export.runs[1].pack_into(args.vals, VAL_SIZE, _U32, slot, _F64, now_ms, _U8, node)
            args.words(4, data)
            export.runs[5].pack_into(args.vals, 5 * VAL_SIZE, _U32, len(data))
            error = _func_call_at(export.func_at, self._context_at, export.args_at, 6, self._result_at, 1)  # `_call_at`, inline: once per reply
            if error:
                _trap(error)
            return words_at(*_LIST_HEAD_FROM(self._answer, PAYLOAD))

    def lose(self, slot: int, now_ms: float, node: int) -> bytes:
        return self._node_event(self._lose, slot, now_ms, node)

    def lend(self, slot: int, now_ms: float, node: int) -> bytes:
        return self._node_event(self._lend, slot, now_ms, node)

    def _node_event(self, export: _Export, slot: int, now_ms: float, node: int) -> bytes:
        """``lose-flat-packed`` or ``lend-flat-packed`` (``export``): one node's event."""
        with self.lock:
            export.runs[1].pack_into(export.args.vals, VAL_SIZE, _U32, slot, _F64, now_ms, _U8, node)
            self._call_at(export.func_at, export.args_at, 4)
            return words_at(*_LIST_HEAD_FROM(self._answer, PAYLOAD))

    def tick(self, slot: int, now_ms: float) -> bytes:
        export = self._tick
        with self.lock:
            export.runs[1].pack_into(export.args.vals, VAL_SIZE, _U32, slot, _F64, now_ms)
            self._call_at(export.func_at, export.args_at, 3)
            return words_at(*_LIST_HEAD_FROM(self._answer, PAYLOAD))

    def close(self) -> None:
        """Frees the last answer (the calls stay usable: the next one writes a fresh answer)."""
        with self.lock:
            _val_delete(_byref(self._result))
            moved_out(self._result)


def _trap(error: Any) -> None:
    """Raises the trap or error a call returned (a trap writes no answer: the last one stays,
    freed by the next call)."""
    enter_wasm(lambda: ctypes.cast(error, _ERROR))


def _bits(lent: bytes) -> int:
    """``lent`` (1 per node lent a connection) as the engine's bitmask."""
    if len(lent) == 1:  # one node: the byte is the mask
        return lent[0]
    return sum(1 << node for node, given in enumerate(lent) if given)


class Slot:
    """One operation in a session's slot: ``_engine.Operation``'s flat calls by slot number."""

    __slots__ = ("slots", "slot")
    engine_frees = True  # the engine frees the slot with the outcome: no drop after one

    def __init__(self, slots: Slots, slot: int) -> None:
        self.slots, self.slot = slots, slot

    def feed(self, now_ms: float, node: int, data: bytes) -> bytes:
        return self.slots.feed(self.slot, now_ms, node, data)

    def lose(self, now_ms: float, node: int) -> bytes:
        return self.slots.lose(self.slot, now_ms, node)

    def lend(self, now_ms: float, node: int) -> bytes:
        return self.slots.lend(self.slot, now_ms, node)

    def tick(self, now_ms: float) -> bytes:
        return self.slots.tick(self.slot, now_ms)

    def poll_outcome(self) -> Any:
        """The outcome the slotted layout does not carry (an error, …), once; frees the slot."""
        return self.slots.session.outcome_flat(self.slot)

    def drop(self) -> None:
        """Abandons an operation that did not end (bookkeeping only, no I/O)."""
        self.slots.session.abandon(self.slot)

