"""Model kinds: the protocol every kind of model implements once, and the frame model's.

A kind (as an Ultralytics task in its task_map) is everything that differs between the frame
model and the motion model: its file suffix, whether a dataset can have it, its inputs,
building, fitting and judging, the verdicts per recording, what its ONNX file is checked on,
its metadata, its quantization goals and its --cv peers. Training, --cv, export, the report
and quantize.py loop over the registered kinds (registry.py) and never ask which one they
hold. The motion model's kind is in motion.py.
"""
import dataclasses

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone

from MediaPipe_Dataset import evaluation, training
from MediaPipe_Dataset.config import FrameNetConfig, as_dict
from MediaPipe_Dataset.model import NORMALIZATION, KeypointNormalizer, PoseClassifier, augment
from MediaPipe_Dataset.samples import CLASS_NAMES, KEYPOINT_NAMES, NUM_COORDS


@dataclasses.dataclass
class Units:
    """What a model judges, one row per input: x its inputs ((n, 28) frames or (n, T, 28)
    windows), y labels, groups the recording of each, times its time in its recording (a
    window's middle; NaN without), keys what identifies it across folds, poses (n, 28) the
    pose drawn for it in the report (a window's middle frame)."""
    x: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    times: np.ndarray
    keys: np.ndarray
    poses: np.ndarray

    def __len__(self):
        return len(self.y)


class Kind:
    """The protocol. Class attributes describe the kind; the methods are all the rest of the
    code asks of it. Subclasses: FrameKind (below), motion.MotionKind."""
    name = None            # registry key, --json key of its figures, record `kind`
    title = None           # "frame model", in sentences
    suffix = None          # models/<category><suffix>.pt, .onnx, .json
    unit = None            # what one input is: "frames", "windows"
    verdict = None         # --json's advised_verdict when this kind's verdict is advised
    vote_words = None      # its verdict per recording, in the advice's words
    model_class = None     # the nn.Module it trains
    frame_figures = False  # whether --cv gives it per-frame accuracy, F1 and points removed
    help = None            # --<name>/--no-<name>'s help text (for kinds after the first)
    parity_words = None    # what parity_inputs adds besides points removed, for quantize.py's report
    int8_note = None       # what of its graph dynamic INT8 leaves in FP32, besides the layout's products
    classes = CLASS_NAMES  # what its outputs are, in order (a fault model's: the fault names)
    base = None            # a fault model's: the kind it names the faults for (faults.fault_kind)

    def problem(self, ds, grouping, split=None):
        """None when this kind can be trained on ds under grouping (and, given, the split's
        (train, validation) indices), else why not, one phrase."""
        return None

    def warnings(self, ds):
        """Sentences about ds's samples this kind leaves out, and why; said before training."""
        return []

    def data(self, ds, index):
        """What fit and judge take: the samples `index` of ds in this kind's form."""
        raise NotImplementedError

    def build(self, window=None):
        """A new untrained model (window: the motion model's; others ignore it)."""
        raise NotImplementedError

    def fit(self, train, val, settings, log=None):
        """Train on data(train); val: data to keep an epoch by, or None (the last epoch).
        (model, history, kept epoch, batch size)."""
        raise NotImplementedError

    def judge(self, model, data, settings):
        """(Units, their (n, 2) probabilities): what the model judges of data."""
        units = self.units(data, model)
        return units, training.probabilities(model, units.x, settings.device)

    def units(self, data, model=None):
        raise NotImplementedError

    def predict_proba(self, model, data, settings):
        """(n, 2) probabilities of what --cv scores for data: per frame, or per recording."""
        return self.judge(model, data, settings)[1]

    def robustness(self, predict, units, seed):
        """{k: accuracy with k points removed} for a predict(x) -> classes, or None."""
        return None

    def parity_inputs(self, units):
        """The inputs its ONNX file must match PyTorch on, from validation Units."""
        raise NotImplementedError

    def input_shape(self, config):
        """One input's shape, from the model's config: (28,) or (T, 28)."""
        raise NotImplementedError

    def metadata(self, ds, model, settings):
        """What deployment needs in the ONNX file (training_record keys are added by store)."""
        return {"kind": self.name, "category": ds.category, "class_names": list(self.classes),
                "keypoint_layout": KEYPOINT_NAMES, "min_visibility": f"{settings.min_visibility:g}",
                "model_config": model.config}

    def config(self, model):
        """The configuration parts of a fitted model, for its record."""
        return {"network": model.config}

    def figures(self, v):
        """A normal run's --json figures of its Validation."""
        return {"val_accuracy": round(v.accuracy, 6), "val_clip_accuracy": round(v.clip_accuracy, 6),
                "n_val_clips": len(v.clip_true), "train_seconds": round(v.seconds, 3), "batch_size": v.batch_size}

    def cv_models(self, settings):
        """{name: estimator} that --cv compares for this kind: ours first, then the peers."""
        return {}

    def cv_fit(self, estimator, data):
        """A fitted clone of estimator (never the estimator itself: one model per fold)."""
        return clone(estimator).fit(data)

    def cv_predict(self, fitted, data):
        """(Units, (n, 2) probabilities, voted: whether they are one-hot predictions)."""
        return self.units(data), fitted.predict_proba(data), False

    def quantization_goals(self, figures, others):
        """[(goal, reached, measured figure)] of its INT8 model; others: the run's other
        figures by model name (for goals relative to another kind's)."""
        return []

    def paths_name(self, category):
        return f"{category}{self.suffix}"


class NetClassifier(ClassifierMixin, BaseEstimator):
    """A kind's own model behind fit / predict_proba on the kind's data, so that --cv compares it
    with the peers through the same calls. fit trains with `settings` (TrainingConfig) and keeps
    the last epoch: picking an epoch on the test fold would be peeking."""

    def __init__(self, kind=None, settings=None):
        self.kind, self.settings = kind, settings

    def fit(self, data, y=None):
        if y is not None:                       # scikit-learn's fit(X, y): frames
            data = frame_units(data, y)
        self.model_ = self.kind.fit(data, None, self.settings)[0]
        self.classes_ = np.arange(len(self.kind.classes))
        return self

    def predict_proba(self, data):
        if isinstance(data, np.ndarray):
            data = frame_units(data, np.zeros(len(data), dtype=np.int64))
        return self.kind.predict_proba(self.model_, data, self.settings)

    def predict(self, data):
        return self.predict_proba(data).argmax(1)


def every_class(probabilities, fitted, n):
    """(rows, n) probabilities of a fitted scikit-learn model, one column per class: a model
    fitted on a fold that lacks a class (a fault no training recording of the fold names) gives
    columns for the classes it saw only (its classes_), which would otherwise shift the rest."""
    classes = getattr(fitted, "classes_", None)
    if classes is None or probabilities.shape[1] == n:
        return probabilities
    full = np.zeros((len(probabilities), n))
    full[:, np.asarray(classes, dtype=int)] = probabilities
    return full


def frame_units(X, y, groups=None, times=None, keys=None):
    n = len(y)
    return Units(X, y, np.arange(n).astype(str) if groups is None else groups,
                 np.full(n, np.nan) if times is None else times, np.arange(n) if keys is None else keys, X)


class FrameKind(Kind):
    """PoseClassifier: one frame, [N, 28] -> [N, 2]; a recording's verdict is the class with the
    highest mean probability over its frames (the frame vote)."""
    name, title, suffix, unit = "frame", "frame model", "", "frames"
    verdict, vote_words, model_class, frame_figures = "frames", "the frame vote", PoseClassifier, True
    parity_words = "2 with a point half missing, and 2 with no shoulder or hip"

    def __init__(self, net=None):
        self.net = net or FrameNetConfig()

    def data(self, ds, index):
        return frame_units(ds.X[index], ds.y[index], ds.groups[index], ds.timestamps[index], np.asarray(index))

    def build(self, window=None):
        return PoseClassifier(num_classes=len(self.classes), **as_dict(self.net))

    def fit(self, train, val, settings, log=None):
        normalize = KeypointNormalizer()
        xt, yt = torch.from_numpy(normalize(train.x)), torch.from_numpy(train.y)
        validation = None
        if val is not None:
            removed = evaluation.remove_points(val.x, 2, np.random.default_rng(settings.seed))
            validation = (torch.from_numpy(normalize(val.x)), torch.from_numpy(val.y), torch.from_numpy(removed))
        return training.fit(self.build, lambda rng: (xt, yt), settings, augment, validation, log, "Frame model")

    def units(self, data, model=None):
        return data

    def robustness(self, predict, units, seed):
        return evaluation.accuracy_with_points_removed(predict, units.x, units.y, seed)

    def parity_inputs(self, units):
        return evaluation.parity_inputs(units.x)

    def input_shape(self, config):
        return (NUM_COORDS,)

    def metadata(self, ds, model, settings):
        return {**super().metadata(ds, model, settings),
                "normalization": NORMALIZATION + " (inside the model: feed raw keypoints)",
                "missing_points": "NaN (x and y); a row with no shoulder and no hip gives [0.5, 0.5]"}

    def figures(self, v):
        return {**super().figures(v), "n_train": v.n_train, "n_val": len(v.units),
                "val_accuracy_per_epoch": [round(h["val_acc"], 6) for h in v.history if "val_acc" in h], "best_epoch": v.best,
                "val_accuracy_points_removed": {str(k): round(a, 6) for k, a in (v.removed or {}).items()}}

    def cv_models(self, settings):
        return {"PoseClassifier": NetClassifier(self, settings),
                **evaluation.peers(settings.seed, KeypointNormalizer())}

    def cv_fit(self, estimator, data):
        return clone(estimator).fit(data.x, data.y)

    def cv_predict(self, fitted, data):
        if hasattr(fitted, "predict_proba"):
            return data, every_class(fitted.predict_proba(data.x), fitted, len(self.classes)), False
        return data, np.eye(len(self.classes))[fitted.predict(data.x)], True

    def quantization_goals(self, f, others):
        fp, q = f["fp32"], f["int8"]
        slow = q["latency_p50_us"] / fp["latency_p50_us"]
        speed = q["throughput_per_s"] / fp["throughput_per_s"]
        return [("single-sample p50 at most 1.2x FP32's", slow <= 1.2, f"{evaluation.deciding(slow, 1.2)}x FP32's time"),
                ("batch throughput at least 1.7x FP32", speed >= 1.7, f"{evaluation.deciding(speed, 1.7)}x")]
