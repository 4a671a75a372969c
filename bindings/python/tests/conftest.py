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


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}"
        self.redis = redis.Redis(port=self.port, socket_timeout=5)

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


@pytest.fixture
def start():
    """``start(n)``: ``n`` fresh servers, stopped after the test."""
    servers: list[RedisServer] = []

    def make(n: int = 1) -> list[RedisServer]:
        made = [RedisServer() for _ in range(n)]
        servers.extend(made)
        return made

    yield make
    for server in servers:
        server.stop()


_counter = [0]


def unique(what: str) -> str:
    _counter[0] += 1
    return f"{what}-{os.getpid()}-{_counter[0]}"
