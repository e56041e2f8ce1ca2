"""Readers for the video reasoning-segmentation benchmarks DecAF is evaluated on (§9.4).

Each reader yields :class:`Sample` objects lazily, one per (video, expression), in a fixed order:
videos sorted, expression ids sorted (as strings, like the reference scripts). Ground truth is the
union of the expression's ``anno_id`` masks, decoded from COCO RLE, on every frame listed in the
meta file (in the meta file's order, which is the order the masks were encoded in).

Where the data lives
--------------------
Every reader takes the dataset folder (``root``). When it is not given, the folder is
``$DECAF_DATA_ROOT/<default folder>``, with the default folder names below (the names of the
public releases). Layout expected under ``root``:

=============  ====================  ===========================================================
dataset        default folder        files under ``root``
=============  ====================  ===========================================================
``davis``      ``davis17``           ``meta_expressions/valid/meta_expressions.json``,
                                     ``valid/mask_dict.pkl``, ``valid/JPEGImages/<video>/<f>.jpg``
``reasonvos``  ``ReasonVOS``         ``meta_expressions_v2.json``, ``mask_dict_v2.pkl``,
                                     ``JPEGImages/<video>/<f>.jpg``
``revos``      ``ReVOS``             ``meta_expressions_valid_.json``, ``mask_dict.json``,
                                     ``mask_dict_foreground.json``, ``JPEGImages/<video>/<f>.jpg``
``mevis``      ``mevis``             ``valid_u/meta_expressions.json``, ``valid_u/mask_dict.json``,
                                     ``valid_u/JPEGImages/<video>/<f>.jpg``
=============  ====================  ===========================================================

Meta files look like ``{"videos": {video: {"frames": [name, ...], "expressions": {exp_id: {"exp":
text, "anno_id": [...], "obj_id": [...], "type_id": 0|1 (ReVOS)}}}}}``; mask dicts map
``str(anno_id)`` to one RLE (or None where the object is absent) per frame. Ref-DAVIS17 has no
``anno_id`` in its meta file: every expression gets a sequential id (videos sorted, expression ids
sorted, all pooled), which is how its ``mask_dict.pkl`` is keyed. When the frames folder is
missing but ``root/<video>/`` exists (the frame archive unpacked straight into ``root``), frames
are read from there. A malformed folder raises :class:`DatasetError` naming the missing file.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import cv2
import numpy as np

log = logging.getLogger(__name__)

DATA_ROOT_ENV = "DECAF_DATA_ROOT"
REFERRING, REASONING = 0, 1  # ReVOS type_id values


class DatasetError(RuntimeError):
    """A dataset folder or file is missing or does not have the expected layout."""


class MaskCountMismatch(DatasetError):
    """An annotation has fewer masks than its video has frames: the expression cannot be scored (§9.1)."""

    def __init__(self, path: Path, anno_id: Any, n_masks: int, n_frames: int) -> None:
        super().__init__(f"{path}: anno_id {anno_id!r} has {n_masks} masks for {n_frames} frames")
        self.anno_id, self.n_masks, self.n_frames = anno_id, n_masks, n_frames


def per_frame_entries(entries: Sequence[Any], n_frames: int, path: Path, anno_id: Any) -> Sequence[Any]:
    """The first ``n_frames`` mask entries; MaskCountMismatch when there are fewer (§9.1).

    The reference indexes the masks by frame: with more masks than frames it uses the first T;
    with fewer its evaluation fails for that expression alone, which scores 0. Both cases are logged.
    """
    if len(entries) < n_frames:
        raise MaskCountMismatch(path, anno_id, len(entries), n_frames)
    if len(entries) > n_frames:
        log.warning("%s: anno_id %r has %d masks for %d frames: using the first %d", path, anno_id,
                    len(entries), n_frames, n_frames)
    return entries[:n_frames]


@dataclass(frozen=True)
class DatasetLayout:
    """Where one benchmark keeps its files, relative to its root folder."""

    name: str
    default_folder: str
    meta: str
    masks: str
    frames: str
    foreground: str | None = None
    sequential_anno_ids: bool = False  # Ref-DAVIS17: ids assigned by enumeration


LAYOUTS: dict[str, DatasetLayout] = {
    "davis": DatasetLayout("davis", "davis17", "meta_expressions/valid/meta_expressions.json",
                           "valid/mask_dict.pkl", "valid/JPEGImages", sequential_anno_ids=True),
    "reasonvos": DatasetLayout("reasonvos", "ReasonVOS", "meta_expressions_v2.json", "mask_dict_v2.pkl",
                               "JPEGImages"),
    "revos": DatasetLayout("revos", "ReVOS", "meta_expressions_valid_.json", "mask_dict.json", "JPEGImages",
                           foreground="mask_dict_foreground.json"),
    "mevis": DatasetLayout("mevis", "mevis", "valid_u/meta_expressions.json", "valid_u/mask_dict.json",
                           "valid_u/JPEGImages"),
}
DATASETS = tuple(LAYOUTS)

MaskLoader = Callable[[], np.ndarray]


@dataclass(frozen=True)
class Sample:
    """One (video, expression) pair; frames and masks are read only when asked for."""

    dataset: str
    video: str
    exp_id: str
    expression: str
    frame_names: tuple[str, ...]
    frame_dir: Path
    gt_masks_loader: MaskLoader  # -> (T, H, W) bool, union of the expression's objects
    type_id: int | None = None
    foreground_loader: MaskLoader | None = None  # ReVOS: (T, H, W) bool, all annotated objects

    @property
    def key(self) -> str:
        return f"{self.video}/{self.exp_id}"

    def frame_paths(self) -> list[Path]:
        return [self.frame_dir / frame_file(name) for name in self.frame_names]

    def load_frames(self) -> list[np.ndarray]:
        """All frames as uint8 RGB (H, W, 3)."""
        return [read_rgb(path) for path in self.frame_paths()]

    def load_gt(self) -> np.ndarray:
        """(T, H, W) bool; MaskCountMismatch when an annotation has fewer masks than frames."""
        return self.gt_masks_loader()

    def files_in_frame_folder(self) -> int:
        """How many files the video's frame folder holds (0 when it is missing).

        The reference's keypoint evaluation skips an expression whose count differs from the
        meta file's frame count (§8).
        """
        return sum(1 for _ in self.frame_dir.iterdir()) if self.frame_dir.is_dir() else 0


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def frame_file(name: str) -> str:
    """Image file of a meta-file frame name (names normally come without an extension)."""
    return name if name.lower().endswith(IMAGE_SUFFIXES) else f"{name}.jpg"


def frame_stem(name: str) -> str:
    """Frame name without an image extension, used to name prediction PNGs."""
    return name.rsplit(".", 1)[0] if name.lower().endswith(IMAGE_SUFFIXES) else name


# ---------------------------------------------------------------------------------------- RLE
def rle_counts_from_string(text: str | bytes) -> list[int]:
    """Run lengths of COCO's compressed RLE string (``maskApi.c`` rleFrString).

    Each run is a variable-length integer in 5-bit groups (least significant first), stored as
    chars offset by 48; bit 0x20 means "more groups follow", bit 0x10 of the last group is the sign.
    From the fourth run on, the value is stored as a difference to the run two places back.
    """
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    pos = 0
    while pos < len(data):
        value, shift, more = 0, 0, True
        while more:
            group = data[pos] - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            pos += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift  # sign-extend
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def rle_counts_to_string(counts: Sequence[int]) -> str:
    """Inverse of :func:`rle_counts_from_string` (``maskApi.c`` rleToString)."""
    chars: list[str] = []
    for i, count in enumerate(counts):
        value = int(count) - int(counts[i - 2]) if i > 2 else int(count)
        more = True
        while more:
            group = value & 0x1F
            value >>= 5  # arithmetic shift, as in C on a signed long
            more = value != -1 if group & 0x10 else value != 0
            chars.append(chr((group | (0x20 if more else 0)) + 48))
    return "".join(chars)


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """(h, w) bool mask of a COCO RLE dict, compressed (str/bytes counts) or uncompressed (list)."""
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = rle_counts_from_string(counts)
    counts = np.asarray(counts, dtype=np.int64)
    if counts.sum() != height * width or (counts < 0).any():
        raise DatasetError(f"RLE counts do not cover a {height}x{width} mask")
    # Runs alternate background/foreground starting with background, in column-major order.
    flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    return flat.reshape(width, height).T.copy()


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Compressed COCO RLE of a (h, w) mask: {"size": [h, w], "counts": str}."""
    mask = np.asarray(mask, dtype=bool)
    flat = mask.ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts  # runs always start with background
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": rle_counts_to_string(counts)}


def decode_entry(entry: Any) -> np.ndarray | None:
    """One per-frame mask entry: an RLE dict, a list of them (union), or None/empty (absent)."""
    if not entry:
        return None
    if isinstance(entry, Mapping):
        return rle_decode(entry)
    masks = [m for m in (decode_entry(e) for e in entry) if m is not None]
    return np.logical_or.reduce(masks) if masks else None


# ---------------------------------------------------------------------------------------- files
def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot read frame {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class _PlainDataUnpickler(pickle.Unpickler):
    """Mask dicts hold only dicts/lists/str/bytes/ints (and maybe numpy arrays): refuse anything else."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise DatasetError(f"refusing to unpickle {module}.{name} from a mask dict")
        return super().find_class(module, name)


def load_data_file(path: Path) -> Any:
    """Read a .json or .pkl data file; DatasetError naming the file when it is missing or broken."""
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    try:
        if path.suffix == ".pkl":
            with path.open("rb") as handle:
                return _PlainDataUnpickler(handle).load()
        with path.open("r", encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as error:
        raise DatasetError(f"cannot parse {path}: {error}") from error


class _LazyMasks:
    """Loads a (possibly very large) mask dict once, on first use, shared by all samples."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @cached_property
    def data(self) -> Mapping[str, Any]:
        data = load_data_file(self.path)
        if not isinstance(data, Mapping):
            raise DatasetError(f"{self.path}: expected a mapping at the top level")
        return data

    def entries(self, key: Any) -> Sequence[Any]:
        for candidate in (str(key), key):
            if candidate in self.data:
                return self.data[candidate]
        raise DatasetError(f"{self.path}: no masks for anno_id {key!r}")


# ---------------------------------------------------------------------------------------- readers
def resolve_root(dataset: str, root: str | os.PathLike[str] | None = None) -> Path:
    """The dataset folder: ``root`` if given, else ``$DECAF_DATA_ROOT/<default folder>``."""
    layout = get_layout(dataset)
    if root is not None:
        return Path(root).expanduser()
    base = os.environ.get(DATA_ROOT_ENV)
    if not base:
        raise DatasetError(f"no folder given for {dataset!r}: pass --root or set {DATA_ROOT_ENV} "
                           f"(expected {DATA_ROOT_ENV}/{layout.default_folder})")
    return Path(base).expanduser() / layout.default_folder


def get_layout(dataset: str) -> DatasetLayout:
    if dataset not in LAYOUTS:
        raise DatasetError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    return LAYOUTS[dataset]


def load_meta(layout: DatasetLayout, root: Path) -> Mapping[str, Any]:
    if not root.is_dir():
        raise DatasetError(f"{layout.name}: dataset folder not found: {root}")
    meta = load_data_file(root / layout.meta)
    if not isinstance(meta, Mapping) or not isinstance(meta.get("videos"), Mapping):
        raise DatasetError(f"{root / layout.meta}: expected {{'videos': {{...}}}}")
    for name in (layout.masks, layout.foreground):
        if name and not (root / name).is_file():
            raise DatasetError(f"missing file: {root / name}")
    return meta["videos"]


def frames_folder(layout: DatasetLayout, root: Path, videos: Mapping[str, Any]) -> Path:
    """The folder holding ``<video>/<frame>.jpg``: the layout's, else ``root`` itself.

    Some copies unpack the frame archive straight into the dataset folder (no ``JPEGImages``).
    """
    folder = root / layout.frames
    if folder.is_dir():
        return folder
    if videos and (root / next(iter(videos))).is_dir():
        return root
    raise DatasetError(f"missing folder: {folder}")


def iter_samples(dataset: str, root: str | os.PathLike[str] | None = None) -> Iterator[Sample]:
    """Yield every (video, expression) of ``dataset`` lazily; see the module docstring."""
    layout = get_layout(dataset)
    folder = resolve_root(dataset, root)
    videos = load_meta(layout, folder)
    masks = _LazyMasks(folder / layout.masks)
    foreground = _LazyMasks(folder / layout.foreground) if layout.foreground else None
    frames_root = frames_folder(layout, folder, videos)
    sequential_id = 0
    for video in sorted(videos):
        entry = videos[video]
        frame_names = tuple(str(f) for f in entry.get("frames", ()))
        expressions = entry.get("expressions")
        if not frame_names or not isinstance(expressions, Mapping):
            raise DatasetError(f"{folder / layout.meta}: video {video!r} lacks 'frames' or 'expressions'")
        frame_dir = frames_root / video
        for exp_id in sorted(expressions, key=str):
            exp = expressions[exp_id]
            if layout.sequential_anno_ids:
                anno_ids: list[Any] = [sequential_id]
                sequential_id += 1
            else:
                anno_ids = list(exp.get("anno_id", ()))
            yield Sample(
                dataset=dataset, video=video, exp_id=str(exp_id), expression=str(exp.get("exp", "")),
                frame_names=frame_names, frame_dir=frame_dir,
                gt_masks_loader=_union_loader(masks, anno_ids, frame_names, frame_dir),
                type_id=_type_id(exp),
                foreground_loader=_foreground_loader(foreground, video, frame_names, frame_dir))


def _type_id(expression: Mapping[str, Any]) -> int | None:
    value = expression.get("type_id")
    return None if value is None else int(value)


def _frame_size(frame_dir: Path, frame_names: Sequence[str]) -> tuple[int, int]:
    """(H, W) from the first frame, for expressions whose object is absent on every frame."""
    height, width = read_rgb(frame_dir / frame_file(frame_names[0])).shape[:2]
    return height, width


def _stack(per_frame: list[np.ndarray | None], frame_dir: Path, frame_names: Sequence[str]) -> np.ndarray:
    present = [m for m in per_frame if m is not None]
    height, width = present[0].shape if present else _frame_size(frame_dir, frame_names)
    out = np.zeros((len(per_frame), height, width), dtype=bool)
    for index, mask in enumerate(per_frame):
        if mask is not None:
            if mask.shape != (height, width):
                raise DatasetError(f"{frame_dir}: mask sizes differ across frames")
            out[index] = mask
    return out


def _union_loader(masks: _LazyMasks, anno_ids: list[Any], frame_names: tuple[str, ...],
                  frame_dir: Path) -> MaskLoader:
    def load() -> np.ndarray:
        per_frame: list[np.ndarray | None] = [None] * len(frame_names)
        for anno_id in anno_ids:
            entries = per_frame_entries(masks.entries(anno_id), len(frame_names), masks.path, anno_id)
            for index, entry in enumerate(entries):
                mask = decode_entry(entry)
                if mask is not None:
                    per_frame[index] = mask if per_frame[index] is None else per_frame[index] | mask
        return _stack(per_frame, frame_dir, frame_names)
    return load


def _foreground_loader(foreground: _LazyMasks | None, video: str, frame_names: tuple[str, ...],
                       frame_dir: Path) -> MaskLoader | None:
    if foreground is None:
        return None

    def load() -> np.ndarray:
        record = foreground.entries(video)
        entries = record.get("masks_rle") if isinstance(record, Mapping) else record
        if entries is None:
            raise DatasetError(f"{foreground.path}: video {video!r} has no 'masks_rle' entries")
        entries = per_frame_entries(entries, len(frame_names), foreground.path, f"foreground of {video}")
        return _stack([decode_entry(e) for e in entries], frame_dir, frame_names)
    return load
