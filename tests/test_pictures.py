"""The reports (issue 22): models/<category>_report.html, models/cv_report.html and the suspect
labels."""
import contextlib
import io
import json
import os
import re
import shutil

import numpy as np
import pytest

from conftest import build_dataset, run_train
from MediaPipe_Dataset import evaluation, pictures, samples, suspects
from MediaPipe_Dataset.movements import write_movements
import train


def flip_recording(data, category, clip, label):
    """Move one recording's files into the other class folder: its label is now wrong."""
    source, target = samples.class_dir(data, category, label), samples.class_dir(data, category, 1 - label)
    moved = []
    for name in sorted(os.listdir(source)):
        with open(os.path.join(source, name)) as f:
            if json.load(f).get("clip") == clip:
                shutil.move(os.path.join(source, name), os.path.join(target, name))
                moved.append(os.path.relpath(os.path.join(target, name), os.path.join(data, category)))
    return moved


def self_contained(text):
    """Nothing in the page is loaded from elsewhere: images inline, no scripts, no links out."""
    sources = re.findall(r'(?:src|href)="([^"]*)"', text)
    return sources and all(s.startswith("data:image/png;base64,") for s in sources) and "<script" not in text


@pytest.fixture(scope="module")
def flipped(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    data = build_dataset(root / "data", clips_per_class=8, frames=3)
    moved = flip_recording(data, "stance", "stance-correct-5", 1)
    code, out, err = run_train("--data-dir", data, "--models-dir", root / "models", "--epochs", "3",
                               "--json", root / "run.json")
    assert code == 0, err
    return {"data": data, "models": root / "models", "moved": moved, "out": out,
            "report": json.loads((root / "run.json").read_text())["stance"]}


def test_a_normal_run_writes_a_self_contained_report_and_prints_its_path(flipped):
    path = flipped["report"]["report"]
    assert path == str(flipped["models"] / "stance_report.html") and f"Report: {path}" in flipped["out"]
    text = open(path, encoding="utf-8").read()
    assert self_contained(text) and text.count("data:image/png;base64,") >= 3     # curves, strips, suspects
    assert text.count("<b>frame model, per frame</b><table>") == 1                 # the matrices are tables
    for heading in ("Training: frame model", "Confusion matrices (validation)", "Validation recordings over time",
                    "The frame model&#x27;s most confidently misjudged frames", "Suspect labels"):
        assert f"<h2>{heading}</h2>" in text


def test_the_suspect_labels_name_the_flipped_recording_first(flipped):
    suspects = flipped["report"]["suspect_labels"]
    record = json.loads((flipped["models"] / "stance.json").read_text())
    in_training = [f for f in flipped["moved"] if f not in record["val_samples"]]
    assert in_training                                  # seed 0 trains on the flipped recording
    assert set(suspects[:len(in_training)]) == set(in_training)
    assert "Check these labels" in open(flipped["report"]["report"]).read()
    assert "check them in the report" in flipped["out"]
    assert all(not os.path.isabs(f) and os.path.isfile(os.path.join(flipped["data"], "stance", f)) for f in suspects)


def test_suspect_labels_find_a_flipped_recording_and_nothing_else_on_clean_data(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=8, frames=3)
    ds = samples.Dataset(data, "stance")
    clean, _ = suspects.suspect_labels(ds, np.arange(len(ds.y)), 0, train.KeypointNormalizer())
    assert len(clean) == 0
    rows = ds.groups == "stance-correct-2"
    ds.y[rows] = 0
    found, own = suspects.suspect_labels(ds, np.arange(len(ds.y)), 0, train.KeypointNormalizer())
    assert set(found) == set(np.flatnonzero(rows)) and (own <= suspects.SUSPECT_BELOW).all()


def test_with_fewer_rows_judged_the_flipped_recording_is_still_found_by_its_judged_frames(tmp_path, monkeypatch):
    data = build_dataset(tmp_path / "d", clips_per_class=8, frames=4)
    ds = samples.Dataset(data, "stance")
    rows = ds.groups == "stance-correct-2"
    ds.y[rows] = 0
    monkeypatch.setattr(suspects, "SUSPECT_MAX_JUDGED", 5)      # a fold's test rows hold 2 recordings: 8 frames
    found, own = suspects.suspect_labels(ds, np.arange(len(ds.y)), 0, train.KeypointNormalizer())
    assert 0 < len(found) < rows.sum() and set(found) <= set(np.flatnonzero(rows))
    assert (own <= suspects.SUSPECT_BELOW).all()


def test_no_report_writes_none_but_json_keeps_the_suspects(tmp_path):
    data = build_dataset(tmp_path / "d")
    code, out, _ = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "1", "--no-report",
                             "--json", tmp_path / "r.json")
    r = json.loads((tmp_path / "r.json").read_text())["stance"]
    assert code == 0 and r["report"] is None and r["suspect_labels"] == [] and "Report:" not in out
    assert not [n for n in os.listdir(tmp_path / "m") if n.endswith(".html")]


def test_the_report_shows_the_motion_model_windows(tmp_path):
    data = write_movements(str(tmp_path / "d"), recordings=4, seconds=3.0)
    code, _, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "3")
    assert code == 0, err
    text = open(tmp_path / "m" / "curl_report.html", encoding="utf-8").read()
    assert self_contained(text) and "motion model: each of its windows" in text
    assert "<h2>Training: motion model</h2>" in text
    assert "<h2>The motion model&#x27;s most confidently misjudged windows</h2>" in text


def test_cv_writes_its_report_only_when_asked(tmp_path):
    data = build_dataset(tmp_path / "d", categories=("stance", "execution"))
    code, out, _ = run_train("--data-dir", data, "--cv", "2", "--epochs", "1", "--models-dir", tmp_path / "m")
    assert code == 0 and not os.path.exists(tmp_path / "m")          # --cv writes nothing by default
    code, out, _ = run_train("--data-dir", data, "--cv", "2", "--epochs", "1", "--models-dir", tmp_path / "m",
                             "--report")
    text = open(tmp_path / "m" / "cv_report.html", encoding="utf-8").read()
    assert code == 0 and f"Report: {tmp_path / 'm' / 'cv_report.html'}" in out
    assert self_contained(text) and "<h2>stance</h2>" in text and "<h2>execution</h2>" in text


def test_a_pose_is_drawn_without_its_missing_points():
    plt = pictures.pyplot()
    fig, ax = plt.subplots()
    keypoints = np.arange(28, dtype=float) / 28
    keypoints[2 * 4:2 * 4 + 2] = np.nan                          # the right wrist
    pictures.draw_pose(ax, keypoints, "x")
    bones, points = ax.collections
    assert len(points.get_offsets()) == 13
    assert len(bones.get_segments()) == len(pictures.BONES) - 1      # the forearm to it is left out
    plt.close(fig)


def test_benchmark_suspects_scores_the_list_against_the_flipped_recordings(tmp_path, capsys):
    from MediaPipe_Dataset import benchmark_suspects
    data = build_dataset(tmp_path / "d", clips_per_class=10, frames=3)
    assert benchmark_suspects.main(["--data-dir", data, "--seeds", "0", "1", "--json", str(tmp_path / "b.json")]) == 0
    rows = json.loads((tmp_path / "b.json").read_text())             # 5% of 20 recordings: one flipped
    assert len(rows) == 2 and all(r["recordings_flipped_train"] <= 1 for r in rows)
    scored = [r for r in rows if r["recordings_flipped_train"]]
    assert scored and all(r["recording_recall"] == 1 and r["recording_precision"] == 1 for r in scored)  # easy data
    assert "Mean over seeds" in capsys.readouterr().out
