"""Real ``redis-server`` processes for the tests, on free loopback ports. Startup waits on an
observed PONG; every wait in the tests polls observed state up to a deadline, never a sleep
standing in for an event."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
import redis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], object], what: str, deadline_s: float = 10.0) -> object:
    """Polls ``check`` until it returns something true; fails after ``deadline_s``."""
    end = time.monotonic() + deadline_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.01)


def make_certificates(directory: Path) -> dict[str, str]:
    """A CA and a ``localhost``/127.0.0.1 server certificate signed by it, made with openssl
    as ``host/tests/tls.rs`` does: ``{"ca", "cert", "key"}`` file paths."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True, timeout=30)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=distlock test CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
    return {"ca": str(directory / "ca.crt"), "cert": str(directory / "server.crt"), "key": str(directory / "server.key")}


class RedisServer:
    """A server on a free loopback port; with ``tls`` (from ``make_certificates``), TLS only."""

    def __init__(self, tls: dict[str, str] | None = None, binary: str = REDIS_SERVER) -> None:
        self.port = free_port()
        listen = ["--port", str(self.port)]
        if tls:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", tls["cert"], "--tls-key-file", tls["key"],
                      "--tls-ca-cert-file", tls["ca"], "--tls-auth-clients", "no"]  # fmt: skip
        self.process = subprocess.Popen(
            [binary, *listen, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"{'rediss' if tls else 'redis'}://127.0.0.1:{self.port}"
        self.redis = redis.Redis(port=self.port, socket_timeout=5, ssl=bool(tls), ssl_ca_certs=tls and tls["ca"])

        def pong() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server on {self.port} exited")
            try:
                return bool(self.redis.ping())
            except redis.ConnectionError:
                return False

        wait_until(pong, f"redis-server on {self.port} to answer PONG")

    def pause(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        self.resume()
        self.process.kill()
        self.process.wait()

    def blocked_clients(self) -> int:
        return int(self.redis.info("clients")["blocked_clients"])

    def blocked_client_ids(self) -> list[int]:
        """The ids of the clients blocked on a list (``b`` in their ``CLIENT LIST`` flags): a
        waiter that blocks again on a new connection shows up under a new id."""
        return [int(c["id"]) for c in self.redis.client_list() if "b" in c["flags"]]


@pytest.fixture
def start():
    """``start(n)``: ``n`` fresh servers, stopped after the test."""
    servers: list[RedisServer] = []

    def make(n: int = 1, tls: dict[str, str] | None = None) -> list[RedisServer]:
        made = [RedisServer(tls) for _ in range(n)]
        servers.extend(made)
        return made

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def valkey():
    """A fresh ``valkey-server`` 9.0+ (native ``DELIFEQ``, ``SET … IFEQ``), stopped after the
    test: ``DISTLOCK_VALKEY_SERVER``, which ``scripts/test.sh`` sets to the Valkey it installs.
    Missing, the test fails, unless ``DISTLOCK_SKIP_REDIS=1`` asks to skip."""
    binary = os.environ.get("DISTLOCK_VALKEY_SERVER") or shutil.which("valkey-server")
    if not binary:
        if os.environ.get("DISTLOCK_SKIP_REDIS") == "1":
            pytest.skip("no valkey-server (DISTLOCK_SKIP_REDIS=1)")
        pytest.fail("valkey-server (9.0 or later) was not found: run scripts/test.sh, or set DISTLOCK_VALKEY_SERVER")
    server = RedisServer(binary=binary)
    yield server
    server.stop()


_counter = [0]


def unique(what: str) -> str:
    _counter[0] += 1
    return f"{what}-{os.getpid()}-{_counter[0]}"
