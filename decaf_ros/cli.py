"""decaf-segment: run DecAF offline on a video file or a folder of frames.

Writes one 0/255 PNG mask per frame, an overlay video plus an image strip of the key frames, and a
JSON summary. Example::

    decaf-segment clip.mp4 "what you would use to cut the rope" --out out/ --device cuda
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .cli_options import add_sharing_options, add_variant_options, sharing_settings, variant_settings
from .core.config import DTYPES, DecafConfig
from .core.loading import ModelLoadError
from .core.overlay import draw_overlay, image_strip
from .core.pipeline import ATTENTION_STAGES, GROUND_STAGES, DecafPipeline, InputError, validate_query
from .core.result import GroundingResult

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class CliError(RuntimeError):
    """A user-facing problem with the command line input."""


def read_frames(source: Path) -> tuple[list[np.ndarray], list[str]]:
    """Frames (RGB uint8) and their names from a folder of images or a video file."""
    if not source.exists():
        raise CliError(f"input not found: {source}")
    if source.is_dir():
        return _read_folder(source)
    return _read_video(source)


def _read_folder(folder: Path) -> tuple[list[np.ndarray], list[str]]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise CliError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    frames = []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise CliError(f"cannot read image {path}")
        frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    return frames, [p.stem for p in paths]


def _read_video(path: Path) -> tuple[list[np.ndarray], list[str]]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    if not frames:
        raise CliError(f"cannot read any frame from {path} (not a video OpenCV can decode?)")
    return frames, [f"{i:05d}" for i in range(len(frames))]


def write_outputs(
    out: Path, frames: list[np.ndarray], names: list[str], result: GroundingResult, fps: float,
) -> dict:
    """Write masks, overlays and the summary; return the summary dict."""
    mask_dir = out / "masks"
    mask_dir.mkdir(parents=True, exist_ok=True)
    written = result.key_frame_indices if result.coarse_only else range(len(frames))
    for i in tqdm(written, desc="writing masks", unit="frame", leave=False):
        cv2.imwrite(str(mask_dir / f"{names[i]}.png"), result.masks[i].astype(np.uint8) * 255)
    overlays = _overlays(frames, result)
    _write_video(out / "overlay.mp4", overlays, fps)
    strip = image_strip([overlays[i] for i in result.key_frame_indices])
    cv2.imwrite(str(out / "overlay_key_frames.png"), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    summary = _summary(result, names)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _overlays(frames: list[np.ndarray], result: GroundingResult) -> list[np.ndarray]:
    if result.coarse_only:
        per_frame = [result.masks[i][None] for i in range(len(frames))]
        return [draw_overlay(f, m, [result.obj_name]) for f, m in zip(frames, per_frame)]
    labels = [f"{result.obj_name} {s:.2f}" for s in result.target_scores]
    return [draw_overlay(f, result.target_masks[:, i], labels) for i, f in enumerate(frames)]


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _summary(result: GroundingResult, names: list[str]) -> dict:
    return {
        "query": result.query,
        "object_name": result.obj_name,
        "candidates": result.candidates,
        "coarse_only": result.coarse_only,
        "num_frames": len(names),
        "key_frames": [names[i] for i in result.key_frame_indices],
        "num_targets": result.num_targets,
        "target_scores": [float(s) for s in result.target_scores],
        "tracklets": [
            {"origin_key_frame": t.origin, "attention": t.attention, "sam_iou": t.sam_iou,
             "consistency": t.consistency, "score": t.score, "kept": i in result.kept}
            for i, t in enumerate(result.tracklets)],
        "mask_area_px": [int(m.sum()) for m in result.masks],
        "timings_s": {k: round(v, 4) for k, v in result.timings.items()},
    }


def build_parser() -> argparse.ArgumentParser:
    defaults = DecafConfig()
    parser = argparse.ArgumentParser(prog="decaf-segment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="video file or folder of frames (sorted by name)")
    parser.add_argument("query", help="what to segment, in plain language")
    parser.add_argument("--out", type=Path, default=Path("decaf_out"), help="output folder (default: decaf_out)")
    parser.add_argument("--mllm", default=defaults.mllm, help="MLLM hub id or local folder")
    parser.add_argument("--sam2", default=defaults.sam2, help="SAM2 hub id or local folder")
    parser.add_argument("--tiny", action="store_true",
                        help="use the built-in tiny random models with reduced settings (plumbing check; masks are "
                             "meaningless; overrides --mllm, --sam2, --key-frames, --video-max-tokens, "
                             "--max-new-tokens and --rollout-start-layer)")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default=defaults.dtype, choices=DTYPES, help="MLLM dtype")
    parser.add_argument("--coarse-only", action="store_true", help="attention masks only (key frames), no SAM2")
    parser.add_argument("--key-frames", type=int, default=defaults.num_key_frames, help="number of key frames")
    parser.add_argument("--rollout-start-layer", type=int, default=None, help="default: half the LLM depth")
    parser.add_argument("--video-max-tokens", type=int, default=defaults.video_max_tokens,
                        help="visual-token budget per temporal slot on the video path")
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                        help="generation length of the object-class answers")
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the overlay video")
    add_variant_options(parser)
    add_sharing_options(parser)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    validate_query(args.query)
    frames, names = read_frames(args.input)
    config = DecafConfig(mllm=args.mllm, sam2=args.sam2, device=args.device, dtype=args.dtype,
                         num_key_frames=args.key_frames, rollout_start_layer=args.rollout_start_layer,
                         video_max_tokens=args.video_max_tokens, max_new_tokens=args.max_new_tokens,
                         **variant_settings(args), **sharing_settings(args))
    if args.tiny:
        from .devtools.tiny_models import tiny_config, tiny_warning

        config = tiny_config(config)
        print(f"decaf-segment: {tiny_warning(config, '--tiny was given')}", file=sys.stderr)
    pipeline = DecafPipeline.from_config(config, load_sam2=not args.coarse_only)
    stages = ATTENTION_STAGES if args.coarse_only else GROUND_STAGES
    with tqdm(total=len(stages), desc="grounding", unit="stage") as bar:
        started: list[str] = []

        def advance(stage: str) -> None:  # called as each stage starts
            if started:
                bar.update(1)
            started.append(stage)
            bar.set_postfix_str(stage)
        result = pipeline.ground(frames, args.query, coarse_only=args.coarse_only, progress=advance)
        bar.update(bar.total - bar.n)
    summary = write_outputs(args.out, frames, names, result, args.fps)
    print(f"'{summary['object_name']}': {summary['num_targets']} target(s) over {len(frames)} frames "
          f"→ {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except (CliError, InputError, ModelLoadError, ValueError) as error:
        print(f"decaf-segment: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
