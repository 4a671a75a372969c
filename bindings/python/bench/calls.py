"""Per-call cost of the engine's operation calls from Python: ``step`` with one ``data`` event
(records and variants through ``wasmtime.component``'s value conversion) beside its flat twin
``feed`` (bytes in, bytes out, arguments kept lowered between calls), the flat calls' floor
(``tick``), an operation's build and its drop, one acquire's and one release's engine work
without the network (as a resource, and in a session slot: ``_slots.py``), a slotted call
with its bytes as ``list<u8>`` against its packed twin (``list<u64>``), and each way to lower a
``list<u8>`` or a ``string``. A measurement to report, not a test: ``python bench/calls.py
redis://127.0.0.1:6379``. The per-call rows go to an operation that is over (or a freed
slot), so each does the conversions and no lock work."""

from __future__ import annotations

import statistics
import sys
import time

import ctypes

from wasmtime import _ffi as ffi
from wasmtime.component import _types

import distlock
from distlock import _flat
from distlock._engine import Operation, Record, entropy, now, started
from distlock._lowered import VAL, Args, lift_bytes, moved_out
from distlock._slots import Slots, _Export

ROUNDS = 20000
REPLY = b"*2\r\n:1\r\n:30000\r\n"  # the size of an acquire's reply


def per_call(label: str, call) -> None:
    for _ in range(ROUNDS // 10):
        call()
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e6)
    print(f"{label:34} p50 {statistics.median(samples):6.1f} us")


class Kept(Operation):
    """An operation ``pool.run`` drives but leaves alive, for the calls measured after."""

    def drop(self) -> None:
        pass


def main(url: str) -> None:
    client = distlock.Client.connect(url, ttl=30)
    pool = client.pool(client.ttl, client.fenced)
    session = pool.session
    op = Kept(client.engine, "operation", session.fallible("acquire", "bench-calls", 0, now(), entropy()))
    pool.run(lambda: op)  # over: later calls answer nothing
    per_call("step(now, [data(node 0, reply)])", lambda: op.step(now(), [Record(node=0, bytes=REPLY)]))
    per_call("step(now, [])", lambda: op.step(now(), []))
    per_call("feed(now, 0, reply)", lambda: op.feed(now(), 0, REPLY))
    sizes = [REPLY, b"+OK\r\n"]
    per_call("feed, two reply sizes in turn", lambda: op.feed(now(), 0, sizes.append(sizes.pop(0)) or sizes[0]))
    per_call("feed(now, 0, 100 bytes)", lambda: op.feed(now(), 0, b"x" * 100))
    per_call("lose(now, 0)", lambda: op.lose(now(), 0))
    per_call("tick(now)", lambda: op.tick(now()))
    per_call("status(...) build (result<operation>)", lambda: session.fallible("status", "bench-calls", now()).drop(client.engine.store))
    per_call("acquire-started (generic lift)", lambda: session.fallible("acquire_started", "bench-calls", 0, now(), entropy(), b"\x01")[0].drop(client.engine.store))
    per_call("acquire-started (_engine.started)", lambda: started(session, "acquire_started", "bench-calls", 0, now(), entropy(), b"\x01")[0].drop())
    spent: list[Operation] = []
    per_call("acquire-started, no drop", lambda: spent.append(started(session, "acquire_started", "bench-calls", 0, now(), entropy(), b"\x01")[0]))
    per_call("drop (an operation's destructor)", lambda: spent.pop().drop())

    def acquire_engine_work() -> None:
        acquired, _ = started(session, "acquire_started", "bench-calls", 0, now(), entropy(), b"\x01")
        acquired.feed(now(), 0, b"+OK\r\n")
        acquired.drop()

    per_call("acquire: started + feed(+OK) + drop", acquire_engine_work)

    def release_engine_work() -> None:
        released, _ = started(session, "release_started", "bench-calls", "0" * 32, now(), entropy(), b"\x01")
        released.feed(now(), 0, b":1\r\n")
        released.drop()

    per_call("release: started + feed(:1) + drop", release_engine_work)
    slots = pool.slots
    per_call("tick-flat-packed, a freed slot (floor)", lambda: slots.tick(0, now()))
    unpacked = unpacked_feed(slots)
    for size in (0, 200, 1000):
        data = b"x" * size
        per_call(f"feed-flat, freed slot, {size} B", lambda: unpacked(data))
        per_call(f"feed-flat-packed, freed slot, {size} B", lambda: slots.feed(0, now(), 0, data))

    # The replies a one-node session on a RESP3 server gets (`SET … NX PX … GET` answers null
    # when the name was free; the release script the keys it deleted); each answer is decoded,
    # as the drivers do, which hands over an outcome the layout does not carry and frees its slot.
    def acquire_slotted() -> None:
        acquired, first = slots.acquire("bench-calls", 0, now(), entropy(), b"\x01")
        _flat.decode(first, acquired)
        _flat.decode(acquired.feed(now(), 0, b"_\r\n"), acquired)  # the outcome: the engine frees the slot

    per_call("acquire: acquire-flat-packed + feed", acquire_slotted)

    def release_slotted() -> None:
        released, first = slots.release("bench-calls", "0" * 32, now(), entropy(), b"\x01")
        _flat.decode(first, released)
        _flat.decode(released.feed(now(), 0, b":0\r\n"), released)

    per_call("release: release-flat-packed + feed", release_slotted)
    for left in spent:
        left.drop()
    lowering(client)
    Operation.drop(op)
    client.close()


def unpacked_feed(slots: Slots):
    """``feed-flat`` (bytes as ``list<u8>``, one C value a byte) on a freed slot, with the
    arguments kept lowered and the raw call ``Slots`` makes: the packed call's twin."""
    export = _Export(slots.engine._func("[method]session.feed-flat"), 5, [])
    export.args.handle(0, slots._self)
    slots._calls["feed-flat"] = export
    args = export.args

    def feed(data: bytes) -> bytes:
        with slots.engine.lock:
            args.u32(1, 0)
            args.f64(2, now())
            args.u8(3, 0)
            args.bytes(4, data)
            answer = slots._call("feed-flat")
            lifted = lift_bytes(answer)  # frees the list: the next call must find nothing to free
            moved_out(answer)
            return lifted

    return feed


def lowering(client: distlock.Client) -> None:
    """One argument into its C value and freed again: ``wasmtime.component``'s own conversion
    (per element for a list), the one-copy ``_bytes_to_c``, and ``Args`` (kept lowered)."""
    export = client.engine._func("[method]session.acquire-started")
    string_type, list_type, store = export.params[1], export.params[4], client.engine.store

    def generic(convert, ty, value) -> None:
        val = VAL()
        convert(ty, store, value, ctypes.pointer(val))
        ffi.wasmtime_component_val_delete(ctypes.byref(val))

    per_call("lower list<u8> x24: component API", lambda: generic(_types.ListType.convert_to_c, list_type, entropy()))
    per_call("lower list<u8> x24: one copy", lambda: generic(type(list_type).convert_to_c, list_type, entropy()))
    args = Args(1)
    per_call("lower list<u8> x24: Args, new bytes", lambda: args.bytes(0, entropy()))
    args.free()
    per_call("lower string: component API", lambda: generic(_types.String.convert_to_c, string_type, "bench-calls"))
    names = [f"bench-calls-{i}" for i in range(10)]
    per_call("lower string: Args, a new one", lambda: args.string(0, names.append(names.pop(0)) or names[0]))
    per_call("lower string: Args, the same", lambda: args.string(0, names[0]))
    args.free()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379")
