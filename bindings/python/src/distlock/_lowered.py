"""Arguments of an engine call lowered into the component's C values once and kept for the next
call, and ``list<u8>`` answers (and ``list<u64>`` answers carrying bytes, the packed calls')
lifted in one copy.

Owns: the C array a hot export is called with (``Args``), which value sits in each slot, and
freeing each lowered value exactly once. ``wasmtime.component`` lowers every argument afresh
and frees it after the call (a string is encoded, copied into a ``wasm_byte_vec_t``; a byte
list becomes one ``wasmtime_component_val_t`` per byte); the hot path instead rewrites only
what changed: a scalar in place (a run of them by one ``pack_into``, ``scalar_run``), the
same name not at all, a byte list of a length seen before (entropy, ``lent``, replies, which
come in a few sizes) by one strided write into the values kept for that length. Bytes packed eight to a ``u64`` (``wit/engine.wit``'s packed
calls) cost wasmtime an eighth of the values; they are written and read as whole words by
one strided copy of the payloads viewed as ``u64``. Pinned to wasmtime 51 (see
``pyproject.toml``), whose C layout this relies on.

Invariants: wasmtime's ``wasmtime_component_func_call`` borrows its arguments (they are
``const`` in the C API, converted, never taken), so a value kept here stays valid across calls;
a slot holds a value this module lowered (freed when replaced, evicted or by ``free``) or a
borrowed resource handle its owner frees (``handle``); a packed slot is pointed at its kept
list again whenever anything else was written into it since (``_pointing`` says what it
points at); an ``Args`` is used under its engine's lock only.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from array import array
from typing import Any

from wasmtime import _ffi as ffi

VAL = ffi.wasmtime_component_val_t
VAL_SIZE = ctypes.sizeof(VAL)
PAYLOAD = VAL.of.offset  # where a value's payload starts, after its kind byte

_U8 = ffi.WASMTIME_COMPONENT_U8.value
_U8_KINDS = bytes([_U8]) * 4096
_U32 = ffi.WASMTIME_COMPONENT_U32
_U64 = ffi.WASMTIME_COMPONENT_U64.value
_F64 = ffi.WASMTIME_COMPONENT_F64
_STRING = ffi.WASMTIME_COMPONENT_STRING
_LIST = ffi.WASMTIME_COMPONENT_LIST
_BOOL = ffi.WASMTIME_COMPONENT_BOOL
# The kind byte of a scalar value, by its ``struct`` code (for :func:`scalar_run`).
KIND = {"B": _U8, "I": _U32.value, "d": _F64.value}

# `wasm_byte_vec_new` taking the bytes object itself (wasmtime's own prototype wants a ctypes
# array, one more copy): a function object of its own, so wasmtime's prototype stays as it is.
# Both keep the GIL (``PYFUNCTYPE``): an allocation or a free, over in well under a
# microsecond, never blocks, and letting go of the GIL around it makes a thread queue for the
# GIL again behind every other thread (a new lock name lowers one string and frees the last:
# with 16 threads busy, ~7% of the CPU of a pair that registers a name, measured).
_byte_vec_new = ctypes.PYFUNCTYPE(None, ctypes.POINTER(ffi.wasm_byte_vec_t), ctypes.c_size_t, ctypes.c_char_p)(("wasm_byte_vec_new", ffi.dll))
_vallist_new_uninit = ffi.wasmtime_component_vallist_new_uninit
_vallist_delete = ffi.wasmtime_component_vallist_delete
_val_delete = ctypes.PYFUNCTYPE(None, ctypes.POINTER(VAL))(("wasmtime_component_val_delete", ffi.dll))
_string_at = ctypes.string_at
_byref = ctypes.byref
_WORD = 8  # bytes a packed u64 carries
_WORDS_APART = VAL_SIZE // _WORD  # one value's stride, in words
_WORD_AT = PAYLOAD // _WORD  # a value's payload, in words (a u64 payload is 8-aligned)
_LITTLE = sys.byteorder == "little"  # the C values hold host-order words; the packing is little-endian
LIST_HEAD = _LIST_HEAD = struct.Struct("@nP")  # a wasmtime_component_vallist_t: size_t size, the values' pointer
_read = getattr(ctypes, "_string_at", ctypes.string_at)  # (address, size): string_at without its wrapper


def lift_bytes(result: Any) -> bytes:
    """A ``list<u8>`` answer (``result``, a ``VAL``) as bytes, freeing its C list: the bytes
    sit ``VAL_SIZE`` apart, each at ``PAYLOAD``, so one copy and one strided slice."""
    items = result.of.list
    size = items.size
    data = _string_at(items.data, size * VAL_SIZE)[PAYLOAD::VAL_SIZE] if size else b""
    _vallist_delete(_byref(items))
    return data


def read_words(list_at: int) -> bytes:
    """A ``list<u64>`` answer of a packed call as the bytes its words carry, eight each,
    little-endian (with the zeros padding the last word), leaving the C list in place (an
    answer value the next call overwrites frees it then). ``list_at``: the address of the
    answer's ``wasmtime_component_vallist_t`` (a ``VAL``'s payload), read by address rather
    than through ctypes' structure views (each attribute is an object)."""
    return words_at(*_LIST_HEAD.unpack(_read(list_at, _LIST_HEAD.size)))


def words_at(size: int, data: int) -> bytes:
    """The bytes carried by the ``size`` ``u64`` values at address ``data`` (a list's values):
    one copy, the payloads viewed as ``u64`` a value apart."""
    if not size:
        return b""
    words = memoryview(_read(data, size * VAL_SIZE)).cast("Q")[_WORD_AT::_WORDS_APART].tobytes()
    if _LITTLE:
        return words
    swapped = array("Q", words)
    swapped.byteswap()
    return swapped.tobytes()


def scalar_run(codes: str) -> struct.Struct:
    """A ``Struct`` that writes consecutive scalar arguments in one ``pack_into`` at the first
    one's offset in an ``Args``' values: per value its kind byte and its payload (``codes``, one
    ``struct`` code a value: ``B`` u8, ``I`` u32, ``d`` f64), a value's width apart; packed as
    ``kind, value, kind, value, …`` (see :data:`KIND`)."""
    fmt = "="
    for code in codes:
        fmt += f"B{PAYLOAD - 1}x{code}{VAL_SIZE - PAYLOAD - struct.calcsize('=' + code)}x"
    return struct.Struct(fmt)


def moved_out(val: Any) -> None:
    """Marks ``val`` (inside an answer, or an answer consumed) as taken: a ``bool``, which
    neither the answer's delete nor wasmtime writing a new answer over it frees again."""
    val.kind = _BOOL


_LISTS_PER_SLOT = 8  # lengths a byte-list slot keeps lowered (replies come in a few sizes)


class Args:
    """``n`` argument slots for one export, kept lowered between calls (see the module doc)."""

    __slots__ = ("vals", "n", "_slots", "_payloads", "_kept", "_lists", "_pointing")

    def __init__(self, n: int) -> None:
        self.vals = (VAL * n)()
        self.n = n
        # Views of each slot and of its payload, made once (``vals[i].of`` makes two objects).
        self._slots = [self.vals[i] for i in range(n)]
        self._payloads = [slot.of for slot in self._slots]
        self._kept: list[str | None] = [None] * n  # a lowered string slot's value (this owns it)
        # A byte-list slot's lowered lists by length: [C list, its values as a writable view,
        # the bytes they hold]; the slot points at one of them, this owns them all.
        self._lists: list[dict[int, list[Any]]] = [{} for _ in range(n)]
        # A packed slot's C value points at the list kept for this many words (``None``: at
        # none): pointing it again is skipped (copying a list head in is ~0.5 µs).
        self._pointing: list[int | None] = [None] * n

    def handle(self, i: int, val: Any) -> None:
        """A resource handle whose owner keeps and frees it (a copy of its C value)."""
        self._pointing[i] = None
        self.vals[i] = val

    def u8(self, i: int, x: int) -> None:
        self._pointing[i] = None
        self._slots[i].kind = _U8
        self._payloads[i].u8 = x

    def u32(self, i: int, x: int) -> None:
        self._pointing[i] = None
        self._slots[i].kind = _U32
        self._payloads[i].u32 = x

    def f64(self, i: int, x: float) -> None:
        self._pointing[i] = None
        self._slots[i].kind = _F64
        self._payloads[i].f64 = x

    def string(self, i: int, s: str) -> None:
        """A ``string``: lowered again only when it differs from the one kept."""
        if self._kept[i] == s:
            return
        if not isinstance(s, str):
            raise TypeError("expected a string")
        self._free_string(i)
        self._pointing[i] = None
        data = s.encode("utf-8")
        val = self.vals[i]
        _byte_vec_new(_byref(val.of.string), len(data), data)
        val.kind = _STRING
        self._kept[i] = s

    def bytes(self, i: int, data: bytes) -> None:
        """A ``list<u8>``: the slot points at the list kept for this length, rewritten in
        place (one strided write) when the bytes differ; a new length is lowered once."""
        size = len(data)
        lists = self._lists[i]
        entry = lists.get(size)
        if entry is None:
            if not isinstance(data, (bytes, bytearray)):
                raise TypeError("expected bytes value")
            if len(lists) >= _LISTS_PER_SLOT:
                _vallist_delete(_byref(lists.pop(next(iter(lists)))[0]))
            raw = ffi.wasmtime_component_vallist_t()
            _vallist_new_uninit(_byref(raw), size)
            view = None
            if size:
                view = memoryview((ctypes.c_ubyte * (size * VAL_SIZE)).from_address(ctypes.addressof(raw.data.contents))).cast("B")
                view[0::VAL_SIZE] = _U8_KINDS[:size] if size <= len(_U8_KINDS) else bytes([_U8]) * size
            entry = lists[size] = [raw, view, None]
        if entry[2] != data:
            if size:
                entry[1][PAYLOAD::VAL_SIZE] = data
            entry[2] = bytes(data)
        self._pointing[i] = None
        self._slots[i].kind = _LIST
        self._payloads[i].list = entry[0]

    def words(self, i: int, data: bytes) -> None:
        """``data`` as a packed call's ``list<u64>`` (eight bytes a word, little-endian, the last
        word zero-padded; its length goes in its own argument): the slot points at the list kept
        for this many words, rewritten in place (one strided write) when the bytes differ."""
        size = (len(data) + _WORD - 1) // _WORD
        entry = self._lists[i].get(size)
        if entry is None:
            if not isinstance(data, (bytes, bytearray)):
                raise TypeError("expected bytes value")
            entry = self._new_words(i, size)
        if entry[2] != data:
            if size:
                padded = data + bytes(size * _WORD - len(data)) if len(data) % _WORD else data
                if _LITTLE:
                    entry[1][:] = memoryview(padded).cast("Q")
                else:
                    swapped = array("Q", padded)
                    swapped.byteswap()
                    entry[1][:] = memoryview(swapped)
            entry[2] = data if type(data) is bytes else bytes(data)
        if self._pointing[i] != size:
            self._slots[i].kind = _LIST
            self._payloads[i].list = entry[0]
            self._pointing[i] = size

    def _new_words(self, i: int, size: int) -> list[Any]:
        """The list kept for ``size`` words in slot ``i``, lowered (its values' kinds set)."""
        lists = self._lists[i]
        if len(lists) >= _LISTS_PER_SLOT:
            _vallist_delete(_byref(lists.pop(next(iter(lists)))[0]))
        raw = ffi.wasmtime_component_vallist_t()
        _vallist_new_uninit(_byref(raw), size)
        view = None
        if size:
            values = memoryview((ctypes.c_ubyte * (size * VAL_SIZE)).from_address(ctypes.addressof(raw.data.contents))).cast("B")
            values[0::VAL_SIZE] = bytes([_U64]) * size
            view = values.cast("Q")[_WORD_AT::_WORDS_APART]
        entry = lists[size] = [raw, view, None]
        return entry

    def _free_string(self, i: int) -> None:
        if self._kept[i] is not None:
            self._kept[i] = None
            _val_delete(_byref(self.vals[i]))

    def free(self) -> None:
        """Frees every value lowered here (the handles are their owners')."""
        for i in range(self.n):
            self._free_string(i)
            for raw, _, _ in self._lists[i].values():
                _vallist_delete(_byref(raw))
            self._lists[i].clear()
            self._pointing[i] = None
