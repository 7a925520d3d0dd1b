"""Recording files beside per-frame files: the same rows, the same figures, lossless conversion."""
import json
import os

import numpy as np

from conftest import ROOT, run_train
from MediaPipe_Dataset import convert, samples, synthesize

BUNDLED = os.path.join(ROOT, "MediaPipe_Dataset")


def every_file(root):
    """{relative path: parsed JSON} of every .json file under root."""
    found = {}
    for path, _, files in os.walk(root):
        for name in files:
            if name.endswith(".json"):
                with open(os.path.join(path, name)) as f:
                    found[os.path.relpath(os.path.join(path, name), root)] = json.load(f)
    return found


def same_rows(a, b):
    assert np.array_equal(a.X, b.X, equal_nan=True)
    assert (a.y == b.y).all() and list(a.groups) == list(b.groups)
    assert np.array_equal(a.timestamps, b.timestamps, equal_nan=True)
    assert a.subjects == b.subjects and a.faults == b.faults and a.recording_warnings == b.recording_warnings


def test_the_bundled_dataset_round_trips_through_recording_files(tmp_path):
    recordings, back = tmp_path / "recordings", tmp_path / "back"
    convert.convert(BUNDLED, str(recordings), "recordings")
    convert.convert(str(recordings), str(back), "frames")
    original = {k: v for k, v in every_file(BUNDLED).items() if k.split(os.sep)[0] in ("stance", "execution")}
    assert every_file(back) == original                        # every file, number and field
    assert len(every_file(recordings)) < len(original) / 2     # one file per clip
    for category in ("stance", "execution"):
        same_rows(samples.Dataset(BUNDLED, category), samples.Dataset(str(recordings), category))


def write_recording(path, frames, **shared):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump({**shared, "frames": frames}, f)


def test_a_bad_frame_is_skipped_with_its_file_and_index(tmp_path):
    good = samples.Dataset(BUNDLED, "stance").X[0].tolist()
    folder = samples.class_dir(str(tmp_path), "stance", 1)
    frames = [{"keypoints": good, "timestamp": 0.0}, {"keypoints": good[:20], "timestamp": 0.2},
              {"keypoints": ["x"] + good[1:], "timestamp": 0.4}, {"keypoints": good, "timestamp": "soon"},
              {"keypoints": good, "timestamp": 0.8, "fault": "lean"}]
    write_recording(os.path.join(folder, "rec.json"), frames, subject="p1")
    write_recording(os.path.join(samples.class_dir(str(tmp_path), "stance", 0), "bad.json"),
                    [{"keypoints": good}], subject=[1])
    ds = samples.Dataset(str(tmp_path), "stance")
    path = os.path.join(folder, "rec.json")
    reasons = dict(ds.invalid)
    assert reasons[f"{path}, frame 1"].startswith("wrong count: 20 numbers")
    assert reasons[f"{path}, frame 2"].startswith("non-numeric value 'x' at position 0")
    assert "not a number of seconds" in reasons[f"{path}, frame 3"]
    assert "on a correct sample" in reasons[f"{path}, frame 4"]
    assert "is not a person's id" in reasons[os.path.join(samples.class_dir(str(tmp_path), "stance", 0), "bad.json")]
    assert ds.files == ["correct stance/rec.json#0"] and ds.subjects == ["p1"]
    assert list(ds.groups) == ["rec"]                # a recording without a clip is named by its file


def test_the_fast_check_agrees_with_the_per_frame_rules(tmp_path):
    """Frames the numpy pass keeps are exactly what sample_from makes of them, with nulls,
    low visibility and a degenerate or torso-less pose among them."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(60):
        kp = rng.uniform(0.2, 0.8, 28).round(6).tolist()
        if i % 5 == 1:
            kp[4:8] = [None] * 4
        if i % 7 == 2:
            kp = [0.5] * 28
        if i % 11 == 3:
            for j in (2, 5, 8, 11):
                kp[2 * j:2 * j + 2] = [None, None]
        frame = {"keypoints": kp, "timestamp": i / 10}
        if i % 3 == 0:
            frame["visibility"] = rng.uniform(0, 1, 14).round(3).tolist()
        frames.append(frame)
    write_recording(os.path.join(samples.class_dir(str(tmp_path), "s", 1), "r.json"), frames, clip="r")
    os.makedirs(samples.class_dir(str(tmp_path), "s", 0))
    ds = samples.Dataset(str(tmp_path), "s")
    expected, rejected = [], 0
    for frame in frames:
        try:
            expected.append(samples.sample_from({"clip": "r", **frame}, 1)[0])
        except ValueError:
            rejected += 1
    assert rejected and len(ds.invalid) == rejected
    assert np.array_equal(ds.X, np.array(expected, np.float32), equal_nan=True)


def figures(path):
    """--json without what names files or times a run."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if not (k.endswith("seconds") or k in ("report", "suspect_labels"))}
        return [strip(v) for v in value] if isinstance(value, list) else value
    with open(path) as f:
        return strip(json.load(f))


def test_both_layouts_give_identical_figures(tmp_path):
    frames_dir = tmp_path / "frames"
    synthesize.write(synthesize.synthesize("stance", 0, 160, (8, 12)), str(frames_dir))
    convert.convert(str(frames_dir), str(tmp_path / "recordings"), "recordings")
    results = []
    for layout in ("frames", "recordings"):
        code, _, err = run_train("--data-dir", tmp_path / layout, "--models-dir", tmp_path / f"m_{layout}",
                                 "--epochs", 4, "--json", tmp_path / f"{layout}.json")
        assert code == 0, err
        results.append(figures(tmp_path / f"{layout}.json"))
    assert results[0]["stance"]["motion"] is not None          # both models were trained
    assert results[0] == results[1]


def test_a_sample_with_a_frames_field_of_its_own_stays_a_sample(tmp_path):
    good = samples.Dataset(BUNDLED, "stance").X[0].tolist()
    folder = samples.class_dir(str(tmp_path), "stance", 1)
    os.makedirs(folder)
    os.makedirs(samples.class_dir(str(tmp_path), "stance", 0))
    with open(os.path.join(folder, "one.json"), "w") as f:
        json.dump({"keypoints": good, "frames": 30}, f)
    write_recording(os.path.join(folder, "rec.json"), {"keypoints": good})
    ds = samples.Dataset(str(tmp_path), "stance")
    assert ds.files == ["correct stance/one.json"]
    assert dict(ds.invalid) == {os.path.join(folder, "rec.json"): "`frames` is not a list of frames"}


def test_cv_folds_in_worker_processes_give_the_figures_of_one_process(tmp_path, monkeypatch):
    from MediaPipe_Dataset import crossval
    synthesize.write(synthesize.synthesize("stance", 0, 160, (8, 12)), str(tmp_path / "data"))
    results = []
    for least in (10 ** 9, 0):            # every dataset in this process, then every one in workers
        monkeypatch.setattr(crossval, "PARALLEL_MIN_SAMPLES", least)
        out = tmp_path / f"cv_{least}.json"
        code, _, err = run_train("--data-dir", tmp_path / "data", "--models-dir", tmp_path / "m", "--epochs", 2,
                                 "--cv", 2, "--json", out)
        assert code == 0, err
        results.append(figures(out))
    assert crossval.fold_jobs(2, 10 ** 6) == min(2, len(os.sched_getaffinity(0)))
    plans = [crossval.CvPlan(None, None, crossval.CvResult(None, None, [0, 1]), table, models=models)
             for table, models in (("frame", {"a": 1, "b": 2}), ("faults", {"c": 3, "d": 4}))]
    assert crossval.cv_tasks(plans, True) == [(0, 0, {"a": 1}), (0, 1, {"a": 1}), (1, 0, {"c": 3}), (1, 1, {"c": 3}),
                                              (0, 0, {"b": 2}), (0, 1, {"b": 2}), (1, 0, {"d": 4}), (1, 1, {"d": 4})]
    assert crossval.cv_tasks(plans, False) == [(0, 0, plans[0].models), (0, 1, plans[0].models),
                                               (1, 0, plans[1].models), (1, 1, plans[1].models)]
    assert results[0] == results[1] and results[0]["stance"]["MotionClassifier"]["n_clips"] > 0


def test_judging_in_passes_gives_the_outputs_of_one_pass(tmp_path, monkeypatch):
    """PyTorch and ONNX Runtime judge a large input in passes of INFERENCE_ROWS (one pass
    over a million frames' parity inputs held 5.5 GB); the outputs are those of one pass."""
    import onnxruntime as ort
    import torch
    from MediaPipe_Dataset import store, training
    from MediaPipe_Dataset.model import PoseClassifier
    torch.manual_seed(0)
    model = PoseClassifier().eval()
    x = np.random.default_rng(0).normal(size=(50, 28)).astype(np.float32)
    x[3, 4:8] = np.nan
    path = str(tmp_path / "m.onnx")
    store.export_onnx(model, path, {}, (28,))
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    whole = store.onnx_probabilities(session, x)
    torch_whole = training.probabilities(model, x)
    monkeypatch.setattr(training, "INFERENCE_ROWS", 7)
    np.testing.assert_allclose(store.onnx_probabilities(session, x), whole, atol=1e-6)
    np.testing.assert_allclose(training.probabilities(model, x), torch_whole, atol=1e-6)
    assert store.onnx_probabilities(session, x[:0]).shape[0] == 0
    assert store.onnx_parity(model, path, x) < 1e-5
