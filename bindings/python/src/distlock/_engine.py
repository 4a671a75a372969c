"""The engine component (``wit/engine.wit``, world ``engine``) loaded with wasmtime.

Owns: compiling the component once per process, one wasmtime ``Store`` per :class:`Engine`,
calling its exports fast, and turning the component model's values into Python ones (records
with kebab-case fields, ``result``/``option``/``variant``). Every decision about the lock
protocol is the component's; this module only calls it.

Speed: ``wasmtime.component.Func.__call__`` reads the function's type through the C API on
every call, and each value conversion walks its type's fields or cases again (``error`` alone
has dozens) — most of a call's time. :class:`Export` reads a function's types once and
*freezes* them (:func:`freeze`: every field, case and payload read once and kept), then calls
the C API as ``Func.__call__`` does. Pinned to wasmtime 51 (see ``pyproject.toml``), whose
internals this relies on.

Invariants: a ``Store`` is used by one thread at a time (every call holds ``Engine.lock``);
resources are dropped explicitly (``drop``), never from a finalizer, and dropping one does no
network I/O.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from importlib import resources
from pathlib import Path
from typing import Any

import ctypes

import wasmtime
import wasmtime.component as wc
from wasmtime import _ffi as ffi
from wasmtime.component import _types
from wasmtime.component._enter import enter_wasm

from ._lowered import VAL, Args, lift_bytes, moved_out

INTERFACE = "distlock:lock/machines@0.1.0"
# A wasm32 u32 span: the engine's longest wait (about 49 days).
MAX_SPAN_MS = 2**32 - 1


def now() -> float:
    """Milliseconds on the monotonic clock: the engine's ``instant``."""
    return time.monotonic() * 1000.0


ENTROPY_SIZE = 24  # random bytes an engine call takes: enough for a token and retry jitter
_ENTROPY_BATCH = 64  # draws read from the OS's generator at once
_drawn: deque[bytes] = deque()  # read and not handed out yet


def entropy() -> bytes:
    """``ENTROPY_SIZE`` random bytes from the OS's generator for a token and retry jitter,
    each draw handed out once: read ``_ENTROPY_BATCH`` draws at a time, so an operation
    makes no ``getrandom`` call of its own (nor lets go of the GIL for one). ``popleft`` is
    atomic, so two threads never get the same draw; a forked child forgets the draws its
    parent read and did not hand out (see below), so no two processes share one."""
    try:
        return _drawn.popleft()
    except IndexError:
        data = os.urandom(ENTROPY_SIZE * _ENTROPY_BATCH)
        _drawn.extend([data[at : at + ENTROPY_SIZE] for at in range(ENTROPY_SIZE, len(data), ENTROPY_SIZE)])
        return data[:ENTROPY_SIZE]


os.register_at_fork(after_in_child=_drawn.clear)


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


# The type properties each conversion reads, and the methods derived from them.
_TYPE_PROPERTIES = ("element", "fields", "elements", "cases", "names", "names_count", "payload", "ok", "err")
_DERIVED = ("_cases", "_tagged", "_is_bytes")
_frozen_classes: dict[type, type] = {}


_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_VAL_PAYLOAD = ffi.wasmtime_component_val_t.of.offset
_U8_KIND = bytes([ffi.WASMTIME_COMPONENT_U8.value])


def _bytes_from_c(self: Any, c: Any) -> Any:
    """A frozen ``list<u8>`` lifted in one copy (the package's own conversion goes element by
    element): the values sit ``_VAL_SIZE`` bytes apart in the C array, each a kind byte and
    then the byte itself at ``_VAL_PAYLOAD``."""
    if not self._frozen["_is_bytes"]:
        return _types.ListType.convert_from_c(self, c)
    items = c.of.list
    data = ctypes.string_at(items.data, items.size * _VAL_SIZE)[_VAL_PAYLOAD::_VAL_SIZE] if items.size else b""
    ffi.wasmtime_component_vallist_delete(ctypes.byref(items))
    return data


def _bytes_to_c(self: Any, store: Any, val: Any, ptr: Any) -> None:
    """A frozen ``list<u8>`` lowered in one copy (see :func:`_bytes_from_c`)."""
    if not self._frozen["_is_bytes"]:
        return _types.ListType.convert_to_c(self, store, val, ptr)
    if not isinstance(val, (bytes, bytearray)):
        raise TypeError("expected bytes value")
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(raw, len(val))
    if val:
        values = bytearray(len(val) * _VAL_SIZE)
        values[0::_VAL_SIZE] = _U8_KIND * len(val)
        values[_VAL_PAYLOAD::_VAL_SIZE] = val
        ctypes.memmove(raw.data, bytes(values), len(values))
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
    ptr.contents.of.list = raw


_BOOL_KIND = ffi.WASMTIME_COMPONENT_BOOL
_RESOURCE_KIND = ffi.WASMTIME_COMPONENT_RESOURCE
_func_call = ffi.wasmtime_component_func_call
_val_delete = ffi.wasmtime_component_val_delete
_byref = ctypes.byref


def _record_from_c(self: Any, c: Any) -> Any:
    """A frozen record lifted by field position (the package's own conversion also decodes
    and compares every field's name, which the type already fixes)."""
    record = c.of.record
    ret = wc.Record()
    try:
        data = record.data
        for i, (name, ty) in enumerate(self._frozen["fields"]):
            raw = data[i].val
            setattr(ret, name, ty.convert_from_c(raw))
            raw.kind = _BOOL_KIND  # moved out: the record's delete must not free it again
        return ret
    finally:
        ffi.wasmtime_component_valrecord_delete(record)


def _frozen_class(cls: type) -> type:
    """``cls`` with its type properties and derived methods answered from ``_frozen``."""
    frozen = _frozen_classes.get(cls)
    if frozen is None:
        attrs: dict[str, Any] = {}
        for name in _TYPE_PROPERTIES:
            if isinstance(getattr(cls, name, None), property):
                attrs[name] = property(lambda self, name=name: self._frozen[name])
        for name in _DERIVED:
            if hasattr(cls, name):
                attrs[name] = lambda self, name=name: self._frozen[name]
        if issubclass(cls, _types.ListType):
            attrs.update(convert_from_c=_bytes_from_c, convert_to_c=_bytes_to_c)
        if issubclass(cls, _types.RecordType):
            attrs.update(convert_from_c=_record_from_c)
        frozen = _frozen_classes[cls] = type(cls.__name__, (cls,), attrs)
    return frozen


def _freeze_member(value: Any) -> Any:
    if isinstance(value, _types.ValType):
        return freeze(value)
    if isinstance(value, list):
        return [_freeze_member(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_freeze_member(item) for item in value)
    return value


def freeze(ty: _types.ValType) -> _types.ValType:
    """``ty`` with every nested type read once and kept, so converting a value no longer
    walks the type through the C API."""
    cls = type(ty)
    if cls in _frozen_classes.values():
        return ty
    values = {name: _freeze_member(getattr(ty, name)) for name in _TYPE_PROPERTIES if isinstance(getattr(cls, name, None), property)}
    ty._frozen = values  # type: ignore[attr-defined]
    ty.__class__ = _frozen_class(cls)
    for name in _DERIVED:  # in this order: `_tagged` reads `_cases`
        if hasattr(cls, name):
            values[name] = getattr(cls, name)(ty)
    return ty


class Export:
    """One exported function, its types read once: ``Func.__call__`` without the type walk."""

    def __init__(self, func: wc.Func, store: wasmtime.Store) -> None:
        fty = func.type(store)
        self.func = func
        self.params = [freeze(ty) for _, ty in fty.params]
        result = fty.result
        self.result = freeze(result) if result is not None else None

    def __call__(self, store: wasmtime.Store, *params: Any) -> Any:
        if len(params) != len(self.params):
            raise TypeError(f"{len(params)} parameters given, {len(self.params)} expected")
        param_capi = (ffi.wasmtime_component_val_t * len(params))()
        n = 0
        try:
            for ty, val in zip(self.params, params):
                ty.convert_to_c(store, val, ctypes.pointer(param_capi[n]))
                n += 1
            result_space = ffi.wasmtime_component_val_t() if self.result is not None else None
            result_capi = ctypes.byref(result_space) if result_space is not None else None

            def run() -> Any:
                return ffi.wasmtime_component_func_call(
                    ctypes.byref(self.func._func), store._context(), param_capi, n, result_capi, 1 if result_capi else 0
                )

            enter_wasm(run)
            if self.result is None:
                return None
            return self.result.convert_from_c(result_space)
        finally:
            for i in range(n):
                ffi.wasmtime_component_val_delete(ctypes.byref(param_capi[i]))


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


def on_event(op: Any, event: Any) -> bytes:
    """The engine's step for one event a driver's connection appended to an operation's
    events: bytes read (``(node, data)``), a node lost (``node``), or a new connection to a
    node lent (``~node``, below 0: its handshake ended)."""
    if event.__class__ is int:
        return op.lose(now(), event) if event >= 0 else op.lend(now(), ~event)
    return op.feed(now(), *event)


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
        self.context = self.store._context()  # the store's, for its life: read once
        self._funcs: dict[str, Export] = {}
        self._flat: dict[str, tuple[Any, Args]] = {}

    def flat(self, method: str, n: int) -> tuple[Any, Args]:
        """``operation.<method>``'s function and its ``n`` kept arguments (see ``Operation``);
        shared by every operation of this engine, used under ``lock``."""
        entry = self._flat.get(method)
        if entry is None:
            entry = self._flat[method] = (_byref(self._func(f"[method]operation.{method}").func._func), Args(n))
        return entry

    def _func(self, name: str) -> Export:
        func = self._funcs.get(name)
        if func is None:
            index = self.instance.get_export_index(self.store, name, self._iface)
            raw = self.instance.get_func(self.store, index) if index else None
            if raw is None:
                raise RuntimeError(f"distlock: the engine component lacks {name}")
            func = self._funcs[name] = Export(raw, self.store)
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
        call = lambda *args: self.engine.call(name, self.resource, *args)  # noqa: E731
        setattr(self, method, call)  # found directly from now on
        return call

    def fallible(self, method: str, *args: Any) -> Any:
        return self.engine.fallible(f"[method]{self.kind}.{method.replace('_', '-')}", self.resource, *args)

    def drop(self) -> None:
        for _, _, lowered, _ in self.__dict__.pop("_started", {}).values():  # `started`'s
            lowered.free()
        held = self.__dict__.pop("_c_self", None)  # the handle `started` lowered once
        if held is not None:
            ffi.wasmtime_component_val_delete(ctypes.byref(held))
        self.engine.drop(self.resource)
        self.resource = None  # type: ignore[assignment]


class Operation(Handle):
    """An ``operation`` with its flat calls (``start``, ``feed``, ``lose``, ``lend``, ``tick``: scalars
    and bytes in, bytes out) made without the generic conversions: the operation's handle is
    lowered once, each export's arguments stay lowered in the engine's ``Args`` between calls
    (``_lowered.py``), and the answer's bytes are lifted in one copy. Built from a
    ``ResourceAny`` (``Operation(engine, "operation", resource)``) or straight from the C value
    an answer carries (:meth:`moved`); the ``ResourceAny`` the generic calls need
    (``poll_outcome``, ``discard_replies``) is made only when one is called."""

    engine_frees = False  # a resource: dropped by its runtime, outcome or not

    def __init__(self, engine: Engine, kind: str, resource: wc.ResourceAny) -> None:
        self.engine, self.kind, self._resource = engine, kind, resource
        self._self = VAL()
        self._self.kind = _RESOURCE_KIND
        self._self.of.resource = ffi.wasmtime_component_resource_any_clone(resource.ptr())

    @classmethod
    def moved(cls, engine: Engine, val: Any) -> Operation:
        """The operation whose handle is the C value ``val`` (inside an answer), taken over."""
        op = cls.__new__(cls)
        op.engine, op.kind, op._resource = engine, "operation", None
        op._self = VAL.from_buffer_copy(val)
        moved_out(val)
        return op

    @property
    def resource(self) -> wc.ResourceAny | None:  # type: ignore[override]
        """The handle as a ``ResourceAny``, for the generic calls (made on first use)."""
        if self._resource is None and self._self is not None:
            self._resource = wc.ResourceAny._from_ptr(ffi.wasmtime_component_resource_any_clone(self._self.of.resource))
        return self._resource

    def _flat(self, method: str, fill: Any, *values: Any) -> bytes:
        """Calls ``method`` with the handle and ``values`` (``fill`` writes them into
        the kept arguments) and lifts its ``list<u8>`` answer."""
        engine = self.engine
        with engine.lock:
            func, args = engine.flat(method, len(values) + 1)
            args.vals[0] = self._self
            fill(args, *values)
            result = VAL()
            error = _func_call(func, engine.context, args.vals, args.n, _byref(result), 1)
            if error:
                enter_wasm(lambda: error)
            return lift_bytes(result)

    def start(self, now_ms: float, lent: bytes) -> bytes:
        return self._flat("start", _fill_start, now_ms, lent)

    def feed(self, now_ms: float, node: int, data: bytes) -> bytes:
        return self._flat("feed", _fill_feed, now_ms, node, data)

    def lose(self, now_ms: float, node: int) -> bytes:
        return self._flat("lose", _fill_lose, now_ms, node)

    def lend(self, now_ms: float, node: int) -> bytes:
        """``step`` with a ``connected`` event: a new connection to ``node`` lent to it."""
        return self._flat("lend", _fill_lose, now_ms, node)

    def tick(self, now_ms: float) -> bytes:
        return self._flat("tick", _fill_tick, now_ms)

    def drop(self) -> None:
        """Runs the guest's destructor and frees the handle (bookkeeping only, no I/O)."""
        held = self._self
        if held is None:
            return
        engine = self.engine
        with engine.lock:
            self._self = None
            try:
                enter_wasm(lambda: ffi.wasmtime_component_resource_any_drop(engine.context, held.of.resource))
            finally:
                _val_delete(_byref(held))
        self._resource = None


def _fill_start(args: Args, now_ms: float, lent: bytes) -> None:
    args.f64(1, now_ms)
    args.bytes(2, lent)


def _fill_feed(args: Args, now_ms: float, node: int, data: bytes) -> None:
    args.f64(1, now_ms)
    args.u8(2, node)
    args.bytes(3, data)


def _fill_lose(args: Args, now_ms: float, node: int) -> None:
    """``lose``'s arguments, and ``lend``'s (the same)."""
    args.f64(1, now_ms)
    args.u8(2, node)


def _fill_tick(args: Args, now_ms: float) -> None:
    args.f64(1, now_ms)


def _fill_acquire_started(args: Args, name: str, wait_ms: int, now_ms: float, entropy: bytes, lent: bytes) -> None:
    args.string(1, name)
    args.u32(2, wait_ms)
    args.f64(3, now_ms)
    args.bytes(4, entropy)
    args.bytes(5, lent)


def _fill_release_started(args: Args, name: str, token: str, now_ms: float, entropy: bytes, lent: bytes) -> None:
    args.string(1, name)
    args.string(2, token)
    args.f64(3, now_ms)
    args.bytes(4, entropy)
    args.bytes(5, lent)


_STARTED_FILL = {"acquire_started": _fill_acquire_started, "release_started": _fill_release_started}


def started(session: Handle, method: str, *args: Any) -> tuple[Operation, bytes]:
    """``session.<method>-started(args)`` (``acquire_started`` or ``release_started``): the
    operation and its first flat step, or raises ``EngineError``. The arguments stay lowered
    in the session's ``Args`` between calls (the same name is not lowered again, entropy and
    ``lent`` are written in place); the success's ``tuple<operation, list<u8>>`` is lifted
    straight from the C value (an error takes the generic path)."""
    engine = session.engine
    with engine.lock:
        kept = session.__dict__.get("_started")
        if kept is None:
            kept = session._started = {}  # type: ignore[attr-defined]
            held = session._c_self = VAL()  # type: ignore[attr-defined]
            held.kind = _RESOURCE_KIND
            held.of.resource = ffi.wasmtime_component_resource_any_clone(session.resource.ptr())
        entry = kept.get(method)
        if entry is None:
            export = engine._func(f"[method]session.{method.replace('_', '-')}")
            lowered = Args(len(export.params))
            lowered.handle(0, session._c_self)  # type: ignore[attr-defined]
            entry = kept[method] = (export, _byref(export.func._func), lowered, _STARTED_FILL[method])
        export, func, lowered, fill = entry
        fill(lowered, *args)
        result = VAL()
        error = _func_call(func, engine.context, lowered.vals, lowered.n, _byref(result), 1)
        if error:
            enter_wasm(lambda: error)
        outcome = result.of.result
        if not outcome.is_ok:
            ok, error_value = split_result(export.result.convert_from_c(result))
            raise EngineError(error_value)
        pair = outcome.val.contents.of.tuple
        op = Operation.moved(engine, pair.data[0])
        first = lift_bytes(pair.data[1])
        moved_out(pair.data[1])  # its list is freed already
        _val_delete(_byref(result))
        return op, first
