"""Arguments kept lowered between engine calls (``_lowered.Args``): whatever was written
before, a slot's C value holds exactly the last value written, so a call never sees a stale
name, token, entropy or reply, as bytes or packed eight to a ``u64`` (the packed calls'
``list<u64>``: little-endian, the last word zero-padded). Checked by reading the C values back, over seeded random
sequences that revisit lengths and names and pass the per-slot cache's size; then end to end,
locks whose names alternate must lock exactly their own keys."""

from __future__ import annotations

import ctypes
import random

import pytest
from conftest import unique

from distlock import Client, NotAcquired
from distlock._lowered import _LISTS_PER_SLOT, PAYLOAD, VAL_SIZE, Args
from wasmtime import _ffi as ffi


def read_bytes(args: Args, i: int) -> bytes:
    val = args.vals[i]
    assert val.kind == ffi.WASMTIME_COMPONENT_LIST.value
    items = val.of.list
    raw = ctypes.string_at(items.data, items.size * VAL_SIZE) if items.size else b""
    assert raw[0::VAL_SIZE] == bytes([ffi.WASMTIME_COMPONENT_U8.value]) * items.size
    return raw[PAYLOAD::VAL_SIZE]


def read_words(args: Args, i: int) -> bytes:
    """A packed ``list<u64>`` slot's bytes, read word by word as the C API hands them over."""
    val = args.vals[i]
    assert val.kind == ffi.WASMTIME_COMPONENT_LIST.value
    items = val.of.list
    words = [items.data[k] for k in range(items.size)]
    assert all(word.kind == ffi.WASMTIME_COMPONENT_U64.value for word in words)
    return b"".join(word.of.u64.to_bytes(8, "little") for word in words)


def read_string(args: Args, i: int) -> str:
    val = args.vals[i]
    assert val.kind == ffi.WASMTIME_COMPONENT_STRING.value
    return ctypes.string_at(val.of.string.data, val.of.string.size).decode()


@pytest.mark.parametrize("seed", range(20))
def test_a_slot_holds_the_last_value_written(seed):
    rng = random.Random(seed)
    args = Args(6)
    names = ["a", "b", "lock:é", "x" * 300, ""]
    lengths = range(_LISTS_PER_SLOT * 2)  # more lengths than a slot keeps: some are evicted
    word_lengths = range(_LISTS_PER_SLOT * 8 * 2)  # more word counts than a slot keeps
    try:
        for _ in range(500):
            data = rng.randbytes(rng.choice(lengths))
            packed = rng.randbytes(rng.choice(word_lengths))
            name = rng.choice(names)
            scalar = rng.random() * 1e12
            args.bytes(0, data)
            args.string(1, name)
            args.f64(2, scalar)
            args.u32(3, rng.randrange(2**32))
            args.words(4, packed)
            assert read_bytes(args, 0) == data
            assert read_string(args, 1) == name
            assert args.vals[2].of.f64 == scalar
            assert read_words(args, 4) == packed + bytes(-len(packed) % 8)
            # A slot that takes a scalar between word lists points at its list again after.
            if rng.random() < 0.3:
                scalar_word = rng.randrange(2**32)
                args.u32(5, scalar_word)
                assert args.vals[5].kind == ffi.WASMTIME_COMPONENT_U32.value
                assert args.vals[5].of.u32 == scalar_word
            else:
                mixed = rng.randbytes(rng.choice(range(24)))
                args.words(5, mixed)
                assert read_words(args, 5) == mixed + bytes(-len(mixed) % 8)
    finally:
        args.free()


def test_wrong_types_are_refused_and_change_nothing():
    args = Args(2)
    try:
        args.bytes(0, b"kept")
        args.string(1, "kept")
        with pytest.raises(TypeError):
            args.bytes(0, "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            args.string(1, b"bytes")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            args.words(0, "text")  # type: ignore[arg-type]
        assert read_bytes(args, 0) == b"kept"
        assert read_string(args, 1) == "kept"
    finally:
        args.free()


def test_alternating_names_lock_their_own_keys(start):
    [s] = start()
    with Client.connect(s.url) as a, Client.connect(s.url) as b:
        names = [unique("alt"), unique("alt-longer-name")]
        held = [a.acquire(name) for name in names]  # one client: its kept name slot changes
        for name, lease in zip(names, held):
            assert s.redis.get(f"distlock:{{{name}}}".encode()) == lease.token.encode()
            with pytest.raises(NotAcquired):
                b.acquire(name, wait=0)
        held[0].release()  # the token slot changes too; only the first lock is let go
        assert s.redis.get(f"distlock:{{{names[0]}}}".encode()) is None
        assert s.redis.get(f"distlock:{{{names[1]}}}".encode()) == held[1].token.encode()
        b.acquire(names[0], wait=0).release()
        held[1].release()
