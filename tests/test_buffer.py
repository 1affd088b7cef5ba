"""RecordBuffer: sequence numbers, bounded memory, readers that fall behind, and a publisher on another thread."""

from __future__ import annotations

import threading

from nktui.training import RecordBuffer


def test_since_returns_what_came_after_and_the_next_seq():
    buf = RecordBuffer()
    assert buf.since(0) == (0, [])
    assert buf.latest() is None and len(buf) == 0
    buf.publish("a")
    buf.publish_many(["b", "c"])
    assert buf.last_seq == 3 and len(buf) == 3
    assert buf.since(0) == (3, ["a", "b", "c"])
    assert buf.since(1) == (3, ["b", "c"])
    assert buf.since(3) == (3, [])
    assert buf.since(-5) == (3, ["a", "b", "c"])
    assert buf.latest() == "c"
    seq, items = buf.since(0)
    buf.publish("d")
    assert buf.since(seq) == (4, ["d"])
    assert items == ["a", "b", "c"]  # a copy: later publishes do not change what a reader got


def test_bounded_and_a_reader_that_falls_behind_gets_the_newest():
    buf = RecordBuffer(maxlen=5)
    buf.publish_many(range(1, 13))  # item i has sequence number i
    assert len(buf) == 5 and buf.last_seq == 12
    assert buf.since(0) == (12, [8, 9, 10, 11, 12])
    assert buf.since(3) == (12, [8, 9, 10, 11, 12])  # it can tell from 8 > 3 + 1 that it lost 4..7
    assert buf.since(9) == (12, [10, 11, 12])
    assert buf.since(12) == (12, [])
    for i in range(13, 20):
        buf.publish(i)
    assert buf.since(12) == (19, [15, 16, 17, 18, 19])


def test_a_publisher_thread_and_readers():
    buf = RecordBuffer(maxlen=64)
    total = 20_000
    start = threading.Barrier(3)

    def publish():
        start.wait()
        i = 1
        while i <= total:
            if i % 3:
                buf.publish(i)
                i += 1
            else:
                batch = list(range(i, min(i + 7, total + 1)))
                buf.publish_many(batch)
                i += len(batch)

    results: list[list[int]] = [[], []]
    errors: list[str] = []

    def read(out: list[int]):
        start.wait()
        seq = 0
        while seq < total:
            new_seq, items = buf.since(seq)
            # every item is its own sequence number: what a reader gets is always the newest, in order, no gaps
            if items and not (items[-1] == new_seq and items == list(range(new_seq - len(items) + 1, new_seq + 1))
                              and items[0] > seq):
                errors.append(f"since({seq}) gave seq {new_seq} with {items[:3]}...{items[-3:]}")
                return
            out.extend(items)
            seq = new_seq

    threads = [threading.Thread(target=publish)] + [threading.Thread(target=read, args=(r,)) for r in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert buf.last_seq == total
    for out in results:
        assert out == sorted(set(out))  # strictly increasing
        assert out[-1] == total
    assert buf.since(0)[1] == list(range(total - 63, total + 1))
