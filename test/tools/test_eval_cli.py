"""The evaluation loop end to end on synthetic datasets, with a stand-in pipeline planting masks."""
from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from decaf_ros.evaluation import cli
from decaf_ros.evaluation.datasets import DATA_ROOT_ENV, iter_samples
from decaf_ros.evaluation.runner import DONE_MARKER, PredictionPaths, format_table, run_evaluation
from decaf_ros.evaluation.synthetic import make_synthetic_dataset

KEY_FRAMES = [0, 2, 4]  # of 6 frames: coarse masks exist on these only


class PlantedPipeline:
    """Returns the ground truth (optionally transformed) of whichever clip it is shown."""

    def __init__(self, dataset, root, dense=lambda gt: gt, fail=False):
        self.gt = {self._key(s.load_frames(), s.expression): s.load_gt() for s in iter_samples(dataset, root)}
        self.dense, self.fail, self.calls = dense, fail, []

    @staticmethod
    def _key(frames, query):
        return hashlib.sha1(frames[0].tobytes()).hexdigest(), query

    def ground(self, frames, query, *, coarse_only=False):
        if self.fail:
            raise AssertionError("resumed run must not ground finished expressions")
        self.calls.append(query)
        gt = self.gt[self._key(frames, query)]
        fused = torch.zeros(len(KEY_FRAMES), 6, 8)
        for slot, frame in enumerate(KEY_FRAMES):
            ys, xs = np.nonzero(gt[frame])
            if len(ys):  # the attention peak sits on the object centre
                fused[slot, int(ys.mean() * 6 / gt.shape[1]), int(xs.mean() * 8 / gt.shape[2])] = 1.0
        return SimpleNamespace(masks=self.dense(gt), coarse_masks=gt[KEY_FRAMES], key_frame_indices=KEY_FRAMES,
                               fused=fused, obj_name="shape", timings={"total": 0.0})


@pytest.fixture()
def davis(tmp_path):
    return make_synthetic_dataset(tmp_path / "davis", "davis", n_videos=2, n_expressions=2)


def test_planted_ground_truth_scores_100(tmp_path, davis):
    out = tmp_path / "out"
    results = run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), show_progress=False)
    assert results["predicted"] == 4
    for mode in ("dense", "coarse"):
        assert results[mode] == {"J": 100.0, "F": 100.0, "J&F": 100.0, "n": 4}
        assert results[f"{mode}_missing"] == {"expressions": 0, "frames": 0}
    # Coarse masks are scored on the three key frames only, dense masks on all six.
    assert {e["n_frames"] for e in results["coarse_expressions"]} == {3}
    assert {e["n_frames"] for e in results["dense_expressions"]} == {6}
    assert results["keypoints"]["PP"]["PP@1"] == 1.0 and results["keypoints"]["skipped"] == 0
    png = out / "davis" / "vid0" / "0" / "00003.png"
    assert png.is_file() and not (out / "davis_coarse" / "vid0" / "0" / "00003.png").exists()
    saved = json.loads((out / "results_davis.json").read_text())
    assert saved["dense"]["J&F"] == 100.0


def test_empty_predictions_give_the_hand_computed_score(tmp_path, davis):
    # Only vid0's disc expression has an empty GT frame (the last one): J = F = 1/6 there, 0 elsewhere.
    pipeline = PlantedPipeline("davis", davis, dense=np.zeros_like)
    results = run_evaluation("davis", tmp_path / "out", davis, pipeline=pipeline, show_progress=False)
    assert [e["J"] for e in results["dense_expressions"]] == [16.67, 0.0, 0.0, 0.0]
    assert results["dense"]["J"] == pytest.approx(16.67 / 4)
    assert results["dense"]["J&F"] == pytest.approx(16.67 / 4)


def test_shifted_masks_keep_f_but_lose_j(tmp_path, davis):
    pipeline = PlantedPipeline("davis", davis, dense=lambda gt: np.roll(gt, 1, axis=2))
    results = run_evaluation("davis", tmp_path / "out", davis, pipeline=pipeline, show_progress=False)
    assert results["dense"]["F"] == 100.0  # 1 px is inside the tolerance of a 48x64 frame
    assert 50.0 < results["dense"]["J"] < 100.0


def test_resume_skips_complete_expressions(tmp_path, davis):
    out = tmp_path / "out"
    run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), show_progress=False)
    again = run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis, fail=True),
                           show_progress=False)
    assert again["predicted"] == 0 and again["dense"]["J&F"] == 100.0
    sample = list(iter_samples("davis", davis))[3]
    (PredictionPaths.of(out, sample).dense / DONE_MARKER).unlink()  # as if interrupted mid-write
    pipeline = PlantedPipeline("davis", davis)
    third = run_evaluation("davis", out, davis, pipeline=pipeline, show_progress=False)
    assert third["predicted"] == 1 and pipeline.calls == [sample.expression]


def test_limit_and_coarse_only(tmp_path, davis):
    out = tmp_path / "out"
    results = run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), coarse_only=True,
                             limit=2, show_progress=False)
    assert "dense" not in results and results["coarse"]["n"] == 2
    assert not (out / "davis").exists()


def test_revos_groups_and_accuracy_robustness(tmp_path):
    root = make_synthetic_dataset(tmp_path / "revos", "revos", n_videos=2, n_expressions=2)
    results = run_evaluation("revos", tmp_path / "out", root, pipeline=PlantedPipeline("revos", root),
                             show_progress=False)
    dense = results["dense"]
    assert set(dense) == {"referring", "reasoning", "overall"}
    assert dense["referring"]["n"] == 2 and dense["reasoning"]["n"] == 2
    assert dense["overall"]["J&F"] == 100.0 and dense["overall"]["A"] == 100.0
    assert dense["overall"]["R"] == pytest.approx(100.0)
    assert "keypoints" not in results  # §8: no keypoint evaluation for ReVOS
    assert (tmp_path / "out" / "revos" / "synth" / "all" / "vid0" / "0" / "00000.png").is_file()


def test_eval_only_without_predictions_scores_zero(tmp_path, davis):
    out = tmp_path / "out"
    (out / "davis").mkdir(parents=True)
    results = run_evaluation("davis", out, davis, eval_only=True, show_progress=False)
    assert results["dense"]["J&F"] == 0.0 and results["dense_missing"]["expressions"] == 4
    assert "coarse" not in results  # no coarse folder at all


def test_cli_eval_only_prints_table(tmp_path, davis, capsys, monkeypatch):
    out = tmp_path / "out"
    run_evaluation("davis", out, davis, pipeline=PlantedPipeline("davis", davis), show_progress=False)
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))  # default folder name for davis is davis17
    (tmp_path / "davis").rename(tmp_path / "davis17")
    assert cli.main(["--dataset", "davis", "--out", str(out), "--eval-only", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Ref-DAVIS" in printed and "100.0 (100.0, 100.0)" in printed and "PP@1 1.000" in printed


def test_cli_reports_dataset_errors(tmp_path, capsys):
    code = cli.main(["--dataset", "davis", "--root", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                     "--eval-only", "--no-progress"])
    assert code == 2 and "dataset folder not found" in capsys.readouterr().err


def test_cli_roots_per_dataset():
    roots = cli.parse_roots(["davis=/a", "revos=/b"], ["davis", "revos", "mevis"])
    assert roots == {"davis": "/a", "revos": "/b", "mevis": None}
    assert cli.parse_roots(["/only"], ["mevis"]) == {"mevis": "/only"}


def test_table_layout_follows_table_2():
    summary = {"J": 70.0, "F": 80.0, "J&F": 75.0, "n": 1}
    table = format_table([
        {"dataset": "revos", "dense": {"referring": summary, "reasoning": summary, "overall": summary}},
        {"dataset": "davis", "dense": summary, "coarse": summary},
    ])
    header = table.splitlines()[0]
    assert header.index("Ref-DAVIS") < header.index("ReVOS overall") < header.index("ReVOS referring")
    assert table.count("75.0 (70.0, 80.0)") == 5 and "DecAF coarse" in table
