"""The engine's session-level flat calls in their packed form (``wit/engine.wit``:
``session.register``, ``acquire-flat-packed``, ``release-flat-packed``, ``extend-flat-packed``,
``feed-flat-packed``, …): an uncontended acquire and its release in four component calls with
only scalars and bytes crossing — the lock name registered once (a ``u32`` name id), the
operation addressed by a slot number the engine frees itself once its outcome is handed out
(no resource to drop), and every byte list packed eight bytes to a ``u64``, so
``wasmtime.component``, which converts a list one element at a time, converts an eighth of
the values.

Owns: one session's name ids (registered on first use, forgotten all at once when the
engine's table is full), the exports' arguments kept lowered between calls (``_lowered.py``),
and a :class:`Slot` per operation with the same calls as ``_engine.Operation`` (``feed``,
``lose``, ``tick``, ``poll_outcome``, ``drop``), so the drivers run either alike. Every
decision is the engine's; this only packs bytes.

Invariants: calls are made under the engine's lock; a slot is abandoned (``drop``) only when
its operation did not end (the engine frees it with its outcome otherwise); a name id is used
only on the session that registered it; a packed byte list goes with its exact length.
"""

from __future__ import annotations

import ctypes
from typing import Any

from wasmtime import _ffi as ffi
from wasmtime.component._enter import enter_wasm

from ._engine import EngineError, Handle, split_result
from ._lowered import PAYLOAD, VAL, Args, lift_words, moved_out

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

# The exports called with kept arguments, and how many each takes (the session first).
_HOT = {
    "acquire-flat-packed": 6,
    "release-flat-packed": 7,
    "extend-flat-packed": 8,
    "feed-flat-packed": 6,
    "lose-flat-packed": 4,
    "tick-flat-packed": 3,
}


class Slots:
    """The session-level flat calls of one session (``session``, its ``Handle``)."""

    def __init__(self, session: Handle) -> None:
        self.session, self.engine = session, session.engine
        self.ids: dict[str, int] = {}
        self._self = VAL()  # the session's handle, lowered once; freed with the session
        self._self.kind = _RESOURCE_KIND
        self._self.of.resource = ffi.wasmtime_component_resource_any_clone(session.resource.ptr())
        # The raw call's addresses: the store's context (the engine keeps it for the store's
        # life), one answer value reused by every call (each answer is consumed before the
        # engine's lock is let go), and per export its function and its kept arguments.
        self._context_at = ctypes.cast(self.engine.context, ctypes.c_void_p).value
        self._result = VAL()
        self._result_at = _addressof(self._result)
        self._answer_list_at = self._result_at + PAYLOAD  # a step call's list<u64> answer
        self._calls: dict[str, tuple[Any, int, Args, int]] = {}
        for method, n in _HOT.items():
            export = self.engine._func(f"[method]session.{method}")
            args = Args(n)
            args.handle(0, self._self)
            self._calls[method] = (export, _addressof(export.func._func), args, _addressof(args.vals))

    def name_id(self, name: str) -> int:
        """``name``'s id, registered on first use; a full table is emptied once and tried again
        (operations in flight keep their lock). Raises ``EngineError`` for a bad name."""
        known = self.ids.get(name)
        if known is not None:
            return known
        with self.engine.lock:
            try:
                id_ = self.session.fallible("register", name)
            except EngineError:
                if not self.ids:
                    raise  # nothing to forget: the name itself is refused
                self.session.forget_names()
                self.ids.clear()
                id_ = self.session.fallible("register", name)
            self.ids[name] = id_
            return id_

    def _call(self, method: str) -> Any:
        """Calls ``method`` with the arguments its caller wrote into its ``Args``; the answer
        as a C value, the one every call reuses: consumed before the engine's lock is let go."""
        _, func_at, args, args_at = self._calls[method]
        # wasmtime drops what the answer value holds as it writes the answer: the last answer
        # was freed already, so mark it empty.
        moved_out(self._result)
        error = _func_call_at(func_at, self._context_at, args_at, args.n, self._result_at, 1)
        if error:
            enter_wasm(lambda: ctypes.cast(error, _ERROR))
        return self._result

    def _started(self, method: str) -> tuple[Slot, bytes]:
        """Runs a ``*-flat-packed`` constructor (its arguments written): its slot and first
        step."""
        result = self._call(method)
        outcome = result.of.result
        if not outcome.is_ok:  # refused: nothing was built, nothing changed
            _, error = split_result(self._calls[method][0].result.convert_from_c(result))
            raise EngineError(error)
        list_val = outcome.val.contents
        first = lift_words(_addressof(list_val) + PAYLOAD)
        moved_out(list_val)  # its list is freed already
        _val_delete(_byref(result))
        return Slot(self, _from_le(first[1:5], "little")), first

    def acquire(self, name: str, wait_ms: int, now_ms: float, entropy: bytes, lent: bytes) -> tuple[Slot, bytes]:
        """``acquire-flat-packed``: the operation's slot and its first step (slotted layout)."""
        with self.engine.lock:  # with the id: no other thread forgets it in between
            args = self._calls["acquire-flat-packed"][2]
            args.u32(1, self.name_id(name))
            args.u32(2, wait_ms)
            args.f64(3, now_ms)
            args.words(4, entropy)
            args.u32(5, _bits(lent))
            return self._started("acquire-flat-packed")

    def release(self, name: str, token: str, now_ms: float, entropy: bytes, lent: bytes) -> tuple[Slot, bytes]:
        """``release-flat-packed``: the operation's slot and its first step (slotted layout)."""
        with self.engine.lock:
            args = self._calls["release-flat-packed"][2]
            args.u32(1, self.name_id(name))
            self._token(args, 2, token)
            args.f64(4, now_ms)
            args.words(5, entropy)
            args.u32(6, _bits(lent))
            return self._started("release-flat-packed")

    def extend(self, name: str, token: str, ttl_ms: int, now_ms: float, entropy: bytes, lent: bytes) -> tuple[Slot, bytes]:
        """``extend-flat-packed``: the operation's slot and its first step (slotted layout)."""
        with self.engine.lock:
            args = self._calls["extend-flat-packed"][2]
            args.u32(1, self.name_id(name))
            self._token(args, 2, token)
            args.u32(4, ttl_ms)
            args.f64(5, now_ms)
            args.words(6, entropy)
            args.u32(7, _bits(lent))
            return self._started("extend-flat-packed")

    @staticmethod
    def _token(args: Args, i: int, token: str) -> None:
        """A lease's token as its ASCII bytes packed (slot ``i``) and their count (``i + 1``)."""
        data = token.encode("ascii")
        args.words(i, data)
        args.u32(i + 1, len(data))

    def feed(self, slot: int, now_ms: float, node: int, data: bytes) -> bytes:
        with self.engine.lock:
            args = self._calls["feed-flat-packed"][2]
            args.u32(1, slot)
            args.f64(2, now_ms)
            args.u8(3, node)
            args.words(4, data)
            args.u32(5, len(data))
            self._call("feed-flat-packed")
            return lift_words(self._answer_list_at)

    def lose(self, slot: int, now_ms: float, node: int) -> bytes:
        with self.engine.lock:
            args = self._calls["lose-flat-packed"][2]
            args.u32(1, slot)
            args.f64(2, now_ms)
            args.u8(3, node)
            self._call("lose-flat-packed")
            return lift_words(self._answer_list_at)

    def tick(self, slot: int, now_ms: float) -> bytes:
        with self.engine.lock:
            args = self._calls["tick-flat-packed"][2]
            args.u32(1, slot)
            args.f64(2, now_ms)
            self._call("tick-flat-packed")
            return lift_words(self._answer_list_at)


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

    def tick(self, now_ms: float) -> bytes:
        return self.slots.tick(self.slot, now_ms)

    def poll_outcome(self) -> Any:
        """The outcome the slotted layout does not carry (an error, …), once; frees the slot."""
        return self.slots.session.outcome_flat(self.slot)

    def drop(self) -> None:
        """Abandons an operation that did not end (bookkeeping only, no I/O)."""
        self.slots.session.abandon(self.slot)

