"""Nothing silently wrong, round three (issue 27): odd timestamps, numbers past float range,
`$` in names, reports that cannot be written, tiny data, partial subjects, input shapes,
interrupted swaps, huge options, damaged model files. One test (or a few) per defect."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from conftest import ROOT, STANDING, build_dataset, build_people, run_quantize, run_train, write_sample
import train
from MediaPipe_Dataset import evaluation, motion, samples, store, suspects, training
from MediaPipe_Dataset.movements import write_movements

FLAT = STANDING.reshape(-1)


def no_traceback(err):
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error: ")]


def movements(root, **kw):
    """4 recordings per class of 2 s at 10 frames per second (the issue's data)."""
    return write_movements(str(root), recordings=4, seconds=2, fps=10, **kw)


def edit_samples(pattern, change):
    """Apply change(sample dict) to every sample file matching the glob pattern."""
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            data = json.load(f)
        change(data)
        with open(path, "w") as f:
            json.dump(data, f)


# ----------------------------------------------------------------------------- 1, 2: timestamps
def test_millisecond_timestamps_leave_the_recordings_out_of_the_motion_model_with_the_hint(tmp_path):
    data = movements(tmp_path / "d")
    edit_samples(os.path.join(data, "*", "*", "*.json"), lambda s: s.update(timestamp=s["timestamp"] * 1000))
    started = time.perf_counter()
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2", "--no-report",
                               "--json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())["curl"]
    assert code == 0 and not no_traceback(err)
    assert report["motion"] is None and "mostly gaps" in report["motion_skipped"]
    (warning,) = report["motion_warnings"]
    assert "8 recording(s) are mostly gaps" in warning and "milliseconds" in warning and "curl-correct-0" in warning
    assert time.perf_counter() - started < 60       # it took minutes when the gaps were windows


def test_one_class_in_milliseconds_does_not_let_the_motion_model_learn_the_unit(tmp_path):
    data = movements(tmp_path / "d")
    edit_samples(os.path.join(data, "curl", "correct curl", "*.json"),
                 lambda s: s.update(timestamp=s["timestamp"] * 1000))
    code, _, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2", "--no-report",
                             "--json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())["curl"]
    assert code == 0 and report["motion"] is None and report["advised_verdict"] == "frames"
    assert "has 0 correct and 4 incorrect ones" in report["motion_skipped"]


@pytest.mark.parametrize("stray", [[1e12], [1e308, -1e308]])
def test_a_stray_timestamp_names_its_clip_and_span_and_the_rest_trains(tmp_path, stray):
    data = movements(tmp_path / "d")
    files = sorted(glob.glob(os.path.join(data, "curl", "correct curl", "curl-correct-0_*.json")))
    for path, value in zip(files[3:], stray):
        edit_samples(path, lambda s: s.update(timestamp=value))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2", "--no-report")
    assert code == 0 and not no_traceback(err)
    (line,) = [ln for ln in err.splitlines() if "mostly gaps" in ln]
    assert f"curl-correct-0 spans {min(stray + [0.0]):g} to {max(stray):g} s with 20 frames" in line
    assert "Motion model (curl_motion, windows)" in out         # the other recordings still give one


def test_a_recording_whose_frames_share_one_timestamp_is_described_truly(tmp_path):
    data = movements(tmp_path / "d")
    edit_samples(os.path.join(data, "*", "*", "*.json"), lambda s: s.update(timestamp=0.0))
    ds = samples.Dataset(data, "curl")
    why = motion.MotionKind().data_problem(ds)
    assert "span 0-0 s" in why and "152 of their frames share a timestamp" in why and "1-1 frames" not in why


def test_gap_share_is_zero_for_steady_frames_and_one_past_float_range():
    steady = motion.Recording("a", 1, np.arange(20) / 30, np.zeros((20, 28)))
    gappy = motion.Recording("b", 1, np.arange(20) * 100.0, np.zeros((20, 28)))
    overflow = motion.Recording("c", 1, np.array([0.0, np.inf]), np.zeros((2, 28)))
    assert steady.gap_share() == 0 and gappy.gap_share() > 0.99 and overflow.gap_share() == 1
    assert gappy.in_milliseconds() and not steady.in_milliseconds()


# ----------------------------------------------------------------------------- 3: numbers past float range
@pytest.mark.parametrize("where", ["timestamp", "keypoints"])
def test_a_four_hundred_digit_number_is_an_invalid_sample_with_its_reason(tmp_path, where):
    data = build_dataset(tmp_path / "d")
    path = os.path.join(data, "stance", "correct stance", "huge.json")
    write_sample(path, FLAT, 1, "stance")
    text = open(path).read()
    if where == "timestamp":
        text = text.replace('"timestamp": 0.0', '"timestamp": ' + "9" * 400)
    else:
        text = text.replace('"keypoints": [', '"keypoints": [' + "7" * 400 + ", ", 1).replace(
            f", {round(float(FLAT[0]), 6)},", ",", 1)
    open(path, "w").write(text)
    ds = samples.Dataset(data, "stance")
    ((bad, why),) = ds.invalid
    assert bad.endswith("huge.json") and "out of range" in why and "characters" in why


@pytest.mark.parametrize("value", ["0.5", True, [1], float("inf"), float("nan")])
def test_a_timestamp_that_is_not_a_finite_number_is_an_invalid_sample_not_no_timestamp(tmp_path, value):
    data = build_dataset(tmp_path / "d")
    write_sample(os.path.join(data, "stance", "correct stance", "odd.json"), FLAT, 1, "stance", timestamp=value)
    ds = samples.Dataset(data, "stance")
    ((bad, why),) = ds.invalid
    assert bad.endswith("odd.json") and why.startswith("timestamp") and "seconds" in why


# ----------------------------------------------------------------------------- 4: $ and emoji in names
@pytest.mark.parametrize("mark", ["$$", "$\\frac$"])
def test_dollar_signs_in_names_are_drawn_as_plain_text(tmp_path, mark):
    data = movements(tmp_path / "d")
    for path in glob.glob(os.path.join(data, "*", "*", "*.json")):
        edit_samples(path, lambda s: s.update(clip=f"squat {mark} " + s["clip"]))
        os.rename(path, os.path.join(os.path.dirname(path), f"{mark}_" + os.path.basename(path)))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2",
                               "--json", tmp_path / "r.json")
    assert code == 0 and not no_traceback(err)
    assert (tmp_path / "m" / "curl_report.html").is_file() and (tmp_path / "r.json").is_file()


def test_emoji_in_names_give_no_glyph_warnings(tmp_path):
    data = movements(tmp_path / "d")
    edit_samples(os.path.join(data, "*", "*", "*.json"), lambda s: s.update(clip=s["clip"] + " \U0001F4AA"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2")
    assert code == 0 and not [w for w in caught if "Glyph" in str(w.message)]


# ----------------------------------------------------------------------------- 5: the report cannot be written
@pytest.mark.parametrize("blocker", ["folder", "read-only link"])
def test_a_report_that_cannot_be_written_is_said_and_the_run_goes_on(tmp_path, blocker):
    data = build_dataset(tmp_path / "d", categories=("stance", "execution"))
    models = tmp_path / "m"
    models.mkdir()
    target = models / "stance_report.html"
    if blocker == "folder":
        target.mkdir()
    else:
        target.symlink_to("/proc/version")          # a read-only filesystem
    code, out, err = run_train("--data-dir", data, "--models-dir", models, "--epochs", "2", "--json",
                               tmp_path / "r.json")
    (line,) = no_traceback(err)
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 1 and line.startswith("error: stance: could not write the report") and "models were written" in line
    assert report["stance"]["report"] is None and report["stance"]["report_error"]
    assert report["execution"]["report"] and (models / "execution_report.html").is_file()
    assert (models / "stance.onnx").is_file() and not [n for n in os.listdir(models) if n.startswith(".")]


def test_cv_report_that_cannot_be_written_keeps_the_json(tmp_path):
    data = build_dataset(tmp_path / "d")
    models = tmp_path / "m"
    (models / "cv_report.html").mkdir(parents=True)
    code, out, err = run_train("--data-dir", data, "--models-dir", models, "--epochs", "2", "--cv", "2",
                               "--report", "--json", tmp_path / "r.json")
    (line,) = no_traceback(err)
    assert code == 1 and "could not write the --cv report" in line
    assert json.loads((tmp_path / "r.json").read_text())["stance"]["PoseClassifier"]["mean"] is not None


def test_a_category_named_cv_is_refused_since_its_report_would_be_the_cv_report(tmp_path):
    data = build_dataset(tmp_path / "d", categories=("cv", "stance"))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2")
    (line,) = no_traceback(err)
    assert code == 1 and "may not be named cv" in line and (tmp_path / "m" / "stance.onnx").is_file()


# ----------------------------------------------------------------------------- 6: tiny data, alike classes
def test_three_samples_per_class_without_clips_train_and_report(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=3, frames=1, with_clips=False)
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2")
    assert code == 0 and not no_traceback(err) and (tmp_path / "m" / "stance_report.html").is_file()


def test_classes_that_cannot_be_told_apart_list_no_arbitrary_suspects(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=12)
    incorrect = os.path.join(data, "stance", "incorrect stance")
    shutil.rmtree(incorrect)
    shutil.copytree(os.path.join(data, "stance", "correct stance"), incorrect)
    edit_samples(os.path.join(incorrect, "*.json"), lambda s: s.update(label=0, clip="bad-" + s["clip"],
                                                                       keypoints=[v + 0.01 for v in s["keypoints"]]))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2",
                               "--json", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())["stance"]
    assert code == 0 and report["suspect_labels"] == [] and report["classes_indistinct"]["p"] > suspects.ALPHA
    assert "the two classes cannot be told apart" in out
    assert "cannot be told apart" in (tmp_path / "m" / "stance_report.html").read_text()


# ----------------------------------------------------------------------------- 7: subjects
def test_a_subject_on_some_frames_of_a_clip_keeps_the_clip_with_its_person(tmp_path):
    data = build_people(tmp_path / "d", people=6, frames=4)
    for path in sorted(glob.glob(os.path.join(data, "stance", "*", "*.json")))[1::2]:
        edit_samples(path, lambda s: s.pop("subject"))
    ds = samples.Dataset(data, "stance")
    train_idx, val_idx, grouping = evaluation.split(ds, 0.2, 0)
    assert grouping.name == "subject"
    assert not set(ds.groups[train_idx]) & set(ds.groups[val_idx])          # no recording on both sides
    assert any("subject on some of their frames only" in w for w in ds.recording_warnings)


def test_a_recording_naming_two_people_joins_them():
    groups = evaluation.person_groups(["a", "b", None, "c"], np.array(["r1", "r1", "r2", "r3"]))
    assert groups[0] == groups[1] == "subject:a+b" and groups[2] == "r2" and groups[3] == "subject:c"


@pytest.mark.parametrize("value, person", [(7, "7"), (7.0, "7"), ("7", "7"), (" ana ", "ana")])
def test_a_subject_is_a_string_or_a_whole_number_one_person_however_written(value, person):
    assert samples.subject_of(value) == person


@pytest.mark.parametrize("value", ["", " ", [1], {"id": 1}, True, 1.5])
def test_other_subjects_are_an_invalid_sample_with_its_reason(tmp_path, value):
    data = build_dataset(tmp_path / "d")
    write_sample(os.path.join(data, "stance", "correct stance", "odd.json"), FLAT, 1, "stance", subject=value)
    ((bad, why),) = samples.Dataset(data, "stance").invalid
    assert bad.endswith("odd.json") and why.startswith("subject") and "not a person's id" in why


# ----------------------------------------------------------------------------- 8: input shapes
@pytest.mark.parametrize("shape", [(4, 8, 28), (1, 32, 28), (2, 448), (16, 28)])
def test_the_motion_model_refuses_windows_of_another_length(shape):
    with pytest.raises(ValueError, match=r"\[N, 16, 28\]"):
        train.MotionClassifier().eval()(torch.zeros(shape))


@pytest.mark.parametrize("x", [torch.zeros(28), torch.zeros(3, 26), torch.zeros(2, 1, 28), "pose"])
def test_the_frame_model_refuses_anything_but_n_by_28(x):
    with pytest.raises(ValueError, match=r"\[N, 28\]"):
        train.PoseClassifier().eval()(x)


def test_numpy_and_float64_inputs_are_taken_as_float32():
    model = train.PoseClassifier().eval()
    x = np.tile(FLAT, (3, 1))
    with torch.no_grad():
        expected = model(torch.from_numpy(x).float())
        assert torch.equal(model(x), expected) and torch.equal(model(torch.from_numpy(x)), expected)


# ----------------------------------------------------------------------------- 9, 12: interrupted swaps
KILL_AFTER_RENAMES = """
import os, sys
sys.path.insert(0, {root!r})
real, count = os.replace, [0]
def replace(src, dst):
    real(src, dst)
    count[0] += 1
    if count[0] == {after}:
        os._exit(9)              # as SIGKILL: no cleanup, no message
os.replace = replace
import train
sys.exit(train.main({argv!r}))
"""


def test_a_kill_between_the_renames_is_told_by_the_loader_and_quantize(tmp_path):
    data = movements(tmp_path / "d")
    models = tmp_path / "m"
    base = ["--data-dir", data, "--models-dir", str(models), "--epochs", "2", "--no-report"]
    assert run_train(*base)[0] == 0
    old_record = (models / "curl.json").read_text()
    script = KILL_AFTER_RENAMES.format(root=ROOT, after=2, argv=base + ["--seed", "1"])
    assert subprocess.run([sys.executable, "-c", script], capture_output=True).returncode == 9
    assert (models / "curl.json").read_text() == old_record         # the records go last
    with pytest.raises(samples.DataError, match="different training runs"):
        store.load_model(str(models / "curl.pt"))
    code, out, err = run_quantize("--models-dir", models, "--categories", "curl")
    assert "not the training record of this model" in out + err and "Traceback" not in err


def test_an_interrupt_while_the_motion_model_trains_leaves_every_earlier_file(tmp_path, monkeypatch):
    data = movements(tmp_path / "d")
    models = tmp_path / "m"
    assert run_train("--data-dir", data, "--models-dir", models, "--epochs", "2")[0] == 0
    before = {n: (models / n).read_bytes() for n in os.listdir(models)}
    real = motion.MotionKind.fit

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(motion.MotionKind, "fit", interrupted)
    code, out, err = run_train("--data-dir", data, "--models-dir", models, "--epochs", "2", "--seed", "1")
    assert code == 130 and "models written: none" in err
    assert {n: (models / n).read_bytes() for n in os.listdir(models)} == before      # the frame model too
    monkeypatch.setattr(motion.MotionKind, "fit", real)


def test_signals_wait_while_a_swap_renames(tmp_path):
    swap = store.Swap(str(tmp_path))
    for name in ("a.pt", "a.json"):
        with open(swap.temp(str(tmp_path / name)), "w") as f:
            f.write(name)
    real = os.replace

    def replace(src, dst):
        os.kill(os.getpid(), signal.SIGINT)        # arrives only once every file is in place
        real(src, dst)
    os.replace = replace
    try:
        with pytest.raises(KeyboardInterrupt):
            swap.commit()
    finally:
        os.replace = real
    assert swap.committed and sorted(os.listdir(tmp_path)) == ["a.json", "a.pt"]


def test_files_of_an_earlier_run_beside_this_runs_are_named(tmp_path):
    data = movements(tmp_path / "d")
    models = tmp_path / "m"
    assert run_train("--data-dir", data, "--models-dir", models, "--epochs", "2", "--no-report")[0] == 0
    code, out, err = run_train("--data-dir", data, "--models-dir", models, "--epochs", "2", "--no-report",
                               "--no-motion")
    assert code == 0 and "curl_motion.*: kept from an earlier training run" in out
    code, out, err = run_quantize("--models-dir", models)
    assert "curl, curl_motion come from different training runs" in err


# ----------------------------------------------------------------------------- 10: huge options
@pytest.mark.parametrize("flags", [["--lr", "1e39"], ["--batch-size", "100000000000000000000"],
                                   ["--epochs", "100000000000000000000"]])
def test_huge_option_values_are_refused_by_argparse(flags, capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(flags)
    assert e.value.code == 2 and flags[0] in capsys.readouterr().err


# ----------------------------------------------------------------------------- 11: damaged model files
@pytest.fixture(scope="module")
def one_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("one")
    data = build_dataset(root / "d")
    assert run_train("--data-dir", data, "--models-dir", root / "m", "--epochs", "2", "--no-report")[0] == 0
    return root / "m"


def without_digest(folder):
    record = json.loads((folder / "stance.json").read_text())
    record.pop("weights_sha1"), record.pop("weights_bytes")
    (folder / "stance.json").write_text(json.dumps(record))


@pytest.mark.parametrize("damage, words", [
    ("empty", r"is empty \(0 bytes\)"), ("garbage", "is damaged: torch.load cannot read it"),
    ("folder", "is a folder"), ("cut", "is cut short"), ("other", "different training runs")])
def test_load_model_says_what_is_wrong_with_the_file(one_model, tmp_path, damage, words):
    folder = tmp_path / "m"
    shutil.copytree(one_model, folder)
    pt = folder / "stance.pt"
    if damage in ("empty", "garbage"):
        without_digest(folder)
        pt.write_bytes(b"" if damage == "empty" else b"not a model" * 50)
    elif damage == "folder":
        pt.unlink()
        pt.mkdir()
    elif damage == "cut":
        pt.write_bytes(pt.read_bytes()[:1000])
    else:
        torch.save(train.PoseClassifier(width=16).state_dict(), pt)
    with pytest.raises(samples.DataError, match=words):
        store.load_model(str(pt))


def test_another_models_weights_without_a_digest_are_named_as_such(one_model, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(one_model, folder)
    without_digest(folder)
    torch.save(train.PoseClassifier(width=16).state_dict(), folder / "stance.pt")
    with pytest.raises(samples.DataError, match="does not hold the weights of the PoseClassifier"):
        store.load_model(str(folder / "stance.pt"))


def test_quantize_names_an_edited_motion_record_rather_than_a_missing_folder(tmp_path, monkeypatch):
    data = movements(tmp_path / "d")
    monkeypatch.chdir(tmp_path)          # where MediaPipe_Dataset/, the default data folder, is not
    assert run_train("--data-dir", data, "--models-dir", "m", "--epochs", "2", "--no-report")[0] == 0
    record = json.loads((tmp_path / "m" / "curl_motion.json").read_text())
    record["data_dir"] = str(tmp_path / "elsewhere")
    (tmp_path / "m" / "curl_motion.json").write_text(json.dumps(record))
    code, out, err = run_quantize("--models-dir", "m")
    assert code == 0 and "curl_motion.json is not the training record of this model" in out
    assert "folder missing" not in out + err
    os.remove(tmp_path / "m" / "curl_motion.json")
    code, out, err = run_quantize("--models-dir", "m")
    assert code == 0 and "Skipped m/curl_motion.onnx: " in err and "curl_motion.json" in err


# ----------------------------------------------------------------------------- rough edges
def test_only_the_epochs_the_kept_epoch_rule_may_choose_are_held():
    rng = np.random.default_rng(0)
    for _ in range(300):
        history, kept = [], training.KeptStates()
        model = torch.nn.Linear(1, 1)
        for epoch in range(int(rng.integers(1, 15))):
            history.append({"val_acc": float(rng.integers(0, 4)) / 4, "val_acc_2_removed": float(rng.integers(0, 3)),
                            "val_loss": float(rng.integers(0, 2))})
            with torch.no_grad():
                model.bias.fill_(epoch)
            kept.add(history, model)
            assert len(kept.states) <= 2
        best = training.kept_epoch(history)
        assert kept.state(best)["bias"].item() == best - 1


def test_a_full_disk_is_said_in_words(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(100, 100, 0))
    error = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    assert store.write_failure(error, str(tmp_path / "x.pt")) == "the disk is full"


def test_load_model_given_the_onnx_file_says_to_give_the_pt(one_model):
    with pytest.raises(samples.DataError, match=r"load_model takes the PyTorch file, .*stance\.pt"):
        store.load_model(str(one_model / "stance.onnx"))


def test_a_rename_that_fails_names_what_was_and_was_not_replaced(tmp_path):
    swap = store.Swap(str(tmp_path))
    for name in ("a.pt", "b.json"):
        with open(swap.temp(str(tmp_path / name)), "w") as f:
            f.write(name)
    (tmp_path / "b.json").mkdir()                  # in the way of the record
    with pytest.raises(samples.DataError, match=r"b\.json: cannot be put in place .*replaced: a\.pt; kept as they "
                                                r"were: b\.json"):
        swap.commit()
    swap.discard()
    assert sorted(os.listdir(tmp_path)) == ["a.pt", "b.json"]


def test_separable_classes_with_two_recordings_per_class_are_not_called_alike(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=3, frames=2)
    ds = samples.Dataset(data, "stance")
    train_idx, _, _ = evaluation.split(ds, 0.2, 0)
    found = suspects.find_suspects(ds, train_idx, 0, train.KeypointNormalizer())
    assert not found.indistinct and found.balanced == 1


def test_a_folder_of_invalid_samples_lists_the_first_twenty_and_counts_the_rest(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=12)
    for path in glob.glob(os.path.join(data, "stance", "*", "*.json")):
        edit_samples(path, lambda s: s.update(timestamp=str(s["timestamp"])))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2")
    listed = [ln for ln in err.splitlines() if ln.startswith("skipped: ")]
    assert code == 1 and len(listed) == 20 and "is not a number of seconds" in listed[0]
    assert "... and 52 more invalid sample(s), by the first word of their reason: timestamp 52" in err
    assert "skipped 72 invalid sample(s) (the first 20 listed above" in err
