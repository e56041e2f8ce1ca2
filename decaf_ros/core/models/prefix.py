"""Exact prompt-prefix sharing between the prompts of one clip (design.md "Live grounding").

P1 and P3 ask about the same frames: on the video path, and on each frame image, their token
sequences agree up to the last visual token (system turn, user header, vision start, every
visual token) and differ only in the text after. Under causal attention everything of those
prefix positions — vision features, hidden states, K/V, post-RoPE Q/K, attention rows — depends
on the prefix alone. So the first prompt on a prefix runs in full and leaves behind a
``SharedPrefix``: the prefix's KV cache (transformers' ``DynamicCache``, cropped to the prefix)
and its rollout state (``PrefixRollout``); a later prompt on the same prefix runs only its own
suffix through the LLM, and its rollout reuses the prefix rows' V-Max sums and recombines the
prefix rows of Ā with its own head weights from the cached prefix queries and keys.

A prefix is recognised by content, not by call order: the same prefix token ids and the same
processor tensors (pixels, grids), compared exactly, so a prompt on other frames never picks up
a wrong cache. ``PreprocessMemo`` also lets the later prompt reuse the processor's image/video
preprocessing of the very same frames (resizing, normalising and patching 16 frame images costs
more CPU time than the suffix's LLM forward).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..capture import PrefixRollout

# Processor outputs that describe the text (they differ between prompts); every other tensor
# (pixels, grids, image sizes, frame timing) describes the visual prefix and must be equal.
TEXT_INPUTS = frozenset({"input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids"})


def visual_prefix_length(token_is_visual: torch.Tensor) -> int:
    """P = one past the last visual token of any item: the shareable prefix of a visual prompt."""
    columns = torch.nonzero(token_is_visual.any(dim=0), as_tuple=False).flatten()
    return int(columns[-1]) + 1 if columns.numel() else 0


def _visual_inputs(inputs: Any) -> dict[str, Any]:
    return {k: v for k, v in inputs.items() if k not in TEXT_INPUTS}


def _same(a: Any, b: Any) -> bool:
    if a is b:
        return True
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a, b))
    return a == b


@dataclass
class SharedPrefix:
    """The first ``length`` tokens of a prompt, run once: KV cache + rollout state, and what identifies them."""

    length: int
    input_ids: torch.Tensor  # (B, P) the prefix tokens
    visual: dict[str, Any]  # the processor's visual inputs (cpu tensors of the first prompt)
    cache: Any  # transformers DynamicCache holding the prefix's K/V of every layer
    rollout: PrefixRollout

    @classmethod
    def empty(cls, inputs: Any, length: int, model: Any) -> "SharedPrefix":
        """A prefix to be filled by running ``inputs`` in full with ``cache`` and ``rollout``."""
        from transformers import DynamicCache

        return cls(length=length, input_ids=inputs["input_ids"][:, :length].clone(),
                   visual=_visual_inputs(inputs), cache=DynamicCache(config=model.config),
                   rollout=PrefixRollout(length))

    def trimmed(self) -> "SharedPrefix":
        """Drop what the full run added after the prefix (the rest of the prompt, generated tokens)."""
        self.cache.crop(self.length - self.cache.get_seq_length())
        return self

    def matches(self, inputs: Any) -> bool:
        """Does ``inputs`` start with exactly this prefix (tokens and visual inputs) and go on after it?"""
        ids = inputs["input_ids"]
        if ids.shape[0] != self.input_ids.shape[0] or ids.shape[1] <= self.length:
            return False
        if not torch.equal(ids[:, :self.length], self.input_ids):
            return False
        visual = _visual_inputs(inputs)
        return visual.keys() == self.visual.keys() and all(_same(visual[k], self.visual[k]) for k in visual)


@dataclass
class PrefixStore:
    """The prefixes run so far within one ``sharing_prompt_prefixes`` block."""

    entries: list[SharedPrefix] = field(default_factory=list)

    def find(self, inputs: Any) -> SharedPrefix | None:
        return next((entry for entry in self.entries if entry.matches(inputs)), None)

    def add(self, entry: SharedPrefix) -> None:
        self.entries.append(entry)


# ProcessorMixin's per-modality steps: media (+ kwargs) -> (processed tensors, placeholder texts).
_MEDIA_STEPS = {"_process_images": "image_processor", "_process_videos": "video_processor"}


@dataclass
class _Processed:
    step: str
    media: list[np.ndarray]
    kwargs: dict[str, Any]
    state: tuple[str, ...]
    result: Any


def _media_arrays(media: Any) -> list[np.ndarray] | None:
    """The frames of an images/videos argument as arrays, or None for anything else (not memoised)."""
    items = list(media) if isinstance(media, (list, tuple)) else [media]
    return items if all(isinstance(item, np.ndarray) for item in items) else None


def _same_kwargs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    try:
        return a.keys() == b.keys() and all(bool(a[k] == b[k]) for k in a)
    except (ValueError, TypeError):  # values without a plain equality: treat as different
        return False


class PreprocessMemo:
    """Within one sharing block, the processor's image/video preprocessing of identical media runs once.

    Installed on the processor instance over ``ProcessorMixin._process_images``/``_process_videos``
    (the steps its ``__call__`` hands the images and videos to) and removed afterwards. A later
    call gets the earlier result when its media are equal array by array, its kwargs are equal,
    and the sub-processor carries the same instance overrides (e.g. InternVL's thumbnail switch);
    anything else, or media that are not numpy arrays, is processed as usual.
    """

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self.entries: list[_Processed] = []
        self.hits = 0

    @contextlib.contextmanager
    def installed(self) -> Iterator["PreprocessMemo"]:
        steps = [name for name in _MEDIA_STEPS if callable(getattr(self.processor, name, None))
                 and name not in vars(self.processor)]
        for name in steps:
            setattr(self.processor, name, self._memoised(name, getattr(self.processor, name)))
        try:
            yield self
        finally:
            for name in steps:
                delattr(self.processor, name)
            self.entries.clear()

    def _memoised(self, step: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def run(media: Any, **kwargs: Any) -> Any:
            arrays = _media_arrays(media)
            if arrays is None:
                return original(media, **kwargs)
            sub = getattr(self.processor, _MEDIA_STEPS[step], None)
            state = tuple(sorted(vars(sub))) if sub is not None else ()
            for entry in self.entries:
                if (entry.step == step and entry.state == state and len(entry.media) == len(arrays)
                        and _same_kwargs(entry.kwargs, kwargs)
                        and all(np.array_equal(x, y) for x, y in zip(entry.media, arrays))):
                    self.hits += 1
                    return entry.result
            result = original(media, **kwargs)
            self.entries.append(_Processed(step, arrays, dict(kwargs), state, result))
            return result

        return run
