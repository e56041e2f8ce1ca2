#!/usr/bin/env python3
"""Live grounding, side by side in one run: the reference computation vs compute-each-thing-once.

Two ``DecafPipeline.ground`` runs on the same clip and the same models:
  off  ``share_prompt_prefix=False, share_sam2_features=False``: every prompt runs in full, every
       SAM2 session encodes its own frames (the reference computation);
  on   both sharing options (the defaults): P3 runs only its suffix on P1's visual-prefix KV cache
       and reuses the prefix rows' V-Max sums; one SAM2 image-feature cache per grounding.
For each: per-stage seconds (the pipeline's stage clock), the MLLM stage (P1, P2, P3 on both
paths), LLM prefill token-layers (a hook on the language model), SAM2 image-encoder calls, goal ->
coarse result (the ``on_coarse`` callback) and goal -> dense result, peak GPU memory on CUDA, and
optionally the tracking rate after the grounding. Then the ratios off / on and the identity
checks: the largest relative difference of any rollout row (max |on - off| / max |off| per row,
every P1/P3 pass and frame batch), of F, and whether the coarse and dense masks are identical.
``first_result_ratio`` compares when a caller first gets masks: today (off) only when ``ground``
returns, live (on) at the coarse result.

Models: ``--mllm mid`` (default) is a random-weight Qwen2.5-VL of the 7B's layout scaled down
(``MID_QWEN2_5_VL``: vision tower and MLP dominate the prefill as in the real model, small enough
for a 2-core CPU at the reference sizes) or any published architecture of
``core/models/<family>/configs.py`` (e.g. qwen2.5-vl-7b); ``--sam2 tiny`` (the tiny random SAM2) or a published
SAM2.1 (e.g. sam2.1-hiera-large). Random weights make answers and masks meaningless; the amount of
work is the real one. ``--smoke`` shrinks everything for a test. bench/gpu_live.sh runs this with the
real 7B and SAM2.1-L on a GPU.
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: never wait on a hub

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from decaf_ros.benchmark import (  # noqa: E402
    QUERY,
    build_real_mllm,
    build_real_sam2,
    centre_box_mask,
    set_config,
    synthetic_clip,
)
from decaf_ros.core.config import DecafConfig  # noqa: E402
from decaf_ros.core.loading import pick_device, pick_dtype  # noqa: E402
from decaf_ros.core.pipeline import DecafPipeline  # noqa: E402
from decaf_ros.core.rollout import VMaxRollout  # noqa: E402
from decaf_ros.core.models.sam2.segmenter import Sam2Segmenter  # noqa: E402
from decaf_ros.devtools.tiny_models import build_tiny_models  # noqa: E402

MODES = {"off": dict(share_prompt_prefix=False, share_sam2_features=False),
         "on": dict(share_prompt_prefix=True, share_sam2_features=True)}
MLLM_STAGES = ("p1_video", "p1_frames", "p2_choice", "p3_video", "p3_frames")
SAM2_STAGES = ("sam2_stage1", "tracklet_scoring", "sam2_propagation")
# Qwen2.5-VL-7B's layout (head dim 128 with its mRoPE sections, GQA, MLP 5.3x the width, a windowed
# ViT with a full-attention block, 14 px patches, 2x2 merge) at a width and depth a 2-core CPU
# runs the reference sizes with.
MID_QWEN2_5_VL: dict[str, Any] = {
    "hidden_size": 256, "intermediate_size": 1344, "num_hidden_layers": 4, "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "vision_config": {"depth": 4, "hidden_size": 128, "intermediate_size": 320, "num_heads": 2,
                      "fullatt_block_indexes": [3], "out_hidden_size": 256},
}
# The smoke size also shrinks the vocabulary (the embedding would dominate a model this small)
# and the mRoPE sections to its head dim of 32; larger initial weights make its attention less
# flat, so F has peaks and SAM2 gets clicks (flat attention leaves the shorter P3 ahead everywhere).
SMOKE_QWEN2_5_VL: dict[str, Any] = {
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
    "num_key_value_heads": 1, "vocab_size": 4096, "initializer_range": 0.3,
    "rope_scaling": {"mrope_section": [4, 6, 6]},
    "vision_config": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                      "fullatt_block_indexes": [1], "out_hidden_size": 64},
}
RATIO_KEYS = ("mllm_time_ratio", "mllm_token_layers_ratio", "sam2_encoder_calls_ratio", "ground_time_ratio",
              "first_result_ratio", "shared_row_max_rel_diff")


# =========================================================================== models
def build_pipeline(args: argparse.Namespace, config: DecafConfig) -> DecafPipeline:
    """The MLLM (random weights, seeded) and SAM2 named by the arguments, joined in a pipeline."""
    device = pick_device(config.device)
    torch.manual_seed(args.seed)
    shape = SMOKE_QWEN2_5_VL if args.smoke else MID_QWEN2_5_VL
    name, shape = ("qwen2.5-vl-7b", shape) if args.mllm == "mid" else (args.mllm, None)
    mllm = build_real_mllm(name, device, pick_dtype(config.dtype, device), config, shape=shape)
    if args.sam2 == "tiny":
        _, sam2_dir = build_tiny_models(Path(args.tiny_dir) if args.tiny_dir else None)
        sam2 = Sam2Segmenter.from_pretrained(sam2_dir, device=device, dtype="float32")
    else:
        sam2 = build_real_sam2(args.sam2, device)
    mllm.model.generation_config.min_new_tokens = config.max_new_tokens  # every answer decodes as long
    return DecafPipeline(mllm, sam2, config)


def base_config(args: argparse.Namespace) -> DecafConfig:
    extra = {} if args.point_threshold is None else {"point_threshold": args.point_threshold}
    return DecafConfig(device=args.device, dtype=args.dtype, num_key_frames=args.key_frames,
                       video_max_tokens=args.video_max_tokens, frame_batch_size=args.frame_batch,
                       max_new_tokens=args.gen_tokens, **extra)


# =========================================================================== measurement
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def recorded_rows() -> Iterator[list[torch.Tensor]]:
    """The visual part of every rollout row ``VMaxRollout.last_token_row`` returns, in call order.

    One (B, |V|) tensor per pass or frame batch: the values the maps are made of. (The whole row
    also holds the last token's own entry, orders of magnitude larger, which would hide them.)
    """
    rows: list[torch.Tensor] = []
    original = VMaxRollout.last_token_row

    def recording(self: VMaxRollout) -> torch.Tensor:
        row = original(self)
        visual = self.visual_key_mask.to(row.device)
        rows.append(torch.stack([row[i][visual[i]] for i in range(row.shape[0])]).float().cpu())
        return row

    VMaxRollout.last_token_row = recording
    try:
        yield rows
    finally:
        VMaxRollout.last_token_row = original


class StageCpuTime:
    """``progress`` callback: CPU seconds of this process (all threads) per pipeline stage.

    On a shared CPU, wall time also counts the other processes' turns; CPU time counts the work
    done. A stage ends when the next one is announced (``stage(None)`` ends the last); on CUDA each
    boundary synchronises first, so queued kernels are waited for before the clock is read.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def stage(self, name: str | None) -> None:
        sync(self.device)
        now = time.process_time()
        if self._current is not None:
            previous, since = self._current
            self.seconds[previous] = self.seconds.get(previous, 0.0) + now - since
        self._current = None if name is None else (name, now)


def measure(pipeline: DecafPipeline, frames: Sequence[np.ndarray], track_frames: int) -> dict[str, Any]:
    """One grounding (then optional tracking) with the pipeline's current settings."""
    device = pipeline.sam2.device
    mllm, sam2 = pipeline.mllm, pipeline.sam2
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    work, calls = mllm.prefill_token_layers, sam2.image_encoder_calls
    coarse_at: list[float] = []

    def on_coarse(_result: Any) -> None:
        sync(device)
        coarse_at.append(time.perf_counter())
        coarse_cpu_at.append(time.process_time())

    coarse_cpu_at: list[float] = []
    cpu = StageCpuTime(device)
    sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    with recorded_rows() as rows:
        result = pipeline.ground(frames, QUERY, on_coarse=on_coarse, progress=cpu.stage)
    sync(device)
    end, end_cpu = time.perf_counter(), time.process_time()
    cpu.stage(None)
    timings = {name: float(seconds) for name, seconds in result.timings.items()}
    out = {
        "stages_s": timings,
        "stages_cpu_s": cpu.seconds,
        "mllm_s": sum(timings.get(name, 0.0) for name in MLLM_STAGES),
        "mllm_cpu_s": sum(cpu.seconds.get(name, 0.0) for name in MLLM_STAGES),
        "sam2_s": sum(timings.get(name, 0.0) for name in SAM2_STAGES),
        "sam2_cpu_s": sum(cpu.seconds.get(name, 0.0) for name in SAM2_STAGES),
        "goal_to_coarse_s": coarse_at[0] - start,
        "goal_to_dense_s": end - start,
        "goal_to_coarse_cpu_s": coarse_cpu_at[0] - start_cpu,
        "goal_to_dense_cpu_s": end_cpu - start_cpu,
        "prefill_token_layers": mllm.prefill_token_layers - work,
        "sam2_encoder_calls": sam2.image_encoder_calls - calls,
        "tracklets": len(result.tracklets), "kept": len(result.kept),
        "rollout_rows": len(rows),
    }
    if device.type == "cuda":
        out["gpu_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    if track_frames:
        out["tracking"] = measure_tracking(pipeline, result, frames, track_frames)
    return {"summary": out, "result": result, "rows": rows}


def measure_tracking(pipeline: DecafPipeline, result: Any, frames: Sequence[np.ndarray], steps: int) -> dict:
    """Stream from the clip's last frame; ``steps`` single-frame updates walking back through the clip."""
    device = pipeline.sam2.device
    sync(device)
    start = time.perf_counter()
    targets = pipeline.start_tracking(frames[-1], result) if result.num_targets else 0
    step = pipeline.track
    if targets == 0:  # random weights kept no target on the last frame: track a fixed box instead
        pipeline.sam2.start_stream(frames[-1], centre_box_mask(*frames[-1].shape[:2])[None])
        targets, step = 1, pipeline.sam2.track
    sync(device)
    start_s = time.perf_counter() - start
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        step(frames[(len(frames) - 2 - i) % len(frames)])
        sync(device)
        times.append(time.perf_counter() - t0)
    pipeline.stop_tracking()
    pipeline.sam2.stop_stream()
    per_frame = float(np.median(times))
    return {"objects": targets, "start_s": start_s, "frames": steps, "per_frame_p50_s": per_frame,
            "frames_per_s": 1.0 / per_frame if per_frame > 0 else float("inf")}


def max_row_rel_diff(rows_on: list[torch.Tensor], rows_off: list[torch.Tensor]) -> float:
    """max over passes and items of max_{k∈V} |on - off| / max_{k∈V} |off| (each row on its own scale)."""
    if len(rows_on) != len(rows_off) or not rows_off:
        raise RuntimeError(f"the runs made {len(rows_on)} and {len(rows_off)} rollout rows")
    worst = 0.0
    for on, off in zip(rows_on, rows_off):
        scale = off.abs().amax(dim=-1).clamp_min(torch.finfo(torch.float32).tiny)
        worst = max(worst, float(((on - off).abs().amax(dim=-1) / scale).max()))
    return worst


def compare(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Ratios off / on and the identity checks between the two results."""
    off, on = runs["off"]["summary"], runs["on"]["summary"]
    r_off, r_on = runs["off"]["result"], runs["on"]["result"]

    def ratio(key_off: str, key_on: str | None = None) -> float:
        denominator = on[key_on or key_off]
        return float(off[key_off] / denominator) if denominator else None  # nothing to compare

    return {
        "mllm_time_ratio": ratio("mllm_s"),
        "mllm_cpu_time_ratio": ratio("mllm_cpu_s"),
        "sam2_cpu_time_ratio": ratio("sam2_cpu_s"),
        "ground_cpu_time_ratio": ratio("goal_to_dense_cpu_s"),
        "mllm_token_layers_ratio": ratio("prefill_token_layers"),
        "sam2_encoder_calls_ratio": ratio("sam2_encoder_calls"),
        "ground_time_ratio": ratio("goal_to_dense_s"),
        "first_result_ratio": ratio("goal_to_dense_s", "goal_to_coarse_s"),
        "first_result_cpu_ratio": ratio("goal_to_dense_cpu_s", "goal_to_coarse_cpu_s"),
        "coarse_before_dense_ratio": float(on["goal_to_dense_s"] / on["goal_to_coarse_s"]),
        "shared_row_max_rel_diff": max_row_rel_diff(runs["on"]["rows"], runs["off"]["rows"]),
        "fused_max_abs_diff": float((r_on.fused - r_off.fused).abs().max()),
        "coarse_masks_identical": bool(np.array_equal(r_on.coarse_masks, r_off.coarse_masks)),
        "coarse_mask_pixels_differing": int((r_on.coarse_masks != r_off.coarse_masks).sum()),
        "tracklet_score_max_abs_diff": _score_diff(r_on.tracklet_scores, r_off.tracklet_scores),
        "kept_identical": r_on.kept == r_off.kept,
        "dense_masks_identical": bool(np.array_equal(r_on.masks, r_off.masks)
                                      and np.array_equal(r_on.target_masks, r_off.target_masks)),
        "tracklet_scores_identical": r_on.tracklet_scores == r_off.tracklet_scores,
        "answers_identical": r_on.candidates == r_off.candidates and r_on.obj_name == r_off.obj_name,
    }


def _score_diff(a: list[float], b: list[float]) -> float | None:
    """Largest |Δ s_trk| between the two runs' tracklets (None when the runs made different tracklets)."""
    if len(a) != len(b):
        return None
    return float(np.max(np.abs(np.subtract(a, b)))) if a else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = base_config(args)
    pipeline = build_pipeline(args, config)
    width, height = args.size
    frames = synthetic_clip(max(args.frames, args.key_frames), width, height)
    progress(f"warm-up ({pipeline.mllm.model.dtype}, {pipeline.sam2.device})")
    set_config(pipeline, config.with_overrides(num_key_frames=2, video_max_tokens=min(16, args.video_max_tokens)))
    pipeline.ground(frames[:2], QUERY)  # lazy initialisation, kernel choice, allocator growth
    runs = {}
    for mode in args.order:
        set_config(pipeline, config.with_overrides(**MODES[mode]))
        progress(f"sharing {mode}: {len(frames)} frames {width}x{height}, {args.key_frames} key frames")
        runs[mode] = measure(pipeline, frames, args.track_frames if mode == "on" else 0)
        done = runs[mode]["summary"]
        progress(f"sharing {mode}: goal -> coarse {done['goal_to_coarse_s']:.3f} s, goal -> dense "
                 f"{done['goal_to_dense_s']:.3f} s, {done['tracklets']} tracklets, "
                 f"{done['sam2_encoder_calls']} SAM2 encoder calls")
    mllm = pipeline.mllm
    report = {
        "meta": meta(args),
        "models": {"mllm": args.mllm, "mllm_shape": SMOKE_QWEN2_5_VL if args.smoke else (
            MID_QWEN2_5_VL if args.mllm == "mid" else "published"),
            "mllm_params": sum(p.numel() for p in mllm.model.parameters()),
            "sam2": args.sam2, "sam2_params": sum(p.numel() for p in pipeline.sam2.model.parameters()),
            "mllm_dtype": str(mllm.model.dtype).replace("torch.", ""), "llm_layers": mllm.num_layers,
            "rollout_start_layer": mllm.start_layer},
        "settings": {"frames": len(frames), "width": width, "height": height, "key_frames": args.key_frames,
                     "point_threshold": config.point_threshold,
                     "video_max_tokens": args.video_max_tokens, "frame_batch": args.frame_batch,
                     "generated_tokens": args.gen_tokens},
        "off": runs["off"]["summary"], "on": runs["on"]["summary"],
    }
    report.update(compare(runs))
    return report


# =========================================================================== report
def format_report(report: dict[str, Any]) -> str:
    off, on = report["off"], report["on"]
    m, s = report["models"], report["settings"]
    lines = [f"bench_live: {m['mllm']} ({m['mllm_params'] / 1e6:.1f}M, {m['mllm_dtype']}, rollout layers "
             f"{m['rollout_start_layer']}..{m['llm_layers'] - 1}) + SAM2 {m['sam2']} "
             f"({m['sam2_params'] / 1e6:.1f}M) on {report['meta']['device']}; clip {s['frames']} frames "
             f"{s['width']}x{s['height']}, {s['key_frames']} key frames; tracklets off/on "
             f"{off['tracklets']}/{on['tracklets']}, kept {off['kept']}/{on['kept']}", "",
             f"{'':<24}{'sharing off':>14}{'sharing on':>14}{'off / on':>10}"]

    def row(label: str, a: float, b: float, spec: str = ".3f") -> None:
        lines.append(f"{label:<24}{a:>14{spec}}{b:>14{spec}}{(a / b if b else float('inf')):>9.2f}x")

    for name in sorted(set(off["stages_s"]) | set(on["stages_s"]), key=list(off["stages_s"]).index):
        row(f"  {name} s", off["stages_s"].get(name, 0.0), on["stages_s"].get(name, 0.0))
    row("MLLM stage s", off["mllm_s"], on["mllm_s"])
    row("MLLM stage CPU s", off["mllm_cpu_s"], on["mllm_cpu_s"])
    row("SAM2 stages s", off["sam2_s"], on["sam2_s"])
    row("SAM2 stages CPU s", off["sam2_cpu_s"], on["sam2_cpu_s"])
    row("prefill token-layers", off["prefill_token_layers"], on["prefill_token_layers"], ".0f")
    row("SAM2 encoder calls", off["sam2_encoder_calls"], on["sam2_encoder_calls"], ".0f")
    row("goal -> coarse s", off["goal_to_coarse_s"], on["goal_to_coarse_s"])
    row("goal -> dense s", off["goal_to_dense_s"], on["goal_to_dense_s"])
    row("goal -> coarse CPU s", off["goal_to_coarse_cpu_s"], on["goal_to_coarse_cpu_s"])
    row("goal -> dense CPU s", off["goal_to_dense_cpu_s"], on["goal_to_dense_cpu_s"])
    if "gpu_peak_gib" in on:
        row("GPU peak GiB", off["gpu_peak_gib"], on["gpu_peak_gib"])
    if "tracking" in on:
        t = on["tracking"]
        lines.append(f"tracking ({t['objects']} object(s)): {t['frames_per_s']:.1f} frames/s "
                     f"(p50 {t['per_frame_p50_s'] * 1e3:.1f} ms over {t['frames']} frames), start {t['start_s']:.3f} s")
    lines += ["", f"first result (off: at goal -> dense, on: at goal -> coarse): {report['first_result_ratio']:.2f}x "
              f"sooner (CPU time {report['first_result_cpu_ratio']:.2f}x); on: dense {report['coarse_before_dense_ratio']:.2f}x "
              "after coarse",
              f"identical? rows (visual part) max rel diff {report['shared_row_max_rel_diff']:.2e}; F max abs diff "
              f"{report['fused_max_abs_diff']:.2e}; coarse masks {report['coarse_masks_identical']} "
              f"({report['coarse_mask_pixels_differing']} px differ); tracklet scores max abs diff "
              f"{report['tracklet_score_max_abs_diff']}; kept {report['kept_identical']}; dense masks "
              f"{report['dense_masks_identical']}; answers {report['answers_identical']}"]
    return "\n".join(lines)


def meta(args: argparse.Namespace) -> dict[str, Any]:
    import transformers

    cuda = torch.cuda.is_available() and args.device != "cpu"
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:], "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": torch.get_num_threads(), "order": args.order,
            "device": torch.cuda.get_device_name(0) if cuda else f"cpu ({platform.machine()})"}


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


# =========================================================================== CLI
def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_live", description=__doc__.split("\n\n")[0])
    p.add_argument("--mllm", default="mid", help="'mid' (scaled-down Qwen2.5-VL-7B layout) or a published "
                   "architecture (core/models/<family>/configs.py), e.g. qwen2.5-vl-7b")
    p.add_argument("--sam2", default="tiny", help="'tiny' or a published SAM2.1, e.g. sam2.1-hiera-large")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda[:N]")
    p.add_argument("--dtype", default="auto", help="MLLM dtype: auto (bf16 on cuda, fp32 on cpu), float32, ...")
    p.add_argument("--frames", type=int, default=16, help="clip length (raised to --key-frames)")
    p.add_argument("--key-frames", type=int, default=16, help="key frames (paper: 16)")
    p.add_argument("--size", type=_size, default=(640, 480), help="frame size WxH (default 640x480)")
    p.add_argument("--video-max-tokens", type=int, default=400, help="video tokens per temporal slot (paper: 400)")
    p.add_argument("--frame-batch", type=int, default=4, help="key frames per frame-path forward (paper: 4)")
    p.add_argument("--gen-tokens", type=int, default=4, help="tokens generated per P1/P2 answer (default 4)")
    p.add_argument("--track-frames", type=int, default=0, help="streaming frames to time after the shared run")
    p.add_argument("--order", default="off,on", type=lambda t: [m.strip() for m in t.split(",")],
                   help="run order of the two modes (default off,on)")
    p.add_argument("--point-threshold", type=float, default=None,
                   help="SAM2 click threshold tau_pq (default: the reference 0.8); random weights can make "
                   "F flat enough for very many clicks, and SAM2 tracks every click's object")
    p.add_argument("--seed", type=int, default=0, help="seed of the random MLLM weights")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared CPU more threads mostly wait)")
    p.add_argument("--tiny-dir", default=None, help="folder for the tiny SAM2 (default: user cache)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes for a quick functional check (a test)")
    p.add_argument("--json", default=None, help="write the report here")
    args = p.parse_args(argv)
    if sorted(args.order) != ["off", "on"]:
        p.error("--order must name off and on once each")
    if args.smoke:
        args.key_frames, args.frames, args.size, args.video_max_tokens = 3, 5, (112, 84), 12
        args.frame_batch, args.gen_tokens = 2, 2
        args.track_frames = min(args.track_frames, 2)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    report = run(args)
    print(format_report(report), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
