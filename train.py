"""Train one correct-vs-incorrect pose classifier per category and export it.

    python train.py                      # every category in MediaPipe_Dataset/
    python train.py --categories stance --epochs 20
    python train.py --cv 5               # cross-validate against scikit-learn peers

Reads MediaPipe_Dataset/<category>/{correct,incorrect} <category>/*.json and writes
models/<category>.pt (state dict), models/<category>.onnx (softmax probabilities) and the
training record models/<category>.json (the model's configuration, the validation split,
the figures). Importing this file only defines things: `from train import PoseClassifier,
KeypointNormalizer` trains, prints and writes nothing. The sample contract (layout,
parsing, folders, recordings) is MediaPipe_Dataset/samples.py.
"""
import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import time
import warnings


from MediaPipe_Dataset import outputs  # standard library only: loads at once

if __name__ == "__main__":
    outputs.quiet_while_loading()

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin

from MediaPipe_Dataset import evaluation, motion, pictures
from MediaPipe_Dataset.motion import MotionNet, WindowStatistics  # noqa: F401  (re-exported)
from MediaPipe_Dataset.evaluation import REMOVED_POINTS, Scores, accuracy_with_points_removed, cv_folds, remove_points, split
from MediaPipe_Dataset.reports import (print_cv, print_cv_motion, print_files, print_motion, print_plan,
                                       print_report, print_statistics, print_validation, report_problems)
from MediaPipe_Dataset.samples import (  # noqa: F401  (re-exported: notebooks use them from train)
    CLASS_NAMES, KEYPOINT_NAMES, L_HIP, L_SHOULDER, MEDIAPIPE_33, MIN_VISIBILITY, MIRROR, NUM_COORDS, NUM_POINTS,
    R_HIP, R_SHOULDER, TORSO, DataError, Dataset, clip_scores, discover_categories, parse_keypoints,
    progress, sample_digest)

from MediaPipe_Dataset.model import (  # noqa: F401  (re-exported: notebooks and tests use them from train)
    JOINT_ANGLES, LAYOUT, NORMALIZATION, NUM_ANGLES, NUM_FEATURES, SHOULDER_WEIGHT, TORSO_MULTIPLIER,
    InvertedResidual, KeypointNormalizer, MotionClassifier, PoseClassifier, WithSoftmax, layout_matrices, load_model,
    masked_features, missing_mask, normalize_keypoints, normalize_with_mask, pose_features, present_points,
    AUG_JITTER, AUG_ROTATION_DEG, AUG_STRETCH, DROP_PATTERNS, augment, drop_points)


# ----------------------------------------------------------------------------- training
# Training that scales (chosen by cross-validation, README "Training on large datasets"):
# with --batch-size auto, the batch is 32 up to 32 x MAX_STEPS_PER_EPOCH samples and grows
# with the data beyond, so that an epoch stays MAX_STEPS_PER_EPOCH batches, up to
# MAX_AUTO_BATCH. Every epoch still sees every sample: training fewer samples per epoch was
# cheaper but less accurate on 100,000 frames.
MIN_AUTO_BATCH = 32
MAX_STEPS_PER_EPOCH = 250
# Label smoothing (chosen by cross-validation on Pose Trainer's real recordings, README "New
# people"): a frame of a bad repetition often looks like a good one, and hard 0/1 targets
# push the net to memorize such frames.
LABEL_SMOOTHING = 0.1
MAX_AUTO_BATCH = 512


def auto_batch_size(n, batch_size=None):
    """The batch size for n training samples: batch_size when given, else --batch-size auto's."""
    return batch_size or min(MAX_AUTO_BATCH, max(MIN_AUTO_BATCH, math.ceil(n / MAX_STEPS_PER_EPOCH)))


def make_batches(n, batch_size, generator):
    """Shuffled index batches covering 0..n-1 once; a last batch of one sample joins the one
    before it, since batch norm cannot train on a single sample."""
    order = torch.randperm(n, generator=generator)
    batches = list(torch.split(order, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def evaluate(model, x, y):
    """(loss, accuracy, predictions) of model on tensors x, y."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item(), logits.argmax(1)


def train_epoch(model, optimizer, scheduler, xt, yt, batch_size, gen, args, bar):
    """One pass over the training tensors in shuffled batches; (mean loss, accuracy)."""
    model.train()
    total_loss = correct = 0
    for idx in bar(make_batches(len(xt), batch_size, gen)):
        xb, yb = xt[idx], yt[idx]
        if args.augment:
            xb = augment(xb.cpu(), gen, args.drop_joints).to(xt.device)
        optimizer.zero_grad()
        logits = model(xb)
        loss = F.cross_entropy(logits, yb, label_smoothing=args.label_smoothing)
        loss.backward()
        optimizer.step()
        if scheduler:
            scheduler.step()
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == yb).sum().item()
    return total_loss / len(xt), correct / len(xt)


def kept_epoch(history):
    """The epoch a normal run keeps: the highest validation accuracy averaged with the epochs
    on either side, so that a one-epoch spike between two collapses is not kept (measured on
    the bundled execution data: 97.96% at epoch 10 between 67.35% and 81.63%). Ties, common
    on small validation sets, go to its own accuracy, then to the accuracy on the same frames
    with 2 random points removed (an early epoch can match a later one on whole frames and
    fall apart when points go missing: plank, 99.3% either way, 91% against 98% with 2
    points removed), then to the lowest validation loss, then to the earliest."""
    acc = [h["val_acc"] for h in history]
    smooth = [round(float(np.mean(acc[max(0, i - 1):i + 2])), 9) for i in range(len(acc))]
    return 1 + max(range(len(acc)), key=lambda i: (smooth[i], acc[i], history[i]["val_acc_2_removed"],
                                                   -history[i]["val_loss"], -i))


def fit(X_train, y_train, X_val, y_val, args, log=None):
    """Train a PoseClassifier; returns (model with the kept epoch's weights, history, kept epoch).

    With validation data the kept epoch is kept_epoch's (its weights deep-copied, not
    referenced); without, the last epoch.
    """
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    device = torch.device(args.device)
    model = PoseClassifier().to(device)
    normalize = KeypointNormalizer()
    xt, yt = torch.from_numpy(normalize(X_train)).to(device), torch.from_numpy(y_train).to(device)
    select = X_val is not None
    if select:
        xv, yv = torch.from_numpy(normalize(X_val)).to(device), torch.from_numpy(y_val).to(device)
        xv_removed = torch.from_numpy(remove_points(X_val, 2, np.random.default_rng(args.seed))).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    batch_size = auto_batch_size(len(xt), args.batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs * math.ceil(len(xt) / batch_size))
                 if args.schedule == "cosine" else None)
    history, states, best = [], [], args.epochs
    for epoch in range(1, args.epochs + 1):
        bar = lambda batches: progress(batches, desc=f"Epoch {epoch}/{args.epochs}", leave=False, unit="batch",
                                       disable_if=log is None)
        train_loss, train_acc = train_epoch(model, optimizer, scheduler, xt, yt, batch_size, gen, args, bar)
        record = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc}
        history.append(record)
        if not select:
            continue
        record["val_loss"], record["val_acc"], _ = evaluate(model, xv, yv)
        record["val_acc_2_removed"] = evaluate(model, xv_removed, yv)[1]
        if log:
            log(f"Epoch [{epoch}/{args.epochs}]:\n"
                f"  Train Loss: {train_loss:.4f}, Train Acc: {100 * train_acc:.2f}%\n"
                f"  Val Acc: {100 * record['val_acc']:.2f}% (with 2 points removed: "
                f"{100 * record['val_acc_2_removed']:.2f}%)")
        states.append(copy.deepcopy(model.state_dict()))
    if select:
        best = kept_epoch(history)
        model.load_state_dict(states[best - 1])
    model.eval()
    return model, history, best


def predict_probabilities(model, X, device="cpu"):
    """(N, 2) class probabilities for raw keypoints X (numpy), with a PoseClassifier in eval mode."""
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device))
    return F.softmax(logits, dim=1).cpu().numpy()


# ----------------------------------------------------------------------------- models compared
class NetClassifier(ClassifierMixin, BaseEstimator):
    """PoseClassifier behind scikit-learn's fit / predict_proba, so that --cv compares it with
    the peers through the same calls. fit trains with `settings` (train.py's flags) and
    keeps the last epoch: picking an epoch on the test fold would be peeking."""

    def __init__(self, settings=None):
        self.settings = settings

    def fit(self, X, y):
        self.model_ = fit(X, y, None, None, self.settings)[0]
        self.classes_ = np.arange(len(CLASS_NAMES))
        return self

    def predict_proba(self, X):
        return predict_probabilities(self.model_, X, self.settings.device)

    def predict(self, X):
        return self.predict_proba(X).argmax(1)


def compared_models(args):
    """Every model --cv compares, by the name it has in the table: ours first, then the peers."""
    return {"PoseClassifier": NetClassifier(args), **evaluation.peers(args.seed, KeypointNormalizer())}


# ----------------------------------------------------------------------------- export
def export_onnx(model, path, metadata, opset=17, frame_shape=(NUM_COORDS,)):
    """torch's ONNX exporter: input `input` [N, 28] float32 (frame_shape: [N, T, 28] for a
    MotionClassifier) -> `probabilities` [N, 2].

    Uses the TorchScript-based exporter (dynamo=False): for this small static graph it
    takes ~0.05 s, while the dynamo exporter (importing onnxscript, rebuilding its op
    registry on every call) made `python train.py` nearly twice as slow. The result is
    checked either way: onnx.checker, then ONNX Runtime against PyTorch.
    """
    import onnx
    wrapped = WithSoftmax(model).eval().cpu()
    example = torch.zeros(2, *frame_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # the exporter's deprecation notice
        torch.onnx.export(wrapped, (example,), path, input_names=["input"], output_names=["probabilities"],
                          dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
                          opset_version=opset, dynamo=False)
    proto = onnx.load(path)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, path)


def parity_inputs(X, seed=0):
    """What the export is checked on: the given samples, the same with 1 to 4 points
    removed, the first with a point half missing (x NaN) and with an infinite coordinate
    (both count as missing), and rows with nothing to place (all NaN, and only the nose)."""
    rng = np.random.default_rng(seed)
    odd = np.tile(X[:1], (2, 1))
    odd[0, 2 * 3], odd[1, 2 * 4 + 1] = np.nan, np.inf
    nose_only = np.full((1, NUM_COORDS), np.nan, dtype=np.float32)
    nose_only[0, :2] = 0.5
    return np.concatenate([X, *[remove_points(X, k, rng) for k in REMOVED_POINTS], odd[:len(X)],
                           np.full((1, NUM_COORDS), np.nan, dtype=np.float32), nose_only]).astype(np.float32)


def onnx_nodes(path):
    """Operator nodes in an ONNX file, without the Constant and Identity nodes the exporter
    adds (ONNX Runtime folds them away when it loads the model)."""
    import onnx
    return sum(n.op_type not in ("Constant", "Identity") for n in onnx.load(path).graph.node)


def onnx_parity(model, path, x):
    """Largest absolute difference between ONNX Runtime and PyTorch probabilities on x;
    inf when either gives a value that is not a finite probability."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    onnx_out = session.run(["probabilities"], {"input": x.astype(np.float32)})[0]
    with torch.no_grad():
        torch_out = F.softmax(model.cpu()(torch.from_numpy(x)), dim=-1).numpy()
    if not (np.isfinite(onnx_out).all() and np.isfinite(torch_out).all()):
        return math.inf
    return float(np.abs(onnx_out - torch_out).max())


def write_models(model, category, models_dir, metadata, record, X_check, name=None):
    """Write <name>.pt, <name>.onnx and the training record <name>.json (name: the category,
    or <category>_motion for its MotionClassifier, checked on windows X_check) via
    temporary files, renamed in place only once the ONNX model has passed the checker and
    matches PyTorch within 1e-5 on X_check and on X_check with points missing
    (parity_inputs). The three tell that they belong together: the record holds the .pt's
    SHA-1 (`weights_sha1`), the ONNX metadata the record's. Then an INT8 model quantized
    from an earlier model of the category is removed. Returns what was written, as a dict;
    failures are DataErrors, and earlier models stay."""
    name = name or category
    targets = {ext: os.path.join(models_dir, f"{name}{ext}") for ext in (".pt", ".onnx", ".json")}
    temps = {}
    try:
        for ext, target in targets.items():
            temps[ext] = outputs.temp_path(models_dir, os.path.basename(target))
        torch.save(model.state_dict(), temps[".pt"])
        record_text = json.dumps({**record, "weights_sha1": outputs.file_sha1(temps[".pt"])}, indent=1) + "\n"
        with open(temps[".json"], "w") as f:
            f.write(record_text)
        record_sha1 = hashlib.sha1(record_text.encode()).hexdigest()
        export_onnx(model, temps[".onnx"], {**metadata, "training_record": os.path.basename(targets[".json"]),
                                            "training_record_sha1": record_sha1}, frame_shape=X_check.shape[1:])
        diff = onnx_parity(model, temps[".onnx"], parity_inputs(X_check) if X_check.ndim == 2 else X_check)
        if not diff <= 1e-5:       # also catches NaN and inf
            raise DataError(f"{targets['.onnx']}: ONNX Runtime and PyTorch disagree by {diff:.2e} "
                            f"(more than 1e-5, or outputs not finite); models not written")
        for ext, target in targets.items():
            os.replace(temps.pop(ext), target)
        stale = outputs.remove_stale_int8(models_dir, name, record_sha1)
    except (OSError, RuntimeError) as e:       # torch.save reports a full disk as RuntimeError
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:120]
        raise DataError(f"{models_dir}: cannot write the {name} models ({reason}); earlier models kept")
    finally:
        for temp in temps.values():
            if os.path.exists(temp):
                os.remove(temp)
    return {"files": [targets[".pt"], targets[".onnx"]], "record": targets[".json"], "parity": diff,
            "nodes": onnx_nodes(targets[".onnx"]), "removed_int8": stale}


def finite_model(model):
    return all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


# ----------------------------------------------------------------------------- a normal run
@dataclasses.dataclass
class Validation:
    """What a normal run measured on its validation split."""
    val_idx: np.ndarray
    probabilities: np.ndarray     # (N, 2) of the validation samples
    accuracy: float
    clip_true: np.ndarray         # per recording (per sample without clips)
    clip_pred: np.ndarray
    removed: dict                 # {k: accuracy with k points removed}

    @property
    def clip_accuracy(self):
        return float((self.clip_true == self.clip_pred).mean())


def validate(model, ds, val_idx, args):
    """Measure a trained model on the validation samples; raise DataError if it diverged."""
    X_val, y_val = ds.X[val_idx], ds.y[val_idx]
    probabilities = predict_probabilities(model, X_val, args.device)
    if not (finite_model(model) and np.isfinite(probabilities).all()):
        raise DataError(f"{ds.category}: training diverged (weights or outputs are not finite; "
                        f"--lr {args.lr:g} may be too high); models not written, earlier ones kept")
    clip_true, clip_pred = clip_scores(ds.groups[val_idx], y_val, probabilities)   # without clips: per sample
    removed = accuracy_with_points_removed(lambda X: predict_probabilities(model, X, args.device).argmax(1),
                                           X_val, y_val, args.seed)
    return Validation(val_idx, probabilities, float((probabilities.argmax(1) == y_val).mean()),
                      clip_true, clip_pred, removed)


SETTINGS = ("epochs", "lr", "schedule", "batch_size", "val_split", "label_smoothing", "augment", "drop_joints",
            "min_visibility", "seed", "group_by", "motion")


def training_record(ds, args, model, v, best, grouping):
    """models/<category>.json: the model's configuration, which samples were held out, the
    figures and the settings."""
    return {
        "category": ds.category, "class_names": CLASS_NAMES, "data_dir": os.path.abspath(args.data_dir),
        "model": {"class": type(model).__name__, "config": model.config},
        "val_samples": [ds.files[i] for i in v.val_idx],
        "val_sample_sha1": [sample_digest(x) for x in ds.X[v.val_idx]],
        "val_accuracy": round(v.accuracy, 6), "val_clip_accuracy": round(v.clip_accuracy, 6),
        "n_val_clips": len(v.clip_true), "best_epoch": best, "split_warning": grouping.warning,
        "grouping": grouping.name, "n_subjects": grouping.n_subjects,
        "settings": {name: getattr(args, name) for name in SETTINGS},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }


def onnx_metadata(ds, args, model, grouping):
    """What deployment needs, in the ONNX file's metadata."""
    metadata = {
        "category": ds.category, "class_names": CLASS_NAMES, "keypoint_layout": KEYPOINT_NAMES,
        "normalization": NORMALIZATION + " (inside the model: feed raw keypoints)",
        "missing_points": "NaN (x and y); a row with no shoulder and no hip gives [0.5, 0.5]",
        "min_visibility": f"{args.min_visibility:g}", "model_config": model.config,
    }
    if grouping.warning:
        metadata["split_warning"] = grouping.warning
    return metadata


def train_category(ds, args):
    """Split, train, measure, export and report one category; returns its figures for --json."""
    train_idx, val_idx, grouping = split(ds, args.val_split, args.seed, args.group_by)
    print_plan(ds, args, len(train_idx), len(val_idx), auto_batch_size(len(train_idx), args.batch_size), grouping)
    start = time.perf_counter()
    model, history, best = fit(ds.X[train_idx], ds.y[train_idx], ds.X[val_idx], ds.y[val_idx], args, log=log)
    seconds = time.perf_counter() - start
    v = validate(model, ds, val_idx, args)
    print_validation(ds, args, v, best)
    written = write_models(model.cpu(), ds.category, args.models_dir, onnx_metadata(ds, args, model, grouping),
                           training_record(ds, args, model, v, best, grouping), ds.X[val_idx])
    model.to(args.device)
    print_files(written)
    result = run_json(len(train_idx), v, best, seconds, written["nodes"], grouping, history)
    motion_figures, motion_details = train_motion(ds, args, train_idx, v, grouping, seconds)
    return {**result, **motion_figures, **category_report(ds, args, v, history, best, train_idx, motion_details)}


def category_report(ds, args, v, history, best, train_idx, motion_details):
    """The suspect labels, and models/<category>_report.html unless --no-report; for --json."""
    suspects, own = evaluation.suspect_labels(ds, train_idx, args.seed, KeypointNormalizer())
    path = None
    if args.report:
        path = pictures.write(os.path.join(args.models_dir, f"{ds.category}_report.html"),
                              pictures.category_page(ds, v, history, best, suspects, own, motion_details))
    print_report(path, ds, suspects)
    return {"report": path, "suspect_labels": [ds.files[i] for i in suspects]}


# ----------------------------------------------------------------------------- the motion model
def motion_problem(ds, args, grouping):
    """None when this run can train a motion model for ds, else why not (one phrase)."""
    if not args.motion:
        return "--no-motion"
    if grouping.name == "none":
        return "--group-by none cuts recordings between training and validation, so windows would be on both sides"
    return motion.motion_problem(ds)


def frame_vote_accuracy(ds, v, names):
    """Per recording accuracy of the frame model's vote on the validation recordings `names`."""
    rows = np.isin(ds.groups[v.val_idx], names)
    truth, verdict = clip_scores(ds.groups[v.val_idx][rows], ds.y[v.val_idx][rows], v.probabilities[rows])
    return float((truth == verdict).mean())


def measure_motion(model, ds, v, val_recs, args):
    """(windows, their probabilities, owner, the motion model's validation figures beside the
    frame vote on the same recordings)."""
    windows, owner = motion.verdict_windows(val_recs)
    probs = motion.window_probabilities(model, windows)
    if not (finite_model(model) and np.isfinite(probs).all()):
        raise DataError(f"{ds.category}: training the motion model diverged (weights or outputs are not finite; "
                        f"--lr {args.lr:g} may be too high); motion model not written")
    labels = np.array([r.label for r in val_recs])
    verdicts = motion.recording_probabilities(probs, owner, len(val_recs)).argmax(1)
    return windows, probs, owner, {"val_window_accuracy": round(float((probs.argmax(1) == labels[owner]).mean()), 6),
                     "n_val_windows": len(windows), "val_clip_accuracy": round(float((verdicts == labels).mean()), 6),
                     "n_val_clips": len(val_recs),
                     "frame_vote_clip_accuracy": round(frame_vote_accuracy(ds, v, [r.name for r in val_recs]), 6)}


def motion_files(ds, args, model, v, figures, grouping):
    """(ONNX metadata, training record) of a category's motion model."""
    window = {"window_frames": motion.MOTION_FRAMES, "frame_rate": motion.MOTION_FPS,
              "stride": motion.MOTION_FRAMES // 4, "gap_tolerance_s": motion.GAP_TOLERANCE_S}
    metadata = {"category": ds.category, "class_names": CLASS_NAMES, "keypoint_layout": KEYPOINT_NAMES,
                "input": f"[N, {motion.MOTION_FRAMES}, 28]: windows of {motion.MOTION_FRAMES} frames at "
                         f"{motion.MOTION_FPS:g} per second, raw keypoints",
                "normalization": NORMALIZATION + " (inside the model, per frame: feed raw keypoints)",
                "missing_points": "NaN (x and y); a window with no frame to place gives [0.5, 0.5]",
                "min_visibility": f"{args.min_visibility:g}", "model_config": model.config, **window}
    record = {"category": ds.category, "class_names": CLASS_NAMES, "data_dir": os.path.abspath(args.data_dir),
              "model": {"class": type(model).__name__, "config": model.config}, "window": window,
              "val_samples": [ds.files[i] for i in v.val_idx],
              "val_sample_sha1": [sample_digest(x) for x in ds.X[v.val_idx]], **figures,
              "grouping": grouping.name, "settings": {name: getattr(args, name) for name in SETTINGS},
              "versions": {"torch": torch.__version__, "numpy": np.__version__}}
    return metadata, record


def train_motion(ds, args, train_idx, v, grouping, frame_seconds):
    """Train, measure, export and report the category's MotionClassifier on the frame model's
    split, or say in one line why it has none. Returns (its figures and the advice for --json,
    what the report shows of it or None)."""
    problem = motion_problem(ds, args, grouping)
    train_recs, val_recs = motion.recordings(ds, train_idx), motion.recordings(ds, v.val_idx)
    if problem is None and (not val_recs or len({r.label for r in train_recs}) < 2):
        problem = "its split leaves no timed recording to validate on, or one class only to train on"
    if problem:
        print(f"\nNo motion model for {ds.category}: {problem}.")
        return {"motion": None, "motion_skipped": problem, "advised_verdict": "frames"}, None
    start = time.perf_counter()
    model, _ = motion.fit_motion(train_recs, args, log=log)
    seconds = time.perf_counter() - start
    windows, probs, owner, figures = measure_motion(model, ds, v, val_recs, args)
    verdict, why = motion.advice(figures["frame_vote_clip_accuracy"], figures["val_clip_accuracy"], len(val_recs))
    figures.update(train_seconds=round(seconds, 3), advised_verdict=verdict, advice=why)
    metadata, record = motion_files(ds, args, model, v, figures, grouping)
    written = write_models(model, ds.category, args.models_dir, metadata, record,
                           motion.parity_windows(windows[:64]), name=f"{ds.category}_motion")
    print_motion(ds, figures, frame_seconds, written)
    return ({"motion": {**figures, "onnx_nodes": written["nodes"]}, "advised_verdict": verdict, "advice": why},
            motion_pictures(val_recs, windows, probs, owner))


def motion_pictures(recs, windows, probs, owner):
    """For the report: each validation recording's windows (middles, P(correct)), and the
    windows most confidently misjudged, as their middle frames with captions."""
    middles = np.concatenate([motion.verdict_starts(r, motion.MOTION_FRAMES, motion.MOTION_FPS) for r in recs])
    middles = middles + (motion.MOTION_FRAMES - 1) / (2 * motion.MOTION_FPS)
    labels = np.array([r.label for r in recs])[owner]
    wrong = np.flatnonzero(probs.argmax(1) != labels)
    wrong = wrong[np.argsort(-probs[wrong].max(1), kind="stable")][:pictures.MAX_POSES]
    return {"windows": {r.name: (middles[owner == i], probs[owner == i, 1]) for i, r in enumerate(recs)},
            "wrong": [(windows[w, motion.MOTION_FRAMES // 2], f"{recs[owner[w]].name[-28:]} at "
                       f"{middles[w]:.1f} s\n{CLASS_NAMES[labels[w]]}, judged {CLASS_NAMES[1 - labels[w]]} "
                       f"({probs[w].max():.2f})") for w in wrong]}


def run_json(n_train, v, best, seconds, nodes, grouping, history):
    """A normal run's figures of one category, for --json."""
    return {"n_train": n_train, "n_val": len(v.val_idx), "val_accuracy": round(v.accuracy, 6),
            "val_accuracy_per_epoch": [round(h["val_acc"], 6) for h in history],
            "val_clip_accuracy": round(v.clip_accuracy, 6), "n_val_clips": len(v.clip_true),
            "best_epoch": best, "train_seconds": round(seconds, 3), "onnx_nodes": nodes,
            "val_accuracy_points_removed": {str(k): round(a, 6) for k, a in v.removed.items()},
            "warning": grouping.warning, "grouping": grouping.name, "n_subjects": grouping.n_subjects}


def log(text):
    from tqdm import tqdm
    tqdm.write(text)


# ----------------------------------------------------------------------------- cross-validation
def cross_validate(ds, args):
    """({model name: Scores} on identical folds, the folds, their Grouping, seconds): frame
    accuracy and macro F1 per fold, out-of-fold probabilities for the verdicts per recording,
    time spent fitting and predicting, and accuracy with random points removed. A model that
    cannot be fitted or used on a fold (a peer on too few samples) keeps the reason and is left out
    of the later folds; the others go on."""
    from sklearn.base import clone
    fold_list, grouping = cv_folds(ds, args.cv, args.seed, args.group_by)
    if grouping.warning:
        print(f"warning: {ds.root}: {grouping.warning}", file=sys.stderr)
    models = compared_models(args)
    scores = {name: Scores() for name in models}
    start = time.perf_counter()
    for fold, (train, test) in enumerate(progress(fold_list, desc=f"{ds.category} folds", unit="fold")):
        for name, model in models.items():
            if scores[name].error:
                continue
            began = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")    # e.g. a coordinate never seen in this fold
                    fitted = clone(model).fit(ds.X[train], ds.y[train])
                scores[name].add_fold(fitted, ds, train, test, args.seed * 1000 + fold, began)
            except ValueError as e:    # e.g. KNeighbors with fewer training samples than neighbours
                scores[name].error = f"fold {fold + 1}: {str(e).splitlines()[0][:160]}"
    return scores, fold_list, grouping, time.perf_counter() - start


def cross_validate_motion(ds, args, fold_list, grouping):
    """({name: MotionScores} of the models that judge windows, on the frame models' folds,
    or {} when the category has no motion model; the reason or None)."""
    problem = motion_problem(ds, args, grouping)
    if problem:
        return {}, problem
    models = motion.sequence_models(args)
    scores = {name: motion.MotionScores() for name in models}
    for fold, (train, test) in enumerate(progress(fold_list, desc=f"{ds.category} motion folds", unit="fold")):
        train_recs, test_recs = motion.recordings(ds, train), motion.recordings(ds, test)
        for name, model in models.items():
            if not scores[name].error and test_recs:
                try:
                    scores[name].add_fold(model, train_recs, test_recs)
                except ValueError as e:      # e.g. one class only in a fold's training recordings
                    scores[name].error = f"fold {fold + 1}: {str(e).splitlines()[0][:160]}"
    return scores, None


def cv_category(ds, args):
    """Cross-validate one category, print the tables; returns its figures for --json."""
    scores, fold_list, grouping, seconds = cross_validate(ds, args)
    print_cv(ds, args, scores, fold_list, grouping, seconds)
    motion_scores, problem = cross_validate_motion(ds, args, fold_list, grouping)
    print_cv_motion(ds, scores, motion_scores, problem)
    result = evaluation.scores_json(scores, ds, grouping)
    for name, s in motion_scores.items():
        result[name] = {**motion.motion_json(s), "grouping": grouping.name, "n_subjects": grouping.n_subjects}
    return result


# ----------------------------------------------------------------------------- main
def batch_size_type(text):
    """--batch-size: "auto" (None) or a whole number."""
    if text == "auto":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number, got {text!r}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Train one correct-vs-incorrect pose classifier per category "
                                            "and export it to PyTorch and ONNX. Relative paths are from the "
                                            "working directory.")
    p.add_argument("--data-dir", default="MediaPipe_Dataset",
                   help="folder of <category>/{correct,incorrect} <category>/*.json (default: MediaPipe_Dataset)")
    p.add_argument("--models-dir", default="models",
                   help="where <category>.pt, .onnx and .json are written (default: models)")
    p.add_argument("--categories", nargs="+", metavar="NAME",
                   help="train only these categories (default: every category found in --data-dir)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default: 30)")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam peak learning rate (default: 5e-3)")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="cosine",
                   help="learning-rate schedule: constant, or cosine decay to 0 over the run (default: cosine)")
    p.add_argument("--batch-size", type=batch_size_type, default=None, metavar="N",
                   help=f"training batch size; auto: {MIN_AUTO_BATCH}, growing with the data beyond "
                        f"{MIN_AUTO_BATCH * MAX_STEPS_PER_EPOCH:,} training samples so that an epoch stays "
                        f"{MAX_STEPS_PER_EPOCH} batches, up to {MAX_AUTO_BATCH} (default: auto)")
    p.add_argument("--val-split", type=float, default=0.2, help="validation fraction (default: 0.2)")
    p.add_argument("--group-by", choices=["auto", "subject", "clip", "none"], default="auto",
                   help="what the validation split and --cv folds keep whole: people (the samples' `subject`), "
                        "recordings (`clip`) or nothing; auto: the coarsest the data has (default: auto)")
    p.add_argument("--label-smoothing", type=float, default=LABEL_SMOOTHING, metavar="E",
                   help="label smoothing of the training loss: targets 1 - E/2 and E/2 instead of 1 and 0 "
                        f"(default: {LABEL_SMOOTHING:g})")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="mirror (left/right swapped), rotate, stretch and jitter training batches (default: on)")
    p.add_argument("--drop-joints", type=float, default=0.25, metavar="P",
                   help="joint dropout: the probability that a training sample loses points the way real "
                        "recordings do (random points, a limb, a side, the legs or the arms); 0 turns it off, "
                        "and so does --no-augment (default: 0.25)")
    p.add_argument("--min-visibility", type=float, default=MIN_VISIBILITY, metavar="V",
                   help="a landmark whose visibility (33-landmark rows, or a sample's `visibility` list) is "
                        f"below V counts as missing; 0 keeps every guess (default: {MIN_VISIBILITY:g})")
    p.add_argument("--seed", type=int, default=0, help="random seed for split, weights and shuffling (default: 0)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto: cuda when available)")
    p.add_argument("--strict", action="store_true", help="treat any invalid sample as an error (default: skip it)")
    p.add_argument("--motion", action=argparse.BooleanOptionalAction, default=True,
                   help="also train <category>_motion, a MotionClassifier on windows of each recording, when the "
                        "samples have clips and timestamps and enough recordings are long enough (default: on)")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=None,
                   help="write models/<category>_report.html (training curves, confusion matrices, recordings over "
                        "time, the poses misjudged, suspect labels); with --cv, models/cv_report.html "
                        "(default: on for a normal run, off with --cv)")
    p.add_argument("--cv", type=int, metavar="K", default=0,
                   help="K-fold cross-validation against scikit-learn peers instead of training models "
                        "(default: off; writes no models)")
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file (default: none)")
    return check_args(p, p.parse_args(argv))


def check_args(p, args):
    """parse_args's checks of the values: p.error (exit 2) with one sentence."""
    if args.epochs < 1 or (args.batch_size is not None and args.batch_size < 2) or not 0 < args.lr < math.inf:
        p.error("--epochs must be >= 1, --batch-size >= 2 and --lr a number > 0")
    if not 0 <= args.seed < 2 ** 32:
        p.error("--seed must be between 0 and 2**32 - 1 (scikit-learn's limit)")
    if not 0 < args.val_split < 1:
        p.error("--val-split must be between 0 and 1")
    if not 0 <= args.drop_joints <= 1 or not 0 <= args.min_visibility <= 1 or not 0 <= args.label_smoothing < 1:
        p.error("--drop-joints and --min-visibility must be between 0 and 1, --label-smoothing at least 0 and below 1")
    if args.cv == 1 or args.cv < 0:
        p.error("--cv needs K >= 2")
    if args.report is None:
        args.report = not args.cv
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
        p.error(f"--device {args.device}: not available here (use auto, cpu or cuda)")
    return args


def chosen_categories(args):
    """The categories to train or cross-validate, each once; raises DataError."""
    categories = discover_categories(args.data_dir)
    if args.categories:
        unknown = [c for c in args.categories if c not in categories]
        if unknown:
            raise DataError(f"{args.data_dir}: no category {', '.join(unknown)} (found: {', '.join(categories)})")
        categories = list(dict.fromkeys(args.categories))
    return categories


def check_outputs(args, categories):
    """Before any training: the models folder can be written, and --json is not one of the
    files this run writes. Raises DataError."""
    if not args.cv or args.report:
        outputs.check_writable(args.models_dir, DataError, "models" if not args.cv else "the report")
    if args.json:
        written = [os.path.join(args.models_dir, "cv_report.html")] if args.cv else [
            os.path.join(args.models_dir, f"{c}{kind}{end}") for c in categories for kind in ("", "_motion")
            for end in (".pt", ".onnx", ".json", "_int8.onnx", "_report.html")]
        outputs.check_report_path(args.json, written, DataError)


def load_datasets(args, categories, failed):
    """The Dataset of each category, largest first; a category that cannot be read is named
    and added to failed."""
    datasets = []
    for category in categories:
        try:
            if category.endswith(("_int8", "_motion")):
                # quantize.py writes <category>_int8.onnx, train.py <category>_motion: the names would collide
                raise DataError(f"{os.path.join(args.data_dir, category)}: a category name may not end in "
                                f"_{category.rsplit('_', 1)[1]} (quantize.py names its models <category>_int8, "
                                f"train.py its motion models <category>_motion); rename the folder")
            datasets.append(Dataset(args.data_dir, category, args.min_visibility))
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failed.append(category)
    return sorted(datasets, key=lambda d: (-len(d.y), d.category))


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)  # these models are tiny: one thread is faster and deterministic
    try:
        categories = chosen_categories(args)
        check_outputs(args, categories)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("=== MediaPipe Pose Classification Training ===\n")
    failed, results, current = [], {}, None
    try:
        # One run at a time writes a models folder: two runs mixed their .pt, .onnx and .json.
        with contextlib.nullcontext() if args.cv else outputs.folder_lock(args.models_dir):
            if not args.cv:
                outputs.report_stale_temps(args.models_dir)
            datasets = load_datasets(args, categories, failed)
            print_statistics(datasets)
            for ds in datasets:
                current = ds.category
                try:
                    report_problems(ds, args.strict)
                    results[ds.category] = cv_category(ds, args) if args.cv else train_category(ds, args)
                except DataError as e:
                    print(f"error: {e}", file=sys.stderr)
                    failed.append(ds.category)
    except KeyboardInterrupt:
        done = ", ".join(results) or "none"
        what = "cross-validated" if args.cv else "models written"
        print(f"\nInterrupted{' during ' + current if current else ''}: {what}: {done}; "
              f"{'the rest not measured' if args.cv else 'the rest not written, their earlier models kept'}"
              f"{'' if args.cv or not args.json else '; no JSON report'}.", file=sys.stderr)
        return 130
    if args.cv and args.report and results:
        path = pictures.write(os.path.join(args.models_dir, "cv_report.html"),
                              pictures.cv_page(results, evaluation.REMOVED_POINTS))
        print(f"Report: {path} (accuracy per model per frame and per recording, and with points removed)")
    return outputs.finish(results, failed, args.json)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)     # libraries loaded: Ctrl-C cleans up
    signal.signal(signal.SIGTERM, outputs.terminate)
    sys.exit(main())
