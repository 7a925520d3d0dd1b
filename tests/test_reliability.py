"""Nothing silently wrong (issue 21): each defect of the second adversarial run, with a test
that failed before its fix."""
import contextlib
import io
import json
import os

import numpy as np
import pytest

from conftest import build_dataset, make_pose, write_sample
from MediaPipe_Dataset import evaluation, samples
import train


def numbered_per_folder(root, clips=8, frames=3, seed=0, category="stance"):
    """Recordings named rec-0, rec-1, ... in each class folder, as anyone numbering them per
    folder would; returns the data folder."""
    rng = np.random.default_rng(seed)
    for label in (0, 1):
        for c in range(clips):
            base = make_pose(rng, label == 1)
            for k in range(frames):
                path = os.path.join(samples.class_dir(root, category, label), f"rec-{c}_{k}.json")
                write_sample(path, base + rng.normal(0, 0.002, base.shape), label, category, clip=f"rec-{c}")
    return str(root)


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = train.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------- 1: recordings
def test_a_clip_id_in_both_class_folders_is_two_recordings(tmp_path):
    data = numbered_per_folder(tmp_path / "d")
    ds = samples.Dataset(data, "stance")
    assert len(set(ds.groups)) == 16
    assert ds.recording_warnings and "8 clip id(s) name recordings in both class folders" in ds.recording_warnings[0]
    code, out, err = run("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2", "--json", tmp_path / "r.json")
    assert code == 0 and "Clips (recordings): 16" in out and "name recordings in both class folders" in err
    record = json.loads((tmp_path / "m" / "stance.json").read_text())
    recordings = {(f.split(os.sep)[0], f.split(os.sep)[1].split("_")[0]) for f in record["val_samples"]}
    assert record["n_val_clips"] == len(recordings) >= 2
    assert f"of {len(recordings)} clips" in out


def test_cv_scores_per_recording_over_all_sixteen(tmp_path):
    data = numbered_per_folder(tmp_path / "d")
    code, out, _ = run("--data-dir", data, "--cv", "2", "--epochs", "2", "--json", tmp_path / "cv.json")
    results = json.loads((tmp_path / "cv.json").read_text())["stance"]
    assert code == 0 and all(r["n_clips"] == 16 for r in results.values())
    assert "over all 16 test clips" in out


def test_copies_of_one_recording_are_named(tmp_path):
    data = numbered_per_folder(tmp_path / "d", clips=3)
    twin = os.path.join(samples.class_dir(data, "stance", 1), "rec-0_0.json")
    with open(twin) as f:
        sample = json.load(f)
    write_sample(os.path.join(samples.class_dir(data, "stance", 0), "copy.json"),
                 np.array(sample["keypoints"], dtype=float), 0, "stance", clip="other")
    # two clips extracted from the same video content (the digest that ends extract.py's clip ids)
    for label, name in ((1, "squat-0123456789"), (1, "squat_copy-0123456789")):
        write_sample(os.path.join(samples.class_dir(data, "stance", label), f"{name}.json"),
                     np.array(sample["keypoints"], dtype=float) + 0.01 * (name == "squat-0123456789"),
                     label, "stance", clip=name)
    sentences = samples.Dataset(data, "stance").recording_warnings
    assert any("identical keypoints" in s and "copy.json" in s for s in sentences)
    assert any("squat-0123456789" in s and "squat_copy-0123456789" in s and "same source" in s for s in sentences)


# ----------------------------------------------------------------------------- 7, 9: small datasets
def test_two_samples_per_class_train(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=2, frames=1, with_clips=False)
    code, out, err = run("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2")
    assert code == 0 and "Traceback" not in err and "Split: 2 training, 2 validation samples" in out


def test_one_two_frame_clip_per_class_trains_with_the_frame_split_warning(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=1, frames=2)
    code, out, err = run("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2")
    assert code == 0 and "validation frames come from the training recordings" in err


@pytest.mark.parametrize("clips", [2, 3, 4, 5])
def test_small_counts_put_each_class_on_both_sides_with_clips_whole(tmp_path, clips):
    ds = samples.Dataset(build_dataset(tmp_path / "d", clips_per_class=clips, frames=3), "stance")
    for seed in range(10):
        train_rows, val_rows, warning = evaluation.split(ds, 0.2, seed)
        assert warning is None and evaluation.both_sides(ds.y, [(train_rows, val_rows)]), seed
        assert not set(ds.groups[train_rows]) & set(ds.groups[val_rows])
        for k in (2, 5):
            folds, warning = evaluation.cv_folds(ds, k, seed)
            assert evaluation.both_sides(ds.y, folds) and len(folds) == k, (k, seed)
            assert sorted(np.concatenate([test for _, test in folds])) == list(range(len(ds.y)))
            whole = all(not set(ds.groups[a]) & set(ds.groups[b]) for a, b in folds)
            assert whole == (clips >= k) and (warning is None) == (clips >= k), (k, seed)


def test_two_videos_per_class_train_and_cross_validate(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=2, frames=4)
    code, out, _ = run("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2")
    assert code == 0 and "clips kept whole" in out and "of 2 clips" in out
    code, out, _ = run("--data-dir", data, "--cv", "2", "--epochs", "2")
    assert code == 0 and "(2 folds, clips kept whole" in out


# ----------------------------------------------------------------------------- 8: a peer that cannot fit
def test_a_peer_that_cannot_fit_a_fold_is_reported_and_the_others_go_on(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=3, frames=1, with_clips=False)
    code, out, err = run("--data-dir", data, "--cv", "3", "--epochs", "2", "--json", tmp_path / "cv.json")
    assert code == 0 and "Traceback" not in err
    assert "KNeighbors          could not be fitted (fold 1: Expected n_neighbors <= n_samples_fit" in out
    results = json.loads((tmp_path / "cv.json").read_text())["stance"]
    assert results["KNeighbors"]["mean"] is None and "n_neighbors" in results["KNeighbors"]["error"]
    for name in ("PoseClassifier", "LogisticRegression", "SVC (RBF)", "HistGradientBoosting"):
        assert len(results[name]["folds"]) == 3 and results[name]["n_clips"] == 6, name


# ----------------------------------------------------------------------------- rough edge: --cv 24 on 16 clips
def test_clips_split_over_folds_count_once_per_recording(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=8, frames=3)
    code, out, err = run("--data-dir", data, "--cv", "24", "--epochs", "1", "--json", tmp_path / "cv.json")
    assert code == 0 and "test frames come from the training recordings" in err
    assert "over all 16 test clips" in out
    assert all(r["n_clips"] == 16 for r in json.loads((tmp_path / "cv.json").read_text())["stance"].values())
