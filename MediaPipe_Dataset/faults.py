"""Which fault: a fault model for every kind, without a second copy of either. A kind's fault
model is the same kind (fault_kind: its network, windows, training and export) whose classes
are a category's fault names, fitted on a FaultView of the dataset: its incorrect samples
that name a fault, labelled by their first fault, on the binary model's split. numpy only.
"""
import copy

import numpy as np

from MediaPipe_Dataset.samples import clip_verdicts, group_means, group_sums

MIN_FAULTS = 2              # a category gets fault models with at least this many faults,
MIN_RECORDINGS = 2          # each named in at least this many recordings
SUFFIX = "_fault"           # models/<category><kind suffix>_fault.pt, .onnx, .json


class FaultView:
    """The incorrect samples of a Dataset that name a fault, looking like a Dataset (X, y,
    groups, timestamps, files, ...) whose classes are `names`: y is the index of a sample's
    first fault; allowed (n, faults) marks every fault it names, for crediting a verdict on
    a sample that shows several. rows: their indices in the dataset."""

    def __init__(self, ds, names):
        self.rows = np.array([i for i, (y, f) in enumerate(zip(ds.y, ds.faults)) if y == 0 and f], dtype=int)
        self.names, self.category, self.root, self.has_clips = list(names), ds.category, ds.root, ds.has_clips
        self.X, self.groups, self.timestamps = ds.X[self.rows], ds.groups[self.rows], ds.timestamps[self.rows]
        self.files = [ds.files[i] for i in self.rows]
        self.subjects = [ds.subjects[i] for i in self.rows]
        self.faults = [ds.faults[i] for i in self.rows]
        self.y = np.array([self.names.index(f[0]) for f in self.faults], dtype=np.int64)
        self.allowed = np.array([[n in f for n in self.names] for f in self.faults], dtype=bool).reshape(-1, len(names))

    def index(self, ds_index):
        """The positions in this view of the dataset's samples ds_index that are in it."""
        return np.flatnonzero(np.isin(self.rows, ds_index))

    def recording_allowed(self, names):
        """(len(names), faults): every fault a frame of each recording names (none for a name
        that is not one of its recordings). One pass over the samples, not one per recording."""
        names = np.asarray(names)
        known, named, _ = group_sums(self.groups, self.allowed)
        at = np.searchsorted(known, names)
        hit = at < len(known)
        hit[hit] = known[at[hit]] == names[hit]
        return np.vstack([named, np.zeros((1, len(self.names)))])[np.where(hit, at, len(known))] > 0


def fault_names(ds):
    """The fault names of a dataset, in name order."""
    return sorted({name for faults in ds.faults for name in faults})


def problem(ds):
    """Why a category gets no fault model, one phrase; '' when its samples name no fault (it
    trains, prints and writes as before), None when it gets them."""
    counts, _ = ds.fault_counts()
    if not counts:
        return ""
    enough = [n for n, (_, recordings) in counts.items() if recordings >= MIN_RECORDINGS]
    if len(enough) < MIN_FAULTS:
        return (f"it needs {MIN_FAULTS} faults each named in {MIN_RECORDINGS} recordings and has "
                + ", ".join(f"{n} in {r}" for n, (_, r) in counts.items()))
    return None


def view(ds):
    """(the FaultView of ds, or None when it gets no fault model; problem(ds))."""
    why = problem(ds)
    return (FaultView(ds, fault_names(ds)) if why is None else None), why


def fault_kind(base, names):
    """The kind `base` (FrameKind, MotionKind) with the faults as its classes: named
    <base>_fault, its files <category><base suffix>_fault.*."""
    kind = copy.copy(base)
    kind.name, kind.suffix, kind.classes, kind.base = f"{base.name}_fault", f"{base.suffix}{SUFFIX}", list(names), base
    kind.title, kind.help = f"{base.title.replace(' model', '')} fault model", None
    return kind


def credited(view, keys, groups, pred, frames):
    """The share of verdicts pred that name one of the faults of their input: a frame's (keys:
    its rows in view), or a window's or recording's (groups: its recording)."""
    allowed = view.allowed[keys] if frames else view.recording_allowed(groups)
    return float(allowed[np.arange(len(pred)), pred].mean()) if len(pred) else float("nan")


def accuracy(v, view):
    """(per input, per recording) share of a fault Validation's verdicts that name one of the
    faults the input's frames name."""
    return (credited(view, v.units.keys, v.units.groups, v.probabilities.argmax(1), v.kind.frame_figures),
            credited(view, None, v.clip_names, v.clip_pred, False))


def recording_verdicts(v):
    """{recording: verdict} of a fault Validation: each recording's mean probabilities."""
    names, means = group_means(v.units.groups, v.probabilities)
    return {str(n): verdict(p, v.kind.classes) for n, p in zip(names, means)}


def cv_figures(scores, view, per_input):
    """A --cv fault Scores' figures: `mean` (per input, mean over folds) and `clip_mean` (per
    recording, out-of-fold) credited as in accuracy(), `macro_f1` on first faults, and the
    confusion by fault per recording (rows: its first fault)."""
    from sklearn.metrics import confusion_matrix, f1_score
    if scores.error or not scores.parts:
        return {"mean": None, "clip_mean": None, "macro_f1": None, "error": scores.error}
    folds = [credited(view, keys, groups, probs.argmax(1), per_input) for keys, groups, y, probs in scores.parts]
    keys, groups, y, probs = (np.concatenate(p) for p in zip(*scores.parts))
    names, inverse = np.unique(groups, return_inverse=True)
    verdicts = clip_verdicts(groups, probs)
    first = np.zeros(len(names), dtype=int)
    first[inverse] = y
    right = view.recording_allowed(names)[np.arange(len(names)), verdicts]
    labels = list(range(len(view.names)))
    return {"mean": round(float(np.mean(folds)), 6) if per_input else None,
            "clip_mean": round(float(right.mean()), 6), "n_clips": len(names),
            "macro_f1": round(float(f1_score(first, verdicts, labels=labels, average="macro", zero_division=0)), 6),
            "confusion": confusion_matrix(first, verdicts, labels=labels).tolist(), "error": None}


def verdict(probabilities, names):
    """'incorrect: hips too high (0.93)' for one input's fault probabilities."""
    best = int(np.argmax(probabilities))
    return f"incorrect: {names[best]} ({probabilities[best]:.2f})"
