"""Uncontended acquire+release latency (p50, p99) on one server, for this package (sync and
asyncio drivers) beside redis-py's ``Lock`` and python-redis-lock on the same workload. A
measurement to report, not a test: ``python bench/uncontended.py redis://127.0.0.1:6379``."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid

import redis
import redis_lock

import distlock

ROUNDS, WARMUP = 2000, 200


def measure(label: str, once) -> None:
    for _ in range(WARMUP):
        once()
    samples = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        once()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    print(f"{label:28} p50 {statistics.median(samples):8.0f} us   p99 {samples[int(len(samples) * 0.99)]:8.0f} us")


def main(url: str) -> None:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    conn = redis.Redis(port=port)
    client = distlock.Client.connect(url, ttl=30)
    measure("distlock (selectors)", lambda: client.acquire("bench-sync").release())
    lock = distlock.Lock(client, "bench-lock", expire=30)
    measure("distlock.Lock", lambda: (lock.acquire(blocking=False), lock.release()))

    async def run_async() -> None:
        aclient = await distlock.AsyncClient.connect(url, ttl=30)
        for _ in range(WARMUP):
            await (await aclient.acquire("bench-async")).release()
        samples = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            await (await aclient.acquire("bench-async")).release()
            samples.append((time.perf_counter() - start) * 1e6)
        samples.sort()
        print(f"{'distlock (asyncio)':28} p50 {statistics.median(samples):8.0f} us   p99 {samples[int(len(samples) * 0.99)]:8.0f} us")

    asyncio.run(run_async())
    rp = conn.lock(f"bench-redis-py-{uuid.uuid4()}", timeout=30)
    measure("redis-py Lock", lambda: (rp.acquire(blocking=False), rp.release()))
    prl = redis_lock.Lock(conn, f"bench-prl-{uuid.uuid4()}", expire=30)
    measure("python-redis-lock", lambda: (prl.acquire(blocking=False), prl.release()))


if __name__ == "__main__":
    main(sys.argv[1])
