"""The recipe every tiny random MLLM shares: in-process tokenizer, toy Qwen2 LLM, seeded save.

Each family module keeps what is its own (special tokens, chat template, processors, vision
tower); this module holds the steps that must stay identical across them so the tiny models
remain comparable and byte-for-byte reproducible.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

# Text the BPE merges are learned from: the prompts' vocabulary, so prompts tokenise short.
CORPUS = [
    "You are a helpful assistant.",
    "Which main object does the expression or question refer to? Answer in a single word.",
    "Focus on the primary subject or agent of the described action or behavior.",
    "Describe the background scene of the video, excluding any person, cat or dog.",
    "Given: expression, candidate class list, goal, instructions, answer with the label only.",
    "the person driving a car; the dog running on the grass; a cat sitting near the window.",
    "system user assistant video image frame object background person cat dog car bird horse",
    "0123456789 .,:;!?'\"()[]{}-_*/\\ \n",
]

VOCAB_SIZE = 512
TEXT_LAYERS = 4

# The toy Qwen2 LLM every family wraps; families add their rope and token fields.
TEXT_CONFIG: dict[str, Any] = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=TEXT_LAYERS,
    num_attention_heads=4,
    num_key_value_heads=2,  # GQA: exercises repeat_kv
    max_position_embeddings=4096,
)

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"


def train_tokenizer(special_tokens: Sequence[str]) -> Any:
    """Byte-level BPE trained in-process; specials first so their ids are stable."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - 16,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return tok


def chat_tokenizer(tokenizer_object: Any, model_max_length: int = 32768, **kwargs: Any) -> Any:
    """The HF fast tokenizer of a Qwen2-based chat model: im_end ends a turn, left padding."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_object,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=model_max_length,
        **kwargs,
    )


def token_ids(tokenizer: Any, tokens: Iterable[str]) -> dict[str, int]:
    return {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}


def qwen2_token_fields(ids: dict[str, int]) -> dict[str, int]:
    """bos/eos/pad of a Qwen2 LLM config (Qwen2 uses endoftext as both bos and pad)."""
    return dict(bos_token_id=ids[PAD_TOKEN], eos_token_id=ids[EOS_TOKEN], pad_token_id=ids[PAD_TOKEN])


def scale_up_weights(model: torch.nn.Module, seed: int) -> None:
    """Replace the tiny init (std 0.02) by std 0.3 so attention is far from uniform.

    Near-uniform attention would let a wrong rollout pass the comparison tests by accident.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2 and "norm" not in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)


def save_tiny(folder: str | Path, model_class: Any, config: Any, processor: Any, seed: int,
              generation_eos_pad: bool = False) -> Path:
    """Seeded random ``model_class(config)``, saved with ``processor`` to ``folder``; return it.

    generation_eos_pad: save a generation config naming only eos (im_end) and pad instead of the
    one derived from the model config (Qwen3-VL's text config, for one, names no eos at all).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # A forked RNG: building a tiny model must not shift the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        scale_up_weights(model, seed)
    model.eval()
    if generation_eos_pad:
        from transformers import GenerationConfig

        tokenizer = processor.tokenizer
        model.generation_config = GenerationConfig(
            eos_token_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN),
            pad_token_id=tokenizer.convert_tokens_to_ids(PAD_TOKEN))
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
