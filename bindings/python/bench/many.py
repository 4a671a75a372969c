"""16 clients (threads, a client each) over 1024 lock names: each takes a name at random,
tries it once and releases it at once, for this package beside redis-py's ``Lock`` and
python-redis-lock in the same run: pairs/s (a busy name is counted apart, not waited for).
A measurement to report, not a test: ``python bench/many.py redis://127.0.0.1:6379 [seconds]
[clients] [warm-up seconds]``. The libraries run in interleaved half-second slices
(``interleave``); with a warm-up, each first runs that long uncounted, so the rows measure a
steady state rather than each name's first use."""

from __future__ import annotations

import random
import sys
import threading
import time

from peers import LIBRARIES, interleave, run_tag

NAMES = 1024


class Row:
    """One library's clients (connected once) and what their slices add up to."""

    def __init__(self, label: str, connect, url: str, clients: int) -> None:
        tag = run_tag()
        self.label, self.names = label, [f"many:{tag}:{i}" for i in range(NAMES)]
        self.holds = [connect(url) for _ in range(clients)]
        self.draws = [random.Random(i).choice for i in range(clients)]
        self.pairs, self.busy, self.errors, self.elapsed = 0, 0, [], 0.0

    def run(self, seconds: float) -> None:
        clients = len(self.holds)
        pairs, busy = [0] * clients, [0] * clients
        start, end = threading.Barrier(clients + 1), [0.0]

        def worker(i: int) -> None:
            try_hold, draw = self.holds[i], self.draws[i]
            start.wait()
            try:
                while time.monotonic() < end[0]:
                    release = try_hold(draw(self.names), 0)
                    if release is None:
                        busy[i] += 1
                        continue
                    release()
                    pairs[i] += 1
            except Exception as error:  # reported in the row: a failed run is not a result
                self.errors.append(repr(error))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        end[0] = began + seconds
        start.wait()
        for thread in threads:
            thread.join()
        self.elapsed += time.monotonic() - began
        self.pairs, self.busy = self.pairs + sum(pairs), self.busy + sum(busy)

    def report(self) -> None:
        print(f"{self.label:20} {self.pairs / self.elapsed:8.0f} pairs/s   busy {self.busy}" + (f"   ERRORS {self.errors[:2]}" if self.errors else ""))


def main(url: str, seconds: float, clients: int, warmup: float) -> None:
    print(f"{clients} clients over {NAMES} names, try-acquire + release, {seconds:.0f} s each (interleaved slices)" + (f", after {warmup:.1f} s of warm-up each" if warmup else ""))
    rows = [Row(label, connect, url, clients) for label, connect in LIBRARIES if label != "distlock fair"]
    for row in rows if warmup else []:  # not counted: first uses of each name (a session registers a name once)
        row.run(warmup)
        row.pairs, row.busy, row.elapsed = 0, 0, 0.0
    interleave(rows, seconds)
    for row in rows:
        row.report()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 3.0, int(sys.argv[3]) if len(sys.argv) > 3 else 16, float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
