"""``decaf-eval``: run DecAF on Ref-DAVIS17 / ReasonVOS / ReVOS / MeViS valid_u and score it (§9)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from ..cli_options import add_sharing_options, add_variant_options, sharing_settings, variant_settings
from .datasets import DATA_ROOT_ENV, DATASETS, LAYOUTS, DatasetError
from .runner import EvaluationError, format_keypoints, format_table, merge_shards, results_path, run_evaluation

EPILOG = (
    "Dataset folders: --root DIR (one dataset), --root NAME=DIR (repeatable), or the environment variable "
    f"{DATA_ROOT_ENV}, under which the default folders are "
    + ", ".join(f"{name}: {layout.default_folder}/" for name, layout in LAYOUTS.items())
    + ". Expected files per dataset are listed in decaf_ros/evaluation/datasets.py."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="decaf-eval", description=__doc__, epilog=EPILOG)
    parser.add_argument("--dataset", nargs="+", required=True, choices=DATASETS, help="benchmark(s) to run")
    parser.add_argument("--root", action="append", default=[], metavar="[NAME=]DIR",
                        help=f"dataset folder (default: ${DATA_ROOT_ENV}/<default folder>)")
    parser.add_argument("--out", required=True, type=Path, help="folder for predictions and results")
    parser.add_argument("--mllm", help="MLLM hub id or local folder (default: Qwen2.5-VL-7B-Instruct)")
    parser.add_argument("--sam2", help="SAM2 hub id or local folder (default: sam2.1-hiera-large)")
    parser.add_argument("--device", help="auto, cpu or cuda[:N]")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), help="MLLM dtype")
    parser.add_argument("--coarse-only", action="store_true", help="attention masks only, no SAM2")
    parser.add_argument("--limit", type=int, help="first N expressions per dataset")
    parser.add_argument("--eval-only", action="store_true", help="score existing predictions, run no model")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    shards = parser.add_argument_group(
        "sharding", "split the expressions over N jobs (expression i goes to shard i % N), then merge")
    shards.add_argument("--num-shards", type=int, default=1, metavar="N", help="number of shards (default 1)")
    shards.add_argument("--shard-index", type=int, default=0, metavar="I",
                        help="the shard this job runs, 0..N-1; writes OUT/results_<dataset>.shard<I>of<N>.json")
    shards.add_argument("--merge", action="store_true",
                        help="join the N shard results under OUT into results_<dataset>.json (runs no model)")
    add_variant_options(parser)
    add_sharing_options(parser)
    return parser


def parse_roots(values: Sequence[str], datasets: Sequence[str]) -> dict[str, str | None]:
    """Map each dataset to its --root value (None: use the environment variable)."""
    roots: dict[str, str | None] = {name: None for name in datasets}
    for value in values:
        name, sep, folder = value.partition("=")
        if sep and name in LAYOUTS:
            roots[name] = folder
        elif len(datasets) == 1:
            roots[datasets[0]] = value
        else:
            raise DatasetError(f"--root {value!r}: with several datasets write NAME=DIR")
    return roots


def run(args: argparse.Namespace) -> list[dict]:
    """Evaluate (or merge) each requested dataset; raises DatasetError / EvaluationError."""
    if args.merge:
        if args.num_shards < 2:
            raise EvaluationError("--merge needs --num-shards N (N >= 2), the count the shards ran with")
        return [merge_shards(name, args.out, args.num_shards) for name in args.dataset]
    roots = parse_roots(args.root, args.dataset)
    return [run_evaluation(name, args.out, roots[name], mllm=args.mllm, sam2=args.sam2, device=args.device,
                           dtype=args.dtype, settings={**variant_settings(args), **sharing_settings(args)}, coarse_only=args.coarse_only,
                           limit=args.limit, eval_only=args.eval_only, num_shards=args.num_shards,
                           shard_index=args.shard_index, show_progress=not args.no_progress)
            for name in args.dataset]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        results = run(args)
    except (DatasetError, EvaluationError) as error:
        print(f"decaf-eval: error: {error}", file=sys.stderr)
        return 2
    for result in results:
        if not any(mode in result for mode in ("dense", "coarse")):
            print(f"decaf-eval: no predictions for {result['dataset']} under {args.out}", file=sys.stderr)
    print(format_table(results))
    keypoints = format_keypoints(results)
    if keypoints:
        print("PP@K (keypoints, §8):\n" + keypoints)
    for result in results:
        shard = result.get("shard", {"count": 1, "index": 0})
        print(f"results: {results_path(args.out, result['dataset'], shard['count'], shard['index'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
