"""Key-frame sampling (docs/method.md §2.1) and a bounded clip buffer for live streams."""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, NamedTuple

import numpy as np

# Smallest frame side the pipeline accepts (``pipeline.validate_frames``); live inputs are checked
# against it on arrival so an unusable frame never reaches a clip.
MIN_FRAME_SIDE = 2


def key_frame_indices(n: int, k: int = 16) -> list[int]:
    """Indices of the key frames of an n-frame clip.

    All frames when n ≤ k; otherwise ``np.linspace(0, n-1, k).astype(int)``, which truncates
    (not rounds), exactly as the reference does, so the same clip gives the same frames.
    """
    if n < 0:
        raise ValueError(f"frame count must be >= 0; got {n}")
    if k < 1:
        raise ValueError(f"key frame count must be >= 1; got {k}")
    if n <= k:
        return list(range(n))
    return [int(i) for i in np.linspace(0, n - 1, k).astype(int)]


class FrameItem(NamedTuple):
    stamp: float
    frame: Any  # usually np.ndarray (H, W, 3) uint8 RGB
    extra: Any = None  # e.g. the matching depth image and camera info


class FrameRing:
    """Bounded, thread-safe ring of the most recent frames.

    ``push`` is O(1) and drops the oldest item when full (counted in ``dropped``), so a
    camera callback never blocks on a slow consumer and memory stays bounded.
    """

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1; got {capacity}")
        self.capacity = int(capacity)
        self._items: deque[FrameItem] = deque(maxlen=self.capacity)
        self._lock = threading.Lock()
        self._dropped = 0

    def push(self, stamp: float, frame: Any, extra: Any = None) -> None:
        with self._lock:
            if len(self._items) == self.capacity:
                self._dropped += 1  # deque(maxlen) evicts the oldest on append
            self._items.append(FrameItem(stamp, frame, extra))

    def snapshot(self, stride: int = 1) -> list[FrameItem]:
        """A copy of the item references, oldest first and newest last.

        With stride > 1 every stride-th item is taken counting back from the newest, so the
        newest frame is always included.
        """
        if stride < 1:
            raise ValueError(f"stride must be >= 1; got {stride}")
        with self._lock:
            items = list(self._items)
        return items[::-1][::stride][::-1]

    def latest(self) -> FrameItem | None:
        with self._lock:
            return self._items[-1] if self._items else None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
