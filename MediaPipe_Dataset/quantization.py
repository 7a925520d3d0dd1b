"""Dynamic INT8 quantization of a model of any kind, and its measurement against the FP32 model:
size, accuracy per input and per recording on the validation samples the training record
lists, agreement, inputs with missing points, single-input latency and batch throughput, all
measured in one run with the same session options. onnx, onnxruntime and numpy; quantize.py
prints what this measures.
"""
import hashlib
import json
import os
import time

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.shape_inference import quant_pre_process

from MediaPipe_Dataset import outputs, store
from MediaPipe_Dataset.evaluation import deciding
from MediaPipe_Dataset.model import LAYOUT
from MediaPipe_Dataset.samples import (CLASS_NAMES, KEYPOINT_NAMES, MIN_VISIBILITY, NUM_COORDS, DataError, Dataset,
                                       clip_scores, sample_digest)

WARMUP_RUNS = 50
THROUGHPUT_SECONDS = 0.5     # at least this long per model for the batch figure
QUANTIZATION = outputs.QUANTIZATION    # marks our INT8 files
DEFAULT_DATA_DIR = "MediaPipe_Dataset"     # without --data-dir and without a training record


class ModelError(Exception):
    """A problem with one model file, reported as one sentence."""


def check_model(path, kind, record):
    """Load an FP32 model made by train.py; raise ModelError if it is not one. Ours means: input
    `input` of the kind's shape (from the record's model config) and output `probabilities` of
    width 2, and the metadata train.py writes (the keypoint layout and class names of this
    version)."""
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
    try:
        expected = [list(kind.input_shape(record["model"]["config"])), [len(kind.classes)]]
    except (KeyError, TypeError):
        raise ModelError(f"{os.path.splitext(path)[0]}.json: the training record's model configuration is "
                         f"missing or damaged; retrain the model with train.py")
    if widths != expected:
        raise ModelError(f"{path}: not a pose model from train.py (input and output widths {widths[0]} and "
                         f"{widths[1]}; expected {expected[0]} and {expected[1]})")
    meta = {p.key: p.value for p in proto.metadata_props}
    try:
        ours = (json.loads(meta.get("keypoint_layout", "null")) == KEYPOINT_NAMES
                and json.loads(meta.get("class_names", "null")) == list(kind.classes))
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
    """Names of the initializers that are the layout's constant matrices (LAYOUT, or
    their negatives): sums and differences of coordinates, not learned weights."""
    layout = [m.numpy() for m in LAYOUT.values() if m.is_floating_point() and m.dim() == 2]
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


def session(path):
    """The same options for every model: one intra-op thread, all graph optimizations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def predict(sess, x):
    """One run on x as it is: what latency and throughput time."""
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
        return None, (f"validation accuracy skipped: {path} is not the training record of this model (SHA-1 "
                      f"differs: the record was edited, or the two come from different training runs)")
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
    if data_dir is None and record is None:      # where it was trained is in the record only
        return None, None, f"{note}, so its data folder is unknown; give --data-dir to measure it on all samples"
    if data_dir is None:
        data_dir = record.get("data_dir") or DEFAULT_DATA_DIR
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


def missing_point_check(sessions, paths, x):
    """FP32 and INT8 on the kind's parity inputs x (inputs with 1 to 4 points removed, gaps, and
    inputs with nothing to place): both must give finite probabilities summing to 1. Raises
    ModelError otherwise; returns how far INT8 is from FP32 on those inputs."""
    probs = [store.onnx_probabilities(s, x) for s in sessions]
    for path, p in zip(paths, probs):
        if not (np.isfinite(p).all() and np.allclose(p.sum(1), 1, atol=1e-4)):
            raise ModelError(f"{path}: gives probabilities that are not finite or do not sum to 1 "
                             f"for inputs with missing points")
    return {"n": len(x), "agreement": float((probs[0].argmax(1) == probs[1].argmax(1)).mean()),
            "max_probability_diff": float(np.abs(probs[0] - probs[1]).max())}


def accuracy_figures(sessions, kind, ds, val):
    """Accuracy of FP32 and INT8 per input of the kind (frame, window) on all samples and on the
    validation ones (val: their indices), per recording, and how far the two agree; None for
    what could not be measured. Also (all the inputs, the validation inputs) as Units, or None."""
    unmeasured = lambda: {"accuracy_all": None, "accuracy_val": None, "clip_accuracy_val": None}
    figures = {"fp32": unmeasured(), "int8": unmeasured(), "agreement": None, "max_probability_diff": None,
               "n_val": None, "n_all": None, "n_missing": None, "n_val_clips": None, "clips_changed": None}
    units = kind.units(kind.data(ds, np.arange(len(ds.y)))) if ds is not None else None
    if units is None or not len(units):
        return figures, None, None
    probs = [store.onnx_probabilities(s, units.x) for s in sessions]
    for key, p in zip(("fp32", "int8"), probs):
        figures[key]["accuracy_all"] = float((p.argmax(1) == units.y).mean())
    figures.update(agreement=float((probs[0].argmax(1) == probs[1].argmax(1)).mean()), n_all=len(units),
                   max_probability_diff=float(np.abs(probs[0] - probs[1]).max()),
                   n_missing=int(np.isnan(units.x.reshape(len(units), -1)).any(1).sum()))
    if val is None:
        return figures, units, None
    val_units = kind.units(kind.data(ds, val))
    verdicts = []
    for key, sess in zip(("fp32", "int8"), sessions):
        p = store.onnx_probabilities(sess, val_units.x)
        figures[key]["accuracy_val"] = float((p.argmax(1) == val_units.y).mean())
        truth, verdict = clip_scores(val_units.groups, val_units.y, p)
        figures[key]["clip_accuracy_val"] = float((truth == verdict).mean())
        verdicts.append(verdict)
    figures.update(n_val=len(val_units), n_val_clips=len(verdicts[0]),
                   clips_changed=int((verdicts[0] != verdicts[1]).sum()))
    return figures, units, val_units


def fault_samples(ds, val, note, kind):
    """(FaultView, its validation rows, note) for measuring a fault model; no view when the data
    names faults the model was not trained on."""
    from MediaPipe_Dataset.faults import FaultView, fault_names
    other = sorted(set(fault_names(ds)) - set(kind.classes))
    if other:
        return None, None, f"accuracy skipped: {ds.root} names faults the model was not trained on ({', '.join(other[:3])})"
    view = FaultView(ds, kind.classes)
    return view, (view.index(val) if val is not None else None), note


def int8_node_counts(path):
    """{"int8": matrix products run in INT8, "fp32": MatMul and Gemm nodes left in FP32}."""
    ops = [n.op_type for n in onnx.load(path).graph.node]
    return {"int8": sum(op in ("MatMulInteger", "DynamicQuantizeMatMul", "ConvInteger") for op in ops),
            "fp32": sum(op in ("MatMul", "Gemm") for op in ops)}


def compare(name, kind, record, fp32_path, int8_path, data_dir, runs, batch_size):
    """Measure both models of one kind; returns the figures for the report and --json."""
    sessions = [session(fp32_path), session(int8_path)]
    proto = onnx.load(fp32_path)
    ds, val, note = load_samples(data_dir, record.get("category", name), fp32_path, proto)
    if kind.base is not None and ds is not None:      # a fault model: the incorrect samples that name a fault
        ds, val, note = fault_samples(ds, val, note, kind)
    figures, units, val_units = accuracy_figures(sessions, kind, ds, val)
    for key, path in (("fp32", fp32_path), ("int8", int8_path)):
        figures[key] = {"size_bytes": os.path.getsize(path), **figures[key]}
    figures.update(category=name, kind=kind.name, note=note, unit=kind.unit, int8_nodes=int8_node_counts(int8_path),
                   advised_verdict=record.get("advised_verdict"), advice=record.get("advice"))
    if units is None:    # no samples: time on plausible inputs (a standing pose with noise)
        shape = kind.input_shape(record["model"]["config"])
        timing_x = np.random.default_rng(0).normal(0.5, 0.1, (64, *shape)).astype(np.float32)
    else:
        timing_x = np.ascontiguousarray(units.x, dtype=np.float32)
    check = val_units if val_units is not None else units
    check_x = kind.parity_inputs(check) if check is not None else timing_x
    figures["missing_check"] = missing_point_check(sessions, (fp32_path, int8_path), check_x)
    *lat, floor = latency_us(sessions + [call_floor_session(timing_x.shape[1:])], timing_x, runs)
    tput = throughput(sessions, timing_x, batch_size)
    figures["call_floor_p50_us"] = float(np.percentile(floor, 50))
    for key, t, tp in zip(("fp32", "int8"), lat, tput):
        figures[key]["latency_p50_us"] = float(np.percentile(t, 50))
        figures[key]["latency_p95_us"] = float(np.percentile(t, 95))
        figures[key]["throughput_per_s"] = float(tp)
    return figures


def goals(kind, f, others):
    """(goal, reached, measured figure) for the project's INT8 goals: the file size and, when
    measured, the validation accuracy, for every kind; then the kind's own."""
    fp, q = f["fp32"], f["int8"]
    size = 100 * q["size_bytes"] / fp["size_bytes"]
    rows = [("file at most 30% of FP32", size <= 30, f"{deciding(size, 30)}%")]
    if fp["accuracy_val"] is not None:
        change = 100 * (q["accuracy_val"] - fp["accuracy_val"])
        rows.append(("validation accuracy within 1 point of FP32", change >= -1,
                     f"{'+' if change >= 0 else '-'}{deciding(abs(change), 1)} points"))
    if kind.base is not None and f.get("n_val_clips"):
        agree = 100 * (1 - f["clips_changed"] / f["n_val_clips"])
        rows.append(("INT8 fault verdicts agree with FP32 on at least 99% of validation recordings", agree >= 99,
                     f"{deciding(agree, 99)}%"))
    return rows + kind.quantization_goals(f, others)


def record_sha1(path):
    """The training_record_sha1 in an ONNX file's metadata: the same in an FP32 model and the
    INT8 model quantized from it."""
    return {p.key: p.value for p in onnx.load(path).metadata_props}.get("training_record_sha1")


def is_our_int8(path):
    try:
        return any(p.key == "quantization" and p.value == QUANTIZATION for p in onnx.load(path).metadata_props)
    except Exception:      # unreadable or not ONNX: not ours
        return False
