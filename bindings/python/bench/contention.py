"""4 workers (threads, a client each) taking one lock name in turn with ~1 ms holds, for this
package (fair and not) beside redis-py's ``Lock`` and python-redis-lock in the same run:
acquisitions/s, per-worker fairness (fewest acquisitions of a worker over the most), and
safety (overlaps: a worker found another inside; lost updates of a racy shared counter). A
measurement to report, not a test: ``python bench/contention.py redis://127.0.0.1:6379
[seconds] [workers]``. The libraries run in interleaved half-second slices (``interleave``)."""

from __future__ import annotations

import sys
import threading
import time

from peers import LIBRARIES, interleave, run_tag

HOLD_S = 0.001  # the workload's hold: the critical section's own work
WAIT_S = 10.0  # each acquire waits up to this long for the holder to let go


class Section:
    """The critical section: counts who is inside, and a counter updated racily across the
    hold, so two holders at once show as an overlap and as a lost update."""

    def __init__(self) -> None:
        self.guard = threading.Lock()
        self.inside = self.overlaps = self.counter = 0

    def run(self) -> None:
        with self.guard:
            self.inside += 1
            if self.inside > 1:
                self.overlaps += 1
        seen = self.counter
        time.sleep(HOLD_S)
        self.counter = seen + 1
        with self.guard:
            self.inside -= 1


class Row:
    """One library's workers (connected once) and what their slices add up to."""

    def __init__(self, label: str, connect, url: str, workers: int) -> None:
        self.label, self.name = label, f"contention:{run_tag()}"
        self.holds = [connect(url) for _ in range(workers)]
        self.counts, self.errors, self.elapsed = [0] * workers, [], 0.0
        self.section = Section()

    def run(self, seconds: float) -> None:
        workers = len(self.holds)
        start, end = threading.Barrier(workers + 1), [0.0]

        def worker(i: int) -> None:
            try_hold = self.holds[i]
            start.wait()
            try:
                while time.monotonic() < end[0]:
                    release = try_hold(self.name, WAIT_S)
                    if release is None:
                        continue
                    self.section.run()
                    self.counts[i] += 1
                    release()
            except Exception as error:  # reported in the row: a failed run is not a result
                self.errors.append(repr(error))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        end[0] = began + seconds
        start.wait()
        for thread in threads:
            thread.join()
        self.elapsed += time.monotonic() - began

    def report(self) -> None:
        total = sum(self.counts)
        spread = min(self.counts) / max(self.counts) if max(self.counts) else 0.0
        lost = total - self.section.counter
        print(
            f"{self.label:20} {total / self.elapsed:8.0f} acq/s   min/max {spread:4.2f}   per worker {self.counts}   "
            f"overlaps {self.section.overlaps}   lost updates {lost}" + (f"   ERRORS {self.errors[:2]}" if self.errors else "")
        )


def main(url: str, seconds: float, workers: int) -> None:
    print(f"{workers} workers, one name, {HOLD_S * 1000:.0f} ms holds, {seconds:.0f} s each (interleaved slices)")
    rows = [Row(label, connect, url, workers) for label, connect in LIBRARIES]
    interleave(rows, seconds)
    for row in rows:
        row.report()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 3.0, int(sys.argv[3]) if len(sys.argv) > 3 else 4)
