"""The selectors driver's bookkeeping around the hot path: an operation that ended on one
quiet connection is dropped during the next operation's wait (``Pool.spent``), never lost:
at most one waits at a time, and closing the client drops it."""

from __future__ import annotations

from conftest import unique

from distlock import Client


def test_spent_operations_are_dropped_by_the_next_operation_or_close(start):
    [s] = start()
    client = Client.connect(s.url)
    pool = client.pool(client.ttl, client.fenced)
    name, seen = unique("spent"), []
    for _ in range(20):
        client.acquire(name).release()
        assert len(pool.spent) <= 1  # the release's; the acquire's went during the release
        seen.extend(pool.spent)
    assert {id(op) for op in seen} and all(op._self is None for op in seen[:-1])
    client.close()
    assert not pool.spent and seen[-1]._self is None
