"""A bounded prefetch thread: the next batch's frames decode on the CPU while the model runs.

`Prefetch(iterable, capacity)` iterates `iterable` in a background thread and hands its items over
through a buffer of at most `capacity` items (adjustable once the batch size is known). An
exception in the producer is raised in the consumer at the point it happened; closing the
prefetcher (``with`` block exit, Ctrl-C in the consumer, an error) stops the producer at its next
item and joins it, so no thread outlives the loop.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

_DONE = object()
JOIN_TIMEOUT_S = 30.0


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class Prefetch:
    """Iterate `iterable` in a thread, at most `capacity` items ahead of the consumer."""

    def __init__(self, iterable: Iterable[Any], capacity: int = 2, name: str = "scenetg-prefetch"):
        self._source = iterable
        self._capacity = max(1, int(capacity))
        self._buffer: deque[Any] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    @property
    def capacity(self) -> int:
        return self._capacity

    @capacity.setter
    def capacity(self, n: int) -> None:
        with self._cond:
            self._capacity = max(1, int(n))
            self._cond.notify_all()

    def _put(self, item: Any, force: bool = False) -> bool:
        with self._cond:
            while not force and not self._stop and len(self._buffer) >= self._capacity:
                self._cond.wait()
            if self._stop and not force:
                return False
            self._buffer.append(item)
            self._cond.notify_all()
            return True

    def _produce(self) -> None:
        try:
            iterator = iter(self._source)
            while not self._stop:
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                if not self._put(item):
                    break
            close = getattr(iterator, "close", None)
            if self._stop and close is not None:
                close()
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(_Failed(exc), force=True)
            return
        self._put(_DONE, force=True)

    def __iter__(self) -> Iterator[Any]:
        while True:
            with self._cond:
                while not self._buffer:
                    # A timed wait keeps the main thread responsive to Ctrl-C.
                    self._cond.wait(0.5)
                item = self._buffer.popleft()
                self._cond.notify_all()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def close(self) -> None:
        """Stop the producer (at its next item) and wait for it."""
        with self._cond:
            self._stop = True
            self._buffer.clear()
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT_S)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
