"""Uncontended acquire+release latency (p50, p99) on one server, for this package (sync and
asyncio drivers) beside redis-py's ``Lock`` (sync and ``redis.asyncio``) and python-redis-lock on the same workload, and
the round-trip floor: the same two round trips (``SET NX PX``, then ``DEL``) on a bare
socket; per row also the CPU time of a pair (this thread's, the median over the row's
slices: the interpreter, the engine and the system calls, not the server's work). A
measurement to report, not a test: ``python bench/uncontended.py redis://127.0.0.1:6379``.
The rows run in interleaved slices of ``SLICE`` pairs, the order reversed every round, so
drift in the shared machine's load lands on all of them alike."""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
import uuid

import redis
import redis.asyncio
import redis_lock

import distlock

ROUNDS, SLICE, WARMUP = 10, 200, 200


def floor(port: int):
    """One SET NX PX and one DEL on a blocking socket: the pair's round trips, no library."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    key = f"bench-floor-{uuid.uuid4().hex[:8]}".encode()
    set_nx = b"*6\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$5\r\ntoken\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n30000\r\n" % (len(key), key)
    delete = b"*2\r\n$3\r\nDEL\r\n$%d\r\n%s\r\n" % (len(key), key)

    def pair() -> None:
        sock.sendall(set_nx)
        sock.recv(64)
        sock.sendall(delete)
        sock.recv(64)

    return pair


def main(url: str) -> None:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    conn = redis.Redis(port=port)
    client = distlock.Client.connect(url, ttl=30)
    lock = distlock.Lock(client, "bench-lock", expire=30)
    loop = asyncio.new_event_loop()
    aclient = loop.run_until_complete(distlock.AsyncClient.connect(url, ttl=30))

    arp = redis.asyncio.Redis(port=port)
    arp_lock = arp.lock(f"bench-redis-py-async-{uuid.uuid4()}", timeout=30)

    async def distlock_async_pair() -> None:
        await (await aclient.acquire("bench-async")).release()

    async def redis_py_async_pair() -> None:
        await arp_lock.acquire(blocking=False)
        await arp_lock.release()

    def async_slice(pair):
        async def run(samples: list[float], n: int) -> None:
            for _ in range(n):
                start = time.perf_counter()
                await pair()
                samples.append((time.perf_counter() - start) * 1e6)

        return lambda samples, n: loop.run_until_complete(run(samples, n))

    def sync_slice(once):
        def run(samples: list[float], n: int) -> None:
            for _ in range(n):
                start = time.perf_counter()
                once()
                samples.append((time.perf_counter() - start) * 1e6)

        return run

    rp = conn.lock(f"bench-redis-py-{uuid.uuid4()}", timeout=30)
    prl = redis_lock.Lock(conn, f"bench-prl-{uuid.uuid4()}", expire=30)
    rows = [
        ("floor (SET NX + DEL)", sync_slice(floor(port))),
        ("distlock (selectors)", sync_slice(lambda: client.acquire("bench-sync").release())),
        ("distlock.Lock", sync_slice(lambda: (lock.acquire(blocking=False), lock.release()))),
        ("distlock (asyncio)", async_slice(distlock_async_pair)),
        ("redis-py Lock", sync_slice(lambda: (rp.acquire(blocking=False), rp.release()))),
        ("redis-py asyncio Lock", async_slice(redis_py_async_pair)),
        ("python-redis-lock", sync_slice(lambda: (prl.acquire(blocking=False), prl.release()))),
    ]
    samples: dict[str, list[float]] = {label: [] for label, _ in rows}
    cpu: dict[str, list[float]] = {label: [] for label, _ in rows}  # per slice: thread CPU per pair
    for label, run in rows:
        run([], WARMUP)
    order = list(rows)
    for _ in range(ROUNDS):
        for label, run in order:
            began = time.thread_time()
            run(samples[label], SLICE)
            cpu[label].append((time.thread_time() - began) / SLICE * 1e6)
        order.reverse()
    for label, _ in rows:
        taken = sorted(samples[label])
        print(
            f"{label:28} p50 {statistics.median(taken):8.0f} us   p99 {taken[int(len(taken) * 0.99)]:8.0f} us"
            f"   CPU/pair {statistics.median(cpu[label]):6.0f} us"
        )
    client.close()

    async def close_async() -> None:
        aclient.close()
        await arp.aclose()

    loop.run_until_complete(close_async())
    loop.close()


if __name__ == "__main__":
    main(sys.argv[1])
