"""People (issue 20): the `subject` field, splits and folds that keep each person whole, the
fallback to clips with its warning, and extract.py --subject."""
import json
import os

import numpy as np
import pytest

from conftest import build_dataset, build_people
from conftest import run_train as run
import train
from MediaPipe_Dataset import evaluation, samples, training  # noqa: E402


def subjects_of(ds, rows):
    return {ds.subjects[i] for i in rows}


@pytest.mark.parametrize("people", [2, 3, 6, 10])
def test_no_person_is_on_both_sides_of_the_split_or_of_any_fold(tmp_path, people):
    ds = samples.Dataset(build_people(tmp_path / "d", people=people), "stance")
    assert ds.has_subjects and len(set(ds.subjects)) == people
    for seed in range(5):
        train_rows, val_rows, grouping = evaluation.split(ds, 0.2, seed)
        assert grouping.name == "subject" and grouping.n_subjects == people and grouping.warning is None
        assert not subjects_of(ds, train_rows) & subjects_of(ds, val_rows)
        assert evaluation.both_sides(ds.y, [(train_rows, val_rows)])
        for k in (2, 5):
            folds, grouping = evaluation.cv_folds(ds, k, seed)
            if people >= k:
                assert grouping.name == "subject" and grouping.warning is None
                for tr, te in folds:
                    assert not subjects_of(ds, tr) & subjects_of(ds, te)
            elif 2 * people >= k:    # fewer people than folds, enough clips: clips kept whole, with the warning
                assert grouping.name == "clip"
                assert f"too few subjects ({people}) to keep each person on one side in {k} folds" in grouping.warning
            else:                    # fewer clips too: frames, with the frame-split warning
                assert grouping.name == "none" and "test frames come from the training recordings" in grouping.warning
            assert evaluation.both_sides(ds.y, folds) and len(folds) == k


def test_the_run_says_people_were_kept_whole_and_json_says_how(tmp_path):
    data = build_people(tmp_path / "d", people=6)
    code, out, _ = run("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2", "--json", tmp_path / "r.json")
    assert code == 0 and "Subjects (people): 6" in out and "subjects kept whole, 6 subjects" in out
    report = json.loads((tmp_path / "r.json").read_text())["stance"]
    assert report["grouping"] == "subject" and report["n_subjects"] == 6
    record = json.loads((tmp_path / "m" / "stance.json").read_text())
    val_people = {f.split(os.sep)[-1].split("_")[0] for f in record["val_samples"]}
    assert record["grouping"] == "subject" and 1 <= len(val_people) < 6
    code, out, _ = run("--data-dir", data, "--cv", "5", "--epochs", "1", "--json", tmp_path / "cv.json")
    assert code == 0 and "Cross-validation: STANCE (5 folds, subjects kept whole, 6 subjects" in out
    results = json.loads((tmp_path / "cv.json").read_text())["stance"]
    assert {r["grouping"] for r in results.values()} == {"subject"} and {r["n_subjects"] for r in results.values()} == {6}
    # per-recording verdicts stay per clip: 6 people x 2 classes x 2 clips
    assert {r["n_clips"] for r in results.values()} == {24}


def test_too_few_people_fall_back_to_clips_with_one_line(tmp_path):
    data = build_people(tmp_path / "d", people=3, clips=2)
    code, out, err = run("--data-dir", data, "--cv", "5", "--epochs", "1", "--json", tmp_path / "cv.json")
    warnings = [line for line in err.splitlines() if "too few subjects" in line]
    assert code == 0 and len(warnings) == 1 and "clips kept whole instead" in warnings[0]
    assert "(5 folds, clips kept whole" in out
    assert {r["grouping"] for r in json.loads((tmp_path / "cv.json").read_text())["stance"].values()} == {"clip"}


def test_group_by_chooses_the_grouping(tmp_path):
    data = build_people(tmp_path / "d", people=6)
    ds = samples.Dataset(data, "stance")
    assert evaluation.split(ds, 0.2, 0, "clip")[2].name == "clip"
    _, _, grouping = evaluation.split(ds, 0.2, 0, "none")
    assert grouping.name == "none" and grouping.warning is None
    plain = samples.Dataset(build_dataset(tmp_path / "e"), "stance")
    assert evaluation.split(plain, 0.2, 0)[2].name == "clip"           # the coarsest it has
    with pytest.raises(samples.DataError, match="--group-by subject, but no sample has a `subject` field"):
        evaluation.split(plain, 0.2, 0, "subject")
    code, _, err = run("--data-dir", tmp_path / "e", "--models-dir", tmp_path / "m", "--group-by", "subject")
    assert code == 1 and err.count("error: ") == 1


def test_without_subjects_nothing_changes(tmp_path):
    ds = samples.Dataset(build_dataset(tmp_path / "d", clips_per_class=10), "stance")
    assert not ds.has_subjects and ds.subjects == [None] * len(ds.y)
    a = evaluation.split(ds, 0.2, 0)
    b = evaluation.split(ds, 0.2, 0, "clip")
    np.testing.assert_array_equal(a[1], b[1])


def test_the_kept_epoch_is_not_a_one_epoch_spike():
    history = [{"val_acc": a, "val_acc_2_removed": 0.5, "val_loss": 1.0}
               for a in (0.60, 0.67, 0.98, 0.82, 0.90, 0.93, 0.94, 0.92)]
    assert training.kept_epoch(history) == 7              # 0.98 at epoch 3 lies between 0.67 and 0.82
    ties = [dict(h, val_acc=0.9) for h in history]
    ties[4]["val_acc_2_removed"] = 0.8                 # equal on whole frames: the one that copes with missing points
    assert training.kept_epoch(ties) == 5
