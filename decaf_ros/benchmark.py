"""decaf-bench: per-stage latency and peak memory of DecAF grounding and tracking.

Runs ``DecafPipeline.ground`` on a synthetic clip and reports, per stage (P1/P2/P3 passes,
fusion, coarse masks, SAM2 stage 1, tracklet scoring, SAM2 full propagation):
  - wall time (the pipeline's own stage clock),
  - the part spent in the attention rollout (``VMaxRollout.add_layer``/``add_layer_qk`` +
    ``last_token_row``; fed Q/K, that includes the blockwise fp32 probability recomputation)
    and in the capture's whole-layer probability function (when the capture uses it), measured
    by wrapping those functions for the duration of the run (the core modules are not modified),
  - peak CPU RSS (Linux VmHWM, reset at every stage start) and, on CUDA, peak allocated GPU
    memory (``torch.cuda.max_memory_allocated``, reset at every stage start);
then streaming tracking per frame, and a side-by-side of the streaming rollout against the
reference computation (whole-layer fp32 probabilities + ``naive_vmax_rollout``) on the very layers
the capture saw in one P3 video pass and one P3 frame batch.

Model sets: ``tiny`` (the tiny random Qwen2.5-VL + SAM2, always available), ``tiny-all`` (the
tiny model of every MLLM family, each with the tiny SAM2), and the real architectures (every
MLLM in ``core.model_configs``: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL3, LLaVA-OneVision; SAM2.1
hiera tiny/large) built from their published configs with random weights — no download. Real sizes need a GPU; on CPU they are skipped unless
``--allow-cpu-real``. Random weights make answers and masks meaningless: only the amount of
work (token counts, generated tokens, number of SAM2 objects, all reported) is realistic.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core import capture as capture_mod
from .core.config import DecafConfig
from .core.frames import key_frame_indices
from .devtools.memory import rel_diff, reset_rss_peak, rss_mb, rss_peak_mb
from .core.pipeline import DecafPipeline, build_tiny_models
from .core.rollout import VMaxRollout, naive_vmax_rollout

STAGES = ("p1_video", "p1_frames", "p2_choice", "p3_video", "p3_frames", "fusion", "coarse_masks",
          "sam2_stage1", "tracklet_scoring", "sam2_propagation")
REAL_PAIRS = (("qwen2.5-vl-3b", "sam2.1-hiera-tiny"), ("qwen2.5-vl-7b", "sam2.1-hiera-large"))
# Tiny MLLM sets: name -> (folder under the tiny-model directory, builder in core.tiny).
# "tiny" is the Qwen2.5-VL model build_tiny_models() writes; the others are built on first use.
TINY_MLLMS: dict[str, tuple[str, str]] = {
    "tiny": ("qwen2_5_vl", "decaf_ros.core.models.qwen2_5_vl.tiny:build_tiny_qwen2_5_vl"),
    "tiny-qwen2-vl": ("qwen2_vl", "decaf_ros.core.models.qwen2_5_vl.tiny:build_tiny_qwen2_vl"),
    "tiny-qwen3-vl": ("qwen3_vl", "decaf_ros.core.models.qwen3_vl.tiny:build_tiny_qwen3_vl"),
    "tiny-internvl": ("internvl", "decaf_ros.core.models.internvl.tiny:build_tiny_internvl"),
    "tiny-llava-ov": ("llava_onevision", "decaf_ros.core.models.llava_onevision.tiny:build_tiny_llava_onevision"),
}
SWEEP_KEY_FRAMES = (4, 8, 16, 32)
SWEEP_SIZES = ((320, 240), (640, 480), (1280, 720))
QUERY = "the ball that is rolling to the right"
MIB = 2.0**20


# =========================================================================== memory probes
def _cuda(device: torch.device | str) -> bool:
    return torch.device(device).type == "cuda"


def sync(device: torch.device | str) -> None:
    """Wait for queued kernels so wall-clock timings cover the GPU work."""
    if _cuda(device):
        torch.cuda.synchronize(device)


class MemoryWindow:
    """Peak CPU RSS and GPU allocation between ``start()`` and ``stop()``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.hwm_reset_ok = True

    def start(self) -> None:
        # no gc.collect() here: it costs ~0.5 s with transformers loaded and would sit between stages
        self._rss0 = rss_mb()
        self.hwm_reset_ok = reset_rss_peak() and self.hwm_reset_ok
        if _cuda(self.device):
            sync(self.device)
            self._gpu0 = torch.cuda.memory_allocated(self.device) / MIB
            torch.cuda.reset_peak_memory_stats(self.device)

    def stop(self) -> dict[str, float]:
        out = {"rss_peak_mb": rss_peak_mb(), "rss_delta_mb": rss_peak_mb() - self._rss0}
        if _cuda(self.device):
            sync(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) / MIB
            out.update(gpu_peak_mb=peak, gpu_delta_mb=peak - self._gpu0)
        return out


# =========================================================================== stage probe
class StageProbe:
    """``progress`` callback for ``ground()``: memory per stage, and the stage name for hooks.

    ``ground()`` calls ``progress(name)`` right before each stage starts, so a stage ends when
    the next one is announced (or when ``finish()`` is called after ``ground()`` returns).
    """

    def __init__(self, device: torch.device) -> None:
        self.window = MemoryWindow(device)
        self.current: str | None = None
        self.memory: dict[str, dict[str, float]] = {}

    def __call__(self, name: str) -> None:
        self.finish()
        self.current = name
        self.window.start()

    def finish(self) -> None:
        if self.current is not None:
            self.memory[self.current] = self.window.stop()
        self.current = None


@dataclass
class RolloutTimer:
    """Seconds inside the rollout and the dense attention recomputation, per pipeline stage.

    ``rollout_s`` is time inside ``VMaxRollout`` (``add_layer``, ``add_layer_qk``,
    ``last_token_row``); when the capture feeds Q/K, that includes the blockwise fp32
    probability recomputation. ``attn_probs_s`` is the capture's whole-layer probability
    function, when the capture uses it.
    """

    stage_of: Callable[[], str | None]
    rollout_s: dict[str, float] = field(default_factory=dict)
    attn_probs_s: dict[str, float] = field(default_factory=dict)
    shapes: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)  # (B, H, L) per capture

    def _add(self, table: dict[str, float], seconds: float) -> None:
        key = self.stage_of() or "outside"
        table[key] = table.get(key, 0.0) + seconds

    def _timed(self, fn: Callable[..., Any], table: dict[str, float]) -> Callable[..., Any]:
        timer = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            device = tensors[0].device if tensors else torch.device("cpu")
            rollout = args[0] if args and isinstance(args[0], VMaxRollout) else None
            if rollout is not None and rollout.num_layers == 0 and tensors:
                b, h, length = tensors[0].shape[:3]
                timer.shapes.setdefault(timer.stage_of() or "outside", []).append((b, h, length))
            sync(device)  # kernels queued before belong to the model, not to the rollout
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(device if tensors else _result_device(out))
            timer._add(table, time.perf_counter() - t0)
            return out

        return wrapper

    @contextlib.contextmanager
    def installed(self) -> Iterator["RolloutTimer"]:
        """Wrap the VMaxRollout entry points and the capture's probability function."""
        names = [n for n in ("add_layer", "add_layer_qk", "last_token_row") if hasattr(VMaxRollout, n)]
        saved = {n: getattr(VMaxRollout, n) for n in names}
        causal_probs = getattr(capture_mod, "_causal_probs", None)
        for n in names:
            setattr(VMaxRollout, n, self._timed(saved[n], self.rollout_s))
        if causal_probs is not None:
            capture_mod._causal_probs = self._timed(causal_probs, self.attn_probs_s)
        try:
            yield self
        finally:
            for n in names:
                setattr(VMaxRollout, n, saved[n])
            if causal_probs is not None:
                capture_mod._causal_probs = causal_probs


def _result_device(value: Any) -> torch.device:
    return value.device if isinstance(value, torch.Tensor) else torch.device("cpu")


@dataclass
class RecordedLayer:
    """One rollout layer as the capture handed it over: Q/K (current capture) or probabilities."""

    probs: torch.Tensor | None = None  # (B, H, L, L)
    query: torch.Tensor | None = None  # (B, H, L, d)
    key: torch.Tensor | None = None  # (B, Hkv, L, d)
    scaling: float = 1.0

    def dense_probs(self) -> torch.Tensor:
        """The §4.2 probabilities, computed whole as the reference does."""
        if self.probs is not None:
            return self.probs
        groups = self.query.shape[1] // self.key.shape[1]
        return capture_mod._causal_probs(self.query, self.key.repeat_interleave(groups, dim=1), self.scaling)

    def feed(self, rollout: VMaxRollout) -> None:
        """Hand the layer to a rollout the same way the capture did."""
        if self.probs is not None:
            rollout.add_layer(self.probs)
        else:
            rollout.add_layer_qk(self.query, self.key, self.scaling)


@contextlib.contextmanager
def record_attention(layers: list[RecordedLayer], masks: list[torch.Tensor]) -> Iterator[None]:
    """Keep a copy of every layer the rollouts receive (probabilities or Q/K)."""
    add_layer = VMaxRollout.add_layer
    add_layer_qk = getattr(VMaxRollout, "add_layer_qk", None)

    def note_mask(self_: VMaxRollout) -> None:
        if self_.num_layers == 0:
            masks.append(self_.visual_key_mask.clone())

    def recording_add_layer(self_: VMaxRollout, attn_probs: torch.Tensor) -> None:
        note_mask(self_)
        layers.append(RecordedLayer(probs=attn_probs.clone()))
        add_layer(self_, attn_probs)

    def recording_add_layer_qk(self_: VMaxRollout, query: torch.Tensor, key: torch.Tensor,
                               scaling: float, *args: Any, **kwargs: Any) -> None:
        note_mask(self_)
        layers.append(RecordedLayer(query=query.clone(), key=key.clone(), scaling=float(scaling)))
        add_layer_qk(self_, query, key, scaling, *args, **kwargs)

    VMaxRollout.add_layer = recording_add_layer
    if add_layer_qk is not None:
        VMaxRollout.add_layer_qk = recording_add_layer_qk
    try:
        yield
    finally:
        VMaxRollout.add_layer = add_layer
        if add_layer_qk is not None:
            VMaxRollout.add_layer_qk = add_layer_qk


# =========================================================================== model building
@dataclass
class ModelSet:
    """One MLLM + SAM2 pairing to benchmark."""

    mllm: str  # a key of TINY_MLLMS or of model_configs.MLLM_CONFIGS
    sam2: str  # "tiny" or a key of model_configs.SAM2_CONFIGS

    @property
    def tiny_mllm(self) -> bool:
        return self.mllm in TINY_MLLMS

    @property
    def name(self) -> str:
        return self.mllm if self.tiny_mllm and self.sam2 == "tiny" else f"{self.mllm}+{self.sam2}"

    @property
    def real(self) -> bool:
        return not self.tiny_mllm or self.sam2 != "tiny"


def parse_model_sets(text: str) -> list[ModelSet]:
    """'tiny', 'tiny-all', 'real', 'all', tiny family names, or MLLM:SAM2 pairs (comma-separated)."""
    sets: list[ModelSet] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item == "tiny-all":
            sets += [ModelSet(m, "tiny") for m in TINY_MLLMS]
        elif item in ("real", "all"):
            sets += ([ModelSet("tiny", "tiny")] if item == "all" else []) + [ModelSet(m, s) for m, s in REAL_PAIRS]
        else:
            mllm, _, sam2 = item.partition(":")
            sets.append(ModelSet(mllm, sam2 or "tiny"))
    return sets


def _tiny_dirs(folder: str | None) -> tuple[str, str]:
    return build_tiny_models(Path(folder) if folder else None)


def tiny_mllm_dir(name: str, folder: str | None) -> str:
    """Local folder of the tiny MLLM ``name`` (built on first use, like ``build_tiny_models``)."""
    import importlib
    import os
    import tempfile

    from .core.pipeline import tiny_model_dir

    sub, builder = TINY_MLLMS[name]
    root = Path(folder) if folder else tiny_model_dir()
    target = root / sub
    if not (target / "config.json").exists():
        module, _, func = builder.partition(":")
        root.mkdir(parents=True, exist_ok=True)
        # Build beside the target, then rename: a concurrent run never sees a half-written model.
        scratch = Path(tempfile.mkdtemp(prefix=f".{sub}-", dir=root))
        getattr(importlib.import_module(module), func)(scratch / "model")
        try:
            os.replace(scratch / "model", target)
        except OSError:  # another process finished first; its copy is identical (seeded)
            pass
    return str(target)


def _qwen_vl_processor(model_type: str) -> Any:
    """The tiny Qwen-VL processor recipe (real checkpoints' image/video settings, small BPE)."""
    from .core.models.qwen2_5_vl import tiny as qwen
    from .core.models.qwen3_vl import tiny as qwen3_vl

    if model_type == "qwen3_vl":
        return qwen3_vl._build_processor()
    processor = qwen._build_processor()
    if model_type == "qwen2_5_vl":
        return processor
    # Qwen2-VL: the same parts in its own processor class
    from transformers import Qwen2VLProcessor

    return Qwen2VLProcessor(image_processor=processor.image_processor, tokenizer=processor.tokenizer,
                            video_processor=processor.video_processor, chat_template=qwen.CHAT_TEMPLATE)


def _internvl_processor() -> Any:
    """The tiny InternVL recipe at the real tile: 448 px, 14 px patches -> 16x16 = 256 tokens."""
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    from .core.models.internvl import tiny as internvl

    tile = {"size": {"height": 448, "width": 448}, "image_mean": internvl.IMAGENET_MEAN,
            "image_std": internvl.IMAGENET_STD}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(crop_to_patches=False, min_patches=1, max_patches=12, **tile),
        tokenizer=internvl._build_tokenizer(), video_processor=InternVLVideoProcessor(**tile),
        image_seq_length=256, chat_template=internvl.CHAT_TEMPLATE)


def _llava_onevision_processor() -> Any:
    """The tiny LLaVA-OneVision recipe at the real 384 px tile, as the adapter's processor class."""
    from .core.models.llava_onevision.adapter import TileGridProcessor
    from .core.model_configs import LLAVA_ONEVISION_TILE
    from .core.models.llava_onevision import tiny as llava_onevision

    p = llava_onevision._build_processor(LLAVA_ONEVISION_TILE)
    return TileGridProcessor(
        image_processor=p.image_processor, tokenizer=p.tokenizer, video_processor=p.video_processor,
        num_image_tokens=p.num_image_tokens, vision_feature_select_strategy=p.vision_feature_select_strategy,
        vision_aspect_ratio=p.vision_aspect_ratio, chat_template=p.chat_template)


def real_processor(model_type: str) -> tuple[Any, dict[str, int], dict[str, int]]:
    """(processor, outer-config token ids, LLM token ids) for a family's random-weight build."""
    from .devtools.tiny_recipe import qwen2_token_fields, token_ids

    if model_type in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        from .core.models.qwen2_5_vl.tiny import SPECIAL_TOKENS, vision_token_fields

        processor = _qwen_vl_processor(model_type)
        ids = token_ids(processor.tokenizer, SPECIAL_TOKENS)
        return processor, vision_token_fields(ids), qwen2_token_fields(ids)
    if model_type == "internvl":
        from .core.models.internvl.tiny import INTERNVL_TOKENS
        from .core.models.qwen2_5_vl.tiny import SPECIAL_TOKENS

        processor = _internvl_processor()
        ids = token_ids(processor.tokenizer, SPECIAL_TOKENS + INTERNVL_TOKENS)
        return processor, {"image_token_id": ids["<IMG_CONTEXT>"]}, qwen2_token_fields(ids)
    if model_type == "llava_onevision":
        from .core.models.llava_onevision.tiny import SPECIAL_TOKENS

        processor = _llava_onevision_processor()
        ids = token_ids(processor.tokenizer, SPECIAL_TOKENS)
        return (processor, {"image_token_index": ids["<image>"], "video_token_index": ids["<video>"]},
                qwen2_token_fields(ids))
    raise KeyError(f"no random-weight processor recipe for model type '{model_type}'")


def build_real_mllm(name: str, device: torch.device, dtype: torch.dtype, config: DecafConfig,
                    shape: dict[str, Any] | None = None) -> Any:
    """Random-weight MLLM of the published ``name`` architecture, in its family's adapter.

    ``shape`` replaces architecture fields (``model_configs.mllm_config``): a scaled-down model of
    the same layout.

    The processor is the family's tiny-model recipe at the checkpoint's image geometry (same
    image/video processors and chat template, a small BPE tokenizer); the model keeps the
    published vocabulary size, so the embedding and LM-head costs are real while token ids stay
    below the tokenizer's size.
    """
    from .core.capture import enable_capture
    from .core.models import adapter_for
    from .core.model_configs import mllm_config, mllm_model_type

    model_type = mllm_model_type(name)
    processor, top_ids, text_ids = real_processor(model_type)
    hf_config = mllm_config(name, top_ids, text_ids, shape=shape)
    adapter_cls = adapter_for(model_type)
    with torch.device(device):  # initialise directly on the device: no host copy of the weights
        model = adapter_cls._hf_model_class(model_type)._from_config(hf_config, dtype=dtype)
    model.eval()
    # the text config may name no eos (Qwen3-VL): generation must still know where answers end
    model.generation_config.eos_token_id = text_ids["eos_token_id"]
    model.generation_config.pad_token_id = text_ids["pad_token_id"]
    enable_capture(model)
    return adapter_cls(model, processor, config)


def build_real_sam2(name: str, device: torch.device) -> Any:
    """Random-weight SAM2.1 video model of the published ``name`` architecture (fp32, §7.1)."""
    from transformers import (
        Sam2ImageProcessor,
        Sam2VideoModel,
        Sam2VideoProcessor,
        Sam2VideoVideoProcessor,
    )

    from .core.model_configs import sam2_video_config
    from .core.models.sam2.segmenter import Sam2Segmenter
    from .core.models.sam2.tiny import OBJECT_SCORE_BIAS

    with torch.device(device):
        model = Sam2VideoModel(sam2_video_config(name)).eval()
    with torch.no_grad():
        # random object-score logits sit near 0 and SAM2 blanks masks whose logit is <= 0; the
        # bias keeps objects "present" so propagation does its normal amount of work
        model.mask_decoder.pred_obj_score_head.proj_out.bias.add_(OBJECT_SCORE_BIAS)
    # processor defaults are the released models' (1024 px input, 256 px low-res masks)
    processor = Sam2VideoProcessor(image_processor=Sam2ImageProcessor(),
                                   video_processor=Sam2VideoVideoProcessor())
    return Sam2Segmenter(model, processor, torch.device(device), torch.float32, name=name)


def build_pipeline(models: ModelSet, config: DecafConfig, tiny_dir: str | None) -> DecafPipeline:
    """Load (tiny) or build (real, random weights) both models and join them in a pipeline."""
    from .core.loading import pick_device, pick_dtype
    from .core.models import load_mllm
    from .core.models.sam2.segmenter import Sam2Segmenter

    device = pick_device(config.device)
    mllm_dir, sam2_dir = _tiny_dirs(tiny_dir) if models.tiny_mllm or models.sam2 == "tiny" else ("", "")
    if models.tiny_mllm:
        mllm_dir = mllm_dir if models.mllm == "tiny" else tiny_mllm_dir(models.mllm, tiny_dir)
        mllm = load_mllm(mllm_dir, device=device, dtype=pick_dtype(config.dtype, device), config=config)
    else:
        mllm = build_real_mllm(models.mllm, device, pick_dtype(config.dtype, device), config)
    if models.sam2 == "tiny":
        sam2 = Sam2Segmenter.from_pretrained(sam2_dir, device=device, dtype="float32")
    else:
        sam2 = build_real_sam2(models.sam2, device)
    _fix_answer_length(mllm.model, config.max_new_tokens)
    return DecafPipeline(mllm, sam2, config)


def _fix_answer_length(model: Any, tokens: int) -> None:
    """Random weights stop at arbitrary points; force exactly ``tokens`` generated tokens.

    The adapter copies the model's generation config and overrides only the sampling knobs,
    so a min length set here survives and every run decodes the same number of steps.
    """
    model.generation_config.min_new_tokens = tokens


def param_counts(pipeline: DecafPipeline) -> dict[str, int]:
    return {"mllm": sum(p.numel() for p in pipeline.mllm.model.parameters()),
            "sam2": sum(p.numel() for p in pipeline.sam2.model.parameters())}


# =========================================================================== inputs
def synthetic_clip(num_frames: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """A textured background with a disk moving left to right (uint8 RGB frames)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // max(width - 1, 1)), (yy * 255 // max(height - 1, 1)),
                     np.full_like(xx, 96)], axis=-1).astype(np.int16)
    base += rng.integers(-20, 21, size=base.shape, dtype=np.int16)
    radius = max(2, min(width, height) // 8)
    frames = []
    for t in range(num_frames):
        cx = int(radius + (width - 2 * radius) * t / max(num_frames - 1, 1))
        frame = base.copy()
        frame[(xx - cx) ** 2 + (yy - height // 2) ** 2 <= radius**2] = (230, 40, 40)
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def centre_box_mask(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = True
    return mask


# =========================================================================== measurements
def measure_grounding(pipeline: DecafPipeline, frames: Sequence[np.ndarray]) -> dict[str, Any]:
    """One ``ground()``: per-stage seconds, rollout share and peak memory, plus work counts."""
    device = pipeline.sam2.device
    probe = StageProbe(device)
    timer = RolloutTimer(stage_of=lambda: probe.current)
    sync(device)
    t0 = time.perf_counter()
    with timer.installed():
        result = pipeline.ground(frames, QUERY, progress=probe)
    sync(device)
    total = time.perf_counter() - t0
    probe.finish()
    stages = {}
    for name in STAGES:
        stages[name] = {"seconds": float(result.timings.get(name, 0.0)),
                        "rollout_s": timer.rollout_s.get(name, 0.0),
                        "attn_probs_s": timer.attn_probs_s.get(name, 0.0),
                        **probe.memory.get(name, {})}
    return {"total_s": total, "stages": stages, "hwm_reset": probe.window.hwm_reset_ok,
            "counts": _work_counts(result, timer), "result": result}


def _work_counts(result: Any, timer: RolloutTimer) -> dict[str, Any]:
    """How much work the random weights caused: tokens per pass, SAM2 objects."""
    return {
        "captures": {stage: [{"B": b, "H": h, "L": length} for b, h, length in shapes]
                     for stage, shapes in timer.shapes.items()},
        "video_tokens_L": max((length for _, _, length in timer.shapes.get("p3_video", [])), default=0),
        "frame_tokens_L": max((length for _, _, length in timer.shapes.get("p3_frames", [])), default=0),
        "tracklets": len(result.tracklets), "kept": len(result.kept),
        "key_frames": len(result.key_frame_indices),
    }


def measure_tracking(pipeline: DecafPipeline, result: Any, frames: Sequence[np.ndarray],
                     steps: int) -> dict[str, Any]:
    """Open a stream on the last frame, then time ``steps`` single-frame updates."""
    device = pipeline.sam2.device
    window = MemoryWindow(device)
    window.start()
    t0 = time.perf_counter()
    # start_tracking is only called with targets: with none, the mask stack it slices is empty
    targets = pipeline.start_tracking(frames[-1], result) if result.num_targets else 0
    prompt = "grounded targets"
    step: Callable[[np.ndarray], Any] = pipeline.track
    if targets == 0:
        # random weights kept no target: track a fixed box so the per-frame cost is still measured
        pipeline.sam2.start_stream(frames[-1], centre_box_mask(*frames[-1].shape[:2])[None])
        targets, prompt, step = 1, "centre box: no target on the last frame", pipeline.sam2.track
    sync(device)
    start_s = time.perf_counter() - t0
    times = []
    for i in range(steps):
        frame = frames[(len(frames) - 2 - i) % len(frames)]  # walk back through the clip
        t0 = time.perf_counter()
        step(frame)
        sync(device)
        times.append(time.perf_counter() - t0)
    pipeline.stop_tracking()
    pipeline.sam2.stop_stream()
    arr = np.array(times) if times else np.zeros(1)
    return {"objects": targets, "prompt": prompt, "start_s": start_s, "frames": steps,
            "per_frame_mean_s": float(arr.mean()), "per_frame_p50_s": float(np.median(arr)),
            "per_frame_max_s": float(arr.max()), **window.stop()}


def compare_naive(layers: list[RecordedLayer], mask: torch.Tensor, row_block: int) -> dict[str, Any]:
    """The pipeline's streaming rollout vs the reference computation on the same recorded layers.

    streaming: each layer fed to a fresh VMaxRollout exactly as the capture fed it (Q/K or
    probabilities), then the last row. naive: per layer the whole (B, H, L, L) fp32 §4.2
    probabilities (as the reference recomputes them) into ``naive_vmax_rollout``, one layer at
    a time like the reference's forward pass.
    """
    first = layers[0].dense_probs()
    device = first.device
    b, h, length, _ = first.shape
    layer_mb = first.numel() * first.element_size() / MIB
    del first
    window = MemoryWindow(device)
    gc.collect()
    window.start()
    sync(device)
    t0 = time.perf_counter()
    rollout = VMaxRollout(mask, row_block=row_block)
    for layer in layers:
        layer.feed(rollout)
    streaming_row = rollout.last_token_row()
    sync(device)
    streaming_s = time.perf_counter() - t0
    streaming_mem = window.stop()
    del rollout
    gc.collect()
    window.start()
    t0 = time.perf_counter()
    naive_row = naive_vmax_rollout((layer.dense_probs() for layer in layers), mask)
    sync(device)
    naive_s = time.perf_counter() - t0
    naive_mem = window.stop()
    elementwise, normwise = rel_diff(streaming_row, naive_row)
    mem_key = "gpu_delta_mb" if _cuda(device) else "rss_delta_mb"
    return {"B": b, "H": h, "L": length, "layers": len(layers), "fed": "qk" if layers[0].probs is None else "probs",
            "layer_probs_mb": layer_mb,
            "streaming_s": streaming_s, "naive_s": naive_s, "speedup": naive_s / max(streaming_s, 1e-12),
            "streaming_mem_mb": streaming_mem[mem_key], "naive_mem_mb": naive_mem[mem_key],
            "memory": mem_key, "max_rel_diff": elementwise, "normwise_diff": normwise}


def measure_naive(pipeline: DecafPipeline, frames: Sequence[np.ndarray], obj_name: str) -> list[dict[str, Any]]:
    """Record one P3 video pass and one P3 frame batch, then compare both rollouts on them.

    The prompt is the grounding's own P3 prompt, so the token counts match the timed passes.
    """
    from .core import prompts

    mllm, cfg = pipeline.mllm, pipeline.config
    keys = [frames[i] for i in key_frame_indices(len(frames), cfg.num_key_frames)]
    text = prompts.background_prompt(obj_name)
    passes: list[tuple[str, Callable[[], Any]]] = [
        ("p3_video", lambda: mllm.video_pass(keys, text, generate=False)),
        ("p3_frames[batch 0]", lambda: mllm.frame_pass(keys[: cfg.frame_batch_size], text, generate=False,
                                                       video_grid_hw=mllm.last_video_grid_hw)),
    ]
    rows = []
    for name, run in passes:
        layers: list[RecordedLayer] = []
        masks: list[torch.Tensor] = []
        try:
            with torch.inference_mode():
                with record_attention(layers, masks):
                    run()
                rows.append({"pass": name, **compare_naive(layers, masks[0], row_block=512)})
        except torch.cuda.OutOfMemoryError as error:
            rows.append({"pass": name, "skipped": f"out of GPU memory: {error}"})
        finally:
            layers.clear()
            _free()
    return rows


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# =========================================================================== runs
def _config(args: argparse.Namespace, models: ModelSet, **overrides: Any) -> DecafConfig:
    base = dict(device=args.device, dtype=args.dtype, num_key_frames=args.key_frames,
                video_max_tokens=args.video_max_tokens, frame_batch_size=args.frame_batch,
                max_new_tokens=args.gen_tokens)
    if models.tiny_mllm:
        base["rollout_start_layer"] = None  # half depth, as for every real model
    base.update(overrides)
    return DecafConfig(**base)


def set_config(pipeline: DecafPipeline, config: DecafConfig) -> None:
    """Switch settings without reloading: the adapter reads its own copy (budgets, batch, answer length)."""
    pipeline.config = config
    pipeline.mllm.config = config
    _fix_answer_length(pipeline.mllm.model, config.max_new_tokens)


def _grounding_row(measured: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in measured.items() if k != "result"}


def run_model_set(models: ModelSet, args: argparse.Namespace) -> dict[str, Any]:
    """Build, warm up, measure grounding + tracking + naive rollout (+ sweeps) for one model set."""
    config = _config(args, models)
    device = torch.device("cuda" if config.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if config.device == "auto" else config.device))
    if models.real and device.type != "cuda" and not args.allow_cpu_real:
        return {"name": models.name, "skipped": (
            f"real-size models ({models.name}) need a GPU (--device cuda); on {device.type} they would take "
            f"tens of GB of RAM and hours; pass --allow-cpu-real to run them anyway")}
    t0 = time.perf_counter()
    pipeline = build_pipeline(models, config, args.tiny_dir)
    build_s = time.perf_counter() - t0
    width, height = args.size
    frames = synthetic_clip(max(args.frames, args.key_frames), width, height)
    _progress(f"[{models.name}] warm-up")
    warm = _config(args, models, num_key_frames=min(2, args.key_frames),
                   video_max_tokens=min(16, args.video_max_tokens))
    set_config(pipeline, warm)
    pipeline.ground(frames[:2], QUERY)  # lazy inits, kernel selection, allocator growth
    set_config(pipeline, config)
    _progress(f"[{models.name}] grounding {len(frames)} frames {width}x{height}, {args.key_frames} key frames")
    measured = measure_grounding(pipeline, frames)
    _progress(f"[{models.name}] tracking {args.track_frames} frames")
    out = {"name": models.name, "mllm": models.mllm, "sam2": models.sam2, "device": str(device),
           "mllm_dtype": str(pipeline.mllm.model.dtype).replace("torch.", ""), "build_s": build_s,
           "params": param_counts(pipeline), "rollout_start_layer": pipeline.mllm.start_layer,
           "num_layers": pipeline.mllm.num_layers, "settings": _settings(config, len(frames), args.size),
           "grounding": _grounding_row(measured)}
    out["tracking"] = measure_tracking(pipeline, measured["result"], frames, args.track_frames)
    if not args.no_naive:
        _progress(f"[{models.name}] naive vs streaming rollout")
        out["naive_rollout"] = measure_naive(pipeline, frames, measured["result"].obj_name)
    if args.sweep:
        out["sweep"] = run_sweeps(pipeline, args, models)
    del pipeline
    _free()
    return out


def _settings(config: DecafConfig, num_frames: int, size: tuple[int, int]) -> dict[str, Any]:
    return {"frames": num_frames, "width": size[0], "height": size[1], "key_frames": config.num_key_frames,
            "video_max_tokens": config.video_max_tokens, "frame_resize_scale": config.frame_resize_scale,
            "frame_batch_size": config.frame_batch_size, "generated_tokens": config.max_new_tokens}


def run_sweeps(pipeline: DecafPipeline, args: argparse.Namespace, models: ModelSet) -> dict[str, list]:
    """Latency vs number of key frames (at --size) and vs frame resolution (at --key-frames)."""
    sweeps: dict[str, list] = {"key_frames": [], "resolution": []}
    width, height = args.size
    for k in args.sweep_key_frames:
        _progress(f"[{models.name}] sweep: {k} key frames")
        sweeps["key_frames"].append({"key_frames": k, "width": width, "height": height,
                                     **_sweep_point(pipeline, args, models, k, (width, height))})
    for w, h in args.sweep_sizes:
        _progress(f"[{models.name}] sweep: {w}x{h}")
        sweeps["resolution"].append({"key_frames": args.key_frames, "width": w, "height": h,
                                     **_sweep_point(pipeline, args, models, args.key_frames, (w, h))})
    set_config(pipeline, _config(args, models))
    return sweeps


def _sweep_point(pipeline: DecafPipeline, args: argparse.Namespace, models: ModelSet, k: int,
                 size: tuple[int, int]) -> dict[str, Any]:
    set_config(pipeline, _config(args, models, num_key_frames=k))
    frames = synthetic_clip(max(args.frames, k), *size)
    try:
        measured = measure_grounding(pipeline, frames)
    except torch.cuda.OutOfMemoryError as error:
        _free()
        return {"skipped": f"out of GPU memory: {error}"}
    row = _grounding_row(measured)
    return {"frames": len(frames), "total_s": row["total_s"], "counts": row["counts"],
            "stages": {n: s["seconds"] for n, s in row["stages"].items()},
            "rollout_s": sum(s["rollout_s"] for s in row["stages"].values()),
            "attn_probs_s": sum(s["attn_probs_s"] for s in row["stages"].values()),
            "peak_mb": max(s.get("gpu_peak_mb", s["rss_peak_mb"]) for s in row["stages"].values())}


# =========================================================================== report
def _progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def format_run(run: dict[str, Any]) -> str:
    """Human-readable tables of one model set."""
    if "skipped" in run:
        return f"== {run['name']}: SKIPPED — {run['skipped']}\n"
    s, g = run["settings"], run["grounding"]
    gpu = run["device"].startswith("cuda")
    lines = [f"== {run['name']} on {run['device']} (MLLM {run['mllm_dtype']}, SAM2 float32; "
             f"{run['params']['mllm'] / 1e6:.1f}M + {run['params']['sam2'] / 1e6:.1f}M params; "
             f"rollout layers {run['rollout_start_layer']}..{run['num_layers'] - 1})",
             f"   clip {s['frames']} frames {s['width']}x{s['height']}, {s['key_frames']} key frames, "
             f"video budget {s['video_max_tokens']} tok/slot, frame scale x{s['frame_resize_scale']}, "
             f"frame batch {s['frame_batch_size']}, {s['generated_tokens']} generated tokens per answer; "
             f"L video {g['counts']['video_tokens_L']}, L frame {g['counts']['frame_tokens_L']}; "
             f"tracklets {g['counts']['tracklets']}, kept {g['counts']['kept']}", ""]
    head = f"{'stage':<18}{'time s':>9}{'rollout s':>11}{'dense attn s':>14}{'peak RSS MiB':>14}{'ΔRSS MiB':>10}"
    lines.append(head + (f"{'GPU peak MiB':>14}{'ΔGPU MiB':>10}" if gpu else ""))
    for name, st in g["stages"].items():
        line = (f"{name:<18}{st['seconds']:>9.3f}{st['rollout_s']:>11.3f}{st['attn_probs_s']:>14.3f}"
                f"{_fmt(st.get('rss_peak_mb'), '.0f'):>14}{_fmt(st.get('rss_delta_mb'), '.0f'):>10}")
        lines.append(line + (f"{_fmt(st.get('gpu_peak_mb'), '.0f'):>14}{_fmt(st.get('gpu_delta_mb'), '.0f'):>10}"
                             if gpu else ""))
    rollout = sum(st["rollout_s"] for st in g["stages"].values())
    dense = sum(st["attn_probs_s"] for st in g["stages"].values())
    lines.append(f"{'total ground()':<18}{g['total_s']:>9.3f}{rollout:>11.3f}{dense:>14.3f}")
    t = run["tracking"]
    lines += ["", f"tracking ({t['objects']} object(s), {t['prompt']}): start {t['start_s']:.3f} s, per frame "
              f"mean {t['per_frame_mean_s'] * 1e3:.1f} ms / p50 {t['per_frame_p50_s'] * 1e3:.1f} ms / max "
              f"{t['per_frame_max_s'] * 1e3:.1f} ms over {t['frames']} frames; peak RSS {t['rss_peak_mb']:.0f} MiB"
              + (f", GPU peak {t['gpu_peak_mb']:.0f} MiB" if gpu else "")]
    if run.get("naive_rollout"):
        lines += ["", _format_naive(run["naive_rollout"])]
    if run.get("sweep"):
        lines += ["", _format_sweep("latency vs key frames", run["sweep"]["key_frames"]),
                  "", _format_sweep("latency vs resolution", run["sweep"]["resolution"])]
    return "\n".join(lines) + "\n"


def _format_naive(rows: list[dict[str, Any]]) -> str:
    lines = ["rollout stage on the same recorded layers: pipeline's streaming VMaxRollout (fed as the capture "
             "feeds it) vs reference (whole-layer fp32 probabilities + dense naive §4 rollout)",
             f"{'pass':<20}{'B':>3}{'H':>4}{'L':>7}{'layers':>7}{'MiB/layer':>10}{'stream s':>10}{'naive s':>10}"
             f"{'speed-up':>9}{'stream ΔMiB':>12}{'naive ΔMiB':>11}{'max rel diff':>13}{'normwise':>10}"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"{r['pass']:<20} skipped: {r['skipped']}")
            continue
        lines.append(f"{r['pass']:<20}{r['B']:>3}{r['H']:>4}{r['L']:>7}{r['layers']:>7}{r['layer_probs_mb']:>10.0f}"
                     f"{r['streaming_s']:>10.4f}{r['naive_s']:>10.4f}{r['speedup']:>8.1f}x"
                     f"{r['streaming_mem_mb']:>12.0f}{r['naive_mem_mb']:>11.0f}{r['max_rel_diff']:>13.2e}"
                     f"{r['normwise_diff']:>10.2e}")
    return "\n".join(lines)


_SWEEP_COLS = ("p1_video", "p1_frames", "p3_video", "p3_frames", "sam2_stage1", "sam2_propagation")


def _format_sweep(title: str, rows: list[dict[str, Any]]) -> str:
    head = (f"{'K':>3}{'size':>11}{'L vid':>7}{'L frm':>7}{'total s':>9}{'rollout':>9}{'dense':>8}"
            + "".join(f"{c:>{max(len(c) + 2, 9)}}" for c in _SWEEP_COLS) + f"{'trk':>5}{'peak MiB':>10}")
    lines = [title, head]
    for r in rows:
        size = f"{r['width']}x{r['height']}"
        if "skipped" in r:
            lines.append(f"{r['key_frames']:>3}{size:>11}  skipped: {r['skipped']}")
            continue
        c = r["counts"]
        lines.append(f"{r['key_frames']:>3}{size:>11}{c['video_tokens_L']:>7}{c['frame_tokens_L']:>7}"
                     f"{r['total_s']:>9.2f}{r['rollout_s']:>9.3f}{r['attn_probs_s']:>8.3f}"
                     + "".join(f"{r['stages'][col]:>{max(len(col) + 2, 9)}.3f}" for col in _SWEEP_COLS)
                     + f"{c['kept']:>5}{r['peak_mb']:>10.0f}")
    return "\n".join(lines)


def _meta(args: argparse.Namespace) -> dict[str, Any]:
    import transformers

    cuda = torch.cuda.is_available()
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:], "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "cpu_threads": torch.get_num_threads(),
            "machine": platform.machine(), "gpu": torch.cuda.get_device_name(0) if cuda else None,
            "query": QUERY, "rss_peak": "VmHWM reset per stage (/proc/self/clear_refs)"}


# =========================================================================== CLI
def _size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _size_list(text: str) -> list[tuple[int, int]]:
    return [_size(v) for v in text.split(",") if v.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="decaf-bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="all", help="'tiny', 'tiny-all' (every family's tiny model), 'real', "
                   "'all' (default: tiny + real) or MLLM:SAM2 pairs, e.g. qwen2.5-vl-7b:sam2.1-hiera-large,"
                   "tiny-internvl; MLLMs: " + ", ".join(TINY_MLLMS) + " and the real "
                   "architectures of core.model_configs; real pairs are skipped on CPU")
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu or cuda[:N]")
    p.add_argument("--dtype", default="auto", help="MLLM dtype: auto (bf16 on cuda, fp32 on cpu), float32, ...")
    p.add_argument("--allow-cpu-real", action="store_true", help="run real-size models even on CPU")
    p.add_argument("--frames", type=int, default=32, help="clip length (raised to --key-frames when smaller)")
    p.add_argument("--size", type=_size, default=(640, 480), help="frame size WxH (default 640x480)")
    p.add_argument("--key-frames", type=int, default=16, help="key frames (paper: 16)")
    p.add_argument("--video-max-tokens", type=int, default=400, help="video tokens per temporal slot (paper: 400)")
    p.add_argument("--frame-batch", type=int, default=4, help="key frames per frame-path forward (paper: 4)")
    p.add_argument("--gen-tokens", type=int, default=4,
                   help="tokens generated per P1/P2 answer (answers are single words; default 4)")
    p.add_argument("--track-frames", type=int, default=16, help="frames of streaming tracking to time")
    p.add_argument("--sweep", action="store_true", help="also sweep key frames and resolution (see below)")
    p.add_argument("--sweep-key-frames", type=_int_list, default=list(SWEEP_KEY_FRAMES),
                   help="key-frame counts of the sweep (default 4,8,16,32)")
    p.add_argument("--sweep-sizes", type=_size_list, default=list(SWEEP_SIZES),
                   help="frame sizes of the sweep (default 320x240,640x480,1280x720)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive-rollout comparison")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--tiny-dir", default=None, help="folder for the tiny models (default: user cache)")
    p.add_argument("--json", default="decaf-bench.json", help="where to write the results (default %(default)s)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"meta": _meta(args), "runs": []}
    for models in parse_model_sets(args.models):
        run = run_model_set(models, args)
        report["runs"].append(run)
        print(format_run(run), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=_json_default))
        print(f"wrote {args.json}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


if __name__ == "__main__":
    raise SystemExit(main())
