"""The Python API the users of redis-py's ``Lock`` and python-redis-lock know, against real
redis-server processes: ``with Lock(...)``, ``acquire(blocking=…, timeout=…)``, ``extend``,
``release``, ``token``, ``locked``, auto-renewal, ``reset``, ``AsyncLock``, the dogpile
helper, and the two libraries' key layouts."""

from __future__ import annotations

import asyncio
import gc
import os
import threading

import pytest
import redis
import redis_lock
from conftest import free_port, make_certificates, unique, wait_until

import distlock
from distlock import AsyncLock, InvalidArgument, Lock, LockError, LockLost, NotAcquired, Unavailable
from distlock._engine import entropy, now


def key(name: str) -> bytes:
    return f"distlock:{{{name}}}".encode()


def test_with_block_holds_the_lock_and_releases_it(start):
    [s] = start()
    name = unique("with")
    with Lock(s.url, name, expire=60, timeout=10) as lock:
        assert s.redis.get(key(name)) == lock.token.encode()
        assert 55_000 < s.redis.pttl(key(name)) <= 60_000
        assert lock.locked()
    assert s.redis.get(key(name)) is None
    assert lock.token is None and not lock.locked()


def test_acquire_returns_false_while_another_holds_it(start):
    [s] = start()
    name = unique("nonblocking")
    holder, other = Lock(s.url, name), Lock(s.url, name)
    assert holder.acquire(blocking=False)
    assert not other.acquire(blocking=False)
    assert other.token is None
    assert not other.acquire(blocking=True, timeout=0.2)
    holder.release()
    assert other.acquire(blocking=False)
    other.release()


def test_with_block_raises_not_acquired_after_its_timeout(start):
    [s] = start()
    name = unique("timeout")
    holder = Lock(s.url, name)
    holder.acquire()
    with pytest.raises(NotAcquired):
        with Lock(s.url, name, timeout=0.2):
            pytest.fail("entered a held lock")
    assert s.redis.get(key(name)) == holder.token.encode()
    holder.release()


def test_blocking_acquire_is_woken_by_the_release(start):
    [s] = start()
    name = unique("woken")
    holder, waiter = Lock(s.url, name), Lock(s.url, name)
    holder.acquire()
    got = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(blocking=True, timeout=10)))
    thread.start()
    wait_until(lambda: s.blocked_clients() > 0, "the waiter to block")
    holder.release()
    thread.join(15)
    assert got == [True] and s.redis.get(key(name)) == waiter.token.encode()
    waiter.release()


def test_bad_arguments_are_invalid_and_send_nothing(start):
    [s] = start()
    lock = Lock(s.url, unique("args"))
    with pytest.raises(InvalidArgument):
        lock.acquire(blocking=False, timeout=1)
    with pytest.raises(InvalidArgument):
        Lock(s.url, "x", expire=-1)
    with pytest.raises(InvalidArgument):
        Lock(object(), "x")
    with pytest.raises(InvalidArgument) as caught:
        Lock(s.url, "").acquire()
    assert caught.value.kind == "empty-name"
    assert s.redis.dbsize() == 0
    assert all(issubclass(e, LockError) for e in (NotAcquired, LockLost, Unavailable, InvalidArgument))


def test_extend_resets_the_expiry(start):
    [s] = start()
    name = unique("extend")
    lock = Lock(s.url, name, expire=5)
    lock.acquire()
    lock.extend(120)
    assert s.redis.pttl(key(name)) > 60_000
    lock.extend()
    assert s.redis.pttl(key(name)) <= 5_000
    lock.release()
    with pytest.raises(NotAcquired):
        lock.release()  # not held by this Lock any more


def test_reset_unlocks_and_the_holder_learns_it_lost_the_lock(start):
    [s] = start()
    name = unique("reset")
    lock = Lock(s.url, name)
    lock.acquire()
    assert distlock.reset(s.url, name) == 1
    assert s.redis.get(key(name)) is None
    with pytest.raises(LockLost):
        lock.release()
    assert distlock.reset(s.url, name) == 0


def test_auto_renewal_keeps_the_lock_past_its_expiry(start):
    [s] = start()
    name = unique("renewal")
    lock = Lock(s.url, name, expire=0.6, auto_renewal=True)
    lock.acquire()
    first_end = lock._lease.valid_until
    wait_until(lambda: lock._lease.valid_until > first_end + 600, "two renewals")
    assert lock.owned() and lock.lost is None
    assert s.redis.get(key(name)) == lock.token.encode()
    lock.release()
    assert s.redis.get(key(name)) is None


def test_a_dropped_lock_is_not_released_and_its_renewal_stops(start):
    [s] = start()
    name = unique("dropped")
    lock = Lock(s.url, name, expire=30, auto_renewal=True)
    lock.acquire()
    token, thread = lock.token, lock._lease._thread
    del lock
    gc.collect()
    wait_until(lambda: not thread.is_alive(), "the renewal thread to stop", 15)
    # No release from a finalizer: the key stays until its TTL.
    assert s.redis.get(key(name)) == token.encode()


def test_unreachable_servers_are_unavailable_not_free():
    with pytest.raises(Unavailable):
        Lock(f"redis://127.0.0.1:{free_port()}", unique("down"), request_timeout=0.3).acquire(blocking=False)


def test_a_redis_py_client_names_the_server(start):
    [s] = start()
    name = unique("client")
    with Lock(redis.Redis(port=s.port), name) as lock:
        assert s.redis.get(key(name)) == lock.token.encode()


def test_redis_py_layout_excludes_a_redis_py_lock(start):
    [s] = start()
    name = unique("redispy")
    theirs = s.redis.lock(name, timeout=60)
    assert theirs.acquire(blocking=False)
    ours = Lock(s.url, name, layout="redis-py")
    assert not ours.acquire(blocking=False)
    theirs.release()
    assert ours.acquire(blocking=False)
    assert s.redis.get(name) == ours.token.encode()
    assert not s.redis.lock(name, timeout=60).acquire(blocking=False)
    ours.release()
    assert s.redis.lock(name, timeout=60).acquire(blocking=False)


def test_python_redis_lock_layout_excludes_a_python_redis_lock(start):
    [s] = start()
    name = unique("prl")
    theirs = redis_lock.Lock(s.redis, name, expire=60)
    assert theirs.acquire(blocking=False)
    ours = Lock(s.url, name, layout="python-redis-lock")
    assert not ours.acquire(blocking=False)
    theirs.release()
    assert ours.acquire(blocking=False)
    assert s.redis.get(f"lock:{name}") == ours.token.encode()
    assert not redis_lock.Lock(s.redis, name, expire=60).acquire(blocking=False)
    ours.release()
    assert redis_lock.Lock(s.redis, name, expire=60).acquire(blocking=False)


def test_get_or_compute_computes_once_while_the_others_wait_for_the_value(start):
    [s] = start()
    cache_key = unique("dogpile")
    computed, release_fn = [], threading.Event()

    def compute():
        computed.append(1)
        release_fn.wait(10)  # held until every other caller is observed waiting
        return {"answer": 42}

    results = []
    callers = [threading.Thread(target=lambda: results.append(distlock.get_or_compute(s.redis, cache_key, compute, expire=60))) for _ in range(4)]
    for caller in callers:
        caller.start()
    wait_until(lambda: computed and s.blocked_clients() >= 3, "one computing, three waiting")
    release_fn.set()
    for caller in callers:
        caller.join(15)
    assert len(computed) == 1
    assert results == [{"answer": 42}] * 4
    assert distlock.get_or_compute(s.redis, cache_key, lambda: pytest.fail("recomputed"), expire=60) == {"answer": 42}
    # Through the engine: the value sits at the name's value key, and the lock is free again.
    assert s.redis.get(f"distlock:{{{cache_key}}}:value") == b'{"answer": 42}'
    assert s.redis.get(f"distlock:{{{cache_key}}}") is None


def test_get_or_compute_over_several_nodes_is_refused_typed(start):
    servers = start(3)
    with distlock.Client.connect([s.url for s in servers]) as client:
        with pytest.raises(InvalidArgument) as caught:
            distlock.get_or_compute(client, unique("dogpile-redlock"), lambda: pytest.fail("computed"), expire=60)
    assert caught.value.kind == "compute-unsupported"
    assert all(s.redis.dbsize() == 0 for s in servers), "nothing written"


def test_get_or_compute_gives_a_failed_computation_up(start):
    [s] = start()
    cache_key = unique("dogpile-fail")

    def broken():
        raise KeyError("backend")

    with pytest.raises(KeyError):
        distlock.get_or_compute(s.url, cache_key, broken, expire=60)
    assert s.redis.get(f"distlock:{{{cache_key}}}") is None, "the lock was given up"
    assert distlock.get_or_compute(s.url, cache_key, lambda: 7, expire=60) == 7


def test_get_or_compute_that_cannot_wait_says_the_value_is_not_there_yet(start):
    [s] = start()
    cache_key = unique("dogpile-busy")
    with distlock.Client.connect(s.url) as client:
        computing = client.run(client.pool(client.ttl, client.fenced), "get_or_lock", cache_key, 0, now(), entropy())
        assert not isinstance(computing, bytes), "a missing value is this caller's to compute"
        with pytest.raises(NotAcquired) as caught:
            distlock.get_or_compute(client, cache_key, lambda: pytest.fail("computed beside the computer"), expire=60, wait=0)
    assert "not computed within" in str(caught.value) and caught.value.code == "not-acquired"
    assert s.redis.get(f"distlock:{{{cache_key}}}") == computing.token.encode(), "the computer keeps its lock"


def test_async_get_or_compute_computes_once_while_the_others_wait_for_the_value(start):
    [s] = start()
    cache_key = unique("dogpile-async")
    waiters = f"distlock:{{{cache_key}}}:value:waiters".encode()
    computed = []

    async def compute():
        computed.append(1)
        # Held until the server counts the three others as waiters (observed, polled).
        while int(s.redis.get(waiters) or 0) < 3:
            await asyncio.sleep(0.01)
        return {"answer": 42}

    async def main():
        client = await distlock.AsyncClient.connect(s.url)
        try:
            calls = [distlock.async_get_or_compute(client, cache_key, compute, expire=60, wait=30) for _ in range(4)]
            return await asyncio.wait_for(asyncio.gather(*calls), 30)
        finally:
            client.close()

    assert asyncio.run(main()) == [{"answer": 42}] * 4
    assert len(computed) == 1


def test_a_fair_lock_taken_through_a_url_hands_over_at_its_release(start):
    [s] = start()
    name = unique("fair-handoff")
    holder, waiter = Lock(s.url, name, fair=True), Lock(s.url, name, fair=True)
    holder.acquire()  # fair on a client whose default is not: the lease's own session is fair
    got = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(blocking=True, timeout=10)))
    thread.start()
    wait_until(lambda: s.redis.zcard(f"distlock:{{{name}}}:queue".encode()), "the waiter queued")
    released = holder.token.encode()
    holder.release()
    # The fair release hands the key to the queued waiter in the same script: it is never free
    # in between (the plain release would delete it and leave the waiter to its next retry).
    assert s.redis.get(key(name)) not in (None, released)
    thread.join()
    assert got == [True] and s.redis.get(key(name)) == waiter.token.encode()
    waiter.release()


def test_async_lock(start):
    [s] = start()
    name = unique("async")

    async def main():
        async with AsyncLock(s.url, name, expire=60, timeout=10) as lock:
            assert s.redis.get(key(name)) == lock.token.encode()
            assert await lock.locked()
            other = AsyncLock(s.url, name)
            assert not await other.acquire(blocking=False)
            waiting = asyncio.ensure_future(other.acquire(blocking=True, timeout=10))
            while s.blocked_clients() == 0:  # observed: the waiter blocks on the server
                await asyncio.sleep(0.01)
        assert await waiting
        assert s.redis.get(key(name)) == other.token.encode()
        await other.extend(120)
        assert s.redis.pttl(key(name)) > 60_000
        await other.release()
        assert s.redis.get(key(name)) is None

    asyncio.run(main())


def test_async_acquire_gives_up_after_its_timeout_and_the_client_closes_outside_the_loop(start):
    [s] = start()
    name = unique("async-timeout")
    holder = Lock(s.url, name)
    holder.acquire()
    loop = asyncio.new_event_loop()
    try:
        client = loop.run_until_complete(distlock.AsyncClient.connect(s.url))
        with pytest.raises(NotAcquired):  # the wait ends on the engine's deadline, not a reply
            loop.run_until_complete(client.acquire(name, wait=0.2))
        assert s.redis.get(key(name)) == holder.token.encode()
        client.close()  # outside the loop: closing asks no running loop for anything
    finally:
        loop.close()
    holder.release()


def test_a_cancelled_async_acquire_gives_its_wait_up_on_the_hot_path_and_leaves_no_lock_behind(start):
    [s] = start()
    name = unique("async-cancel")
    holder = Lock(s.url, name)
    holder.acquire()

    async def main():
        client = await distlock.AsyncClient.connect(s.url)
        try:
            await (await client.acquire(unique("async-warm"))).release()
            pool = client.pool(client.ttl, client.fenced)
            assert [conn.quiet() for conn in pool.idle[0]] == [True]  # the next acquire takes the hot path
            waiting = asyncio.ensure_future(client.acquire(name, wait=30))
            while s.blocked_clients() == 0:  # observed: the waiter blocks on the server
                await asyncio.sleep(0.01)
            assert pool.idle[0] == []  # it waits on the pooled connection
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            while s.blocked_clients():  # its connection closed: the server stops serving its wait
                await asyncio.sleep(0.01)
            holder.release()
            assert s.redis.get(key(name)) is None  # the cancelled attempt took nothing
            lease = await client.acquire(name)  # one try, on a fresh connection
            assert s.redis.get(key(name)) == lease.token.encode()
            await lease.release()
            assert s.redis.get(key(name)) is None
        finally:
            client.close()

    asyncio.run(asyncio.wait_for(main(), 15))


def test_async_renewal_reports_a_lost_lease(start):
    [s] = start()
    name = unique("async-lost")

    async def main():
        # A TTL whose first renewal (at a third of it) has the time to find the key gone on a
        # loaded machine, so the loss is "not-held", not an expiry; the default request timeout.
        lock = AsyncLock(s.url, name, expire=1.5, auto_renewal=True)
        assert await lock.acquire()
        s.redis.delete(key(name))
        while lock.lost is None:
            await asyncio.sleep(0.01)
        assert lock.lost.code == "not-held"
        with pytest.raises(LockLost):
            await lock.release()

    asyncio.run(asyncio.wait_for(main(), 15))


def test_threads_sharing_one_client_exclude_each_other(start):
    [s] = start()
    client = distlock.Client(s.url)
    name, inside, overlaps, done = unique("threads"), [0], [], []

    def worker():
        for _ in range(5):
            lease = client.acquire(name, wait=30)
            inside[0] += 1
            overlaps.append(inside[0])
            assert s.redis.get(key(name)) == lease.token.encode()
            inside[0] -= 1
            lease.release()
        done.append(1)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    client.close()
    assert len(done) == 6 and len(overlaps) == 30
    assert max(overlaps) == 1, "two holders at once"


def test_rediss_locks_over_tls_trusting_the_given_ca(start, tmp_path):
    tls = make_certificates(tmp_path)
    [s] = start(tls=tls)
    with pytest.raises(distlock.Unavailable):  # the system's CAs do not know this one
        distlock.Client.connect(s.url, request_timeout=0.5).close()
    with distlock.Client.connect(s.url, tls_ca=tls["ca"]) as client:
        name = unique("tls")
        lease = client.acquire(name)
        assert s.redis.get(key(name)) == lease.token.encode()
        lease.release()
        assert s.redis.get(key(name)) is None


def test_rediss_with_asyncio(start, tmp_path):
    tls = make_certificates(tmp_path)
    [s] = start(tls=tls)

    async def run() -> None:
        client = await distlock.AsyncClient.connect(s.url, tls_ca=tls["ca"])
        name = unique("tls-async")
        lease = await client.acquire(name)
        assert s.redis.get(key(name)) == lease.token.encode()
        await lease.release()
        client.close()

    asyncio.run(run())


def test_no_scripts_locks_with_native_commands_only(valkey):
    """``no_scripts=True`` on Valkey 9, as a user whose ACL forbids every script: the lock is
    taken, refused to another and released by native commands; fencing is refused up front."""
    valkey.redis.execute_command("ACL", "SETUSER", "app", "on", ">pw", "~*", "+@all", "-@scripting")
    url = f"redis://app:pw@127.0.0.1:{valkey.port}"
    with pytest.raises(InvalidArgument) as refused:
        distlock.Client(url, no_scripts=True, fenced=True)
    assert refused.value.kind == "needs-scripts"
    client, other = distlock.Client(url, no_scripts=True), distlock.Client(url, no_scripts=True)
    name = unique("no-scripts")
    with Lock(client, name, expire=60) as lock:
        assert valkey.redis.get(key(name)) == lock.token.encode()
        assert not Lock(other, name).acquire(blocking=False)
    assert valkey.redis.get(key(name)) is None
    stats = valkey.redis.info("commandstats")
    assert stats["cmdstat_delifeq"]["calls"] == 1, stats
    assert "cmdstat_eval" not in stats and "cmdstat_evalsha" not in stats, stats
    client.close()
    other.close()


def test_entropy_hands_each_draw_out_once_across_threads_and_never_to_a_forked_child():
    from distlock import _engine

    drawn: list[bytes] = []

    def draw() -> None:
        for _ in range(300):
            drawn.append(entropy())

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(drawn) == 1200 and len(set(drawn)) == 1200  # several batches, no draw twice
    assert all(len(d) == _engine.ENTROPY_SIZE for d in drawn)

    entropy()
    unread = list(_engine._drawn)  # what the parent hands out next
    assert unread
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first draw, to the parent
        os.write(write_end, entropy())
        os._exit(0)
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    child = os.read(read_end, 64)
    os.close(read_end)
    assert status == 0 and len(child) == _engine.ENTROPY_SIZE
    assert child not in unread and child not in drawn
