"""Attention rollout with V-Max head weighting (method spec §4).

Per rollout layer l (forward order s .. N-1), with A_h the (L, L) attention probabilities
of head h and V the visual key positions:

    m_h(q) = max_{k in V} A_h[q, k]
    w_h    = mean over all L query rows of m_h(q)
    ŵ_h    = w_h / max_h w_h
    Ā_l    = (1/H) Σ_h ŵ_h A_h          (divides by H, not by Σŵ)
    Â_l    = 0.5 Ā_l + 0.5 I            (rows are not renormalised)
    R_s = Â_s,  R_l = Â_l R_{l-1},  output r = R_{N-1}[L-1, :]

``naive_vmax_rollout`` is the literal dense transcription (full L×L×L products).
``VMaxRollout`` computes the same row exactly (up to fp rounding) by storing only the
per-layer head mean Ā_l, lower triangle only, and propagating e_{L-1} backwards:
e_{L-1}ᵀ Â_{N-1} ⋯ Â_s = ((e_{L-1}ᵀ Â_{N-1}) Â_{N-2}) ⋯ Â_s, i.e. L² mat-vecs instead of L³.
"""
from __future__ import annotations

from typing import Iterable

import torch

# Attention probabilities are non-negative, so a masked-out key can be set to 0 without
# changing any max over visual keys (a row with no visual key then has max 0).
_MASKED_PROB = 0.0


def visual_span_mask(token_is_visual: torch.Tensor) -> torch.Tensor:
    """(B, L) bool -> (B, L) bool: the span first..last visual token of item 0, for every item.

    Qwen-VL and LLaVA-OneVision place all visual tokens of an item contiguously and every
    batch item has the same layout, so the reference takes item 0's span (§4.3). InternVL
    interleaves text between frames and must use the exact mask instead.
    """
    if token_is_visual.dim() != 2:
        raise ValueError(f"token_is_visual must be (B, L); got {tuple(token_is_visual.shape)}")
    span = torch.zeros_like(token_is_visual, dtype=torch.bool)
    positions = torch.nonzero(token_is_visual[0], as_tuple=False).flatten()
    if positions.numel() > 0:
        span[:, int(positions[0]): int(positions[-1]) + 1] = True
    return span


def _check_shapes(attn_probs: torch.Tensor, visual_key_mask: torch.Tensor) -> None:
    if attn_probs.dim() != 4 or attn_probs.shape[-1] != attn_probs.shape[-2]:
        raise ValueError(f"attention must be (B, H, L, L); got {tuple(attn_probs.shape)}")
    b, _, _, length = attn_probs.shape
    if tuple(visual_key_mask.shape) != (b, length):
        raise ValueError(
            f"visual_key_mask must be (B, L) = {(b, length)}; got {tuple(visual_key_mask.shape)}")


def _common_span(visual_key_mask: torch.Tensor) -> tuple[int, int] | None:
    """(start, stop) when every item's mask is the same contiguous run, else None.

    A shared span lets the row max read a column slice (a view) instead of a gathered copy.
    """
    first = visual_key_mask[0]
    if not bool((visual_key_mask == first).all()):
        return None
    positions = torch.nonzero(first, as_tuple=False).flatten()
    if positions.numel() == 0:
        return (0, 0)
    start, stop = int(positions[0]), int(positions[-1]) + 1
    if int(positions.numel()) != stop - start:
        return None
    return (start, stop)


def _visual_max_row_sums(
    attn_probs: torch.Tensor, visual_key_mask: torch.Tensor, row_block: int,
) -> torch.Tensor:
    """(B, H, L, L) -> (B, H) fp32: Σ_q max_{k∈V} A_h[q, k], in row blocks (no full fp32 copy)."""
    b, h, length, _ = attn_probs.shape
    sums = torch.zeros(b, h, dtype=torch.float32, device=attn_probs.device)
    span = _common_span(visual_key_mask)
    if span == (0, 0):
        return sums  # no visual keys at all
    per_item = None if span is not None else [
        torch.nonzero(visual_key_mask[i], as_tuple=False).flatten().to(attn_probs.device)
        for i in range(b)]
    for r0 in range(0, length, row_block):
        rows = attn_probs[:, :, r0:r0 + row_block]  # (B, H, rows, L) view
        if span is not None:
            # max is exact in the source dtype (fp32 cast is monotone), so cast after reducing
            sums += rows[..., span[0]:span[1]].amax(dim=-1).float().sum(dim=-1)
            continue
        for i, keys in enumerate(per_item):
            if keys.numel() > 0:
                sums[i] += rows[i].index_select(-1, keys).amax(dim=-1).float().sum(dim=-1)
    return sums


def _max_normalise(w: torch.Tensor) -> torch.Tensor:
    """(B, H) -> (B, H): divide by the per-item max; a max of 0 divides by 1 (all zeros stay 0)."""
    top = w.amax(dim=-1, keepdim=True)
    return w / torch.where(top > 0, top, torch.ones_like(top))


def vmax_head_weights(
    attn_probs: torch.Tensor, visual_key_mask: torch.Tensor, row_block: int = 512,
) -> torch.Tensor:
    """(B, H, L, L), (B, L) bool -> (B, H) fp32 V-Max head weights ŵ (§4.3), max-normalised.

    A layer whose heads never attend to a visual key (all w_h = 0) gets all-zero weights,
    the same "safe range" convention as the min–max normalisations of §5.4.
    """
    _check_shapes(attn_probs, visual_key_mask)
    mask = visual_key_mask.to(device=attn_probs.device, dtype=torch.bool)
    length = attn_probs.shape[-1]
    mean_max = _visual_max_row_sums(attn_probs, mask, row_block) / length  # mean over ALL rows
    return _max_normalise(mean_max)


class VMaxRollout:
    """Streaming one-row V-Max rollout: feed layers in forward order, then read the last row.

    Memory: only each layer's head mean Ā_l is kept, and only its lower triangle (attention
    is causal, so Ā_l[q, k] = 0 for k > q): row block [r0, r1) stores columns [0, r1), about
    L²/2 + L·row_block/2 floats per layer and item. The per-head input is read in row blocks
    and never copied as a whole, so no more than one layer's (B, H, L, L) tensor — the
    caller's — exists at a time. Pass ``causal=False`` to keep full rows for non-causal input.
    """

    def __init__(self, visual_key_mask: torch.Tensor, row_block: int = 512, causal: bool = True):
        if visual_key_mask.dim() != 2:
            raise ValueError(f"visual_key_mask must be (B, L); got {tuple(visual_key_mask.shape)}")
        if row_block < 1:
            raise ValueError("row_block must be >= 1")
        self.visual_key_mask = visual_key_mask.to(torch.bool)
        self.row_block = int(row_block)
        self.causal = bool(causal)
        # per layer: list of (r0, (B, r1 - r0, cols) fp32) row blocks of Ā_l
        self._layers: list[list[tuple[int, torch.Tensor]]] = []
        self.head_weights: list[torch.Tensor] = []  # (B, H) per layer, for inspection
        self._scratch: torch.Tensor | None = None

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    @property
    def seq_len(self) -> int:
        return int(self.visual_key_mask.shape[1])

    def stored_bytes(self) -> int:
        """Bytes held by the stored Ā blocks (for memory reports)."""
        return sum(t.numel() * t.element_size() for layer in self._layers for _, t in layer)

    def release_scratch(self) -> None:
        """Free the per-block matmul buffer (it is re-created by the next ``add_layer``)."""
        self._scratch = None

    def add_layer(self, attn_probs: torch.Tensor) -> None:
        """Consume one layer's (B, H, L, L) probabilities; keep only Ā_l (fp32, lower triangle)."""
        _check_shapes(attn_probs, self.visual_key_mask)
        if attn_probs.shape[-1] != self.seq_len:
            raise ValueError(f"layer has L={attn_probs.shape[-1]}, rollout was set up for L={self.seq_len}")
        mask = self.visual_key_mask.to(attn_probs.device)
        self.visual_key_mask = mask
        weights = vmax_head_weights(attn_probs, mask, self.row_block)  # (B, H)
        self.head_weights.append(weights)
        self._layers.append(self._head_mean_blocks(attn_probs, weights))

    def _head_mean_blocks(
        self, attn_probs: torch.Tensor, weights: torch.Tensor,
    ) -> list[tuple[int, torch.Tensor]]:
        """Ā = (1/H) Σ_h ŵ_h A_h, built row block by row block as one (1, H) x (H, rows·L) matmul.

        All of a layer's blocks live in one allocation and the matmul writes into a reused
        scratch buffer, so streaming many layers does not fragment the heap with temporaries.
        """
        b, h, length, _ = attn_probs.shape
        scaled = (weights / h)[:, None, :]  # (B, 1, H): the plain head mean's 1/H folded in
        spans = self._block_spans(length)
        storage = torch.empty(b, sum(rows * cols for _, rows, cols in spans),
                              dtype=torch.float32, device=attn_probs.device)
        scratch = self._scratch_for(b, length, attn_probs.device)
        blocks, offset = [], 0
        for r0, rows, cols in spans:
            # full-width rows of a contiguous tensor reshape without a copy (fp32 input);
            # other dtypes are cast one block at a time
            part = attn_probs[:, :, r0:r0 + rows].reshape(b, h, rows * length).float()
            out = scratch[:, :, :rows * length]
            torch.bmm(scaled, part, out=out)
            block = storage[:, offset:offset + rows * cols].view(b, rows, cols)
            block.copy_(out.view(b, rows, length)[:, :, :cols])
            blocks.append((r0, block))
            offset += rows * cols
        return blocks

    def _block_spans(self, length: int) -> list[tuple[int, int, int]]:
        """(first row, row count, stored columns) per row block; causal rows < r1 need columns < r1."""
        spans = []
        for r0 in range(0, length, self.row_block):
            r1 = min(r0 + self.row_block, length)
            spans.append((r0, r1 - r0, r1 if self.causal else length))
        return spans

    def _scratch_for(self, b: int, length: int, device: torch.device) -> torch.Tensor:
        """(B, 1, row_block·L) fp32 buffer reused by every block of every layer."""
        size = min(self.row_block, length) * length
        if (self._scratch is None or self._scratch.shape != (b, 1, size)
                or self._scratch.device != torch.device(device)):
            self._scratch = torch.empty(b, 1, size, dtype=torch.float32, device=device)
        return self._scratch

    def last_token_row(self) -> torch.Tensor:
        """(B, L) fp32: R_{N-1}[:, L-1, :], by r ← 0.5·(r Ā_l) + 0.5·r from the last layer down."""
        if not self._layers:
            raise RuntimeError("no layer was added; the rollout needs at least one layer")
        b, length = self.visual_key_mask.shape
        device = self._layers[0][0][1].device
        row = torch.zeros(b, length, dtype=torch.float32, device=device)
        row[:, length - 1] = 1.0  # e_{L-1}
        for blocks in reversed(self._layers):
            row = 0.5 * self._row_times_mean(row, blocks) + 0.5 * row  # identity mix, no renorm
        self.release_scratch()  # reading the row normally ends the pass
        return row

    @staticmethod
    def _row_times_mean(row: torch.Tensor, blocks: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
        """(B, L) · Ā_l -> (B, L), summing each stored row block's contribution."""
        out = torch.zeros_like(row)
        for r0, block in blocks:  # block: (B, rows, cols)
            rows, cols = block.shape[1], block.shape[2]
            out[:, :cols] += torch.bmm(row[:, None, r0:r0 + rows], block)[:, 0]
        return out


def naive_vmax_rollout(
    attn_per_layer: Iterable[torch.Tensor], visual_key_mask: torch.Tensor,
) -> torch.Tensor:
    """Literal dense §4: full (L, L) Â per layer and full L×L×L products. -> (B, L) fp32.

    The reference for tests and benchmarks. Layers are consumed in forward order; a list
    holds all of them at once (as ``output_attentions=True`` would), a generator one at a time.
    """
    product = None  # R_l, (B, L, L)
    for attn in attn_per_layer:
        _check_shapes(attn, visual_key_mask)
        attn = attn.float()
        b, h, length, _ = attn.shape
        mask = visual_key_mask.to(device=attn.device, dtype=torch.bool)
        row_max = attn.masked_fill(~mask[:, None, None, :], _MASKED_PROB).amax(dim=-1)  # (B, H, L)
        w = row_max.mean(dim=-1)  # (B, H)
        w_hat = _max_normalise(w)
        mean = (w_hat[:, :, None, None] * attn).sum(dim=1) / h  # (B, L, L)
        eye = torch.eye(length, dtype=torch.float32, device=attn.device)
        a_hat = 0.5 * mean + 0.5 * eye
        product = a_hat if product is None else torch.matmul(a_hat, product)
    if product is None:
        raise ValueError("naive_vmax_rollout needs at least one layer")
    return product[:, -1, :].clone()
