"""Quantize every models/<category>.onnx to dynamic INT8 and report what changed, measured.

    python quantize.py
    python quantize.py --categories stance --per-channel --json report.json

Writes models/<category>_int8.onnx (via a temporary file; a failure leaves none behind) and
prints, per category, file sizes, accuracy of FP32 and INT8 on the validation samples that
train.py held out (listed in the model's metadata) and on all samples, and single-sample
latency and batch throughput of both, measured in this run with the same session options.
"""
import argparse
import glob
import hashlib
import json
import os
import signal
import sys
import time

from MediaPipe_Dataset import outputs  # standard library only: loads at once

if __name__ == "__main__":
    outputs.quiet_while_loading()

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

import train
from MediaPipe_Dataset import motion
from MediaPipe_Dataset.samples import (CLASS_NAMES, KEYPOINT_NAMES, MIN_VISIBILITY, NUM_COORDS, DataError, Dataset,
                                       clip_scores, sample_digest)

WARMUP_RUNS = 50
THROUGHPUT_SECONDS = 0.5     # at least this long per model for the batch figure
QUANTIZATION = outputs.QUANTIZATION    # marks our INT8 files
MAX_BATCH = 65536            # --batch-size bound: far past where throughput stops growing
DEFAULT_DATA_DIR = "MediaPipe_Dataset"     # without --data-dir and without a training record


class ModelError(Exception):
    """A problem with one model file, reported as one sentence."""


# ----------------------------------------------------------------------------- quantization
def find_models(models_dir):
    """{category: path} of every <category>.onnx (not *_int8.onnx, not temporary files)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(models_dir, "*.onnx"))):
        name = os.path.basename(path)[:-len(".onnx")]
        if name.endswith("_int8") or name.startswith("."):
            continue
        found[name] = path
    return found


def check_model(path):
    """Load an FP32 model made by train.py; raise ModelError if it is not one. Ours means: input
    `input` of width 28 and output `probabilities` of width 2, and the metadata train.py writes
    (the keypoint layout and class names of this version)."""
    try:
        proto = onnx.load(path)
        onnx.checker.check_model(proto)
    except Exception as e:   # onnx raises several unrelated types for corrupt files
        raise ModelError(f"{path}: not a valid ONNX model ({e.__class__.__name__})")
    inputs = [i.name for i in proto.graph.input]
    output_names = [o.name for o in proto.graph.output]
    if inputs != ["input"] or output_names != ["probabilities"]:
        raise ModelError(f"{path}: not a pose model from train.py (inputs {inputs}, outputs {output_names}; "
                         f"expected input 'input' and output 'probabilities')")
    widths = [[d.dim_value for d in v.type.tensor_type.shape.dim][1:] for v in (proto.graph.input[0],
                                                                               proto.graph.output[0])]
    meta = {p.key: p.value for p in proto.metadata_props}
    frames = meta.get("window_frames")            # a MotionClassifier's windows: [N, T, 28]
    expected = [[int(frames), NUM_COORDS] if frames and frames.isdigit() else [NUM_COORDS], [len(CLASS_NAMES)]]
    if widths != expected:
        raise ModelError(f"{path}: not a pose model from train.py (input and output widths {widths[0]} and "
                         f"{widths[1]}; expected {expected[0]} and [2])")
    try:
        ours = (json.loads(meta.get("keypoint_layout", "null")) == KEYPOINT_NAMES
                and json.loads(meta.get("class_names", "null")) == CLASS_NAMES)
    except ValueError:
        ours = False
    if not ours:
        raise ModelError(f"{path}: not a pose model from train.py (its metadata lacks this version's "
                         f"keypoint_layout and class_names); retrain it with train.py")
    return proto


def quantize(src, dst, per_channel):
    """Dynamic INT8 quantization with onnxruntime.quantization, written via temporary files.

    The model is first preprocessed (shape inference and ONNX Runtime's graph
    optimizations, which fold each batch norm into its MatMul), then its weights are
    stored as INT8; activations are quantized on the fly at run time. The FP32
    model's metadata (category, validation split, ...) is copied over.
    """
    folder = os.path.dirname(os.path.abspath(dst))
    temps = []
    try:
        for suffix in (".pre.onnx", ".int8.onnx"):
            temps.append(outputs.temp_path(folder, os.path.basename(dst) + suffix))
        pre, out = temps
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        # quantize_dynamic turns each Gemm into <name>_MatMul and an Add before quantizing
        exact = [name + suffix for name in feature_nodes(onnx.load(pre)) for suffix in ("", "_MatMul")]
        quantize_dynamic(pre, out, weight_type=QuantType.QInt8, per_channel=per_channel, nodes_to_exclude=exact)
        proto = onnx.load(out)
        store_layout_as_float16(proto)
        del proto.graph.value_info[:]       # shape notes for the quantizer; ONNX Runtime infers them again
        del proto.metadata_props[:]
        proto.metadata_props.extend(onnx.load(src).metadata_props)
        proto.metadata_props.add(key="quantization", value=QUANTIZATION)
        onnx.save(proto, out)
        os.replace(out, dst)
    finally:
        for temp in temps:
            if os.path.exists(temp):
                os.remove(temp)


def layout_weights(proto):
    """Names of the initializers that are the layout's constant matrices (train.LAYOUT, or
    their negatives): sums and differences of coordinates, not learned weights."""
    layout = [m.numpy() for m in train.LAYOUT.values() if m.is_floating_point() and m.dim() == 2]
    is_layout = lambda w: any(w.shape == m.shape and (np.array_equal(w, m) or np.array_equal(w, -m)) for m in layout)
    return {i.name for i in proto.graph.initializer if is_layout(onnx.numpy_helper.to_array(i))}


def feature_nodes(proto):
    """Names of the MatMuls and Gemms that compute the model's features from the keypoints
    (their weights are layout_weights). They stay FP32: INT8 would blur exact coordinate
    arithmetic, and they are too small to gain from it."""
    layout = layout_weights(proto)
    return [n.name for n in proto.graph.node if n.op_type in ("MatMul", "Gemm") and layout & set(n.input)]


def store_layout_as_float16(proto):
    """Store the layout's matrices as float16, cast back to float32 by a Cast node that ONNX
    Runtime folds away when it loads the model: half the bytes, nothing per call. Exact:
    their values are 0, +-1, 0.5, 2.5 and powers of two."""
    casts, layout = [], layout_weights(proto)
    for init in proto.graph.initializer:
        if init.name in layout:
            w = onnx.numpy_helper.to_array(init)
            assert np.array_equal(w.astype(np.float16).astype(np.float32), w)
            casts.append(onnx.helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=onnx.TensorProto.FLOAT))
            init.CopyFrom(onnx.numpy_helper.from_array(w.astype(np.float16), init.name + "_fp16"))
    nodes = casts + list(proto.graph.node)      # the casts before the nodes that use them
    del proto.graph.node[:]
    proto.graph.node.extend(nodes)


# ----------------------------------------------------------------------------- measurement
def session(path):
    """The same options for every model: one intra-op thread, all graph optimizations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def predict(sess, x):
    return sess.run(["probabilities"], {"input": x})[0]


def latency_us(sessions, x, runs):
    """Single-sample latency of each session in microseconds. Runs alternate between the
    models, so that both see the same machine load, and which model goes first alternates
    too (measured here: the second of two identical models timed ~3% slower)."""
    one = x[:1]
    for sess in sessions:
        for _ in range(WARMUP_RUNS):
            predict(sess, one)
    times = [[] for _ in sessions]
    order = list(range(len(sessions)))
    for _ in range(runs):
        for i in order:
            start = time.perf_counter_ns()
            predict(sessions[i], one)
            times[i].append((time.perf_counter_ns() - start) / 1000)
        order = order[1:] + order[:1]        # each model takes each place in turn
    return [np.array(t) for t in times]


def call_floor_session(frame_shape=(NUM_COORDS,)):
    """What one ONNX Runtime call costs at the least: a one-op model (Identity) with the same
    [N, 28] input ([N, T, 28] for a motion model) and the same session options, timed in the
    same loop as the models."""
    from onnx import TensorProto, helper
    shape = ["batch", *frame_shape]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["probabilities"])], "call_floor",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, shape)])
    return session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())


def throughput(sessions, x, batch_size):
    """Samples per second of each session on batches of batch_size, alternating rounds."""
    reps = int(np.ceil(batch_size / len(x)))
    batch = np.ascontiguousarray(np.tile(x, (reps,) + (1,) * (x.ndim - 1))[:batch_size])
    for sess in sessions:
        predict(sess, batch)
    elapsed, rounds, order = [0.0] * len(sessions), 0, list(range(len(sessions)))
    while rounds < 5 or min(elapsed) < THROUGHPUT_SECONDS:
        for i in order:
            start = time.perf_counter()
            predict(sessions[i], batch)
            elapsed[i] += time.perf_counter() - start
        order.reverse()
        rounds += 1
    return [rounds * batch_size / e for e in elapsed]


def training_record(fp32_path, proto):
    """(models/<category>.json that train.py wrote beside the model, or None; note)."""
    meta = {p.key: p.value for p in proto.metadata_props}
    path = os.path.join(os.path.dirname(fp32_path), meta.get("training_record", ""))
    if "training_record" not in meta or not os.path.isfile(path):
        return None, f"validation accuracy skipped: no training record {path or '<category>.json'} beside the model"
    with open(path, "rb") as f:
        text = f.read()
    if hashlib.sha1(text).hexdigest() != meta.get("training_record_sha1"):
        return None, f"validation accuracy skipped: {path} is not the training record of this model (SHA-1 differs)"
    try:
        return json.loads(text), None
    except ValueError:
        return None, f"validation accuracy skipped: {path} is not valid JSON"


def load_samples(data_dir, category, fp32_path, proto):
    """(dataset or None, val_index or None, note) for measuring accuracy; the dataset is read
    from data_dir, or when that is None from the folder the model was trained on (its
    training record's data_dir), with the visibility threshold the model was trained with."""
    meta = {p.key: p.value for p in proto.metadata_props}
    record, note = training_record(fp32_path, proto)
    if data_dir is None:
        data_dir = (record or {}).get("data_dir") or DEFAULT_DATA_DIR
    try:
        ds = Dataset(data_dir, category, float(meta.get("min_visibility", MIN_VISIBILITY)))
    except DataError as e:
        return None, None, f"accuracy skipped: {e}"
    if not len(ds.y):
        return None, None, f"accuracy skipped: no valid samples in {ds.root}"
    if record is None:
        return ds, None, note
    val_files = record.get("val_samples") or []
    if not val_files:
        return ds, None, "validation accuracy skipped: the training record lists no validation samples"
    index = {f: i for i, f in enumerate(ds.files)}
    missing = [f for f in val_files if f not in index]
    if missing:
        return ds, None, (f"validation accuracy skipped: {len(missing)} of the {len(val_files)} "
                          f"validation samples are no longer in {ds.root}")
    val = np.array([index[f] for f in val_files])
    changed = sum(sample_digest(ds.X[i]) != d for i, d in zip(val, record.get("val_sample_sha1", [])))
    if changed or len(record.get("val_sample_sha1", [])) != len(val):
        return ds, None, (f"validation accuracy skipped: {changed or 'some'} of the {len(val)} validation "
                          f"samples in {ds.root} differ from those the model was trained with (same names, "
                          f"other content: another dataset?)")
    return ds, val, None


def missing_point_check(sessions, paths, X):
    """FP32 and INT8 on X with 1 to 4 points removed and on rows with nothing to place
    (train.parity_inputs): both must give finite probabilities summing to 1. Raises
    ModelError otherwise; returns how far INT8 is from FP32 on those rows."""
    x = train.parity_inputs(X)[len(X):] if X.ndim == 2 else motion.parity_windows(X)[len(X):]
    probs = [predict(s, x) for s in sessions]
    for path, p in zip(paths, probs):
        if not (np.isfinite(p).all() and np.allclose(p.sum(1), 1, atol=1e-4)):
            raise ModelError(f"{path}: gives probabilities that are not finite or do not sum to 1 "
                             f"for inputs with missing points")
    return {"n": len(x), "agreement": float((probs[0].argmax(1) == probs[1].argmax(1)).mean()),
            "max_probability_diff": float(np.abs(probs[0] - probs[1]).max())}


def ratio_words(fp32, int8, what, higher_is_better):
    """'INT8 is 1.30x slower than FP32 per single sample on this machine', from two measured figures."""
    r = int8 / fp32 if higher_is_better else fp32 / int8      # > 1: INT8 is better
    if f"{r:.2f}" == "1.00":
        return f"INT8 is as fast as FP32 {what} on this machine (ratio 1.00)"
    factor = r if r > 1 else 1 / r
    return f"INT8 is {factor:.2f}x {'faster' if r > 1 else 'slower'} than FP32 {what} on this machine"


def accuracy_figures(sessions, ds, val):
    """Accuracy of FP32 and INT8 on all samples and on the validation ones (val: their
    indices), per frame and per recording, and how far the two agree; None for what
    could not be measured (no dataset, or no validation split)."""
    unmeasured = lambda: {"accuracy_all": None, "accuracy_val": None, "clip_accuracy_val": None}
    figures = {"fp32": unmeasured(), "int8": unmeasured(), "agreement": None, "max_probability_diff": None,
               "n_val": None, "n_all": None, "n_missing": None, "n_val_clips": None, "clips_changed": None}
    if ds is None:
        return figures
    probs = [predict(s, ds.X) for s in sessions]
    preds = [p.argmax(1) for p in probs]
    for key, pred in zip(("fp32", "int8"), preds):
        figures[key]["accuracy_all"] = float((pred == ds.y).mean())
    figures.update(agreement=float((preds[0] == preds[1]).mean()), n_all=len(ds.y),
                   max_probability_diff=float(np.abs(probs[0] - probs[1]).max()),
                   n_missing=int(np.isnan(ds.X).any(1).sum()))
    if val is not None:
        verdicts = [clip_scores(ds.groups[val], ds.y[val], p[val]) for p in probs]
        for key, pred, (truth, verdict) in zip(("fp32", "int8"), preds, verdicts):
            figures[key]["accuracy_val"] = float((pred[val] == ds.y[val]).mean())
            figures[key]["clip_accuracy_val"] = float((truth == verdict).mean())
        figures.update(n_val=len(val), n_val_clips=len(verdicts[0][0]),
                       clips_changed=int((verdicts[0][1] != verdicts[1][1]).sum()))
    return figures


def int8_node_counts(path):
    """{"int8": matrix products run in INT8, "fp32": MatMul and Gemm nodes left in FP32}."""
    ops = [n.op_type for n in onnx.load(path).graph.node]
    return {"int8": sum(op in ("MatMulInteger", "DynamicQuantizeMatMul", "ConvInteger") for op in ops),
            "fp32": sum(op in ("MatMul", "Gemm") for op in ops)}


def motion_window(proto):
    """(frames, frames per second) of a motion model, from its metadata; None for a frame model."""
    meta = {p.key: p.value for p in proto.metadata_props}
    return (int(meta["window_frames"]), float(meta["frame_rate"])) if "window_frames" in meta else None


def motion_accuracy_figures(sessions, ds, val, window):
    """accuracy_figures for a motion model: per window and per recording (the mean over the
    windows covering it), on all recordings and on the validation ones; also (windows to
    time, validation windows to check with missing points, or None)."""
    empty = {"accuracy_all": None, "accuracy_val": None, "clip_accuracy_val": None}
    figures = {"fp32": dict(empty), "int8": dict(empty), "agreement": None, "max_probability_diff": None,
               "n_val": None, "n_all": None, "n_missing": None, "n_val_clips": None, "clips_changed": None}
    if ds is None or not motion.recordings(ds):
        return figures, None, None
    recs = motion.recordings(ds)
    windows, owner = motion.verdict_windows(recs, *window)
    labels = np.array([r.label for r in recs])[owner]
    probs = [predict(s, windows) for s in sessions]
    for key, p in zip(("fp32", "int8"), probs):
        figures[key]["accuracy_all"] = float((p.argmax(1) == labels).mean())
    figures.update(agreement=float((probs[0].argmax(1) == probs[1].argmax(1)).mean()), n_all=len(windows),
                   max_probability_diff=float(np.abs(probs[0] - probs[1]).max()),
                   n_missing=int(np.isnan(windows).any((1, 2)).sum()))
    if val is None:
        return figures, windows, None
    val_recs = motion.recordings(ds, val)
    val_windows, val_owner = motion.verdict_windows(val_recs, *window)
    truth = np.array([r.label for r in val_recs])
    verdicts = []
    for key, sess in zip(("fp32", "int8"), sessions):
        p = predict(sess, val_windows)
        figures[key]["accuracy_val"] = float((p.argmax(1) == truth[val_owner]).mean())
        verdicts.append(motion.recording_probabilities(p, val_owner, len(val_recs)).argmax(1))
        figures[key]["clip_accuracy_val"] = float((verdicts[-1] == truth).mean())
    figures.update(n_val=len(val_windows), n_val_clips=len(val_recs),
                   clips_changed=int((verdicts[0] != verdicts[1]).sum()))
    return figures, windows, val_windows


def compare(category, fp32_path, int8_path, args):
    """Measure both models; returns the figures for the report and --json."""
    sessions = [session(fp32_path), session(int8_path)]
    proto = onnx.load(fp32_path)
    window = motion_window(proto)
    data_category = category[:-len("_motion")] if window else category
    ds, val, note = load_samples(args.data_dir, data_category, fp32_path, proto)
    if window:
        figures, timing_x, check_x = motion_accuracy_figures(sessions, ds, val, window)
    else:
        figures = accuracy_figures(sessions, ds, val)
        timing_x = ds.X if ds is not None else None
        check_x = ds.X[val] if val is not None else timing_x
    for key, path in (("fp32", fp32_path), ("int8", int8_path)):
        figures[key] = {"size_bytes": os.path.getsize(path), **figures[key]}
    figures.update(note=note, unit="windows" if window else "samples", window=window,
                   int8_nodes=int8_node_counts(int8_path))
    if timing_x is None:    # no samples: time on plausible inputs (a standing pose with noise)
        timing_x = np.random.default_rng(0).normal(0.5, 0.1, (64, *([window[0]] if window else []), NUM_COORDS))
    timing_x = np.ascontiguousarray(timing_x, dtype=np.float32)
    figures["missing_check"] = missing_point_check(sessions, (fp32_path, int8_path),
                                                  timing_x if check_x is None else check_x)
    *lat, floor = latency_us(sessions + [call_floor_session(timing_x.shape[1:])], timing_x, args.runs)
    tput = throughput(sessions, timing_x, args.batch_size)
    figures["call_floor_p50_us"] = float(np.percentile(floor, 50))
    for key, t, tp in zip(("fp32", "int8"), lat, tput):
        figures[key]["latency_p50_us"] = float(np.percentile(t, 50))
        figures[key]["latency_p95_us"] = float(np.percentile(t, 95))
        figures[key]["throughput_per_s"] = float(tp)
    return figures


# ----------------------------------------------------------------------------- report
def pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}%"


def print_report(category, f, args):
    fp, q = f["fp32"], f["int8"]
    print(f"\nCOMPARISON REPORT: {category.upper()} MODELS")
    print("=" * 60)
    print("File Size Comparison:")
    print(f"  Original: {fp['size_bytes'] / 1e6:.2f} MB ({fp['size_bytes']:,} bytes)")
    print(f"  Quantized: {q['size_bytes'] / 1e6:.2f} MB ({q['size_bytes']:,} bytes)")
    print(f"  Size Reduction: {100 * (1 - q['size_bytes'] / fp['size_bytes']):.1f}%")
    print_accuracy(f)
    print_speed(category, f, args)


def print_accuracy(f):
    fp, q = f["fp32"], f["int8"]
    print("\nAccuracy Comparison:")
    if f["note"]:
        print(f"  Note: {f['note']}")
    if f["n_all"] is not None:
        unit = f.get("unit", "samples")
        val = f"validation ({f['n_val']} held-out {unit})" if f["n_val"] else "validation"
        print(f"  {'':<10}{val:>34}{'all (' + str(f['n_all']) + ' ' + unit + ')':>22}")
        print(f"  {'Original':<10}{pct(fp['accuracy_val']):>34}{pct(fp['accuracy_all']):>22}")
        print(f"  {'Quantized':<10}{pct(q['accuracy_val']):>34}{pct(q['accuracy_all']):>22}")
        print(f"  Agreement: {100 * f['agreement']:.2f}% of {unit} get the same class; "
              f"largest probability difference {f['max_probability_diff']:.4f}")
        print(f"  {unit.capitalize()} with missing points: {f['n_missing']} of {f['n_all']} (included in the figures above)")
        if f["n_val_clips"] is not None:
            print(f"  Per recording (validation, {f['n_val_clips']} clips; verdict = highest mean probability "
                  f"over its {unit}): "
                  f"Original {pct(fp['clip_accuracy_val'])}, Quantized {pct(q['clip_accuracy_val'])}; "
                  f"{f['clips_changed']} recording(s) get a different verdict")
    m = f["missing_check"]
    odd = ("every other frame a gap, and 2 with nothing to place" if f.get("window")
           else "2 with no shoulder or hip")
    print(f"  Missing points: on {m['n']} inputs with 1 to 4 points removed (and {odd}), "
          f"both models give finite probabilities; agreement {100 * m['agreement']:.2f}%, "
          f"largest difference {m['max_probability_diff']:.4f}")


def print_speed(category, f, args):
    fp, q = f["fp32"], f["int8"]
    print(f"\nSpeed Comparison (ONNX Runtime {ort.__version__}, CPU, 1 intra-op thread, "
          f"{WARMUP_RUNS} warm-up runs, {args.runs} timed runs alternating between the models):")
    print(f"  {'':<10}{'latency p50':>14}{'latency p95':>14}{'batch ' + str(args.batch_size) + ' throughput':>28}")
    for name, m in (("Original", fp), ("Quantized", q)):
        print(f"  {name:<10}{m['latency_p50_us']:>11.1f} us{m['latency_p95_us']:>11.1f} us"
              f"{m['throughput_per_s']:>20,.0f} {f.get('unit', 'samples')}/s")
    floor = f["call_floor_p50_us"]
    print(f"  {'Call floor':<10}{floor:>11.1f} us   (a one-op model with the same input, timed in the same loop)")
    print("  " + ratio_words(fp["latency_p50_us"], q["latency_p50_us"], "per single sample (p50)", False) + ".")
    print("  " + ratio_words(fp["throughput_per_s"], q["throughput_per_s"],
                             f"in batches of {args.batch_size}", True) + ".")
    print(f"  Per single sample, FP32 takes {fp['latency_p50_us'] / floor:.1f}x and INT8 "
          f"{q['latency_p50_us'] / floor:.1f}x the time of ONNX Runtime's cheapest call.")
    single = "INT8" if q["latency_p50_us"] < fp["latency_p50_us"] else "FP32"
    batch = "INT8" if q["throughput_per_s"] > fp["throughput_per_s"] else "FP32"
    names = {"FP32": f"{category}.onnx", "INT8": f"{category}_int8.onnx"}
    smaller = fp["size_bytes"] / q["size_bytes"]
    q_nodes = f.get("int8_nodes") or {}
    if q_nodes:
        print(f"  In INT8: {q_nodes['int8']} matrix products; {q_nodes['fp32']} stay FP32 (the keypoint layout's, "
              f"kept exact)" + ("; the depthwise temporal convolutions are elementwise Mul and Add, which dynamic "
                                "quantization does not take, so they stay FP32 too" if f.get("window") else "") + ".")
    one = "one window at a time" if f.get("window") else "one frame at a time"
    print(f"  Deploy, by this run's figures: {names[single]} for {one}, {names[batch]} for "
          f"batches; the INT8 file is {smaller:.1f}x smaller.")
    if f.get("advised_verdict"):
        print(f"  Which verdict to trust (train.py's advice, from its validation recordings): "
              f"{'this motion model' if f['advised_verdict'] == 'motion' else 'the frame model vote'}; "
              f"{f['advice']}.")
    print("\nReference figures: the project's goals for INT8 against FP32, measured on its own 2-core "
          "machines. Other machines and loads give other speeds; a goal not reached here says nothing about "
          "your model's accuracy:")
    for target, met, figure in check_targets(f):
        print(f"  {'reached    ' if met else 'not reached'}  {target}: {figure}")


def deciding(value, goal):
    """value with as many decimals (2 to 6) as it takes not to print as the goal it misses or
    only just reaches: 1.6982 against 1.7 prints as 1.698, not 1.70."""
    for digits in range(2, 7):
        text = f"{value:.{digits}f}"
        if value == goal or float(text) != goal:
            break
    return text


def check_targets(f):
    """(goal, reached, measured figure) for the project's INT8 goals; accuracy only when measured."""
    fp, q = f["fp32"], f["int8"]
    size = 100 * q["size_bytes"] / fp["size_bytes"]
    rows = [("file at most 30% of FP32", size <= 30, f"{deciding(size, 30)}%")]
    if fp["accuracy_val"] is not None:
        change = 100 * (q["accuracy_val"] - fp["accuracy_val"])
        rows.append(("validation accuracy within 1 point of FP32", change >= -1,
                     f"{'+' if change >= 0 else '-'}{deciding(abs(change), 1)} points"))
    slow = q["latency_p50_us"] / fp["latency_p50_us"]
    speed = q["throughput_per_s"] / fp["throughput_per_s"]
    if f.get("window"):        # a motion model: issue 19's goals
        frame = f.get("frame_fp32_p50_us")
        if frame:
            ratio = fp["latency_p50_us"] / frame
            rows.append(("FP32 window p50 at most 10x the frame model's FP32 p50", ratio <= 10,
                         f"{deciding(ratio, 10)}x"))
        rows.append(("batch throughput at least 1.5x FP32", speed >= 1.5, f"{deciding(speed, 1.5)}x"))
        return rows
    rows.append(("single-sample p50 at most 1.2x FP32's", slow <= 1.2, f"{deciding(slow, 1.2)}x FP32's time"))
    rows.append(("batch throughput at least 1.7x FP32", speed >= 1.7, f"{deciding(speed, 1.7)}x"))
    floor = fp["latency_p50_us"] / f["call_floor_p50_us"]
    rows.append(("FP32 single-sample p50 at most 3x the call floor", floor <= 3, f"{deciding(floor, 3)}x"))
    return rows


def print_summary(results):
    print("\nSUMMARY")
    print("=" * 60)
    print(f"{'category':<12}{'model':<7}{'size MB':>9}{'val acc':>9}{'all acc':>9}{'p50 us':>9}{'samples/s':>12}")
    for category, f in results.items():
        for key in ("fp32", "int8"):
            m = f[key]
            print(f"{category:<12}{key.upper():<7}{m['size_bytes'] / 1e6:>9.3f}{pct(m['accuracy_val']):>9}"
                  f"{pct(m['accuracy_all']):>9}{m['latency_p50_us']:>9.1f}{m['throughput_per_s']:>12,.0f}")


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Quantize models/<category>.onnx to dynamic INT8 and compare "
                                            "size, accuracy and speed, measured. Relative paths are from the "
                                            "working directory.")
    p.add_argument("--models-dir", default="models",
                   help="folder of <category>.onnx from train.py (default: models)")
    p.add_argument("--data-dir", default=None,
                   help="dataset for the accuracy figures (default: the folder each model was trained on, "
                        f"from its training record; {DEFAULT_DATA_DIR} without a record)")
    p.add_argument("--categories", nargs="+", metavar="NAME", help="only these categories (default: all found)")
    p.add_argument("--per-channel", action="store_true",
                   help="one INT8 scale per output channel instead of per tensor (default: per tensor)")
    p.add_argument("--runs", type=int, default=1000, help="timed single-sample runs per model (default: 1000)")
    p.add_argument("--batch-size", type=int, default=1024,
                   help=f"batch size for the throughput figure, at most {MAX_BATCH} (default: 1024)")
    p.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file (default: none)")
    args = p.parse_args(argv)
    if not 1 <= args.runs <= 10 ** 6 or not 1 <= args.batch_size <= MAX_BATCH:
        p.error(f"--runs must be between 1 and 1000000 and --batch-size between 1 and {MAX_BATCH} "
                f"(a batch of {MAX_BATCH} already takes ~{MAX_BATCH * 28 * 4 / 1e6:.0f} MB of input)")
    return args


def chosen_models(args):
    """{category: FP32 path} to quantize; raises ModelError for none, or for a category asked
    for that has no model, and when --json names a file this run reads or writes."""
    models = find_models(args.models_dir)
    if args.categories:
        unknown = [c for c in dict.fromkeys(args.categories) if c not in models]
        if unknown:
            raise ModelError(f"{args.models_dir}: no model for {', '.join(unknown)} (found: "
                             f"{', '.join(models) or 'none'}); run `python train.py` for it first")
        models = {c: models[c] for c in dict.fromkeys(args.categories)}
    if not models:
        raise ModelError(f"no models found in {args.models_dir}; run `python train.py` first")
    if args.json:
        touched = [os.path.join(args.models_dir, f"{c}{end}") for c in models for end in (".onnx", ".json", "_int8.onnx")]
        outputs.check_report_path(args.json, touched, ModelError)
    return models


def main(argv=None):
    args = parse_args(argv)
    print("=== MediaPipe Pose Model Quantization ===\n")
    try:
        models = chosen_models(args)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for path in models.values():
        print(f"✓ Found {os.path.relpath(path)}")
    results, failed = {}, []
    try:
        with outputs.folder_lock(args.models_dir):      # train.py cannot replace a model meanwhile
            outputs.report_stale_temps(args.models_dir)
            for category, path in models.items():
                quantize_one(category, path, args, results, failed)
    except KeyboardInterrupt:
        print(f"\nInterrupted: INT8 models written for {', '.join(results) or 'none'}; the rest not written "
              f"(earlier files kept).", file=sys.stderr)
        return 130
    if results:
        print_summary(results)
    return outputs.finish(results, failed, args.json)


def quantize_one(category, path, args, results, failed):
    """Quantize, measure and report one model; a ModelError names it and adds it to failed."""
    target = os.path.join(args.models_dir, f"{category}_int8.onnx")
    try:
        check_model(path)
        if os.path.exists(target) and not is_our_int8(target):
            raise ModelError(f"{target}: exists and is not an INT8 model from quantize.py; not overwritten "
                             f"(rename it, or the category it belongs to)")
        print(f"\nQuantizing {os.path.relpath(path)}...")
        source = outputs.file_sha1(path)
        try:
            quantize(path, target, args.per_channel)
        except Exception as e:     # onnxruntime.quantization raises many types
            raise ModelError(f"{path}: quantization failed ({e.__class__.__name__}: {e})")
        print(f"Quantized model saved: {os.path.relpath(target)}")
        try:
            results[category] = compare(category, path, target, args)
            add_motion_context(category, path, results)
            if outputs.file_sha1(path) != source or record_sha1(path) != record_sha1(target):
                raise ModelError(f"{path}: changed while it was quantized (another train.py run?); "
                                 f"{target} removed, run quantize.py again")
        except ModelError:
            results.pop(category, None)
            os.remove(target)           # a model that failed its checks is not left behind
            raise
        print_report(category, results[category], args)
    except ModelError as e:
        print(f"error: {e}", file=sys.stderr)
        failed.append(category)


def add_motion_context(category, path, results):
    """For a motion model: the frame model's FP32 latency from this run (its goal is a ratio
    to it) and train.py's advice from the training record."""
    f = results[category]
    if not f.get("window"):
        return
    frame = results.get(category[:-len("_motion")])
    f["frame_fp32_p50_us"] = frame["fp32"]["latency_p50_us"] if frame else None
    record, _ = training_record(path, onnx.load(path))
    f["advised_verdict"], f["advice"] = (record or {}).get("advised_verdict"), (record or {}).get("advice")


def record_sha1(path):
    """The training_record_sha1 in an ONNX file's metadata: the same in an FP32 model and the
    INT8 model quantized from it."""
    return {p.key: p.value for p in onnx.load(path).metadata_props}.get("training_record_sha1")


def is_our_int8(path):
    try:
        return any(p.key == "quantization" and p.value == QUANTIZATION for p in onnx.load(path).metadata_props)
    except Exception:      # unreadable or not ONNX: not ours
        return False


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, outputs.terminate)
    sys.exit(main())
