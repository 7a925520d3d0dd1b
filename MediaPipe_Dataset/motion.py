"""Movements: recordings as time series, the windows the motion model judges, its kind
(MotionKind), the window-statistics peer, and verdicts per recording (torch, numpy,
scikit-learn).

A recording is the frames of one clip (samples.recording_groups: class folder and clip),
ordered by `timestamp`. The models see it resampled to a fixed rate (WindowConfig.fps):
each instant takes the nearest frame, or nothing (all NaN, a gap) when no frame is within
gap_tolerance_s. Duplicate timestamps keep the first frame in file order; frames out of
order are sorted; frames without a timestamp are left out of the recording. A window is
`frames` consecutive instants; a recording shorter than a window is padded at its end
with all-NaN frames (past its last frame's tolerance), which the model reads as "nothing
seen". A recording's verdict is the mean probability over windows a quarter window apart
that cover it, the last one ending at its end. Caution: where one class's recordings are
much shorter than the other's, the padding tells the model which is which, and it may
learn the length rather than the movement.
"""
import dataclasses
import math
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator

from MediaPipe_Dataset import evaluation, training
from MediaPipe_Dataset.config import MotionNetConfig, WindowConfig, as_dict, from_dict
from MediaPipe_Dataset.kinds import Kind, NetClassifier, Units, every_class
from MediaPipe_Dataset.model import (NORMALIZATION, MotionClassifier, augment, drop_points, normalize_keypoints,
                                     pose_features)
from MediaPipe_Dataset.samples import CLASS_NAMES, NUM_COORDS, NUM_POINTS

WINDOW = WindowConfig()       # the defaults; a fitted model's own window is window_of(model)


@dataclasses.dataclass
class Recording:
    """One recording: its name (group), label, frame times in seconds from its first (sorted,
    unique) and keypoints (frames, 28), raw or normalized, NaN where missing; start and end,
    its first and last timestamps as the samples give them; duplicates, its frames left out
    for sharing a timestamp with an earlier one."""
    name: str
    label: int
    times: np.ndarray
    X: np.ndarray
    start: float = 0.0
    end: float = None
    duplicates: int = 0

    def instants(self, fps=None):
        """How many instants at fps (default WindowConfig's) the recording spans."""
        return int(math.floor(self.times[-1] * (fps or WINDOW.fps) + 1e-6)) + 1

    def gap_share(self, tolerance=WINDOW.gap_tolerance_s):
        """The share of the recording's span with no frame within tolerance (1 when its span is
        past float range, as when one timestamp is 1e308 and another -1e308)."""
        span = self.times[-1]
        if not math.isfinite(span):
            return 1.0
        return float(np.maximum(np.diff(self.times) - 2 * tolerance, 0).sum() / span) if span > 0 else 0.0

    def described(self, window=WINDOW):
        """Its span, frames and gaps, in words."""
        return (f"{self.name} spans {self.start:g} to {self.end:g} s with {len(self.times)} frames, "
                f"{100 * self.gap_share(window.gap_tolerance_s):.0f}% gaps")

    def in_milliseconds(self):
        """Whether its times look like milliseconds: frames a median 1 to 1000 "seconds" apart."""
        return len(self.times) > 1 and 1 <= float(np.median(np.diff(self.times))) <= 1000


MOSTLY_GAPS = 0.5       # a recording with a larger share of gaps (Recording.gap_share) gets no windows


def recordings(ds, index=None):
    """The Recordings of the samples `index` of a Dataset (default all), in the order of
    np.unique of their groups; frames without a timestamp are left out."""
    index = np.arange(len(ds.y)) if index is None else np.asarray(index)
    index = index[np.isfinite(ds.timestamps[index])]
    names, owner = np.unique(ds.groups[index], return_inverse=True)
    # by recording, then by time, ties in the order of index (lexsort is stable): one sort, not a pass
    # over all samples per recording (35,850 recordings of 100,000 frames took 32 s that way)
    index = index[np.lexsort((ds.timestamps[index], owner))]
    found = []
    for name, rows in zip(names, np.split(index, np.cumsum(np.bincount(owner, minlength=len(names)))[:-1])):
        times, first = np.unique(ds.timestamps[rows], return_index=True)   # first frame of each time
        with np.errstate(over="ignore"):            # a span past float range is inf: mostly gaps
            relative = times - times[0]
        found.append(Recording(str(name), int(np.bincount(ds.y[rows]).argmax()), relative, ds.X[rows[first]],
                               float(times[0]), float(times[-1]), len(rows) - len(times)))
    return found


def gappy(recs, window=WINDOW):
    """The recordings that are mostly gaps at window's rate (timestamps in milliseconds, a
    stray timestamp far from the others): the motion model leaves them out."""
    return [r for r in recs if r.gap_share(window.gap_tolerance_s) > MOSTLY_GAPS]


def without_gappy(recs, window=WINDOW):
    """(the recordings the motion model takes, those it leaves out: gappy)."""
    left_out = gappy(recs, window)
    names = {r.name for r in left_out}
    return [r for r in recs if r.name not in names], left_out


def sample_at(rec, times, tolerance=WINDOW.gap_tolerance_s):
    """(len(times), 28) keypoints of rec at the given times: the nearest frame, or NaN when
    none is within tolerance (a gap, or past the recording's end)."""
    right = np.clip(np.searchsorted(rec.times, times), 1, len(rec.times) - 1) if len(rec.times) > 1 else \
        np.zeros(len(times), dtype=int)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(rec.times[left] - times) <= np.abs(rec.times[right] - times), left, right)
    out = rec.X[nearest].copy()
    out[np.abs(rec.times[nearest] - times) > tolerance] = np.nan
    return out


def verdict_starts(rec, window=WINDOW):
    """Start times of the windows a verdict averages: every stride (a quarter window), and
    one ending at the recording's end; one at 0 for a recording shorter than a window."""
    last = rec.instants(window.fps) - window.frames
    starts = list(range(0, last + 1, window.stride)) if last > 0 else [0]
    if last > starts[-1]:
        starts.append(last)
    return np.array(starts) / window.fps


def verdict_windows(recs, window=WINDOW):
    """(windows (W, T, 28), owner (W,) the index of each window's recording), T = window.frames
    at window.fps per second."""
    steps = np.arange(window.frames) / window.fps
    windows, owner = [], []
    for i, rec in enumerate(recs):
        for start in verdict_starts(rec, window):
            windows.append(sample_at(rec, start + steps, window.gap_tolerance_s))
            owner.append(i)
    return np.array(windows, dtype=np.float32).reshape(-1, window.frames, NUM_COORDS), np.array(owner, dtype=int)


def training_windows(recs, rng, window=WINDOW):
    """One epoch's windows: train_windows per window length each recording spans (at least a
    quarter of that for a recording shorter than a window, whose windows all start at its
    beginning), at random offsets and speeds; scaled down, at least one per recording, when
    that is more than max_epoch_windows. (W, T, 28) and their labels (W,)."""
    counts = np.array([max(window.train_windows // 4, math.ceil(window.train_windows * r.instants(window.fps) / window.frames))
                       for r in recs], dtype=int)
    if counts.sum() > window.max_epoch_windows:
        counts = np.maximum(1, np.floor(counts * window.max_epoch_windows / counts.sum()).astype(int))
    windows, labels = [], []
    for rec, n in zip(recs, counts):
        speed = rng.uniform(*window.speed, n)
        span = (window.frames - 1) * speed / window.fps
        starts = rng.uniform(0, 1, n) * np.maximum(rec.times[-1] - span, 0)
        for start, s in zip(starts, speed):
            windows.append(sample_at(rec, start + np.arange(window.frames) * s / window.fps,
                                     window.gap_tolerance_s * s))
        labels += [rec.label] * n
    return np.array(windows, dtype=np.float32), np.array(labels, dtype=np.int64)


def normalized(recs):
    """The recordings with normalized keypoints (augmentation works on those; the model
    normalizes again, which changes nothing)."""
    with torch.no_grad():
        return [dataclasses.replace(r, X=normalize_keypoints(torch.from_numpy(r.X)).numpy()) for r in recs]


def recording_probabilities(window_probs, owner, n):
    """(n, classes): each recording's mean window probability."""
    sums = np.zeros((n, window_probs.shape[1]))
    np.add.at(sums, owner, window_probs)
    return sums / np.maximum(np.bincount(owner, minlength=n), 1)[:, None]


def window_units(recs, window):
    """The verdict windows of recs as Units: times are the windows' middles."""
    windows, owner = verdict_windows(recs, window)
    middles = np.concatenate([verdict_starts(r, window) for r in recs]) if recs else np.zeros(0)
    names, labels = np.array([r.name for r in recs]), np.array([r.label for r in recs], dtype=np.int64)
    return Units(windows, labels[owner], names[owner], middles + (window.frames - 1) / (2 * window.fps),
                 np.arange(len(owner)), windows[:, window.frames // 2])


class MotionKind(Kind):
    """MotionClassifier: a window of one recording, [N, T, 28] -> [N, 2]; a recording's
    verdict is the mean over the windows covering it."""
    name, title, suffix, unit = "motion", "motion model", "_motion", "windows"
    verdict, vote_words, model_class = "motion", "the motion model", MotionClassifier
    help = ("also train <category>_motion, a MotionClassifier on windows of each recording, when the samples have "
            "clips and timestamps and enough recordings are long enough (default: on)")
    parity_words = "2 with a point half missing, every other frame a gap, and 2 with nothing to place"
    int8_note = ("the depthwise temporal convolutions are elementwise Mul and Add, which dynamic quantization does "
                 "not take, so they stay FP32 too")

    def __init__(self, net=None, window=None):
        self.net, self.window = net or MotionNetConfig(), window or WindowConfig()

    def window_of(self, model):
        """A fitted model's own window: its frames and rate, the rest of this kind's WindowConfig."""
        return dataclasses.replace(self.window, frames=model.config["frames"], fps=model.config["fps"])

    def problem(self, ds, grouping, split=None):
        if grouping.name == "none":
            return "--group-by none cuts recordings between training and validation, so windows would be on both sides"
        found = self.data_problem(ds)
        if found is None and split is not None:
            train_recs, val_recs = self.data(ds, split[0]), self.data(ds, split[1])
            if not val_recs or len({r.label for r in train_recs}) < 2:
                return "its split leaves no timed recording to validate on, or one class only to train on"
        return found

    def data_problem(self, ds):
        """None when a category's data can give a motion model, else one sentence why not."""
        if not ds.has_clips:
            return "its samples have no `clip`, so there are no recordings to follow over time"
        if not np.isfinite(ds.timestamps).any():
            return "its samples have no `timestamp`, so the frames of a recording cannot be put in time"
        w = self.window
        recs, left_out = without_gappy(recordings(ds), w)
        long = [sum(r.label == c and r.instants(w.fps) >= w.min_frames for r in recs) for c in range(len(self.classes))]
        if min(long) >= w.min_recordings:
            return None
        has = (f"{long[1]} correct and {long[0]} incorrect ones" if self.classes == CLASS_NAMES else
               ", ".join(f"{n} {name}" for n, name in zip(long, self.classes)))
        found = (f"it needs {w.min_recordings} recordings per class of at least {w.min_frames / w.fps:g} s "
                 f"({w.min_frames} instants at {w.fps:g} per second) and has {has}")
        if recs:
            spans = sorted(r.times[-1] for r in recs)
            found += f" (its recordings span {spans[0]:.3g}-{spans[-1]:.3g} s"
            duplicates = sum(r.duplicates for r in recs)
            if duplicates:
                found += (f"; {duplicates} of their frames share a timestamp with an earlier frame of their "
                          f"recording and count once")
            found += ")"
        if left_out:
            found += f"; {len(left_out)} recording(s) that are mostly gaps are left out (see above)"
        return found

    def warnings(self, ds):
        """The recordings left out of the motion model for being mostly gaps, in one sentence."""
        if not ds.has_clips or not np.isfinite(ds.timestamps).any():
            return []
        left_out = gappy(recordings(ds), self.window)
        if not left_out:
            return []
        ms = [r for r in left_out if r.in_milliseconds()]
        return [f"{len(left_out)} recording(s) are mostly gaps at {self.window.fps:g} frames per second (more than "
                f"{100 * MOSTLY_GAPS:.0f}% of their span has no frame within {self.window.gap_tolerance_s:g} s) "
                f"and are left out of the motion model: " + "; ".join(r.described(self.window) for r in left_out[:3])
                + ("; ..." if len(left_out) > 3 else "")
                + (f"; the frames of {len(ms)} of them are 1 to 1000 s apart: are their timestamps in milliseconds? "
                   f"`timestamp` is in seconds" if ms else "")]

    def data(self, ds, index):
        return without_gappy(recordings(ds, index), self.window)[0]

    def build(self, window=None):
        window = window or self.window
        return MotionClassifier(frames=window.frames, fps=window.fps, num_classes=len(self.classes), **as_dict(self.net))

    def augment(self, x, generator, drop_joints):
        """augment per window (one mirror, rotation, stretch, joints hidden through the window),
        then joints lost in single frames."""
        n = x.shape[0]
        x = augment(x, generator, drop_joints)
        if drop_joints > 0:
            x = drop_points(x.reshape(-1, NUM_POINTS, 2), drop_joints * self.window.frame_drop_share, generator)
        return x.reshape(n, -1, NUM_COORDS)

    def fit(self, train, val, settings, log=None):
        """Keeps the last epoch (the schedule decays to 0, and no epoch is picked on validation
        data, which then only measures)."""
        recs = normalized(train)
        epoch = lambda rng: tuple(map(torch.from_numpy, training_windows(recs, rng, self.window)))
        return training.fit(self.build, epoch, settings, self.augment, None, log, "Motion model")

    def units(self, data, model=None):
        return window_units(data, self.window_of(model) if model is not None else self.window)

    def predict_proba(self, model, recs, settings):
        units, probs = self.judge(model, recs, settings)
        index = {r.name: i for i, r in enumerate(recs)}
        return recording_probabilities(probs, np.array([index[g] for g in units.groups], dtype=int), len(recs))

    def parity_inputs(self, units):
        return evaluation.parity_inputs(units.x[:64])

    def input_shape(self, config):
        return (config["frames"], NUM_COORDS)

    def metadata(self, ds, model, settings):
        w = self.window_of(model)
        return {**super().metadata(ds, model, settings),
                "input": f"[N, {w.frames}, 28]: windows of {w.frames} frames at {w.fps:g} per second, raw keypoints",
                "normalization": NORMALIZATION + " (inside the model, per frame: feed raw keypoints)",
                "missing_points": "NaN (x and y); a window with no frame to place gives [0.5, 0.5]",
                **self.window_keys(w)}

    @staticmethod
    def window_keys(w):
        """The window as the ONNX metadata and the record have always named it."""
        return {"window_frames": w.frames, "frame_rate": w.fps, "stride": w.stride, "gap_tolerance_s": w.gap_tolerance_s}

    def config(self, model):
        return {"network": model.config, "window": as_dict(self.window_of(model))}

    def from_record(self, record):
        """This kind with the window a training record holds (older records: `window`'s keys)."""
        window = (record.get("config") or {}).get("window")
        if window is None and isinstance(record.get("window"), dict):
            old = record["window"]
            window = {"frames": old.get("window_frames"), "fps": old.get("frame_rate"),
                      "gap_tolerance_s": old.get("gap_tolerance_s", WINDOW.gap_tolerance_s)}
        return MotionKind(self.net, from_dict(WindowConfig, window))

    def figures(self, v):
        return {"val_window_accuracy": round(v.accuracy, 6), "n_val_windows": len(v.units),
                **{k: x for k, x in super().figures(v).items() if k != "val_accuracy"}}

    def cv_models(self, settings):
        return {"MotionClassifier": NetClassifier(self, settings), WindowStatistics.name: WindowStatistics(
            settings.seed, self.window, len(self.classes))}

    def cv_predict(self, fitted, recs):
        labels = np.array([r.label for r in recs], dtype=np.int64)
        names = np.array([r.name for r in recs])
        units = Units(np.zeros((len(recs), 0)), labels, names, np.full(len(recs), np.nan), names,
                      np.zeros((len(recs), NUM_COORDS)))
        return units, fitted.predict_proba(recs), False

    def quantization_goals(self, f, others):
        fp, q = f["fp32"], f["int8"]
        rows = []
        frame = others.get(f["category"][:-len(self.suffix)])
        if frame:
            ratio = fp["latency_p50_us"] / frame["fp32"]["latency_p50_us"]
            rows.append(("FP32 window p50 at most 10x the frame model's FP32 p50", ratio <= 10,
                         f"{evaluation.deciding(ratio, 10)}x"))
        speed = q["throughput_per_s"] / fp["throughput_per_s"]
        return rows + [("batch throughput at least 1.5x FP32", speed >= 1.5, f"{evaluation.deciding(speed, 1.5)}x")]


# ----------------------------------------------------------------------------- the peer
def window_statistics(windows):
    """(W, T, 28) raw windows -> (W, 5 x 58): mean, spread, minimum, maximum and range over time
    of each normalized feature (pose_features), frames that cannot be placed left out."""
    with torch.no_grad():
        z = normalize_keypoints(torch.from_numpy(windows.reshape(-1, NUM_COORDS)))
        f = pose_features(z).numpy().reshape(len(windows), windows.shape[1], -1)
    placed = ~np.isnan(z.numpy()).all(1).reshape(len(windows), -1)
    f = np.where(placed[..., None], f, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # a window with no placed frame: NaN
        lo, hi = np.nanmin(f, 1), np.nanmax(f, 1)
        return np.concatenate([np.nanmean(f, 1), np.nanstd(f, 1), lo, hi, hi - lo], 1)


class WindowStatistics(BaseEstimator):
    """The sequence peer: HistGradientBoosting on window_statistics of each verdict window
    (every quarter window) of the training recordings; a recording's probability is its
    windows' mean. Its leaves may hold 5 windows (scikit-learn's default, 20, cannot split
    fewer than 40), so it learns from a few dozen recordings."""
    name = "HGB on window statistics"

    def __init__(self, seed=0, window=WINDOW, n_classes=2):
        self.seed, self.window, self.n_classes = seed, window, n_classes

    def fit(self, recs):
        from sklearn.ensemble import HistGradientBoostingClassifier
        windows, owner = verdict_windows(recs, self.window)
        labels = np.array([recs[i].label for i in owner])
        self.model_ = HistGradientBoostingClassifier(min_samples_leaf=5, max_leaf_nodes=15, random_state=self.seed)
        self.model_.fit(window_statistics(windows), labels)
        return self

    def predict_proba(self, recs):
        windows, owner = verdict_windows(recs, self.window)
        probs = every_class(self.model_.predict_proba(window_statistics(windows)), self.model_, self.n_classes)
        return recording_probabilities(probs, owner, len(recs))
