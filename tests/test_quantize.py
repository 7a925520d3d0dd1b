"""quantize.py: INT8 files, the report and its JSON, bad inputs."""
import contextlib
import io
import json
import os
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import STANDING, assert_readme_defaults_match, build_dataset
import quantize
import train
from MediaPipe_Dataset import evaluation, model as model_lib, quantization, registry, samples  # noqa: E402

FIGURES = {"size_bytes", "accuracy_val", "accuracy_all", "latency_p50_us", "latency_p95_us", "throughput_per_s"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("q")
    data = build_dataset(root / "data", categories=("stance", "execution"))
    models = root / "models"
    with contextlib.redirect_stdout(io.StringIO()):
        assert train.main(["--data-dir", data, "--models-dir", str(models), "--epochs", "3"]) == 0
    return {"data": data, "models": models}


@pytest.fixture
def models(trained, tmp_path):
    """A private copy of the trained models, so each test may change them."""
    target = tmp_path / "models"
    shutil.copytree(trained["models"], target)
    return target


def run(models, data, *extra):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = quantize.main(["--models-dir", str(models), "--data-dir", str(data), "--runs", "50",
                              "--batch-size", "64", *[str(e) for e in extra]])
    return code, out.getvalue(), err.getvalue()


def test_quantized_models_load_agree_and_keep_interface_and_metadata(models, trained, tmp_path):
    code, out, _ = run(models, trained["data"], "--json", tmp_path / "q.json")
    assert code == 0
    for category in ("stance", "execution"):
        fp32, int8 = models / f"{category}.onnx", models / f"{category}_int8.onnx"
        q = onnx.load(int8)
        assert any(n.op_type == "MatMulInteger" for n in q.graph.node)          # really INT8
        int8_meta = {p.key: p.value for p in q.metadata_props}
        assert int8_meta.pop("quantization") == quantization.QUANTIZATION
        assert int8_meta == {p.key: p.value for p in onnx.load(fp32).metadata_props}
        sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32, int8)]
        for s in sessions:
            assert [i.name for i in s.get_inputs()] == ["input"] and [o.name for o in s.get_outputs()] == ["probabilities"]
        val_files = json.loads((models / f"{category}.json").read_text())["val_samples"]
        ds = samples.Dataset(trained["data"], category)
        x = ds.X[[ds.files.index(f) for f in val_files]]
        y = ds.y[[ds.files.index(f) for f in val_files]]
        acc = [float((s.run(None, {"input": x})[0].argmax(1) == y).mean()) for s in sessions]
        assert abs(acc[0] - acc[1]) <= 0.01 + 1e-9
        assert os.path.getsize(int8) < 0.35 * os.path.getsize(fp32)
    assert sorted(os.listdir(models)) == ["execution.json", "execution.onnx", "execution.pt", "execution_int8.onnx",
                                          "execution_report.html", "stance.json", "stance.onnx", "stance.pt",
                                          "stance_int8.onnx", "stance_report.html"]


def test_report_and_json_hold_every_figure(models, trained, tmp_path):
    report = tmp_path / "q.json"
    code, out, _ = run(models, trained["data"], "--json", report)
    assert code == 0
    for text in ["=== MediaPipe Pose Model Quantization ===", "✓ Found", "stance.onnx", "Quantizing ",
                 "Quantized model saved: ", "stance_int8.onnx", "COMPARISON REPORT: STANCE MODELS",
                 "COMPARISON REPORT: EXECUTION MODELS", "File Size Comparison:", "  Original: ", "  Quantized: ",
                 "  Size Reduction: ", "held-out frames", "Agreement: ", "latency p50", "latency p95",
                 "throughput", "per single input (p50) on this machine", "Reference figures:",
                 "file at most 30% of FP32", "SUMMARY", "Call floor", "timed in the same loop: FP32 takes",
                 "Deploy, by this run's figures: "]:
        assert text in out, text
    data = json.loads(report.read_text())
    assert set(data) == {"stance", "execution"}
    for category, f in data.items():
        for key in ("fp32", "int8"):
            assert FIGURES <= set(f[key]), (category, key)
            assert all(f[key][k] is not None for k in FIGURES)
            assert 0 <= f[key]["accuracy_val"] <= 1 and f[key]["latency_p95_us"] >= f[key]["latency_p50_us"] > 0
        assert f["fp32"]["size_bytes"] == os.path.getsize(models / f"{category}.onnx")
        assert f["int8"]["size_bytes"] == os.path.getsize(models / f"{category}_int8.onnx")
        assert 0 <= f["agreement"] <= 1
        assert f"Original: {f['fp32']['size_bytes'] / 1e6:.2f} MB" in out
        assert 0 < f["call_floor_p50_us"] < f["fp32"]["latency_p50_us"]         # the floor model is in the JSON
        assert f"is {f['fp32']['size_bytes'] / f['int8']['size_bytes']:.1f}x smaller" in out
        # per recording: 3 frames per clip, clips kept whole by train.py's split
        assert f["n_val_clips"] * 3 == f["n_val"] and 0 <= f["clips_changed"] <= f["n_val_clips"]
        assert all(0 <= f[key]["clip_accuracy_val"] <= 1 for key in ("fp32", "int8"))
        assert f"Per recording (validation, {f['n_val_clips']} clips" in out


def test_ratio_words_say_what_was_measured():
    assert quantize.ratio_words(10.0, 13.0, "per single sample", False) == \
        "INT8 is 1.30x slower than FP32 per single sample on this machine"
    assert quantize.ratio_words(100.0, 150.0, "in batches", True) == \
        "INT8 is 1.50x faster than FP32 in batches on this machine"
    assert quantize.ratio_words(10.0, 10.4, "per single sample", False) == \
        "INT8 is 1.04x slower than FP32 per single sample on this machine"
    assert "as fast as FP32" in quantize.ratio_words(10.0, 10.01, "per single sample", False)


def test_targets_are_checked_against_the_measured_figures():
    f = {"fp32": {"size_bytes": 1000, "accuracy_val": 0.90, "latency_p50_us": 10.0, "throughput_per_s": 100.0},
         "int8": {"size_bytes": 290, "accuracy_val": 0.885, "latency_p50_us": 12.5, "throughput_per_s": 175.0},
         "call_floor_p50_us": 3.0}
    frame = registry.by_name("frame")
    assert [met for _, met, _ in quantization.goals(frame, f, {})] == [True, False, False, True]
    f["int8"].update(size_bytes=310, accuracy_val=0.9, latency_p50_us=11.5, throughput_per_s=160.0)
    assert [met for _, met, _ in quantization.goals(frame, f, {})] == [False, True, True, False]
    f["fp32"]["accuracy_val"] = None            # accuracy not measured: no accuracy target line
    assert len(quantization.goals(frame, f, {})) == 3


def test_no_models_says_to_train_first(tmp_path):
    code, out, err = run(tmp_path, tmp_path)
    assert code == 1 and "run `python train.py` first" in err and "Traceback" not in err


def test_a_corrupt_model_is_named_and_the_others_still_run(models, trained):
    (models / "execution.onnx").write_bytes(b"this is not onnx")
    code, out, err = run(models, trained["data"])
    assert code == 1
    assert f"error: {models / 'execution.onnx'}: not a valid ONNX model" in err and "Traceback" not in err
    assert (models / "stance_int8.onnx").exists() and not (models / "execution_int8.onnx").exists()


def test_a_foreign_onnx_model_is_refused(models, trained):
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), models / "other.onnx")
    code, _, err = run(models, trained["data"], "--categories", "other", "stance")
    assert code == 1 and "no model for other" in err            # no training record: not one of ours
    shutil.copy(models / "stance.json", models / "other.json")   # a record that does not fit the file
    code, _, err = run(models, trained["data"], "--categories", "other", "stance")
    assert code == 1 and "other.onnx: not a pose model from train.py" in err
    assert not (models / "other_int8.onnx").exists() and (models / "stance_int8.onnx").exists()


def test_missing_data_still_reports_size_and_speed(models, tmp_path):
    report = tmp_path / "q.json"
    code, out, _ = run(models, tmp_path / "no-data", "--categories", "stance", "--json", report)
    assert code == 0 and "accuracy skipped" in out and "Size Reduction" in out and "latency p50" in out
    f = json.loads(report.read_text())["stance"]
    assert f["int8"]["accuracy_val"] is None and f["fp32"]["accuracy_all"] is None
    assert f["int8"]["latency_p50_us"] > 0 and f["int8"]["size_bytes"] > 0


def test_missing_validation_samples_skip_only_validation_accuracy(models, trained, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    record = json.loads((models / "stance.json").read_text())
    os.remove(data / "stance" / record["val_samples"][0])
    report = tmp_path / "q.json"
    code, out, _ = run(models, data, "--categories", "stance", "--json", report)
    assert code == 0 and "validation samples are no longer in" in out
    f = json.loads(report.read_text())["stance"]
    assert f["int8"]["accuracy_val"] is None and f["int8"]["accuracy_all"] is not None


def test_a_failed_quantization_leaves_no_partial_file(models, trained, monkeypatch):
    def broken(src, dst, **kwargs):
        with open(dst, "wb") as f:
            f.write(b"half")
        raise RuntimeError("disk full")
    monkeypatch.setattr(quantization, "quantize_dynamic", broken)
    code, _, err = run(models, trained["data"], "--categories", "stance")
    assert code == 1 and "quantization failed" in err and "stance.onnx" in err
    assert sorted(os.listdir(models)) == ["execution.json", "execution.onnx", "execution.pt", "execution_report.html",
                                          "stance.json", "stance.onnx", "stance.pt", "stance_report.html"]


def test_readme_flag_table_states_the_real_defaults():
    assert assert_readme_defaults_match("quantize.py", quantize.parse_args([])) == 7


def test_int8_takes_nan_and_gives_finite_probabilities(models, trained):
    code, out, _ = run(models, trained["data"], "--categories", "stance")
    assert code == 0 and "Missing points: on " in out and "both models give finite probabilities" in out
    ds = samples.Dataset(trained["data"], "stance")
    x = evaluation.parity_inputs(ds.X[:20])
    for name in ("stance.onnx", "stance_int8.onnx"):
        probs = ort.InferenceSession(str(models / name), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        assert np.isfinite(probs).all() and np.allclose(probs.sum(1), 1, atol=1e-5), name
        np.testing.assert_allclose(probs[np.isnan(x).all(1)], 0.5, atol=1e-6)


def test_a_model_giving_nan_for_missing_points_fails_its_check():
    class Session:
        def __init__(self, value):
            self.value = value

        def run(self, names, feeds):
            return [np.full((len(feeds["input"]), 2), self.value, dtype=np.float32)]
    x = np.tile(STANDING.reshape(1, -1), (4, 1)).astype(np.float32)
    check = quantization.missing_point_check([Session(0.5), Session(0.5)], ("a.onnx", "b.onnx"), x)
    assert check["agreement"] == 1 and check["max_probability_diff"] == 0
    with pytest.raises(quantize.ModelError, match="b.onnx: gives probabilities that are not finite"):
        quantization.missing_point_check([Session(0.5), Session(np.nan)], ("a.onnx", "b.onnx"), x)


def test_the_feature_arithmetic_stays_fp32_and_only_the_network_is_int8(models, trained):
    assert run(models, trained["data"], "--categories", "stance")[0] == 0
    int8 = onnx.load(models / "stance_int8.onnx")
    halves = {i.name for i in int8.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    layout = {n.output[0] for n in int8.graph.node if n.op_type == "Cast" and n.input[0] in halves}
    exact = [n for n in int8.graph.node if layout & set(n.input)]             # what multiplies by them
    assert len(exact) == 12 and all(n.op_type in ("MatMul", "Gemm") for n in exact)   # _normalize, _features
    quantized = [n for n in int8.graph.node if n.op_type in ("MatMulInteger", "DynamicQuantizeMatMul")]
    assert len(quantized) >= 4                     # stem, the block's two layers, the head


def test_a_frame_that_cannot_be_placed_does_not_change_the_others_in_its_batch(models, trained):
    # Dynamic INT8 quantizes a whole batch with one scale: a NaN feature would spoil every frame.
    assert run(models, trained["data"], "--categories", "stance")[0] == 0
    x = samples.Dataset(trained["data"], "stance").X[:16]
    with_unplaced = np.concatenate([x, np.full((1, 28), np.nan, np.float32), x[:1] * 0 + 0.5])
    # INT8: other rows move a batch's activation ranges a little (measured 1e-3); a NaN moved them by 0.9
    for name, tolerance in (("stance.onnx", 1e-6), ("stance_int8.onnx", 0.01)):
        session = ort.InferenceSession(str(models / name), providers=["CPUExecutionProvider"])
        alone, batched = session.run(None, {"input": x})[0], session.run(None, {"input": with_unplaced})[0]
        np.testing.assert_allclose(batched[:16], alone, atol=tolerance, err_msg=name)
        np.testing.assert_allclose(batched[16:], 0.5, atol=1e-6, err_msg=name)


def test_the_int8_file_keeps_the_layout_matrices_exact_in_half_the_bytes(models, trained):
    assert run(models, trained["data"], "--categories", "stance")[0] == 0
    int8 = onnx.load(models / "stance_int8.onnx")
    halves = {i.name: onnx.numpy_helper.to_array(i) for i in int8.graph.initializer
              if i.data_type == onnx.TensorProto.FLOAT16}
    assert len(halves) >= 10
    layout = [m.numpy() for m in model_lib.LAYOUT.values() if m.is_floating_point() and m.dim() == 2]
    for w in halves.values():      # each one is a layout matrix (or its negative), exactly
        assert any(w.shape == m.shape and np.abs(np.abs(w.astype(np.float32)) - np.abs(m)).max() == 0 for m in layout)
