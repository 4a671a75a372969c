"""The selectors driver's bookkeeping around the hot path: an acquire, an extend and a release
run in session slots the engine frees with their outcome (nothing for the driver to drop); another
operation that ended on one quiet connection is dropped during the next operation's wait
(``Pool.spent``), never lost: at most one waits at a time, and closing the client drops it. A
pooled connection the server closed while it was idle is found before it is lent (selectors: a
peek; asyncio: the loop saw it close) and replaced, so a holder's release still reaches the
server; one whose close the asyncio loop has not read yet is found by the hot path's read,
reported to the engine as lost, and replaced by the next operation."""

from __future__ import annotations

import asyncio
import select
import threading
from functools import partial

import pytest
from conftest import make_certificates, unique, wait_until
from distlock._engine import EngineError
from distlock.errors import from_engine

from distlock import AsyncClient, AsyncLock, AsyncSemaphore, Client, Lock, Semaphore, Unavailable

# The names one session registers at most (``wit/engine.wit``, "Bounds").
NAMES_PER_SESSION = 4096


def test_slotted_pairs_leave_nothing_and_spent_operations_are_dropped_later(start):
    [s] = start()
    client = Client.connect(s.url)
    pool = client.pool(client.ttl, client.fenced)
    name, seen = unique("spent"), []
    for _ in range(20):
        lease = client.acquire(name)
        assert not pool.spent  # the acquire's slot went with its outcome
        lease.extend(30)
        assert not pool.spent  # so did the extend's
        client.status(name)  # a resource operation, on the same quiet connection
        assert len(pool.spent) == 1
        seen.extend(pool.spent)
        lease.release()
        assert not pool.spent  # the status went during the release; the release's slot is free
    assert len({id(op) for op in seen}) == 20 and all(op._self is None for op in seen)
    assert list(pool.slots.ids) == [name]  # the name registered once
    lease = client.acquire(name)
    client.status(name)
    [last] = pool.spent
    client.close()
    assert not pool.spent and last._self is None


def test_a_full_name_table_is_emptied_once_and_the_lock_still_taken(start):
    [s] = start()
    client = Client.connect(s.url)
    slots = client.pool(client.ttl, client.fenced).slots
    names = [unique(f"many-{i}") for i in range(NAMES_PER_SESSION)]  # the engine's bound per session
    ids = {slots.name_id(name) for name in names}
    assert len(ids) == NAMES_PER_SESSION and slots.name_id(names[0]) in ids  # one id per name, kept
    lease = client.acquire(unique("one-more"))  # the table is full: forgotten, registered again
    assert list(slots.ids) == [lease.name]
    lease.release()
    client.close()


def test_a_refused_name_leaves_the_name_table_alone(start):
    [s] = start()
    client = Client.connect(s.url)
    slots = client.pool(client.ttl, client.fenced).slots
    kept = {name: slots.name_id(name) for name in (unique("kept-a"), unique("kept-b"))}
    for bad, kind in (("", "empty-name"), ("control\x01", "name-control-byte")):
        with pytest.raises(EngineError) as refused:
            slots.name_id(bad)
        assert from_engine(refused.value.error).kind == kind
        assert slots.ids == kept  # nothing forgotten here ...
    for name, id_ in kept.items():
        assert slots._register(name) == id_  # ... nor in the engine (a forgotten name gets a new id)
    client.close()


def test_a_pooled_connection_the_server_closed_is_replaced_before_it_is_lent(start):
    [s] = start()
    client = Client.connect(s.url, request_timeout=30)
    pool = client.pool(client.ttl, client.fenced)
    name = unique("closed")
    client.acquire(name).release()  # leaves one quiet pooled connection: the hot path's
    [[pooled]] = pool.idle
    assert not pooled.stale()
    assert s.redis.client_kill_filter(_type="normal", skipme=True) == 1  # the server closes it
    wait_until(lambda: readable(pooled), "the pooled socket to see the server's close")
    assert pooled.stale()
    lease = client.acquire(name)  # on a fresh connection: the closed one is never written to
    assert not pooled.alive and pooled not in pool.idle[0]
    assert s.redis.get(f"distlock:{{{name}}}").decode() == lease.token
    lease.release()
    assert s.redis.get(f"distlock:{{{name}}}") is None
    client.close()


def test_an_async_pooled_connection_the_server_closed_is_lost_typed_on_the_hot_path_and_replaced(start):
    [s] = start()
    name = unique("async-closed")

    async def main() -> None:
        client = await AsyncClient.connect(s.url, request_timeout=30)
        try:
            pool = client.pool(client.ttl, client.fenced)
            await (await client.acquire(name)).release()
            [[pooled]] = pool.idle
            assert pooled.quiet()  # the next acquire takes the hot path
            # The loop does not run until the next await: the close is not read yet, so the
            # hot path lends the connection and learns of the close from it.
            assert s.redis.client_kill_filter(_type="normal", skipme=True) == 1
            with pytest.raises(Unavailable) as caught:
                await client.acquire(name)
            # Told by the connection (lost), not by the 30 s request timeout.
            assert getattr(caught.value.detail, "last-failure").tag == "disconnected"
            assert not pooled.alive and pooled not in pool.idle[0]
            lease = await client.acquire(name)  # on a fresh connection
            assert s.redis.get(f"distlock:{{{name}}}").decode() == lease.token
            await lease.release()
            assert s.redis.get(f"distlock:{{{name}}}") is None
        finally:
            client.close()

    asyncio.run(asyncio.wait_for(main(), 15))


def test_a_holder_whose_idle_connection_the_server_closed_still_releases(start):
    [s] = start()
    name = unique("idle-killed")
    lock = Lock(s.url, name, expire=60)
    assert lock.acquire()
    pooled = idle_connections(lock.client)
    assert pooled and s.redis.client_kill_filter(_type="normal", skipme=True) == len(pooled)  # while it is held
    wait_until(lambda: all(readable(conn) for conn in pooled), "the pooled sockets to see the server's close")
    lock.release()  # not `Unavailable`, and not left to the key's 60 s TTL
    assert s.redis.get(f"distlock:{{{name}}}") is None
    assert not any(conn.alive for conn in pooled)


def test_an_async_holder_whose_idle_connection_the_server_closed_still_releases(start):
    [s] = start()
    name = unique("async-idle-killed")

    async def main():
        lock = AsyncLock(s.url, name, expire=60)
        assert await lock.acquire()
        pooled = idle_connections(lock.client)
        assert pooled and s.redis.client_kill_filter(_type="normal", skipme=True) == len(pooled)  # while it is held
        while any(conn.alive for conn in pooled):  # observed: the loop ran their `connection_lost`
            await asyncio.sleep(0.01)
        await lock.release()
        assert s.redis.get(f"distlock:{{{name}}}") is None

    asyncio.run(asyncio.wait_for(main(), 15))



def test_under_tls_the_probe_keeps_a_live_connection_and_finds_a_closed_one(start, tmp_path):
    tls = make_certificates(tmp_path)
    [s] = start(tls=tls)
    client = Client.connect(s.url, tls_ca=tls["ca"])
    pool = client.pool(client.ttl, client.fenced)
    name = unique("tls-closed")
    client.acquire(name).release()
    [[pooled]] = pool.idle
    for _ in range(3):  # nothing left unread at rest (a TLS 1.3 ticket, say): the same connection
        client.acquire(name).release()
    assert pool.idle == [[pooled]] and not pooled.stale()
    assert s.redis.client_kill_filter(_type="normal", skipme=True) == 1
    wait_until(lambda: readable(pooled), "the pooled socket to see the server's close")
    assert pooled.stale()
    lease = client.acquire(name)  # on a fresh connection
    assert s.redis.get(f"distlock:{{{name}}}").decode() == lease.token
    lease.release()
    assert not pooled.alive and pooled not in pool.idle[0]
    client.close()

# A waiter whose connection the server closed while it waited (`CLIENT KILL`, a restart, an idle
# timeout) is lent a new connection (`Pool.reopen`, node-event `connected` in `wit/engine.wit`)
# and gets the lock once it is free, long before its wait runs out: with the engine that kept a
# lost node out of the operation for good, the wait ran out `Unavailable`. A lock's waiter runs on
# the drivers' hot path (a session slot), a semaphore's on the general one (a resource operation).
KINDS = {  # the sync and async makers, and whether a token holds the name on a server
    "lock": (Lock, AsyncLock, lambda redis, name, token: redis.get(f"distlock:{{{name}}}") == token.encode()),
    "semaphore": (
        partial(Semaphore, limit=1),
        partial(AsyncSemaphore, limit=1),
        lambda redis, name, token: redis.exists(f"distlock:{{{name}}}:permit:{token}") == 1,
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_waiter_whose_connection_the_server_closed_gets_the_lock_once_it_is_free(start, kind):
    [s] = start()
    make, _, holds = KINDS[kind]
    name = unique(f"{kind}-waiter-killed")
    holder, waiter = make(s.url, name, expire=60), make(s.url, name, expire=60, timeout=5)
    assert holder.acquire()
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(catching(waiter.acquire)))
    thread.start()
    [killed] = wait_until(s.blocked_client_ids, "the waiter to block on the server")
    assert s.redis.client_kill_filter(_type="normal", skipme=True) >= 1  # the waiter's, the holder's idle one
    wait_until(lambda: blocked_anew(s, killed), "the waiter to block again, on a new connection")
    holder.release()
    thread.join()
    assert got == [True]
    token = waiter.token
    assert holds(s.redis, name, token)
    waiter.release()
    assert not holds(s.redis, name, token)


@pytest.mark.parametrize("kind", KINDS)
def test_an_async_waiter_whose_connection_the_server_closed_gets_the_lock_once_it_is_free(start, kind):
    [s] = start()
    _, make, holds = KINDS[kind]
    name = unique(f"async-{kind}-waiter-killed")

    async def main():
        holder, waiter = make(s.url, name, expire=60), make(s.url, name, expire=60, timeout=5)
        assert await holder.acquire()
        waiting = asyncio.ensure_future(waiter.acquire())
        while not (blocked := s.blocked_client_ids()):  # observed: the waiter blocks on the server
            await asyncio.sleep(0.01)
        [killed] = blocked
        assert s.redis.client_kill_filter(_type="normal", skipme=True) >= 1
        while not blocked_anew(s, killed):  # observed: it blocks again, on a new connection
            await asyncio.sleep(0.01)
        await holder.release()
        assert await waiting
        token = waiter.token
        assert holds(s.redis, name, token)
        await waiter.release()
        assert not holds(s.redis, name, token)

    asyncio.run(asyncio.wait_for(main(), 15))


def blocked_anew(s, killed):
    """Whether a client other than ``killed`` is blocked on ``s`` (and ``killed`` is not)."""
    ids = s.blocked_client_ids()
    return bool(ids) and killed not in ids


def catching(call):
    """``call()``, or the exception it raised."""
    try:
        return call()
    except Exception as error:  # the test compares it
        return error


def idle_connections(client):
    """Every connection pooled idle in ``client``'s sessions (one per TTL and fencing in use)."""
    return [conn for pool in client._pools.values() for conns in pool.idle for conn in conns]


def readable(conn):
    """Whether ``conn``'s socket has something to read: the server's close, once it is in."""
    return bool(select.select([conn.sock], [], [], 0)[0])
