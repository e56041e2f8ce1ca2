"""What every adapter around a transformers chat MLLM shares: loading, the chat turn, and the pass.

A pass is: processor inputs -> prefill (or greedy generation) under the rollout capture ->
rollout values at the visual tokens reshaped to the family's token grid. The families supply
only their inputs, grid, system turn and model class. Kept apart from ``base.py`` because it
imports the capture (and so transformers), which ``base.py`` leaves to the families' modules.
"""
from __future__ import annotations

import contextlib
import copy
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..capture import attn_implementation_spec, capture_rollout
from ..config import DecafConfig
from ..loading import load_errors
from .base import MLLMAdapter, PassMaps, rollout_start_layer
from .prefix import PreprocessMemo, PrefixStore, SharedPrefix, visual_prefix_length

# One batch of frame-path images -> (maps (B, h, w), answers).
FrameBatch = Callable[[list[np.ndarray]], tuple[torch.Tensor, list[str]]]


def visual_maps(row: torch.Tensor, token_is_visual: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
    """Rollout values at the visual tokens, (B, L) -> (Σt, h, w) in raster order (t, rows, cols).

    grid_thw: (B, 3) LLM token grid per item (already temporally and spatially merged).
    Each item's visual tokens are gathered by token id, so text between items never leaks in.
    """
    maps = []
    for item in range(row.shape[0]):
        t, h, w = (int(v) for v in grid_thw[item])
        values = row[item][token_is_visual[item]]
        if values.numel() != t * h * w:
            raise RuntimeError(f"item {item}: {values.numel()} visual tokens, grid {t}x{h}x{w}")
        maps.append(values.reshape(t, h, w))
    return torch.cat(maps).float().cpu()


class HFAdapter(MLLMAdapter):
    """An HF model + processor pair with the rollout capture in the model's text layers."""

    span_rule = True  # V = the contiguous visual span (§4.3); False: the exact visual positions

    def __init__(self, model: Any, processor: Any, config: DecafConfig) -> None:
        self.model = model
        self.processor = processor
        self.config = config
        self.num_layers = int(model.config.text_config.num_hidden_layers)
        self.start_layer = rollout_start_layer(self.num_layers, config.rollout_start_layer)
        self._prefixes: PrefixStore | None = None  # set inside sharing_prompt_prefixes
        self.prefill_token_layers = 0  # Σ over LLM prefill forwards of tokens × layers (a work counter)
        self._language_model().register_forward_pre_hook(self._count_prefill, with_kwargs=True)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, source: str, hf_config: Any, device: torch.device, dtype: torch.dtype,
                        config: DecafConfig) -> "HFAdapter":
        with load_errors(source):
            processor = cls._load_processor(source, config)
            # Load straight onto the GPU (a 7B model need not pass through host memory first).
            device_map = str(device) if device.type == "cuda" else None
            model = cls._hf_model_class(hf_config.model_type).from_pretrained(
                source, config=hf_config, dtype=dtype, device_map=device_map,
                attn_implementation=attn_implementation_spec())
        model.to(device).eval()
        return cls(model, processor, config)

    @classmethod
    def _load_processor(cls, source: str, config: DecafConfig) -> Any:
        """The checkpoint's processor with transformers' default image-processor backend."""
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(source)

    @classmethod
    @abstractmethod
    def _hf_model_class(cls, model_type: str) -> Any:
        """The transformers ``...ForConditionalGeneration`` class of a config ``model_type``."""

    def _language_model(self) -> torch.nn.Module:
        """The text decoder stack inside the VLM (every supported family nests it the same way)."""
        language_model = getattr(getattr(self.model, "model", None), "language_model", None)
        if not isinstance(language_model, torch.nn.Module):
            raise TypeError(f"{type(self.model).__name__} has no model.language_model")
        return language_model

    def _count_prefill(self, _module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook of the language model: add tokens × layers of every prefill forward."""
        tokens = kwargs.get("inputs_embeds")
        tokens = tokens if tokens is not None else kwargs.get("input_ids", args[0] if args else None)
        if tokens is not None and tokens.shape[1] > 1:  # one-token forwards are decode steps
            self.prefill_token_layers += int(tokens.shape[0] * tokens.shape[1]) * self.num_layers

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ prompts
    def _system_turns(self) -> list[dict[str, Any]]:
        """Turns before the user's; none by default (a template may still add its own)."""
        return []

    def _chat(self, visual: str | None, text: str) -> str:
        """The system turns, then one user turn with the visual item first (§3.1)."""
        content = ([{"type": visual}] if visual else []) + [{"type": "text", "text": text}]
        messages = self._system_turns() + [{"role": "user", "content": content}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    # ------------------------------------------------------------------ passes
    def _in_batches(self, images: Sequence[np.ndarray], run_batch: FrameBatch) -> PassMaps:
        """The frame path in batches of ``frame_batch_size`` images; maps and answers concatenated."""
        maps, answers = [], []
        batch = self.config.frame_batch_size
        for start in range(0, len(images), batch):
            batch_maps, batch_answers = run_batch(list(images[start:start + batch]))
            maps.append(batch_maps)
            answers.extend(batch_answers)
        return PassMaps(torch.cat(maps), answers)

    def _visual_pass(self, inputs: Any, token_id: int, grid: torch.Tensor,
                     generate: bool) -> tuple[torch.Tensor, list[str]]:
        """Run the prompt; -> rollout at the ``token_id`` tokens as (Σt, h, w) per ``grid``, answers."""
        row, answers = self._run(inputs, token_id, generate)
        return visual_maps(row, inputs["input_ids"] == token_id, grid), answers

    def _video_maps(self, inputs: Any, token_id: int, grid: torch.Tensor, generate: bool) -> PassMaps:
        """The pass of a one-video prompt: maps (t, h, w) on its (1, 3) token ``grid``."""
        return PassMaps(*self._visual_pass(inputs, token_id, grid, generate))

    def _run(self, inputs: Any, token_id: int, generate: bool) -> tuple[torch.Tensor, list[str]]:
        """Prefill (+ greedy generation) under the capture; -> rollout row (B, L), answers.

        Inside ``sharing_prompt_prefixes``, a prompt whose visual prefix (tokens and pixels) an
        earlier prompt already ran reuses it: only its suffix goes through the LLM (prefill-only
        prompts, like P3); otherwise the prompt runs in full and leaves its prefix for later ones.
        """
        ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is not None and not bool(mask.all()):
            # The recomputed attention uses a plain causal mask (§13 item 5): padding would corrupt it.
            raise RuntimeError("batched prompts differ in length (padding); rollout needs equal lengths")
        token_is_visual = ids == token_id  # (B, L)
        store = self._prefixes
        shared = store.find(inputs) if store is not None else None
        if shared is not None and not generate:
            return self._run_after_prefix(inputs, token_is_visual, shared), []
        record = store is not None and shared is None and bool(token_is_visual.any())
        prefix = SharedPrefix.empty(inputs, visual_prefix_length(token_is_visual), self.model) if record else None
        device_inputs = self._to_device(inputs)
        with torch.inference_mode(), capture_rollout(
                self.model, token_is_visual, self.start_layer, span_rule=self.span_rule,
                prefix=prefix.rollout if prefix else None) as handle:
            cache = prefix.cache if prefix else None
            answers = self._generate(device_inputs, cache) if generate else self._prefill(device_inputs, cache)
        if prefix is not None:
            store.add(prefix.trimmed())
        return handle.row, answers

    def _run_after_prefix(self, inputs: Any, token_is_visual: torch.Tensor, shared: "SharedPrefix") -> torch.Tensor:
        """The prompt's tokens after ``shared``'s prefix through the LLM, on its KV cache; -> row (B, L)."""
        ids = inputs["input_ids"]
        start, length = shared.length, ids.shape[1]
        positions = self._text_positions(inputs)
        device = self.device
        suffix = {
            "input_ids": ids[:, start:].to(device),
            "attention_mask": torch.ones_like(ids, device=device),
            "cache_position": torch.arange(start, length, device=device),
            "position_ids": None if positions is None else positions[..., start:].to(device),
        }
        try:
            with torch.inference_mode(), capture_rollout(
                    self.model, token_is_visual, self.start_layer, span_rule=self.span_rule,
                    prefix=shared.rollout, reuse_prefix=True) as handle:
                self.model(**suffix, past_key_values=shared.cache, use_cache=True, logits_to_keep=1)
        finally:
            shared.cache.crop(start - shared.cache.get_seq_length())  # back to the prefix for the next prompt
        return handle.row

    def _text_positions(self, inputs: Any) -> torch.Tensor | None:
        """The LLM's position ids of the whole prompt, or None when they are 0..L-1 (1D RoPE).

        Families with multimodal RoPE (Qwen-VL) override this: their suffix positions continue
        from the visual grid's positions, which only the whole prompt determines.
        """
        return None

    @contextlib.contextmanager
    def sharing_prompt_prefixes(self, enabled: bool = True) -> Iterator[None]:
        """Prompts within the block share their visual prefixes (design.md "Live grounding").

        Every prompt whose processor inputs repeat an earlier prompt's visual prefix — the same
        tokens up to the last visual token and the same pixels — runs only its suffix. The KV
        caches and rollout states are held until the block ends; the processor's preprocessing
        of the same frames is reused too (``PreprocessMemo``). ``enabled=False`` runs every prompt
        in full (the reference computation).
        """
        if not enabled:
            yield
            return
        if self._prefixes is not None:
            raise RuntimeError("prompt-prefix sharing is already active")
        self._prefixes = PrefixStore()
        try:
            with PreprocessMemo(self.processor).installed():
                yield
        finally:
            self._prefixes = None

    def _to_device(self, inputs: Any) -> Any:
        return inputs.to(self.device)

    def _prefill(self, inputs: Any, cache: Any = None) -> list[str]:
        self.model(**inputs, use_cache=cache is not None, past_key_values=cache, logits_to_keep=1)
        return []

    def _generate(self, inputs: Any, cache: Any = None) -> list[str]:
        extra = {} if cache is None else {"past_key_values": cache}
        out = self.model.generate(**inputs, generation_config=self._greedy_config(), **extra)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        # as the reference decodes: no clean-up of spaces before punctuation in the answers
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _greedy_config(self) -> Any:
        """The checkpoint's generation config made greedy (§3.1).

        Like the reference's ``generate(do_sample=False, num_beams=1, max_new_tokens=...)``, other
        checkpoint settings (eos ids, repetition_penalty) are kept. Sampling knobs are set to
        their neutral values: greedy ignores them, and None would be refilled from the
        checkpoint's config by ``generate`` (then warned about).
        """
        config = copy.deepcopy(self.model.generation_config)
        config.do_sample = False
        config.num_beams = 1
        config.max_new_tokens = self.config.max_new_tokens
        config.temperature, config.top_p, config.top_k = 1.0, 1.0, 50
        return config

    def generate_text(self, text: str) -> str:
        inputs = self.processor(text=[self._chat(None, text)], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            return self._generate(inputs)[0]
