"""Train one correct-vs-incorrect pose classifier per category and export it.

    python train.py                      # every category in MediaPipe_Dataset/
    python train.py --categories stance --epochs 20
    python train.py --cv 5               # cross-validate against scikit-learn peers

Reads MediaPipe_Dataset/<category>/{correct,incorrect} <category>/*.json and writes
models/<category>.pt (state dict) and models/<category>.onnx (softmax probabilities,
with the validation split in its metadata). Importing this file only defines things:
`from train import PoseClassifier, KeypointNormalizer` trains, prints and writes nothing.
"""
import argparse
import copy
import hashlib
import json
import math
import os
import re
import signal
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------- layout
# The 14-point layout (first 14 points of OpenPose COCO-18; neck = shoulder midpoint),
# x and y interleaved: keypoints = [x0, y0, x1, y1, ..., x13, y13].
KEYPOINT_NAMES = ["nose", "neck", "right_shoulder", "right_elbow", "right_wrist",
                  "left_shoulder", "left_elbow", "left_wrist", "right_hip", "right_knee",
                  "right_ankle", "left_hip", "left_knee", "left_ankle"]
NUM_POINTS = len(KEYPOINT_NAMES)
NUM_COORDS = 2 * NUM_POINTS
# Which of MediaPipe Pose's 33 landmarks each point is (neck: the mean of the two shoulders).
MEDIAPIPE_33 = [0, (11, 12), 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27]
# Index of each point's left/right twin, for mirroring.
MIRROR = [0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10]
CLASS_NAMES = ["incorrect", "correct"]    # index = label; the folder decides the label
R_SHOULDER, L_SHOULDER, R_HIP, L_HIP = 2, 5, 8, 11
TORSO = [R_SHOULDER, L_SHOULDER, R_HIP, L_HIP]
TORSO_MULTIPLIER = 2.5                    # as in MediaPipe's pose classification embedder
# A landmark MediaPipe reports with a lower visibility is a guess (a hidden arm in a side
# view), and counts as missing (chosen by cross-validation on real recordings, see README).
MIN_VISIBILITY = 0.5
NORMALIZATION = ("center on the hip midpoint (one hip, or the shoulders, when that is all there is); "
                 "divide by max(2.5 x torso size, largest distance of a present point from the center); "
                 "torso size = hip midpoint to shoulder midpoint; missing points (NaN) stay missing")


# ----------------------------------------------------------------------------- model
# One input contract everywhere: a missing point is NaN (x and y) in the [N, 28] input.
# Centre, size and angles come from the points that are present; a pose that cannot be
# placed (no shoulder and no hip) or sized (all present points at one place) is all NaN
# after normalization, and PoseClassifier answers [0.5, 0.5] for it.
#
# The arithmetic is written as products with small constant matrices (each sum of chosen
# points is one MatMul) and vectorized over all points and angles, so that the ONNX graph
# stays small: each ONNX Runtime node costs 0.2-0.35 us per call, more than this model's
# arithmetic (README "Speed").
JOINT_ANGLES = [(2, 3, 4), (5, 6, 7), (8, 9, 10), (11, 12, 13), (8, 2, 3), (11, 5, 6), (2, 8, 9), (5, 11, 12)]
NUM_ANGLES = len(JOINT_ANGLES)
# The centre is a weighted mean of the hips and shoulders that are there, a shoulder
# weighing 2^-21 as much as a hip: the hips' midpoint whenever there is a hip (off by less
# than 1e-6 of the pose size), the shoulders' midpoint when there is none. Powers of two,
# large enough that every partial sum of the weights is exact in float32, keep "no hip and
# no shoulder" an exact 0/0, so that such a pose comes out unplaced.
SHOULDER_WEIGHT = 2.0 ** -21


def _layout_matrices():
    """Constant matrices over the 28 coordinates (x0, y0, x1, ...) for _normalize and _features."""
    point = np.arange(NUM_COORDS) // 2
    xy = np.tile(np.eye(2), NUM_POINTS)                                     # (2, 28): (x, y) -> every point
    hips, shoulders = np.isin(point, (R_HIP, L_HIP)), np.isin(point, (R_SHOULDER, L_SHOULDER))
    weight = hips + SHOULDER_WEIGHT * shoulders
    in_angle = np.array([[p in angle for angle in JOINT_ANGLES] for p in point], dtype=float)
    m = {"spread_xy": xy,
         "center_sum": xy.T * weight[:, None],                              # (28, 2): weighted x, y sums
         "center_missing": weight[:, None] / 2,                             # (28, 1): weight of missing points
         "center_all": np.array([weight.sum() / 2]),                        # weight of all hips and shoulders
         "torso_sum": xy.T * shoulders[:, None] * TORSO_MULTIPLIER,         # (28, 2): 2.5 x shoulder sums
         "shoulders_missing": shoulders[:, None] / 2,                       # (28, 1): missing shoulders
         "shoulders_all": np.array([2 + 2.0 ** -20]),                       # 2, and no 0/0 without shoulders
         "point_sum": np.kron(np.eye(NUM_POINTS + 1), np.ones((2, 1))),     # (30, 15): x^2 + y^2 per point
         "angle_missing": np.tile(in_angle / 2, 2),                         # (28, 16): missing points per angle
         "point_missing": np.kron(np.eye(NUM_POINTS), np.ones((2, 1))) / 2}  # (28, 14): 1 for a missing point
    # Each angle's arms u = a - joint and v = b - joint, and v turned by -90 degrees (vy, -vx):
    # left = [u, u] and right = [v, v turned], so that x + y of left * right is [u.v, u x v].
    arm = lambda ends: np.eye(NUM_COORDS)[:, [2 * e + c for e in ends for c in (0, 1)]]
    ends_a, joints, ends_b = ([angle[i] for angle in JOINT_ANGLES] for i in range(3))
    u, v = arm(ends_a) - arm(joints), arm(ends_b) - arm(joints)
    turned = np.stack([v[:, 1::2], -v[:, 0::2]], -1).reshape(NUM_COORDS, -1)
    m.update(angle_left=np.hstack([u, u]), angle_right=np.hstack([v, turned]),    # (28, 32) each
             pair_sum=np.kron(np.eye(2 * NUM_ANGLES), np.ones((2, 1))),           # (32, 16)
             norm_sum=np.tile(np.eye(NUM_ANGLES), (2, 2)))                        # (16, 16): dot^2 + cross^2
    layout = {name: torch.tensor(matrix, dtype=torch.float32) for name, matrix in m.items()}
    layout["swap_xy"] = torch.arange(NUM_COORDS) ^ 1                     # an index list: Gather in ONNX
    return layout


LAYOUT = _layout_matrices()


def _missing(x):
    """(N, 28) keypoints -> (N, 28) bool, True at both coordinates of a point that has a
    coordinate that is not finite (x - x is NaN for NaN and inf)."""
    d = x - x
    return torch.isnan(d + d[:, LAYOUT["swap_xy"]])


def _normalize(x):
    """(N, 28) -> (normalized keypoints, 0 where missing; (N, 28) missing flags as 0/1 floats;
    placed (N, 1) bool: False for a pose with no shoulder and no hip, or all at one place)."""
    missing = _missing(x)
    flags = missing.float()
    x0 = torch.where(missing, 0.0, x)
    # Centre (0/0 without hips and shoulders), then 2.5 x the torso: the shoulders' midpoint
    # seen from the centre, 0 when the centre is the shoulders or there is no shoulder.
    center = x0 @ LAYOUT["center_sum"] / torch.addmm(LAYOUT["center_all"], flags, -LAYOUT["center_missing"])
    centered = torch.where(missing, 0.0, x - center @ LAYOUT["spread_xy"])
    torso = centered @ LAYOUT["torso_sum"] / torch.addmm(LAYOUT["shoulders_all"], flags, -LAYOUT["shoulders_missing"])
    # Size: the largest distance from the centre of a present point or of 2.5 x the torso.
    ends = torch.cat([centered, torso], 1)
    size2 = ((ends * ends) @ LAYOUT["point_sum"]).amax(1, keepdim=True)
    placed = size2 > 1e-16               # False for NaN too
    # 0, not NaN, for a pose that cannot be placed: dynamic INT8 quantizes each batch with one
    # scale, and a NaN would spoil the other frames of its batch.
    return torch.where(placed, centered / size2.sqrt(), 0.0), flags, placed


def present_points(x):
    """(..., 28) keypoints -> (N, 14) bool: which points are there (both coordinates finite)."""
    return ~_missing(x.reshape(-1, NUM_COORDS))[:, 0::2]


def normalize_keypoints(x):
    """Translation- and scale-invariant normalization of (..., 28) keypoints (torch).

    Centers on the hip midpoint and divides by the pose size, the larger of 2.5 torso
    lengths and the largest distance of any point from the hip midpoint (MediaPipe's
    pose classification embedder does the same). With points missing (NaN), the centre
    is the hip that is there, or the shoulders' midpoint without hips; the torso length
    needs a shoulder and a hip, else the size is the spread alone. Missing points stay
    NaN, and a pose that cannot be placed or sized comes out all NaN. Applying it twice
    changes nothing.
    """
    z, flags, placed = _normalize(x.reshape(-1, NUM_COORDS))
    return torch.where((flags > 0.5) | ~placed, math.nan, z).reshape(x.shape)


# keypoints (missing: 0), cos and sin of each joint angle (0 when a point of it is missing),
# and the 14 presence flags, so that the model knows a 0 that is missing from one that is
# there. The angles are at the elbows, knees, shoulders (hip-shoulder-elbow) and hips
# (shoulder-hip-knee): form rules are mostly about them, and near 180 degrees a small bend
# hardly moves the coordinates. (28 missing flags instead of 14 presence flags save a node
# but cost 2-4 points of accuracy with points removed, measured over 10 seeds.)
NUM_FEATURES = NUM_COORDS + 2 * NUM_ANGLES + NUM_POINTS


def _features(z, flags):
    """Normalized keypoints (0 where missing) and (N, 28) missing flags -> (N, 58) features."""
    dot_cross = ((z @ LAYOUT["angle_left"]) * (z @ LAYOUT["angle_right"])) @ LAYOUT["pair_sum"]
    # |u| |v| = sqrt((u.v)^2 + (u x v)^2) in the plane; an arm of length 0 gives cos = sin = 0
    lengths = torch.addmm(torch.tensor([1e-24]), dot_cross * dot_cross, LAYOUT["norm_sum"]).sqrt()
    whole = torch.relu(torch.addmm(torch.tensor([1.0]), flags, -LAYOUT["angle_missing"]))  # 1: no point missing
    present = torch.addmm(torch.tensor([1.0]), flags, -LAYOUT["point_missing"])
    return torch.cat([z, dot_cross / lengths * whole, present], dim=1)


def pose_features(z):
    """Normalized keypoints (N, 28), NaN where missing -> (N, 58) finite features: the
    keypoints (0 where missing), cos and sin of each joint angle (0 where a point of the
    angle is missing) and the 14 presence flags."""
    z = z.reshape(-1, NUM_COORDS)
    missing = _missing(z)
    return _features(torch.where(missing, 0.0, z), missing.float())


class KeypointNormalizer:
    """Callable: 28 numbers (list or array) or an N x 28 array -> float32 array, same shape.

    The normalization PoseClassifier applies as its first stage (normalize_keypoints).
    A missing point is None or NaN and stays NaN; a pose that cannot be placed or sized
    (no shoulder and no hip, or all points at one place) comes out all NaN.
    """

    def __call__(self, keypoints):
        x = np.array(keypoints, dtype=np.float32)     # None -> NaN
        if x.shape[-1] != NUM_COORDS or x.ndim not in (1, 2):
            raise ValueError(f"expected 28 numbers or an N x 28 array, got shape {x.shape}")
        with torch.no_grad():
            return normalize_keypoints(torch.from_numpy(x)).numpy()


class InvertedResidual(nn.Module):
    """MobileNetV2's block on a vector: expand, ReLU6, project back (linear bottleneck), add."""

    def __init__(self, width, expansion, dropout):
        super().__init__()
        hidden = width * expansion
        self.block = nn.Sequential(
            nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU6(),
            nn.Dropout(dropout),
            nn.Linear(hidden, width, bias=False), nn.BatchNorm1d(width),  # no activation: linear bottleneck
        )

    def forward(self, x):
        return x + self.block(x)


class PoseClassifier(nn.Module):
    """Raw keypoints (N x 28, NaN where a point is missing) -> class logits (N x num_classes).

    normalize_keypoints first (so raw, z-scored or already normalized inputs give the
    same outputs), pose_features (adds joint-angle cosines and sines and the presence
    mask), then MobileNetV2's ideas on a vector: a stem, inverted residual blocks with
    linear bottlenecks, batch norm, ReLU6, dropout before the classifier. A row that
    cannot be placed or sized (no shoulder and no hip, e.g. all NaN) gets logits 0:
    probabilities [0.5, 0.5], "cannot tell".
    """

    def __init__(self, input_size=NUM_COORDS, num_classes=2, width=128, expansion=2, blocks=1,
                 head=128, dropout=0.2):
        super().__init__()
        if input_size != NUM_COORDS:
            raise ValueError(f"input_size must be {NUM_COORDS} (14 points x 2), got {input_size}")
        self.stem = nn.Sequential(nn.Linear(NUM_FEATURES, width, bias=False), nn.BatchNorm1d(width), nn.ReLU6())
        self.blocks = nn.Sequential(*[InvertedResidual(width, expansion, dropout) for _ in range(blocks)])
        self.head = nn.Sequential(nn.Linear(width, head, bias=False), nn.BatchNorm1d(head), nn.ReLU6(),
                                  nn.Dropout(dropout), nn.Linear(head, num_classes))

    def forward(self, x):
        z, flags, placed = _normalize(x)
        logits = self.head(self.blocks(self.stem(_features(z, flags))))
        return torch.where(placed, logits, 0.0)


class WithSoftmax(nn.Module):
    """What the ONNX file holds: probabilities rather than logits."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return F.softmax(self.model(x), dim=-1)


# ----------------------------------------------------------------------------- data
class DataError(Exception):
    """A problem with the user's data or folders, reported as one sentence."""


MAX_COORDINATE = 1e6    # image positions; larger values would overflow float32 arithmetic


def parse_keypoints(raw, visibility=None, min_visibility=MIN_VISIBILITY):
    """28 numbers, 14 [x, y] pairs or 33 MediaPipe landmarks -> float64 array of 28, NaN
    where a point is missing.

    A point is missing when it is `null` (a pair, or both its coordinates), or when its
    visibility is below min_visibility: a landmark's own (4th value of a row, or its
    `visibility` key), or the sample's optional 14-value `visibility` list. The neck of
    the 33 landmarks needs both shoulders. Raises ValueError with the reason when the
    value is not a usable pose: one coordinate of a point null, a value that is not a
    number, or too few points left to place the pose (no shoulder and no hip) or size it
    (all present points at one place).
    """
    if not isinstance(raw, (list, tuple)) or not raw:
        raise ValueError("no keypoints")

    def number(v, where):
        if v is None:
            return math.nan
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"non-numeric value {v!r} at {where}")
        return float(v)

    def point(row, i):
        """(x, y, visibility) of one point or landmark; NaN for what is not given."""
        if row is None:
            return math.nan, math.nan, math.nan
        if isinstance(row, dict):
            if "x" not in row or "y" not in row:
                raise ValueError(f"point {i} has no x and y")
            return tuple(number(row.get(k), f"point {i}") for k in ("x", "y", "visibility"))
        if isinstance(row, (list, tuple)) and len(row) >= 2:
            return tuple(number(v, f"point {i}") for v in (row[0], row[1], row[3] if len(row) > 3 else None))
        raise ValueError(f"point {i} is not an [x, y] pair, null, or an object with x and y")

    scalars = all(not isinstance(v, (list, tuple, dict)) for v in raw)
    if scalars and not (len(raw) == NUM_POINTS and all(v is None for v in raw)):     # 14 nulls: 14 null pairs
        if len(raw) != NUM_COORDS:
            raise ValueError(f"wrong count: {len(raw)} numbers, expected 28 (14 points x 2)")
        rows = np.array([number(v, f"position {i}") for i, v in enumerate(raw)]).reshape(NUM_POINTS, 2)
        rows = np.column_stack([rows, np.full(NUM_POINTS, math.nan)])
    elif len(raw) in (NUM_POINTS, 33):
        rows = np.array([point(r, i) for i, r in enumerate(raw)])
    else:
        raise ValueError(f"wrong count: {len(raw)} points, expected 14 [x, y] pairs or 33 MediaPipe landmarks")
    half = np.isnan(rows[:, 0]) != np.isnan(rows[:, 1])
    if half.any():
        noun = "landmark" if len(rows) == 33 else "point"
        raise ValueError(f"{noun} {int(np.argmax(half))} has one coordinate null and the other a number")
    if np.isinf(rows[:, :2]).any() or (np.abs(rows[:, :2]) > MAX_COORDINATE).any():
        raise ValueError(f"infinite value or a coordinate beyond +-{MAX_COORDINATE:g}")
    rows[rows[:, 2] < min_visibility, :2] = math.nan      # NaN visibility (not given) compares False
    if len(rows) == 33:
        # Neck = mean of both shoulders, missing unless both are there.
        xy = np.array([rows[list(m), :2].mean(axis=0) if isinstance(m, tuple) else rows[m, :2]
                       for m in MEDIAPIPE_33])
    else:
        xy = rows[:, :2]
    if visibility is not None:
        if not isinstance(visibility, (list, tuple)) or len(visibility) != NUM_POINTS:
            raise ValueError("visibility must be null or a list of 14 numbers (or nulls), one per point")
        vis = np.array([number(v, f"visibility {i}") for i, v in enumerate(visibility)])
        xy[vis < min_visibility] = math.nan
    present = ~np.isnan(xy[:, 0])
    if not present[TORSO].any():
        raise ValueError(f"no shoulder and no hip left to place the pose ({NUM_POINTS - present.sum()} "
                         f"of 14 points missing or below visibility {min_visibility:g})")
    if np.ptp(xy[present], axis=0).max() < 1e-6:
        raise ValueError("degenerate pose: all present points at one place")
    return xy.reshape(-1)


def label_index(label):
    """0 or 1 for a sample's `label` field: 0/1, "0"/"1" or the class names; None otherwise."""
    text = str(label).strip().lower() if not isinstance(label, bool) else None
    names = {name: i for i, name in enumerate(CLASS_NAMES)}
    return names.get(text, int(text) if text in ("0", "1") else None)


def load_sample(path, folder_label, min_visibility=MIN_VISIBILITY):
    """One JSON file -> (keypoints, clip or None, warning or None). Raises ValueError."""
    try:
        with open(path, encoding="utf-8-sig") as f:      # -sig: a UTF-8 byte order mark is fine
            data = json.load(f)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"unreadable ({e.__class__.__name__})")
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON ({e.msg}, line {e.lineno})")
    except RecursionError:
        raise ValueError("malformed JSON (nested too deeply)")
    if isinstance(data, dict):
        raw = data.get("keypoints", data.get("landmarks"))
        if raw is None:
            raise ValueError("no keypoints")
    else:
        raw, data = data, {}
    keypoints = parse_keypoints(raw, data.get("visibility"), min_visibility)
    clip = data.get("clip")
    warning = None
    if "label" in data and label_index(data["label"]) != folder_label:
        warning = (f"label {data['label']!r} contradicts its folder "
                   f"({CLASS_NAMES[folder_label]}); using the folder's label {folder_label}")
    return keypoints, (None if clip is None else str(clip)), warning


def class_dir(data_dir, category, label):
    return os.path.join(data_dir, category, f"{CLASS_NAMES[label]} {category}")


def list_folder(folder):
    """os.listdir, with an unreadable folder as a DataError."""
    try:
        return os.listdir(folder)
    except OSError as e:
        raise DataError(f"{folder}: cannot read the folder ({e.strerror or e.__class__.__name__})")


def discover_categories(data_dir):
    """Every folder of data_dir holding `correct <name>/` and `incorrect <name>/`."""
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: data folder not found (expected {data_dir}/<category>/correct <category>/*.json)")
    found = sorted(name for name in list_folder(data_dir)
                   if any(os.path.isdir(class_dir(data_dir, name, label)) for label in (0, 1)))
    if not found:
        raise DataError(f"{data_dir}: no category folders found "
                        f"(expected {data_dir}/<category>/correct <category>/ and incorrect <category>/)")
    return found


class Dataset:
    """The valid samples of one category, plus what was wrong with the others."""

    def __init__(self, data_dir, category, min_visibility=MIN_VISIBILITY):
        self.category, self.root = category, os.path.join(data_dir, category)
        self.files, xs, ys, clips = [], [], [], []
        self.invalid, self.warnings, self.ignored = [], [], 0
        for label in (0, 1):
            folder = class_dir(data_dir, category, label)
            if not os.path.isdir(folder):
                raise DataError(f"{folder}: folder missing, so the {CLASS_NAMES[label]} class has no samples")
            names = sorted(n for n in list_folder(folder) if n.lower().endswith(".json"))
            # macOS leaves ._name.json AppleDouble files beside copied files: not samples.
            self.ignored += sum(n.startswith("._") for n in names)
            names = [n for n in names if not n.startswith("._")]
            for name in _progress(names, desc=f"Loading {os.path.basename(folder)}", unit="file", leave=False):
                path = os.path.join(folder, name)
                try:
                    keypoints, clip, warning = load_sample(path, label, min_visibility)
                except ValueError as e:
                    self.invalid.append((path, str(e)))
                    continue
                if warning:
                    self.warnings.append((path, warning))
                self.files.append(os.path.relpath(path, self.root))
                xs.append(keypoints)
                ys.append(label)
                clips.append(clip)
        self.X = np.array(xs, dtype=np.float32).reshape(-1, NUM_COORDS)
        self.y = np.array(ys, dtype=np.int64)
        # Samples of one recording stay together in splits; a sample without a clip is its own group.
        self.has_clips = any(c is not None for c in clips)
        self.groups = np.array([c if c is not None else f"file:{f}" for c, f in zip(clips, self.files)])

    def count(self, label):
        return int((self.y == label).sum())

    def missing(self):
        """(samples with a missing point, {point name: samples missing it}, most often first)."""
        absent = np.isnan(self.X[:, 0::2])
        counts = {KEYPOINT_NAMES[i]: int(absent[:, i].sum()) for i in np.argsort(-absent.sum(0), kind="stable")
                  if absent[:, i].any()}
        return int(absent.any(1).sum()), counts


def require_groups(dataset, needed, purpose, by_clip):
    """Raise DataError unless each class has `needed` clips (by_clip) or samples."""
    for label in (0, 1):
        of_class = dataset.y == label
        n_groups = len(set(dataset.groups[of_class])) if by_clip else int(of_class.sum())
        if n_groups < needed:
            raise DataError(f"{dataset.root}: only {n_groups} {'clips' if by_clip else 'samples'} of class "
                            f"{CLASS_NAMES[label]}, too few {purpose} (need at least {needed})")


FRAME_SPLIT_WARNING = ("validation frames come from the training recordings (a class has too few clips to keep "
                       "clips whole), so the accuracy shown is optimistic")


def keeps_clips_whole(dataset, k):
    """Whether a k-fold split can keep clips whole: samples have clips and each class has k."""
    return dataset.has_clips and all(len(set(dataset.groups[dataset.y == label])) >= k for label in (0, 1))


def fold_plan(fraction, n_groups):
    """(k, m): validation = m of k group folds, with m / k closest to fraction (fewest folds
    on a tie), k at most the number of clips and 20: 0.2 -> 1 of 5, 0.4 -> 2 of 5."""
    options = [(abs(m / k - fraction), k, m) for k in range(2, min(n_groups, 20) + 1) for m in range(1, k)]
    return min(options)[1:]


def split(dataset, val_split, seed):
    """(train, validation indices, warning or None): stratified; whole clips on one side when
    samples have clips. When a class has too few clips for that (one video of each class,
    say), frames are split instead, with a warning that validation is optimistic."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedShuffleSplit
    by_clip = keeps_clips_whole(dataset, 2)
    require_groups(dataset, 2, "to split into training and validation", by_clip)
    if by_clip:
        k, m = fold_plan(val_split, len(set(dataset.groups)))
        folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
            dataset.X, dataset.y, dataset.groups)
        val = np.sort(np.concatenate([test for _, test in list(folds)[:m]]))
        train = np.setdiff1d(np.arange(len(dataset.y)), val)
    else:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_split, random_state=seed)
        train, val = next(splitter.split(dataset.X, dataset.y))
    for label in (0, 1):
        if not ((dataset.y[train] == label).any() and (dataset.y[val] == label).any()):
            raise DataError(f"{dataset.root}: too few samples of class {CLASS_NAMES[label]} to have it "
                            f"on both sides of the split")
    return train, val, FRAME_SPLIT_WARNING if dataset.has_clips and not by_clip else None


# ----------------------------------------------------------------------------- training
# Augmentation strengths (chosen by cross-validation, see README). Kept small: a pose's
# lean and joint angles are what makes it correct, and large changes would alter them.
AUG_ROTATION_DEG = 3.0     # +- in-plane rotation, like a slightly tilted camera
AUG_STRETCH = 0.05         # +- independent x and y scale
AUG_JITTER = 0.005         # sd of per-point noise, in normalized units (pose size = 1)
# Joint dropout: how real recordings lose points. Each pattern is one way, chosen at random
# for a training sample with probability --drop-joints: random single points, one arm or
# leg (elbow and wrist, knee and ankle), one side's arm and leg (a side view), both legs
# (a cropped frame), both arms (a tool that records only what its exercise needs).
DROP_PATTERNS = [[3, 4], [6, 7], [9, 10], [12, 13], [3, 4, 9, 10], [6, 7, 12, 13], [9, 10, 12, 13], [3, 4, 6, 7]]
DROP_POINT_RATE = 2 / NUM_POINTS   # the random-points pattern loses 2 points on average


def augment(x, generator, drop_joints=0.0):
    """Random left-right mirror (joints swapped), small rotation, x/y stretch, jitter and
    joint dropout (drop_points, with probability drop_joints per sample).

    Works on normalized keypoints (hip midpoint at the origin); training batches only.
    """
    n = x.shape[0]
    p = x.reshape(n, NUM_POINTS, 2).clone()
    flip = torch.rand(n, generator=generator) < 0.5
    p[flip] = p[flip][:, MIRROR] * torch.tensor([-1.0, 1.0])
    angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(AUG_ROTATION_DEG)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    p = p @ rot.transpose(1, 2)
    p = p * (1 + (torch.rand(n, 1, 2, generator=generator) * 2 - 1) * AUG_STRETCH)
    p = p + torch.randn(p.shape, generator=generator) * AUG_JITTER
    if drop_joints > 0:
        p = drop_points(p, drop_joints, generator)
    return p.reshape(n, NUM_COORDS)


def drop_points(p, rate, generator):
    """Set points of (n, 14, 2) keypoints to NaN the ways real recordings lose them: a
    sample is hit with probability rate, by one of DROP_PATTERNS or by random points. A
    sample that would keep no shoulder and no hip is left whole."""
    n = p.shape[0]
    patterns = torch.zeros(len(DROP_PATTERNS) + 1, NUM_POINTS, dtype=torch.bool)
    for i, points in enumerate(DROP_PATTERNS):
        patterns[i, points] = True
    choice = torch.randint(len(patterns), (n,), generator=generator)
    drop = patterns[choice] | ((choice == len(DROP_PATTERNS))[:, None]
                               & (torch.rand(n, NUM_POINTS, generator=generator) < DROP_POINT_RATE))
    drop &= (torch.rand(n, generator=generator) < rate)[:, None]
    left = present_points(p) & ~drop
    drop &= left[:, TORSO].any(1, keepdim=True)
    return torch.where(drop[..., None], torch.full_like(p, math.nan), p)


# Training that scales (chosen by cross-validation, README "Training on large datasets"):
# with --batch-size auto, the batch is 32 up to 32 x MAX_STEPS_PER_EPOCH samples and grows
# with the data beyond, so that an epoch stays MAX_STEPS_PER_EPOCH batches, up to
# MAX_AUTO_BATCH. Every epoch still sees every sample: training fewer samples per epoch was
# cheaper but less accurate on 100,000 frames.
MIN_AUTO_BATCH = 32
MAX_STEPS_PER_EPOCH = 250
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


def fit(X_train, y_train, X_val, y_val, args, log=None):
    """Train a PoseClassifier; returns (model with the best epoch's weights, history, best epoch).

    The best epoch is the one with the highest validation accuracy; among ties (common
    on small validation sets) the one most accurate on the same frames with 2 random
    points removed, then the one with the lowest validation loss. Its weights are
    deep-copied, not referenced.
    """
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    device = torch.device(args.device)
    model = PoseClassifier().to(device)
    normalize = KeypointNormalizer()
    xt, yt = torch.from_numpy(normalize(X_train)).to(device), torch.from_numpy(y_train).to(device)
    select = X_val is not None      # without validation data: keep the last epoch
    if select:
        xv, yv = torch.from_numpy(normalize(X_val)).to(device), torch.from_numpy(y_val).to(device)
        # Tie-break: an early epoch can match a later one on whole frames and still fall
        # apart when points go missing (measured on plank: 99.3% either way, 91% against
        # 98% with 2 points removed).
        xv_removed = torch.from_numpy(remove_points(X_val, 2, np.random.default_rng(args.seed))).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    batch_size = auto_batch_size(len(xt), args.batch_size)
    steps_per_epoch = math.ceil(len(xt) / batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs * steps_per_epoch)
                 if args.schedule == "cosine" else None)
    history, best, best_key, best_state = [], 0, None, None
    for epoch in range(1, args.epochs + 1):
        model.train()
        batches = make_batches(len(xt), batch_size, gen)
        total_loss = correct = 0
        bar = _progress(batches, desc=f"Epoch {epoch}/{args.epochs}", leave=False, unit="batch", disable_if=log is None)
        for idx in bar:
            xb, yb = xt[idx], yt[idx]
            if args.augment:
                xb = augment(xb.cpu(), gen, args.drop_joints).to(device)
            optimizer.zero_grad()
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            loss.backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
        record = {"epoch": epoch, "train_loss": total_loss / len(xt), "train_acc": correct / len(xt)}
        history.append(record)
        if not select:
            continue
        record["val_loss"], record["val_acc"], _ = evaluate(model, xv, yv)
        record["val_acc_2_removed"] = evaluate(model, xv_removed, yv)[1]
        if log:
            log(f"Epoch [{epoch}/{args.epochs}]:\n"
                f"  Train Loss: {record['train_loss']:.4f}, Train Acc: {100 * record['train_acc']:.2f}%\n"
                f"  Val Acc: {100 * record['val_acc']:.2f}% (with 2 points removed: "
                f"{100 * record['val_acc_2_removed']:.2f}%)")
        key = (record["val_acc"], record["val_acc_2_removed"], -record["val_loss"])
        if best_key is None or key > best_key:
            best, best_key, best_state = epoch, key, copy.deepcopy(model.state_dict())
    if select:
        model.load_state_dict(best_state)
    else:
        best = args.epochs
    model.eval()
    return model, history, best


def _progress(iterable, disable_if=False, **kwargs):
    """tqdm progress bar on a terminal; nothing in logs, pipes and CI."""
    if disable_if:
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, disable=None, file=sys.stderr, **kwargs)


# ----------------------------------------------------------------------------- export
def export_onnx(model, path, metadata, opset=17):
    """torch's ONNX exporter: input `input` [N, 28] float32 -> `probabilities` [N, 2].

    Uses the TorchScript-based exporter (dynamo=False): for this small static graph it
    takes ~0.05 s, while the dynamo exporter (importing onnxscript, rebuilding its op
    registry on every call) made `python train.py` nearly twice as slow. The result is
    checked either way: onnx.checker, then ONNX Runtime against PyTorch.
    """
    import onnx
    wrapped = WithSoftmax(model).eval().cpu()
    example = torch.zeros(2, NUM_COORDS)
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


TEMP_PREFIX = ".tmp-"      # our temporary files: .tmp-<pid>-<target name>.<random>


def temp_path(folder, name):
    """A new empty temporary file in folder, for writing `name` and renaming it into place.
    It gets the mode any new file gets under the user's umask (mkstemp alone gives 0600,
    which a service running as another user could not read), and the process id in its
    name, so that a later run can tell a leftover from a file still being written."""
    fd, path = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{name}.", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def remove_stale_temps(folder):
    """Remove temporary files that a killed run of ours left in folder: .tmp-<pid>-... whose
    process is gone, and the .<category>.<random>.pt/.onnx names of earlier versions."""
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in names:
        ours = re.match(rf"{re.escape(TEMP_PREFIX)}(\d+)-", name)
        left_by_dead_run = ours and not pid_alive(int(ours.group(1)))
        legacy = re.fullmatch(r"\.[^.]+\.[A-Za-z0-9_]{8}\.(pt|onnx)", name)
        if not (left_by_dead_run or legacy):
            continue
        try:
            os.remove(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed


def report_stale_temps(folder):
    removed = remove_stale_temps(folder)
    if removed:
        print(f"Removed {removed} temporary file(s) that an interrupted run left in {folder}", file=sys.stderr)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True         # exists, owned by someone else
    return True


def write_models(model, category, models_dir, metadata, record, X_check):
    """Write <category>.pt, <category>.onnx and the training record <category>.json via
    temporary files, renamed in place only once the ONNX model has passed the checker and
    matches PyTorch within 1e-5 on X_check and on X_check with points missing
    (parity_inputs). The ONNX metadata carries the record's SHA-1, so quantize.py can tell
    that a record belongs to its model. Failures are DataErrors; earlier models stay."""
    targets = {ext: os.path.join(models_dir, f"{category}{ext}") for ext in (".pt", ".onnx", ".json")}
    record_text = json.dumps(record, indent=1) + "\n"
    metadata = {**metadata, "training_record": os.path.basename(targets[".json"]),
                "training_record_sha1": hashlib.sha1(record_text.encode()).hexdigest()}
    temps = {}
    try:
        for ext, target in targets.items():
            temps[ext] = temp_path(models_dir, os.path.basename(target))
        with open(temps[".json"], "w") as f:
            f.write(record_text)
        torch.save(model.state_dict(), temps[".pt"])
        export_onnx(model, temps[".onnx"], metadata)
        diff = onnx_parity(model, temps[".onnx"], parity_inputs(X_check))
        if not diff <= 1e-5:       # also catches NaN and inf
            raise DataError(f"{targets['.onnx']}: ONNX Runtime and PyTorch disagree by {diff:.2e} "
                            f"(more than 1e-5, or outputs not finite); models not written")
        for ext, target in targets.items():
            os.replace(temps.pop(ext), target)
    except (OSError, RuntimeError) as e:       # torch.save reports a full disk as RuntimeError
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0][:120]
        raise DataError(f"{models_dir}: cannot write the {category} models ({reason}); earlier models kept")
    finally:
        for temp in temps.values():
            if os.path.exists(temp):
                os.remove(temp)
    return [targets[".pt"], targets[".onnx"]], targets[".json"], diff, onnx_nodes(targets[".onnx"])


def sample_digest(keypoints):
    """Short SHA-1 of one sample's keypoints as the model sees them (float32)."""
    return hashlib.sha1(np.asarray(keypoints, dtype=np.float32).tobytes()).hexdigest()[:16]


def finite_model(model):
    return all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


# ----------------------------------------------------------------------------- reports
def print_statistics(datasets):
    print("Dataset Statistics:")
    for ds in datasets:
        print(f"{ds.category.capitalize()}:")
        print(f"  - Correct samples: {ds.count(1)}")
        print(f"  - Incorrect samples: {ds.count(0)}")
        print(f"  - Total samples: {len(ds.y)}")
        if ds.has_clips:
            print(f"  - Clips (recordings): {len(set(ds.groups))}")
        n_missing, counts = ds.missing()
        if n_missing:
            often = ", ".join(f"{name} {n}" for name, n in list(counts.items())[:6])
            print(f"  - Samples with missing points: {n_missing} ({100 * n_missing / len(ds.y):.1f}%); "
                  f"most often missing: {often}")
        print()


def report_problems(ds, strict):
    """Print invalid samples and label warnings; with strict, invalid samples are an error."""
    for path, reason in ds.warnings:
        print(f"warning: {path}: {reason}", file=sys.stderr)
    if ds.ignored:
        print(f"{ds.category}: ignored {ds.ignored} macOS '._' file(s) (AppleDouble metadata, not samples)",
              file=sys.stderr)
    for path, reason in ds.invalid:
        print(f"{'error' if strict else 'skipped'}: {path}: {reason}", file=sys.stderr)
    if ds.invalid:
        if strict:
            raise DataError(f"{ds.root}: {len(ds.invalid)} invalid sample(s) and --strict is set")
        print(f"{ds.category}: skipped {len(ds.invalid)} invalid sample(s) "
              f"(listed above; --strict makes this an error)", file=sys.stderr)


def print_confusion(cm, title):
    print(f"{title} (rows: true, columns: predicted):")
    print(f"{'':>12}{CLASS_NAMES[0]:>11}{CLASS_NAMES[1]:>10}")
    for label in (0, 1):
        print(f"{CLASS_NAMES[label]:>12}{cm[label, 0]:>11}{cm[label, 1]:>10}")


def train_category(ds, args):
    """Split, train, report and export one category; returns its figures for --json."""
    from sklearn.metrics import classification_report, confusion_matrix
    train_idx, val_idx, warning = split(ds, args.val_split, args.seed)
    print(f"Training {ds.category.upper()} Classification Model")
    print("=" * 60)
    where = ("clips kept whole" if ds.has_clips and not warning else
             "frames, clips split: see the warning" if warning else "stratified")
    print(f"Split: {len(train_idx)} training, {len(val_idx)} validation samples ({where}; "
          f"{100 * len(val_idx) / len(ds.y):.0f}% for --val-split {args.val_split:g}); device {args.device}")
    batch_size = auto_batch_size(len(train_idx), args.batch_size)
    print(f"Batches of {batch_size}" + ("" if args.batch_size else " (--batch-size auto)") +
          f", {math.ceil(len(train_idx) / batch_size)} per epoch, {args.epochs} epochs")
    if warning:
        print(f"warning: {ds.root}: {warning}", file=sys.stderr)
    start = time.perf_counter()
    model, history, best = fit(ds.X[train_idx], ds.y[train_idx], ds.X[val_idx], ds.y[val_idx], args, log=_log)
    seconds = time.perf_counter() - start
    X_val, y_val = ds.X[val_idx], ds.y[val_idx]
    probabilities = predict_probabilities(model, X_val, args.device)
    if not (finite_model(model) and np.isfinite(probabilities).all()):
        raise DataError(f"{ds.category}: training diverged (weights or outputs are not finite; "
                        f"--lr {args.lr:g} may be too high); models not written, earlier ones kept")
    pred = probabilities.argmax(1)
    val_acc = float((pred == y_val).mean())
    print(f"\nBest epoch: {best}/{args.epochs}, Val Acc {100 * val_acc:.2f}% (picked by validation "
          f"accuracy, so this figure is optimistic; `--cv 5` gives an unbiased estimate)")
    print("\nClassification report (validation):")
    print(classification_report(y_val, pred, labels=[0, 1], target_names=CLASS_NAMES, digits=3, zero_division=0))
    print_confusion(confusion_matrix(y_val, pred, labels=[0, 1]), "Confusion matrix")
    clip_true, clip_pred = clip_scores(ds.groups[val_idx], y_val, probabilities)   # without clips: per sample
    clip_acc = float((clip_true == clip_pred).mean())
    if ds.has_clips:
        print(f"\nPer recording (validation): {100 * clip_acc:.2f}% of {len(clip_true)} clips get the right "
              f"verdict (the class with the highest mean probability over the clip's frames)")
        print_confusion(confusion_matrix(clip_true, clip_pred, labels=[0, 1]), "Per-recording confusion matrix")
    removed = accuracy_with_points_removed(lambda X: predict_probabilities(model, X, args.device).argmax(1),
                                           X_val, y_val, args.seed)
    print(f"\nValidation accuracy with k random points removed from each frame ({REMOVAL_DRAWS} draws, "
          f"one shoulder or hip kept" + (f"; {REMOVAL_MAX_FRAMES:,} random frames" if len(X_val) > REMOVAL_MAX_FRAMES
                                         else "") + "): " + ", ".join([f"k=0 {100 * val_acc:.2f}%"] +
                                                     [f"k={k} {100 * a:.2f}%" for k, a in removed.items()]))
    # The ONNX file carries what deployment needs; the training record (which samples were
    # held out, the figures, the settings) goes beside it, in models/<category>.json.
    metadata = {
        "category": ds.category, "class_names": CLASS_NAMES, "keypoint_layout": KEYPOINT_NAMES,
        "normalization": NORMALIZATION + " (inside the model: feed raw keypoints)",
        "missing_points": "NaN (x and y); a row with no shoulder and no hip gives [0.5, 0.5]",
        "min_visibility": f"{args.min_visibility:g}",
    }
    if warning:
        metadata["split_warning"] = warning
    settings = ("epochs", "lr", "schedule", "batch_size", "val_split", "augment", "drop_joints", "min_visibility",
                "seed")
    record = {
        "category": ds.category, "class_names": CLASS_NAMES, "data_dir": os.path.abspath(args.data_dir),
        "val_samples": [ds.files[i] for i in val_idx],
        "val_sample_sha1": [sample_digest(x) for x in X_val],
        "val_accuracy": round(val_acc, 6), "val_clip_accuracy": round(clip_acc, 6), "n_val_clips": len(clip_true),
        "best_epoch": best, "split_warning": warning,
        "settings": {name: getattr(args, name) for name in settings},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }
    files, record_path, diff, nodes = write_models(model.cpu(), ds.category, args.models_dir, metadata, record,
                                                   X_val)
    model.to(args.device)
    print(f"\nONNX check passed; ONNX Runtime matches PyTorch on the validation samples, also with "
          f"points missing (max diff {diff:.1e}); the graph has {nodes} operator nodes")
    print("Files written:")
    for path in files:
        print(f"  {path} ({os.path.getsize(path) / 1e6:.3f} MB)")
    print(f"  {record_path} (training record: validation samples, figures, settings)")
    print()
    return {"n_train": len(train_idx), "n_val": len(val_idx), "val_accuracy": round(val_acc, 6),
            "val_clip_accuracy": round(clip_acc, 6), "n_val_clips": len(clip_true),
            "best_epoch": best, "train_seconds": round(seconds, 3), "onnx_nodes": nodes,
            "val_accuracy_points_removed": {str(k): round(a, 6) for k, a in removed.items()},
            "warning": warning}


def cv_folds(ds, k, seed):
    """(K stratified folds, warning or None): each clip inside one fold (StratifiedGroupKFold)
    when samples have clips; frames otherwise, with a warning when clips had to be split."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    by_clip = keeps_clips_whole(ds, k)
    require_groups(ds, k, f"for {k}-fold cross-validation", by_clip)
    if by_clip:
        return list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(ds.X, ds.y, ds.groups)), None
    folds = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(ds.X, ds.y))
    return folds, (FRAME_SPLIT_WARNING.replace("validation frames", "test frames") if ds.has_clips else None)


def peers(seed):
    """scikit-learn baselines, fed the same normalized keypoints PoseClassifier starts from,
    missing points left missing (NaN): HistGradientBoosting takes NaN itself; the others
    get mean imputation plus a missing-value indicator for every coordinate, so they know
    which points are absent, as PoseClassifier does from its presence mask."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_selection import VarianceThreshold
    from sklearn.impute import MissingIndicator, SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    def imputed(model):
        fill = make_union(SimpleImputer(keep_empty_features=True), MissingIndicator(features="all"))
        return make_pipeline(fill, StandardScaler(), model)
    return {
        "LogisticRegression": imputed(LogisticRegression(max_iter=5000)),
        "SVC (RBF)": imputed(SVC()),
        "KNeighbors": imputed(KNeighborsClassifier()),
        # VarianceThreshold drops coordinates that are missing in every training sample (the
        # legs of an upper-body recording), which HistGradientBoosting cannot bin.
        "HistGradientBoosting": make_pipeline(VarianceThreshold(), HistGradientBoostingClassifier(random_state=seed)),
    }


# Above this many training frames, the RBF SVC peer is fitted on a stratified subsample of
# that size: its fit time grows about with the square of the frames (synthetic stance,
# 5,000 / 10,000 / 20,000 / 32,000 frames: 0.4 / 1.2 / 4.6 / 12.7 s on 2 cores).
SVC_MAX_TRAIN = 20000


def peer_training_rows(name, train, y, seed):
    """The training rows a peer is fitted on: all, or for the SVC a stratified subsample."""
    if name != "SVC (RBF)" or len(train) <= SVC_MAX_TRAIN:
        return train
    from sklearn.model_selection import train_test_split
    return train_test_split(train, train_size=SVC_MAX_TRAIN, stratify=y[train], random_state=seed)[0]


# Robustness: each test frame is scored again with this many of its points removed at
# random (REMOVAL_DRAWS draws each), the way occlusion loses them in real recordings. A
# larger test fold is scored on a random REMOVAL_MAX_FRAMES of its frames (the same for
# every model): 20 more predictions of every frame would cost a large CV more than fitting.
REMOVED_POINTS = (1, 2, 3, 4)
REMOVAL_DRAWS = 5
REMOVAL_MAX_FRAMES = 2000


def remove_points(X, k, rng):
    """Copy of raw keypoints X (N, 28) with k random present points of each row set to NaN.
    One shoulder or hip, chosen at random, is always kept, so every row can still be placed."""
    X = np.array(X, dtype=np.float32)
    p = X.reshape(len(X), NUM_POINTS, 2)
    present = ~np.isnan(p[:, :, 0])
    keys = np.where(present, rng.random(present.shape), np.inf)
    anchor = np.array(TORSO)[np.where(present[:, TORSO], rng.random((len(X), len(TORSO))), -1).argmax(1)]
    keys[np.arange(len(X)), anchor] = np.inf
    order = np.argsort(keys, axis=1)[:, :k]
    chosen = np.take_along_axis(keys, order, axis=1) < np.inf
    rows = np.broadcast_to(np.arange(len(X))[:, None], order.shape)
    p[rows[chosen], order[chosen]] = np.nan
    return X


def accuracy_with_points_removed(predict, X, y, seed):
    """{k: mean accuracy over REMOVAL_DRAWS draws with k points removed} for k in REMOVED_POINTS,
    on at most REMOVAL_MAX_FRAMES frames of X; the frames and draws depend only on seed, so
    every model is scored on the same frames."""
    if len(X) > REMOVAL_MAX_FRAMES:
        rows = np.random.default_rng([seed, 0]).choice(len(X), REMOVAL_MAX_FRAMES, replace=False)
        X, y = X[rows], y[rows]
    result = {}
    for k in REMOVED_POINTS:
        rng = np.random.default_rng([seed, k])
        result[k] = float(np.mean([(predict(remove_points(X, k, rng)) == y).mean() for _ in range(REMOVAL_DRAWS)]))
    return result


def predict_probabilities(model, X, device="cpu"):
    """(N, 2) class probabilities for raw keypoints X (numpy), with a PoseClassifier in eval mode."""
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(device))
    return F.softmax(logits, dim=1).cpu().numpy()


def clip_verdicts(groups, probabilities):
    """One verdict per recording, in the order of np.unique(groups): the class with the highest
    mean probability over the clip's frames. One-hot rows (predictions or labels) make it a
    majority vote; a tie goes to class 0."""
    names, inverse = np.unique(groups, return_inverse=True)
    sums = np.zeros((len(names), probabilities.shape[1]))
    np.add.at(sums, inverse, probabilities)
    return sums.argmax(1)


def clip_scores(groups, y, probabilities):
    """(clip labels, clip verdicts): a clip's label is the majority of its frames' labels."""
    return clip_verdicts(groups, np.eye(2)[y]), clip_verdicts(groups, probabilities)


def cross_validate(ds, args):
    """Per model, on identical folds: frame accuracy and macro F1 per fold, accuracy per
    recording, time spent fitting and predicting, and accuracy with random points removed."""
    from sklearn.base import clone
    from sklearn.metrics import accuracy_score, f1_score
    folds, warning = cv_folds(ds, args.cv, args.seed)
    if warning:
        print(f"warning: {ds.root}: {warning}", file=sys.stderr)
    normalize = KeypointNormalizer()
    models = {"PoseClassifier": None, **peers(args.seed)}
    scores = {name: {"acc": [], "f1": [], "removed": [], "clips": 0, "clips_right": 0, "seconds": 0.0}
              for name in models}
    voters = set()          # peers without probabilities: their clip verdict is a majority vote
    subsampled = {}         # peers fitted on a subsample: how many training rows
    start = time.perf_counter()
    for fold, (train, test) in enumerate(_progress(folds, desc=f"{ds.category} folds", unit="fold")):
        for name, peer in models.items():
            began = time.perf_counter()
            if peer is None:
                # Same settings as a normal run, but the last epoch is kept: picking the epoch
                # on the test fold would be peeking.
                model = fit(ds.X[train], ds.y[train], None, None, args)[0]
                probabilities = predict_probabilities(model, ds.X[test], args.device)
                predict = lambda X, model=model: predict_probabilities(model, X, args.device).argmax(1)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")    # e.g. a coordinate never seen in this fold
                    rows = peer_training_rows(name, train, ds.y, args.seed)
                    if len(rows) < len(train):
                        subsampled[name] = len(rows)
                    fitted = clone(peer).fit(normalize(ds.X[rows]), ds.y[rows])
                if hasattr(fitted, "predict_proba"):
                    probabilities = fitted.predict_proba(normalize(ds.X[test]))
                else:
                    probabilities = np.eye(2)[fitted.predict(normalize(ds.X[test]))]
                    voters.add(name)
                predict = lambda X, fitted=fitted: fitted.predict(normalize(X))
            pred = probabilities.argmax(1)
            s = scores[name]
            s["seconds"] += time.perf_counter() - began
            s["acc"].append(accuracy_score(ds.y[test], pred))
            s["f1"].append(f1_score(ds.y[test], pred, average="macro"))
            clip_true, clip_pred = clip_scores(ds.groups[test], ds.y[test], probabilities)
            s["clips"] += len(clip_true)
            s["clips_right"] += int((clip_true == clip_pred).sum())
            s["removed"].append(accuracy_with_points_removed(predict, ds.X[test], ds.y[test], args.seed * 1000 + fold))
    seconds = time.perf_counter() - start
    where = "clips kept whole" if ds.has_clips and not warning else "frames, clips split" if warning else "stratified"
    print(f"Cross-validation: {ds.category.upper()} ({args.cv} folds, {where}, {len(ds.y)} samples, "
          f"{seconds:.1f} s)")
    print("=" * 60)
    best = max(scores, key=lambda n: np.mean(scores[n]["acc"]))
    unit = "clips" if ds.has_clips else "samples"
    print(f"  {'model':<20}{'accuracy % (mean +- std)':>26}{'macro F1':>10}{'per recording %':>17}"
          f"{'seconds':>9}   per fold")
    for name, s in scores.items():
        mark = "*" if name == best else " "
        folds_text = " ".join(f"{100 * a:.1f}" for a in s["acc"])
        clip_text = f"{100 * s['clips_right'] / s['clips']:.2f}" + ("v" if name in voters else " ")
        print(f"{mark} {name:<20}{100 * np.mean(s['acc']):>17.2f} +- {100 * np.std(s['acc']):<5.2f}"
              f"{np.mean(s['f1']):>10.3f}{clip_text:>17}{s['seconds']:>9.1f}   {folds_text}")
    print("* best mean accuracy. PoseClassifier: last epoch of each fold (no epoch picked on test data).")
    for name, n in subsampled.items():
        print(f"{name}: fitted on a stratified subsample of {n:,} training frames per fold (above "
              f"{SVC_MAX_TRAIN:,}, its fit time grows about with the square of the frames).")
    n_clips = scores[best]["clips"]
    print(f"Per recording: the class with the highest mean probability over a clip's frames, over all "
          f"{n_clips} test {unit} of all folds" + ("" if ds.has_clips else " (no clips: each sample is its own clip)")
          + ("; v: no probabilities, so a majority vote of frame predictions" if voters else "") + ".")
    removed = {name: {k: float(np.mean([r[k] for r in s["removed"]])) for k in REMOVED_POINTS}
               for name, s in scores.items()}
    capped = max(len(test) for _, test in folds) > REMOVAL_MAX_FRAMES
    print(f"\nAccuracy % with k random points removed from each test frame ({REMOVAL_DRAWS} draws, "
          f"one shoulder or hip kept; the same frames for every model"
          + (f"; at most {REMOVAL_MAX_FRAMES:,} random frames of each test fold" if capped else "") + "):")
    print(f"  {'model':<20}" + "".join(f"{'k=' + str(k):>8}" for k in (0, *REMOVED_POINTS)))
    for name, s in scores.items():
        print(f"  {name:<20}{100 * np.mean(s['acc']):>8.2f}" + "".join(f"{100 * removed[name][k]:>8.2f}"
                                                                     for k in REMOVED_POINTS))
    print()
    return {name: {"mean": round(float(np.mean(s["acc"])), 6), "std": round(float(np.std(s["acc"])), 6),
                   "folds": [round(float(a), 6) for a in s["acc"]],
                   "f1_mean": round(float(np.mean(s["f1"])), 6),
                   "clip_mean": round(s["clips_right"] / s["clips"], 6), "n_clips": s["clips"],
                   "clip_verdict": "majority vote" if name in voters else "mean probability",
                   "seconds": round(s["seconds"], 3), "fitted_on_subsample": subsampled.get(name),
                   "points_removed": {str(k): round(v, 6) for k, v in removed[name].items()}}
            for name, s in scores.items()}


def _log(text):
    from tqdm import tqdm
    tqdm.write(text)


def write_json(path, data):
    """Write JSON via a temporary file, so a failure leaves no half-written report."""
    temp = temp_path(os.path.dirname(os.path.abspath(path)), os.path.basename(path))
    try:
        with open(temp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(temp, path)
    except BaseException:
        os.remove(temp)
        raise


def finish(results, failed, json_path):
    """Write the --json report if asked, name the failed categories; the exit code."""
    if json_path:
        try:
            write_json(json_path, results)
        except OSError as e:
            print(f"error: {json_path}: cannot write the JSON report ({e.strerror})", file=sys.stderr)
            return 1
    if failed:
        print(f"Failed: {', '.join(failed)} (see the errors above)", file=sys.stderr)
        return 1
    return 0


def check_writable(folder):
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise DataError(f"{folder}: cannot write models there ({e.strerror or e.__class__.__name__})")


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
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description="Train one correct-vs-incorrect pose classifier per category "
                                            "and export it to PyTorch and ONNX.")
    p.add_argument("--data-dir", default=os.path.join(here, "MediaPipe_Dataset"),
                   help="folder of <category>/{correct,incorrect} <category>/*.json (default: MediaPipe_Dataset)")
    p.add_argument("--models-dir", default=os.path.join(here, "models"),
                   help="where <category>.pt and <category>.onnx are written (default: models)")
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
    p.add_argument("--cv", type=int, metavar="K", default=0,
                   help="K-fold cross-validation against scikit-learn peers instead of training models "
                        "(default: off; writes no models)")
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file (default: none)")
    args = p.parse_args(argv)
    if args.epochs < 1 or (args.batch_size is not None and args.batch_size < 2) or not 0 < args.lr < math.inf:
        p.error("--epochs must be >= 1, --batch-size >= 2 and --lr a number > 0")
    if not 0 <= args.seed < 2 ** 32:
        p.error("--seed must be between 0 and 2**32 - 1 (scikit-learn's limit)")
    if not 0 < args.val_split < 1:
        p.error("--val-split must be between 0 and 1")
    if not 0 <= args.drop_joints <= 1 or not 0 <= args.min_visibility <= 1:
        p.error("--drop-joints and --min-visibility must be between 0 and 1")
    if args.cv == 1 or args.cv < 0:
        p.error("--cv needs K >= 2")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif args.device not in ("cpu", "cuda") or (args.device == "cuda" and not torch.cuda.is_available()):
        p.error(f"--device {args.device}: not available here (use auto, cpu or cuda)")
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)  # these models are tiny: one thread is faster and deterministic
    try:
        categories = discover_categories(args.data_dir)
        if args.categories:
            unknown = [c for c in args.categories if c not in categories]
            if unknown:
                raise DataError(f"{args.data_dir}: no category {', '.join(unknown)} "
                                f"(found: {', '.join(categories)})")
            categories = args.categories
        if not args.cv:
            check_writable(args.models_dir)
            report_stale_temps(args.models_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("=== MediaPipe Pose Classification Training ===\n")
    datasets, failed, results, current = [], [], {}, None
    try:
        for category in categories:
            try:
                if category.endswith("_int8"):
                    # quantize.py writes <category>_int8.onnx: this name would collide with another model
                    raise DataError(f"{os.path.join(args.data_dir, category)}: a category name may not end in "
                                    f"_int8 (quantize.py names its models <category>_int8); rename the folder")
                datasets.append(Dataset(args.data_dir, category, args.min_visibility))
            except DataError as e:
                print(f"error: {e}", file=sys.stderr)
                failed.append(category)
        datasets.sort(key=lambda d: (-len(d.y), d.category))   # largest category first
        print_statistics(datasets)
        for ds in datasets:
            current = ds.category
            try:
                report_problems(ds, args.strict)
                if args.cv:
                    results[ds.category] = cross_validate(ds, args)
                else:
                    results[ds.category] = train_category(ds, args)
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
    return finish(results, failed, args.json)


def _terminate(signum, frame):
    raise KeyboardInterrupt     # so that a SIGTERM cleans up like Ctrl-C: temporary files removed


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
