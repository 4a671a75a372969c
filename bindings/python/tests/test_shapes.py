"""``Semaphore`` and ``RWLock`` (and their asyncio twins) against real redis-server processes:
``Lock``'s API where each holder takes one of ``limit`` permits, or one side of a read-write
lock; the limit is never exceeded, a released permit admits a waiter, readers share, a writer
excludes readers and writers, and bad input is the engine's typed error."""

from __future__ import annotations

import asyncio
import threading

import pytest
from conftest import unique, wait_until

from distlock import AsyncRWLock, AsyncSemaphore, InvalidArgument, RWLock, Semaphore, ServerError


def key(name: str) -> bytes:
    return f"distlock:{{{name}}}".encode()


def permit_key(name: str, token: str) -> bytes:
    return key(name) + f":permit:{token}".encode()


def test_semaphore_admits_limit_holders_and_no_more(start):
    [s] = start()
    name = unique("semaphore-api")
    with Semaphore(s.url, name, limit=2, expire=60, timeout=10) as a:
        b, third = Semaphore(s.url, name, limit=2, expire=60), Semaphore(s.url, name, limit=2)
        assert b.acquire(blocking=False)
        assert a.token != b.token
        for held in (a, b):
            assert 55_000 < s.redis.pttl(permit_key(name, held.token)) <= 60_000
        assert not third.acquire(blocking=False), "a third holder beside two of two permits"
        assert third.locked()
        b.release()
        assert third.acquire(blocking=False), "the released permit admits the next one"
        assert s.redis.exists(permit_key(name, third.token))
        a.extend(120)
        assert s.redis.pttl(permit_key(name, a.token)) > 60_000
        third.release()
    assert not Semaphore(s.url, name, limit=2).locked()


def test_rwlock_readers_share_and_a_writer_excludes_both(start):
    [s] = start()
    name = unique("rw-api")
    rw = RWLock(s.url, name, expire=60)
    with rw.read() as r1, rw.read() as r2:
        assert r1.token != r2.token
        assert not rw.write().acquire(blocking=False), "a writer beside readers"
        assert r1.locked()
    with rw.write() as writer:
        assert s.redis.get(key(name) + b":writer") == writer.token.encode()
        assert not rw.read().acquire(blocking=False), "a reader beside a writer"
        assert not rw.write().acquire(blocking=False), "a second writer"
    assert not rw.read().locked()


def test_bad_semaphores_and_rwlocks_are_typed_errors(start):
    [s] = start()
    name = unique("shapes-bad")
    for limit in (0, 1025):
        with pytest.raises(InvalidArgument) as caught:
            Semaphore(s.url, name, limit=limit).acquire(blocking=False)
        assert caught.value.kind == "bad-limit"
    with pytest.raises(InvalidArgument) as caught:
        RWLock(s.url, name, fair=True).read().acquire(blocking=False)
    assert caught.value.kind == "rw-lock-unsupported"
    with pytest.raises(InvalidArgument):
        Semaphore(s.url, name, limit="2").acquire(blocking=False)  # type: ignore[arg-type]
    assert s.redis.dbsize() == 0
    with Semaphore(s.url, name, limit=2):
        with pytest.raises(ServerError) as refused:
            RWLock(s.url, name).write().acquire(blocking=False)
        assert refused.value.detail.error.kind == "wrong-type"
        with pytest.raises(ServerError) as refused:
            Semaphore(s.url, name, limit=3).acquire(blocking=False)
        assert refused.value.detail.error.kind == "wrong-limit"


def test_async_semaphore_and_rwlock(start):
    [s] = start()
    name, rw_name = unique("async-semaphore"), unique("async-rw")

    async def main():
        async with AsyncSemaphore(s.url, name, limit=1, expire=60) as held:
            assert s.redis.exists(permit_key(name, held.token))
            other = AsyncSemaphore(s.url, name, limit=1)
            assert not await other.acquire(blocking=False)
            waiting = asyncio.ensure_future(other.acquire(blocking=True, timeout=10))
            while s.blocked_clients() == 0:  # observed: the waiter blocks on the server
                await asyncio.sleep(0.01)
        assert await waiting, "the released permit admits the waiter"
        assert s.redis.exists(permit_key(name, other.token))
        await other.release()
        rw = AsyncRWLock(s.url, rw_name)
        async with rw.read() as r1, rw.read() as r2:
            assert r1.token != r2.token
            assert not await rw.write().acquire(blocking=False)
        async with rw.write():
            assert not await rw.read().acquire(blocking=False)
            assert await rw.read().locked()
        assert not await rw.read().locked()

    asyncio.run(asyncio.wait_for(main(), 15))


def test_semaphore_waiter_is_admitted_by_a_release(start):
    [s] = start()
    name = unique("semaphore-wait")
    holder = Semaphore(s.url, name, limit=1)
    assert holder.acquire(blocking=False)
    waiter = Semaphore(s.url, name, limit=1, timeout=10)
    got: list[bool] = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire()))
    thread.start()
    wait_until(lambda: s.blocked_clients() > 0, "the waiter to block")
    holder.release()
    thread.join(15)
    assert got == [True]
    assert s.redis.exists(permit_key(name, waiter.token))
    waiter.release()
