"""Run DecAF over a benchmark, save the masks, and score them (§9).

Predictions are saved as 0/255 PNGs, the layout the reference evaluation scripts read:

* ``OUT/<dataset>/<video>/<exp_id>/<frame>.png``: dense (SAM2) masks on every frame;
* ``OUT/<dataset>_coarse/<video>/<exp_id>/<frame>.png``: coarse attention masks on the key frames;
* ``OUT/<dataset>_keypoints/<video>/<exp_id>.json``: the top-100 cells of the fused map (§8).

An expression folder gets a ``_done.json`` marker after all its files are written, so an interrupted
run resumes where it stopped. Dense masks are scored on every frame of the meta file, coarse masks
only on the frames that have a saved prediction (the key frames, §9.3 / §13 item 8).
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from .datasets import Sample, frame_stem, iter_samples
from .keypoints import PP_KS, PP_OFFSET, Point, mean_pp_at_k, top_k_points
from .metrics import ExpressionScore, score_expression, summarize_dataset

DONE_MARKER = "_done.json"
KEYPOINT_DATASETS = ("davis", "reasonvos")  # §8: the reference scores keypoints on these only
GROUPED_DATASETS = ("revos",)


class EvaluationError(RuntimeError):
    """The evaluation cannot run (for example: the models could not be loaded)."""


class GroundingPipeline(Protocol):
    """What the runner needs from ``DecafPipeline`` (tests pass a stand-in)."""

    def ground(self, frames: Sequence[np.ndarray], query: str, *, coarse_only: bool = False) -> Any: ...


@dataclass(frozen=True)
class PredictionPaths:
    """Where one expression's predictions live under OUT."""

    dense: Path
    coarse: Path
    keypoints: Path

    @classmethod
    def of(cls, out: Path, sample: Sample) -> "PredictionPaths":
        rel = Path(sample.video) / sample.exp_id
        return cls(out / sample.dataset / rel, out / f"{sample.dataset}_coarse" / rel,
                   out / f"{sample.dataset}_keypoints" / f"{rel}.json")

    def complete(self, coarse_only: bool) -> bool:
        needed = [self.coarse] if coarse_only else [self.coarse, self.dense]
        return all((folder / DONE_MARKER).is_file() for folder in needed) and self.keypoints.is_file()


# ---------------------------------------------------------------------------------------- running
def build_pipeline(mllm: str | None = None, sam2: str | None = None, device: str | None = None,
                   dtype: str | None = None, coarse_only: bool = False) -> GroundingPipeline:
    """Load ``DecafPipeline`` with the paper defaults, overridden by the given model ids/options."""
    # Imported here so that scoring existing predictions needs neither transformers nor the models.
    from decaf_ros.core.config import DecafConfig
    from decaf_ros.core.loading import ModelLoadError
    from decaf_ros.core.pipeline import DecafPipeline

    overrides = {k: v for k, v in {"mllm": mllm, "sam2": sam2, "device": device, "dtype": dtype}.items() if v}
    try:
        config = DecafConfig().with_overrides(**overrides)
        # Coarse masks need no SAM2, so it is not loaded for coarse-only runs.
        return DecafPipeline.from_config(config, load_sam2=not coarse_only)
    except (ModelLoadError, ValueError) as error:
        raise EvaluationError(f"cannot load the DecAF models: {error}") from error


def save_masks(folder: Path, frame_names: Sequence[str], masks: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, mask in zip(frame_names, masks):
        path = folder / f"{frame_stem(name)}.png"
        if not cv2.imwrite(str(path), np.asarray(mask, dtype=np.uint8) * 255):
            raise OSError(f"cannot write {path}")


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    tmp.replace(path)  # atomic: a marker or result file is never seen half-written


def predict_sample(pipeline: GroundingPipeline, sample: Sample, out: Path, coarse_only: bool,
                   top_k: int = 100) -> None:
    """Ground one expression and write its dense/coarse masks, keypoints and markers."""
    paths = PredictionPaths.of(out, sample)
    frames = sample.load_frames()
    result = pipeline.ground(frames, sample.expression, coarse_only=coarse_only)
    keys = [int(k) for k in result.key_frame_indices]
    info = {"key_frame_indices": keys, "obj_name": getattr(result, "obj_name", None),
            "timings": dict(getattr(result, "timings", {}) or {})}
    write_json(paths.keypoints, {"n_frames": len(frames), "points": top_k_points(result.fused, keys, top_k)})
    save_masks(paths.coarse, [sample.frame_names[k] for k in keys], result.coarse_masks)
    write_json(paths.coarse / DONE_MARKER, info)
    if not coarse_only:
        save_masks(paths.dense, sample.frame_names, result.masks)
        write_json(paths.dense / DONE_MARKER, info)


def run_predictions(samples: Sequence[Sample], out: Path, pipeline: GroundingPipeline | None,
                    make_pipeline: Callable[[], GroundingPipeline], coarse_only: bool,
                    show_progress: bool = True) -> int:
    """Predict every sample that is not already complete; returns how many were predicted."""
    todo = [s for s in samples if not PredictionPaths.of(out, s).complete(coarse_only)]
    if not todo:
        return 0
    pipeline = pipeline or make_pipeline()
    for sample in tqdm(todo, desc=f"decaf {samples[0].dataset}", unit="expr", disable=not show_progress):
        predict_sample(pipeline, sample, out, coarse_only)
    return len(todo)


# ---------------------------------------------------------------------------------------- scoring
def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """A saved 0/255 PNG as bool at the GT size (nearest resize if it differs); None if missing."""
    if not path.is_file():  # checked first: OpenCV would log a warning per missing frame
        return None
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise OSError(f"cannot read prediction {path}")
    if image.shape != shape:
        image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return image > 0


@dataclass
class Missing:
    expressions: int = 0  # no prediction at all: scored 0, as the reference does
    frames: int = 0  # dense frames without a PNG: scored as empty masks


def score_predictions(sample: Sample, folder: Path, gt: np.ndarray, foreground: np.ndarray | None,
                      key_frames_only: bool, missing: Missing) -> ExpressionScore:
    """Score the PNGs in ``folder`` against ``gt`` (every frame, or the saved frames only)."""
    shape = gt.shape[1:]
    preds = [read_mask(folder / f"{frame_stem(name)}.png", shape) for name in sample.frame_names]
    indices = [i for i, p in enumerate(preds) if p is not None] if key_frames_only else list(range(len(gt)))
    if not any(p is not None for p in preds):
        missing.expressions += 1
        return ExpressionScore(sample.video, sample.exp_id, 0.0, 0.0, 0.0, 0, sample.type_id,
                               *((0.0, 0.0) if foreground is not None else (None, None)))
    missing.frames += sum(preds[i] is None for i in indices)
    pred = np.stack([preds[i] if preds[i] is not None else np.zeros(shape, bool) for i in indices])
    fg = foreground[indices] if foreground is not None else None
    return score_expression(pred, gt[indices], video=sample.video, exp_id=sample.exp_id,
                            type_id=sample.type_id, foreground=fg)


def load_keypoints(path: Path) -> tuple[list[Point], int] | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return [tuple(p) for p in data["points"]], int(data["n_frames"])  # type: ignore[misc]


def score_dataset(samples: Sequence[Sample], out: Path, dataset: str, modes: Sequence[str],
                  show_progress: bool = True) -> dict[str, Any]:
    """Score the saved predictions of ``samples`` for each mode ("dense", "coarse")."""
    folders = {"dense": out / dataset, "coarse": out / f"{dataset}_coarse"}
    modes = [m for m in modes if folders[m].is_dir()]
    scores: dict[str, list[ExpressionScore]] = {m: [] for m in modes}
    missing = {m: Missing() for m in modes}
    keypoint_records = []
    for sample in tqdm(samples, desc=f"score {dataset}", unit="expr", disable=not show_progress):
        gt = sample.load_gt()
        foreground = sample.foreground_loader() if sample.foreground_loader else None
        paths = PredictionPaths.of(out, sample)
        for mode in modes:
            folder = paths.dense if mode == "dense" else paths.coarse
            scores[mode].append(score_predictions(sample, folder, gt, foreground, mode == "coarse", missing[mode]))
        keypoints = load_keypoints(paths.keypoints) if dataset in KEYPOINT_DATASETS else None
        if keypoints is not None:
            keypoint_records.append((keypoints[0], keypoints[1], gt))
    grouped = dataset in GROUPED_DATASETS
    results: dict[str, Any] = {"dataset": dataset, "n_expressions": len(samples)}
    for mode in modes:
        results[mode] = summarize_dataset(scores[mode], grouped)
        results[f"{mode}_missing"] = vars(missing[mode])
        results[f"{mode}_expressions"] = [s.to_dict() for s in scores[mode]]
    if keypoint_records:
        results["keypoints"] = {"offset": PP_OFFSET,
                                **mean_pp_at_k(keypoint_records, PP_KS, PP_OFFSET).to_dict()}
    return results


# ---------------------------------------------------------------------------------------- driver
def run_evaluation(dataset: str, out: str | Path, root: str | Path | None = None, *,
                   pipeline: GroundingPipeline | None = None, mllm: str | None = None,
                   sam2: str | None = None, device: str | None = None, dtype: str | None = None,
                   coarse_only: bool = False, limit: int | None = None, eval_only: bool = False,
                   show_progress: bool = True) -> dict[str, Any]:
    """Predict (unless ``eval_only``) and score one dataset; writes ``OUT/results_<dataset>.json``.

    ``pipeline`` replaces the DecAF models (anything with ``ground(frames, query, coarse_only=)``
    returning ``masks``, ``coarse_masks``, ``key_frame_indices`` and ``fused``); when it is None the
    models are loaded on first need from ``mllm``/``sam2``/``device``/``dtype``.
    """
    out = Path(out)
    samples = list(itertools.islice(iter_samples(dataset, root), limit))
    predicted = 0
    if not eval_only and samples:
        predicted = run_predictions(samples, out, pipeline,
                                    lambda: build_pipeline(mllm, sam2, device, dtype, coarse_only),
                                    coarse_only, show_progress)
    modes = ["coarse"] if coarse_only else ["dense", "coarse"]
    results = score_dataset(samples, out, dataset, modes, show_progress)
    results.update(predicted=predicted, limit=limit, coarse_only=coarse_only)
    write_json(out / f"results_{dataset}.json", _json_safe(results))
    return results


def _json_safe(value: Any) -> Any:
    # NaN (an empty group) is not valid JSON; write null instead.
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------- table
TABLE_COLUMNS = (  # Table 2 order, then MeViS (Table 3)
    ("Ref-DAVIS", "davis", None), ("ReasonVOS", "reasonvos", None), ("ReVOS overall", "revos", "overall"),
    ("ReVOS referring", "revos", "referring"), ("ReVOS reasoning", "revos", "reasoning"),
    ("MeViS valid_u", "mevis", None),
)


def _cell(summary: dict | None) -> str:
    if not summary or summary.get("J&F") is None or math.isnan(summary["J&F"]):
        return "-"
    return f"{summary['J&F']:.1f} ({summary['J']:.1f}, {summary['F']:.1f})"


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """Table 2 layout: one column per dataset (group), one row per mask kind; cells J&F (J, F)."""
    by_name = {r["dataset"]: r for r in results}
    columns = [(title, name, group) for title, name, group in TABLE_COLUMNS if name in by_name]
    rows = []
    for mode, label in (("dense", "DecAF dense (SAM2), all frames"), ("coarse", "DecAF coarse, key frames")):
        if not any(mode in by_name[name] for _, name, _ in columns):
            continue
        cells = []
        for _, name, group in columns:
            summary = by_name[name].get(mode)
            cells.append(_cell(summary.get(group) if (summary and group) else summary))
        rows.append([label, *cells])
    header = ["Masks", *(title for title, _, _ in columns)]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines) + "\n(cells: J&F (J, F), x100)"


def format_keypoints(results: Sequence[dict[str, Any]]) -> str:
    lines = []
    for r in results:
        if "keypoints" in r:
            kp = r["keypoints"]
            values = ", ".join(f"{k} {v:.3f}" for k, v in kp["PP"].items())
            lines.append(f"{r['dataset']}: {values} (offset {kp['offset']} px, n={kp['n']}, skipped {kp['skipped']})")
    return "\n".join(lines)
