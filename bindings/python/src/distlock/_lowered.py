"""Arguments of an engine call lowered into the component's C values once and kept for the next
call, and ``list<u8>`` answers lifted in one copy.

Owns: the C array a hot export is called with (``Args``), which value sits in each slot, and
freeing each lowered value exactly once. ``wasmtime.component`` lowers every argument afresh
and frees it after the call (a string is encoded, copied into a ``wasm_byte_vec_t``; a byte
list becomes one ``wasmtime_component_val_t`` per byte); the hot path instead rewrites only
what changed: a scalar in place, the same name not at all, a byte list of the same length
(entropy, ``lent``, a reply of the usual size) by one strided write into the values it already
has. Pinned to wasmtime 51 (see ``pyproject.toml``), whose C layout this relies on.

Invariants: wasmtime's ``wasmtime_component_func_call`` borrows its arguments (they are
``const`` in the C API, converted, never taken), so a value kept here stays valid across calls;
a slot holds a value this module lowered (freed when replaced or by ``free``) or a borrowed
resource handle its owner frees (``handle``); an ``Args`` is used under its engine's lock only.
"""

from __future__ import annotations

import ctypes
from typing import Any

from wasmtime import _ffi as ffi

VAL = ffi.wasmtime_component_val_t
VAL_SIZE = ctypes.sizeof(VAL)
PAYLOAD = VAL.of.offset  # where a value's payload starts, after its kind byte

_U8 = ffi.WASMTIME_COMPONENT_U8.value
_U8_KINDS = bytes([_U8]) * 4096
_U32 = ffi.WASMTIME_COMPONENT_U32
_F64 = ffi.WASMTIME_COMPONENT_F64
_STRING = ffi.WASMTIME_COMPONENT_STRING
_LIST = ffi.WASMTIME_COMPONENT_LIST
_BOOL = ffi.WASMTIME_COMPONENT_BOOL

# `wasm_byte_vec_new` taking the bytes object itself (wasmtime's own prototype wants a ctypes
# array, one more copy): a function object of its own, so wasmtime's prototype stays as it is.
_byte_vec_new = ctypes.CFUNCTYPE(None, ctypes.POINTER(ffi.wasm_byte_vec_t), ctypes.c_size_t, ctypes.c_char_p)(("wasm_byte_vec_new", ffi.dll))
_vallist_new_uninit = ffi.wasmtime_component_vallist_new_uninit
_vallist_delete = ffi.wasmtime_component_vallist_delete
_val_delete = ffi.wasmtime_component_val_delete
_string_at = ctypes.string_at
_byref = ctypes.byref


def lift_bytes(result: Any) -> bytes:
    """A ``list<u8>`` answer (``result``, a ``VAL``) as bytes, freeing its C list: the bytes
    sit ``VAL_SIZE`` apart, each at ``PAYLOAD``, so one copy and one strided slice."""
    items = result.of.list
    size = items.size
    data = _string_at(items.data, size * VAL_SIZE)[PAYLOAD::VAL_SIZE] if size else b""
    _vallist_delete(_byref(items))
    return data


def moved_out(val: Any) -> None:
    """Marks ``val`` (inside an answer) as taken, so the answer's delete does not free it."""
    val.kind = _BOOL


class Args:
    """``n`` argument slots for one export, kept lowered between calls (see the module doc)."""

    __slots__ = ("vals", "n", "_kept", "_views")

    def __init__(self, n: int) -> None:
        self.vals = (VAL * n)()
        self.n = n
        self._kept: list[Any] = [None] * n  # what each lowered slot holds; None: nothing to free
        self._views: list[memoryview | None] = [None] * n  # a byte list's C values, writable

    def handle(self, i: int, val: Any) -> None:
        """A resource handle whose owner keeps and frees it (a copy of its C value)."""
        self.vals[i] = val

    def u8(self, i: int, x: int) -> None:
        val = self.vals[i]
        val.kind = _U8
        val.of.u8 = x

    def u32(self, i: int, x: int) -> None:
        val = self.vals[i]
        val.kind = _U32
        val.of.u32 = x

    def f64(self, i: int, x: float) -> None:
        val = self.vals[i]
        val.kind = _F64
        val.of.f64 = x

    def string(self, i: int, s: str) -> None:
        """A ``string``: lowered again only when it differs from the one kept."""
        if self._kept[i] == s:
            return
        if not isinstance(s, str):
            raise TypeError("expected a string")
        self._free(i)
        data = s.encode("utf-8")
        val = self.vals[i]
        _byte_vec_new(_byref(val.of.string), len(data), data)
        val.kind = _STRING
        self._kept[i] = s

    def bytes(self, i: int, data: bytes) -> None:
        """A ``list<u8>``: written into the kept values when the length is the same, else
        lowered anew (one strided copy)."""
        kept, view = self._kept[i], self._views[i]
        if kept is not None and len(kept) == len(data) and (view is not None or not data):
            if kept != data:
                view[PAYLOAD::VAL_SIZE] = data  # type: ignore[index]
                self._kept[i] = data
            return
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("expected bytes value")
        self._free(i)
        val = self.vals[i]
        size = len(data)
        _vallist_new_uninit(_byref(val.of.list), size)
        val.kind = _LIST
        if size:
            view = memoryview((ctypes.c_ubyte * (size * VAL_SIZE)).from_address(ctypes.addressof(val.of.list.data.contents))).cast("B")
            view[0::VAL_SIZE] = _U8_KINDS[:size] if size <= len(_U8_KINDS) else bytes([_U8]) * size
            view[PAYLOAD::VAL_SIZE] = data
            self._views[i] = view
        self._kept[i] = bytes(data)

    def _free(self, i: int) -> None:
        if self._kept[i] is not None:
            self._views[i] = None
            self._kept[i] = None
            _val_delete(_byref(self.vals[i]))

    def free(self) -> None:
        """Frees every value lowered here (the handles are their owners')."""
        for i in range(self.n):
            self._free(i)
