"""The engine conformance cases (bindings/conformance.json), run through the Python API
against real redis-server processes. Every case id must have a test here, and every test a
case."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from conftest import unique, wait_until

from distlock import Client, InvalidArgument, LockLost, MultiLock, NotAcquired, ServerError, Unavailable, get_or_compute
from distlock.dogpile import split_fetched
from distlock._engine import Engine, EngineError, Handle, Record, entropy, now, split_option

CASES = json.loads((Path(__file__).resolve().parents[2] / "conformance.json").read_text())["cases"]
WRONG = "0123456789abcdef0123456789abcdef"
IMPL = {}


def case(id):
    def register(fn):
        IMPL[id] = fn
        return fn

    return register


def key(name: str) -> bytes:
    return f"distlock:{{{name}}}".encode()


def connect(clients, urls, **options) -> Client:
    client = Client.connect(urls, **options)
    clients.append(client)
    return client


@case("acquire-release")
def acquire_release(start, clients):
    [s] = start()
    client = connect(clients, s.url)
    name = unique("acquire")
    lease = client.acquire(name)
    assert len(lease.token) == 32
    assert s.redis.get(key(name)) == lease.token.encode()
    lease.release()
    assert s.redis.get(key(name)) is None


@case("try-acquire-held")
def try_acquire_held(start, clients):
    [s] = start()
    a, b = connect(clients, s.url), connect(clients, s.url)
    name = unique("try")
    lease = a.acquire(name)
    with pytest.raises(NotAcquired) as caught:
        b.acquire(name, wait=0)
    assert caught.value.code == "not-acquired" and caught.value.detail.attempts == 1
    holder_ttl = getattr(caught.value.detail, "holder-ttl-ms")  # a plain SET NX refusal has none
    assert holder_ttl is None or 0 < holder_ttl <= 30_000
    assert s.redis.get(key(name)) == lease.token.encode()
    lease.release()


@case("wait-for-release")
def wait_for_release(start, clients):
    [s] = start()
    a, b = connect(clients, s.url), connect(clients, s.url)
    name = unique("wait")
    lease = a.acquire(name)
    taken = []
    waiter = threading.Thread(target=lambda: taken.append(b.acquire(name, wait=10)))
    waiter.start()
    wait_until(lambda: s.blocked_clients() > 0, "the waiter to block")
    lease.release()
    waiter.join(15)
    assert taken and taken[0].token != lease.token
    assert s.redis.get(key(name)) == taken[0].token.encode()
    taken[0].release()


@case("release-by-token")
def release_by_token(start, clients):
    [s] = start()
    a, b = connect(clients, s.url), connect(clients, s.url)
    name = unique("token")
    lease = a.acquire(name)
    with pytest.raises(LockLost):
        b.release(name, WRONG)
    assert s.redis.get(key(name)) == lease.token.encode()
    b.release(name, lease.token)
    assert s.redis.get(key(name)) is None


@case("extend")
def extend(start, clients):
    [s] = start()
    client = connect(clients, s.url)
    name = unique("extend")
    lease = client.acquire(name)
    valid_until = client.extend(name, lease.token, 120)
    assert valid_until > lease.valid_until + 60_000
    assert s.redis.pttl(key(name)) > 60_000
    with pytest.raises(LockLost) as caught:
        client.extend(name, WRONG, 120)
    assert caught.value.code == "not-held"
    lease.release()


@case("fencing-order")
def fencing_order(start, clients):
    for n in (1, 3):
        nodes = start(n)
        client = connect(clients, [s.url for s in nodes], fenced=True)
        name = unique("fence")
        fences = []
        for _ in range(3):
            lease = client.acquire(name)
            fences.append(lease.fence)
            lease.release()
        assert all(isinstance(f, int) for f in fences)
        assert fences == sorted(set(fences)), fences


# The request timeout of the cases with a frozen or stopped node: it also bounds the
# handshakes, which a loaded machine missed at 0.3 s ("0 of 3 nodes reachable"); a frozen
# node costs a try this much once, and a skipped one must cost less.
FROZEN_REQUEST_TIMEOUT = 1.0


@case("redlock-frozen-node")
def redlock_frozen_node(start, clients):
    nodes = start(3)
    client = connect(clients, [s.url for s in nodes], request_timeout=FROZEN_REQUEST_TIMEOUT)
    nodes[2].pause()
    try:
        name = unique("frozen")
        lease = client.acquire(name)
        lease.release()
        for s in nodes[:2]:
            assert s.redis.get(key(name)) is None
    finally:
        nodes[2].resume()


@case("redlock-majority-down")
def redlock_majority_down(start, clients):
    nodes = start(3)
    nodes[1].stop()
    nodes[2].stop()
    with pytest.raises(Unavailable, match="1 of 3"):
        Client.connect([s.url for s in nodes], request_timeout=FROZEN_REQUEST_TIMEOUT)


# The renewal cases' TTL: short, so renewals happen within the test, yet long enough that a
# loaded machine (a renewal every third of it, each extend given the validity left, at most the
# default 1 s request timeout) keeps or loses the lease for the reason the case names, not for
# a slow scheduler. The handshake keeps the default request timeout: a renewal needs no
# shorter one, and a 0.2 s one failed the connect ("0 of 1 nodes reachable") under load.
RENEWAL_TTL = 1.5


@case("renewal-keeps-lease")
def renewal_keeps_lease(start, clients):
    [s] = start()
    client = connect(clients, s.url, ttl=RENEWAL_TTL)
    name = unique("renew")
    lease = client.acquire(name, auto_renewal=True)
    first_end = lease.valid_until
    # Observed: the renewal moved the validity past the first lease's end by a whole TTL.
    wait_until(lambda: lease.valid_until > first_end + RENEWAL_TTL * 1000, "three renewals")
    assert s.redis.get(key(name)) == lease.token.encode()
    assert lease.validity > 0
    lease.release()


@case("lease-lost")
def lease_lost(start, clients):
    [s] = start()
    client = connect(clients, s.url, ttl=RENEWAL_TTL)
    name = unique("lost")
    lease = client.acquire(name, auto_renewal=True)
    s.redis.delete(key(name))  # an operator resets the lock
    wait_until(lambda: lease.lost, "the renewal to report the loss")
    assert isinstance(lease.lost, LockLost) and lease.lost.code == "not-held"
    assert lease.validity == 0
    with pytest.raises(LockLost):
        lease.release()


@case("dropped-lease-expires")
def dropped_lease_expires(start, clients):
    [s] = start()
    holder = connect(clients, s.url, ttl=0.4)
    waiter = connect(clients, s.url)
    name = unique("dropped")
    lease = holder.acquire(name)
    holder.close()  # never released
    taken = waiter.acquire(name, wait=5)
    assert taken.token != lease.token
    taken.release()


@case("status")
def status(start, clients):
    [s] = start()
    client = connect(clients, s.url)
    name = unique("status")
    lease = client.acquire(name)
    held = client.status(name)
    assert (held.verdict.tag, held.verdict.payload) == ("held", lease.token)
    assert held.nodes[0].holder == lease.token
    assert held.nodes[0].queued == 0, "nobody waits"
    lease.release()
    assert client.status(name).verdict.tag == "free"


@case("fair-arrival-order")
def fair_arrival_order(start, clients):
    [s] = start()
    name = unique("fair")
    queue = key(name) + b":queue"
    holder = connect(clients, s.url, fair=True)
    token = holder.acquire(name).token
    served: list[tuple[int, object]] = []
    served_lock = threading.Lock()

    def wait_in_line(arrival: int, client: Client) -> None:
        taken = client.acquire(name, wait=20)
        with served_lock:
            served.append((arrival, taken))

    waiters = []
    for arrival in range(3):
        client = connect(clients, s.url, fair=True)
        waiter = threading.Thread(target=wait_in_line, args=(arrival, client))
        waiter.start()
        waiters.append(waiter)
        # The next waiter starts only once this one is in the queue: arrival order is known.
        wait_until(lambda: s.redis.zcard(queue) == arrival + 1, "the waiter to queue")
    assert holder.status(name).nodes[0].queued == 3, "status counts the queued waiters"
    for arrival in range(3):
        holder.release(name, token)
        wait_until(lambda: len(served) == arrival + 1, "a waiter to be handed the lock")
        assert served[arrival][0] == arrival, "served out of arrival order"
        token = served[arrival][1].token
        assert s.redis.get(key(name)) == token.encode()
    holder.release(name, token)
    for waiter in waiters:
        waiter.join(15)
    assert s.redis.get(key(name)) is None
    nodes = ["redis://127.0.0.1:1", "redis://127.0.0.1:2", "redis://127.0.0.1:3"]
    with pytest.raises(InvalidArgument) as caught:
        Client.connect(nodes, fair=True)
    assert caught.value.kind == "fair-unsupported"


@case("bad-names")
def bad_names(start, clients):
    [s] = start()
    client = connect(clients, s.url)
    kinds = {"": "empty-name", "n" * 300: "name-too-long", "a\r\nb": "name-control-byte", "}x": "name-starts-with-brace"}
    for name, kind in kinds.items():
        with pytest.raises(InvalidArgument) as caught:
            client.acquire(name)
        assert caught.value.kind == kind
    assert s.redis.dbsize() == 0


@case("bad-ttls")
def bad_ttls(start, clients):
    [s] = start()
    for ttl, kind in ((0, "bad-ttl"), (0.003, "drift-exceeds-ttl")):
        with pytest.raises(InvalidArgument) as caught:
            Client.connect(s.url, ttl=ttl)
        assert caught.value.kind == kind
    client = connect(clients, s.url)
    lease = client.acquire(unique("ttl"))
    with pytest.raises(InvalidArgument) as caught:
        client.extend(lease.name, lease.token, 0)
    assert caught.value.kind == "bad-ttl"
    lease.release()


@case("bad-input")
def bad_input(start, clients):
    for urls, kind in (("http://x", "bad-url"), ([], "bad-node-count")):
        with pytest.raises(InvalidArgument) as caught:
            Client.connect(urls)
        assert caught.value.kind == kind
    [s] = start()
    client = connect(clients, s.url)
    with pytest.raises(InvalidArgument) as caught:
        client.release("x", "short")
    assert caught.value.kind == "bad-token"


def open_session(url: str) -> Handle:
    """A session of a fresh engine instance, nothing opened."""
    engine = Engine()
    options = Record(nodes=[url], key_prefix=None, layout=None, ttl_ms=None, fenced=False, fair=None, request_timeout_ms=None, no_scripts=None)
    return Handle(engine, "session", engine.fallible("open", options, entropy()))


@case("not-tried-yet")
def not_tried_yet(start, clients):
    [s] = start()
    session = open_session(s.url)
    assert split_option(session.connect_outcome()) == (False, None)
    connect(clients, s.url)  # returns once the connect outcome is ok


@case("operation-before-handshake")
def operation_before_handshake(start, clients):
    [s] = start()
    session = open_session(s.url)
    assert session.connect(0, now()) is not None  # a connect under way, its handshake not completed
    with pytest.raises(EngineError) as caught:
        session.fallible("status", "x", now())
    assert caught.value.error.tag == "unavailable"
    client = Client(s.url)  # no explicit connect: the first operation connects first
    clients.append(client)
    assert client.status(unique("fresh")).verdict.tag == "free"


@case("frozen-node-skipped")
def frozen_node_skipped(start, clients):
    [s] = start()
    client = connect(clients, s.url, request_timeout=FROZEN_REQUEST_TIMEOUT)
    name = unique("frozen-one")

    def attempt():
        try:
            return client.acquire(name, wait=0)
        except Unavailable as error:
            return error

    s.pause()
    try:
        first = attempt()
        started = time.monotonic()
        second = attempt()
        took = time.monotonic() - started
    finally:
        s.resume()
    assert isinstance(first, Unavailable) and getattr(first.detail, "last-failure").tag == "timeout", first
    assert isinstance(second, Unavailable) and getattr(second.detail, "last-failure").tag == "disconnected", second
    assert took < FROZEN_REQUEST_TIMEOUT, f"the second try waited {took:.3f} s: the silent node again"
    lease = wait_until(lambda: (lambda r: None if isinstance(r, Unavailable) else r)(attempt()), "the node to be taken back once it answers")
    lease.release()


def permit_key(name: str, token: str) -> bytes:
    return key(name) + f":permit:{token}".encode()


# The core's bound on a semaphore's limit (distlock_core::MAX_PERMITS).
MAX_PERMITS = 1024


def in_thread(call):
    """Runs ``call`` in a thread; the returned list gets its lease or its error."""
    out: list = []

    def run():
        try:
            out.append(call())
        except Exception as error:  # handed to the test, which asserts on it
            out.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


@case("semaphore-limit")
def semaphore_limit(start, clients):
    [s] = start()
    a, b = connect(clients, s.url), connect(clients, s.url)
    name = unique("semaphore")
    first, second = a.acquire(name, limit=2), a.acquire(name, limit=2)
    assert first.token != second.token
    for lease in (first, second):
        assert s.redis.pttl(permit_key(name, lease.token)) > 0
    with pytest.raises(NotAcquired) as caught:
        a.acquire(name, limit=2)
    assert caught.value.detail.attempts == 1
    status = a.status(name)
    assert status.verdict.tag == "shared"
    reading = status.nodes[0]
    assert reading.holder is None and reading.permits.limit == 2
    assert sorted(h.token for h in reading.permits.holders) == sorted([first.token, second.token])
    thread, taken = in_thread(lambda: b.acquire(name, limit=2, wait=10))
    wait_until(lambda: s.blocked_clients() > 0, "the third acquire to wait")
    a.release(name, first.token, limit=2)
    thread.join(15)
    assert taken and not isinstance(taken[0], Exception), taken
    third = taken[0]
    assert not s.redis.exists(permit_key(name, first.token))
    assert s.redis.exists(permit_key(name, third.token))
    with pytest.raises(LockLost):
        a.release(name, first.token, limit=2)
    with pytest.raises(NotAcquired):
        a.acquire(name, limit=2)
    second.release()
    third.release()
    assert a.status(name).verdict.tag == "free"


@case("rw-readers-share")
def rw_readers_share(start, clients):
    [s] = start()
    a, b = connect(clients, s.url), connect(clients, s.url)
    name = unique("rw")
    r1, r2 = a.acquire(name, mode="read"), a.acquire(name, mode="read")
    assert r1.token != r2.token
    with pytest.raises(NotAcquired) as caught:
        a.acquire(name, mode="write")
    assert caught.value.detail.attempts == 1
    status = a.status(name)
    assert status.verdict.tag == "shared"
    assert status.nodes[0].rw.writer is None
    assert sorted(h.token for h in status.nodes[0].rw.readers) == sorted([r1.token, r2.token])
    thread, taken = in_thread(lambda: b.acquire(name, mode="write", wait=10))
    wait_until(lambda: s.blocked_clients() > 0, "the writer to wait")
    r1.release()
    a.release(name, r2.token, mode="read")
    thread.join(15)
    assert taken and not isinstance(taken[0], Exception), taken
    writer = taken[0]
    assert s.redis.get(key(name) + b":writer") == writer.token.encode()
    for mode in ("read", "write"):
        with pytest.raises(NotAcquired):
            a.acquire(name, mode=mode)
    status = a.status(name)
    assert status.verdict.tag == "shared"
    assert status.nodes[0].rw.writer.token == writer.token and status.nodes[0].rw.readers == []
    writer.release()
    assert a.status(name).verdict.tag == "free"


@case("shaped-extend-renewal")
def shaped_extend_renewal(start, clients):
    [s] = start()
    client = connect(clients, s.url, ttl=RENEWAL_TTL)
    name = unique("shaped-extend")
    permit = client.acquire(name, limit=3)
    client.extend(name, permit.token, 60, limit=3)
    assert s.redis.pttl(permit_key(name, permit.token)) > 30_000
    permit.release()
    rw_name = unique("shaped-extend-rw")
    hold = client.acquire(rw_name, mode="write")
    client.extend(rw_name, hold.token, 60, mode="write")
    assert s.redis.pttl(key(rw_name) + b":writer") > 30_000
    with pytest.raises(LockLost):
        client.extend(rw_name, hold.token, 60, mode="read")
    hold.release()
    renewed = client.acquire(name, limit=3, auto_renewal=True)
    first_end = renewed.valid_until
    # Observed: the renewal moved the validity past three TTLs from the acquire.
    wait_until(lambda: renewed.valid_until > first_end + 2 * RENEWAL_TTL * 1000, "renewals of the permit")
    assert s.redis.exists(permit_key(name, renewed.token))
    renewed.release()


@case("shaped-bad-input")
def shaped_bad_input(start, clients):
    [s] = start()
    client = connect(clients, s.url)
    name = unique("shaped-bad")
    for limit in (0, MAX_PERMITS + 1):
        with pytest.raises(InvalidArgument) as caught:
            client.acquire(name, limit=limit)
        assert caught.value.kind == "bad-limit"
    fair = connect(clients, s.url, fair=True)
    for mode in ("read", "write"):
        with pytest.raises(InvalidArgument) as caught:
            fair.acquire(name, mode=mode)
        assert caught.value.kind == "rw-lock-unsupported"
    others = start(2)
    redlock = connect(clients, [s.url] + [o.url for o in others])
    with pytest.raises(InvalidArgument) as caught:
        redlock.acquire(name, limit=2)
    assert caught.value.kind == "semaphore-unsupported"
    assert s.redis.dbsize() == 0
    mutex = client.acquire(name)
    with pytest.raises(ServerError) as refused:
        client.acquire(name, limit=2)
    assert refused.value.detail.error.kind == "wrong-type"
    assert s.redis.get(key(name)) == mutex.token.encode()
    jobs = unique("shaped-bad-jobs")
    permit = client.acquire(jobs, limit=2)
    with pytest.raises(ServerError) as refused:
        client.acquire(jobs, mode="write")
    assert refused.value.detail.error.kind == "wrong-type"
    with pytest.raises(ServerError) as refused:
        client.acquire(jobs, limit=3)
    assert refused.value.detail.error.kind == "wrong-limit"
    permits = client.status(jobs).nodes[0].permits
    assert permits.limit == 2 and [h.token for h in permits.holders] == [permit.token]


# The core's bound on a multi-name lock's names (distlock_core::MAX_MULTI_NAMES).
MAX_MULTI_NAMES = 16


@case("multi-all-or-nothing")
def multi_all_or_nothing(start, clients):
    [s] = start()
    client = connect(clients, s.url)
    a, b = unique("multi-all-a"), unique("multi-all-b")
    plain = client.acquire(b)
    with pytest.raises(NotAcquired) as caught:
        client.acquire_many([a, b])
    assert caught.value.detail.attempts == 1
    assert s.redis.get(key(a)) is None, "a held name takes nothing"
    plain.release()
    held = MultiLock(client, [b, a])
    assert held.acquire(blocking=False)
    for name in (a, b):
        assert s.redis.get(key(name)) == held.token.encode()
    token = held.token
    held.release()
    for name in (a, b):
        assert s.redis.get(key(name)) is None
    with pytest.raises(LockLost):
        client.release_many([a, b], token)


@case("multi-overlap-excludes")
def multi_overlap_excludes(start, clients):
    [s] = start()
    one, two = connect(clients, s.url), connect(clients, s.url)
    a, b, c = (unique(f"multi-overlap-{x}") for x in "abc")
    first = one.acquire_many([a, b])
    with pytest.raises(NotAcquired) as caught:
        one.acquire_many([b, c])
    assert caught.value.detail.attempts == 1
    assert s.redis.get(key(c)) is None
    with pytest.raises(NotAcquired):
        one.acquire(a)
    thread, taken = in_thread(lambda: two.acquire_many([b, c], wait=10))
    wait_until(lambda: s.blocked_clients() > 0, "the overlapping set to wait")
    first.release()
    thread.join(15)
    assert taken and not isinstance(taken[0], Exception), taken
    second = taken[0]
    for name in (b, c):
        assert s.redis.get(key(name)) == second.token.encode()
    assert s.redis.get(key(a)) is None
    second.release()


@case("multi-extend-renewal")
def multi_extend_renewal(start, clients):
    [s] = start()
    client = connect(clients, s.url, ttl=RENEWAL_TTL)
    a, b = unique("multi-extend-a"), unique("multi-extend-b")
    held = client.acquire_many([a, b])
    client.extend_many([a, b], held.token, 60)
    for name in (a, b):
        assert s.redis.pttl(key(name)) > 30_000, name
    with pytest.raises(LockLost):
        client.extend_many([a, b], WRONG, 60)
    held.release()
    renewed = client.acquire_many([a, b], auto_renewal=True)
    first_end = renewed.valid_until
    # Observed: the renewal moved the validity past three TTLs from the acquire.
    wait_until(lambda: renewed.valid_until > first_end + 2 * RENEWAL_TTL * 1000, "renewals of the set")
    for name in (a, b):
        assert s.redis.get(key(name)) == renewed.token.encode()
    renewed.release()


@case("multi-bad-sets")
def multi_bad_sets(start, clients):
    [s] = start()
    client = connect(clients, s.url)
    a, b = unique("multi-bad-a"), unique("multi-bad-b")
    bad = {
        "no-names": [],
        "too-many-names": [f"{a}-{i}" for i in range(MAX_MULTI_NAMES + 1)],
        "duplicate-name": [a, b, a],
        "empty-name": [a, ""],
    }
    for kind, names in bad.items():
        with pytest.raises(InvalidArgument) as caught:
            client.acquire_many(names)
        assert caught.value.kind == kind
    fair = connect(clients, s.url, fair=True)
    with pytest.raises(InvalidArgument) as caught:
        fair.acquire_many([a, b])
    assert caught.value.kind == "multi-unsupported"
    assert s.redis.dbsize() == 0, "nothing written"


def waiting(s, name: str) -> int:
    """The waiters the server counts for ``name``'s value."""
    return int(s.redis.get(key(name) + b":value:waiters") or 0)


def compute_callers(clients, s, name, n, computed, compute):
    """``n`` clients of ``name`` on their own threads, each ``get_or_compute`` with a computation
    that counts itself in ``computed`` and returns ``compute(i)``; their results, in ``got``."""
    got: list = []

    def call(i):
        client = connect(clients, s.url)

        def fn():
            computed.append(i)
            return compute(i)

        got.append(get_or_compute(client, name, fn, expire=60, wait=30, dumps=str, loads=bytes.decode))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    return threads, got


def joined(threads) -> None:
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a caller did not return"


@case("get-or-compute")
def get_or_compute_case(start, clients):
    [s] = start()
    name, computed = unique("compute"), []

    def compute(i):
        wait_until(lambda: waiting(s, name) >= 4, "the four others waiting", 30)
        return f"computed by {i}"

    threads, got = compute_callers(clients, s, name, 5, computed, compute)
    joined(threads)
    assert len(computed) == 1, "the computation ran once"
    assert len(got) == 5 and len(set(got)) == 1 and got[0].startswith("computed by "), got
    assert s.redis.get(key(name)) is None, "the store freed the lock"
    assert s.redis.get(key(name) + b":value") == got[0].encode()
    sets = s.redis.info("commandstats").get("cmdstat_set", {}).get("calls", 0)
    reader = connect(clients, s.url)
    assert get_or_compute(reader, name, lambda: pytest.fail("recomputed"), expire=60, dumps=str, loads=bytes.decode) == got[0]
    assert s.redis.info("commandstats").get("cmdstat_set", {}).get("calls", 0) == sets, "a present value writes nothing"

    # A computation that fails gives its lock up: exactly one waiter computes next.
    name, failing = unique("compute-flaky"), connect(clients, s.url)
    raised = []

    def fail():
        wait_until(lambda: waiting(s, name) >= 3, "three waiters", 30)
        raise RuntimeError("the backend is down")

    def call_failing():
        try:
            get_or_compute(failing, name, fail, expire=60, dumps=str, loads=bytes.decode)
        except RuntimeError as error:
            raised.append(error)

    first = threading.Thread(target=call_failing)
    first.start()
    wait_until(lambda: s.redis.exists(key(name)), "the first computer's lock")
    retried = []
    threads, got = compute_callers(clients, s, name, 3, retried, lambda i: f"retried by {i}")
    joined([first, *threads])
    assert [str(e) for e in raised] == ["the backend is down"], "the computation's error reaches its caller"
    assert len(retried) == 1, "exactly one waiter computed"
    assert len(got) == 3 and len(set(got)) == 1 and got[0].startswith("retried by "), got


@case("get-or-compute-bad-input")
def get_or_compute_bad_input(start, clients):
    servers = start(3)
    name = unique("compute-bad")
    refusals = {
        "a value on a majority is not a value": connect(clients, [s.url for s in servers]),
        "a fenced session": connect(clients, servers[0].url, fenced=True),
        "another library's key layout": connect(clients, servers[0].url, layout="redis-py"),
    }
    for what, client in refusals.items():
        with pytest.raises(InvalidArgument) as caught:
            client.run(client.pool(client.ttl, client.fenced), "get_or_lock", name, 0, now(), entropy())
        assert caught.value.kind == "compute-unsupported", what
    for s in servers:
        assert s.redis.dbsize() == 0, "nothing written"
    s = servers[0]
    client = connect(clients, s.url)
    pool = client.pool(client.ttl, client.fenced)
    value, lease = split_fetched(client.run(pool, "get_or_lock", name, 0, now(), entropy()))
    assert value is None and lease is not None, "a missing value is this caller's to compute"
    token = lease.token
    for kind, value, ttl in (("value-too-long", b"x" * 1_000_001, 60_000), ("bad-ttl", b"v", 0)):
        with pytest.raises(InvalidArgument) as caught:
            client.run(pool, "finish_compute", name, token, value, ttl, now())
        assert caught.value.kind == kind
    assert s.redis.get(key(name)) == token.encode(), "the refusals left the computer's lock alone"
    assert s.redis.get(key(name) + b":value") is None, "and stored nothing"
    s.redis.delete(key(name))  # an operator resets the lock while the computation runs
    with pytest.raises(LockLost) as caught:
        client.run(pool, "finish_compute", name, token, b"v", 60_000, now())
    assert caught.value.code == "not-held"
    assert s.redis.get(key(name) + b":value") is None, "a computation whose lock was lost stores nothing"
    value, lease = split_fetched(client.run(pool, "get_or_lock", name, 0, now(), entropy()))
    token = lease.token
    assert client.run(pool, "finish_compute", name, token, b"v", 60_000, now()) == 0
    assert s.redis.get(key(name) + b":value") == b"v"


def test_every_conformance_case_has_a_test():
    assert sorted(IMPL) == sorted(c["id"] for c in CASES)


@pytest.fixture
def clients():
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


@pytest.mark.parametrize("id", [c["id"] for c in CASES])
def test_conformance(id, start, clients):
    if id not in IMPL:
        pytest.fail(f"conformance case {id} has no test")
    IMPL[id](start, clients)
