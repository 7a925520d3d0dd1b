"""Missing and occluded points: every way of marking them, the normalizer, the model, the
ONNX export, joint dropout, the robustness figures, and training on poses without legs."""
import contextlib
import io
import json
import math
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from conftest import STANDING, build_dataset
import train
from MediaPipe_Dataset import evaluation, model as model_lib, registry, reports, samples, store  # noqa: E402

FLAT = STANDING.reshape(-1)
NAN = float("nan")
KNEE_ANKLE = (9, 10)              # right knee and right ankle


def expected_missing(points):
    """FLAT with the given points NaN."""
    x = FLAT.copy()
    x[[2 * i + c for i in points for c in (0, 1)]] = np.nan
    return x


def landmarks_33(visibility=0.99):
    """33 MediaPipe rows [x, y, z, visibility] that map onto STANDING."""
    rows = [[0.3, 0.3, 0.0, visibility] for _ in range(33)]
    for i, m in enumerate(samples.MEDIAPIPE_33):
        if not isinstance(m, tuple):
            rows[m] = [*STANDING[i], 0.0, visibility]
    return rows


def ways_of_marking_knee_and_ankle_missing():
    flat = [None if i // 2 in KNEE_ANKLE else v for i, v in enumerate(FLAT.tolist())]
    pairs = STANDING.tolist()
    rows, objects = landmarks_33(), [dict(zip("xyzv", r)) for r in landmarks_33()]
    for r in objects:
        r["visibility"] = r.pop("v")
    for i in KNEE_ANKLE:                    # MediaPipe's guesses for hidden points: low visibility
        rows[samples.MEDIAPIPE_33[i]][3] = 0.05
        objects[samples.MEDIAPIPE_33[i]]["visibility"] = 0.05
    visibility = [0.9] * 14
    for i in KNEE_ANKLE:
        visibility[i] = 0.1
    return {
        "28 numbers, null": {"keypoints": flat},
        "28 numbers, NaN (Python's json writes NaN)": {"keypoints": [NAN if v is None else v for v in flat]},
        "14 pairs, null": {"keypoints": [None if i in KNEE_ANKLE else p for i, p in enumerate(pairs)]},
        "14 pairs, [null, null]": {"keypoints": [[None, None] if i in KNEE_ANKLE else p for i, p in enumerate(pairs)]},
        "33 rows, low visibility": {"keypoints": rows},
        "33 objects, low visibility": {"keypoints": objects},
        "33 rows, null landmarks": {"keypoints": [None if i in (26, 28) else r for i, r in enumerate(landmarks_33())]},
        "14 pairs with a visibility list": {"keypoints": pairs, "visibility": visibility},
        "28 numbers with a visibility list and nulls in it": {
            "keypoints": flat, "visibility": [None if i in KNEE_ANKLE else 0.9 for i in range(14)]},
    }


@pytest.mark.parametrize("way", ways_of_marking_knee_and_ankle_missing())
def test_each_way_of_marking_a_point_missing_gives_nan_there(tmp_path, way):
    sample = ways_of_marking_knee_and_ankle_missing()[way]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(sample))          # writes NaN as NaN, as Python does
    keypoints, _, _ = samples.load_sample(str(path), 1)
    np.testing.assert_allclose(keypoints, expected_missing(KNEE_ANKLE), atol=1e-9)


def test_visibility_threshold_applies_at_the_boundary_and_zero_keeps_every_guess():
    rows = landmarks_33(visibility=0.5)
    rows[26][3] = 0.49                                  # right knee
    got = samples.parse_keypoints(rows, min_visibility=0.5)
    np.testing.assert_allclose(got, expected_missing([9]))       # 0.5 itself is kept
    np.testing.assert_allclose(samples.parse_keypoints(rows, min_visibility=0.0), FLAT)
    with pytest.raises(ValueError, match="no shoulder and no hip left"):
        samples.parse_keypoints(FLAT.tolist(), [0.2] * 14, min_visibility=0.3)     # every point below it
    assert np.isnan(samples.parse_keypoints(FLAT.tolist(), None, min_visibility=0.9)).sum() == 0   # null list: no information


def test_neck_of_the_33_landmarks_is_missing_when_a_shoulder_is():
    rows = landmarks_33()
    rows[11][3] = 0.01                                  # left shoulder hidden
    got = samples.parse_keypoints(rows).reshape(14, 2)
    assert np.isnan(got[1]).all() and np.isnan(got[5]).all()       # neck and left shoulder
    assert not np.isnan(np.delete(got, [1, 5], axis=0)).any()


def test_the_default_threshold_drops_low_visibility_guesses_in_files(tmp_path):
    data = build_dataset(tmp_path / "d")
    path = os.path.join(data, "stance", "correct stance", "side.json")
    rows = landmarks_33()
    rows[14][3] = 0.1                                   # right elbow: a guess
    with open(path, "w") as f:
        json.dump({"keypoints": rows, "label": 1}, f)
    ds = samples.Dataset(data, "stance")
    x = ds.X[ds.files.index(os.path.join("correct stance", "side.json"))]
    assert np.isnan(x[6:8]).all() and np.isnan(x).sum() == 2
    kept = samples.Dataset(data, "stance", min_visibility=0.0)
    assert not np.isnan(kept.X).any()


def test_statistics_count_samples_with_missing_points_and_name_the_points(tmp_path, capsys):
    ds = samples.Dataset(build_dataset(tmp_path / "d", missing=(9, 10, 12, 13)), "stance")
    assert ds.invalid == [] and np.isnan(ds.X).sum() == 48 * 8
    n, counts = ds.missing()
    assert n == 48 and set(counts) == {"right_knee", "right_ankle", "left_knee", "left_ankle"}
    reports.print_statistics([ds])
    assert "Samples with missing points: 48 (100.0%); most often missing: right_knee 48" in capsys.readouterr().out


# ----------------------------------------------------------------------------- normalizer
def test_normalizer_accepts_none_and_nan_and_keeps_them_missing():
    norm = train.KeypointNormalizer()
    with_none = [None if i // 2 in KNEE_ANKLE else v for i, v in enumerate(FLAT.tolist())]
    a, b = norm(with_none), norm(expected_missing(KNEE_ANKLE))
    np.testing.assert_array_equal(np.isnan(a), np.isnan(expected_missing(KNEE_ANKLE)))
    np.testing.assert_allclose(a, b, equal_nan=True)
    batch = norm(np.stack([FLAT, expected_missing(KNEE_ANKLE), np.full(28, np.nan)]))
    assert np.isnan(batch[1]).sum() == 4 and np.isnan(batch[2]).all() and not np.isnan(batch[0]).any()


@pytest.mark.parametrize("missing", [(), KNEE_ANKLE, (3, 4, 6, 7), (8,), (8, 11), (9, 10, 12, 13, 0)])
def test_normalizer_invariances_hold_with_points_missing(missing):
    norm = train.KeypointNormalizer()
    pose = expected_missing(missing)
    base = norm(pose)
    shifted = (pose.reshape(14, 2) + [0.2, -0.1]).reshape(-1)
    scaled = ((pose.reshape(14, 2) - 0.5) * 0.4 + 0.5).reshape(-1)
    for other in (shifted, scaled, base):               # base: normalizing twice changes nothing
        np.testing.assert_allclose(norm(other), base, atol=1e-5, equal_nan=True)
    assert np.isnan(base).sum() == 2 * len(missing)
    assert np.nanmax(np.abs(base)) <= 1 + 1e-6          # the size covers every present point


def test_centre_and_size_come_from_the_points_that_are_present():
    norm = train.KeypointNormalizer()
    p = STANDING.copy()
    one_hip = norm(expected_missing([8])).reshape(14, 2)
    np.testing.assert_allclose(one_hip[11], [0, 0], atol=1e-6)          # the left hip is the centre (SHOULDER_WEIGHT)
    no_hips = norm(expected_missing([8, 11])).reshape(14, 2)
    shoulders = (p[2] + p[5]) / 2
    spread = np.linalg.norm(np.delete(p, [8, 11], axis=0) - shoulders, axis=1).max()
    np.testing.assert_allclose(no_hips[0], (p[0] - shoulders) / spread, atol=1e-6)   # size: the spread alone


# ----------------------------------------------------------------------------- model
def test_model_gives_finite_probabilities_for_any_missing_points_and_half_for_nothing():
    torch.manual_seed(0)
    model = train.PoseClassifier().eval()
    rng = np.random.default_rng(0)
    X = np.stack([FLAT + rng.normal(0, 0.01, 28) for _ in range(40)]).astype(np.float32)
    rows = [X, *[evaluation.remove_points(X, k, rng) for k in range(1, 9)],
            np.full((1, 28), np.nan, np.float32), np.full((1, 28), np.inf, np.float32),
            expected_missing([2, 5, 8, 11])[None].astype(np.float32)]      # no shoulder, no hip
    with torch.no_grad():
        probs = torch.softmax(model(torch.from_numpy(np.concatenate(rows))), 1).numpy()
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(probs[-3:], 0.5)                     # nothing to place: "cannot tell"
    assert not np.allclose(probs[:-3], 0.5)


def test_the_model_sees_which_points_are_missing():
    f = model_lib.pose_features(torch.from_numpy(train.KeypointNormalizer()(expected_missing(KNEE_ANKLE))[None]))
    assert f.shape == (1, model_lib.NUM_FEATURES) and torch.isfinite(f).all()
    presence = f[0, -14:]
    assert presence[list(KNEE_ANKLE)].sum() == 0 and presence.sum() == 12
    n_angles = len(model_lib.JOINT_ANGLES)
    cos = f[0, 28:28 + n_angles]
    assert cos[model_lib.JOINT_ANGLES.index((8, 9, 10))] == 0          # right knee angle: points missing
    assert cos[model_lib.JOINT_ANGLES.index((2, 3, 4))] != 0           # right elbow angle: all there


def test_joint_dropout_drops_real_patterns_and_always_keeps_a_shoulder_or_hip():
    gen = torch.Generator().manual_seed(0)
    x = torch.from_numpy(np.tile(FLAT, (2000, 1)).astype(np.float32)).reshape(2000, 14, 2)
    x[:1000, [2, 5, 8]] = np.nan                        # half of them have only the left hip of the torso
    out = model_lib.drop_points(x, 0.5, gen)
    present = ~torch.isnan(out[..., 0])
    assert present[:, samples.TORSO].any(1).all()
    hit = (present != ~torch.isnan(x[..., 0])).any(1)
    assert 0.4 < hit.float().mean() < 0.6
    assert not torch.equal(out[1000:][hit[1000:]].isnan(), torch.zeros_like(out[1000:][hit[1000:]]).bool())
    untouched = model_lib.drop_points(x, 0.0, gen)
    assert torch.equal(untouched.isnan(), x.isnan())


def test_remove_points_removes_exactly_k_present_points_and_keeps_a_torso_point():
    rng = np.random.default_rng(0)
    X = np.stack([expected_missing(KNEE_ANKLE)] * 300).astype(np.float32)
    for k in (1, 4, 8):
        out = evaluation.remove_points(X, k, rng)
        assert (np.isnan(out[:, ::2]).sum(1) == 2 + k).all()
        assert (~np.isnan(out[:, ::2][:, samples.TORSO])).any(1).all()
        assert np.isnan(X).sum() == 300 * 4                        # the input is not changed
    many = evaluation.remove_points(X, 20, rng)                          # more than there are: all but one
    assert (np.isnan(many[:, ::2]).sum(1) == 13).all()


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def legless(tmp_path_factory):
    """A training run where every sample lacks its legs, as upper-body recordings do."""
    root = tmp_path_factory.mktemp("legless")
    data = build_dataset(root / "data", missing=(9, 10, 12, 13))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = train.main(["--data-dir", data, "--models-dir", str(root / "models"), "--epochs", "3",
                           "--json", str(root / "report.json")])
    return {"code": code, "out": out.getvalue(), "err": err.getvalue(), "data": data, "models": root / "models",
            "report": json.loads((root / "report.json").read_text())}


def test_training_on_samples_without_legs_uses_every_sample(legless):
    assert legless["code"] == 0, legless["err"]
    assert "skipped" not in legless["err"]
    assert "Samples with missing points: 48 (100.0%)" in legless["out"]
    assert "Validation accuracy with k random points removed" in legless["out"]
    assert "also with points missing" in legless["out"]
    r = legless["report"]["stance"]
    assert r["n_train"] + r["n_val"] == 48 and r["val_accuracy"] >= 0.9


def test_onnx_takes_nan_and_matches_pytorch_with_points_missing(legless):
    model = train.PoseClassifier()
    model.load_state_dict(torch.load(legless["models"] / "stance.pt"))
    model.eval()
    ds = samples.Dataset(legless["data"], "stance")
    x = evaluation.parity_inputs(ds.X)
    assert np.isnan(x).all(1).any() and len(x) > 4 * len(ds.X)
    session = ort.InferenceSession(str(legless["models"] / "stance.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    assert np.isfinite(got).all() and np.abs(got - expected).max() <= 1e-5
    np.testing.assert_allclose(got[np.isnan(x).all(1)], 0.5, atol=1e-6)
    proto = onnx.load(legless["models"] / "stance.onnx")
    nodes = {n.op_type for n in proto.graph.node}
    assert "IsNaN" in nodes and "Where" in nodes            # the graph handles missing points itself
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["min_visibility"] == "0.5" and "NaN" in meta["missing_points"]


def test_a_model_giving_nan_is_not_written_and_earlier_models_stay(tmp_path, monkeypatch, capsys):
    data = build_dataset(tmp_path / "d")
    models = tmp_path / "models"
    models.mkdir()
    for ext in (".pt", ".onnx"):
        (models / f"stance{ext}").write_bytes(b"earlier model")
    frame = registry.by_name("frame")
    real_fit = frame.fit

    def poisoned(*args, **kwargs):
        model, history, best, batch = real_fit(*args, **kwargs)
        with torch.no_grad():
            model.head[-1].bias.fill_(math.nan)
        return model, history, best, batch
    monkeypatch.setattr(frame, "fit", poisoned)
    assert train.main(["--data-dir", data, "--models-dir", str(models), "--epochs", "2"]) == 1
    err = capsys.readouterr().err
    assert "error: stance: training diverged" in err and "Traceback" not in err
    assert sorted(os.listdir(models)) == ["stance.onnx", "stance.pt"]
    assert all((models / f"stance{ext}").read_bytes() == b"earlier model" for ext in (".pt", ".onnx"))


def test_the_export_check_fails_on_nan_outputs(tmp_path):
    model = train.PoseClassifier().eval()
    with torch.no_grad():
        model.head[-1].bias.fill_(math.nan)
    with pytest.raises(samples.DataError, match="outputs not finite"):
        store.write_model(model, "stance", str(tmp_path), {}, {}, np.tile(FLAT, (4, 1)).astype(np.float32), (28,))
    assert os.listdir(tmp_path) == []            # nothing written, no temporary file left


def test_cv_copes_with_missing_points_and_reports_robustness(tmp_path, capsys):
    data = build_dataset(tmp_path / "d", missing=(9, 10, 12, 13), clips_per_class=20)   # HGB's leaves need 20
    report = tmp_path / "cv.json"
    assert train.main(["--data-dir", data, "--cv", "3", "--epochs", "3", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "Accuracy % with k random points removed" in out
    results = json.loads(report.read_text())["stance"]
    assert set(results) == {"PoseClassifier", "LogisticRegression", "SVC (RBF)", "KNeighbors", "HistGradientBoosting"}
    for name, r in results.items():
        assert set(r["points_removed"]) == {"1", "2", "3", "4"}
        assert all(0 <= a <= 1 for a in r["points_removed"].values())
        assert r["mean"] >= 0.8, name                     # every peer copes with the missing legs


@pytest.mark.parametrize("flag", [["--min-visibility", "1.5"], ["--min-visibility", "-0.1"],
                                  ["--drop-joints", "2"], ["--drop-joints", "-1"]])
def test_out_of_range_probabilities_are_refused(flag, capsys):
    with pytest.raises(SystemExit) as e:
        train.parse_args(flag)
    assert e.value.code == 2 and "between 0 and 1" in capsys.readouterr().err


def test_robustness_is_scored_on_at_most_removal_max_frames(monkeypatch):
    seen = []
    predict = lambda X: seen.append(len(X)) or np.zeros(len(X), dtype=int)
    X = np.tile(FLAT, (50, 1)).astype(np.float32)
    monkeypatch.setattr(evaluation, "REMOVAL_MAX_FRAMES", 20)
    result = evaluation.accuracy_with_points_removed(predict, X, np.zeros(50, dtype=int), seed=0)
    assert set(seen) == {20} and len(seen) == len(evaluation.REMOVED_POINTS) * evaluation.REMOVAL_DRAWS
    assert all(a == 1 for a in result.values())
    seen.clear()
    evaluation.accuracy_with_points_removed(predict, X[:10], np.zeros(10, dtype=int), seed=0)
    assert set(seen) == {10}                        # a small fold: every frame
