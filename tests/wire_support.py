"""What the wire tests share (tests/test_wire_values.py, test_wire_frames.py, test_socket_server.py,
test_socket_viewers.py): an example of every protocol value, comparison bit for bit, random wire values to fuzz
with, and a `SocketServer` with a recording `handle` plus the raw-socket helpers its clients use.

Not a test file. A test module imports what it uses (`from wire_support import observed, same`); a fixture it uses
is imported the same way, with the fixtures that one depends on (`harness` needs `short_dir` and `thread_errors`).
A new protocol class gets an example in `every_value()` before it crosses the wire (tests/test_wire_values.py
checks that every registered class has one).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import random
import shutil
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import pytest

from nktui.engine.gpu import GpuReading
from nktui.host.server import SOCKET_FILE, ExactReader, SocketServer, bindable
from nktui.protocol import commands, wire
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
from nktui.protocol.errors import NktuiError
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
    SurfaceRequest,
    WeightRef,
    WhatIf,
    WrongExample,
)
from nktui.protocol.run_info import DataSummary, RewindReach, RunInfo
from nktui.protocol.wire import VERSION, pack, read_frame, to_wire

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

# -- random wire values, to fuzz with ----------------------------------------------------------------------------------
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


# -- the socket: a server that records what it is sent, and raw clients ------------------------------------------------
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
    return ExactReader(sock)


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

