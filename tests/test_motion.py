"""The motion model (issue 19): recordings in time, windows, the model and its ONNX file,
INT8, --cv, the advice and the skip message. Data: MediaPipe_Dataset/movements.py, curls
whose label only the tempo shows."""
import contextlib
import io
import json
import os
import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import build_dataset, run_main
import quantize
from MediaPipe_Dataset import evaluation, motion, quantization, samples, training
from MediaPipe_Dataset.model import MotionClassifier, augment, drop_points
from MediaPipe_Dataset.movements import write_movements
import train

T, FPS = motion.WINDOW.frames, motion.WINDOW.fps


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    data = write_movements(str(root / "data"), recordings=8, seconds=4.0)
    models = root / "models"
    code, out, err = run_main(train, "--data-dir", data, "--models-dir", models, "--epochs", "10",
                              "--json", root / "run.json")
    assert code == 0, err
    return {"data": data, "models": models, "out": out, "report": json.loads((root / "run.json").read_text())}


def fake_dataset(groups, times, X=None, y=None):
    n = len(groups)
    X = np.arange(n * 28, dtype=np.float32).reshape(n, 28) if X is None else X
    return types.SimpleNamespace(groups=np.array(groups), timestamps=np.array(times, dtype=float), X=X,
                                 y=np.zeros(n, dtype=np.int64) if y is None else np.array(y))


# ----------------------------------------------------------------------------- recordings
def test_a_recording_is_its_frames_in_time_order_duplicates_keep_the_first_and_untimed_frames_are_left_out():
    ds = fake_dataset(["a", "a", "a", "a", "b", "a"], [0.2, 0.1, 0.1, np.nan, 0.0, 0.3])
    (a, b) = motion.recordings(ds)
    assert a.name == "a" and b.name == "b"
    np.testing.assert_allclose(a.times, [0.0, 0.1, 0.2])          # from its first frame, sorted, unique
    assert a.X[0][0] == ds.X[1][0] and a.X[1][0] == ds.X[0][0]     # 0.1 s: the first of the two in file order
    assert a.X[2][0] == ds.X[5][0]                                   # the frame without a timestamp is left out


def test_recordings_of_a_chosen_index_in_any_order_match_one_recording_at_a_time():
    """recordings() sorts once; its answer is each recording's frames picked one recording at a
    time (by time, ties in the order of the index), the first frame of each time kept."""
    rng = np.random.default_rng(0)
    times = np.round(rng.random(300) * 3, 1)                  # many ties
    times[rng.random(300) < 0.1] = np.nan
    ds = fake_dataset([f"r{i}" for i in rng.integers(0, 40, 300)], times, y=rng.integers(0, 2, 300))
    index = rng.permutation(300)[:200]
    found = motion.recordings(ds, index)
    timed = index[np.isfinite(ds.timestamps[index])]
    assert [r.name for r in found] == sorted(set(ds.groups[timed]))
    for r in found:
        rows = timed[ds.groups[timed] == r.name]
        rows = rows[np.argsort(ds.timestamps[rows], kind="stable")]
        times, first = np.unique(ds.timestamps[rows], return_index=True)
        np.testing.assert_array_equal(r.times, times - times[0])
        np.testing.assert_array_equal(r.X, ds.X[rows[first]])
        assert r.duplicates == len(rows) - len(times) and r.label == np.bincount(ds.y[rows]).argmax()


def test_instants_take_the_nearest_frame_and_gaps_and_the_end_of_a_short_recording_are_nan():
    times = np.r_[np.arange(0, 1.0, 1 / 30), np.arange(2.0, 3.0, 1 / 30)]      # a one-second gap
    ds = fake_dataset(["r"] * len(times), times, X=np.repeat(times[:, None], 28, 1).astype(np.float32))
    (rec,) = motion.recordings(ds)
    x = motion.sample_at(rec, np.array([0.52, 1.5, 2.1, 3.5]))
    assert x[0, 0] == pytest.approx(16 / 30) and np.isnan(x[1]).all() and x[2, 0] == pytest.approx(2.1, abs=1 / 60)
    assert np.isnan(x[3]).all()                                     # past the end
    short = fake_dataset(["s"] * 5, np.arange(5) / 10)
    windows, owner = motion.verdict_windows(motion.recordings(short))
    # frames at 0-0.4 s: instants to 0.6 s take the last frame (within 0.25 s), the rest are NaN
    assert windows.shape == (1, T, 28) and not np.isnan(windows[0, :7]).any() and np.isnan(windows[0, 7:]).all()


def test_an_epoch_holds_at_most_max_epoch_windows_shared_by_length_and_one_per_recording_at_least():
    groups = ["long"] * 600 + ["short"] * 20 + ["mid"] * 100
    times = np.r_[np.arange(600), np.arange(20), np.arange(100)] / 10.0
    recs = motion.recordings(fake_dataset(groups, times, y=[1] * 600 + [0] * 120))
    free = motion.training_windows(recs, np.random.default_rng(0))[1]
    assert len(free) == 600 + 20 + 100         # 16 per 1.6 s window length spanned, below the bound
    capped = motion.WINDOW.__class__(max_epoch_windows=60)
    x, y = motion.training_windows(recs, np.random.default_rng(0), capped)
    assert len(x) == 59 and x.shape[1:] == (T, 28)
    assert (y == 1).sum() == 600 * 60 // 720 and (y == 0).sum() == 20 * 60 // 720 + 100 * 60 // 720   # 50; 1 + 8
    tiny = motion.training_windows(recs, np.random.default_rng(0), motion.WINDOW.__class__(max_epoch_windows=2))[1]
    assert len(tiny) == 3                      # every recording keeps one window


def test_verdict_windows_cover_the_recording_every_quarter_window_and_end_at_its_end():
    ds = fake_dataset(["r"] * 100, np.arange(100) / 30)            # 3.3 s: 34 instants at 10 per second
    (rec,) = motion.recordings(ds)
    starts = motion.verdict_starts(rec, motion.WINDOW)
    assert starts[0] == 0 and np.allclose(np.diff(starts)[:-1], T // 4 / FPS)
    assert starts[-1] == pytest.approx((rec.instants() - T) / FPS)     # the last window ends at the end
    windows, owner = motion.verdict_windows([rec, rec])
    assert len(windows) == 2 * len(starts) and list(owner) == [0] * len(starts) + [1] * len(starts)


def test_the_skip_message_says_why_a_category_has_no_motion_model(tmp_path):
    data = build_dataset(tmp_path / "d")            # 3-frame clips, all at timestamp 0
    ds = samples.Dataset(data, "stance")
    assert "needs 3 recordings per class" in motion.MotionKind().data_problem(ds)
    ds.timestamps[:] = np.nan
    assert "no `timestamp`" in motion.MotionKind().data_problem(ds)
    ds.has_clips = False
    assert "no `clip`" in motion.MotionKind().data_problem(ds)


# ----------------------------------------------------------------------------- model and augmentation
def test_the_motion_model_gives_probabilities_for_missing_points_and_cannot_tell_without_a_pose():
    torch.manual_seed(0)
    model = MotionClassifier().eval()
    x = torch.rand(4, T, 28)
    x[1, :, 6:10] = float("nan")                  # an arm missing throughout
    x[2, ::2] = float("nan")                      # every other frame a gap
    x[3] = float("nan")                           # nothing at all
    with torch.no_grad():
        p = torch.softmax(model(x), 1)
    assert torch.isfinite(p).all() and torch.allclose(p.sum(1), torch.ones(4))
    assert torch.allclose(p[3], torch.tensor([0.5, 0.5]))


def test_a_window_gets_one_mirror_and_keeps_a_dropped_joint_hidden_in_every_frame():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, T, 28) * 0.5 + 0.25        # x > 0.25: only the mirror turns a nose's x negative
    out = augment(x, gen, 0.0).reshape(64, T, 14, 2)
    mirrored = (out[:, :, 0, 0] < 0.0)             # the nose's x changes sign with the mirror
    assert (mirrored.all(1) | ~mirrored.any(1)).all()      # never mirrored in some frames only
    dropped = drop_points(torch.rand(64, T, 14, 2), 1.0, torch.Generator().manual_seed(1))
    hidden = torch.isnan(dropped[..., 0])
    assert hidden.any() and (hidden.all(1) == hidden.any(1)).all()     # the same points in every frame


# ----------------------------------------------------------------------------- a normal run
def test_train_writes_the_motion_model_and_its_record_and_advises_it_when_it_wins(trained):
    names = sorted(os.listdir(trained["models"]))
    assert names == ["curl.json", "curl.onnx", "curl.pt", "curl_motion.json", "curl_motion.onnx", "curl_motion.pt",
                     "curl_report.html"]
    r = trained["report"]["curl"]
    m = r["motion"]
    assert set(m) >= {"val_window_accuracy", "val_clip_accuracy", "n_val_clips", "frame_vote_clip_accuracy",
                      "train_seconds", "onnx_nodes", "batch_size"}
    # the tempo is the label: frames cannot tell, windows can
    assert m["val_clip_accuracy"] > m["frame_vote_clip_accuracy"] and r["advised_verdict"] == "motion"
    assert "Advice: trust the motion model's verdict for curl" in trained["out"]
    record = json.loads((trained["models"] / "curl_motion.json").read_text())
    assert record["model"]["class"] == "MotionClassifier" and record["advised_verdict"] == "motion"
    model = train.load_model(str(trained["models"] / "curl_motion.pt"))
    assert isinstance(model, MotionClassifier) and model.config["frames"] == T


def test_the_motion_onnx_file_matches_pytorch_with_missing_points_and_says_its_window(trained):
    path = str(trained["models"] / "curl_motion.onnx")
    onnx.checker.check_model(onnx.load(path), full_check=True)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert int(meta["window_frames"]) == T and float(meta["frame_rate"]) == FPS and "min_visibility" in meta
    ds = samples.Dataset(trained["data"], "curl")
    windows, _ = motion.verdict_windows(motion.recordings(ds)[:3])
    x = evaluation.parity_inputs(windows)
    got = session.run(None, {"input": x})[0]
    model = train.load_model(str(trained["models"] / "curl_motion.pt"))
    assert np.isfinite(got).all() and np.allclose(got.sum(1), 1, atol=1e-5)
    assert np.abs(got - training.probabilities(model, x)).max() <= 1e-5
    np.testing.assert_allclose(got[-2:], 0.5, atol=1e-6)          # the all-NaN and nose-only windows


def test_a_category_ending_in_motion_is_refused(tmp_path):
    data = build_dataset(tmp_path / "d", categories=("stance", "stance_motion"))
    code, _, err = run_main(train, "--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "2")
    assert code == 1 and "stance_motion: a category name may not end in _motion" in err


@pytest.mark.parametrize("flag, why", [("--no-motion", "--no-motion."),
                                       ("--group-by=none", "--group-by none cuts recordings")])
def test_no_motion_and_frames_split_anyhow_skip_it(tmp_path, flag, why):
    data = write_movements(str(tmp_path / "d"), recordings=3, seconds=2.0)
    code, out, _ = run_main(train, "--data-dir", data, "--models-dir", tmp_path / "m", "--epochs", "1", flag)
    assert code == 0 and f"No motion model for curl: {why}" in out
    assert sorted(os.listdir(tmp_path / "m")) == ["curl.json", "curl.onnx", "curl.pt", "curl_report.html"]


# ----------------------------------------------------------------------------- quantize.py and --cv
def test_quantize_makes_the_motion_int8_model_and_reports_windows_and_recordings(trained, tmp_path):
    code, out, err = run_main(quantize, "--models-dir", trained["models"], "--runs", "30", "--batch-size", "64",
                              "--json", tmp_path / "q.json")
    assert code == 0, err
    assert os.path.isfile(trained["models"] / "curl_motion_int8.onnx")
    f = json.loads((tmp_path / "q.json").read_text())["curl_motion"]
    assert f["unit"] == "windows" and f["kind"] == "motion" and f["n_val_clips"] >= 1
    assert 0 <= f["int8"]["clip_accuracy_val"] <= 1
    assert json.loads((tmp_path / "q.json").read_text())["curl"]["fp32"]["latency_p50_us"] > 0
    q = onnx.load(str(trained["models"] / "curl_motion_int8.onnx"))
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul") for n in q.graph.node)
    assert "FP32 window p50 at most 10x the frame model's FP32 p50" in out and "held-out windows" in out
    assert "Which verdict to trust" in out
    quantization.quant_pre_process(str(trained["models"] / "curl_motion.onnx"), str(tmp_path / "pre.onnx"),
                               skip_symbolic_shape=True)
    fp32_layout = quantization.feature_nodes(onnx.load(str(tmp_path / "pre.onnx")))     # as quantize() sees it
    assert f["int8_nodes"]["fp32"] == len(fp32_layout) > 0 and f["int8_nodes"]["int8"] > 0   # what the report says
    assert "depthwise temporal convolutions are elementwise Mul and Add" in out


def test_cv_puts_the_motion_model_and_the_window_statistics_peer_on_the_same_folds(tmp_path):
    data = write_movements(str(tmp_path / "d"), recordings=6, seconds=3.0)
    code, out, err = run_main(train, "--data-dir", data, "--cv", "3", "--epochs", "4", "--json", tmp_path / "cv.json")
    assert code == 0, err
    r = json.loads((tmp_path / "cv.json").read_text())["curl"]
    for name in ("MotionClassifier", "HGB on window statistics"):
        assert r[name]["n_clips"] == 12 and 0 <= r[name]["clip_mean"] <= 1 and r[name]["seconds"] > 0
    assert r["PoseClassifier"]["n_clips"] == 12
    assert "Per recording, curl: the frame models' votes and the models that judge windows" in out
    assert "Advice: trust" in out


def test_benchmark_motion_scores_each_configuration_on_the_cv_folds(tmp_path, capsys):
    from MediaPipe_Dataset import benchmark_motion
    data = write_movements(str(tmp_path / "d"), recordings=4, seconds=2.0)
    assert benchmark_motion.main(["--data-dir", data, "--configs", "8/10/32/2", "16/10/32/2", "--seeds", "0",
                                  "--cv", "2", "--json", str(tmp_path / "b.json")]) == 0
    assert motion.WINDOW.frames == 16          # the configurations are objects, not module constants
    rows = json.loads((tmp_path / "b.json").read_text())
    assert [r["config"] for r in rows] == ["8/10.0/32/2", "16/10.0/32/2"]
    assert all(0 <= r["clip_accuracy"] <= 1 for r in rows) and "Mean per-recording accuracy" in capsys.readouterr().out
