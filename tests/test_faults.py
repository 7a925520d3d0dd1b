"""Which fault (issue 28): the `fault` field read into a FaultView, a fault model for every
kind trained on the same split and written beside the binary models, its verdicts, the
which-fault table of --cv, and categories without faults left exactly as they were."""
import glob
import json
import os

import numpy as np
import onnx
import pytest

from conftest import build_dataset, run_quantize, run_train
from MediaPipe_Dataset import faults, registry, samples, store
from MediaPipe_Dataset.movements import write_movements


def add_faults(data, category="stance", names=("hands low", "one hand low")):
    """Name a fault on every incorrect sample, the fault alternating by recording; the second
    fault's recordings get their right hand raised, so that the two can be told apart."""
    clips = sorted({json.load(open(p))["clip"] for p in glob.glob(os.path.join(data, category, "incorrect *", "*.json"))})
    for path in glob.glob(os.path.join(data, category, "incorrect *", "*.json")):
        sample = json.load(open(path))
        fault = names[clips.index(sample["clip"]) % len(names)]
        if fault == names[-1] and len(names) > 1:
            sample["keypoints"][7] -= 0.25                    # the right wrist up
        sample["fault"] = fault
        json.dump(sample, open(path, "w"))
    return data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    data = add_faults(build_dataset(root / "d", clips_per_class=8, frames=3))
    code, out, err = run_train("--data-dir", data, "--models-dir", root / "m", "--epochs", "15", "--json",
                               root / "r.json")
    return {"code": code, "out": out, "err": err, "models": root / "m", "data": data,
            "report": json.loads((root / "r.json").read_text())["stance"]}


def test_a_fault_view_holds_the_incorrect_samples_that_name_a_fault():
    ds = type("Dataset", (), {})()
    ds.y, ds.faults = np.array([0, 0, 1, 0]), [("b", "a"), (), (), ("a",)]
    ds.X, ds.groups, ds.timestamps = np.zeros((4, 28)), np.array(["r0", "r1", "r2", "r3"]), np.zeros(4)
    ds.files, ds.subjects, ds.category, ds.root, ds.has_clips = list("wxyz"), [None] * 4, "c", "c", True
    view = faults.FaultView(ds, ["a", "b"])
    assert view.rows.tolist() == [0, 3] and view.y.tolist() == [1, 0] and view.files == ["w", "z"]
    assert view.allowed.tolist() == [[True, True], [True, False]] and view.index([3, 2]).tolist() == [1]


def test_a_recording_is_credited_with_every_fault_its_frames_name():
    ds = type("Dataset", (), {})()
    ds.y, ds.faults = np.zeros(5, dtype=int), [("a",), ("b",), ("a",), ("c", "a"), ("b",)]
    ds.X, ds.groups, ds.timestamps = np.zeros((5, 28)), np.array(["r1", "r0", "r1", "r2", "r1"]), np.zeros(5)
    ds.files, ds.subjects, ds.category, ds.root, ds.has_clips = list("vwxyz"), [None] * 5, "c", "c", True
    view = faults.FaultView(ds, ["a", "b", "c"])
    allowed = view.recording_allowed(["r2", "r1", "unknown", "r0", "r1"])
    assert allowed.tolist() == [[True, False, True], [True, True, False], [False, False, False],
                                [False, True, False], [True, True, False]]
    assert view.recording_allowed([]).shape == (0, 3)


def test_a_category_needs_two_faults_each_in_two_recordings(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=3)
    assert faults.problem(samples.Dataset(data, "stance")) == ""           # no fault: nothing to say
    add_faults(data, names=("lean",))
    assert "needs 2 faults each named in 2 recordings and has lean in 3" in faults.problem(samples.Dataset(data, "stance"))


def test_the_fault_models_are_written_beside_the_binary_ones_and_name_the_fault(trained):
    assert trained["code"] == 0 and "Traceback" not in trained["err"]
    names = sorted(os.listdir(trained["models"]))
    assert names == ["stance.json", "stance.onnx", "stance.pt", "stance_fault.json", "stance_fault.onnx",
                     "stance_fault.pt", "stance_report.html"]
    r = trained["report"]
    assert r["fault_names"] == ["hands low", "one hand low"] and r["val_fault_accuracy"] >= 0.9
    assert r["val_fault_clip_accuracy"] == 1 and len(r["fault_verdicts"]) == r["n_val_fault_clips"] >= 2
    for verdict in r["fault_verdicts"].values():
        assert verdict.startswith("incorrect: ") and verdict.split(": ")[1].rsplit(" (", 1)[0] in r["fault_names"]
    assert "Which fault (validation): " in trained["out"] and "Confusion matrix by fault" in trained["out"]
    assert "  frame incorrect stance/" in trained["out"] and "  recording stance-incorrect-" in trained["out"]
    assert ": incorrect: hands low (" in trained["out"] or ": incorrect: one hand low (" in trained["out"]


def test_the_fault_onnx_file_has_one_output_per_fault_in_the_metadata_order(trained):
    proto = onnx.load(str(trained["models"] / "stance_fault.onnx"))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["class_names"]) == ["hands low", "one hand low"] and meta["kind"] == "frame_fault"
    assert proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value == 2
    model = store.load_model(str(trained["models"] / "stance_fault.pt"))
    assert type(model).__name__ == "PoseClassifier" and model.config["num_classes"] == 2


def test_the_binary_model_is_the_same_with_or_without_faults(trained, tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=8, frames=3)
    add_faults(data)
    for path in glob.glob(os.path.join(data, "stance", "*", "*.json")):      # the same poses, no fault named
        sample = json.load(open(path))
        sample.pop("fault", None)
        json.dump(sample, open(path, "w"))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "15", "--json",
                               tmp_path / "r.json")
    plain = json.loads((tmp_path / "r.json").read_text())["stance"]
    assert code == 0 and not [k for k in plain if "fault" in k]
    for key in ("val_accuracy", "val_clip_accuracy", "val_accuracy_per_epoch", "best_epoch"):
        assert plain[key] == trained["report"][key], key


def test_one_fault_only_says_why_there_is_no_fault_model(tmp_path):
    data = add_faults(build_dataset(tmp_path / "d", clips_per_class=4), names=("lean",))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2", "--json",
                               tmp_path / "r.json")
    r = json.loads((tmp_path / "r.json").read_text())["stance"]
    assert code == 0 and "No fault model for stance: it needs 2 faults" in out and "lean in 4" in r["faults_skipped"]
    assert not glob.glob(str(tmp_path / "m" / "*_fault*"))


def test_the_motion_model_gets_a_fault_model_too(tmp_path):
    data = write_movements(str(tmp_path / "d"), recordings=6, seconds=2, fps=10)
    add_faults(data, category="curl", names=("rushed", "jerky"))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "3", "--no-report",
                               "--json", tmp_path / "r.json")
    r = json.loads((tmp_path / "r.json").read_text())["curl"]
    assert code == 0 and (tmp_path / "m" / "curl_motion_fault.onnx").is_file()
    assert r["motion"]["fault_names"] == ["jerky", "rushed"] and 0 <= r["motion"]["val_fault_clip_accuracy"] <= 1
    kind = registry.of_record(json.loads((tmp_path / "m" / "curl_motion_fault.json").read_text()))
    assert kind.name == "motion_fault" and kind.classes == ["jerky", "rushed"] and kind.window.frames == 16


def test_cv_gives_the_which_fault_table_for_our_models_and_the_peers(tmp_path, monkeypatch):
    """...without the points-removed figures the table does not show (46 s of each fold's
    136 at 100,000 frames)."""
    from MediaPipe_Dataset import kinds
    measured, robustness = [], kinds.FrameKind.robustness
    monkeypatch.setattr(kinds.FrameKind, "robustness",
                        lambda self, *a: measured.append(self.name) or robustness(self, *a))
    data = add_faults(build_dataset(tmp_path / "d", clips_per_class=8, frames=3))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "10", "--cv", "2",
                               "--report", "--json", tmp_path / "r.json")
    assert "stance: which fault</h2>" in (tmp_path / "m" / "cv_report.html").read_text()
    table = json.loads((tmp_path / "r.json").read_text())["stance"]["faults"]
    assert code == 0 and "Which fault, stance: 2 faults (hands low, one hand low)" in out
    assert {"PoseClassifier", "LogisticRegression", "HistGradientBoosting"} <= set(table)
    ours = table["PoseClassifier"]
    assert {"mean", "clip_mean", "macro_f1"} <= set(ours) and ours["clip_mean"] >= 0.75 and ours["n_clips"] == 8
    assert set(measured) == {"frame"} and len(measured) == 2 * 5      # 2 folds of the 5 frame-table models


def test_quantize_makes_the_int8_fault_model_and_measures_its_verdicts(trained, tmp_path):
    import shutil
    shutil.copytree(trained["models"], tmp_path / "m")
    code, out, err = run_quantize("--models-dir", tmp_path / "m", "--json", tmp_path / "q.json")
    f = json.loads((tmp_path / "q.json").read_text())["stance_fault"]
    assert code == 0 and (tmp_path / "m" / "stance_fault_int8.onnx").is_file() and "Traceback" not in err
    assert f["kind"] == "frame_fault" and f["n_val_clips"] >= 2 and f["fp32"]["accuracy_val"] is not None
    assert "INT8 fault verdicts agree with FP32 on at least 99% of validation recordings" in out
    assert "Which verdict to trust" not in out.split("STANCE_FAULT")[1]


def test_a_category_ending_in_fault_is_refused(tmp_path):
    data = build_dataset(tmp_path / "d", categories=("squat_fault", "stance"))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2")
    assert code == 1 and "may not end in _fault" in err and (tmp_path / "m" / "stance.onnx").is_file()


def test_the_readme_live_fault_snippet_runs_verbatim(trained, tmp_path):
    import shutil
    import subprocess
    import sys
    from conftest import ROOT, readme_snippet
    shutil.copytree(trained["models"], tmp_path / "models")
    ds = samples.Dataset(trained["data"], "stance")
    for clip in ("stance-incorrect-1", "stance-correct-0"):
        frames = ds.X[ds.groups == clip]
        code = readme_snippet("### A live verdict that names the fault")
        assert code.count("[...]") == 1
        code = code.replace("[...]", json.dumps(frames.tolist()))
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": ROOT})
        assert run.returncode == 0, run.stderr
        expected = "Now: incorrect: one hand low (" if "incorrect" in clip else "Now: correct ("
        assert run.stdout.startswith(expected), run.stdout


def test_the_report_shows_the_confusion_by_fault_and_names_the_fault_on_the_strips(trained, tmp_path):
    import contextlib
    import io
    from MediaPipe_Dataset import pictures, pipeline
    page = (trained["models"] / "stance_report.html").read_text()
    assert "Which fault: the frame fault model (validation)" in page and "get one of their faults" in page
    ds = samples.Dataset(trained["data"], "stance")
    run = pipeline.Run(trained["data"], str(tmp_path), pipeline.TrainingConfig(epochs=3), report=False)
    with contextlib.redirect_stdout(io.StringIO()):
        result = pipeline.train_category(ds, run)
    strips = pictures.recording_strips(result)
    named = [r for r in strips if r["fault"]]
    assert named and all(r["label"] == 0 and r["fault"].startswith("incorrect: ") for r in named)
    assert all(r["fault"] is None for r in strips if r["label"] == 1)


def test_a_peer_fitted_without_a_fault_keeps_every_fault_in_its_column():
    from sklearn.linear_model import LogisticRegression
    from MediaPipe_Dataset.kinds import every_class
    X, y = np.array([[0.0], [1.0], [0.1], [0.9]]), np.array([0, 2, 0, 2])     # fault 1 not in this fold
    fitted = LogisticRegression().fit(X, y)
    full = every_class(fitted.predict_proba(X), fitted, 3)
    assert full.shape == (4, 3) and (full[:, 1] == 0).all() and full.argmax(1).tolist() == [0, 2, 0, 2]


def test_json_may_not_be_a_fault_model_file(tmp_path):
    data = add_faults(build_dataset(tmp_path / "d", clips_per_class=4))
    code, out, err = run_train("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2",
                               "--json", tmp_path / "m" / "stance_fault.json")
    assert code == 1 and "is a file this run writes itself" in err
