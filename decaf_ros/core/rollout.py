"""Attention rollout with V-Max head weighting (docs/method.md §4).

Per rollout layer l (forward order s .. N-1), with A_h the (L, L) attention probabilities
of head h and V the visual key positions:

    m_h(q) = max_{k in V} A_h[q, k]
    w_h    = mean over all L query rows of m_h(q)
    ŵ_h    = w_h / max_h w_h
    Ā_l    = (1/H) Σ_h ŵ_h A_h          (divides by H, not by Σŵ)
    Â_l    = 0.5 Ā_l + 0.5 I            (rows are not renormalised)
    R_s = Â_s,  R_l = Â_l R_{l-1},  output r = R_{N-1}[L-1, :]

``VMaxRollout`` computes the row exactly (up to fp rounding) by storing only the per-layer head
mean Ā_l, lower triangle only, and propagating e_{L-1} backwards:
e_{L-1}ᵀ Â_{N-1} ⋯ Â_s = ((e_{L-1}ᵀ Â_{N-1}) Â_{N-2}) ⋯ Â_s, i.e. L² mat-vecs instead of L³.
It takes a layer either as probabilities (``add_layer``) or as the post-RoPE Q and K
(``add_layer_qk``, §4.5): the latter recomputes the probabilities in row blocks, so no
(B, H, L, L) tensor ever exists. The literal dense transcription it is checked against (full
L×L×L products) is a development asset: ``decaf_ros.devtools.dense.naive_vmax_rollout``.
"""
from __future__ import annotations

import torch


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


class _VisualKeys:
    """The key set V of §4.3, prepared once for reading row maxima from probability blocks."""

    def __init__(self, visual_key_mask: torch.Tensor, device: torch.device):
        mask = visual_key_mask.to(device=device, dtype=torch.bool)
        # a shared contiguous span reads a column slice (a view) instead of a gathered copy
        self.span = _common_span(mask)
        self.per_item = None if self.span is not None else [
            torch.nonzero(mask[i], as_tuple=False).flatten() for i in range(mask.shape[0])]

    def row_max_sums(self, probs: torch.Tensor) -> torch.Tensor:
        """(B, H, rows, cols) -> (B, H) fp32: Σ_rows max_{k∈V, k<cols} probs[..., k].

        Blocks may hold only the first ``cols`` keys (the causal rows' non-zero part); the
        dropped keys have probability 0 and cannot raise a max of non-negative values.
        """
        b, h, _, cols = probs.shape
        sums = torch.zeros(b, h, dtype=torch.float32, device=probs.device)
        if self.span is not None:
            stop = min(self.span[1], cols)
            if stop > self.span[0]:
                # max is exact in the source dtype (fp32 cast is monotone), so cast after reducing
                sums += probs[..., self.span[0]:stop].amax(dim=-1).float().sum(dim=-1)
            return sums
        for i, keys in enumerate(self.per_item):
            keys = keys[keys < cols]
            if keys.numel() > 0:
                sums[i] += probs[i].index_select(-1, keys).amax(dim=-1).float().sum(dim=-1)
        return sums


def _visual_max_row_sums(
    attn_probs: torch.Tensor, visual_key_mask: torch.Tensor, row_block: int,
) -> torch.Tensor:
    """(B, H, L, L) -> (B, H) fp32: Σ_q max_{k∈V} A_h[q, k], in row blocks (no full fp32 copy)."""
    keys = _VisualKeys(visual_key_mask, attn_probs.device)
    b, h, length, _ = attn_probs.shape
    sums = torch.zeros(b, h, dtype=torch.float32, device=attn_probs.device)
    for r0 in range(0, length, row_block):
        sums += keys.row_max_sums(attn_probs[:, :, r0:r0 + row_block])  # (B, H, rows, L) view
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


class _CausalBlockProbs:
    """Row blocks of softmax(Q Kᵀ·scaling + causal mask) in fp32, straight from Q and K (§4.2).

    GQA is handled by grouping instead of expanding K: query head h uses key head
    h // G (G = H / Hkv, the ``repeat_kv`` order), so the G query heads of one key head are
    stacked into one (G·rows, d) operand and a single batched matmul per key head writes all
    of them. Only keys < r1 are computed for rows [r0, r1): the rest are causally masked.
    """

    def __init__(self, query: torch.Tensor, key: torch.Tensor, scaling: float):
        b, h, length, d = query.shape
        hkv = key.shape[1]
        if key.dim() != 4 or (key.shape[0], key.shape[2], key.shape[3]) != (b, length, d) or h % hkv:
            raise ValueError(f"key must be (B, Hkv, L, d) with Hkv dividing H; got query "
                             f"{tuple(query.shape)}, key {tuple(key.shape)}")
        self.shape = (b, h, length, d)
        self.groups = h // hkv
        self.scaling = float(scaling)
        self.query = query.view(b, hkv, self.groups, length, d)  # a view: no copy of the heads
        self.key = key.float().reshape(b * hkv, length, d)  # fp32 once; no copy when already fp32
        self._causal_bias = torch.zeros(0, 0)  # additive causal mask of the diagonal square

    def compute(self, r0: int, rows: int, out: torch.Tensor) -> torch.Tensor:
        """Probabilities of rows [r0, r0+rows) against keys [0, r0+rows) -> (B, H, rows, r0+rows).

        ``out`` is a flat fp32 buffer of at least B·H·rows·(r0+rows) elements; the result is a
        contiguous view of it, so no block-sized tensor is allocated per call.
        """
        b, h, _, d = self.shape
        hkv, cols = self.key.shape[0] // b, r0 + rows
        # fp32 copy of the block's queries, grouped per key head; scaling Q rather than the
        # scores saves a pass over the (much larger) score block
        q = torch.empty(b, hkv, self.groups, rows, d, dtype=torch.float32, device=out.device)
        q.copy_(self.query[:, :, :, r0:r0 + rows]).mul_(self.scaling)
        scores = out[:b * h * rows * cols].view(b * hkv, self.groups * rows, cols)
        torch.bmm(q.view(b * hkv, self.groups * rows, d), self.key[:, :cols].transpose(1, 2), out=scores)
        scores = scores.view(b, h, rows, cols)
        # only the diagonal square holds keys after their query: -inf there, as the plain
        # lower-triangular mask of §4.2 (the padding mask is ignored). Adding 0/-inf is exact
        # and about twice as fast as masked_fill_ on this strided slice.
        scores[..., r0:cols].add_(self._diagonal_bias(rows, out.device))
        return torch.softmax(scores, dim=-1, out=scores)  # in place: the diagonal keeps rows finite

    def _diagonal_bias(self, rows: int, device: torch.device) -> torch.Tensor:
        """(rows, rows) fp32, -inf above the diagonal and 0 elsewhere; built once, sliced per block."""
        if self._causal_bias.shape[0] < rows or self._causal_bias.device != torch.device(device):
            above = torch.ones(rows, rows, dtype=torch.bool, device=device).triu_(1)
            self._causal_bias = torch.zeros(rows, rows, device=device).masked_fill_(above, float("-inf"))
        return self._causal_bias[:rows, :rows]  # a top-left square of triu(1) is triu(1)


class VMaxRollout:
    """Streaming one-row V-Max rollout: feed layers in forward order, then read the last row.

    Memory: only each layer's head mean Ā_l is kept, and only its lower triangle (attention
    is causal, so Ā_l[q, k] = 0 for k > q): row block [r0, r1) stores columns [0, r1), about
    L²/2 + L·row_block/2 floats per layer and item. ``add_layer`` reads the caller's per-head
    probabilities in row blocks and never copies them whole, so one layer's (B, H, L, L) — the
    caller's — exists at a time; ``add_layer_qk`` recomputes them from Q/K in row blocks, so
    none exists and the extra memory is one B·H·row_block·L buffer. Pass ``causal=False`` to
    keep full rows for non-causal probability input.
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
        self._scratch: torch.Tensor | None = None  # (B, 1, row_block·L) for add_layer
        self._qk_scratch: torch.Tensor | None = None  # flat B·H·row_block·L for add_layer_qk

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
        """Free the per-block buffers (re-created by the next ``add_layer``/``add_layer_qk``)."""
        self._scratch = None
        self._qk_scratch = None

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

    def add_layer_qk(
        self, query: torch.Tensor, key: torch.Tensor, scaling: float, row_block: int | None = None,
        prefix_rows: int = 0, prefix_sums: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Consume one layer as post-RoPE Q (B, H, L, d) and K (B, Hkv, L, d); keep only Ā_l.

        Same result as ``add_layer`` on the §4.2 probabilities, but those are recomputed in
        fp32 row blocks and never exist whole: pass 1 accumulates the V-Max row maxima for the
        head weights ŵ, pass 2 recomputes each block and writes (1/H) Σ_h ŵ_h P_h into the
        stored lower-triangular block. K may be GQA-grouped (Hkv dividing H, ``repeat_kv``
        order) or already expanded (Hkv = H). Extra memory: one B·H·row_block·L fp32 buffer.

        A shared prompt prefix (its first ``prefix_rows`` = P rows; causal, so they depend on
        the prefix alone): the row blocks are split at P and the prefix rows' V-Max sums
        Σ_{q<P} max_{k∈V} P_h[q, k] (B, H) are returned. Given those sums back as
        ``prefix_sums`` (from an earlier prompt on the same prefix), pass 1 skips the prefix
        rows; pass 2 still recombines them with this prompt's ŵ, which depends on every row.
        """
        if not self.causal:
            raise ValueError("add_layer_qk applies the causal mask of §4.2; use causal=True")
        if query.dim() != 4 or query.shape[0] != self.visual_key_mask.shape[0] \
                or query.shape[2] != self.seq_len:
            raise ValueError(f"query must be (B, H, L, d) = ({self.visual_key_mask.shape[0]}, H, "
                             f"{self.seq_len}, d); got {tuple(query.shape)}")
        block = int(row_block or self.row_block)
        if block < 1:
            raise ValueError("row_block must be >= 1")
        if not 0 <= prefix_rows <= self.seq_len or (prefix_sums is not None and prefix_rows < 1):
            raise ValueError(f"prefix_rows must be in [1, {self.seq_len}] with prefix_sums; got {prefix_rows}")
        self.visual_key_mask = self.visual_key_mask.to(query.device)
        probs = _CausalBlockProbs(query, key, scaling)
        spans = self._block_spans(self.seq_len, block, split_at=prefix_rows)
        b, h, length, _ = probs.shape
        scratch = self._qk_scratch_for(b * h * min(block, length) * length, query.device)
        weights, prefix, last_in_scratch = self._qk_head_weights(probs, spans, scratch, prefix_rows, prefix_sums)
        self.head_weights.append(weights)
        self._layers.append(self._qk_head_mean_blocks(probs, spans, weights, scratch, last_in_scratch))
        return prefix if prefix_rows else None

    def _qk_head_weights(
        self, probs: _CausalBlockProbs, spans: list[tuple[int, int, int]], scratch: torch.Tensor,
        prefix_rows: int = 0, prefix_sums: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, bool]:
        """Pass 1: (B, H) ŵ from Σ_q max_{k∈V} P_h[q, k] over all L rows, block by block.

        -> (ŵ, the prefix rows' sums (rows < ``prefix_rows``), whether the last block is in scratch).
        The prefix rows are summed first either way, so given ``prefix_sums`` the total adds up in
        the same order as when they are computed here.
        """
        keys = _VisualKeys(self.visual_key_mask, scratch.device)
        b, h, length, _ = probs.shape
        known = prefix_sums is not None
        sums = prefix_sums.to(scratch.device, torch.float32).clone() if known else \
            torch.zeros(b, h, dtype=torch.float32, device=scratch.device)
        prefix = sums.clone() if known else None
        computed_last = False
        for r0, rows, _ in spans:
            if known and r0 < prefix_rows:
                continue
            sums += keys.row_max_sums(probs.compute(r0, rows, scratch))
            computed_last = r0 + rows == length
            if r0 + rows == prefix_rows:
                prefix = sums.clone()
        return _max_normalise(sums / length), prefix, computed_last  # mean over ALL rows (§4.3)

    def _qk_head_mean_blocks(
        self, probs: _CausalBlockProbs, spans: list[tuple[int, int, int]], weights: torch.Tensor,
        scratch: torch.Tensor, last_in_scratch: bool = True,
    ) -> list[tuple[int, torch.Tensor]]:
        """Pass 2: Ā row blocks = (1/H) Σ_h ŵ_h P_h, one (1, H) x (H, rows·cols) matmul each.

        Pass 1 normally ended on the last block, which is then still in ``scratch``; it is also
        the widest causal block, so it is consumed first and not recomputed.
        """
        b, h, _, _ = probs.shape
        scaled = (weights / h)[:, None, :]  # (B, 1, H): the plain head mean's 1/H folded in
        blocks = self._new_blocks(b, spans, scratch.device)
        for index in reversed(range(len(spans))):
            r0, rows, cols = spans[index]
            if index == len(spans) - 1 and last_in_scratch:
                part = scratch[:b * h * rows * cols].view(b, h, rows * cols)
            else:
                part = probs.compute(r0, rows, scratch).view(b, h, rows * cols)
            torch.bmm(scaled, part, out=blocks[index][1].view(b, 1, rows * cols))
        return blocks

    @staticmethod
    def _new_blocks(
        b: int, spans: list[tuple[int, int, int]], device: torch.device,
    ) -> list[tuple[int, torch.Tensor]]:
        """One allocation per layer, cut into contiguous (B, rows, cols) row blocks."""
        storage = torch.empty(b * sum(rows * cols for _, rows, cols in spans),
                              dtype=torch.float32, device=device)
        blocks, offset = [], 0
        for r0, rows, cols in spans:
            blocks.append((r0, storage[offset:offset + b * rows * cols].view(b, rows, cols)))
            offset += b * rows * cols
        return blocks

    def _qk_scratch_for(self, size: int, device: torch.device) -> torch.Tensor:
        """Flat fp32 buffer for one block of per-head probabilities, reused across layers."""
        if (self._qk_scratch is None or self._qk_scratch.numel() < size
                or self._qk_scratch.device != torch.device(device)):
            self._qk_scratch = None  # free the old one before allocating its replacement
            self._qk_scratch = torch.empty(size, dtype=torch.float32, device=device)
        return self._qk_scratch

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
        blocks = self._new_blocks(b, spans, attn_probs.device)
        scratch = self._scratch_for(b, length, attn_probs.device)
        for (r0, rows, cols), (_, block) in zip(spans, blocks):
            # full-width rows of a contiguous tensor reshape without a copy (fp32 input);
            # other dtypes are cast one block at a time
            part = attn_probs[:, :, r0:r0 + rows].reshape(b, h, rows * length).float()
            out = scratch[:, :, :rows * length]
            torch.bmm(scaled, part, out=out)
            block.copy_(out.view(b, rows, length)[:, :, :cols])
        return blocks

    def _block_spans(
        self, length: int, row_block: int | None = None, split_at: int = 0,
    ) -> list[tuple[int, int, int]]:
        """(first row, row count, stored columns) per row block; causal rows < r1 need columns < r1.

        ``split_at`` > 0 makes a block boundary there (the end of a shared prefix): blocks of
        ``row_block`` rows from 0, and again from ``split_at``.
        """
        block = row_block or self.row_block
        spans = []
        for start, stop in ((0, split_at), (split_at, length)) if 0 < split_at < length else ((0, length),):
            for r0 in range(start, stop, block):
                r1 = min(r0 + block, stop)
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
