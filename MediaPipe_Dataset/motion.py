"""Movements: recordings as time series, the windows the motion model judges, its training,
the window-statistics peer, and verdicts per recording (torch, numpy, scikit-learn).

A recording is the frames of one clip (samples.recording_groups: class folder and clip),
ordered by `timestamp`. The models see it resampled to a fixed rate (MOTION_FPS): each
instant takes the nearest frame, or nothing (all NaN, a gap) when no frame is within
GAP_TOLERANCE_S. Duplicate timestamps keep the first frame in file order; frames out of
order are sorted; frames without a timestamp are left out of the recording. A window is
MOTION_FRAMES consecutive instants; a recording shorter than a window is padded at its end
with all-NaN frames (past its last frame's GAP_TOLERANCE_S), which the model reads as
"nothing seen". A recording's verdict is the mean probability over windows a quarter
window apart that cover it, the last one ending at its end. Caution: where one class's
recordings are much shorter than the other's, the padding tells the model which is which,
and it may learn the length rather than the movement.
"""
import dataclasses
import math
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from MediaPipe_Dataset.model import MotionClassifier, augment, drop_points, normalize_keypoints, pose_features
from MediaPipe_Dataset.samples import NUM_COORDS, NUM_POINTS, progress

# Chosen by cross-validation on Pose Trainer's recordings and ../shared/datasets (README
# "Movements"): 16 instants at 10 per second, a 1.6 s window, and 16 training windows.
MOTION_FPS = 10.0
MOTION_FRAMES = 16
MOTION_WIDTH = 64
GAP_TOLERANCE_S = 0.25       # an instant with no frame this close is a gap (all NaN)
MIN_FRAMES = 8               # a recording with fewer instants is too short to learn from
MIN_RECORDINGS = 3           # per class, long enough, for a category to get a motion model
TRAIN_WINDOWS = 16           # training windows per recording per epoch, per window length it spans
SPEED = (0.8, 1.25)          # speed change of a training window: its instants 0.8 to 1.25 x apart
FRAME_DROP_SHARE = 0.2       # per-frame joint dropout at this share of --drop-joints, beside per window


@dataclasses.dataclass
class Recording:
    """One recording: its name (group), label, frame times in seconds from its first (sorted,
    unique) and keypoints (frames, 28), raw or normalized, NaN where missing."""
    name: str
    label: int
    times: np.ndarray
    X: np.ndarray

    def instants(self, fps=None):
        """How many instants at fps (default MOTION_FPS) the recording spans."""
        return int(math.floor(self.times[-1] * (fps or MOTION_FPS) + 1e-6)) + 1


def recordings(ds, index=None):
    """The Recordings of the samples `index` of a Dataset (default all), in the order of
    np.unique of their groups; frames without a timestamp are left out."""
    index = np.arange(len(ds.y)) if index is None else np.asarray(index)
    index = index[np.isfinite(ds.timestamps[index])]
    found = []
    for name in np.unique(ds.groups[index]):
        rows = index[ds.groups[index] == name]
        rows = rows[np.argsort(ds.timestamps[rows], kind="stable")]
        times, first = np.unique(ds.timestamps[rows], return_index=True)   # first frame of each time
        found.append(Recording(str(name), int(np.bincount(ds.y[rows]).argmax()), times - times[0], ds.X[rows[first]]))
    return found


def motion_problem(ds):
    """None when a category's data can give a motion model, else one sentence why not."""
    if not ds.has_clips:
        return "its samples have no `clip`, so there are no recordings to follow over time"
    if not np.isfinite(ds.timestamps).any():
        return "its samples have no `timestamp`, so the frames of a recording cannot be put in time"
    recs = recordings(ds)
    long = [sum(r.label == c and r.instants() >= MIN_FRAMES for r in recs) for c in (0, 1)]
    if min(long) < MIN_RECORDINGS:
        lengths = sorted(len(r.times) for r in recs)
        return (f"it needs {MIN_RECORDINGS} recordings per class of at least {MIN_FRAMES / MOTION_FPS:g} s "
                f"({MIN_FRAMES} instants at {MOTION_FPS:g} per second) and has {long[1]} correct and {long[0]} "
                f"incorrect ones (its recordings have {lengths[0]}-{lengths[-1]} frames)")
    return None


def sample_at(rec, times, tolerance=GAP_TOLERANCE_S):
    """(len(times), 28) keypoints of rec at the given times: the nearest frame, or NaN when
    none is within tolerance (a gap, or past the recording's end)."""
    right = np.clip(np.searchsorted(rec.times, times), 1, len(rec.times) - 1) if len(rec.times) > 1 else \
        np.zeros(len(times), dtype=int)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(rec.times[left] - times) <= np.abs(rec.times[right] - times), left, right)
    out = rec.X[nearest].copy()
    out[np.abs(rec.times[nearest] - times) > tolerance] = np.nan
    return out


def verdict_starts(rec, frames, fps):
    """Start times of the windows of `frames` instants at `fps` a verdict averages: every
    quarter window, and one ending at the recording's end; one at 0 for a recording shorter
    than a window."""
    last = rec.instants(fps) - frames
    starts = list(range(0, last + 1, max(1, frames // 4))) if last > 0 else [0]
    if last > starts[-1]:
        starts.append(last)
    return np.array(starts) / fps


def verdict_windows(recs, frames=None, fps=None):
    """(windows (W, T, 28), owner (W,) the index of each window's recording); T = frames at
    fps per second, by default the motion model's (MOTION_FRAMES, MOTION_FPS)."""
    frames, fps = frames or MOTION_FRAMES, fps or MOTION_FPS
    steps = np.arange(frames) / fps
    windows, owner = [], []
    for i, rec in enumerate(recs):
        for start in verdict_starts(rec, frames, fps):
            windows.append(sample_at(rec, start + steps))
            owner.append(i)
    return np.array(windows, dtype=np.float32).reshape(-1, frames, NUM_COORDS), np.array(owner)


def training_windows(recs, rng):
    """One epoch's windows: TRAIN_WINDOWS per window length each recording spans (at least a
    quarter of that for a recording shorter than a window, whose windows all start at its
    beginning), at random offsets and speeds. (W, T, 28) and their labels (W,)."""
    windows, labels = [], []
    for rec in recs:
        n = max(TRAIN_WINDOWS // 4, math.ceil(TRAIN_WINDOWS * rec.instants() / MOTION_FRAMES))
        speed = rng.uniform(*SPEED, n)
        span = (MOTION_FRAMES - 1) * speed / MOTION_FPS
        starts = rng.uniform(0, 1, n) * np.maximum(rec.times[-1] - span, 0)
        for start, s in zip(starts, speed):
            windows.append(sample_at(rec, start + np.arange(MOTION_FRAMES) * s / MOTION_FPS, GAP_TOLERANCE_S * s))
        labels += [rec.label] * n
    return np.array(windows, dtype=np.float32), np.array(labels, dtype=np.int64)


def normalized(recs):
    """The recordings with normalized keypoints (augmentation works on those; the model
    normalizes again, which changes nothing)."""
    with torch.no_grad():
        return [dataclasses.replace(r, X=normalize_keypoints(torch.from_numpy(r.X)).numpy()) for r in recs]


def augment_windows(x, generator, drop_joints):
    """augment per window (one mirror, rotation, stretch, joints hidden through the window),
    then joints lost in single frames."""
    n = x.shape[0]
    x = augment(x, generator, drop_joints)
    if drop_joints > 0:
        x = drop_points(x.reshape(-1, NUM_POINTS, 2), drop_joints * FRAME_DROP_SHARE, generator)
    return x.reshape(n, -1, NUM_COORDS)


def fit_motion(recs, args, log=None):
    """Train a MotionClassifier on training Recordings with train.py's settings (epochs, lr,
    cosine schedule, label smoothing, augmentation, seed); keeps the last epoch (the schedule
    decays to 0, and no epoch is picked on validation data, which then only measures).
    Returns (model in eval mode, history: per epoch train loss and window accuracy)."""
    torch.manual_seed(args.seed)
    gen, rng = torch.Generator().manual_seed(args.seed), np.random.default_rng(args.seed)
    model = MotionClassifier(frames=MOTION_FRAMES, fps=MOTION_FPS, width=MOTION_WIDTH)
    recs = normalized(recs)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    per_epoch = math.ceil(len(training_windows(recs, np.random.default_rng(0))[1]) / 32)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs * per_epoch)
                 if args.schedule == "cosine" else None)
    history = []
    for epoch in progress(range(1, args.epochs + 1), desc="Motion model", unit="epoch", leave=False,
                          disable_if=log is None):
        model.train()
        x, y = training_windows(recs, rng)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        order, total, right = torch.randperm(len(y), generator=gen), 0.0, 0
        for idx in order.split(32)[:per_epoch]:
            if len(idx) < 2:
                continue                 # batch norm cannot train on one window
            xb = augment_windows(x[idx], gen, args.drop_joints) if args.augment else x[idx]
            optimizer.zero_grad()
            logits = model(xb)
            loss = F.cross_entropy(logits, y[idx], label_smoothing=args.label_smoothing)
            loss.backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
            total, right = total + loss.item() * len(idx), right + int((logits.argmax(1) == y[idx]).sum())
        history.append({"epoch": epoch, "train_loss": total / len(y), "train_acc": right / len(y)})
    return model.eval(), history


def window_probabilities(model, windows):
    """(W, 2) probabilities of a MotionClassifier in eval mode for (W, T, 28) windows."""
    with torch.no_grad():
        return F.softmax(model(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))), 1).numpy()


def recording_probabilities(window_probs, owner, n):
    """(n, 2): each recording's mean window probability."""
    sums = np.zeros((n, 2))
    np.add.at(sums, owner, window_probs)
    return sums / np.maximum(np.bincount(owner, minlength=n), 1)[:, None]


class MotionNet:
    """The motion model behind fit(recordings) / predict_proba(recordings) -> (R, 2), as the
    peers of the per-recording table are."""
    name = "MotionClassifier"

    def __init__(self, settings):
        self.settings = settings

    def fit(self, recs):
        self.model_ = fit_motion(recs, self.settings)[0]
        return self

    def predict_proba(self, recs):
        windows, owner = verdict_windows(recs)
        return recording_probabilities(window_probabilities(self.model_, windows), owner, len(recs))


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


class WindowStatistics:
    """The sequence peer: HistGradientBoosting on window_statistics of each verdict window
    (every quarter window) of the training recordings; a recording's probability is its
    windows' mean. Its leaves may hold 5 windows (scikit-learn's default, 20, cannot split
    fewer than 40), so it learns from a few dozen recordings."""
    name = "HGB on window statistics"

    def __init__(self, seed=0):
        self.seed = seed

    def fit(self, recs):
        from sklearn.ensemble import HistGradientBoostingClassifier
        windows, owner = verdict_windows(recs)
        labels = np.array([recs[i].label for i in owner])
        self.model_ = HistGradientBoostingClassifier(min_samples_leaf=5, max_leaf_nodes=15, random_state=self.seed)
        self.model_.fit(window_statistics(windows), labels)
        return self

    def predict_proba(self, recs):
        windows, owner = verdict_windows(recs)
        return recording_probabilities(self.model_.predict_proba(window_statistics(windows)), owner, len(recs))


@dataclasses.dataclass
class MotionScores:
    """A sequence model's cross-validation figures: each recording's out-of-fold probabilities."""
    probabilities: dict = dataclasses.field(default_factory=dict)     # recording name -> (2,)
    labels: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    error: str = None

    def add_fold(self, model, train_recs, test_recs):
        began = time.perf_counter()
        probs = model.fit(train_recs).predict_proba(test_recs)
        self.seconds += time.perf_counter() - began
        for rec, p in zip(test_recs, probs):
            self.probabilities[rec.name], self.labels[rec.name] = p, rec.label

    def clip_figures(self):
        """(recordings scored, recordings right)."""
        right = sum(int(np.argmax(p) == self.labels[n]) for n, p in self.probabilities.items())
        return len(self.probabilities), right


def sequence_models(args):
    """The models of the per-recording table that judge windows: ours, then the peer."""
    return {MotionNet.name: MotionNet(args), WindowStatistics.name: WindowStatistics(args.seed)}


def advice(frame_accuracy, motion_accuracy, n_recordings):
    """('motion' or 'frames', why): the motion model's verdict only when it measured more
    accurate per recording than the frame vote on the same recordings; a tie goes to the
    frame vote, the simpler and faster."""
    if motion_accuracy is None:
        return "frames", "no motion model for this category"
    one = 100 / max(n_recordings, 1)
    words = (f"per recording the motion model scored {100 * motion_accuracy:.1f}% and the frame vote "
             f"{100 * frame_accuracy:.1f}% on the same {n_recordings} recordings (one recording = {one:.1f} points)")
    if motion_accuracy > frame_accuracy:
        return "motion", words
    return "frames", words + ("; a tie goes to the frame vote" if motion_accuracy == frame_accuracy else "")


def motion_json(figures):
    """--json figures of a sequence model in --cv: clip_mean, n_clips and seconds, like the others."""
    n, right = figures.clip_figures()
    return {"clip_mean": round(right / n, 6) if n else None, "n_clips": n, "seconds": round(figures.seconds, 3),
            "mean": None, "error": figures.error}


def parity_windows(windows, seed=0):
    """What the motion model's export is checked on: the given windows, the same with 1 to 4
    points removed from every frame, with every other frame all NaN (a gap), an all-NaN
    window and a window of nose-only frames (nothing to place)."""
    from MediaPipe_Dataset.evaluation import REMOVED_POINTS, remove_points
    rng = np.random.default_rng(seed)
    flat = windows.reshape(-1, NUM_COORDS)
    removed = [remove_points(flat, k, rng).reshape(windows.shape) for k in REMOVED_POINTS]
    gaps = windows.copy()
    gaps[:, ::2] = np.nan
    empty = np.full((2,) + windows.shape[1:], np.nan, dtype=np.float32)
    empty[1, :, :2] = 0.5
    return np.concatenate([windows, *removed, gaps, empty]).astype(np.float32)
