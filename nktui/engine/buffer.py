"""RecordBuffer: the bounded, thread-safe hand-over of records from the trainer thread to its readers.

The trainer appends; it never waits for a reader. Each record gets a sequence number, and each reader remembers
the last number it saw and asks for what came after, at its own pace, so several readers (the app, a log writer)
can follow one run. A reader that falls more than `maxlen` records behind loses the oldest ones and can tell
from the gap in sequence numbers.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from itertools import islice
from typing import Generic, TypeVar

T = TypeVar("T")


class RecordBuffer(Generic[T]):
    def __init__(self, maxlen: int = 8192) -> None:
        self._items: deque[T] = deque(maxlen=maxlen)
        self._last_seq = 0  # sequence number of the newest item; items are numbered 1, 2, ...
        self._lock = threading.Lock()

    def publish(self, item: T) -> None:
        with self._lock:
            self._items.append(item)
            self._last_seq += 1

    def publish_many(self, items: Iterable[T]) -> None:
        with self._lock:
            for item in items:
                self._items.append(item)
                self._last_seq += 1

    @property
    def last_seq(self) -> int:
        return self._last_seq

    def since(self, seq: int) -> tuple[int, list[T]]:
        """Items newer than sequence number `seq` (oldest first) and the sequence number to ask with next."""
        with self._lock:
            first_seq = self._last_seq - len(self._items) + 1
            start = max(seq + 1, first_seq) - first_seq
            return self._last_seq, list(islice(self._items, start, None))

    def latest(self) -> T | None:
        with self._lock:
            return self._items[-1] if self._items else None

    def __len__(self) -> int:
        return len(self._items)
