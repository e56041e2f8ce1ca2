"""The tiny random models, built once into a cache, and the executables' tiny-model fallback.

One way to get them everywhere: ``decaf-segment --tiny``, the node's ``fallback_to_tiny_models``
(and so ``decaf_demo``), ``decaf-bench`` and ``bench/`` all call ``tiny_config`` or
``load_pipeline`` here, with the one set of reduced settings ``TINY_SETTINGS``. The masks of
random weights are meaningless: every path that uses them says so (``tiny_warning``).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from ..core.config import DecafConfig
from ..core.loading import ModelLoadError
from ..core.models.registry import DEFAULT_MLLM_FAMILY, MLLM_FAMILIES, SAM2_FAMILY, family_module
from ..core.pipeline import DecafPipeline
from .tiny_recipe import TinyModel

log = logging.getLogger(__name__)

# Random attention is nearly flat, so at reference sizes it yields hundreds of SAM2 clicks per key
# frame; the tiny models only demonstrate the plumbing, and these settings keep every stage small.
TINY_SETTINGS = {"num_key_frames": 4, "video_max_tokens": 16, "max_new_tokens": 8}


def tiny_model_dir() -> Path:
    """Where the built-in tiny random models are written (per user cache)."""
    return Path.home() / ".cache" / "decaf_ros" / "tiny-models"


def tiny_mllms() -> list[TinyModel]:
    """Every registered family's tiny MLLMs, the default family's first."""
    families = [DEFAULT_MLLM_FAMILY] + [f for f in MLLM_FAMILIES if f != DEFAULT_MLLM_FAMILY]
    return [model for family in families for model in family_module(family, "tiny").TINY]


def tiny_sam2() -> TinyModel:
    return family_module(SAM2_FAMILY, "tiny").TINY[0]


def ensure_built(model: TinyModel, root: Path | None = None) -> str:
    """Local folder of ``model`` under ``root`` (default: the user cache), built on first use."""
    root = Path(root) if root else tiny_model_dir()
    target = root / model.folder
    if not (target / "config.json").exists():
        root.mkdir(parents=True, exist_ok=True)
        # Build beside the target, then rename: a concurrent run never sees a half-written model.
        scratch = Path(tempfile.mkdtemp(prefix=f".{model.folder}-", dir=root))
        try:
            model.build(scratch / "model")
            os.replace(scratch / "model", target)
        except OSError:  # another process finished first; its copy is identical (seeded)
            if not (target / "config.json").exists():
                raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return str(target)


def build_tiny_models(root: Path | None = None) -> tuple[str, str]:
    """Folders of the default family's tiny MLLM and the tiny SAM2 (built once)."""
    return ensure_built(tiny_mllms()[0], root), ensure_built(tiny_sam2(), root)


def tiny_config(config: DecafConfig, root: Path | None = None) -> DecafConfig:
    """``config`` switched to the tiny random models, with the reduced ``TINY_SETTINGS``."""
    mllm_dir, sam2_dir = build_tiny_models(root)
    return config.with_overrides(mllm=mllm_dir, sam2=sam2_dir, rollout_start_layer=None, **TINY_SETTINGS)


def tiny_warning(tiny: DecafConfig, reason: str) -> str:
    """The loud notice every user of the tiny models gets."""
    settings = ", ".join(f"{k}={getattr(tiny, k)}" for k in TINY_SETTINGS)
    return (f"USING TINY RANDOM MODELS — masks are NOT meaningful. {reason}. Tiny models from "
            f"{Path(tiny.mllm).parent} demonstrate the plumbing only, with reduced settings ({settings}) "
            f"so a CPU run takes seconds.")


def load_pipeline(
    config: DecafConfig, allow_tiny_fallback: bool = False, root: Path | None = None,
) -> tuple[DecafPipeline, str | None]:
    """Load the configured models; optionally fall back to the tiny random models.

    Returns (pipeline, warning). ``warning`` is None when the configured models loaded; otherwise it
    explains, loudly, that the tiny random models are in use and their masks are meaningless.
    """
    try:
        return DecafPipeline.from_config(config), None
    except ModelLoadError as error:
        if not allow_tiny_fallback:
            raise
        tiny = tiny_config(config, root)
        warning = tiny_warning(tiny, f"The configured models could not be loaded: {error}")
        log.warning(warning)
        return DecafPipeline.from_config(tiny), warning
