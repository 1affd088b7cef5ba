"""`nktui.protocol` loads neither torch nor Textual, and the results the engine builds hold no tensors: any thread
(or, later, another process) reads them without the engine."""

from __future__ import annotations

import copyreg
import dataclasses
import enum
import io
import json
import pickle
import pkgutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import nktui.protocol

ROOT = Path(__file__).resolve().parents[1]
SUBMODULES = sorted(f"nktui.protocol.{m.name}" for m in pkgutil.iter_modules(nktui.protocol.__path__))


def run_python(code: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, input=stdin, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().strip()


def test_the_protocol_and_every_submodule_import_without_torch_or_textual():
    assert {"nktui.protocol.config", "nktui.protocol.records", "nktui.protocol.results"} <= set(SUBMODULES)
    out = run_python(
        f"""
        import importlib, json, sys
        for name in ["nktui.protocol", *{SUBMODULES!r}]:
            importlib.import_module(name)
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "textual"}})))
        """
    )
    assert json.loads(out.splitlines()[-1]) == []


def plain(value, where: str = "result") -> None:
    """Fails on anything but plain Python values, the protocol's dataclasses and enums, all the way down."""
    if value is None or isinstance(value, (bool, int, float, str, enum.Enum)):
        return
    if dataclasses.is_dataclass(value):
        assert type(value).__module__.startswith("nktui.protocol."), f"{where}: {type(value)}"
        for f in dataclasses.fields(value):
            plain(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, tuple) and hasattr(value, "_fields"):  # StepRecord
        assert type(value).__module__.startswith("nktui.protocol."), f"{where}: {type(value)}"
        for name in value._fields:
            plain(getattr(value, name), f"{where}.{name}")
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            plain(item, f"{where}[{i}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            plain(key, f"{where} key")
            plain(item, f"{where}[{key!r}]")
    else:
        raise AssertionError(f"{where} is a {type(value).__module__}.{type(value).__name__}, not a plain value")


def dumps(value) -> bytes:
    """Pickled, with a record's read-only mappings (`frozen_mapping`: a mappingproxy, which pickle refuses) as
    dicts: anything else that needs torch to unpickle still would."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer)
    pickler.dispatch_table = {**copyreg.dispatch_table, MappingProxyType: lambda m: (dict, (dict(m),))}
    pickler.dump(value)
    return buffer.getvalue()


def test_the_debuggers_results_hold_plain_values_and_unpickle_without_torch():
    from nktui.protocol import SurfaceRequest
    from nktui.training import RunConfig, Trainer
    from nktui.engine.evaluation import evaluate_in_detail
    from nktui.engine.debugger.layer_snapshot import layer_snapshot
    from nktui.engine.debugger.landscape import compute_surface
    from nktui.engine.debugger.whatif import lr_whatif

    trainer = Trainer(RunConfig(dataset="digits", model="mlp", hidden=(8,), batch_size=16, device="cpu", seed=0))
    for _ in range(3):
        trainer.step()
    results = {
        "trace": trainer.trace_step(),
        "whatif": lr_whatif(trainer),
        "snapshot": layer_snapshot(trainer, next(name for name, _ in trainer.model.named_parameters())),
        "evaluation": evaluate_in_detail(trainer, wrong=2),
        "surface": compute_surface(trainer, SurfaceRequest(resolution=3, samples=32, budget=None)),
    }
    for name, result in results.items():
        assert type(result).__module__ == "nktui.protocol.results", name
        plain(result, name)
    out = run_python(
        """
        import json, pickle, sys
        results = pickle.load(sys.stdin.buffer)
        print(json.dumps([sorted(results), sorted({m.split(".")[0] for m in sys.modules} & {"torch", "textual"})]))
        """,
        stdin=dumps(results),
    )
    names, heavy = json.loads(out.splitlines()[-1])
    assert names == sorted(results) and heavy == []
