"""Where models come from: a local folder or a hub id, with errors that say how to fix them.

One home for model-source resolution, device and dtype choice, releasing models' memory, so the CLI, the ROS node,
the pipeline and the tests all load models the same way (``from_pretrained``).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
from pathlib import Path
from typing import Iterator

import torch

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """A model could not be found or loaded; the message says how to provide it."""


def _how_to_provide(model_id: str) -> str:
    folder = model_id.rsplit("/", 1)[-1]
    return (
        f"Model '{model_id}' is not available on this machine (no network access to the hub, or "
        f"HF_HUB_OFFLINE=1, and no copy in the Hugging Face cache). To provide it: on a connected "
        f"machine run `hf download {model_id} --local-dir {folder}`, copy the folder here and pass "
        f"its path instead of the id; or place the model in the Hugging Face cache "
        f"(HF_HOME / HF_HUB_CACHE) of this machine."
    )


def _looks_like_path(path_or_id: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with path syntax is meant as a folder.
    return path_or_id.startswith(("/", ".", "~")) or path_or_id.count("/") > 1 or "\\" in path_or_id


def resolve_model_source(path_or_id: str) -> str:
    """Return what to pass to ``from_pretrained``: an absolute folder, or the hub id itself.

    Raises ModelLoadError when a folder lacks ``config.json`` or a hub id cannot be resolved
    (offline and not cached, unknown repository, no network).
    """
    if not path_or_id or not str(path_or_id).strip():
        raise ModelLoadError("empty model path or hub id")
    path_or_id = str(path_or_id).strip()
    local = Path(path_or_id).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelLoadError(
                f"model folder '{local}' has no config.json; pass a folder written by "
                f"save_pretrained or by `hf download <id> --local-dir DIR`"
            )
        return str(local.resolve())
    if _looks_like_path(path_or_id):
        raise ModelLoadError(f"model folder '{local}' does not exist")
    _check_hub_id(path_or_id)
    return path_or_id


def _check_hub_id(model_id: str) -> None:
    # cached_file honours HF_HUB_OFFLINE and the cache, and wraps hub errors as OSError.
    from transformers.utils import cached_file

    try:
        cached_file(model_id, "config.json")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{_how_to_provide(model_id)} (cause: {exc})") from exc


@contextlib.contextmanager
def load_errors(model: str) -> Iterator[None]:
    """Turn the OSError/ValueError that ``from_pretrained`` raises into a ModelLoadError."""
    try:
        yield
    except ModelLoadError:
        raise
    except (OSError, ValueError) as exc:
        if Path(model).is_dir():
            raise ModelLoadError(f"could not load model from folder '{model}': {exc}") from exc
        raise ModelLoadError(f"{_how_to_provide(model)} (cause: {exc})") from exc


def pick_device(name: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu; otherwise the named device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device '{name}' requested but CUDA is not available")
    return device


def pick_dtype(name: str, device: torch.device | str) -> torch.dtype:
    """"auto" -> bfloat16 on cuda, float32 on cpu (CPU bf16 matmuls are slow and inexact)."""
    if name == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype '{name}'; expected auto or one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


def return_freed_memory() -> None:
    """Hand the memory of dropped models back: collect cycles, empty the CUDA cache, trim the C heap.

    glibc keeps freed heap pages for reuse, so without ``malloc_trim`` a process that dropped a
    model keeps its RSS; the trim returns those pages to the kernel (a no-op on other libcs).
    """
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None)
        if trim is not None:
            trim(0)
