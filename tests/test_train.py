"""train.py: input formats, bad input, normalization, training, export, CLI."""
import contextlib
import functools
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from sklearn.dummy import DummyClassifier

from conftest import ROOT, STANDING, assert_readme_defaults_match, build_dataset, readme_snippet, write_sample
import train
from MediaPipe_Dataset.config import FrameNetConfig, TrainingConfig  # noqa: E402
from MediaPipe_Dataset import evaluation, model as model_lib, registry, samples, store, training  # noqa: E402

FLAT = STANDING.reshape(-1)


def run_main(*argv):
    return train.main([str(a) for a in argv])


def small_args(data, models, *extra):
    return ["--data-dir", data, "--models-dir", models, "--epochs", "3", *extra]


# ----------------------------------------------------------------------------- input formats
def landmarks_33():
    """33 MediaPipe landmarks placed so that they map onto STANDING."""
    marks = np.zeros((33, 2))
    for i, m in enumerate(samples.MEDIAPIPE_33):
        if not isinstance(m, tuple):
            marks[m] = STANDING[i]
    return marks


def test_the_accepted_formats_give_the_same_keypoints(tmp_path):
    marks = landmarks_33()
    formats = {
        "flat": FLAT.tolist(),
        "pairs": STANDING.tolist(),
        "33_rows": [[x, y, 0.1, 0.99] for x, y in marks],          # x, y, z, visibility
        "33_objects": [{"x": x, "y": y, "z": 0.0, "visibility": 0.9} for x, y in marks],
    }
    for name, raw in formats.items():
        np.testing.assert_allclose(samples.parse_keypoints(raw), FLAT, err_msg=name)
    # in files, with unknown extra fields, loaded by the dataset
    for name, raw in formats.items():
        path = tmp_path / "d" / "pose" / "correct pose" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"keypoints": raw, "label": 1, "camera": "phone", "fps": 30}))
    (tmp_path / "d" / "pose" / "incorrect pose").mkdir()
    ds = samples.Dataset(str(tmp_path / "d"), "pose")
    assert ds.invalid == [] and len(ds.y) == 4
    np.testing.assert_allclose(ds.X, np.tile(FLAT, (4, 1)), atol=1e-6)


def test_neck_is_the_shoulder_midpoint_of_the_33_landmarks():
    marks = landmarks_33()
    marks[11], marks[12] = [0.6, 0.3], [0.4, 0.32]
    xy = samples.parse_keypoints(marks.tolist()).reshape(14, 2)
    np.testing.assert_allclose(xy[1], [0.5, 0.31])
    np.testing.assert_allclose(xy[2], [0.4, 0.32])   # right shoulder = landmark 12
    np.testing.assert_allclose(xy[5], [0.6, 0.3])    # left shoulder = landmark 11


BAD = {
    "malformed JSON": b'{"keypoints": [0.1, 0.2,',
    "unreadable": b"\xff\xfe\x00not utf-8",
    "no keypoints": json.dumps({"label": 1, "category": "pose"}).encode(),
    "wrong count": json.dumps({"keypoints": [0.5] * 27}).encode(),
    "non-numeric": json.dumps({"keypoints": ["0.5"] + [0.5] * 27}).encode(),
    "infinite value": json.dumps({"keypoints": [float("inf")] + FLAT.tolist()[1:]}).encode(),
    "beyond +-1e+06": json.dumps({"keypoints": [1e308] + FLAT.tolist()[1:]}).encode(),
    "degenerate pose": json.dumps({"keypoints": [0.5] * 28}).encode(),
    # missing points: one coordinate null, in each format
    "point 0 has one coordinate null": json.dumps({"keypoints": [None] + FLAT.tolist()[1:]}).encode(),
    "point 3 has one coordinate null": json.dumps(
        {"keypoints": [[x, y] if i != 3 else [x, None] for i, (x, y) in enumerate(STANDING.tolist())]}).encode(),
    "landmark 14 has one coordinate null": json.dumps(
        {"keypoints": [[0.5, 0.5, 0, 0.9]] * 14 + [[None, 0.5, 0, 0.9]] + [[0.6, 0.4, 0, 0.9]] * 18}).encode(),
    # too few points left to place the pose: no shoulder and no hip
    "no shoulder and no hip left": json.dumps(
        {"keypoints": [None if i // 2 in (2, 5, 8, 11) else v for i, v in enumerate(FLAT.tolist())]}).encode(),
    "degenerate pose: all present points": json.dumps(
        {"keypoints": [0.5, 0.5] * 3 + [None] * 22}).encode(),
    "visibility must be null or a list of 14": json.dumps({"keypoints": FLAT.tolist(), "visibility": [1.0] * 13}).encode(),
    "non-numeric value 'high' at visibility 2": json.dumps(
        {"keypoints": FLAT.tolist(), "visibility": [1.0, 1.0, "high"] + [1.0] * 11}).encode(),
}


@pytest.mark.parametrize("reason", BAD)
def test_each_bad_sample_is_reported_with_path_and_reason(tmp_path, reason):
    data = build_dataset(tmp_path / "data")
    bad = os.path.join(data, "stance", "correct stance", "bad.json")
    with open(bad, "wb") as f:
        f.write(BAD[reason])
    ds = samples.Dataset(data, "stance")
    assert len(ds.invalid) == 1
    path, why = ds.invalid[0]
    assert path == bad
    assert reason in why


def test_bad_samples_are_skipped_with_a_summary_and_strict_makes_them_an_error(tmp_path, capsys):
    data = build_dataset(tmp_path / "data")
    bad = os.path.join(data, "stance", "correct stance", "bad.json")
    with open(bad, "wb") as f:
        f.write(BAD["wrong count"])
    assert run_main(*small_args(data, tmp_path / "models")) == 0
    err = capsys.readouterr().err
    assert f"skipped: {bad}: wrong count" in err and "skipped 1 invalid sample" in err
    assert run_main(*small_args(data, tmp_path / "models2", "--strict")) == 1
    err = capsys.readouterr().err
    assert f"error: {bad}: wrong count" in err and "--strict" in err
    assert not (tmp_path / "models2" / "stance.onnx").exists()


def test_a_label_contradicting_its_folder_warns_and_the_folder_wins(tmp_path, capsys):
    data = build_dataset(tmp_path / "data")
    odd = os.path.join(data, "stance", "correct stance", "odd.json")
    write_sample(odd, FLAT, 0, "stance", clip="odd")
    ds = samples.Dataset(data, "stance")
    assert ds.warnings and ds.warnings[0][0] == odd
    assert ds.y[ds.files.index(os.path.join("correct stance", "odd.json"))] == 1
    run_main(*small_args(data, tmp_path / "models"))
    assert f"warning: {odd}: label 0 contradicts its folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- user errors
def one_sentence_error(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
    assert lines
    return lines


def test_missing_data_dir(tmp_path, capsys):
    assert run_main("--data-dir", tmp_path / "nowhere", "--models-dir", tmp_path / "m") == 1
    (line,) = one_sentence_error(capsys)
    assert str(tmp_path / "nowhere") in line and "not found" in line


def test_a_category_too_small_to_split_fails_alone(tmp_path, capsys):
    data = build_dataset(tmp_path / "data", categories=("stance", "execution"))
    folder = os.path.join(data, "execution", "incorrect execution")
    for name in os.listdir(folder)[1:]:
        os.remove(os.path.join(folder, name))
    models = tmp_path / "models"
    assert run_main(*small_args(data, models)) == 1
    lines = one_sentence_error(capsys)
    assert any("execution" in ln and "too few" in ln for ln in lines)
    assert (models / "stance.onnx").exists() and not (models / "execution.onnx").exists()


def test_a_class_folder_missing_is_an_error(tmp_path, capsys):
    data = build_dataset(tmp_path / "data")
    shutil.rmtree(os.path.join(data, "stance", "incorrect stance"))
    assert run_main(*small_args(data, tmp_path / "models")) == 1
    (line,) = one_sentence_error(capsys)
    assert "incorrect stance" in line and "no samples" in line


def test_unwritable_models_dir(tmp_path, capsys, dataset):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert run_main(*small_args(dataset, blocker / "models")) == 1
    (line,) = one_sentence_error(capsys)
    assert "cannot write models" in line


def test_a_failed_export_leaves_earlier_models_untouched(tmp_path, monkeypatch, capsys, dataset):
    models = tmp_path / "models"
    models.mkdir()
    for ext in (".pt", ".onnx"):
        (models / f"stance{ext}").write_bytes(b"earlier model")
    monkeypatch.setattr(store, "onnx_parity", lambda *a: 1.0)     # ONNX disagrees with PyTorch
    assert run_main(*small_args(dataset, models)) == 1
    assert "disagree" in one_sentence_error(capsys)[0]
    assert sorted(os.listdir(models)) == ["stance.onnx", "stance.pt"]   # no temporary files left
    assert all((models / f"stance{ext}").read_bytes() == b"earlier model" for ext in (".pt", ".onnx"))


# ----------------------------------------------------------------------------- normalization
def test_normalizer_is_translation_scale_and_zscore_invariant():
    norm = train.KeypointNormalizer()
    base = norm(FLAT)
    assert base.dtype == np.float32 and base.shape == (28,)
    shifted = (STANDING + [0.2, -0.1]).reshape(-1)
    scaled = ((STANDING - 0.5) * 0.4 + 0.5).reshape(-1)
    zscored = (FLAT - FLAT.mean()) / (FLAT.std() + 1e-8)
    for other in (shifted, scaled, zscored, base):          # base: normalizing twice changes nothing
        np.testing.assert_allclose(norm(other), base, atol=1e-5)
    batch = norm(np.stack([FLAT, shifted, scaled]))
    assert batch.shape == (3, 28) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, np.tile(base, (3, 1)), atol=1e-5)
    assert not np.allclose(base, norm(STANDING[:, ::-1].reshape(-1)))   # a different pose differs


def test_normalizer_returns_all_missing_for_poses_it_cannot_place_and_checks_shape():
    norm = train.KeypointNormalizer()
    for unplaceable in ([0.5] * 28, [None] * 28, [0.5, 0.5] + [None] * 26):   # one place; nothing; only the nose
        assert np.isnan(norm(unplaceable)).all()
    with pytest.raises(ValueError):
        norm([0.5] * 27)


def test_classifier_gives_the_same_output_for_raw_zscored_and_normalized_input():
    torch.manual_seed(0)
    model = train.PoseClassifier(input_size=28, num_classes=2).eval()
    raw = torch.tensor(np.stack([FLAT, (STANDING * [1, 0.9]).reshape(-1)]), dtype=torch.float32)
    z = (raw - raw.mean(1, keepdim=True)) / raw.std(1, keepdim=True)
    n = torch.from_numpy(train.KeypointNormalizer()(raw.numpy()))
    with torch.no_grad():
        out = model(raw)
        torch.testing.assert_close(model(z), out, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(n), out, atol=1e-5, rtol=0)
    with pytest.raises(ValueError):
        train.PoseClassifier(input_size=30)


def test_augment_mirror_swaps_left_and_right():
    one_arm_up = STANDING.copy()
    one_arm_up[4] = [0.40, 0.10]                       # right wrist raised: not left-right symmetric
    x = torch.from_numpy(train.KeypointNormalizer()(one_arm_up.reshape(-1))).unsqueeze(0).repeat(64, 1)
    saved = model_lib.AUG_ROTATION_DEG, model_lib.AUG_STRETCH, model_lib.AUG_JITTER
    try:
        model_lib.AUG_ROTATION_DEG = model_lib.AUG_STRETCH = model_lib.AUG_JITTER = 0.0
        out = model_lib.augment(x, torch.Generator().manual_seed(0)).reshape(64, 14, 2)
    finally:
        model_lib.AUG_ROTATION_DEG, model_lib.AUG_STRETCH, model_lib.AUG_JITTER = saved
    p = x[0].reshape(14, 2)
    mirrored = p[samples.MIRROR] * torch.tensor([-1.0, 1.0])
    assert not torch.allclose(mirrored, p)
    same = [bool(torch.allclose(o, p, atol=1e-6)) for o in out]
    flipped = [bool(torch.allclose(o, mirrored, atol=1e-6)) for o in out]
    assert any(same) and any(flipped) and all(a or b for a, b in zip(same, flipped))


# ----------------------------------------------------------------------------- training
def test_training_is_deterministic_and_keeps_the_best_epoch(tmp_path):
    ds = samples.Dataset(build_dataset(tmp_path / "d"), "stance")
    tr, va, _ = evaluation.split(ds, 0.25, seed=0)
    frame, args = registry.by_name("frame"), train.run_of(train.parse_args(["--epochs", "6", "--seed", "3"])).settings
    fit = lambda settings: frame.fit(frame.data(ds, tr), frame.data(ds, va), settings)
    m1, hist, best, _ = fit(args)
    m2 = fit(args)[0]
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    # the returned weights are the best epoch's, not the last epoch's
    _, acc, _ = training.evaluate(m1, torch.from_numpy(ds.X[va]), torch.from_numpy(ds.y[va]))
    assert math.isclose(acc, hist[best - 1]["val_acc"], abs_tol=1e-6)
    assert hist[best - 1]["val_acc"] == max(h["val_acc"] for h in hist)
    # among the epochs tied on validation accuracy, the one most accurate with 2 points removed
    tied = [h for h in hist if h["val_acc"] == hist[best - 1]["val_acc"]]
    assert hist[best - 1]["val_acc_2_removed"] == max(h["val_acc_2_removed"] for h in tied)
    other = fit(TrainingConfig(epochs=6, seed=4))[0]
    assert not all(torch.equal(s1[k], other.state_dict()[k]) for k in s1)


@pytest.mark.parametrize("n", [1, 31, 32, 33, 65])
def test_batches_cover_every_sample_once_and_never_leave_one_alone(n):
    batches = training.make_batches(n, 32, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(n))
    assert n == 1 or min(len(b) for b in batches) >= 2


def test_split_keeps_clips_whole_and_is_stratified(tmp_path):
    ds = samples.Dataset(build_dataset(tmp_path / "d", clips_per_class=10), "stance")
    tr, va, grouping = evaluation.split(ds, 0.2, seed=0)
    assert grouping.name == "clip" and grouping.warning is None and not set(ds.groups[tr]) & set(ds.groups[va])
    assert set(ds.y[va]) == {0, 1} and len(va) / len(ds.y) == pytest.approx(0.2, abs=0.05)
    ds2 = samples.Dataset(build_dataset(tmp_path / "e", with_clips=False), "stance")
    tr, va, grouping = evaluation.split(ds2, 0.25, seed=0)
    assert grouping.name == "none" and grouping.warning is None
    assert not ds2.has_clips and len(va) == 12 and (ds2.y[va] == 1).sum() == 6


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One end-to-end run on a small two-category dataset, shared by the export tests."""
    root = tmp_path_factory.mktemp("run")
    data = build_dataset(root / "data", categories=("stance", "execution"))
    models, report = root / "models", root / "report.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_main(*small_args(data, models, "--json", report))
    return {"code": code, "out": out.getvalue(), "models": models, "data": data,
            "report": json.loads(report.read_text())}


def test_end_to_end_output_files_and_json(trained):
    assert trained["code"] == 0
    out = trained["out"]
    for text in ["=== MediaPipe Pose Classification Training ===", "Dataset Statistics:", "Stance:",
                 "  - Correct samples: 24", "  - Incorrect samples: 24", "  - Total samples: 48",
                 "Training STANCE Classification Model", "=" * 60, "Epoch [1/3]:",
                 "Train Loss: ", "Train Acc: ", "Val Acc: ", "Kept epoch: ", "picked by validation accuracy averaged",
                 "precision", "Confusion matrix", "Files written:", "stance.onnx",
                 "Per recording (validation): ", "Per-recording confusion matrix", "operator nodes",
                 "Batches of 32 (--batch-size auto), 2 per epoch, 3 epochs"]:
        assert text in out, text
    assert sorted(os.listdir(trained["models"])) == ["execution.json", "execution.onnx", "execution.pt",
                                                     "execution_report.html", "stance.json", "stance.onnx",
                                                     "stance.pt", "stance_report.html"]
    for category in ("stance", "execution"):
        r = trained["report"][category]
        assert set(r) == {"n_train", "n_val", "val_accuracy", "best_epoch", "train_seconds", "onnx_nodes",
                          "val_accuracy_points_removed", "val_clip_accuracy", "n_val_clips", "warning",
                          "grouping", "n_subjects", "val_accuracy_per_epoch", "motion", "motion_skipped",
                          "advised_verdict", "advice", "batch_size", "report", "suspect_labels"}
        assert r["motion"] is None and r["advised_verdict"] == "frames"     # 3-frame clips: too short to follow
        assert f"No motion model for {category}: {r['motion_skipped']}." in out
        assert len(r["val_accuracy_per_epoch"]) == 3 and r["val_accuracy_per_epoch"][r["best_epoch"] - 1] == pytest.approx(r["val_accuracy"], abs=1e-5)
        assert r["warning"] is None and 0 <= r["val_clip_accuracy"] <= 1
        assert r["onnx_nodes"] == store.onnx_nodes(str(trained["models"] / f"{category}.onnx")) <= 60
        assert r["n_val_clips"] == r["n_val"] // 3       # 3 frames per clip, clips kept whole
        assert set(r["val_accuracy_points_removed"]) == {"1", "2", "3", "4"}
        assert r["n_train"] + r["n_val"] == 48 and 0 <= r["val_accuracy"] <= 1 and 1 <= r["best_epoch"] <= 3


def test_pt_file_is_a_state_dict_loading_with_defaults(trained):
    state = torch.load(trained["models"] / "stance.pt")
    model = train.PoseClassifier(input_size=28, num_classes=2)
    model.load_state_dict(state)


def test_the_model_configuration_travels_with_the_model(tmp_path, monkeypatch):
    # a width and depth other than the defaults, set as the README's variant recipe does
    data, models = build_dataset(tmp_path / "d"), tmp_path / "m"
    real = train.PoseClassifier
    monkeypatch.setattr(registry.by_name("frame"), "net", FrameNetConfig(width=64, blocks=2))
    with contextlib.redirect_stdout(io.StringIO()):
        assert run_main(*small_args(data, models)) == 0
    config = json.loads((models / "stance.json").read_text())["model"]
    assert config == {"class": "PoseClassifier", "config": {"input_size": 28, "num_classes": 2, "width": 64,
                                                           "expansion": 2, "blocks": 2, "head": 128, "dropout": 0.2}}
    meta = {p.key: p.value for p in onnx.load(str(models / "stance.onnx")).metadata_props}
    assert json.loads(meta["model_config"]) == config["config"]
    with pytest.raises(RuntimeError):                      # the defaults cannot hold these weights
        real().load_state_dict(torch.load(models / "stance.pt"))
    model = train.load_model(str(models / "stance.pt"))     # the loader needs no width or depth
    assert not model.training and len(model.blocks) == 2 and model.stem[0].out_features == 64
    x = samples.Dataset(data, "stance").X
    session = ort.InferenceSession(str(models / "stance.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(training.probabilities(model, x), session.run(None, {"input": x})[0], atol=1e-5)


def test_the_readme_loader_snippet_runs_verbatim(trained):
    text = open(os.path.join(ROOT, "README.md")).read()
    start = text.index("```python\nimport train\nmodel = train.load_model(")
    code = text[start + len("```python\n"):text.index("```", start + 3)] + "print(type(model).__name__, model.training)\n"
    run = subprocess.run([sys.executable, "-c", code], cwd=trained["models"].parent, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0, run.stderr
    assert run.stdout == "PoseClassifier False\n"


def test_the_loader_names_a_missing_or_foreign_record(tmp_path):
    torch.save(train.PoseClassifier().state_dict(), tmp_path / "old.pt")
    with pytest.raises(samples.DataError, match=r"old\.json: cannot read the training record of .*old\.pt"):
        train.load_model(str(tmp_path / "old.pt"))
    (tmp_path / "old.json").write_text('{"category": "old"}')
    with pytest.raises(samples.DataError, match="no model configuration|not a training record with a model"):
        train.load_model(str(tmp_path / "old.pt"))
    (tmp_path / "old.json").write_text(json.dumps({"model": {"config": {"width": 32}}}))
    with pytest.raises(samples.DataError, match=r"old\.pt: does not hold the weights of the PoseClassifier its record"):
        train.load_model(str(tmp_path / "old.pt"))


def test_onnx_model_interface_metadata_and_parity(trained):
    path = str(trained["models"] / "stance.onnx")
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["category"] == "stance" and json.loads(meta["class_names"]) == ["incorrect", "correct"]
    assert json.loads(meta["keypoint_layout"]) == samples.KEYPOINT_NAMES
    assert "hip midpoint" in meta["normalization"]
    # the training record lies beside the model, and the model names it with its digest
    assert "val_samples" not in meta and meta["training_record"] == "stance.json"
    record_bytes = (trained["models"] / "stance.json").read_bytes()
    assert hashlib.sha1(record_bytes).hexdigest() == meta["training_record_sha1"]
    record = json.loads(record_bytes)
    assert record["settings"]["seed"] == 0 and record["settings"]["lr"] == 5e-3
    val_files = record["val_samples"]
    assert len(val_files) == len(record["val_sample_sha1"]) == trained["report"]["stance"]["n_val"]
    assert record["val_accuracy"] == pytest.approx(trained["report"]["stance"]["val_accuracy"], abs=1e-6)

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    ds = samples.Dataset(trained["data"], "stance")
    x = ds.X[[ds.files.index(f) for f in val_files]]
    model = train.PoseClassifier()
    model.load_state_dict(torch.load(trained["models"] / "stance.pt"))
    model.eval()
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    got = session.run(None, {"input": x})[0]
    assert got.shape == (len(x), 2)
    np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)        # probabilities, not logits
    assert np.abs(got - expected).max() <= 1e-5
    assert session.run(None, {"input": x[:1]})[0].shape == (1, 2)     # dynamic batch


@pytest.mark.parametrize("title", ["### PyTorch Models", "### ONNX Models"])
def test_the_original_readme_snippets_run_verbatim(trained, tmp_path, title):
    code = readme_snippet(title)
    assert code.count("[...]") == 1            # the placeholder for the user's keypoints
    ds = samples.Dataset(trained["data"], "stance")
    code = code.replace("[...]", json.dumps(ds.X[0].tolist()))
    shutil.copytree(trained["models"], tmp_path / "models")
    if "ONNX" in title:     # the ONNX snippet loads the INT8 model: python train.py, then python quantize.py
        import quantize
        with contextlib.redirect_stdout(io.StringIO()):
            assert quantize.main(["--models-dir", str(tmp_path / "models"), "--data-dir", trained["data"],
                                  "--categories", "stance", "--runs", "10", "--batch-size", "16"]) == 0
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0, run.stderr
    assert "Prediction: " in run.stdout and "Confidence: " in run.stdout
    confidence = float(run.stdout.split("Confidence: ")[1])
    assert 0.5 <= confidence <= 1.0


def test_importing_train_trains_prints_and_writes_nothing(tmp_path):
    before = sorted(os.listdir(os.path.join(ROOT, "models")))
    run = subprocess.run([sys.executable, "-c", "import train; train.PoseClassifier; train.KeypointNormalizer"],
                         cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert run.returncode == 0 and run.stdout == "" and run.stderr == ""
    assert os.listdir(tmp_path) == [] and sorted(os.listdir(os.path.join(ROOT, "models"))) == before


def test_help_states_every_default():
    run = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--help"], capture_output=True, text=True)
    assert run.returncode == 0
    for flag in ["--data-dir", "--models-dir", "--categories", "--epochs", "--lr", "--batch-size", "--val-split",
                 "--seed", "--device", "--strict", "--json", "--cv", "--augment", "--motion"]:
        assert flag in run.stdout
    assert run.stdout.count("default") >= 12


def test_readme_flag_table_states_the_real_defaults():
    assert assert_readme_defaults_match("train.py", train.parse_args([])) == 20


# ----------------------------------------------------------------------------- cross-validation
def test_cv_folds_keep_clips_whole_and_validate_every_sample_once(tmp_path):
    ds = samples.Dataset(build_dataset(tmp_path / "d", clips_per_class=10), "stance")
    folds, grouping = evaluation.cv_folds(ds, 5, seed=0)
    assert grouping.warning is None
    seen = np.concatenate([test for _, test in folds])
    assert sorted(seen) == list(range(len(ds.y)))
    for tr, te in folds:
        assert not set(ds.groups[tr]) & set(ds.groups[te])
        assert set(ds.y[te]) == {0, 1}


def test_cv_prints_one_table_with_peers_and_writes_json(tmp_path, capsys, dataset):
    report = tmp_path / "cv.json"
    assert run_main("--data-dir", dataset, "--cv", "3", "--epochs", "3", "--json", report) == 0
    out = capsys.readouterr().out
    assert "Cross-validation: STANCE (3 folds, clips kept whole" in out
    for name in ["PoseClassifier", "LogisticRegression", "SVC (RBF)", "KNeighbors", "HistGradientBoosting"]:
        assert name in out
    assert out.count("* ") >= 1
    data = json.loads(report.read_text())["stance"]
    for name, r in data.items():
        assert len(r["folds"]) == 3 and r["mean"] == pytest.approx(np.mean(r["folds"]), abs=1e-6)
        assert 0 <= r["std"] and 0 <= r["mean"] <= 1
    assert data["PoseClassifier"]["mean"] >= 0.9        # the toy poses are easy to tell apart
    assert not os.path.exists(os.path.join(dataset, "..", "models"))


def test_the_svc_peer_is_fitted_on_a_stratified_subsample_above_its_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluation, "SVC_MAX_TRAIN", 20)
    data = build_dataset(tmp_path / "d")
    assert run_main("--data-dir", data, "--cv", "3", "--epochs", "1", "--json", tmp_path / "cv.json") == 0
    assert "SVC (RBF): fitted on a stratified subsample of 20 training frames per fold" in capsys.readouterr().out
    results = json.loads((tmp_path / "cv.json").read_text())["stance"]
    assert results["SVC (RBF)"]["fitted_on_subsample"] == 20
    assert all(r["fitted_on_subsample"] is None for name, r in results.items() if name != "SVC (RBF)")
    ds = samples.Dataset(data, "stance")
    fitted = evaluation.Subsampled(DummyClassifier(), 20, 0).fit(ds.X, ds.y)
    assert fitted.n_fit_rows_ == 20 and fitted.predict(ds.X[:3]).shape == (3,)
    assert list(fitted.estimator_.class_prior_) == [0.5, 0.5]     # stratified: 24 of each class in 48 -> 10 and 10


def test_loading_shows_a_progress_bar_per_class_folder(tmp_path, monkeypatch):
    seen = []
    real = samples.progress
    monkeypatch.setattr(samples, "progress", lambda it, **kw: seen.append(kw.get("desc")) or real(it, **kw))
    samples.Dataset(build_dataset(tmp_path / "d"), "stance")
    assert seen == ["Loading incorrect stance", "Loading correct stance"]      # label 0, then 1


def test_batch_size_auto_grows_the_batch_with_the_data():
    auto = TrainingConfig()
    steps, smallest, largest = auto.max_steps_per_epoch, auto.min_auto_batch, auto.max_auto_batch
    assert auto.batch_for(300) == smallest                              # small data: as before
    assert auto.batch_for(smallest * steps) == smallest
    assert auto.batch_for(3 * smallest * steps) == 3 * smallest        # more: an epoch stays `steps` batches
    assert auto.batch_for(3 * smallest * steps + 1) == 3 * smallest + 1
    assert auto.batch_for(100 * largest * steps) == largest            # most: capped
    assert train.parse_args(["--batch-size", "auto"]).batch_size is None
    assert train.parse_args(["--batch-size", "64"]).batch_size == 64
    with pytest.raises(SystemExit):
        train.parse_args(["--batch-size", "big"])
