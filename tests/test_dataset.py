"""The bundled synthetic dataset: structure, format, reproducibility and the form rules."""
import filecmp
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from MediaPipe_Dataset import samples

DATA = os.path.join(ROOT, "MediaPipe_Dataset")
spec = importlib.util.spec_from_file_location("synthesize", os.path.join(DATA, "synthesize.py"))
synthesize = importlib.util.module_from_spec(spec)
spec.loader.exec_module(synthesize)

EXPECTED = {"stance/correct stance": 196, "stance/incorrect stance": 159,
            "execution/correct execution": 118, "execution/incorrect execution": 125}


def test_folders_and_counts_match_the_original():
    for folder, count in EXPECTED.items():
        names = [n for n in os.listdir(os.path.join(DATA, folder)) if n.endswith(".json")]
        assert len(names) == count, folder
    assert sorted(samples.discover_categories(DATA)) == ["execution", "stance"]


@pytest.mark.parametrize("category", ["stance", "execution"])
def test_every_sample_has_the_format_and_passes_the_loader(category):
    ds = samples.Dataset(DATA, category)
    assert ds.invalid == [] and ds.warnings == []
    assert len(ds.y) == sum(v for k, v in EXPECTED.items() if k.startswith(category))
    for rel in ds.files:
        with open(os.path.join(DATA, category, rel)) as f:
            data = json.load(f)
        assert set(data) - {"fault"} == {"keypoints", "label", "category", "timestamp", "clip"}
        assert ("fault" in data) == (data["label"] == 0)       # every incorrect sample names its faults
        assert len(data["keypoints"]) == 28 and all(0 <= v <= 1 for v in data["keypoints"])
        assert data["label"] == (1 if rel.startswith("correct") else 0)
        assert data["category"] == category and isinstance(data["timestamp"], float)
    # a few consecutive frames per clip, not one frame per person
    clips, counts = np.unique(ds.groups, return_counts=True)
    assert counts.max() > 1 and len(clips) < len(ds.y) / 1.5


def test_regenerating_reproduces_the_committed_files_byte_for_byte(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(DATA, "synthesize.py"), "--out", str(tmp_path), "--seed", "0"],
                         capture_output=True, text=True, check=True).stdout
    for folder in EXPECTED:
        committed = sorted(os.listdir(os.path.join(DATA, folder)))
        assert sorted(os.listdir(tmp_path / folder)) == committed
        match, mismatch, errors = filecmp.cmpfiles(os.path.join(DATA, folder), tmp_path / folder, committed,
                                                   shallow=False)
        assert mismatch == [] and errors == []
    # the README's ceiling figures are what the generator prints
    readme = open(os.path.join(DATA, "README.md")).read()
    for line in out.strip().splitlines():
        assert line.startswith(("stance: rule-checker accuracy", "execution: rule-checker accuracy"))
        assert line in readme


def test_generator_refuses_to_mix_into_a_folder_with_samples(tmp_path):
    os.makedirs(tmp_path / "stance" / "correct stance")
    (tmp_path / "stance" / "correct stance" / "x.json").write_text("{}")
    run = subprocess.run([sys.executable, os.path.join(DATA, "synthesize.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert run.returncode != 0 and "already holds samples" in run.stderr


# ------------------------------------------------------------------ rules on clean poses
BODY = dict(synthesize.SEGMENTS)
CAMERA = {"yaw": 0.0, "roll": 0.0, "mirror": False, "height": 0.6, "x": 0.5, "y": 0.5}


def good_angles(category):
    q = {"lean": 3.0, "head_tilt": 0.0, "right_knee": 155.0, "left_knee": 157.0,
         "right_thigh": 0.0, "left_thigh": 0.0}
    for side in ("right", "left"):
        q[side + "_arm"], q[side + "_elbow"], q[side + "_arm_depth"] = 15.0, 30.0, 0.6
    if category == "execution":
        q["left_arm"], q["left_elbow"], q["left_arm_depth"] = 90.0, 175.0, 1.0
    return q


def pose(category, ratio=1.6, mirror=False, **changes):
    q = good_angles(category)
    q.update(changes)
    q = synthesize._stance_width(q, BODY, ratio)
    if "shift" in changes:
        q["right_thigh"] -= changes["shift"]
        q["left_thigh"] += changes["shift"]
    return synthesize.camera(synthesize.build_pose(q, BODY), dict(CAMERA, mirror=mirror)).reshape(-1)


@pytest.mark.parametrize("category", ["stance", "execution"])
@pytest.mark.parametrize("mirror", [False, True])
def test_correct_clean_poses_pass(category, mirror):
    assert synthesize.check_pose(pose(category, mirror=mirror), category) == []


FAULTS = [
    ("stance", "feet_narrow", dict(ratio=1.0)),
    ("stance", "feet_wide", dict(ratio=2.5)),
    ("stance", "knee_locked", dict(right_knee=178.0)),
    ("stance", "knee_overbent", dict(left_knee=120.0)),
    ("stance", "hips_off_center", dict(shift=30.0)),
    ("stance", "lean", dict(lean=25.0)),
    ("stance", "guard_dropped", dict(right_arm=10.0, right_elbow=165.0, right_arm_depth=1.0)),
    ("execution", "arm_bent", dict(left_arm=60.0, left_elbow=120.0)),   # bent, fist still at shoulder height
    ("execution", "fist_low", dict(left_arm=55.0)),
    ("execution", "fist_high", dict(left_arm=125.0)),
    ("execution", "guard_dropped", dict(right_arm=10.0, right_elbow=165.0, right_arm_depth=1.0)),
    ("execution", "lean", dict(lean=30.0)),
    ("execution", "feet_together", dict(ratio=0.7)),
]


def test_every_fault_type_is_tested():
    assert {(c, f) for c, f, _ in FAULTS} == {(c, f) for c in synthesize.FAULTS for f in synthesize.FAULTS[c]}


@pytest.mark.parametrize("category,fault,change", FAULTS, ids=[f"{c}-{f}" for c, f, _ in FAULTS])
@pytest.mark.parametrize("mirror", [False, True])
def test_each_fault_fails_the_rules(category, fault, change, mirror):
    assert synthesize.check_pose(pose(category, mirror=mirror, **change), category) == [fault]


def test_rule_checker_accuracy_is_a_real_ceiling():
    for category in ("stance", "execution"):
        samples = synthesize.synthesize(category, 0)
        assert 0.90 <= synthesize.rule_checker_accuracy(samples) < 1.0


def test_samples_writes_n_per_category_in_the_bundled_proportions(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(DATA, "synthesize.py"), "--out", str(tmp_path),
                          "--samples", "300"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    for category, (correct, incorrect) in synthesize.COUNTS.items():
        n_correct = len(os.listdir(tmp_path / category / f"correct {category}"))
        n_incorrect = len(os.listdir(tmp_path / category / f"incorrect {category}"))
        assert n_correct + n_incorrect == 300
        assert n_correct == round(300 * correct / (correct + incorrect))
    assert synthesize.class_counts("stance") == synthesize.COUNTS["stance"]      # default: the bundled counts


@pytest.mark.parametrize("category", ["stance", "execution"])
def test_every_generated_fault_is_in_the_samples(category):
    from MediaPipe_Dataset import synthesize
    faults, silent = samples.Dataset(DATA, category).fault_counts()
    assert sorted(faults) == sorted(synthesize.FAULTS[category]) and silent == []
    assert all(k >= 2 and recordings >= 2 for k, recordings in faults.values())


@pytest.mark.parametrize("value, label, expected", [
    ("hips too high", 0, ("hips too high",)), (" lean ", 0, ("lean",)), (["lean", "arm_bent", "lean"], 0,
                                                                        ("lean", "arm_bent")), (None, 1, ())])
def test_a_fault_is_a_name_or_a_list_of_names_on_an_incorrect_sample(value, label, expected):
    assert samples.faults_of(value, label) == expected


@pytest.mark.parametrize("value, label, words", [
    ("lean", 1, "on a correct sample"), ("", 0, "not a name"), (" ", 0, "not a name"), (3, 0, "not a name"),
    ([], 0, "empty list"), (["lean", 2], 0, "not a name"), ([["lean"]], 0, "not a name"), ({"a": 1}, 0, "not a name")])
def test_other_faults_are_an_invalid_sample_with_its_reason(tmp_path, value, label, words):
    from conftest import STANDING, build_dataset, write_sample
    data = build_dataset(tmp_path / "d")
    write_sample(os.path.join(samples.class_dir(data, "stance", label), "odd.json"), STANDING.reshape(-1), label,
                 "stance", fault=value)
    ((bad, why),) = samples.Dataset(data, "stance").invalid
    assert bad.endswith("odd.json") and why.startswith("fault") and words in why


def test_the_statistics_print_each_fault_and_the_recordings_naming_none(tmp_path, capsys):
    import glob
    from conftest import build_dataset
    from MediaPipe_Dataset import reports
    data = build_dataset(tmp_path / "d", clips_per_class=4)
    for i, path in enumerate(sorted(glob.glob(os.path.join(data, "stance", "incorrect stance", "*.json")))[:9]):
        sample = json.load(open(path))
        sample["fault"] = "hips too high" if i < 6 else ["hips too high", "lean"]
        json.dump(sample, open(path, "w"))
    reports.print_statistics([samples.Dataset(data, "stance")])
    out = capsys.readouterr().out
    assert "  - Faults (incorrect samples): hips too high: 9 samples, 3 recordings; lean: 3 samples, 1 recordings" in out
    assert "  - Incorrect recordings naming no fault: 1 (stance-incorrect-3)" in out
