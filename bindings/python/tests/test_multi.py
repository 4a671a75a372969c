"""``MultiLock`` (and ``AsyncMultiLock``) against real redis-server processes: ``Lock``'s API
over several names taken all or nothing under one token — a held name takes nothing, a set
and a ``Lock`` of one of its names exclude each other, the set is extended and released
together, and a bad set is the engine's typed error with nothing written."""

from __future__ import annotations

import asyncio

import pytest
from conftest import unique

from distlock import AsyncMultiLock, InvalidArgument, Lock, MultiLock, NotAcquired


def key(name: str) -> bytes:
    return f"distlock:{{{name}}}".encode()


def test_multilock_takes_every_name_or_none(start):
    [s] = start()
    a, b, c = (unique(f"multi-api-{x}") for x in "abc")
    with Lock(s.url, c, expire=60):
        assert not MultiLock(s.url, [a, b, c]).acquire(blocking=False), "c is held"
        assert s.redis.get(key(a)) is None and s.redis.get(key(b)) is None
    with MultiLock(s.url, [c, a, b], expire=60, timeout=10) as held:
        assert held.names == (c, a, b)
        for name in (a, b, c):
            assert s.redis.get(key(name)) == held.token.encode()
            assert 55_000 < s.redis.pttl(key(name)) <= 60_000
        assert held.locked()
        assert not Lock(s.url, b).acquire(blocking=False), "a Lock of a held set's name"
        assert not MultiLock(s.url, [b, unique("multi-api-d")]).acquire(blocking=False)
        held.extend(120)
        for name in (a, b, c):
            assert s.redis.pttl(key(name)) > 60_000
    for name in (a, b, c):
        assert s.redis.get(key(name)) is None
    assert not MultiLock(s.url, [a, b, c]).locked()


def test_multilock_is_fenced_above_every_name(start):
    [s] = start()
    a, b = unique("multi-fence-a"), unique("multi-fence-b")
    last = 0
    for _ in range(3):
        with Lock(s.url, b, fenced=True) as lock:
            last = lock.fence
    with MultiLock(s.url, [a, b], fenced=True) as held:
        assert held.fence is not None and held.fence > last
        for name in (a, b):
            assert s.redis.get(key(name) + b":fence") == str(held.fence).encode()


def test_bad_sets_are_typed_errors(start):
    [s] = start()
    a = unique("multi-bad-api")
    with pytest.raises(InvalidArgument) as caught:
        MultiLock(s.url, [a, a]).acquire(blocking=False)
    assert caught.value.kind == "duplicate-name"
    with pytest.raises(InvalidArgument) as caught:
        MultiLock(s.url, a)  # one string is not a list of names
    assert caught.value.kind == "other"
    assert s.redis.dbsize() == 0
    with pytest.raises(NotAcquired):
        MultiLock(s.url, [a]).release()  # not held by this MultiLock


def test_async_multilock(start):
    [s] = start()
    a, b = unique("async-multi-a"), unique("async-multi-b")

    async def main():
        async with AsyncMultiLock(s.url, [a, b], expire=60) as held:
            for name in (a, b):
                assert s.redis.get(key(name)) == held.token.encode()
            other = AsyncMultiLock(s.url, [b, a])
            assert not await other.acquire(blocking=False)
            assert await other.locked()
            waiting = asyncio.ensure_future(other.acquire(blocking=True, timeout=10))
            while s.blocked_clients() == 0:  # observed: the waiter blocks on the server
                await asyncio.sleep(0.01)
        assert await waiting, "the released set admits the waiter"
        for name in (a, b):
            assert s.redis.get(key(name)) == other.token.encode()
        await other.extend(120)
        assert s.redis.pttl(key(a)) > 60_000
        await other.release()
        assert not await other.locked()

    asyncio.run(asyncio.wait_for(main(), 15))
