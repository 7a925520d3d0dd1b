"""Hostile and everyday-odd inputs: nothing poisoned, nothing lost, no traceback. One test
per defect found by the adversarial run (issue 14)."""
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import onnx
import pytest
import torch

from conftest import ROOT, STANDING, build_dataset, run_quantize, run_train, write_sample
import quantize
import train
from MediaPipe_Dataset import evaluation, pipeline, samples  # noqa: E402

FLAT = STANDING.reshape(-1)


def no_traceback(err):
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error: ")]


@pytest.fixture
def two_categories(tmp_path):
    return build_dataset(tmp_path / "data", categories=("stance", "execution"))


# ----------------------------------------------------------------------------- 1, 2: poisoned models, flags
def test_a_huge_value_is_refused_not_turned_into_inf(tmp_path):
    data = build_dataset(tmp_path / "d")
    write_sample(os.path.join(data, "stance", "correct stance", "huge.json"), [1e308] + FLAT.tolist()[1:], 1, "stance")
    ds = samples.Dataset(data, "stance")
    assert [why for _, why in ds.invalid] == ["infinite value or a coordinate beyond +-1e+06"]
    assert np.isfinite(np.nan_to_num(ds.X, nan=0)).all()


def test_a_learning_rate_that_diverges_writes_no_model(tmp_path):
    data = build_dataset(tmp_path / "d")
    code, _, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2", "--lr", "1e30")
    assert code == 1 and "error: stance: training diverged" in err and "Traceback" not in err
    assert not (tmp_path / "m" / "stance.onnx").exists()


@pytest.mark.parametrize("flags", [["--lr", "nan"], ["--lr", "inf"], ["--seed", "-1"], ["--seed", "99999999999"]])
def test_flags_that_used_to_give_tracebacks_are_refused_by_argparse(flags, capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(flags)
    err = capsys.readouterr().err
    assert e.value.code == 2 and flags[0] in err and "Traceback" not in err


# ----------------------------------------------------------------------------- 3-7: tracebacks
def test_json_nested_ten_thousand_deep_is_one_invalid_sample(tmp_path):
    data = build_dataset(tmp_path / "d")
    deep = os.path.join(data, "stance", "correct stance", "deep.json")
    with open(deep, "w") as f:
        f.write("[" * 10000 + "]" * 10000)
    ds = samples.Dataset(data, "stance")
    assert ds.invalid == [(deep, "malformed JSON (nested too deeply)")] and len(ds.y) == 48


def test_an_unreadable_class_folder_is_one_sentence_and_other_categories_train(tmp_path, two_categories, monkeypatch):
    locked = os.path.join(two_categories, "execution", "incorrect execution")
    real = os.listdir

    def listdir(path):
        if os.path.abspath(path) == os.path.abspath(locked):
            raise PermissionError(13, "Permission denied")
        return real(path)
    monkeypatch.setattr(os, "listdir", listdir)
    code, _, err = run_train("--data-dir", two_categories, "--models-dir", tmp_path / "m", "--epochs", "2")
    (line,) = no_traceback(err)
    assert code == 1 and line == f"error: {locked}: cannot read the folder (Permission denied)"
    assert (tmp_path / "m" / "stance.onnx").exists()


def test_a_full_disk_while_saving_fails_that_category_only(tmp_path, two_categories, monkeypatch):
    real, calls = torch.save, []

    def save(obj, path, *a, **kw):
        calls.append(path)
        if len(calls) == 1:
            raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos; No space left on device")
        return real(obj, path, *a, **kw)
    monkeypatch.setattr(torch, "save", save)
    models = tmp_path / "m"
    code, _, err = run_train("--data-dir", two_categories, "--models-dir", models, "--epochs", "2")
    (line,) = no_traceback(err)
    assert code == 1 and "cannot write the" in line and "earlier models kept" in line
    assert len(calls) == 2 and sorted(os.listdir(models)) in (
        ["stance.json", "stance.onnx", "stance.pt", "stance_report.html"],
        ["execution.json", "execution.onnx", "execution.pt", "execution_report.html"])


def test_ctrl_c_ends_in_one_line_saying_what_was_kept(tmp_path, two_categories, monkeypatch):
    real = pipeline.train_category

    def interrupted_second(ds, run, log=None):          # equal sizes: execution trains first, then stance
        if ds.category == "stance":
            raise KeyboardInterrupt
        return real(ds, run, log)
    monkeypatch.setattr(pipeline, "train_category", interrupted_second)
    code, _, err = run_train("--data-dir", two_categories, "--models-dir", tmp_path / "m", "--epochs", "2")
    assert code == 130 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.strip()]
    assert line == ("Interrupted during stance: models written: execution; the rest not written, "
                    "their earlier models kept.")


def test_sigterm_leaves_no_temporary_files_and_says_what_was_kept(tmp_path):
    data = build_dataset(tmp_path / "d", categories=("stance", "execution"), clips_per_class=40)
    models = tmp_path / "m"
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--data-dir", data,
                             "--models-dir", str(models), "--epochs", "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:                     # wait until training has really started
        if line.startswith("Training "):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert re.search(r"Interrupted during \w+: models written: ", err)
    assert not [n for n in os.listdir(models) if n.startswith(".")]


def test_stale_temporary_files_of_ours_are_removed_at_the_start_of_a_run(tmp_path):
    data = build_dataset(tmp_path / "d")
    models = tmp_path / "m"
    models.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()                                        # a process id that no longer runs
    stale = [f".tmp-{dead.pid}-stance.onnx.x1y2z3"]
    # alive, or not provably ours: an older version's .<category>.<random>.pt looks like the
    # model of a category named `.stance.abcd1234`, and is kept (issue 21)
    kept = [f".tmp-{os.getpid()}-stance.onnx.q9w8e7", ".hidden_notes", "notes.txt", ".stance.abcd1234.pt",
            ".execution.a1b2c3d4.onnx"]
    for name in stale + kept:
        (models / name).write_bytes(b"x" * 100)
    code, _, err = run_train("--data-dir", data, "--models-dir", models, "--epochs", "2")
    assert code == 0 and f"Removed 1 temporary file(s) that an interrupted run left in {models}" in err
    assert sorted(os.listdir(models)) == sorted(kept + ["stance.json", "stance.onnx", "stance.pt", "stance_report.html"])


# ----------------------------------------------------------------------------- 8-15: lost or wrong
def test_a_category_ending_in_int8_is_refused_and_others_train(tmp_path):
    data = build_dataset(tmp_path / "d", categories=("stance", "stance_int8"))
    code, _, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2")
    (line,) = no_traceback(err)
    assert code == 1 and "stance_int8: a category name may not end in _int8" in line
    assert sorted(os.listdir(tmp_path / "m")) == ["stance.json", "stance.onnx", "stance.pt", "stance_report.html"]


def test_quantize_never_overwrites_a_file_that_is_not_its_own_int8_model(tmp_path):
    data = build_dataset(tmp_path / "d")
    models = tmp_path / "m"
    assert run_train("--data-dir", data, "--models-dir", models, "--epochs", "2")[0] == 0
    (models / "stance_int8.onnx").write_bytes(b"somebody's file")
    code, _, err = run_quantize("--models-dir", models, "--data-dir", data)
    (line,) = no_traceback(err)
    assert code == 1 and "stance_int8.onnx: exists and is not an INT8 model from quantize.py" in line
    assert (models / "stance_int8.onnx").read_bytes() == b"somebody's file"
    os.remove(models / "stance_int8.onnx")
    assert run_quantize("--models-dir", models, "--data-dir", data)[0] == 0
    assert run_quantize("--models-dir", models, "--data-dir", data)[0] == 0     # its own file: replaced


def test_written_files_get_the_normal_mode_under_the_umask(tmp_path):
    data = build_dataset(tmp_path / "d")
    models = tmp_path / "m"
    old = os.umask(0o022)
    try:
        assert run_train("--data-dir", data, "--models-dir", models, "--epochs", "2",
                         "--json", tmp_path / "r.json")[0] == 0
        assert run_quantize("--models-dir", models, "--data-dir", data)[0] == 0
    finally:
        os.umask(old)
    for path in [*models.iterdir(), tmp_path / "r.json"]:
        assert os.stat(path).st_mode & 0o777 == 0o644, path


def test_upper_case_extension_byte_order_mark_and_appledouble_files(tmp_path):
    data = build_dataset(tmp_path / "d")
    folder = os.path.join(data, "stance", "correct stance")
    write_sample(os.path.join(folder, "UPPER.JSON"), FLAT, 1, "stance", clip="u")
    with open(os.path.join(folder, "bom.json"), "wb") as f:
        f.write(b"\xef\xbb\xbf" + json.dumps({"keypoints": FLAT.tolist(), "label": 1}).encode())
    with open(os.path.join(folder, "._bom.json"), "wb") as f:
        f.write(b"\x00\x05\x16\x07 AppleDouble")
    ds = samples.Dataset(data, "stance")
    assert ds.invalid == [] and ds.ignored == 1 and len(ds.y) == 50
    code, _, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2", "--strict")
    assert code == 0 and "ignored 1 macOS '._' file(s)" in err


@pytest.mark.parametrize("fraction", [0.4, 0.6, 0.9])
def test_val_split_is_honoured_with_clips(tmp_path, fraction):
    ds = samples.Dataset(build_dataset(tmp_path / "d", clips_per_class=10), "stance")
    tr, va, grouping = evaluation.split(ds, fraction, seed=0)
    assert grouping.warning is None and not set(ds.groups[tr]) & set(ds.groups[va])
    assert len(va) / len(ds.y) == pytest.approx(fraction, abs=0.05)


def test_quantize_notices_validation_samples_with_the_same_names_but_other_content(tmp_path):
    data = build_dataset(tmp_path / "d")
    models = tmp_path / "m"
    assert run_train("--data-dir", data, "--models-dir", models, "--epochs", "2")[0] == 0
    other = build_dataset(tmp_path / "other", seed=7)            # same file names, other poses
    code, out, _ = run_quantize("--models-dir", models, "--data-dir", other, "--json", tmp_path / "q.json")
    assert code == 0 and "differ from those the model was trained with" in out
    assert json.loads((tmp_path / "q.json").read_text())["stance"]["int8"]["accuracy_val"] is None


@pytest.mark.parametrize("label,warns", [("1", False), ("correct", False), (1, False), ("Correct", False),
                                         ("0", True), ("incorrect", True), ("good", True)])
def test_label_words_and_strings_are_understood(tmp_path, label, warns):
    data = build_dataset(tmp_path / "d")
    path = os.path.join(data, "stance", "correct stance", "x.json")
    with open(path, "w") as f:
        json.dump({"keypoints": FLAT.tolist(), "label": label}, f)
    ds = samples.Dataset(data, "stance")
    assert bool(ds.warnings) == warns
    if warns:
        assert ds.warnings[0][1].startswith(f"label {label!r} contradicts its folder (correct)")


def test_quantize_batch_size_is_bounded(capsys):
    with pytest.raises(SystemExit) as e:
        quantize.parse_args(["--batch-size", "100000000"])
    assert e.value.code == 2 and "--batch-size between 1 and 65536" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 6: foreign models
def foreign_model(path, width, with_metadata):
    """input -> MatMul -> Softmax, names right; width and metadata as asked."""
    from onnx import TensorProto, helper, numpy_helper
    weight = numpy_helper.from_array(np.ones((width, 2), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["logits"]),
                               helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", width])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
                              [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if with_metadata:
        for key, value in (("keypoint_layout", samples.KEYPOINT_NAMES), ("class_names", samples.CLASS_NAMES)):
            model.metadata_props.add(key=key, value=json.dumps(value))
    onnx.save(model, path)


@pytest.mark.parametrize("width,with_metadata,why", [(30, True, "input and output widths [30] and [2]"),
                                                     (28, False, "lacks this version's keypoint_layout")])
def test_quantize_refuses_foreign_models_and_goes_on(tmp_path, width, with_metadata, why):
    data = build_dataset(tmp_path / "d")
    models = tmp_path / "m"
    assert run_train("--data-dir", data, "--models-dir", models, "--epochs", "2")[0] == 0
    foreign_model(models / "aaa.onnx", width, with_metadata)         # sorted first: the others come after it
    shutil.copy(models / "stance.json", models / "aaa.json")         # found by a record, as every model is
    code, _, err = run_quantize("--models-dir", models, "--data-dir", data)
    (line,) = no_traceback(err)
    assert code == 1 and "aaa.onnx: not a pose model from train.py" in line and why in line
    assert (models / "stance_int8.onnx").exists() and not (models / "aaa_int8.onnx").exists()


# ----------------------------------------------------------------------------- 16: what a model carries
def test_the_onnx_files_carry_small_metadata_whatever_the_dataset_size(tmp_path):
    sizes = {}
    for clips in (4, 60):
        data = build_dataset(tmp_path / f"d{clips}", clips_per_class=clips)
        models = tmp_path / f"m{clips}"
        assert run_train("--data-dir", data, "--models-dir", models, "--epochs", "1")[0] == 0
        meta = onnx.load(models / "stance.onnx").metadata_props
        sizes[clips] = sum(len(p.key) + len(p.value) for p in meta)
        assert not any("correct stance/" in p.value or "correct_" in p.value for p in meta)   # no file names
    assert sizes[4] == sizes[60] < 2000


def test_a_training_record_that_does_not_belong_to_the_model_is_noticed(tmp_path):
    data = build_dataset(tmp_path / "d")
    models = tmp_path / "m"
    assert run_train("--data-dir", data, "--models-dir", models, "--epochs", "2")[0] == 0
    record = json.loads((models / "stance.json").read_text())
    record["val_samples"] = record["val_samples"][:2]
    (models / "stance.json").write_text(json.dumps(record))
    code, out, _ = run_quantize("--models-dir", models, "--data-dir", data)
    assert code == 0 and "is not the training record of this model" in out


# ----------------------------------------------------------------------------- 19: the README
def test_readme_one_liners_pass_mains_exit_code_on():
    text = open(os.path.join(ROOT, "README.md")).read()
    calls = re.findall(r"[\w.()]*train\.main\(\[", text)
    assert calls and all(c == "sys.exit(train.main([" for c in calls), calls
