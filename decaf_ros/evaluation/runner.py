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
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from .datasets import MaskCountMismatch, Sample, frame_stem, iter_samples
from .keypoints import PP_KS, PP_OFFSET, Point, expression_pp, summarize_pp, top_k_points, zero_pp
from .metrics import ExpressionScore, score_expression, summarize_dataset, zero_score

log = logging.getLogger(__name__)

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
                   dtype: str | None = None, coarse_only: bool = False,
                   settings: Mapping[str, Any] | None = None) -> GroundingPipeline:
    """Load ``DecafPipeline`` with the paper defaults, overridden by the given models and ``settings``.

    ``settings`` are DecafConfig fields (prompt versions, image-processor backend, ...).
    """
    # Imported here so that scoring existing predictions needs neither transformers nor the models.
    from decaf_ros.core.config import DecafConfig
    from decaf_ros.core.loading import ModelLoadError
    from decaf_ros.core.pipeline import DecafPipeline

    overrides = {k: v for k, v in {"mllm": mllm, "sam2": sam2, "device": device, "dtype": dtype}.items() if v}
    try:
        config = DecafConfig().with_overrides(**overrides, **dict(settings or {}))
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
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # one per process: shards may share OUT
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


def check_run_settings(out: Path, dataset: str, settings: Mapping[str, Any]) -> None:
    """Refuse to add predictions made with other settings to an OUT folder (they would mix silently).

    The first run records its settings in ``OUT/settings_<dataset>.json``; later runs and the other
    shards must match it. Runs that give no settings (defaults) record and compare the defaults.
    """
    path = out / f"settings_{dataset}.json"
    wanted = {k: settings[k] for k in sorted(settings)}
    if path.is_file():
        recorded = json.loads(path.read_text(encoding="utf-8"))
        if recorded != wanted:
            raise EvaluationError(f"{out} holds {dataset} predictions made with {recorded}; this run asks for "
                                  f"{wanted}: use another --out")
        return
    write_json(path, wanted)


def _method_settings(mllm: str | None, sam2: str | None, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """What decides the predictions of a run: the models and the DecafConfig settings given."""
    from decaf_ros.core.config import DEFAULT_MLLM, DEFAULT_SAM2, VARIANT_FIELDS, DecafConfig

    defaults = {name: getattr(DecafConfig(), name) for name in VARIANT_FIELDS}
    return {"mllm": mllm or DEFAULT_MLLM, "sam2": sam2 or DEFAULT_SAM2, **defaults, **dict(settings or {})}


# ---------------------------------------------------------------------------------------- sharding
def shard_samples(samples: Sequence[Sample], num_shards: int, shard_index: int) -> list[tuple[int, Sample]]:
    """(position, sample) pairs of one shard: position i (in the readers' sorted order) goes to i % N.

    The split depends only on the expression list, never on what is already done, so each shard
    can be resumed on its own and the shards never overlap.
    """
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise EvaluationError(f"--shard-index must be in 0..{num_shards - 1} (got {shard_index}) "
                              f"and --num-shards >= 1 (got {num_shards})")
    return [(i, s) for i, s in enumerate(samples) if i % num_shards == shard_index]


def results_path(out: Path, dataset: str, num_shards: int = 1, shard_index: int = 0) -> Path:
    """``results_<dataset>.json``, or ``results_<dataset>.shard<I>of<N>.json`` for one shard."""
    suffix = f".shard{shard_index}of{num_shards}" if num_shards > 1 else ""
    return out / f"results_{dataset}{suffix}.json"


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

    def add(self, other: "Missing") -> None:
        self.expressions += other.expressions
        self.frames += other.frames


def score_predictions(sample: Sample, folder: Path, gt: np.ndarray, foreground: np.ndarray | None,
                      key_frames_only: bool, missing: Missing) -> ExpressionScore:
    """Score the PNGs in ``folder`` against ``gt`` (every frame, or the saved frames only)."""
    shape = gt.shape[1:]
    preds = [read_mask(folder / f"{frame_stem(name)}.png", shape) for name in sample.frame_names]
    indices = [i for i, p in enumerate(preds) if p is not None] if key_frames_only else list(range(len(gt)))
    if not any(p is not None for p in preds):
        missing.expressions += 1
        return zero_score(sample.video, sample.exp_id, sample.type_id, foreground is not None)
    missing.frames += sum(preds[i] is None for i in indices)
    pred = np.stack([preds[i] if preds[i] is not None else np.zeros(shape, bool) for i in indices])
    fg = foreground[indices] if foreground is not None else None
    return score_expression(pred, gt[indices], video=sample.video, exp_id=sample.exp_id,
                            type_id=sample.type_id, foreground=fg)


def load_keypoints(path: Path) -> list[Point] | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return [tuple(p) for p in data["points"]]  # type: ignore[misc]


@dataclass
class ScoredExpressions:
    """Per-expression scores of some expressions of one dataset; the summaries are computed from these.

    ``positions`` are the expressions' places in the dataset's sorted order: shards are merged by
    them, so a merged set is the unsharded one, record for record and in the same order.
    """

    positions: list[int] = field(default_factory=list)
    scores: dict[str, list[ExpressionScore]] = field(default_factory=dict)  # per mode
    missing: dict[str, Missing] = field(default_factory=dict)
    keypoints: list[dict[str, Any]] = field(default_factory=list)  # {"video", "exp_id", "PP": row | None}
    keypoints_missing: int = 0
    gt_mismatch: list[dict[str, Any]] = field(default_factory=list)


def score_dataset(samples: Sequence[tuple[int, Sample]], out: Path, dataset: str, modes: Sequence[str],
                  show_progress: bool = True) -> ScoredExpressions:
    """Score the saved predictions of ``(position, sample)`` pairs for each mode ("dense", "coarse")."""
    folders = {"dense": out / dataset, "coarse": out / f"{dataset}_coarse"}
    scored = ScoredExpressions(scores={m: [] for m in modes if folders[m].is_dir()})
    scored.missing = {m: Missing() for m in scored.scores}
    with_keypoints = dataset in KEYPOINT_DATASETS and (out / f"{dataset}_keypoints").is_dir()
    for position, sample in tqdm(samples, desc=f"score {dataset}", unit="expr", disable=not show_progress):
        scored.positions.append(position)
        paths = PredictionPaths.of(out, sample)
        try:
            gt = sample.load_gt()
            foreground = sample.foreground_loader() if sample.foreground_loader else None
        except MaskCountMismatch as error:
            _score_unscorable(scored, sample, error)
            if with_keypoints:
                scored.keypoints.append(_keypoint_record(sample, paths.keypoints, None, scored))
            continue
        for mode, per_mode in scored.scores.items():
            folder = paths.dense if mode == "dense" else paths.coarse
            per_mode.append(score_predictions(sample, folder, gt, foreground, mode == "coarse",
                                              scored.missing[mode]))
        if with_keypoints:
            scored.keypoints.append(_keypoint_record(sample, paths.keypoints, gt, scored))
    return scored


def _keypoint_record(sample: Sample, path: Path, gt: np.ndarray | None, scored: ScoredExpressions) -> dict[str, Any]:
    """One expression's PP@K row; None when skipped (§8); zeros without GT (``gt`` None) or keypoints."""
    record: dict[str, Any] = {"video": sample.video, "exp_id": sample.exp_id}
    if sample.files_in_frame_folder() != len(sample.frame_names):
        record["PP"] = None  # skipped, as the reference's keypoint evaluation does, before it reads any mask
        return record
    if gt is None:
        record["PP"] = zero_pp(PP_KS)
        return record
    points = load_keypoints(path)
    if points is None:
        scored.keypoints_missing += 1
    record["PP"] = zero_pp(PP_KS) if points is None else expression_pp(points, gt, PP_KS, PP_OFFSET)
    return record


def _score_unscorable(scored: ScoredExpressions, sample: Sample, error: MaskCountMismatch) -> None:
    """Too few GT masks: the expression scores 0 in every mode, with a warning naming the anno id (§9.1)."""
    log.warning("%s: %s %s scores 0 (too few ground-truth masks): %s", sample.dataset, sample.video,
                sample.exp_id, error)
    scored.gt_mismatch.append({"video": sample.video, "exp_id": sample.exp_id, "anno_id": error.anno_id,
                               "masks": error.n_masks, "frames": error.n_frames})
    for per_mode in scored.scores.values():
        per_mode.append(zero_score(sample.video, sample.exp_id, sample.type_id, sample.foreground_loader is not None))


def summarize_scored(dataset: str, n_expressions: int, scored: ScoredExpressions) -> dict[str, Any]:
    """The results dict of a dataset (summaries + the per-expression records they come from)."""
    grouped = dataset in GROUPED_DATASETS
    results: dict[str, Any] = {"dataset": dataset, "n_expressions": n_expressions,
                               "positions": list(scored.positions), "gt_mismatch": list(scored.gt_mismatch)}
    for mode, per_mode in scored.scores.items():
        results[mode] = summarize_dataset(per_mode, grouped)
        results[f"{mode}_missing"] = vars(scored.missing[mode]).copy()
        results[f"{mode}_expressions"] = [s.to_dict() for s in per_mode]
    if scored.keypoints:
        results["keypoints"] = {"offset": PP_OFFSET, "missing": scored.keypoints_missing,
                                **summarize_pp([r["PP"] for r in scored.keypoints], PP_KS).to_dict()}
        results["keypoints_expressions"] = list(scored.keypoints)
    return results


def scored_from_results(results: Mapping[str, Any]) -> ScoredExpressions:
    """Rebuild the per-expression records of a results dict (inverse of :func:`summarize_scored`)."""
    modes = [m for m in ("dense", "coarse") if f"{m}_expressions" in results]
    return ScoredExpressions(
        positions=[int(p) for p in results["positions"]],
        scores={m: [ExpressionScore(**e) for e in results[f"{m}_expressions"]] for m in modes},
        missing={m: Missing(**results[f"{m}_missing"]) for m in modes},
        keypoints=list(results.get("keypoints_expressions", [])),
        keypoints_missing=int(results.get("keypoints", {}).get("missing", 0)),
        gt_mismatch=list(results.get("gt_mismatch", [])))


# ---------------------------------------------------------------------------------------- driver
def run_evaluation(dataset: str, out: str | Path, root: str | Path | None = None, *,
                   pipeline: GroundingPipeline | None = None, mllm: str | None = None,
                   sam2: str | None = None, device: str | None = None, dtype: str | None = None,
                   settings: Mapping[str, Any] | None = None, coarse_only: bool = False,
                   limit: int | None = None, eval_only: bool = False, num_shards: int = 1,
                   shard_index: int = 0, show_progress: bool = True) -> dict[str, Any]:
    """Predict (unless ``eval_only``) and score one dataset, or one shard of it.

    Writes ``OUT/results_<dataset>.json`` (one shard: ``results_<dataset>.shard<I>of<N>.json``, see
    :func:`merge_shards`). ``pipeline`` replaces the DecAF models (anything with ``ground(frames, query,
    coarse_only=)`` returning ``masks``, ``coarse_masks``, ``key_frame_indices`` and ``fused``); when it
    is None the models are loaded on first need from ``mllm``/``sam2``/``device``/``dtype`` and the
    DecafConfig ``settings`` (prompt versions, image-processor backend).
    """
    out = Path(out)
    samples = list(itertools.islice(iter_samples(dataset, root), limit))
    mine = shard_samples(samples, num_shards, shard_index)
    predicted = 0
    if not eval_only and mine:
        check_run_settings(out, dataset, _method_settings(mllm, sam2, settings))
        predicted = run_predictions([s for _, s in mine], out, pipeline,
                                    lambda: build_pipeline(mllm, sam2, device, dtype, coarse_only, settings),
                                    coarse_only, show_progress)
    modes = ["coarse"] if coarse_only else ["dense", "coarse"]
    results = summarize_scored(dataset, len(samples), score_dataset(mine, out, dataset, modes, show_progress))
    results.update(predicted=predicted, limit=limit, coarse_only=coarse_only)
    if num_shards > 1:
        results["shard"] = {"index": shard_index, "count": num_shards}
    write_json(results_path(out, dataset, num_shards, shard_index), _json_safe(results))
    return results


def merge_shards(dataset: str, out: str | Path, num_shards: int) -> dict[str, Any]:
    """Join the N shard results of a dataset into ``OUT/results_<dataset>.json``.

    Every shard must be present, for the same expression list; each expression must be scored
    exactly once. The summaries are recomputed from the per-expression records in the dataset's
    order, so they equal those of an unsharded run.
    """
    out = Path(out)
    shards = [_load_shard(out, dataset, num_shards, i) for i in range(num_shards)]
    totals = {s["n_expressions"] for s in shards} | {None}
    if len(totals) != 2 or len({s.get("coarse_only") for s in shards}) != 1:
        raise EvaluationError(f"{dataset}: the shard results come from different runs (expression counts "
                              f"{sorted(t for t in totals if t is not None)}); re-run the odd shard")
    total = shards[0]["n_expressions"]
    parts = [scored_from_results(s) for s in shards]
    merged = _merge_scored(parts)
    if sorted(merged.positions) != list(range(total)):
        raise EvaluationError(f"{dataset}: the shards score {len(merged.positions)} expressions, "
                              f"{len(set(merged.positions))} distinct, of {total}")
    results = summarize_scored(dataset, total, merged)
    results.update(predicted=sum(s.get("predicted", 0) for s in shards), limit=shards[0].get("limit"),
                   coarse_only=shards[0].get("coarse_only"), merged_shards=num_shards)
    write_json(results_path(out, dataset), _json_safe(results))
    return results


def _load_shard(out: Path, dataset: str, num_shards: int, index: int) -> dict[str, Any]:
    path = results_path(out, dataset, num_shards, index)
    if not path.is_file():
        raise EvaluationError(f"{dataset}: shard {index} of {num_shards} has no results ({path} is missing); "
                              f"run it with --num-shards {num_shards} --shard-index {index}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("shard") != {"index": index, "count": num_shards} or "positions" not in data:
        raise EvaluationError(f"{path} is not shard {index} of {num_shards}")
    return data


def _merge_scored(parts: Sequence[ScoredExpressions]) -> ScoredExpressions:
    """Concatenate shard records and put them back in dataset order."""
    order = sorted(range(sum(len(p.positions) for p in parts)),
                   key=[pos for p in parts for pos in p.positions].__getitem__)

    def ordered(items: list[Any]) -> list[Any]:
        return [items[i] for i in order]

    modes = [m for m in ("dense", "coarse") if all(m in p.scores for p in parts)]
    merged = ScoredExpressions(positions=ordered([pos for p in parts for pos in p.positions]))
    merged.scores = {m: ordered([s for p in parts for s in p.scores[m]]) for m in modes}
    merged.missing = {m: Missing() for m in modes}
    for m in modes:
        for p in parts:
            merged.missing[m].add(p.missing[m])
    if all(len(p.keypoints) == len(p.positions) for p in parts) and any(p.keypoints for p in parts):
        merged.keypoints = ordered([r for p in parts for r in p.keypoints])
    merged.keypoints_missing = sum(p.keypoints_missing for p in parts)
    by_key = {(r["video"], r["exp_id"]): r for p in parts for r in p.gt_mismatch}
    merged.gt_mismatch = [by_key[k] for k in sorted(by_key)]
    return merged


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
            values = ", ".join(f"{k} {v:.2f}" for k, v in kp["PP"].items())
            lines.append(f"{r['dataset']}: {values} (offset {kp['offset']} px, n={kp['n']}, skipped {kp['skipped']})")
    return "\n".join(lines)
