"""The protocol's values on the wire (`nktui.protocol.wire`): every protocol value crosses to_wire, pack, unpack and
from_wire bit for bit, and anything else (an unknown type or field, a bad config, a value nested too deep, what is
not a protocol value at all) is a `WireError`.

No torch, no trainer, no socket. The examples come from tests/wire_support.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import random
import struct
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest
from wire_support import (
    EXTREMES,
    INF,
    NAN,
    bits,
    every_command,
    every_record,
    every_value,
    info,
    layer,
    observed,
    random_value,
    same,
)

from nktui.protocol import commands, records, results, run_info, wire
from nktui.protocol.commands import ComputeSurface, Pause, UpdateLive
from nktui.protocol.config import RunConfig
from nktui.protocol.errors import CheckpointError, ConfigError, NktuiError
from nktui.protocol.records import Histogram, LayerStats, StepRecord, WatchHit
from nktui.protocol.results import SurfaceCancelled, SurfaceRequest, WeightRef
from nktui.protocol.state import RunState
from nktui.protocol.wire import (
    RemoteError,
    WireError,
    error_from_wire,
    error_to_wire,
    from_wire,
    pack,
    read_frame,
    to_wire,
    unpack,
)


# -- helpers -----------------------------------------------------------------------------------------------------------
def through_frame(value):
    """`value` as a client gets it: to_wire, pack, the frame's length prefix checked, read_frame, from_wire."""
    frame = pack({"kind": "reply", "id": 1, "value": to_wire(value)})
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4
    header, blob = unpack(frame[4:])
    assert blob == b"" and header["kind"] == "reply" and header["id"] == 1
    stream = io.BytesIO(frame)
    again, _ = read_frame(lambda n: stream.read(n))
    assert again == header or json.dumps(again) == json.dumps(header)  # (nan != nan)
    return from_wire(header["value"])


# -- 1. values, through pack and unpack --------------------------------------------------------------------------------
def kinds(value) -> set[str]:
    """The class names of `value` and of everything in it."""
    out = {type(value).__name__}
    if isinstance(value, StepRecord):
        parts = list(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, RunConfig):
        parts = [getattr(value, f.name) for f in dataclasses.fields(value)]
    elif isinstance(value, Mapping):
        parts = list(value.values())
    elif isinstance(value, (tuple, list)):
        parts = list(value)
    else:
        parts = []
    for part in parts:
        out |= kinds(part)
    return out


@pytest.mark.parametrize("value", every_value(), ids=lambda v: type(v).__name__)
def test_a_protocol_value_comes_back_the_same(value):
    back = through_frame(value)
    assert same(back, value), (back, value)
    if "NaN" not in json.dumps(to_wire(value)):  # (nan != nan: `same` has checked those)
        assert back == value


def test_every_registered_class_has_an_example_here():
    """A new protocol class gets a round-trip example (wire_support.every_value) before it crosses the wire."""
    covered = set().union(*map(kinds, every_value()))
    assert set(wire._TYPES) - covered == set()
    for module in (records, results, commands, run_info):  # (the classes _register_protocol picks up)
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__ and dataclasses.is_dataclass(value):
                assert value.__name__ in covered


def test_extreme_floats_cross_bit_for_bit():
    for x in EXTREMES:
        back = through_frame(x)
        assert type(back) is float
        assert (math.isnan(back) and math.isnan(x)) or bits(back) == bits(x)
    assert math.copysign(1.0, through_frame(-0.0)) == -1.0
    assert through_frame(5e-324) == 5e-324 and through_frame(1e-45) == 1e-45
    assert through_frame(1.7976931348623157e308) == 1.7976931348623157e308
    assert through_frame((INF, -INF)) == (INF, -INF)
    hit = through_frame(observed())
    assert math.copysign(1.0, hit.accuracy) == -1.0 and math.isnan(hit.loss)
    assert math.copysign(1.0, hit.layers["fc.weight"].update_norm) == -1.0
    assert hit.layers["fc.weight"].histogram.counts[2] == 2**40


def test_plain_values_ints_strings_and_maps():
    for value in (None, True, False, 0, -1, 2**64 + 1, -(2**100), "", "\u00e9\U0001f600", "\ud800", '"\\\n'):
        back = through_frame(value)
        assert type(back) is type(value) and back == value
    assert through_frame([1, [2, [3]]]) == (1, (2, (3,)))  # arrays come back as tuples
    back = through_frame({"a": 1, 2: (3,), (4, 5): None})
    assert isinstance(back, MappingProxyType) and dict(back) == {"a": 1, 2: (3,), (4, 5): None}
    assert list(back) == ["a", 2, (4, 5)]  # in order
    assert through_frame(Path("/tmp/x")) == "/tmp/x"


def test_records_keep_their_shape():
    record = through_frame(observed())
    assert isinstance(record, StepRecord) and record.observed
    assert isinstance(record.layers, MappingProxyType) and list(record.layers) == ["fc.weight", "fc.bias"]
    assert isinstance(record.layers["fc.weight"], LayerStats) and record.layers["fc.weight"].shape == (10, 64)
    assert isinstance(record.activations, tuple) and record.activations[1].dead_fraction == 0.25
    hit = through_frame(every_record()[5])
    assert isinstance(hit, WatchHit) and isinstance(hit.record, StepRecord) and hit.record.step == 12
    assert hit.stopped_before is True and hit.layer is None
    plain = through_frame(StepRecord(1, 0, 2.5, 0.5, 0.1))
    assert plain.layers == {} and plain.activations == () and plain.samples_per_sec is None


def test_run_info_and_config():
    back = through_frame(info())
    assert back == info() and back.rewinds.oldest_step is None and back.data.input_shape == (1, 8, 8)
    assert back.layer_shapes == {"fc.weight": (10, 64), "fc.bias": (10,)}
    config = RunConfig(model="mlp", hidden=(7, 3), lr=5e-324, steps=5, run_dir="/tmp/x \u00e9", seed=2**63 - 1,
                       watch_ratio_low=5e-324, watch_ratio_high=1.7976931348623157e308, watch=False)
    for value in (RunConfig(), config.validate()):
        back = through_frame(value)
        assert isinstance(back, RunConfig) and back == value
        assert bits(back.lr) == bits(value.lr) and back.hidden == value.hidden
    assert through_frame(config).epochs is None  # (None is left out of to_dict: back to the default)


def test_commands_come_back_as_the_commands_sent():
    for command in every_command():
        back = through_frame(command)
        assert type(back) is type(command) and same(back, command)
    live = through_frame(UpdateLive.of({"log_every": 5}, watch=False))
    assert live.as_dict() == {"log_every": 5, "watch": False}
    job = ComputeSurface(SurfaceRequest(w1=WeightRef("fc.weight", (1, 2))))
    back = through_frame(job)
    assert back.job == job.job and back.request.w1 == WeightRef("fc.weight", (1, 2)) and str(back.request.w1)
    assert through_frame(Pause(measured=True)).measured is True


def test_run_state_comes_back_a_run_state():
    for state in RunState:
        back = through_frame(state)
        assert type(back) is RunState and back is state
        assert back.is_over == state.is_over


def test_run_state_tag_decodes():
    assert from_wire({"$enum": "RunState", "v": "paused"}) is RunState.PAUSED
    assert through_frame(RunState.FAILED) is RunState.FAILED


def test_errors_cross_as_their_own_class():
    for error in (ConfigError("lr must be > 0"), CheckpointError("no"), NktuiError("x"), SurfaceCancelled("c")):
        back = error_from_wire(json.loads(json.dumps(error_to_wire(error))))
        assert type(back) is type(error) and str(back) == str(error)
    back = error_from_wire(error_to_wire(KeyError("k")))
    assert type(back) is RemoteError and str(back) == "KeyError: 'k'"
    assert type(error_from_wire(["not", "a", "dict"])) is RemoteError
    assert str(error_from_wire({"type": "RemoteError", "message": "m"})) == "m"



# -- 2. what is refused ------------------------------------------------------------------------------------------------
BAD_VALUES = {
    "unknown type": {"$": "Popen", "args": ["rm"]},
    "type not text": {"$": ["Note"], "text": "x"},
    "unknown field": {"$": "Rewound", "step": 1, "from_step": 2, "extra": 3},
    "missing field": {"$": "Rewound", "step": 1},
    "unknown field in nested": {"$": "WatchHit", "watchpoint": "w", "step": 1, "layer": None, "value": 1.0,
                                "threshold": 1.0, "message": "m", "record": {"$": "StepRecord", "step": 1, "bad": 2}},
    "another enum": {"$enum": "Signals", "v": 9},
    "bad RunState": {"$enum": "RunState", "v": "exploded"},
    "RunState without v": {"$enum": "RunState"},
    "config bad lr": {"$config": {"lr": -1}},
    "config unknown": {"$config": {"no_such_setting": 1}},
    "config not a dict": {"$config": 5},
    "config hidden": {"$config": {"hidden": "a,b"}},
    "config seed": {"$config": {"seed": 2**64}},
    "untagged": {"a": 1},
    "empty dict": {},
    "map not pairs": {"$map": [[1, 2, 3]]},
    "map not a list": {"$map": 5},
    "map unhashable key": {"$map": [[{"$map": []}, 1]]},
    "in a list": [1, [2, {"$": "Nope"}]],
}


@pytest.mark.parametrize("name", BAD_VALUES)
def test_from_wire_refuses_with_a_wire_error(name):
    with pytest.raises(WireError):
        from_wire(BAD_VALUES[name])
    # and through a frame, the same
    header, _ = unpack(pack({"kind": "call", "id": 1, "command": BAD_VALUES[name]})[4:])
    with pytest.raises(WireError):
        from_wire(header["command"])


def test_from_wire_refuses_what_json_does_not_make():
    for value in (b"bytes", {1, 2}, object(), 1j):
        with pytest.raises(WireError):
            from_wire(value)


def test_a_config_with_any_odd_value_is_a_config_or_a_wire_error():
    odd = [None, True, False, "x", "", [], {}, [1], [[1]], -1, 0, 1.5, INF, NAN, "9" * 5000, 2**70, {"$map": []},
           "nan", -0.0, 5e-324]
    for field in dataclasses.fields(RunConfig):
        for value in odd:
            try:
                back = from_wire({"$config": {field.name: value}})
            except WireError:
                continue
            assert isinstance(back, RunConfig)


def test_from_wire_of_random_values_is_a_value_or_a_wire_error():
    rng = random.Random(7)
    decoded = 0
    for _ in range(3000):
        data = json.loads(json.dumps(random_value(rng)))  # (as it comes off the wire)
        try:
            from_wire(data)
            decoded += 1
        except WireError:
            pass
    assert decoded > 100


def _replace_number(data, old: float, new):
    if isinstance(data, float) and data == old:
        return new
    if isinstance(data, list):
        return [_replace_number(x, old, new) for x in data]
    if isinstance(data, dict):
        return {k: _replace_number(v, old, new) for k, v in data.items()}
    return data


def test_a_huge_integer_in_layer_statistics_is_a_wire_error_or_a_value():
    sentinel = 12345.678
    for stats in (layer(grad_norm=sentinel),
                  LayerStats("a", (1,), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, Histogram(sentinel, 1.0, (1,)))):
        encoded = to_wire(stats)
        huge = _replace_number(encoded, sentinel, 10**400)
        assert huge != encoded
        header, _ = unpack(pack({"kind": "x", "v": huge})[4:])  # (JSON carries such an int)
        try:
            from_wire(header["v"])
        except WireError:
            pass


def test_a_map_of_strings_is_refused():
    for data in ({"$map": ["ab"]}, {"$map": {"ab": 1}}):
        with pytest.raises(WireError):
            from_wire(data)


class _Stranger:
    pass


@dataclasses.dataclass(frozen=True)
class Unregistered:
    x: int = 1


# a dataclass with a registered class's name is not that class
Impostor = dataclasses.make_dataclass("Note", [("text", str)], frozen=True)


def test_to_wire_refuses_what_is_not_a_protocol_value():
    for value in (lambda: 1, len, {1, 2}, frozenset(), b"x", bytearray(b"x"), 1j, _Stranger(), Unregistered(),
                  Impostor("x"), Unregistered, iter([]), (1, object()), {"k": {2}}, StepRecord(1, 0, 1.0, 1.0, {3})):
        with pytest.raises(WireError):
            to_wire(value)
    assert to_wire(commands.Note("real"))["$"] == "Note"



def _deep_list(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def outcome(function, value) -> str:
    """What `function(value)` came to: "value", or the name of what it raised (caught here: a RecursionError's
    thousand frames, left to pytest, take it seconds to report)."""
    try:
        function(value)
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__
    return "value"


def test_deeply_nested_arrays_from_json_are_a_wire_error():
    value = json.loads("[" * 600 + "]" * 600)  # (what unpack lets through)
    assert outcome(from_wire, value) == "WireError"


def test_deeply_nested_python_values_are_a_wire_error():
    value = _deep_list(100_000)
    assert (outcome(from_wire, value), outcome(to_wire, value)) == ("WireError", "WireError")

