"""Tiny datasets in the real benchmark layouts, for testing the readers and the evaluation loop.

Each video shows a red disc moving right and a blue box moving down over a textured background.
In the first video the disc leaves the picture on the last frame, so its mask entry there is
``None``, as in the real mask dicts. Masks are stored as compressed COCO RLE (``bytes`` counts in
the pickles, ``str`` counts in the JSON files, like the releases).
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .datasets import LAYOUTS, rle_encode

DISC, BOX = 1, 2
EXPRESSIONS = (
    ((DISC,), "the red disc moving to the right"),
    ((BOX,), "the blue box sliding down"),
    ((DISC, BOX), "both moving shapes"),
)


def video_name(layout: str, index: int) -> str:
    # ReVOS names its videos after their source folders, slashes included.
    return f"synth/all/vid{index}" if layout == "revos" else f"vid{index}"


def frame_names(n_frames: int) -> list[str]:
    return [f"{i:05d}" for i in range(n_frames)]


def render_video(index: int, n_frames: int = 6, size: tuple[int, int] = (48, 64),
                 seed: int = 0) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """RGB frames and per-object (T, H, W) bool masks of synthetic video ``index``."""
    height, width = size
    rng = np.random.default_rng(seed + index)
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    background = cv2.GaussianBlur(noise, (5, 5), 1.5) // 2 + 64  # muted texture, far from the shapes
    masks = {DISC: np.zeros((n_frames, height, width), bool), BOX: np.zeros((n_frames, height, width), bool)}
    frames = []
    radius, box = max(height // 8, 2), max(height // 6, 2)
    for t in range(n_frames):
        frame = background.copy()
        disc = np.zeros((height, width), np.uint8)
        if not (index == 0 and t == n_frames - 1):  # the disc has left the picture
            cx = int(radius + t * (width - 2 * radius) / max(n_frames, 1))
            cv2.circle(disc, (cx, height // 3), radius, 1, thickness=-1)
        square = np.zeros((height, width), np.uint8)
        top = int(t * (height - 2 * box) / max(n_frames, 1))
        cv2.rectangle(square, (width // 2 + 2, top), (width // 2 + 2 + box, top + box), 1, thickness=-1)
        frame[disc > 0] = (230, 30, 30)
        frame[square > 0] = (30, 30, 230)
        masks[DISC][t], masks[BOX][t] = disc > 0, square > 0
        frames.append(frame)
    return frames, masks


def make_synthetic_dataset(root: str | Path, layout: str = "davis", n_videos: int = 2, n_frames: int = 6,
                           size: tuple[int, int] = (48, 64), n_expressions: int = 2, seed: int = 0) -> Path:
    """Write a tiny dataset with ``layout``'s files under ``root`` and return ``root``."""
    spec = LAYOUTS[layout]
    root = Path(root)
    names = frame_names(n_frames)
    videos: dict[str, Any] = {}
    mask_dict: dict[str, list] = {}
    foreground: dict[str, Any] = {}
    for index in range(n_videos):
        vid = video_name(layout, index)
        frames, masks = render_video(index, n_frames, size, seed)
        _write_frames(root / spec.frames / vid, names, frames)
        anno_of = _register_objects(layout, vid, index, masks, mask_dict)
        expressions = {}
        for exp_index, (objects, text) in enumerate(EXPRESSIONS[:n_expressions]):
            entry: dict[str, Any] = {"exp": text, "obj_id": [str(o) for o in objects]}
            if layout != "davis":
                entry["anno_id"] = [anno_of[o] for o in objects]
            if layout == "revos":
                entry["type_id"] = exp_index % 2
            expressions[str(exp_index)] = entry
        videos[vid] = {"frames": names, "expressions": expressions}
        if layout == "reasonvos":
            videos[vid]["source"] = "synth"
        if layout == "revos":
            foreground[vid] = {"masks_rle": [[_rle(m[t], False) for m in masks.values() if m[t].any()]
                                             for t in range(n_frames)]}
    if layout == "davis":
        mask_dict = _davis_sequential_masks(videos, root, spec.frames, n_frames, size, seed)
    _write(root / spec.meta, {"videos": videos})
    _write(root / spec.masks, mask_dict)
    if spec.foreground:
        _write(root / spec.foreground, foreground)
    return root


def _rle(mask: np.ndarray, as_bytes: bool) -> dict[str, Any] | None:
    if not mask.any():
        return None
    rle = rle_encode(mask)
    if as_bytes:
        rle["counts"] = rle["counts"].encode("ascii")
    return rle


def _register_objects(layout: str, vid: str, index: int, masks: dict[int, np.ndarray],
                      mask_dict: dict[str, list]) -> dict[int, Any]:
    """Give each object of the video an anno_id in the dataset's style and store its masks."""
    anno_of: dict[int, Any] = {}
    for obj, obj_masks in masks.items():
        if layout == "reasonvos":
            anno_id: Any = f"synth_{vid}_{obj}"
        else:
            anno_id = index * len(masks) + obj - 1
        anno_of[obj] = anno_id
        mask_dict[str(anno_id)] = [_rle(m, layout == "reasonvos") for m in obj_masks]
    return anno_of


def _davis_sequential_masks(videos: dict[str, Any], root: Path, frames_dir: str, n_frames: int,
                            size: tuple[int, int], seed: int) -> dict[str, list]:
    """Ref-DAVIS17 keys masks by a running expression counter (videos sorted, exp ids sorted)."""
    out: dict[str, list] = {}
    counter = 0
    for vid in sorted(videos):
        index = int(vid.removeprefix("vid"))
        _, masks = render_video(index, n_frames, size, seed)
        for exp_id in sorted(videos[vid]["expressions"]):
            objects = [int(o) for o in videos[vid]["expressions"][exp_id]["obj_id"]]
            union = np.logical_or.reduce([masks[o] for o in objects])
            out[str(counter)] = [_rle(m, True) for m in union]
            counter += 1
    return out


def _write_frames(folder: Path, names: list[str], frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(names, frames):
        cv2.imwrite(str(folder / f"{name}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".pkl":
        path.write_bytes(pickle.dumps(data))
    else:
        path.write_text(json.dumps(data), encoding="utf-8")
