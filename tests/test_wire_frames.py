"""Record lists and frames on the wire (`nktui.protocol.wire`): records_to_wire / records_from_wire carry plain steps
as columns in the blob (floats exactly, nan payloads included) and everything else in order, and a frame (pack,
unpack, read_frame) that is malformed, oversized or nested too deep is a `WireError`, the oversized one refused
before its body is read.

No torch, no trainer, no socket. The examples come from tests/wire_support.py.
"""

from __future__ import annotations

import io
import json
import math
import struct

import pytest
from wire_support import EXTREMES, bits, eval_result, every_record, frame_of, observed, same

from nktui.protocol.records import ActivationStats, Resumed, Rewound, StepRecord
from nktui.protocol import wire
from nktui.protocol.wire import (
    MAX_FRAME,
    WireError,
    from_wire,
    pack,
    read_frame,
    records_from_wire,
    records_to_wire,
    unpack,
)


# -- 1. record lists: plain steps as columns ---------------------------------------------------------------------------
def test_mixed_records_come_back_equal_and_in_order():
    items = [StepRecord(i, 0, 2.0 - i / 8, i / 10, 0.1) for i in range(1, 6)]
    items += [observed(6), StepRecord(7, 0, 1.0, 0.5, 0.1, samples_per_sec=1000.0), every_record()[5],
              Rewound(4, 12), eval_result(), Resumed(4)]
    items += [StepRecord(i, 1, x, -x, abs(x) or 1e-3) for i, x in enumerate(EXTREMES, start=5)]
    segments, blob = records_to_wire(items)
    step = wire._STEP_BYTES  # (a rate rides in the columns too: step 7 is plain)
    assert [s for s in segments if "$steps" in s] == [{"$steps": 5, "at": 0}, {"$steps": 1, "at": 5 * step},
                                                      {"$steps": len(EXTREMES), "at": 6 * step}]
    assert len(blob) == step * (6 + len(EXTREMES))
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

# -- 2. what is refused ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("segment", [
    {"$steps": 2, "at": 0}, {"$steps": 1, "at": 1}, {"$steps": 1, "at": 48}, {"$steps": -1, "at": 0},
    {"$steps": 1, "at": -48}, {"$steps": 1.0, "at": 0}, {"$steps": "1", "at": 0}, {"$steps": 1, "at": None},
    {"$steps": None, "at": 0}, {"$steps": 1}, {"$steps": 10**30, "at": 0}, {"$steps": 1, "at": 2**70},
    {"$steps": [1], "at": 0},
], ids=str)
def test_a_step_segment_outside_the_blob_is_refused(segment):
    _, blob = records_to_wire([StepRecord(1, 0, 1.0, 1.0, 1.0)])
    assert len(blob) == wire._STEP_BYTES == 48
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



def test_a_steps_rate_rides_in_the_columns_and_none_stays_none():
    items = [StepRecord(1, 0, 1.0, 0.5, 0.1, samples_per_sec=12345.678), StepRecord(2, 0, 1.0, 0.5, 0.1),
             StepRecord(3, 0, 1.0, 0.5, 0.1, samples_per_sec=5e-324)]
    segments, blob = records_to_wire(items)
    assert segments == [{"$steps": 3, "at": 0}]
    back = records_from_wire(segments, blob)
    assert [r.samples_per_sec for r in back] == [12345.678, None, 5e-324]
    # a nan rate cannot be told from a missing one: such a record goes whole, as JSON
    odd = StepRecord(4, 0, 1.0, 0.5, 0.1, samples_per_sec=float("nan"))
    segments, blob = records_to_wire([odd])
    assert blob == b"" and math.isnan(records_from_wire(segments, blob)[0].samples_per_sec)


def test_deflated_columns_come_back_and_a_bomb_is_refused():
    import zlib

    items = [StepRecord(i, 3, 1.0 / i, 0.5, 0.1, samples_per_sec=640.0) for i in range(1, 2001)]
    segments, blob = records_to_wire(items)
    frame = pack({"kind": "news", "records": segments}, blob, deflate=True)
    assert len(frame) < len(blob) / 2  # steps, epochs, LRs and rates repeat
    header, back = unpack(frame[4:])
    assert header["z"] == 1 and back == blob and records_from_wire(header["records"], back) == items
    bomb = zlib.compress(b"\0" * (MAX_FRAME + 1), 9)  # a small frame that would inflate past the limit
    with pytest.raises(WireError):
        unpack(pack({"kind": "news", "z": 1}, bomb)[4:])
    with pytest.raises(WireError):
        unpack(pack({"kind": "news", "z": 1}, b"not deflated")[4:])
