"""The engine component (``wit/engine.wit``, world ``engine``) loaded with wasmtime.

Owns: compiling the component once per process, one wasmtime ``Store`` per :class:`Engine`,
and turning the component model's values into Python ones (records with kebab-case fields,
``result``/``option``/``variant``). Every decision about the lock protocol is the
component's; this module only calls it.

Invariants: a ``Store`` is used by one thread at a time (every call holds ``Engine.lock``);
resources are dropped explicitly (``drop``), never from a finalizer, and dropping one does no
network I/O.
"""

from __future__ import annotations

import os
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import wasmtime
import wasmtime.component as wc

INTERFACE = "distlock:lock/machines@0.1.0"
# A wasm32 u32 span: the engine's longest wait (about 49 days).
MAX_SPAN_MS = 2**32 - 1


def now() -> float:
    """Milliseconds on the monotonic clock: the engine's ``instant``."""
    return time.monotonic() * 1000.0


def entropy() -> bytes:
    """Random bytes for a token and retry jitter (24: enough for every call)."""
    return os.urandom(24)


def wasm_path() -> Path:
    """Where the component is: ``DISTLOCK_ENGINE_WASM``, else the package's own copy."""
    override = os.environ.get("DISTLOCK_ENGINE_WASM")
    if override:
        return Path(override)
    return Path(str(resources.files("distlock").joinpath("distlock_engine.wasm")))


_compiled: tuple[wasmtime.Engine, wc.Component] | None = None
_compile_lock = threading.Lock()


def _component() -> tuple[wasmtime.Engine, wc.Component]:
    global _compiled
    with _compile_lock:
        if _compiled is None:
            path = wasm_path()
            if not path.is_file():
                raise RuntimeError(
                    f"distlock: the engine component {path} is missing: install the package "
                    "from a checkout after `cargo build` (see bindings/python/README.md)"
                )
            engine = wasmtime.Engine()
            _compiled = (engine, wc.Component.from_file(engine, str(path)))
        return _compiled


class Record(wc.Record):
    """A WIT record to pass in: keyword arguments in snake_case become kebab-case fields."""

    def __init__(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self, name.replace("_", "-"), value)


def field(record: Any, name: str) -> Any:
    """A field of a record the engine returned, by its snake_case name."""
    return getattr(record, name.replace("_", "-"))


def split_result(value: Any) -> tuple[bool, Any]:
    """A ``result`` value as ``(ok, payload)``: wasmtime wraps it in ``Variant('ok'|'err')``
    where the two sides could be confused, and otherwise hands over the payload alone, where
    an error is always a ``Variant`` of the ``error`` type and success never is."""
    if isinstance(value, wc.Variant) and value.tag in ("ok", "err"):
        return value.tag == "ok", value.payload
    if isinstance(value, wc.Variant):
        return False, value
    return True, value


def split_option(value: Any) -> tuple[bool, Any]:
    """An ``option`` value as ``(present, payload)``: wasmtime wraps it in
    ``Variant('some'|'none')`` where ``none`` could be confused with the payload
    (``option<result<_, error>>``), and otherwise hands over the payload or ``None``."""
    if isinstance(value, wc.Variant) and value.tag in ("some", "none"):
        return value.tag == "some", value.payload
    return value is not None, value


class EngineError(Exception):
    """An engine ``error`` value (turned into a typed error by ``errors.from_engine``)."""

    def __init__(self, error: wc.Variant) -> None:
        super().__init__(error.tag)
        self.error = error


class Engine:
    """One instance of the component in its own store; ``call`` runs one export."""

    def __init__(self) -> None:
        engine, component = _component()
        self.lock = threading.RLock()
        self.store = wasmtime.Store(engine)
        self.instance = wc.Linker(engine).instantiate(self.store, component)
        self._iface = self.instance.get_export_index(self.store, INTERFACE)
        self._funcs: dict[str, wc.Func] = {}

    def _func(self, name: str) -> wc.Func:
        func = self._funcs.get(name)
        if func is None:
            index = self.instance.get_export_index(self.store, name, self._iface)
            func = self.instance.get_func(self.store, index) if index else None
            if func is None:
                raise RuntimeError(f"distlock: the engine component lacks {name}")
            self._funcs[name] = func
        return func

    def call(self, name: str, *args: Any) -> Any:
        """Calls export ``name`` (``open``, ``[method]session.acquire``, …)."""
        with self.lock:
            return self._func(name)(self.store, *args)

    def fallible(self, name: str, *args: Any) -> Any:
        """Calls an export returning ``result<T, error>``: ``T``, or raises ``EngineError``."""
        ok, payload = split_result(self.call(name, *args))
        if not ok:
            raise EngineError(payload)
        return payload

    def drop(self, resource: wc.ResourceAny | None) -> None:
        """Frees a resource's guest state (bookkeeping only, no I/O)."""
        if resource is not None:
            with self.lock:
                resource.drop(self.store)


class Handle:
    """A resource with its methods: ``Handle(engine, 'operation', res).poll_outcome()``."""

    def __init__(self, engine: Engine, kind: str, resource: wc.ResourceAny) -> None:
        self.engine, self.kind, self.resource = engine, kind, resource

    def __getattr__(self, method: str) -> Any:
        name = f"[method]{self.kind}.{method.replace('_', '-')}"
        return lambda *args: self.engine.call(name, self.resource, *args)

    def fallible(self, method: str, *args: Any) -> Any:
        return self.engine.fallible(f"[method]{self.kind}.{method.replace('_', '-')}", self.resource, *args)

    def drop(self) -> None:
        self.engine.drop(self.resource)
        self.resource = None  # type: ignore[assignment]
