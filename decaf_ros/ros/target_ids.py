"""Stable target ids within one goal: the coarse, dense, tracked and re-grounded views of an object
share one id.

A grounding's targets are matched to the objects already known for the goal by mask IoU between
where each was last seen (``latest_sightings``: a target gone from the clip's last frame is still
matched by its latest non-empty frame) and each known object's last sighting (greedy, best pair
first); a match keeps its id, the rest get new ids, and ids are never reused within a goal. Tracking keeps the ids of the targets it was started with,
by position in the stream. Pure numpy, no node state.
"""
from __future__ import annotations

import numpy as np

from decaf_ros.core.tracklets import pairwise_iou

MATCH_IOU = 0.5  # the documented Target.target_id rule (msg/Target.msg)


def latest_sightings(target_masks: np.ndarray) -> np.ndarray:
    """(K, T, H, W) -> (K, H, W): each target's mask on the latest frame where it is non-empty."""
    target_masks = np.asarray(target_masks, dtype=bool)
    if target_masks.shape[0] == 0:
        return np.zeros((0, *target_masks.shape[2:]), dtype=bool)
    present = target_masks.any(axis=(2, 3))  # (K, T)
    latest = present.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)  # T-1 when never present
    return target_masks[np.arange(len(target_masks)), latest] & present.any(axis=1)[:, None, None]


class TargetIds:
    """Id bookkeeping for one goal."""

    def __init__(self, match_iou: float = MATCH_IOU) -> None:
        self._match_iou = match_iou
        self._next = 0
        self._last_seen: dict[int, np.ndarray] = {}  # id -> (H, W) bool, its last non-empty mask
        self.tracked: list[int] = []  # ids of the tracking stream's targets, in stream order

    def assign(self, masks: np.ndarray) -> list[int]:
        """Ids for a grounding's targets from their sightings (K, H, W): matched to known objects or new."""
        masks = np.asarray(masks, dtype=bool)
        ids: list[int | None] = [None] * len(masks)
        known = [(i, m) for i, m in self._last_seen.items() if m.shape == masks.shape[1:]]
        if known and len(masks):
            iou = pairwise_iou(masks, np.stack([m for _, m in known]))  # (K, known)
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                k, j = np.unravel_index(flat, iou.shape)
                if iou[k, j] < self._match_iou:
                    break
                known_id = known[j][0]
                if ids[k] is None and known_id not in ids:
                    ids[k] = known_id
        for k, value in enumerate(ids):
            if value is None:
                ids[k] = self._new_id()
        result = [int(i) for i in ids]  # type: ignore[arg-type]
        self.remember(result, masks)
        return result

    def remember(self, ids: list[int], masks: np.ndarray) -> None:
        """Record where each object was last seen (empty masks keep the previous sighting)."""
        for target_id, mask in zip(ids, np.asarray(masks, dtype=bool)):
            if mask.any():
                self._last_seen[target_id] = mask

    def _new_id(self) -> int:
        target_id, self._next = self._next, self._next + 1
        return target_id
