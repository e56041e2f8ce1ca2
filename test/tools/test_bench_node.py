"""bench/bench_node.py at its smallest setting: report structure only, never timing values."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "bench_node.py"


def _load_script() -> ModuleType:
    """bench/ is not a package: load the script as a module by path."""
    spec = importlib.util.spec_from_file_location("bench_node", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_numbers(row: dict, names: tuple[str, ...], where: str) -> None:
    for name in names:
        assert _number(row.get(name)), f"{where}: {name} = {row.get(name)!r}"


def test_smallest_run_reports_every_field(tmp_path_factory: pytest.TempPathFactory,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    bench = _load_script()
    tmp = tmp_path_factory.mktemp("bench_node")
    out = tmp / "node.json"
    argv = ["--sizes", "32x24", "--iterations", "3", "--dds-seconds", "0.2", "--e2e-size", "64x48",
            "--goals", "1", "--track-seconds", "0.5", "--goal-timeout", "120", "--tiny-dir", str(tmp / "models"),
            "--threads", "1", "--lifecycle-sam2", "tiny", "--json", str(out)]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert {"meta", "callbacks", "compressed_ratios", "e2e", "real_size", "lifecycle"} <= set(report)

    rows = report["callbacks"]
    direct = [r for r in rows if r["transport"] == "direct"]
    dds = [r for r in rows if r["transport"] == "dds"]
    # direct: image rgb8 + bgr8, the photo raw + JPEG q90 + PNG, depth callback, worker-side depth conversion;
    # per worker state and size
    assert len(direct) == len(bench.WORKER_STATES) * 7
    ratios = report["compressed_ratios"]
    assert {(r["worker"], r["encoding"]) for r in ratios} == {(w, e) for w in bench.WORKER_STATES
                                                              for e in bench.COMPRESSED}
    assert all(_number(r["ratio"]) and r["ratio"] > 0 and 0 < r["bytes_ratio"] < 1 for r in ratios)
    lifecycle = report["lifecycle"]
    assert lifecycle["models"] == "tiny+tiny" and _number(lifecycle["rss_released_mb"])
    # dds: each color encoding with a depth image alongside; per worker state and size
    assert len(dds) == len(bench.WORKER_STATES) * 4
    assert {r["worker"] for r in rows} == set(bench.WORKER_STATES)
    assert {r["size"] for r in rows} == {"32x24"}
    assert {r["encoding"] for r in rows if r["callback"] == "image"} == set(bench.COLOR_ENCODINGS)
    for row in rows:
        where = f"{row['transport']} {row['worker']} {row['size']} {row['callback']} {row['encoding']}"
        _check_numbers(row, bench.CALLBACK_FIELDS, where)
        assert row["n"] > 0, where
        if row["transport"] == "dds":
            _check_numbers(row, bench.DDS_FIELDS, where)

    runs = report["e2e"]
    assert len(runs) == 2  # node defaults, then min_track_score 0 (tracking without re-grounding)
    for tiny in runs:
        _check_numbers(tiny, bench.E2E_FIELDS, f"e2e {tiny['models']}")
        _check_numbers(tiny["callback_during_inference"], bench.CALLBACK_FIELDS, "callback during inference")
        assert tiny["goals"] == 1 and tiny["goal_to_mask_ms"] > 0
        for name, value in bench.TINY_SETTINGS.items():  # the settings are stated in the report
            assert tiny["settings"][name] == value
    assert runs[1]["settings"]["min_track_score"] == 0.0

    real = report["real_size"]
    assert "skipped" in real or all(_number(real[name]) for name in bench.E2E_FIELDS)
    for text in ("Per-frame callback cost", "Compressed vs raw", "Lifecycle memory", "goal -> first ~/mask",
                 "tracked vs re-grounded", "Real-size"):
        assert text in printed
