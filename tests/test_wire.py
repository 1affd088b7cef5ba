"""The wire between a run process and its clients (`nktui.protocol.wire`) and the socket that carries it
(`nktui.host.server`): every protocol value crosses bit for bit, anything else is a `WireError`, and a client
that sends garbage, truncated or oversized frames, or never reads, costs only its own connection.

No torch, no trainer: the servers here answer with a recording `handle` (or a `RunHost` over a stub driver), in a
short folder under /tmp.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import resource
import shutil
import socket
import stat
import struct
import tempfile
import threading
import time
import types
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from nktui.engine.gpu import GpuReading
from nktui.host import remote, server as server_module
from nktui.host.remote import RemoteRunClient, handshake, probe
from nktui.host.server import QUEUE_BYTES, SOCKET_FILE, SocketServer, bindable
from nktui.protocol import commands, records, results, run_info, wire
from nktui.protocol.commands import (
    Cancel,
    ComputeSurface,
    EndRun,
    Evaluate,
    Finish,
    JobProgress,
    LrWhatIf,
    Pause,
    Resume,
    RewindTo,
    SaveCheckpoint,
    SaveNow,
    SetHistogramBins,
    SetLr,
    SnapshotLayer,
    Step,
    Stop,
    TraceStep,
    UpdateLive,
)
from nktui.protocol.config import RunConfig
from nktui.protocol.errors import CheckpointError, ConfigError, NktuiError
from nktui.protocol.records import (
    ActivationStats,
    EvalResult,
    Histogram,
    LayerStats,
    Resumed,
    Rewound,
    StepRecord,
    WatchHit,
)
from nktui.protocol.results import (
    BackwardLayer,
    ClassMetrics,
    Evaluation,
    Finished,
    ForwardLayer,
    LayerSnapshot,
    LineSlice,
    ParamUpdate,
    PathPoint,
    StepTrace,
    Surface,
    SurfaceCancelled,
    SurfaceRequest,
    WeightRef,
    WhatIf,
    WrongExample,
)
from nktui.protocol.run_info import DataSummary, RewindReach, RunInfo
from nktui.protocol.state import RunState
from nktui.protocol.wire import (
    MAX_FRAME,
    VERSION,
    RemoteError,
    WireError,
    error_from_wire,
    error_to_wire,
    from_wire,
    pack,
    read_frame,
    records_from_wire,
    records_to_wire,
    to_wire,
    unpack,
)

NAN, INF = float("nan"), float("inf")
EXTREMES = (NAN, INF, -INF, 1e38, 1e-45, 5e-324, -0.0, 1.7976931348623157e308, -1.7976931348623157e308, 0.1)


# -- helpers -----------------------------------------------------------------------------------------------------------
def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def same(a, b) -> bool:
    """Equal, type for type, with floats compared bit for bit (-0.0 is not 0.0) except that any nan is a nan
    (JSON carries no nan payload)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or bits(a) == bits(b)
    if isinstance(a, (tuple, list)):  # (StepRecord too: a NamedTuple)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if dataclasses.is_dataclass(a) and not isinstance(a, RunConfig):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return a == b


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


def frame_of(header: bytes, blob: bytes = b"") -> bytes:
    """A frame around raw header bytes (valid prefix and header length, whatever the header holds)."""
    return struct.pack(">II", 4 + len(header) + len(blob), len(header)) + header + blob


def hist(lo=-INF, hi=INF) -> Histogram:
    return Histogram(lo, hi, (0, 3, 2**40, 1))


def layer(name="fc.weight", **floats) -> LayerStats:
    values = dict(grad_norm=INF, grad_mean=-INF, grad_std=1e38, grad_absmax=1.7976931348623157e308,
                  weight_norm=1e-45, update_norm=-0.0)
    values.update(floats)
    return LayerStats(name, (10, 64), nonfinite=3, histogram=hist(), **values)


def observed(step=3) -> StepRecord:
    layers = MappingProxyType({"fc.weight": layer(), "fc.bias": layer("fc.bias", grad_norm=NAN)})
    acts = (ActivationStats("fc", "Linear", (32, 10), 5e-324, 1e38, None),
            ActivationStats("relu", "ReLU", (32, 10), -0.0, 0.5, 0.25))
    return StepRecord(step, 1, NAN, -0.0, 5e-324, 1.7976931348623157e308, layers, acts)


def eval_result() -> EvalResult:
    return EvalResult(7, 2, NAN, 1e-45, ((5, 1), (0, 2**62)), ("cat", "dog"), "train")


def info() -> RunInfo:
    return RunInfo(
        layers=("fc.weight", "fc.bias"), shapes=((10, 64), (10,)), parameters=("fc.weight", "fc.bias", "bn.mean"),
        parameter_shapes=((10, 64), (10,), ()), step_limit=2**40, device="cuda:0", device_type="cuda",
        device_description="cuda:0 (NVIDIA H100 80GB HBM3) \u00e9\U0001f600",
        data=DataSummary("digits", (1, 8, 8), tuple(str(i) for i in range(10)), 1437, 360, 45),
        rewinds=RewindReach(oldest_step=None, states=3, memory_bytes=2**50),
    )


def every_command() -> list:
    request = SurfaceRequest("weights", "fc.weight", WeightRef("fc.weight", (3, 17)), WeightRef("fc.bias", (0,)),
                             31, 1e-45, 256, 2**63 - 1, False, None)
    return [
        UpdateLive.of({"log_every": 5, "watch_loss_jump": INF}, watch=False, steps=None, hidden=(1, 2)),
        Evaluate(), Evaluate(split="train", detailed=True), TraceStep(sample_index=9), LrWhatIf(),
        LrWhatIf(lrs=(5e-324, 1e-3, 1.7976931348623157e308)), RewindTo(step=41), ComputeSurface(request),
        ComputeSurface(SurfaceRequest()), SnapshotLayer("conv1.weight", 1, 2, 3, 4), SaveCheckpoint(), Finish(),
        SetHistogramBins(64), Pause(), Pause(measured=True), Resume(), Step(), SetLr(1e-45), SetLr("1e-3"), Stop(),
        Cancel(commands.new_job()), SaveNow(), EndRun(), EndRun("quit \u00e9"),
        commands.Note("a line\nand \ud800 more"), JobProgress(5, 3, 9, "grid"),
    ]


def every_result() -> list:
    image = (((0.0, -0.0), (1e-45, 5e-324)),)
    trace = StepTrace(
        step=4, lr=1e-3, optimizer="sgd", batch_size=32, sample_index=2, sample_image=image, classes=("a", "b"),
        label=1, logits=(NAN, -INF), probabilities=(0.25, 0.75), sample_loss=INF, batch_loss=1e38,
        batch_accuracy=-0.0, forward=(ForwardLayer("fc", "Linear", (32, 2), 0.5, 1e-45, None),),
        backward=(BackwardLayer("fc", "Linear", 5e-324),),
        updates=(ParamUpdate("fc.weight", (2, 4), 1.0, 2.0, 3.0, NAN, 4.0, 5.0, ((7, 0.1, -0.0, INF),)),),
        update_rule="W -= lr * g", record=observed(),
    )
    surface = Surface(
        step=9, mode="weights", x_label="fc.weight[0,0]", y_label="fc.weight[0,1]", xs=(-1.0, 0.0, 1.0),
        ys=(-1.0, 0.0, 1.0), losses=((NAN, INF, 1.0), (-0.0, 1e-45, 5e-324), (1e38, 2.0, 3.0)), centre_loss=1e-45,
        path=(PathPoint(1, -0.5, 0.25), PathPoint(2, 0.0, 0.0)), path_share=None, samples=256, seconds=0.125,
        w1=WeightRef("fc.weight", (0, 0)), w2=WeightRef("fc.weight", (0, 1)),
        line=LineSlice((0.0, 0.5, 1.0), (3.0, NAN, 1.0), 8, 9, "last update"), notes=("coarser: budget",),
    )
    snapshot = LayerSnapshot(
        name="conv.weight", shape=(4, 1, 3, 3), step=3, weight=((1.0, -0.0), (INF, -INF)), grad=None,
        update=((5e-324,),), pooled=True, row_images=(((1.0,),),), kernels=(((0.5, 0.25),),), kernel_filters=4,
    )
    evaluation = Evaluation(
        eval_result(), (ClassMetrics("cat", 6, 5, 5, None, 1e-45, 0.5),),
        (WrongExample(3, 0, 1, 0.99, 5e-324, image),), pixel_range=(-0.0, 1.7976931348623157e308),
    )
    finished = Finished(10, 1, eval_result(), eval_result(), save_error="weights hold nan", unsaved=True,
                        trace="Traceback")
    whatif = WhatIf(5, 1e-3, (1e-5, 1e-3, 1e-1), (INF, 0.5, NAN), -0.0)
    return [trace, whatif, surface, snapshot, evaluation, finished, SurfaceRequest(), WeightRef("w", ())]


def every_record() -> list:
    watch = WatchHit("loss_jump", 12, None, INF, 1e-45, "the loss jumped", record=observed(12), stopped_before=True)
    return [StepRecord(1, 0, 2.5, 0.5, 0.1), observed(), eval_result(), Rewound(3, 10), Resumed(2**53 + 1), watch,
            WatchHit("grad_jump", 1, "fc.weight", NAN, -0.0, "m")]


def every_value() -> list:
    return (every_record() + every_command() + every_result()
            + [info(), DataSummary("x", (), (), 0, 0, 0), RewindReach(), GpuReading(0, "H100", 2**40, 2**41, None)])


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
    """A new protocol class gets a round-trip example (above) before it crosses the wire."""
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


# -- 2. record lists: plain steps as columns ---------------------------------------------------------------------------
def test_mixed_records_come_back_equal_and_in_order():
    items = [StepRecord(i, 0, 2.0 - i / 8, i / 10, 0.1) for i in range(1, 6)]
    items += [observed(6), StepRecord(7, 0, 1.0, 0.5, 0.1, samples_per_sec=1000.0), every_record()[5],
              Rewound(4, 12), eval_result(), Resumed(4)]
    items += [StepRecord(i, 1, x, -x, abs(x) or 1e-3) for i, x in enumerate(EXTREMES, start=5)]
    segments, blob = records_to_wire(items)
    assert [s for s in segments if "$steps" in s] == [{"$steps": 5, "at": 0}, {"$steps": len(EXTREMES), "at": 200}]
    assert len(blob) == 40 * (5 + len(EXTREMES))
    frame = pack({"kind": "news", "records": segments, "status": {}}, blob)
    header, blob_back = unpack(frame[4:])
    assert blob_back == blob
    back = records_from_wire(header["records"], blob_back)
    assert len(back) == len(items)
    for got, sent in zip(back, items):
        assert same(got, sent), (got, sent)
    assert [type(r).__name__ for r in back] == [type(r).__name__ for r in items]


def test_step_columns_carry_floats_exactly_nan_payloads_included():
    payload_nan = struct.unpack("<d", struct.pack("<Q", 0xFFF8_0000_DEAD_BEEF))[0]  # a negative nan with a payload
    floats = EXTREMES + (payload_nan, 2.0**-1074, -(2.0**-1022))
    items = [StepRecord(2**62 + i, -(2**62) - i, x, floats[-i - 1], floats[(i + 3) % len(floats)])
             for i, x in enumerate(floats)]
    segments, blob = records_to_wire(items)
    assert segments == [{"$steps": len(items), "at": 0}]
    back = records_from_wire(json.loads(json.dumps(segments)), blob)
    for got, sent in zip(back, items, strict=True):
        assert type(got) is StepRecord and got.step == sent.step and got.epoch == sent.epoch
        for name in ("loss", "accuracy", "lr"):
            assert bits(getattr(got, name)) == bits(getattr(sent, name))  # bit for bit, the nan's payload too
        assert got.samples_per_sec is None and got.layers == {} and got.activations == ()


def test_an_empty_record_list():
    segments, blob = records_to_wire([])
    assert segments == [] and blob == b""
    assert records_from_wire([], b"") == []
    header, blob = unpack(pack({"kind": "news", "records": segments}, blob)[4:])
    assert records_from_wire(header["records"], blob) == []


def test_only_plain_steps_go_in_columns():
    record = StepRecord(1, 0, 1.0, 0.5, 0.1, activations=(ActivationStats("a", "ReLU", (1,), 0.0, 0.0),))
    segments, blob = records_to_wire([record])
    assert blob == b"" and segments[0]["$"] == "StepRecord"
    assert records_from_wire(segments, blob) == [record]


# -- 3. what is refused ------------------------------------------------------------------------------------------------
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


@pytest.mark.parametrize("segment", [
    {"$steps": 2, "at": 0}, {"$steps": 1, "at": 1}, {"$steps": 1, "at": 40}, {"$steps": -1, "at": 0},
    {"$steps": 1, "at": -40}, {"$steps": 1.0, "at": 0}, {"$steps": "1", "at": 0}, {"$steps": 1, "at": None},
    {"$steps": None, "at": 0}, {"$steps": 1}, {"$steps": 10**30, "at": 0}, {"$steps": 1, "at": 2**70},
    {"$steps": [1], "at": 0},
], ids=str)
def test_a_step_segment_outside_the_blob_is_refused(segment):
    _, blob = records_to_wire([StepRecord(1, 0, 1.0, 1.0, 1.0)])
    assert len(blob) == 40
    with pytest.raises(WireError):
        records_from_wire([segment], blob)


def test_record_lists_that_are_not_lists_are_refused():
    for segments in ({"$steps": 0, "at": 0}, None, "x", 5):
        with pytest.raises(WireError):
            records_from_wire(segments, b"")
    with pytest.raises(WireError):
        records_from_wire([{"$": "Nope"}], b"")


def _body(header: bytes, blob: bytes = b"") -> bytes:
    return frame_of(header, blob)[4:]


@pytest.mark.parametrize("body", [
    b"", b"\x00", b"\x00\x00\x00", struct.pack(">I", 5) + b"{}", struct.pack(">I", 2**32 - 1),
    _body(b"not json"), _body(b"\xff\xfe\x00garbage"), _body(b"{\"kind\": \"call\""), _body(b"[1, 2]"),
    _body(b"\"kind\""), _body(b"null"), _body(b"{}"), _body(b"{\"kind\": 5}"), _body(b"{\"kind\": null}"),
    _body(b"{\"id\": 1}"), _body(b""), _body(b"{\"kind\": \"x\", \"n\": " + b"9" * 5000 + b"}"),
    _body(b"{\"kind\": \"x\", \"s\": \"\xc3\"}"),
], ids=lambda b: repr(b[:24]))
def test_unpack_refuses_a_malformed_body(body):
    with pytest.raises(WireError):
        unpack(body)


def test_unpack_keeps_the_blob_and_a_bom_is_fine():
    header, blob = unpack(_body(b'{"kind":"news"}', b"\x00\x01"))
    assert header == {"kind": "news"} and blob == b"\x00\x01"
    header, blob = unpack(_body(b'\xef\xbb\xbf{"kind":"news"}'))
    assert header == {"kind": "news"} and blob == b""


def test_read_frame_refuses_an_oversized_prefix_without_reading_the_body():
    for size in (MAX_FRAME + 1, 2**32 - 1, 0, 3):
        asked: list[int] = []

        def read_exactly(n: int, _prefix=struct.pack(">I", size)) -> bytes:
            asked.append(n)
            if len(asked) > 1:
                raise AssertionError(f"read {n} more bytes after a prefix of {size}")
            return _prefix

        with pytest.raises(WireError):
            read_frame(read_exactly)
        assert asked == [4]


def test_read_frame_reads_exactly_one_frame():
    stream = io.BytesIO(pack({"kind": "a"}, b"xyz") + pack({"kind": "b"}))
    assert read_frame(stream.read) == ({"kind": "a"}, b"xyz")
    assert read_frame(stream.read) == ({"kind": "b"}, b"")


def test_pack_refuses_a_frame_over_the_limit():
    with pytest.raises(WireError):
        pack({"kind": "news"}, bytes(MAX_FRAME))


def test_deep_nesting_in_a_header_is_a_wire_error():
    for opening, closing in ((b"[", b"]"), (b'{"a":', b"}")):
        header = b'{"kind":"call","id":1,"command":' + opening * 100_000 + b"1" + closing * 100_000 + b"}"
        with pytest.raises(WireError):
            unpack(_body(header))
    deep_in_dict = {"$": "Note", "text": json.loads("[" * 600 + "]" * 600)}
    with pytest.raises(WireError):  # (deep under a tagged object: caught)
        from_wire(deep_in_dict)


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


# -- 4. the socket: a server that garbage cannot take down -------------------------------------------------------------
@pytest.fixture
def short_dir(tmp_path):
    """A folder whose socket path fits sun_path as it is (tmp_path, or one under /tmp where tmp_path is long)."""
    if len(str(tmp_path / SOCKET_FILE).encode()) <= 90:
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="nkw"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def thread_errors(monkeypatch):
    """Every exception that escapes a thread while the test runs (threading.excepthook)."""
    caught: list = []
    monkeypatch.setattr(threading, "excepthook", lambda args: caught.append(
        (args.thread.name if args.thread else None, args.exc_type.__name__, str(args.exc_value)[:200])))
    return caught


class Harness:
    """A SocketServer whose handle records each command and answers ("ok", its class's name)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / SOCKET_FILE
        self.commands: list = []
        self.lock = threading.Lock()
        before = set(threading.enumerate())
        self.server = SocketServer(self.path, welcome=self.welcome, handle=self.handle)
        self.server.start()
        self.accept_thread = next(t for t in threading.enumerate() if t not in before and t.name == "nktui-accept")

    def welcome(self) -> dict:
        return {"kind": "welcome", "version": VERSION, "pid": os.getpid(), "run_dir": str(self.folder),
                "config": to_wire(RunConfig()), "status": {"state": "running", "step_count": 3}}

    def handle(self, command, connection):
        with self.lock:
            self.commands.append(command)
        if isinstance(command, commands.Note) and command.text == "refuse":
            raise NktuiError("refused on purpose")
        return ("ok", type(command).__name__)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.server.lock:
                if not self.server.connections:
                    return True
            time.sleep(0.01)
        return False


@pytest.fixture
def harness(short_dir, thread_errors):
    h = Harness(short_dir)
    yield h
    h.server.close(pack({"kind": "ended", "line": "bye"}))


def connect(path: Path, timeout: float = 5.0) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    address, fd = bindable(path)
    try:
        sock.connect(address)
    finally:
        if fd is not None:
            os.close(fd)
    return sock


def reader(sock: socket.socket):
    def read_exactly(n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = sock.recv(min(left, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    return read_exactly


def hello(role: str = "probe", version=VERSION) -> bytes:
    return pack({"kind": "hello", "version": version, "nktui": "test", "role": role})


def call(ident, command) -> bytes:
    return pack({"kind": "call", "id": ident, "command": to_wire(command)})


def read_to_eof(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes (a timeout fails: the server did not close)."""
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except ConnectionResetError:  # (closed with our bytes unread: the same as an end)
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def frames_in(data: bytes) -> list[dict]:
    """The complete frames in `data` (a frame cut short at the end, as a close can leave one, is ignored)."""
    stream, out = io.BytesIO(data), []

    def read_exactly(n: int) -> bytes:
        chunk = stream.read(n)
        if len(chunk) < n:
            raise EOFError
        return chunk

    while True:
        try:
            out.append(read_frame(read_exactly)[0])
        except EOFError:
            return out


NAMES = sorted(wire._TYPES) + ["Nope", "", "__class__"]
FIELDS = {name: [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else list(cls._fields)
          for name, cls in wire._TYPES.items()}
CONFIG_FIELDS = [f.name for f in dataclasses.fields(RunConfig)]
SCALARS = [None, True, False, 0, -1, 2**64, 1.5, NAN, INF, -INF, -0.0, 5e-324, "", "x", "\u00e9\ud800", "9" * 50]


LAYER_TEMPLATE = to_wire(layer()).get("$L")  # (None where LayerStats goes as {"$": "LayerStats", ...})


def random_value(rng: random.Random, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice(SCALARS)
    if r < 0.45:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if r < 0.7:
        name = rng.choice(NAMES + [5, None])
        fields = FIELDS.get(name, []) + ["bogus"] * (rng.random() < 0.2)
        return {"$": name, **{f: random_value(rng, depth + 1) for f in fields if rng.random() < 0.8}}
    if r < 0.8:
        if rng.random() < 0.8:
            return {"$map": [[rng.choice(SCALARS[:6] + ["k"]), random_value(rng, depth + 1)]
                             for _ in range(rng.randrange(3))]}
        return {"$map": rng.choice([5, [[1]], [[1, 2, 3]], None, "ab"])}
    if r < 0.75 and LAYER_TEMPLATE is not None:  # (LayerStats' short form: its fields in order)
        return {"$L": [random_value(rng, depth + 1) if rng.random() < 0.2 else x for x in LAYER_TEMPLATE]
                + [0] * (rng.random() < 0.1)}
    if r < 0.87:
        return {"$enum": rng.choice(["RunState", "Other", 5]), "v": rng.choice(["paused", "nope", 3, None])}
    if r < 0.95:
        return {"$config": {rng.choice(CONFIG_FIELDS + ["nope"]): rng.choice(SCALARS)}}
    return {"k": random_value(rng, depth + 1)}


def random_frame(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.35:
        return pack({"kind": "call", "id": rng.choice([1, 2, -5, 2**70, "x", None, 1.5]),
                     "command": random_value(rng)})
    if r < 0.5:
        return call(rng.randrange(1000), rng.choice(COMMANDS))
    if r < 0.6:
        return pack({"kind": rng.choice(["hello", "news", "reply", "", "call"]), "v": random_value(rng)})
    if r < 0.75:
        body = rng.randbytes(rng.randrange(0, 300))
        return struct.pack(">I", len(body)) + body
    if r < 0.85:
        return frame_of(rng.choice([b"not json", b"[1]", b"{}", b"{\"kind\": 3}", rng.randbytes(20)]))
    return rng.randbytes(rng.randrange(1, 64))


COMMANDS = every_command()
CASES = ("random bytes", "random body", "hello then frames", "truncated", "oversized", "bad header", "no hello",
         "checked call")


def send(sock: socket.socket, data: bytes) -> None:
    """sendall, where the server may already have closed on what came before (that is its right)."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def fuzz_one(rng: random.Random, path: Path, case: str) -> None:
    sock = connect(path)
    try:
        if case == "random bytes":
            send(sock, rng.randbytes(rng.randrange(1, 2000)))
        elif case == "random body":
            size = rng.randrange(4, 5000)
            body = rng.randbytes(size if rng.random() < 0.5 else rng.randrange(size))
            send(sock, struct.pack(">I", size) + body)
        elif case == "hello then frames":
            send(sock, hello(rng.choice(["probe", "viewer", "other", None])))
            for _ in range(rng.randrange(1, 6)):
                send(sock, random_frame(rng))
        elif case == "truncated":
            whole = hello() + call(1, Evaluate()) if rng.random() < 0.5 else hello()
            send(sock, whole[:rng.randrange(1, len(whole))])
        elif case == "oversized":  # the server closes at once, without waiting for the body
            if rng.random() < 0.5:
                send(sock, hello())
            send(sock, struct.pack(">I", rng.randrange(MAX_FRAME + 1, 2**32)) + rng.randbytes(rng.randrange(64)))
            frames = frames_in(read_to_eof(sock, timeout=5.0))
            assert {f["kind"] for f in frames} <= {"welcome"}
            return
        elif case == "bad header":  # a whole frame that is not one: closed at once
            send(sock, frame_of(rng.choice([b"not json", b"[1]", b"{}", b"{\"kind\": 3}", b"\xff" * 9])))
            assert frames_in(read_to_eof(sock, timeout=5.0)) == []
            return
        elif case == "no hello":  # a first frame that is not a hello: refused, in words
            send(sock, call(1, Evaluate()))
            frames = frames_in(read_to_eof(sock, timeout=5.0))
            assert [f["kind"] for f in frames] == ["refused"] and "hello" in frames[0]["why"]
            return
        elif case == "checked call":  # garbage after a call: the call is answered, then the connection closed
            ident = rng.randrange(1, 10**6)
            send(sock, hello() + call(ident, SetLr(1e-3)) + frame_of(b"garbage"))
            frames = frames_in(read_to_eof(sock, timeout=5.0))
            # (what was queued when the garbage came may be dropped with the connection; what comes is right)
            assert [f["kind"] for f in frames] in ([], ["welcome"], ["welcome", "reply"])
            for reply in frames[1:]:
                assert reply["id"] == ident and from_wire(reply["value"]) == ("ok", "SetLr")
            return
        # the rest: we stop writing; whatever the server sent is well-formed, and it closes
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        frames = frames_in(read_to_eof(sock, timeout=5.0))
        assert {f["kind"] for f in frames} <= {"welcome", "reply", "refused"}
    finally:
        sock.close()


def well_behaved_client_works(h: Harness) -> None:
    sock, welcome, read_exactly = handshake(h.path, "probe")
    try:
        assert welcome["kind"] == "welcome" and welcome["status"]["step_count"] == 3
        sock.sendall(call(41, Evaluate(detailed=True)) + call(42, commands.Note("refuse")))
        first, _ = read_frame(read_exactly)
        second, _ = read_frame(read_exactly)
        assert first == {"kind": "reply", "id": 41, "value": ["ok", "Evaluate"]}
        assert second["id"] == 42 and isinstance(error_from_wire(second["error"]), NktuiError)
        assert "refused on purpose" in second["error"]["message"]
    finally:
        sock.close()
    assert probe(h.path)["pid"] == os.getpid()
    client = RemoteRunClient.connect(h.path)
    try:
        assert client.config == RunConfig() and client.step_count == 3
        assert client.submit(RewindTo(5)).result(5) == ("ok", "RewindTo")
    finally:
        client.detach()


def test_garbage_from_200_clients_harms_no_one_else(harness, thread_errors):
    rng = random.Random(20240607)
    done = {case: 0 for case in CASES}
    for i in range(200):
        case = CASES[i % len(CASES)] if i < len(CASES) else rng.choice(CASES)
        fuzz_one(rng, harness.path, case)
        done[case] += 1
        if i % 50 == 49:  # a good client meanwhile is served as ever
            well_behaved_client_works(harness)
    assert all(done.values()), done
    assert harness.wait_idle(), f"{len(harness.server.connections)} connections still open after their clients went"
    assert harness.accept_thread.is_alive()
    well_behaved_client_works(harness)
    assert harness.accept_thread.is_alive()
    assert thread_errors == []
    assert not any(type(c) is dict for c in harness.commands)  # (the handle saw decoded values only)
    assert any(isinstance(c, SetLr) for c in harness.commands)


def test_concurrent_garbage_and_a_good_client(harness, thread_errors):
    """Garbage from four threads at once while a good client calls in a loop."""
    errors: list = []

    def garbage(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(15):
                fuzz_one(rng, harness.path, rng.choice(CASES))
        except Exception as exc:  # (reported below)
            errors.append(repr(exc))

    threads = [threading.Thread(target=garbage, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    sock, _, read_exactly = handshake(harness.path, "probe")
    try:
        for ident in range(1, 31):
            sock.sendall(call(ident, RewindTo(ident)))
            assert read_frame(read_exactly)[0] == {"kind": "reply", "id": ident, "value": ["ok", "RewindTo"]}
    finally:
        sock.close()
    for t in threads:
        t.join(30)
    assert errors == [] and thread_errors == []
    assert harness.wait_idle() and harness.accept_thread.is_alive()


def test_a_client_of_another_version_is_refused_naming_both(harness, monkeypatch):
    for version in (VERSION + 998, "1", None):
        sock = connect(harness.path)
        try:
            sock.sendall(hello(version=version))
            frames = frames_in(read_to_eof(sock))
        finally:
            sock.close()
        assert [f["kind"] for f in frames] == ["refused"]
        why = frames[0]["why"]
        assert f"wire version {VERSION}" in why and f"wire version {version!r}" in why, why
    monkeypatch.setattr(remote, "VERSION", VERSION + 1)  # (what a client of the next version sends)
    with pytest.raises(NktuiError, match=f"refused: .*wire version {VERSION}.*wire version {VERSION + 1}"):
        handshake(harness.path, "probe")


def test_the_socket_is_0600_in_a_0700_folder(short_dir):
    folder = short_dir / "run"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    (folder / SOCKET_FILE).write_text("left by a run that died")
    server = SocketServer(folder / SOCKET_FILE, welcome=lambda: {"kind": "welcome"}, handle=lambda c, conn: None)
    server.start()
    try:
        mode = os.stat(folder / SOCKET_FILE).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert probe(folder / SOCKET_FILE) == {"kind": "welcome"}
    finally:
        server.close()
    assert not (folder / SOCKET_FILE).exists()


def test_a_socket_in_a_folder_with_a_long_path(short_dir, thread_errors):
    folder = short_dir / ("a" * 60) / ("b" * 60)
    folder.mkdir(parents=True)
    assert len(str(folder).encode()) > 120
    h = Harness(folder)
    try:
        assert (folder / SOCKET_FILE).exists() and stat.S_IMODE(os.stat(folder / SOCKET_FILE).st_mode) == 0o600
        assert probe(h.path)["run_dir"] == str(folder)
        well_behaved_client_works(h)
    finally:
        h.server.close()
    assert not (folder / SOCKET_FILE).exists()
    assert thread_errors == []


def test_the_accept_loop_outlives_running_out_of_files(harness):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2)]
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # accept() gets EMFILE
        for client in clients:
            client.connect(str(harness.path))
        time.sleep(0.3)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert harness.accept_thread.is_alive()
        clients[0].settimeout(5)
        clients[0].sendall(hello())
        assert read_frame(reader(clients[0]))[0]["kind"] == "welcome"
    finally:
        for client in clients:
            client.close()


def test_close_ends_the_accept_thread(short_dir):
    h = Harness(short_dir)
    probe(h.path)  # (one client served: the loop is back in accept(), blocked, when close comes)
    time.sleep(0.1)
    h.server.close()
    h.accept_thread.join(1.0)
    assert not h.accept_thread.is_alive()


class _Viewer:
    """A viewer that reads every frame as it comes, on a thread of its own, and keeps each news frame's seq."""

    def __init__(self, path: Path) -> None:
        self.sock = connect(path)
        self.sock.sendall(hello("viewer"))
        self.read_exactly = reader(self.sock)
        self.welcome, _ = read_frame(self.read_exactly)
        self.sock.settimeout(None)
        self.seqs: list[int] = []
        self.sizes: list[int] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while True:
                header, blob = read_frame(self.read_exactly)
                if header["kind"] == "news":
                    self.sizes.append(len(blob))
                    self.seqs.append(header["seq"])
        except (OSError, EOFError, WireError):
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(5)


def _registered_viewer(h: Harness, known: set, timeout: float = 5.0):
    """The server's Connection of the viewer that attached last, once its hello is taken."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with h.server.lock:
            new = [c for c in h.server.connections if c not in known and c.viewer and c.needs_snapshot]
        if new:
            return new[0]
        time.sleep(0.005)
    raise AssertionError("the viewer never registered")


def test_a_viewer_that_never_reads_is_resynced_and_slows_no_one(harness, thread_errors):
    slow = connect(harness.path)
    slow.sendall(hello("viewer"))  # and never reads a byte
    slow_conn = _registered_viewer(harness, set())
    fast = _Viewer(harness.path)
    fast_conn = _registered_viewer(harness, {slow_conn})
    slow_conn.needs_snapshot = fast_conn.needs_snapshot = False  # (what the host's tick does after a snapshot)
    blob = bytes(range(256)) * 2048  # 512 KiB
    count, durations, most_queued, size = 48, [], 0, 0
    try:
        for seq in range(count):
            frame = pack({"kind": "news", "seq": seq}, blob)
            size = len(frame)
            started = time.perf_counter()
            harness.server.broadcast(frame)
            durations.append(time.perf_counter() - started)
            most_queued = max(most_queued, slow_conn.queued_bytes)
            deadline = time.monotonic() + 10
            while len(fast.seqs) <= seq and time.monotonic() < deadline:  # (the next tick, once this one is read)
                time.sleep(0.001)
        assert fast.seqs == list(range(count)), "the fast viewer missed frames"
        assert set(fast.sizes) == {len(blob)}
        assert fast_conn.resyncs == 0 and not fast_conn.needs_snapshot
        assert slow_conn.needs_snapshot and slow_conn.resyncs >= 1  # it gets a snapshot at the next tick
        assert max(durations) < 0.1, max(durations)
        assert most_queued <= QUEUE_BYTES + size, (most_queued, QUEUE_BYTES)
        assert slow_conn.open and slow_conn in harness.server.connections  # resynced, not dropped
        # still answered: a reply is queued (not dropped) behind whatever the writer is stuck on
        slow.sendall(call(9, Evaluate()))
        def reply_queued() -> bool:
            return any(b'"kind":"reply","id":9' in item[0] for item in list(slow_conn.queue))

        deadline = time.monotonic() + 5
        while not reply_queued() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert reply_queued()
    finally:
        fast.close()
        slow.close()
    assert thread_errors == []


def test_news_waits_for_a_viewer_that_needs_a_snapshot(harness):
    viewer = _Viewer(harness.path)
    conn = _registered_viewer(harness, set())
    harness.server.broadcast(pack({"kind": "news", "seq": 0}))  # skipped: it needs a snapshot first
    conn.needs_snapshot = False
    harness.server.broadcast(pack({"kind": "news", "seq": 1}))
    deadline = time.monotonic() + 5
    while not viewer.seqs and time.monotonic() < deadline:
        time.sleep(0.005)
    viewer.close()
    assert viewer.seqs == [1]


def test_a_viewer_that_never_reads_stays_bounded_tick_after_tick(short_dir, monkeypatch, thread_errors):
    from nktui.host.run_host import RunHost
    from fake_run import run_info as fake_info, step_record

    monkeypatch.setattr(server_module, "QUEUE_BYTES", 256 << 10)  # (the same in small: fast to fill)
    layers = tuple(f"layer{i}.weight" for i in range(6))
    shape_info = fake_info(layers=layers, shapes=((32, 32),) * len(layers))
    driver = types.SimpleNamespace(controller=None, keeper=None, run_dir=short_dir, config=RunConfig())
    host = RunHost(driver)
    host.mirror.add([step_record(i, 1.0, grad_norm=1.0, info=shape_info) for i in range(1, 61)])
    host.start()
    slow = connect(host.server.path)
    try:
        slow.sendall(hello("viewer"))  # and never reads
        deadline = time.monotonic() + 5
        while not host.server.viewers and time.monotonic() < deadline:
            time.sleep(0.005)
        conn = host.server.viewers[0]
        most_queued, step, news_size = 0, 61, 0
        for _ in range(30):  # (plain steps: the mirror's observed steps, most of a snapshot, stay as they are)
            news = [StepRecord(step + i, 0, 1.0, 0.5, 0.1) for i in range(1000)]
            step += len(news)
            segments, blob = records_to_wire(news)
            news_size = max(news_size, len(pack({"kind": "news", "records": segments}, blob)))
            host.tick(news)
            most_queued = max(most_queued, conn.queued_bytes)
        biggest = max(len(host.snapshot_frame()), news_size)
        assert conn.resyncs >= 1
        assert most_queued <= server_module.QUEUE_BYTES + 2 * biggest, (most_queued, biggest)
    finally:
        slow.close()
        host.server.close()
    assert thread_errors == []


def test_a_client_survives_a_deeply_nested_reply(thread_errors):
    ours, theirs = socket.socketpair()
    welcome = {"kind": "welcome", "run_dir": "/tmp/nowhere", "config": to_wire(RunConfig()), "status": {}}
    client = RemoteRunClient(ours, welcome, remote._reader(ours))
    try:
        future = client.submit(Evaluate())
        theirs.settimeout(5)
        message, _ = read_frame(reader(theirs))
        header = b'{"kind":"reply","id":%d,"value":%s}' % (message["id"], b"[" * 600 + b"]" * 600)
        theirs.sendall(frame_of(header))
        with pytest.raises(WireError):
            future.result(1)
        assert client.connected and thread_errors == []
    finally:
        client.detach()
        theirs.close()
