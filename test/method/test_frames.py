"""Key-frame indices (§2.1) and the bounded frame ring."""
import threading

import pytest

from decaf_ros.core.frames import FrameRing, key_frame_indices


def test_key_frames_short_clips_use_all_frames():
    assert key_frame_indices(0) == []
    assert key_frame_indices(5) == [0, 1, 2, 3, 4]
    assert key_frame_indices(16) == list(range(16))


def test_key_frames_truncate_not_round():
    # n=17: step 16/15 = 1.0667; 14.93 -> 14 (rounding would give 15)
    assert key_frame_indices(17) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16]
    # n=30: step 29/15 = 1.9333; 1.93 -> 1, 3.87 -> 3, 5.8 -> 5, ...
    assert key_frame_indices(30) == [0, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29]
    # n=100: step 6.6; 6.6 -> 6, 19.8 -> 19, 39.6 -> 39
    assert key_frame_indices(100) == [0, 6, 13, 19, 26, 33, 39, 46, 52, 59, 66, 72, 79, 85, 92, 99]
    assert key_frame_indices(10, k=4) == [0, 3, 6, 9]
    with pytest.raises(ValueError):
        key_frame_indices(10, k=0)


def test_ring_bounded_and_counts_drops():
    ring = FrameRing(5)
    assert len(ring) == 0 and ring.latest() is None and ring.snapshot() == []
    for i in range(1000):
        ring.push(float(i), f"frame{i}", {"i": i})
    assert len(ring) == 5
    assert ring.dropped == 995
    snap = ring.snapshot()
    assert [item.stamp for item in snap] == [995.0, 996.0, 997.0, 998.0, 999.0]  # newest last
    assert ring.latest().frame == "frame999" and ring.latest().extra == {"i": 999}


def test_ring_snapshot_stride_keeps_newest():
    ring = FrameRing(10)
    for i in range(10):
        ring.push(float(i), i)
    assert [item.frame for item in ring.snapshot(stride=3)] == [0, 3, 6, 9]
    assert [item.frame for item in ring.snapshot(stride=4)] == [1, 5, 9]
    snap = ring.snapshot()
    ring.push(10.0, 10)  # a snapshot is a copy: later pushes do not change it
    assert [item.frame for item in snap] == list(range(10))
    with pytest.raises(ValueError):
        ring.snapshot(stride=0)


def test_ring_concurrent_pushes():
    ring = FrameRing(64)

    def producer(offset: int) -> None:
        for i in range(2000):
            ring.push(float(offset + i), None)

    threads = [threading.Thread(target=producer, args=(k * 10000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ring) == 64
    assert ring.dropped == 4 * 2000 - 64


def test_ring_rejects_bad_capacity():
    with pytest.raises(ValueError):
        FrameRing(0)
