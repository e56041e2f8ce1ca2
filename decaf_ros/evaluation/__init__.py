"""Evaluation of DecAF on the video reasoning-segmentation benchmarks (§8, §9).

``metrics`` (J, F, J&F, A, R), ``keypoints`` (top-K points, PP@K), ``datasets`` (readers),
``synthetic`` (tiny datasets in the real layouts), ``runner`` and ``cli`` (``decaf-eval``).
Nothing here imports the models unless predictions are requested.
"""
from .datasets import DATA_ROOT_ENV, DATASETS, DatasetError, Sample, iter_samples
from .keypoints import pp_at_k, top_k_points
from .metrics import f_measure, jaccard, score_expression, seg_to_boundary

__all__ = [
    "DATA_ROOT_ENV", "DATASETS", "DatasetError", "Sample", "iter_samples", "pp_at_k", "top_k_points",
    "f_measure", "jaccard", "score_expression", "seg_to_boundary",
]
