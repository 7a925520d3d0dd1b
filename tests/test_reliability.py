"""Nothing silently wrong (issue 21): each defect of the second adversarial run, with a test
that failed before its fix."""
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, build_dataset, make_pose, write_sample
from MediaPipe_Dataset import evaluation, outputs, samples
from conftest import run_quantize as quantize_run, run_train as run
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
        train_rows, val_rows, grouping = evaluation.split(ds, 0.2, seed)
        assert grouping.warning is None and evaluation.both_sides(ds.y, [(train_rows, val_rows)]), seed
        assert not set(ds.groups[train_rows]) & set(ds.groups[val_rows])
        for k in (2, 5):
            folds, grouping = evaluation.cv_folds(ds, k, seed)
            assert evaluation.both_sides(ds.y, folds) and len(folds) == k, (k, seed)
            assert sorted(np.concatenate([test for _, test in folds])) == list(range(len(ds.y)))
            whole = all(not set(ds.groups[a]) & set(ds.groups[b]) for a, b in folds)
            assert whole == (clips >= k) and (grouping.warning is None) == (clips >= k), (k, seed)


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


# ----------------------------------------------------------------------------- 3: a stale INT8 model
def readme_block(heading):
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    start = text.index("```python\n", text.index(heading)) + len("```python\n")
    return text[start:text.index("```", start)]


def test_retraining_removes_the_int8_model_of_the_previous_model(tmp_path):
    data, models = build_dataset(tmp_path / "d"), tmp_path / "models"
    assert run("--data-dir", data, "--models-dir", models, "--epochs", "2")[0] == 0
    assert quantize_run("--models-dir", models, "--data-dir", data)[0] == 0
    snippet = readme_block("### Is the INT8 file the one of this model?")
    check = lambda: subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True)
    assert check().stdout == "models/stance_int8.onnx is the INT8 model of models/stance.onnx\n"
    old_int8 = (models / "stance_int8.onnx").read_bytes()
    code, out, _ = run("--data-dir", data, "--models-dir", models, "--epochs", "2", "--seed", "1")
    assert code == 0 and f"Removed {models / 'stance_int8.onnx'}: quantized from the previous model" in out
    assert not (models / "stance_int8.onnx").exists()
    (models / "stance_int8.onnx").write_bytes(old_int8)       # copied back by hand: the check catches it
    result = check()
    assert result.returncode == 1 and "was quantized from another model" in result.stderr


def test_an_int8_file_that_is_not_ours_is_left_alone_by_train(tmp_path):
    data, models = build_dataset(tmp_path / "d"), tmp_path / "models"
    models.mkdir()
    (models / "stance_int8.onnx").write_bytes(b"someone else's file")
    assert run("--data-dir", data, "--models-dir", models, "--epochs", "2")[0] == 0
    assert (models / "stance_int8.onnx").read_bytes() == b"someone else's file"


def test_quantize_refuses_a_model_that_changes_while_it_is_quantized(tmp_path, monkeypatch):
    import quantize
    data, models, other = build_dataset(tmp_path / "d"), tmp_path / "models", tmp_path / "other"
    assert run("--data-dir", data, "--models-dir", models, "--epochs", "2")[0] == 0
    assert run("--data-dir", data, "--models-dir", other, "--epochs", "2", "--seed", "3")[0] == 0
    real = quantize.compare

    def retrained_meanwhile(name, kind, record, fp32, *rest):
        figures = real(name, kind, record, fp32, *rest)
        shutil.copy(other / "stance.onnx", fp32)
        return figures
    monkeypatch.setattr(quantize, "compare", retrained_meanwhile)
    code, _, err = quantize_run("--models-dir", models, "--data-dir", data)
    assert code == 1 and "changed while it was quantized" in err and not (models / "stance_int8.onnx").exists()


# ----------------------------------------------------------------------------- 4: one run at a time
def test_a_second_run_waits_for_the_one_writing_the_models_folder(tmp_path):
    data, models = build_dataset(tmp_path / "d"), tmp_path / "models"
    models.mkdir()
    with outputs.folder_lock(str(models)):
        second = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py"), "--data-dir", data,
                                   "--models-dir", str(models), "--epochs", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        first_line = second.stderr.readline()
        assert "another train.py or quantize.py run is writing there; waiting" in first_line
        assert os.listdir(models) == []                           # nothing written while it waits
    assert second.wait(timeout=120) == 0
    assert sorted(os.listdir(models)) == ["stance.json", "stance.onnx", "stance.pt", "stance_report.html"]


def test_the_loader_refuses_weights_of_another_run(tmp_path):
    data = build_dataset(tmp_path / "d")
    for seed, folder in ((0, "a"), (1, "b")):
        assert run("--data-dir", data, "--models-dir", tmp_path / folder, "--epochs", "1", "--seed", seed)[0] == 0
    shutil.copy(tmp_path / "b" / "stance.pt", tmp_path / "a" / "stance.pt")
    with pytest.raises(samples.DataError, match=r"is not the model its training record .* describes"):
        train.load_model(str(tmp_path / "a" / "stance.pt"))


# ----------------------------------------------------------------------------- 5: only our temporary files
def test_a_finished_model_named_like_an_old_temporary_file_survives_other_runs(tmp_path):
    data, models = build_dataset(tmp_path / "d"), tmp_path / "models"
    models.mkdir()
    for name in (".squat.baseline.pt", ".squat.baseline.onnx"):   # the models of a category `.squat.baseline`
        (models / name).write_bytes(b"a finished model")
    assert run("--data-dir", data, "--models-dir", models, "--epochs", "1")[0] == 0
    assert (models / ".squat.baseline.pt").exists() and (models / ".squat.baseline.onnx").exists()


# ----------------------------------------------------------------------------- 6: --json
def test_json_to_stdout_and_through_descriptors_and_links(tmp_path):
    data = build_dataset(tmp_path / "d")
    for target in ("/dev/stdout", "/dev/fd/1"):
        result = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--data-dir", data, "--models-dir",
                                 str(tmp_path / "m"), "--epochs", "1", "--json", target],
                                capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout[result.stdout.rindex("\n{") + 1:])
        assert report["stance"]["n_train"] + report["stance"]["n_val"] == 48
    assert os.path.islink("/dev/stdout")
    (tmp_path / "reports").mkdir()
    os.symlink(tmp_path / "reports" / "r.json", tmp_path / "link.json")
    assert run("--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "1", "--json", tmp_path / "link.json")[0] == 0
    assert os.path.islink(tmp_path / "link.json")
    assert "stance" in json.loads((tmp_path / "reports" / "r.json").read_text())


@pytest.mark.parametrize("where", ["models/stance.json", "models/stance.onnx", "nowhere/r.json", "."])
def test_json_refused_before_training_when_it_cannot_be_written_or_is_a_model_file(tmp_path, where):
    data, models = build_dataset(tmp_path / "d"), tmp_path / "models"
    code, out, err = run("--data-dir", data, "--models-dir", models, "--epochs", "1", "--json", tmp_path / where)
    assert code == 1 and "Training STANCE" not in out and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not (models / "stance.pt").exists()


def test_quantize_refuses_a_json_path_it_reads_or_writes(tmp_path):
    data, models = build_dataset(tmp_path / "d"), tmp_path / "models"
    assert run("--data-dir", data, "--models-dir", models, "--epochs", "1")[0] == 0
    record = (models / "stance.json").read_bytes()
    code, _, err = quantize_run("--models-dir", models, "--json", models / "stance.json")
    assert code == 1 and "is a file this run writes itself" in err
    assert (models / "stance.json").read_bytes() == record and not (models / "stance_int8.onnx").exists()


# ----------------------------------------------------------------------------- rough edges
def test_relative_paths_are_from_the_working_directory_and_quantize_follows_the_record(tmp_path):
    build_dataset(tmp_path / "mine")
    before = sorted(os.listdir(os.path.join(ROOT, "models")))
    for script, extra in (("train.py", ["--data-dir", "mine", "--epochs", "1"]), ("quantize.py", ["--runs", "20"])):
        result = subprocess.run([sys.executable, os.path.join(ROOT, script), *extra, "--json", f"{script}.json"],
                                cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path / "models")) == ["stance.json", "stance.onnx", "stance.pt", "stance_int8.onnx",
                                                       "stance_report.html"]
    assert sorted(os.listdir(os.path.join(ROOT, "models"))) == before            # the repository's models untouched
    figures = json.loads((tmp_path / "quantize.py.json").read_text())["stance"]
    assert figures["n_val"] and figures["note"] is None        # measured on the folder the model was trained on


def test_samples_in_subfolders_of_a_class_folder_are_read(tmp_path):
    data = build_dataset(tmp_path / "d", clips_per_class=4)
    folder = samples.class_dir(data, "stance", 1)
    os.makedirs(os.path.join(folder, "session1"))
    for name in os.listdir(folder)[:3]:
        if name.endswith(".json"):
            shutil.move(os.path.join(folder, name), os.path.join(folder, "session1", name))
    ds = samples.Dataset(data, "stance")
    assert ds.count(1) == 12 and sum(f.startswith(os.path.join("correct stance", "session1")) for f in ds.files) >= 1


def test_each_category_trains_once_and_quantize_names_a_missing_one(tmp_path):
    data, models = build_dataset(tmp_path / "d"), tmp_path / "m"
    code, out, _ = run("--data-dir", data, "--models-dir", models, "--epochs", "1", "--categories", "stance", "stance")
    assert code == 0 and out.count("Training STANCE") == 1
    code, out, err = quantize_run("--models-dir", models, "--categories", "stance", "squat")
    assert code == 1 and "no model for squat" in err and "Quantizing" not in out


def test_ctrl_c_while_the_libraries_load_is_one_line(tmp_path):
    process = subprocess.Popen([sys.executable, os.path.join(ROOT, "train.py")], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    maps = f"/proc/{process.pid}/maps"
    while process.poll() is None and "libtorch" not in open(maps).read():     # torch is loading
        pass
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err
    assert err.strip() == "Interrupted while the libraries were loading; nothing written."


def test_reference_figures_print_the_digits_that_decide():
    import quantize
    assert evaluation.deciding(1.6982, 1.7) == "1.698" and evaluation.deciding(1.75, 1.7) == "1.75"
    assert evaluation.deciding(0.3, 0.3) == "0.30"           # exactly the goal: reached, printed plainly
    figures = {"fp32": {"size_bytes": 100, "accuracy_val": None, "latency_p50_us": 10.0, "throughput_per_s": 1000.0},
               "int8": {"size_bytes": 30, "accuracy_val": None, "latency_p50_us": 11.0, "throughput_per_s": 1698.2},
               "call_floor_p50_us": 4.0}
    from MediaPipe_Dataset import quantization, registry
    rows = {goal: (reached, figure) for goal, reached, figure in quantization.goals(registry.by_name("frame"), figures, {})}
    assert rows["batch throughput at least 1.7x FP32"] == (False, "1.698x")
    assert rows["file at most 30% of FP32"] == (True, "30.00%")
