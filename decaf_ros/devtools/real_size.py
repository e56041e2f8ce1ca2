"""Real-size models with random weights, from the families' published architectures (no download).

Each family's ``configs.py`` lists its released checkpoints as ``Published`` entries; this module
gathers them through the registry and builds them (``from_config``, random weights) for latency
and memory benchmarks. Random weights make answers and masks meaningless: only the amount of
work (token counts, generated tokens, SAM2 objects) is realistic.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from ..core.config import DecafConfig
from ..core.models.registry import MLLM_FAMILIES, SAM2_FAMILY, family_module


@dataclass(frozen=True)
class Published:
    """One released checkpoint's architecture."""

    hub_id: str  # where it comes from (for reports only; nothing is downloaded)
    config: dict[str, Any]  # config.json's architecture fields (MLLMs: with model_type)
    params: float  # the released parameter count (model card): a cross-check of the shape
    llm_layers: int | None = None  # LLM depth N (MLLMs; method notes §10)


def published_mllms() -> dict[str, tuple[str, Published]]:
    """Every registered family's published MLLMs: name -> (family, architecture)."""
    return {name: (family, spec) for family in MLLM_FAMILIES
            for name, spec in family_module(family, "configs").PUBLISHED.items()}


def published_sam2() -> dict[str, Published]:
    """The published SAM2 architectures: name -> architecture."""
    return dict(family_module(SAM2_FAMILY, "configs").PUBLISHED)


def _mllm(name: str) -> tuple[str, Published]:
    known = published_mllms()
    if name not in known:
        raise KeyError(f"unknown architecture '{name}'; known: {', '.join(sorted(known))}")
    return known[name]


def mllm_model_type(name: str) -> str:
    return _mllm(name)[1].config["model_type"]


def mllm_config(name: str, top: dict[str, Any] | None = None, text: dict[str, Any] | None = None,
                shape: dict[str, Any] | None = None) -> Any:
    """The transformers config of the published ``name`` architecture (class from its model_type).

    top: fields of the outer config (visual token ids); text: fields of the language model
    (bos/eos/pad ids), written into ``text_config`` where the family nests one. Both come from
    the tokenizer the model is paired with; the vocabulary size stays the published one.
    shape: architecture fields replaced in the published spec (a scaled-down model of the same
    layout for CPU benchmarks); dict values such as ``vision_config`` are merged, not replaced.
    """
    from transformers import AutoConfig

    spec = copy.deepcopy(_mllm(name)[1].config)
    for key, value in (shape or {}).items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and isinstance(spec.get(key), dict) else value
    model_type = spec.pop("model_type")
    spec.get("text_config", spec).update(text or {})
    spec.update(top or {})
    return AutoConfig.for_model(model_type, **spec)


def build_real_mllm(name: str, device: torch.device, dtype: torch.dtype, config: DecafConfig,
                    shape: dict[str, Any] | None = None) -> Any:
    """Random-weight MLLM of the published ``name`` architecture, in its family's adapter.

    ``shape`` replaces architecture fields (see ``mllm_config``): a scaled-down model of the same layout.

    The processor is the family's tiny-model recipe at the checkpoint's image geometry (same
    image/video processors and chat template, a small BPE tokenizer); the model keeps the
    published vocabulary size, so the embedding and LM-head costs are real while token ids stay
    below the tokenizer's size.
    """
    from ..core.capture import enable_capture
    from ..core.models import adapter_for

    family, _ = _mllm(name)
    model_type = mllm_model_type(name)
    processor, top_ids, text_ids = family_module(family, "tiny").real_size_processor(model_type)
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
    from transformers import Sam2VideoModel

    from ..core.models.sam2.segmenter import Sam2Segmenter

    tiny = family_module(SAM2_FAMILY, "tiny")
    with torch.device(device):
        model = Sam2VideoModel(family_module(SAM2_FAMILY, "configs").video_config(name)).eval()
    tiny.make_objects_present(model)
    return Sam2Segmenter(model, tiny.real_size_processor(), torch.device(device), torch.float32, name=name)
