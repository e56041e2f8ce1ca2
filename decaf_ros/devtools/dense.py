"""Dense references of §4: the whole-layer attention probabilities and the literal rollout.

The runtime computes both without ever holding a (B, H, L, L) tensor (``VMaxRollout.add_layer_qk``
recomputes probabilities in row blocks and propagates one row). These are the literal
transcriptions it is checked against by the tests and the benchmarks: full probabilities, full
L×L×L products, written independently of the runtime's helpers.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch


def causal_probs(query: torch.Tensor, key: torch.Tensor, scaling: float) -> torch.Tensor:
    """§4.2 whole: softmax(Q Kᵀ·scaling + plain causal mask) in fp32 -> (B, H, L, L).

    query (B, H, L, d); key (B, Hkv, L, d) with Hkv dividing H, expanded to the query heads in
    ``repeat_kv`` order (query head h reads key head h // (H / Hkv)), as the reference does.
    In-place max-subtract/exp/normalise: no second L×L per head.
    """
    heads, kv_heads = query.shape[1], key.shape[1]
    if heads % kv_heads:
        raise ValueError(f"key heads ({kv_heads}) must divide query heads ({heads})")
    key = key.repeat_interleave(heads // kv_heads, dim=1)
    length = query.shape[2]
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2))
    scores.mul_(scaling)
    above = torch.ones(length, length, dtype=torch.bool, device=query.device).triu_(1)
    scores.masked_fill_(above, float("-inf"))
    scores.sub_(scores.amax(dim=-1, keepdim=True))  # the diagonal is never masked: finite max
    scores.exp_()
    scores.div_(scores.sum(dim=-1, keepdim=True))
    return scores


def naive_vmax_rollout(
    attn_per_layer: Iterable[torch.Tensor], visual_key_mask: torch.Tensor,
) -> torch.Tensor:
    """Literal dense §4: full (L, L) Â per layer and full L×L×L products. -> (B, L) fp32.

    Layers are consumed in forward order; a list holds all of them at once (as
    ``output_attentions=True`` would), a generator one at a time. Per layer, with A_h the
    probabilities of head h and V the visual keys: m_h(q) = max_{k∈V} A_h[q, k], w_h = mean_q m_h,
    ŵ = w / max_h w (all zeros stay zeros), Ā = (1/H) Σ_h ŵ_h A_h, Â = 0.5 Ā + 0.5 I,
    R_s = Â_s, R_l = Â_l R_{l-1}; the result is row L-1 of R_{N-1}.
    """
    product = None  # R_l, (B, L, L)
    for attn in attn_per_layer:
        if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2] or (attn.shape[0], attn.shape[-1]) != tuple(visual_key_mask.shape):
            raise ValueError(f"attention must be (B, H, L, L) over a (B, L) mask; got {tuple(attn.shape)} "
                             f"and {tuple(visual_key_mask.shape)}")
        attn = attn.float()
        b, h, length, _ = attn.shape
        mask = visual_key_mask.to(device=attn.device, dtype=torch.bool)
        # probabilities are non-negative, so 0 at non-visual keys leaves every visual max unchanged
        row_max = attn.masked_fill(~mask[:, None, None, :], 0.0).amax(dim=-1)  # (B, H, L)
        w = row_max.mean(dim=-1)  # (B, H)
        top = w.amax(dim=-1, keepdim=True)
        w_hat = w / torch.where(top > 0, top, torch.ones_like(top))
        mean = (w_hat[:, :, None, None] * attn).sum(dim=1) / h  # (B, L, L)
        eye = torch.eye(length, dtype=torch.float32, device=attn.device)
        a_hat = 0.5 * mean + 0.5 * eye
        product = a_hat if product is None else torch.matmul(a_hat, product)
    if product is None:
        raise ValueError("naive_vmax_rollout needs at least one layer")
    return product[:, -1, :].clone()
