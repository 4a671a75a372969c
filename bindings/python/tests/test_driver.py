"""The selectors driver's bookkeeping around the hot path: an acquire, an extend and a release
run in session slots the engine frees with their outcome (nothing for the driver to drop); another
operation that ended on one quiet connection is dropped during the next operation's wait
(``Pool.spent``), never lost: at most one waits at a time, and closing the client drops it. A
pooled connection the server closed is found by the hot path's read, reported to the engine as
lost, and replaced by the next operation; the asyncio driver's hot path alike."""

from __future__ import annotations

import asyncio

import pytest
from conftest import unique

from distlock import AsyncClient, Client, Unavailable


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
    names = [unique(f"many-{i}") for i in range(4096)]  # the engine's bound per session
    ids = {slots.name_id(name) for name in names}
    assert len(ids) == 4096 and slots.name_id(names[0]) in ids  # one id per name, kept
    lease = client.acquire(unique("one-more"))  # the table is full: forgotten, registered again
    assert list(slots.ids) == [lease.name]
    lease.release()
    client.close()


def test_a_pooled_connection_the_server_closed_is_lost_typed_and_the_next_operation_reconnects(start):
    [s] = start()
    client = Client.connect(s.url, request_timeout=30)
    pool = client.pool(client.ttl, client.fenced)
    name = unique("closed")
    client.acquire(name).release()  # leaves one quiet pooled connection: the hot path's
    [[pooled]] = pool.idle
    assert s.redis.client_kill_filter(_type="normal", skipme=True) == 1  # the server closes it
    with pytest.raises(Unavailable) as caught:
        client.acquire(name)
    # Told by the socket (a read of nothing), not by the 30 s request timeout.
    assert getattr(caught.value.detail, "last-failure").tag == "disconnected"
    assert not pooled.alive and pooled not in pool.idle[0]
    lease = client.acquire(name)  # on a fresh connection
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
