#!/usr/bin/env python3
"""Benchmark: the Qwen image-processor backends on the frame path of a 16-frame 640x480 clip.

``image_processor_backend`` (docs/method.md §13 item 11) picks the PIL/numpy image processor the
reference loads (``pil``, the default: bit-identical frame-path pixels) or transformers' fast one
(``torchvision``). This times what the backend changes, the processor call of every frame-path
batch as the Qwen2.5-VL adapter makes it (frames already resized to their final size, batches of
``frame_batch_size``), for both backends side by side in one process, alternating runs, and prints
the best and median wall time and the best CPU time of each, and their ratios (with the threads pinned,
CPU time does not count waiting for other processes). It also reports how many pixel values differ.

The processors are loaded through the adapter's own loading code from a tiny Qwen2.5-VL folder
built on the spot (its processor has the real Qwen2.5-VL settings: 14-px patches, 2x2 merge,
CLIP mean/std), or from ``--model DIR``. Run with the installed package:

    .venv/bin/python bench/bench_processor.py [--threads 1] [--repeats 7] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from decaf_ros.core.config import IMAGE_PROCESSOR_BACKENDS, DecafConfig  # noqa: E402
from decaf_ros.core.models.qwen2_5_vl.adapter import Qwen2_5_VLAdapter, resize_frames, video_frame_size  # noqa: E402
from decaf_ros.core.prompts import normalize_expression, object_class_prompt  # noqa: E402


def frame_path_images(num_frames: int, height: int, width: int, config: DecafConfig) -> list[np.ndarray]:
    """A random clip resized to the frame-path size the adapter uses (2x the video grid per side)."""
    rng = np.random.default_rng(0)
    clip = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(num_frames)]
    vh, vw = video_frame_size(height, width, config.video_max_tokens)  # multiples of the 28-px token
    return resize_frames(clip, (vh * config.frame_resize_scale, vw * config.frame_resize_scale))


def process_frames(processor, images: list[np.ndarray], prompt: str, batch: int) -> torch.Tensor:
    """The frame path's processor calls (one per batch); -> all pixel_values."""
    chat = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
        add_generation_prompt=True, tokenize=False)
    pixels = []
    for start in range(0, len(images), batch):
        part = images[start:start + batch]
        inputs = processor(text=[chat] * len(part), images=part, return_tensors="pt", padding=True,
                           images_kwargs={"do_resize": False})
        pixels.append(inputs["pixel_values"])
    return torch.cat(pixels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="Qwen2.5-VL folder (default: a tiny one built in a temporary folder)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", default="640x480", help="WxH of the camera frames")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per backend (alternating)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (pinned)")
    parser.add_argument("--json", help="write the results to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.lower().split("x"))
    config = DecafConfig()
    with tempfile.TemporaryDirectory() as tmp:
        source = args.model
        if source is None:
            from decaf_ros.core.models.qwen2_5_vl.tiny import build_tiny_qwen2_5_vl

            source = str(build_tiny_qwen2_5_vl(Path(tmp) / "qwen"))
        processors = {b: Qwen2_5_VLAdapter._load_processor(source, config.with_overrides(image_processor_backend=b))
                      for b in IMAGE_PROCESSOR_BACKENDS}
        images = frame_path_images(args.frames, height, width, config)
        prompt = object_class_prompt(normalize_expression("the red mug"))
        # warm-up run of each backend; its pixels are compared below
        pixels = {b: process_frames(p, images, prompt, config.frame_batch_size) for b, p in processors.items()}
        wall: dict[str, list[float]] = {b: [] for b in processors}
        cpu: dict[str, list[float]] = {b: [] for b in processors}
        for _ in range(args.repeats):
            for backend, processor in processors.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                process_frames(processor, images, prompt, config.frame_batch_size)
                wall[backend].append(time.perf_counter() - start)
                cpu[backend].append(time.process_time() - start_cpu)
    slow, fast = pixels["pil"], pixels["torchvision"]
    report = {
        "clip": f"{args.frames} frames {width}x{height}", "frame_path_size": list(images[0].shape[:2]),
        "threads": args.threads, "repeats": args.repeats,
        "classes": {b: type(p.image_processor).__name__ for b, p in processors.items()},
        "wall_s": wall, "cpu_s": cpu,
        "min_wall_s": {b: min(t) for b, t in wall.items()},
        "median_wall_s": {b: statistics.median(t) for b, t in wall.items()},
        "min_cpu_s": {b: min(t) for b, t in cpu.items()},
        "pixel_values": int(slow.numel()), "differing_fraction": float((slow != fast).float().mean()),
        "max_abs_difference": float((slow - fast).abs().max()),
    }
    for kind in ("min_wall_s", "median_wall_s", "min_cpu_s"):
        report[f"ratio_{kind}"] = report[kind]["torchvision"] / report[kind]["pil"]
    print(f"frame-path image processing, {report['clip']} -> {images[0].shape[1]}x{images[0].shape[0]} per frame, "
          f"batches of {config.frame_batch_size}, {args.threads} thread(s), {args.repeats} alternating runs each:")
    print(f"  {'backend':<12} {'class':<26} {'min wall':>10} {'median wall':>12} {'min CPU':>10}")
    for backend in processors:
        print(f"  {backend:<12} {report['classes'][backend]:<26} {report['min_wall_s'][backend] * 1000:8.1f} ms "
              f"{report['median_wall_s'][backend] * 1000:9.1f} ms {report['min_cpu_s'][backend] * 1000:8.1f} ms")
    print(f"  ratio torchvision / pil: min wall {report['ratio_min_wall_s']:.3f}, median wall "
          f"{report['ratio_median_wall_s']:.3f}, min CPU {report['ratio_min_cpu_s']:.3f} "
          "(CPU time is the robust one on a shared machine)")
    print(f"  pixel values differing: {report['differing_fraction']:.1%} of {report['pixel_values']}, "
          f"max |difference| {report['max_abs_difference']:.3g}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
