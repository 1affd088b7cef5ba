"""The wire: how protocol values cross the socket between a run process and its clients (`nktui.host`).

No pickle, so a frame can never run code: a frame is JSON (numbers as Python writes them, so every float comes
back bit for bit, nan and inf included) and, beside it, raw bytes for the columns of plain step records.

    frame   = u32 length of the rest | u32 length of the header | header (UTF-8 JSON object) | blob (deflated
              when the header says "z": 1)
    header  = {"kind": "...", ...}             # hello, welcome, refused, snapshot, news, call, reply, ended, probe

A protocol value is a tagged object: `{"$": "LayerStats", "name": ..., ...}` for a registered dataclass (or the
NamedTuple `StepRecord`), `{"$config": {...}}` for a `RunConfig` (built back through `from_dict` and `validate`),
`{"$enum": "RunState", "v": "paused"}`, `{"$map": [[key, value], ...]}` for a mapping, `{"$L": [...]}` for a
`LayerStats` (its fields in order: an observed step carries one per parameter, so it is kept short); JSON arrays come back as
tuples (every protocol value holds tuples). Only the registered classes can be named, and only with their own
fields: anything else, like a frame over `MAX_FRAME`, a truncated one or one that is not JSON, is a `WireError`,
and the reader closes that connection (the run is not disturbed).

A run of plain step records (no layers, no activations: most of them) travels as six little-endian columns in
the blob (step, epoch as int64; loss, accuracy, lr, samples/s as float64, nan standing for a missing rate): 48
bytes a step instead of ~230 in JSON. Imports
neither torch, numpy nor Textual.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import struct
import sys
import zlib
from array import array
from collections.abc import Mapping
from pathlib import PurePath
from types import MappingProxyType
from typing import Any

from . import commands, records, results, run_info
from .config import RunConfig
from .errors import ConfigError, NktuiError
from .state import RunState

VERSION = 1  # bump on any change a client of the previous version would misread
MAX_FRAME = 64 << 20  # bytes; a bigger length prefix closes the connection
COMPRESS_FROM = 512  # a blob this big or bigger is deflated
_HEAD = struct.Struct(">II")
_COLUMNS = (("step", "q"), ("epoch", "q"), ("loss", "d"), ("accuracy", "d"), ("lr", "d"), ("samples_per_sec", "d"))
_STEP_BYTES = 8 * len(_COLUMNS)


class WireError(Exception):
    """A frame that is malformed, truncated, oversized or names what it may not: its connection is closed."""


class RemoteError(NktuiError):
    """A command failed in the run process with an error that has no class of its own on this side."""


_TYPES: dict[str, type] = {}
_ERRORS: dict[str, type[BaseException]] = {"NktuiError": NktuiError, "ConfigError": ConfigError}


def register(*classes: type) -> None:
    """Let these dataclasses (or NamedTuples) cross the wire, by class name."""
    for cls in classes:
        _TYPES[cls.__name__] = cls


def _register_protocol() -> None:
    for module in (records, results, commands, run_info):
        for value in vars(module).values():
            if isinstance(value, type) and value.__module__ == module.__name__ and dataclasses.is_dataclass(value):
                register(value)
    register(records.StepRecord)
    from . import errors

    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, NktuiError):
            _ERRORS[value.__name__] = value
    _ERRORS["SurfaceCancelled"] = results.SurfaceCancelled


_register_protocol()


# -- values ----------------------------------------------------------------------------------------------------------
def to_wire(value: Any) -> Any:
    """A protocol value as JSON-able data (see the module's docstring); WireError for what has no encoding."""
    try:
        return _to_wire(value)
    except RecursionError:
        raise WireError("a value nested too deep") from None


def from_wire(data: Any) -> Any:
    """The protocol value `to_wire` made; WireError for anything else."""
    try:
        return _from_wire(data)
    except RecursionError:
        raise WireError("a value nested too deep") from None


def _to_wire(value: Any) -> Any:
    if isinstance(value, enum.Enum):  # (first: RunState is a str too)
        return {"$enum": type(value).__name__, "v": value.value}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if type(value) is records.LayerStats:  # positional: an observed step carries one a parameter (the hot path)
        h = value.histogram
        return {"$L": [value.name, list(value.shape), value.grad_norm, value.grad_mean, value.grad_std,
                       value.grad_absmax, value.weight_norm, value.update_norm, value.nonfinite,
                       None if h is None else [h.lo, h.hi, list(h.counts)]]}
    if isinstance(value, records.StepRecord):
        return {"$": "StepRecord", **{name: _to_wire(v) for name, v in zip(value._fields, value)}}
    if isinstance(value, RunConfig):
        return {"$config": value.to_dict()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _TYPES.get(name) is not type(value):
            raise WireError(f"{name} is not a value that crosses the wire")
        out = {"$": name}
        for field in dataclasses.fields(value):
            out[field.name] = _to_wire(getattr(value, field.name))
        return out
    if isinstance(value, (tuple, list)):
        return [_to_wire(v) for v in value]
    if isinstance(value, Mapping):
        return {"$map": [[_to_wire(k), _to_wire(v)] for k, v in value.items()]}
    if isinstance(value, PurePath):
        return str(value)
    raise WireError(f"a {type(value).__name__} does not cross the wire")


def _from_wire(data: Any) -> Any:
    if data is None or isinstance(data, (bool, int, float, str)):
        return data
    if isinstance(data, list):
        return tuple(_from_wire(v) for v in data)
    if not isinstance(data, dict):
        raise WireError(f"unexpected {type(data).__name__}")
    try:
        if "$" in data:
            name = data["$"]
            cls = _TYPES.get(name) if isinstance(name, str) else None
            if cls is None:
                raise WireError(f"unknown type {name!r}")
            values = {key: _from_wire(v) for key, v in data.items() if key != "$"}
            return cls(**values)
        if "$L" in data:
            return _layer_stats(*data["$L"])
        if "$map" in data:
            pairs = data["$map"]
            if not (isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 for p in pairs)):
                raise WireError("a map that is not a list of pairs")
            return MappingProxyType({_from_wire(k): _from_wire(v) for k, v in pairs})
        if "$enum" in data:
            if data["$enum"] != "RunState":
                raise WireError(f"unknown enum {data['$enum']!r}")
            return RunState(data["v"])
        if "$config" in data:
            return RunConfig.from_dict(dict(data["$config"]), source="the run").validate()
    except WireError:
        raise
    except (TypeError, ValueError, KeyError, NktuiError, ArithmeticError) as exc:
        raise WireError(f"a malformed value: {exc}") from None
    raise WireError("an object without a type")


def _layer_stats(name, shape, grad_norm, grad_mean, grad_std, grad_absmax, weight_norm, update_norm, nonfinite,
                 histogram) -> records.LayerStats:
    numbers = (grad_norm, grad_mean, grad_std, grad_absmax, weight_norm, update_norm)
    if not (isinstance(name, str) and isinstance(shape, list) and all(type(n) is int for n in shape)
            and all(type(x) in (int, float) for x in numbers) and type(nonfinite) is int):
        raise WireError("malformed layer statistics")
    if histogram is not None:
        lo, hi, counts = histogram
        if not (type(lo) in (int, float) and type(hi) in (int, float) and isinstance(counts, list)
                and all(type(c) is int for c in counts)):
            raise WireError("a malformed histogram")
        histogram = records.Histogram(float(lo), float(hi), tuple(counts))
    return records.LayerStats(name, tuple(shape), *map(float, numbers), nonfinite, histogram)


def error_to_wire(error: BaseException) -> dict[str, str]:
    return {"type": type(error).__name__, "message": str(error)}


def error_from_wire(data: Any) -> BaseException:
    """The exception a failed command raised in the run process, as one of the protocol's own where it is one."""
    if not isinstance(data, dict):
        return RemoteError("the run process sent a malformed error")
    cls = _ERRORS.get(str(data.get("type")), RemoteError)
    message = str(data.get("message", ""))
    if cls is RemoteError and data.get("type") not in (None, "RemoteError"):
        message = f"{data.get('type')}: {message}"
    return cls(message)


# -- records: plain step records as columns -------------------------------------------------------------------------
def _plain(record: Any) -> bool:
    rate = record.samples_per_sec if isinstance(record, records.StepRecord) else None
    return isinstance(record, records.StepRecord) and not record.layers and not record.activations and (
        rate is None or (type(rate) is float and rate == rate))  # (a rate is never nan: nan stands for None)


def records_to_wire(items: list[Any]) -> tuple[list[Any], bytes]:
    """(segments, blob): each run of plain step records one `{"$steps": n, "at": offset}` segment whose columns
    are in the blob, every other record a value of its own, in the order they came."""
    segments: list[Any] = []
    blob = bytearray()
    i = 0
    while i < len(items):
        j = i
        while j < len(items) and _plain(items[j]):
            j += 1
        if j > i:
            segments.append({"$steps": j - i, "at": len(blob)})
            for name, code in _COLUMNS:
                values = [getattr(r, name) for r in items[i:j]]
                if name == "samples_per_sec":
                    values = [math.nan if v is None else v for v in values]
                column = array(code, values)
                if sys.byteorder != "little":
                    column.byteswap()
                blob += column.tobytes()
            i = j
        else:
            segments.append(to_wire(items[i]))
            i += 1
    return segments, bytes(blob)


def records_from_wire(segments: Any, blob: bytes) -> list[Any]:
    if not isinstance(segments, list):
        raise WireError("records are not a list")
    out: list[Any] = []
    for segment in segments:
        if isinstance(segment, dict) and "$steps" in segment:
            n, at = segment.get("$steps"), segment.get("at")
            if not (type(n) is int and type(at) is int) or n < 0 or at < 0 or at + _STEP_BYTES * n > len(blob):
                raise WireError("a step column runs past the frame")
            columns = []
            for _, code in _COLUMNS:
                column = array(code)
                column.frombytes(blob[at:at + 8 * n])
                if sys.byteorder != "little":
                    column.byteswap()
                columns.append(column)
                at += 8 * n
            rates = [None if r != r else r for r in columns[-1]]
            out.extend(records.StepRecord(*values) for values in zip(*columns[:-1], rates))
        else:
            value = from_wire(segment)
            if _TYPES.get(type(value).__name__) is not type(value):
                raise WireError(f"a {type(value).__name__} where a record belongs")
            out.append(value)
    return out


# -- frames ----------------------------------------------------------------------------------------------------------
def pack(message: dict[str, Any], blob: bytes = b"", *, deflate: bool = False) -> bytes:
    """One frame: the header (JSON) and the blob behind it; with `deflate`, a blob of COMPRESS_FROM bytes or more
    goes deflated (`"z": 1` in the header: step columns, whose steps, epochs, LRs and rates repeat)."""
    if deflate and len(blob) >= COMPRESS_FROM:
        blob = zlib.compress(blob, 1)  # (~0.1 ms for a tick's columns)
        message = {**message, "z": 1}
    header = json.dumps(message, separators=(",", ":"), allow_nan=True).encode()
    size = 4 + len(header) + len(blob)
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size} bytes is over the limit of {MAX_FRAME}")
    return _HEAD.pack(size, len(header)) + header + blob


def unpack(body: bytes) -> tuple[dict[str, Any], bytes]:
    """(header, blob) of a frame's body (everything after its length prefix)."""
    if len(body) < 4:
        raise WireError("a truncated frame")
    (size,) = struct.unpack(">I", body[:4])
    if size > len(body) - 4:
        raise WireError("a header longer than its frame")
    try:
        message = json.loads(body[4:4 + size])
    except (ValueError, RecursionError) as exc:
        raise WireError(f"a header that is not JSON: {exc}") from None
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        raise WireError("a header without a kind")
    blob = body[4 + size:]
    if message.get("z") == 1:
        inflate = zlib.decompressobj()
        try:
            blob = inflate.decompress(blob, MAX_FRAME)  # (never more than a frame's worth: no zip bombs)
        except zlib.error as exc:
            raise WireError(f"a blob that does not inflate: {exc}") from None
        if inflate.unconsumed_tail or not inflate.eof:
            raise WireError("a blob that inflates past the frame limit, or is cut short")
    return message, blob


def read_frame(read_exactly: Any) -> tuple[dict[str, Any], bytes]:
    """The next frame from `read_exactly(n)` (which returns n bytes or raises EOFError); WireError for a bad one."""
    (size,) = struct.unpack(">I", read_exactly(4))
    if size > MAX_FRAME or size < 4:
        raise WireError(f"a frame of {size} bytes (the limit is {MAX_FRAME})")
    return unpack(read_exactly(size))
