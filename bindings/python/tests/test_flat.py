"""The flat step reader (``_flat.decode``): steps written by the layout ``wit/engine.wit``
documents read back as the same values ``wasmtime.component`` builds for ``poll-outcome``
(``Variant``/``Record``, equal field by field and of the same types), in the plain and the
slotted form, with one node and with several."""

from __future__ import annotations

import struct

import pytest
import wasmtime.component as wc

from distlock import _flat


def step(body: bytes, slot: int | None) -> bytes:
    """``body`` (the layout after its version byte) as version 1, or slotted (version 2)."""
    return bytes([1]) + body if slot is None else bytes([2]) + struct.pack("<I", slot) + body


def record(**fields):
    value = wc.Record()
    for name, field in fields.items():
        setattr(value, name.replace("_", "-"), field)
    return value


CONNS = [(0, 0), (1, 2), (2, 0)]


def conns(n: int) -> bytes:
    return bytes([n]) + b"".join(struct.pack("<BI", *c) for c in CONNS[:n])


@pytest.mark.parametrize("slot", [None, 7])
@pytest.mark.parametrize("nodes", [0, 1, 3])
def test_outcomes_read_as_the_component_api_builds_them(slot, nodes):
    token = b"0123456789abcdef0123456789abcdef"
    acquired = b"\x00\x01\x00" + bytes([len(token)]) + token + struct.pack("<BQdd", 1, 42, 10.0, 30010.0) + conns(nodes)
    released = b"\x00\x01\x01" + struct.pack("<I", 3) + conns(nodes)
    extended = b"\x00\x01\x02" + struct.pack("<dd", 20.0, 50020.0) + conns(nodes)
    cases = [
        (acquired, wc.Variant("ok", wc.Variant("acquired", record(token=token.decode(), fence=42, started=10.0, valid_until=30010.0)))),
        (released, wc.Variant("ok", wc.Variant("released", 3))),
        (extended, wc.Variant("ok", wc.Variant("extended", record(started=20.0, valid_until=50020.0)))),
    ]
    for body, expected in cases:
        got = _flat.decode(step(body, slot), None)
        assert got.over and got.transmits == [] and got.timeout is None
        assert got.outcome == expected and type(got.outcome) is wc.Variant
        assert type(got.outcome.payload) is wc.Variant
        assert got.connections == CONNS[:nodes]
        assert isinstance(got, _flat.Step)


@pytest.mark.parametrize("slot", [None, 7])
def test_a_pending_step_carries_its_transmits_and_timeout(slot):
    body = b"\x02" + struct.pack("<BI", 0, 3) + b"SET" + struct.pack("<BI", 2, 0) + b"\x00" + struct.pack("<d", 1234.5)
    got = _flat.decode(step(body, slot), None)
    assert (got.transmits, got.timeout, got.over, got.outcome, got.connections) == ([(0, b"SET"), (2, b"")], 1234.5, False, None, [])
    nan = _flat.decode(step(b"\x00\x00" + struct.pack("<d", float("nan")), slot), None)
    assert nan.timeout is None and not nan.over


def test_an_unknown_version_or_an_empty_answer_is_refused():
    for data in (b"", b"\x03\x00"):
        with pytest.raises(RuntimeError):
            _flat.decode(data, None)
