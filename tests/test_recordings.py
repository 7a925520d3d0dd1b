"""Verdicts per recording: clip scoring, the --cv columns and keys, one-clip classes."""
import contextlib
import io
import json

import numpy as np
import onnx
import pytest

from conftest import build_dataset, readme_snippet
from MediaPipe_Dataset import samples
import train


def test_clip_verdict_is_the_highest_mean_probability_and_labels_the_majority():
    groups = np.array(["b", "a", "a", "a", "b", "c", "c"])
    probs = np.array([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6], [0.45, 0.55], [0.5, 0.5], [0.5, 0.5]])
    # clip a: mean [0.567, 0.433] -> 0, although 2 of its 3 frames lean to 1; b -> 1; c: a tie -> 0
    np.testing.assert_array_equal(samples.clip_verdicts(groups, probs), [0, 1, 0])
    y = np.array([1, 1, 0, 1, 1, 0, 0])
    truth, verdict = samples.clip_scores(groups, y, probs)
    np.testing.assert_array_equal(truth, [1, 1, 0])        # a: two of three frames say 1
    np.testing.assert_array_equal(verdict, [0, 1, 0])
    votes = np.eye(2)[probs.argmax(1)]                    # one-hot predictions: a majority vote
    np.testing.assert_array_equal(samples.clip_verdicts(groups, votes), [1, 1, 0])


def run_cv(data, tmp_path, capsys, *extra):
    report = tmp_path / "cv.json"
    code = train.main(["--data-dir", data, "--cv", "3", "--epochs", "3", "--json", str(report), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err, json.loads(report.read_text())["stance"]


def test_cv_scores_every_model_per_recording_on_the_same_clips(tmp_path, capsys):
    data = build_dataset(tmp_path / "d", clips_per_class=6, frames=4)
    code, out, _, results = run_cv(data, tmp_path, capsys)
    assert code == 0 and "per recording %" in out and "over all 12 test clips of all folds" in out
    for name, r in results.items():
        assert r["n_clips"] == 12 and 0 <= r["clip_mean"] <= 1 and r["seconds"] > 0, name
        assert round(r["clip_mean"] * 12) == pytest.approx(r["clip_mean"] * 12, abs=1e-4)   # a count of clips
    assert results["SVC (RBF)"]["clip_verdict"] == "majority vote" and "v: no probabilities" in out
    assert results["PoseClassifier"]["clip_verdict"] == "mean probability"


def test_cv_without_clips_scores_each_sample_as_its_own_clip(tmp_path, capsys):
    data = build_dataset(tmp_path / "d", with_clips=False)
    code, out, _, results = run_cv(data, tmp_path, capsys)
    assert code == 0 and "no clips: each sample is its own clip" in out
    assert all(r["n_clips"] == 48 for r in results.values())
    for r in results.values():           # with one sample per clip, per-recording accuracy is frame accuracy
        assert r["clip_mean"] == pytest.approx(sum(r["folds"][i] * n for i, n in enumerate([16, 16, 16])) / 48,
                                               abs=1e-6)


def test_one_clip_per_class_trains_with_a_warning_in_output_and_metadata(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=1, frames=12)
    models, report = tmp_path / "models", tmp_path / "r.json"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = train.main(["--data-dir", data, "--models-dir", str(models), "--epochs", "3", "--json", str(report)])
    assert code == 0, err.getvalue()
    assert "warning: " in err.getvalue() and "validation frames come from the training recordings" in err.getvalue()
    assert "optimistic" in err.getvalue() and "Traceback" not in err.getvalue()
    meta = {p.key: p.value for p in onnx.load(models / "stance.onnx").metadata_props}
    assert "validation frames come from the training recordings" in meta["split_warning"]
    r = json.loads(report.read_text())["stance"]
    assert r["n_val_clips"] == 2 and "optimistic" in r["warning"]


def test_cv_with_fewer_clips_than_folds_splits_frames_with_a_warning(tmp_path, capsys):
    data = build_dataset(tmp_path / "d", clips_per_class=2, frames=6)
    code, out, err, results = run_cv(data, tmp_path, capsys)
    assert code == 0 and "test frames come from the training recordings" in err
    assert "frames, clips split" in out
    assert all(len(r["folds"]) == 3 for r in results.values())


@pytest.mark.parametrize("title", ["### A verdict per recording", "### A live verdict"])
def test_the_readme_deployment_snippets_run_verbatim(tmp_path, title):
    import os
    import subprocess
    import sys
    from conftest import ROOT
    data = build_dataset(tmp_path / "data", missing=(12, 13))       # the left leg is not recorded
    with contextlib.redirect_stdout(io.StringIO()):
        assert train.main(["--data-dir", data, "--models-dir", str(tmp_path / "models"), "--epochs", "3"]) == 0
    ds = samples.Dataset(data, "stance")
    clip = ds.groups[0]
    frames = ds.X[ds.groups == clip]
    code = readme_snippet(title)
    assert code.count("[...]") == 1
    code = code.replace("[...]", json.dumps(frames.tolist()).replace("NaN", "float('nan')"))
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0, run.stderr
    word = "Recording: " if "recording" in title else "Now: "
    assert word in run.stdout
    expected = "Correct" if ds.y[0] == 1 else "Incorrect"       # the toy poses are easy: the verdict is right
    assert run.stdout.split(word)[1].startswith(expected), run.stdout
